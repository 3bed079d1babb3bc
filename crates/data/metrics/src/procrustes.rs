//! PA-MPJPE: per-sample similarity Procrustes alignment (scale, rotation, translation) of the
//! prediction onto the ground truth, exactly the steps of MM-Fi's `evaluate.py` `p_mpjpe`, with
//! the 3x3 SVD done by one-sided Jacobi rotations (no linear-algebra dependency).
//!
//! Degenerate samples (documented rule, never NaN): a prediction with all joints at one point
//! (zero spread) aligns to the ground-truth centroid (scale 0), the best a similarity transform
//! can do; a ground truth with zero spread is matched exactly (scale 0, translation = its point).

use crate::PoseLayout;

type M3 = [[f64; 3]; 3];

fn matmul(a: &M3, b: &M3) -> M3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn transpose(a: &M3) -> M3 {
    let mut t = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            t[i][j] = a[j][i];
        }
    }
    t
}

fn det(a: &M3) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

/// A unit vector orthogonal to unit `u`.
fn orthogonal(u: [f64; 3]) -> [f64; 3] {
    // cross with the axis least aligned with u
    let ax = (0..3)
        .min_by(|&i, &j| u[i].abs().total_cmp(&u[j].abs()))
        .unwrap();
    let mut e = [0.0; 3];
    e[ax] = 1.0;
    let c = cross(u, e);
    let n = norm(c);
    [c[0] / n, c[1] / n, c[2] / n]
}

/// Singular value decomposition `a = u * diag(s) * v^T` of a 3x3 matrix: `u`, `v` orthogonal,
/// `s` non-negative and descending. Columns of `u` for zero singular values are completed to
/// an orthonormal basis.
pub fn svd3(a: &M3) -> (M3, [f64; 3], M3) {
    // One-sided Jacobi: rotate columns of `w = a * v` until they are mutually orthogonal.
    let mut w = *a;
    let mut v: M3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..60 {
        let mut rotated = false;
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
            for r in w.iter() {
                alpha += r[p] * r[p];
                beta += r[q] * r[q];
                gamma += r[p] * r[q];
            }
            if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                continue;
            }
            rotated = true;
            let zeta = (beta - alpha) / (2.0 * gamma);
            let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
            let c = 1.0 / (1.0 + t * t).sqrt();
            let s = c * t;
            for m in [&mut w, &mut v] {
                for r in m.iter_mut() {
                    let (x, y) = (r[p], r[q]);
                    r[p] = c * x - s * y;
                    r[q] = s * x + c * y;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let col = |m: &M3, j: usize| [m[0][j], m[1][j], m[2][j]];
    let mut order = [0usize, 1, 2];
    let sv = [norm(col(&w, 0)), norm(col(&w, 1)), norm(col(&w, 2))];
    order.sort_by(|&i, &j| sv[j].total_cmp(&sv[i]));
    let s = [sv[order[0]], sv[order[1]], sv[order[2]]];
    let tol = 1e-12 * s[0];
    let mut ucols: Vec<[f64; 3]> = Vec::with_capacity(3);
    for (k, &j) in order.iter().enumerate() {
        if s[k] > tol && s[k] > 0.0 {
            let c = col(&w, j);
            ucols.push([c[0] / s[k], c[1] / s[k], c[2] / s[k]]);
        } else {
            let u = match ucols.len() {
                0 => [1.0, 0.0, 0.0],
                1 => orthogonal(ucols[0]),
                _ => cross(ucols[0], ucols[1]),
            };
            ucols.push(u);
        }
    }
    let mut u = [[0.0; 3]; 3];
    let mut vs = [[0.0; 3]; 3];
    for k in 0..3 {
        for r in 0..3 {
            u[r][k] = ucols[k][r];
            vs[r][k] = v[r][order[k]];
        }
    }
    let s = [s[0], s[1], if s[2] > tol { s[2] } else { 0.0 }];
    (u, s, vs)
}

/// Aligns one predicted pose (`[joints, 3]`) onto the ground truth with the similarity transform
/// of MM-Fi's `p_mpjpe`; returns the aligned pose.
pub fn procrustes_align(pred: &[f32], gt: &[f32]) -> Vec<f64> {
    assert_eq!(pred.len(), gt.len());
    assert!(pred.len().is_multiple_of(3) && !pred.is_empty());
    let j = pred.len() / 3;
    let mean = |p: &[f32]| {
        let mut m = [0.0f64; 3];
        for r in p.chunks_exact(3) {
            for c in 0..3 {
                m[c] += r[c] as f64;
            }
        }
        m.map(|v| v / j as f64)
    };
    let (mu_x, mu_y) = (mean(gt), mean(pred));
    let centred = |p: &[f32], mu: [f64; 3]| -> Vec<[f64; 3]> {
        p.chunks_exact(3)
            .map(|r| {
                [
                    r[0] as f64 - mu[0],
                    r[1] as f64 - mu[1],
                    r[2] as f64 - mu[2],
                ]
            })
            .collect()
    };
    let (x0, y0) = (centred(gt, mu_x), centred(pred, mu_y));
    let fro = |m: &[[f64; 3]]| {
        m.iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>())
            .sum::<f64>()
            .sqrt()
    };
    let (norm_x, norm_y) = (fro(&x0), fro(&y0));
    if norm_x == 0.0 || norm_y == 0.0 {
        // Degenerate (see the module doc): scale 0, every joint at the gt centroid.
        return (0..j).flat_map(|_| mu_x).collect();
    }
    // H = X0^T Y0 of the normalised poses.
    let mut h = [[0.0; 3]; 3];
    for (xr, yr) in x0.iter().zip(&y0) {
        for a in 0..3 {
            for b in 0..3 {
                h[a][b] += xr[a] / norm_x * yr[b] / norm_y;
            }
        }
    }
    let (u, mut s, mut v) = svd3(&h);
    let r = matmul(&v, &transpose(&u));
    let sign = if det(&r) < 0.0 { -1.0 } else { 1.0 };
    for row in v.iter_mut() {
        row[2] *= sign;
    }
    s[2] *= sign;
    let r = matmul(&v, &transpose(&u));
    let scale = (s[0] + s[1] + s[2]) * norm_x / norm_y;
    // aligned = scale * pred @ R + (muX - scale * muY @ R)
    let mut out = Vec::with_capacity(3 * j);
    for row in pred.chunks_exact(3) {
        for c in 0..3 {
            let rot: f64 = (0..3).map(|k| (row[k] as f64 - mu_y[k]) * r[k][c]).sum();
            out.push(scale * rot + mu_x[c]);
        }
    }
    out
}

/// Procrustes-aligned MPJPE (PA-MPJPE) for 3D layouts: mean over samples and joints of the
/// distance between the aligned prediction and the ground truth. `None` for no samples or a
/// layout that is not 3D (a 2D Procrustes in 3D would allow mirror images).
pub fn pa_mpjpe(pred: &[f32], gt: &[f32], layout: &PoseLayout) -> Option<f64> {
    if layout.dims != 3 {
        return None;
    }
    let n = crate::check(pred, gt, layout);
    if n == 0 {
        return None;
    }
    let l = layout.pose_len();
    let mut total = 0.0;
    for i in 0..n {
        let (p, g) = (&pred[i * l..(i + 1) * l], &gt[i * l..(i + 1) * l]);
        let a = procrustes_align(p, g);
        total += a
            .chunks_exact(3)
            .zip(g.chunks_exact(3))
            .map(|(a, g)| {
                ((a[0] - g[0] as f64).powi(2)
                    + (a[1] - g[1] as f64).powi(2)
                    + (a[2] - g[2] as f64).powi(2))
                .sqrt()
            })
            .sum::<f64>();
    }
    Some(total / (n * layout.joints) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR: PoseLayout = PoseLayout {
        joints: 4,
        dims: 3,
        torso: (0, 1),
    };

    fn rot(axis: [f64; 3], angle: f64) -> M3 {
        let n = norm(axis);
        let [x, y, z] = axis.map(|v| v / n);
        let (s, c) = angle.sin_cos();
        let t = 1.0 - c;
        [
            [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
        ]
    }

    fn check_svd(a: &M3) {
        let (u, s, v) = svd3(a);
        assert!(s[0] >= s[1] && s[1] >= s[2] && s[2] >= 0.0, "{s:?}");
        let us = [
            [u[0][0] * s[0], u[0][1] * s[1], u[0][2] * s[2]],
            [u[1][0] * s[0], u[1][1] * s[1], u[1][2] * s[2]],
            [u[2][0] * s[0], u[2][1] * s[1], u[2][2] * s[2]],
        ];
        let back = matmul(&us, &transpose(&v));
        for i in 0..3 {
            for j in 0..3 {
                assert!((back[i][j] - a[i][j]).abs() < 1e-12, "{a:?} -> {back:?}");
            }
        }
        for m in [u, v] {
            let mtm = matmul(&transpose(&m), &m);
            for i in 0..3 {
                for j in 0..3 {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((mtm[i][j] - want).abs() < 1e-12, "{mtm:?}");
                }
            }
        }
    }

    #[test]
    fn svd_reconstructs() {
        check_svd(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]]);
        check_svd(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]); // rank 2
        check_svd(&[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]]); // rank 1
        check_svd(&[[0.0; 3]; 3]);
        check_svd(&rot([1.0, 2.0, 0.5], 0.7));
        check_svd(&[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]);
        let (_, s, _) = svd3(&[[3.0, 0.0, 0.0], [0.0, -5.0, 0.0], [0.0, 0.0, 0.0]]);
        assert_eq!(s, [5.0, 3.0, 0.0]);
    }

    /// A non-planar 4-joint pose.
    const GT: [f32; 12] = [
        0.1, 0.2, 0.3, 1.0, -0.5, 0.2, -0.4, 1.1, 0.0, 0.3, 0.4, -0.9,
    ];

    #[test]
    fn similarity_copy_has_zero_error() {
        let r = rot([0.3, -1.0, 2.0], 1.1);
        let (scale, t) = (2.5, [0.7, -3.0, 1.5]);
        let pred: Vec<f32> = GT
            .chunks_exact(3)
            .flat_map(|p| {
                (0..3).map(move |c| {
                    (scale * (0..3).map(|k| r[c][k] * p[k] as f64).sum::<f64>() + t[c]) as f32
                })
            })
            .collect();
        let e = pa_mpjpe(&pred, &GT, &FOUR).unwrap();
        assert!(e < 1e-6, "{e}");
        assert!(crate::mpjpe(&pred, &GT, &FOUR).unwrap() > 1.0);
    }

    #[test]
    fn mirror_image_is_not_aligned() {
        let pred: Vec<f32> = GT
            .chunks_exact(3)
            .flat_map(|p| [-p[0], p[1], p[2]])
            .collect();
        assert!(pa_mpjpe(&pred, &GT, &FOUR).unwrap() > 0.05);
    }

    #[test]
    fn anisotropic_stretch_by_hand() {
        // gt: (+-1, 0, 0), (0, +-1, 0); pred stretches y by 2. Centroids 0, the optimal rotation is
        // the identity and the optimal scale <x,y>/<y,y> = 6/10, so aligned = 0.6 * pred:
        // errors 0.4, 0.4, 0.2, 0.2 => PA-MPJPE 0.3; MPJPE (0 + 0 + 1 + 1) / 4 = 0.5.
        let gt = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0];
        let pred = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, -2.0, 0.0];
        let e = pa_mpjpe(&pred, &gt, &FOUR).unwrap();
        assert!((e - 0.3).abs() < 1e-12, "{e}");
        assert_eq!(crate::mpjpe(&pred, &gt, &FOUR), Some(0.5));
    }

    #[test]
    fn degenerate_samples_are_finite() {
        let gt = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0];
        // Prediction collapsed to one point: aligned to the gt centroid => mean distance 1.
        let pred = [5.0f32; 12];
        assert_eq!(pa_mpjpe(&pred, &gt, &FOUR), Some(1.0));
        // Ground truth collapsed: matched exactly.
        let g = [2.0f32; 12];
        assert_eq!(pa_mpjpe(&gt, &g, &FOUR), Some(0.0));
        // Two samples average.
        let mut p2 = pred.to_vec();
        p2.extend_from_slice(&gt);
        let mut g2 = gt.to_vec();
        g2.extend_from_slice(&g);
        assert_eq!(pa_mpjpe(&p2, &g2, &FOUR), Some(0.5));
        assert_eq!(
            pa_mpjpe(
                &[0.0; 8],
                &[0.0; 8],
                &crate::PoseLayout {
                    joints: 4,
                    dims: 2,
                    torso: (0, 1)
                }
            ),
            None
        );
    }
}
