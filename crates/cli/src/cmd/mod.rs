//! One module per subcommand.

pub mod demo;
pub mod eval;
pub mod import_mmfi;
pub mod models;
pub mod predict;
pub mod split;
pub mod train;
