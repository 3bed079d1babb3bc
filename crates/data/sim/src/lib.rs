//! Physics-based CSI simulator producing MM-Fi-like packed datasets with exact ground truth.
//!
//! - [`room`]: the four box-room environments (size, walls, Tx/Rx, clutter, camera);
//! - [`body`], [`motion`]: subjects' anthropometry, the kinematic skeleton, the 27 actions;
//! - [`channel`]: the multipath channel (LOS, image-method reflections, clutter, body);
//! - [`sequence`]: one sequence with receiver impairments, preprocessing and labels;
//! - [`generate`]: whole datasets (packed, optionally an MM-Fi-layout tree), in parallel;
//! - [`preview`]: a PNG of one sequence.

pub mod body;
pub mod channel;
pub mod generate;
pub mod geom;
pub mod motion;
pub mod preview;
pub mod profile;
pub mod rng;
pub mod room;
pub mod sequence;

pub use generate::{Plan, Preset};
pub use profile::Profile;
pub use sequence::{SequenceSpec, SimConfig, Simulator};
