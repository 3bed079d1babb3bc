//! The pose model family (nano … flagship): configurations with PyTorch-style tensor names,
//! kernels with explicit forward and backward passes over the engine's own packed matrix product (`gemm`: AVX-512, AVX2+FMA and portable micro-kernels behind one tiling loop) (`layers`), the network's
//! layers as named parts with their saved activations (`blocks`: embedding, encoder layer,
//! attention pooling, keypoint head, graph refinement), the whole model's batched
//! forward/backward as a sequence of those parts (`model`), the vectorised dropout mask
//! (`dropout`), and the seeded RNG the engine and training share.

mod attention;
mod blocks;
pub mod config;
pub mod dropout;
pub mod gemm;
pub mod layers;
pub mod model;
pub mod rng;

pub use config::{ModelConfig, TensorSpec, JOINTS, PRESETS, PUBLISHED};
pub use model::{Model, Workspace, OUTPUTS};
pub use rng::Rng;
