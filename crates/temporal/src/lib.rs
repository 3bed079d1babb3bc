//! The temporal head: the `.rvne` weight blob format and the activity classifier.

pub mod rvne;
