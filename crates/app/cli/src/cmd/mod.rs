//! One module per subcommand.

pub mod activity;
pub mod bench;
pub mod capture;
pub mod demo;
pub mod eval;
pub mod frontier;
pub mod import_mmfi;
pub mod models;
pub mod predict;
pub mod presence;
pub mod quantize;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod split;
pub mod temporal;
pub mod train;
