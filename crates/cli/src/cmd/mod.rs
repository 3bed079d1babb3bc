//! One module per subcommand.

pub mod demo;
pub mod eval;
pub mod import_mmfi;
pub mod simulate;
pub mod split;
