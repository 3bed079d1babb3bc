//! CSI capture-file readers (Intel 5300, Nexmon, ESP32, Atheros): the first stage of the data flow.
//!
//! Every reader streams frames from any `impl Read` (files larger than memory are fine),
//! reports problems with the byte offset where they start, treats a truncated last record
//! as a reported but non-fatal end (every complete frame before it is kept), and never
//! panics, loops forever or allocates more than the input justifies on any bytes.
//! Whatever a reader reads but does not yield as a frame is counted by reason in its
//! [`Skips`] (`Reader::skips`).
//! Each format also has a writer, used by the round-trip tests.

// Index loops mirror the reference decoders line by line; iterators would hide that.
#![allow(clippy::needless_range_loop)]

pub mod any;
pub mod atheros;
pub mod complex;
pub mod detect;
pub mod error;
pub mod esp32;
pub mod heatmap;
pub mod intel5300;
pub mod nexmon;
pub mod skips;
mod source;

pub use complex::Complex;
pub use detect::{detect, Format};
pub use error::{CaptureError, ErrorKind, Result};
pub use skips::Skips;
