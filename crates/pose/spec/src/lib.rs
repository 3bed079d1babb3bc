//! The one description of the csipose pose network, shared by the training engine
//! (`csipose-model`), the quantizer, the `no_std` runtime, the simulator and the metrics:
//!
//! - [`config`]: the architecture's hyper-parameters ([`PoseConfig`]), their bounds
//!   ([`PoseConfig::validate`], applied to every configuration read from a file or built
//!   from options), parameter and FLOP counts;
//! - [`tensors`]: every parameter tensor in order, with its PyTorch-style name, shape and
//!   orientation ([`TensorSlot`]);
//! - [`coco`]: the COCO-17 keypoints, the skeleton graph's bones and adjacency, the drawn
//!   skeleton and the torso joints;
//! - [`act`]: the numeric definition of the layers that must agree bit for bit between
//!   engine and runtime: LayerNorm and standardisation epsilons, the GELU (tanh form) and its
//!   rational tanh, the graph head's correction scale.
//!
//! `no_std`, no allocation, no dependencies.
#![no_std]

pub mod act;
pub mod coco;
pub mod config;
pub mod tensors;

pub use config::{ConfigError, PoseConfig};
pub use tensors::TensorSlot;
