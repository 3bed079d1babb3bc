//! The temporal head: the `.rvne` weight blob format and the activity classifier (model,
//! training, streaming inference).

pub mod features;
pub mod linalg;
pub mod model;
pub mod rvne;
pub mod train;
