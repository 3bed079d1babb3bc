//! The pose model family (nano … flagship): configurations with PyTorch-style tensor names,
//! layers with explicit forward and backward passes over `gemm`, the whole model's batched
//! forward/backward, and the seeded RNG the engine and training share.

mod blocks;
pub mod config;
pub mod layers;
pub mod model;
pub mod rng;

pub use config::{ModelConfig, TensorSpec, JOINTS, PRESETS, PUBLISHED};
pub use model::{Model, Workspace, OUTPUTS};
pub use rng::Rng;
