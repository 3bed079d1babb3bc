//! The temporal head: the `.rvne` weight blob format and the activity classifier (model,
//! training, streaming inference), the linear window-statistics classifier and sequence decoding.

pub mod features;
pub mod linalg;
pub mod linear;
pub mod model;
pub mod rvne;
pub mod sequence;
pub mod train;
