//! Training the pose models on CPU: AdamW with a cosine schedule, EMA of the weights,
//! mixup, SmoothL1, test-time augmentation, atomic checkpoints with exact resume, plots.

pub mod augment;
pub mod checkpoint;
pub mod optim;
pub mod plots;
pub mod synthetic;
pub mod trainer;

pub use augment::View;

/// torso-PCK@k of `[n, 17, 2]` predictions (COCO-17 2D), `None` if no frame has a torso.
pub fn torso_pck(pred: &[f32], gt: &[f32], k: f64) -> Option<f64> {
    csipose_metrics::torso_pck(pred, gt, &csipose_metrics::PoseLayout::COCO17_2D, k).pck
}
pub use trainer::{fit, predict, FitSummary, Progress, Quiet, TrainOptions, Trainer};
