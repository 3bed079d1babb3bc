//! COCO-17 keypoints: names in order, the skeleton graph the model's graph head mixes over
//! ([`GRAPH_BONES`], [`adjacency`], [`NEIGHBOURS`]), the skeleton drawn in previews
//! ([`DRAWN_BONES`]) and the joints whose distance is torso-PCK's normaliser ([`TORSO`]).

/// Number of keypoints.
pub const JOINTS: usize = 17;

/// Keypoint names, in COCO order.
pub const NAMES: [&str; JOINTS] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// Torso joints `(right shoulder, left hip)`: torso-PCK divides by their distance.
pub const TORSO: (usize, usize) = (6, 11);

/// The 16 bones of the graph head's skeleton graph: a spanning tree of the COCO skeleton
/// (face 0-1, 0-2, 1-3, 2-4; ears to shoulders 3-5, 4-6; arms; shoulders to hips; legs).
pub const GRAPH_BONES: [(usize, usize); 16] = [
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 11),
    (6, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
];

/// The skeleton drawn in previews: limbs, the shoulder and hip bars, and the face. It is not
/// the graph head's tree ([`GRAPH_BONES`] links ears to shoulders instead of the two bars).
pub const DRAWN_BONES: [(usize, usize); 16] = [
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 6),
    (5, 11),
    (6, 12),
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
];

const fn linked(i: usize, j: usize) -> bool {
    if i == j {
        return true;
    }
    let mut b = 0;
    while b < GRAPH_BONES.len() {
        let (u, v) = GRAPH_BONES[b];
        if (u == i && v == j) || (u == j && v == i) {
            return true;
        }
        b += 1;
    }
    false
}

/// `Â`: row-normalised `I + A` over [`GRAPH_BONES`], `[17][17]` (row `i` holds
/// `1 / deg(i)` at `i` and at its neighbours, where `deg` counts `i` itself).
pub const fn adjacency() -> [[f32; JOINTS]; JOINTS] {
    let mut a = [[0.0f32; JOINTS]; JOINTS];
    let mut i = 0;
    while i < JOINTS {
        let mut n = 0;
        let mut j = 0;
        while j < JOINTS {
            if linked(i, j) {
                n += 1;
            }
            j += 1;
        }
        let mut j = 0;
        while j < JOINTS {
            if linked(i, j) {
                a[i][j] = 1.0 / n as f32;
            }
            j += 1;
        }
        i += 1;
    }
    a
}

/// `Â`'s sparsity: for each joint, its neighbours including itself, ascending (`usize::MAX`
/// pads), and their count.
pub const NEIGHBOURS: [([usize; 4], usize); JOINTS] = neighbours();

const fn neighbours() -> [([usize; 4], usize); JOINTS] {
    let mut out = [([usize::MAX; 4], 0usize); JOINTS];
    let mut i = 0;
    while i < JOINTS {
        let mut n = 0;
        let mut j = 0;
        while j < JOINTS {
            if linked(i, j) {
                out[i].0[n] = j;
                n += 1;
            }
            j += 1;
        }
        out[i].1 = n;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_bones_form_a_spanning_tree() {
        // 16 edges over 17 joints, connected: a tree.
        let mut seen = [false; JOINTS];
        seen[0] = true;
        for _ in 0..JOINTS {
            for &(u, v) in &GRAPH_BONES {
                if seen[u] || seen[v] {
                    seen[u] = true;
                    seen[v] = true;
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn adjacency_rows_sum_to_one_and_match_the_neighbours() {
        let a = adjacency();
        for (i, row) in a.iter().enumerate() {
            let nz: usize = row.iter().filter(|&&v| v != 0.0).count();
            assert_eq!(nz, NEIGHBOURS[i].1);
            for &j in &NEIGHBOURS[i].0[..NEIGHBOURS[i].1] {
                assert_eq!(row[j], 1.0 / nz as f32);
            }
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // The torso joints are a right shoulder and a left hip.
        assert_eq!(NAMES[TORSO.0], "right_shoulder");
        assert_eq!(NAMES[TORSO.1], "left_hip");
    }
}
