//! Pose metrics: torso-PCK@k and its curve, per-joint PCK, bounding-box PCK, MPJPE and
//! PA-MPJPE (Procrustes alignment with scale, as MM-Fi's `evaluate.py`).
//!
//! Poses are flat `f32` slices, `[samples, joints, dims]` row-major; a [`PoseLayout`] says how
//! many joints and dimensions a pose has and which two joints span the torso.
//!
//! Degenerate normalisers (documented rule, never NaN): a sample whose ground-truth torso
//! (or bounding box, for bbox-PCK) has length zero (or is not finite) has no threshold; it is
//! left out of that PCK and counted in `degenerate`. A PCK over no usable sample is `None`.

pub mod procrustes;

pub use procrustes::{pa_mpjpe, procrustes_align, svd3};
use serde::Serialize;

/// How one pose is laid out and which joints define the torso.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoseLayout {
    pub joints: usize,
    pub dims: usize,
    /// Torso joints `(right shoulder, left hip)`.
    pub torso: (usize, usize),
}

impl PoseLayout {
    /// COCO-17 2D: right shoulder 6, left hip 11 ([`csipose_spec::coco::TORSO`]).
    pub const COCO17_2D: PoseLayout = PoseLayout {
        joints: csipose_spec::coco::JOINTS,
        dims: 2,
        torso: csipose_spec::coco::TORSO,
    };
    /// Human3.6M-17 3D: right shoulder 14, left hip 4.
    pub const H36M17_3D: PoseLayout = PoseLayout {
        joints: 17,
        dims: 3,
        torso: (14, 4),
    };
    /// Values per pose.
    pub fn pose_len(&self) -> usize {
        self.joints * self.dims
    }
}

/// What scales the PCK threshold of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PckNorm {
    /// `||gt[torso.0] - gt[torso.1]||`.
    Torso,
    /// `max(width, height[, depth])` of the ground-truth keypoints' bounding box.
    BoundingBox,
}

/// PCK at one threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pck {
    pub k: f64,
    pub norm: PckNorm,
    /// Fraction of joints of usable samples within `k * normaliser`; `None` if no sample was usable.
    pub pck: Option<f64>,
    /// Per joint, over usable samples.
    pub per_joint: Vec<Option<f64>>,
    /// Samples with a usable normaliser.
    pub samples: usize,
    /// Samples left out because their normaliser is zero or not finite.
    pub degenerate: usize,
}

fn check(pred: &[f32], gt: &[f32], layout: &PoseLayout) -> usize {
    assert_eq!(
        pred.len(),
        gt.len(),
        "predictions and ground truth differ in length"
    );
    let l = layout.pose_len();
    assert!(
        l > 0 && gt.len().is_multiple_of(l),
        "length {} is not a whole number of poses",
        gt.len()
    );
    gt.len() / l
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = *x as f64 - *y as f64;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// The threshold scale of one ground-truth pose, `None` when degenerate.
pub fn normaliser(gt_pose: &[f32], layout: &PoseLayout, norm: PckNorm) -> Option<f64> {
    let d = layout.dims;
    let joint = |j: usize| &gt_pose[j * d..(j + 1) * d];
    let v = match norm {
        PckNorm::Torso => dist(joint(layout.torso.0), joint(layout.torso.1)),
        PckNorm::BoundingBox => (0..d)
            .map(|c| {
                let vals = (0..layout.joints).map(|j| gt_pose[j * d + c] as f64);
                let lo = vals.clone().fold(f64::INFINITY, f64::min);
                let hi = vals.fold(f64::NEG_INFINITY, f64::max);
                hi - lo
            })
            .fold(0.0, f64::max),
    };
    (v.is_finite() && v > 0.0).then_some(v)
}

/// PCK at every threshold of `ks` (one pass over the data). A joint is correct when
/// `||pred - gt|| <= k * normaliser`.
pub fn pck_curve(
    pred: &[f32],
    gt: &[f32],
    layout: &PoseLayout,
    norm: PckNorm,
    ks: &[f64],
) -> Vec<Pck> {
    let n = check(pred, gt, layout);
    let (l, d, jn) = (layout.pose_len(), layout.dims, layout.joints);
    let mut correct = vec![vec![0usize; jn]; ks.len()];
    let mut samples = 0;
    let mut degenerate = 0;
    for i in 0..n {
        let (p, g) = (&pred[i * l..(i + 1) * l], &gt[i * l..(i + 1) * l]);
        let Some(scale) = normaliser(g, layout, norm) else {
            degenerate += 1;
            continue;
        };
        samples += 1;
        for j in 0..jn {
            let e = dist(&p[j * d..(j + 1) * d], &g[j * d..(j + 1) * d]);
            for (ki, k) in ks.iter().enumerate() {
                if e <= k * scale {
                    correct[ki][j] += 1;
                }
            }
        }
    }
    ks.iter()
        .zip(correct)
        .map(|(&k, c)| {
            let frac = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
            Pck {
                k,
                norm,
                pck: frac(c.iter().sum(), samples * jn),
                per_joint: c.iter().map(|&x| frac(x, samples)).collect(),
                samples,
                degenerate,
            }
        })
        .collect()
}

/// PCK at one threshold `k`.
pub fn pck(pred: &[f32], gt: &[f32], layout: &PoseLayout, norm: PckNorm, k: f64) -> Pck {
    pck_curve(pred, gt, layout, norm, &[k]).remove(0)
}

/// torso-PCK@k (the project's headline metric; default k = 0.2).
pub fn torso_pck(pred: &[f32], gt: &[f32], layout: &PoseLayout, k: f64) -> Pck {
    pck(pred, gt, layout, PckNorm::Torso, k)
}

/// Bounding-box-normalised PCK@k (threshold `k * max side of the gt keypoints' box`).
pub fn bbox_pck(pred: &[f32], gt: &[f32], layout: &PoseLayout, k: f64) -> Pck {
    pck(pred, gt, layout, PckNorm::BoundingBox, k)
}

/// `steps + 1` evenly spaced thresholds from 0 to `max` (the curve uses 0..=0.5 in 51 points).
pub fn thresholds(max: f64, steps: usize) -> Vec<f64> {
    (0..=steps)
        .map(|i| max * i as f64 / steps.max(1) as f64)
        .collect()
}

/// Mean per-joint position error: the mean over samples and joints of `||pred - gt||`, in the
/// keypoints' units. `None` for no samples.
pub fn mpjpe(pred: &[f32], gt: &[f32], layout: &PoseLayout) -> Option<f64> {
    let n = check(pred, gt, layout);
    let d = layout.dims;
    let total: f64 = pred
        .chunks_exact(d)
        .zip(gt.chunks_exact(d))
        .map(|(p, g)| dist(p, g))
        .sum();
    (n > 0).then(|| total / (n * layout.joints) as f64)
}

/// Per-joint mean position error.
pub fn mpjpe_per_joint(pred: &[f32], gt: &[f32], layout: &PoseLayout) -> Vec<Option<f64>> {
    let n = check(pred, gt, layout);
    let d = layout.dims;
    let mut sum = vec![0.0; layout.joints];
    for (i, (p, g)) in pred.chunks_exact(d).zip(gt.chunks_exact(d)).enumerate() {
        sum[i % layout.joints] += dist(p, g);
    }
    sum.into_iter()
        .map(|s| (n > 0).then(|| s / n as f64))
        .collect()
}

/// Every metric of one evaluation, as `csipose eval` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub samples: usize,
    /// torso-PCK at the chosen k.
    pub torso_pck: Pck,
    /// Bounding-box-normalised PCK at the chosen k.
    pub bbox_pck: Pck,
    /// torso-PCK for k = 0, 0.01, ..., 0.5 (51 points).
    pub torso_pck_curve: Vec<Pck>,
    /// bbox-PCK for k = 0, 0.01, ..., 0.5.
    pub bbox_pck_curve: Vec<Pck>,
    /// MPJPE, PA-MPJPE and per-joint MPJPE: 3D layouts only (`None` for 2D).
    pub mpjpe: Option<f64>,
    pub pa_mpjpe: Option<f64>,
    pub mpjpe_per_joint: Option<Vec<Option<f64>>>,
}

/// Computes every metric for predictions `pred` against `gt` (both `[samples, joints, dims]`).
pub fn evaluate(pred: &[f32], gt: &[f32], layout: &PoseLayout, k: f64) -> Evaluation {
    let samples = check(pred, gt, layout);
    let ks = thresholds(0.5, 50);
    let is3d = layout.dims == 3;
    Evaluation {
        samples,
        torso_pck: torso_pck(pred, gt, layout, k),
        bbox_pck: bbox_pck(pred, gt, layout, k),
        torso_pck_curve: pck_curve(pred, gt, layout, PckNorm::Torso, &ks),
        bbox_pck_curve: pck_curve(pred, gt, layout, PckNorm::BoundingBox, &ks),
        mpjpe: if is3d { mpjpe(pred, gt, layout) } else { None },
        pa_mpjpe: pa_mpjpe(pred, gt, layout),
        mpjpe_per_joint: is3d.then(|| mpjpe_per_joint(pred, gt, layout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluate_collects_everything() {
        let gt = [0.0, 0.0, 0.0, 10.0, 5.0, 5.0];
        let pred = [0.0, 0.0, 0.0, 12.0, 8.0, 5.0];
        let e = evaluate(&pred, &gt, &TINY, 0.2);
        assert_eq!(e.samples, 1);
        assert_eq!(e.torso_pck.pck, Some(2.0 / 3.0));
        assert_eq!(e.torso_pck_curve.len(), 51);
        assert_eq!(e.torso_pck_curve[20].pck, e.torso_pck.pck);
        assert_eq!(e.bbox_pck.norm, PckNorm::BoundingBox);
        assert_eq!((e.mpjpe, e.pa_mpjpe, e.mpjpe_per_joint), (None, None, None));
        let g3 = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0];
        let p3 = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, -2.0, 0.0];
        let l3 = PoseLayout {
            joints: 4,
            dims: 3,
            torso: (0, 1),
        };
        let e = evaluate(&p3, &g3, &l3, 0.2);
        assert_eq!(e.mpjpe, Some(0.5));
        assert!((e.pa_mpjpe.unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(
            e.mpjpe_per_joint,
            Some(vec![Some(0.0), Some(0.0), Some(1.0), Some(1.0)])
        );
    }

    /// A 3-joint 2D layout: torso = joints 0 and 1.
    const TINY: PoseLayout = PoseLayout {
        joints: 3,
        dims: 2,
        torso: (0, 1),
    };

    #[test]
    fn torso_pck_by_hand() {
        // gt torso: (0,0)-(0,10) => length 10; k = 0.2 => threshold 2.
        let gt = [0.0, 0.0, 0.0, 10.0, 5.0, 5.0];
        // errors: 0, 2 (exactly at threshold: correct), 3 (wrong)
        let pred = [0.0, 0.0, 0.0, 12.0, 8.0, 5.0];
        let r = torso_pck(&pred, &gt, &TINY, 0.2);
        assert_eq!(r.pck, Some(2.0 / 3.0));
        assert_eq!(r.per_joint, vec![Some(1.0), Some(1.0), Some(0.0)]);
        assert_eq!((r.samples, r.degenerate), (1, 0));
        // k = 0.3 => threshold 3: all correct; k = 0 => only the exact joint.
        assert_eq!(torso_pck(&pred, &gt, &TINY, 0.3).pck, Some(1.0));
        assert_eq!(torso_pck(&pred, &gt, &TINY, 0.0).pck, Some(1.0 / 3.0));
    }

    #[test]
    fn degenerate_torso_is_left_out_and_counted() {
        // sample 0 as above; sample 1 has shoulder == hip.
        let gt = [
            0.0, 0.0, 0.0, 10.0, 5.0, 5.0, //
            1.0, 1.0, 1.0, 1.0, 4.0, 4.0,
        ];
        let pred = [
            0.0, 0.0, 0.0, 12.0, 8.0, 5.0, //
            1.0, 1.0, 1.0, 1.0, 4.0, 4.0,
        ];
        let r = torso_pck(&pred, &gt, &TINY, 0.2);
        assert_eq!(r.pck, Some(2.0 / 3.0));
        assert_eq!((r.samples, r.degenerate), (1, 1));
        // All degenerate: None, not NaN.
        let r = torso_pck(&pred[6..], &gt[6..], &TINY, 0.2);
        assert_eq!(r.pck, None);
        assert_eq!(r.per_joint, vec![None, None, None]);
        assert_eq!((r.samples, r.degenerate), (0, 1));
        // Non-finite torso counts as degenerate too.
        let gt_nan = [0.0, 0.0, f32::INFINITY, 10.0, 5.0, 5.0];
        assert_eq!(torso_pck(&pred[..6], &gt_nan, &TINY, 0.2).degenerate, 1);
    }

    #[test]
    fn bbox_pck_by_hand() {
        // gt box: x in [0, 5], y in [0, 10] => max side 10; k = 0.2 => threshold 2.
        let gt = [0.0, 0.0, 0.0, 10.0, 5.0, 5.0];
        let pred = [0.0, 1.5, 0.0, 12.5, 5.0, 5.0];
        let r = bbox_pck(&pred, &gt, &TINY, 0.2);
        assert_eq!(r.norm, PckNorm::BoundingBox);
        assert_eq!(r.per_joint, vec![Some(1.0), Some(0.0), Some(1.0)]);
        // All joints at one point: degenerate box.
        let g = [3.0; 6];
        let r = bbox_pck(&g, &g, &TINY, 0.2);
        assert_eq!((r.pck, r.degenerate), (None, 1));
    }

    #[test]
    fn curve_is_monotone_and_matches_single_points() {
        let gt = [0.0, 0.0, 0.0, 10.0, 5.0, 5.0, 1.0, 0.0, 1.0, 4.0, 2.0, 2.0];
        let pred = [0.5, 0.0, 0.0, 12.0, 8.0, 5.0, 1.0, 1.0, 1.0, 4.0, 3.0, 2.0];
        let ks = thresholds(0.5, 50);
        assert_eq!(ks.len(), 51);
        assert!((ks[20] - 0.2).abs() < 1e-12);
        let curve = pck_curve(&pred, &gt, &TINY, PckNorm::Torso, &ks);
        for w in curve.windows(2) {
            assert!(w[1].pck.unwrap() >= w[0].pck.unwrap());
        }
        for (i, c) in curve.iter().enumerate().step_by(7) {
            assert_eq!(c.pck, torso_pck(&pred, &gt, &TINY, ks[i]).pck);
        }
        // sample 1: torso (1,0)-(1,4) => 4; errors 1, 0, 1 => correct at k >= 0.25.
        // sample 0: errors 0.5, 2, 3 with torso 10 => thresholds 0.05, 0.2, 0.3.
        assert_eq!(curve[50].pck, Some(1.0));
        assert_eq!(curve[25].pck, Some(5.0 / 6.0)); // k = 0.25: all but sample 0's joint 2
        assert_eq!(curve[0].pck, Some(1.0 / 6.0));
    }

    #[test]
    fn mpjpe_by_hand() {
        let gt = [0.0, 0.0, 0.0, 10.0, 5.0, 5.0];
        let pred = [3.0, 4.0, 0.0, 12.0, 5.0, 5.0];
        // errors 5, 2, 0
        assert_eq!(mpjpe(&pred, &gt, &TINY), Some(7.0 / 3.0));
        assert_eq!(
            mpjpe_per_joint(&pred, &gt, &TINY),
            vec![Some(5.0), Some(2.0), Some(0.0)]
        );
        assert_eq!(mpjpe(&[], &[], &TINY), None);
    }

    #[test]
    fn standard_layouts() {
        assert_eq!(PoseLayout::COCO17_2D.torso, (6, 11));
        assert_eq!(PoseLayout::H36M17_3D.torso, (14, 4));
        assert_eq!(PoseLayout::H36M17_3D.pose_len(), 51);
    }
}
