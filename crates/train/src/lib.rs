//! Training the pose models on CPU: AdamW with a cosine schedule, EMA of the weights,
//! mixup, SmoothL1, test-time augmentation, atomic checkpoints with exact resume, plots.

pub mod augment;
pub mod checkpoint;
pub mod optim;
pub mod pck;
pub mod plots;
pub mod synthetic;
pub mod trainer;

pub use augment::View;
pub use trainer::{fit, predict, FitSummary, Progress, Quiet, TrainOptions, Trainer};
