//! A small local torso-PCK for validation during training (COCO-17 2D: torso = right
//! shoulder 6 to left hip 11; samples with a zero torso are left out).
//! To be replaced by `csipose-metrics` once it is merged.

/// torso-PCK at each threshold in `ks` for `[n, 17, 2]` predictions and ground truth.
/// Returns `None` per threshold if no sample has a usable torso.
pub fn torso_pck_curve(pred: &[f32], gt: &[f32], ks: &[f64]) -> Vec<Option<f64>> {
    let n = gt.len() / 34;
    let mut correct = vec![0usize; ks.len()];
    let mut usable = 0usize;
    let dist = |a: &[f32], b: &[f32]| {
        (((a[0] - b[0]) as f64).powi(2) + ((a[1] - b[1]) as f64).powi(2)).sqrt()
    };
    for i in 0..n {
        let (p, g) = (&pred[i * 34..(i + 1) * 34], &gt[i * 34..(i + 1) * 34]);
        let torso = dist(&g[12..14], &g[22..24]);
        if !(torso.is_finite() && torso > 0.0) {
            continue;
        }
        usable += 1;
        for j in 0..17 {
            let e = dist(&p[2 * j..2 * j + 2], &g[2 * j..2 * j + 2]);
            for (c, k) in correct.iter_mut().zip(ks) {
                if e <= k * torso {
                    *c += 1;
                }
            }
        }
    }
    correct
        .iter()
        .map(|&c| (usable > 0).then(|| c as f64 / (usable * 17) as f64))
        .collect()
}

/// torso-PCK@k.
pub fn torso_pck(pred: &[f32], gt: &[f32], k: f64) -> Option<f64> {
    torso_pck_curve(pred, gt, &[k])[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_shifted_predictions() {
        let mut gt = vec![0.0f32; 34];
        gt[12] = 0.5; // joint 6 x
        gt[22] = 0.5; // joint 11 x
        gt[23] = 0.4; // joint 11 y -> torso 0.4
        assert_eq!(torso_pck(&gt, &gt, 0.2), Some(1.0));
        let shifted: Vec<f32> = gt.iter().map(|v| v + 0.05).collect(); // error 0.0707 < 0.08
        assert_eq!(torso_pck(&shifted, &gt, 0.2), Some(1.0));
        assert_eq!(torso_pck(&shifted, &gt, 0.1), Some(0.0));
        assert_eq!(torso_pck(&gt, &[0.0; 34], 0.2), None);
    }
}
