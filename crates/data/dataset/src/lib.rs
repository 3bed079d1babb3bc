//! Datasets: the packed on-disk format every stage reads, the MM-Fi importer
//! (MATLAB v5 frames, the official toolbox preprocessing) and the MM-Fi splits.

pub mod mat;
pub mod mat_write;
pub mod mmfi;
pub mod packed;
pub mod preprocess;
pub mod split;
pub mod windows;

pub use packed::{
    DatasetError, DatasetInfo, HardwareProfile, KeypointLayout, PackedDataset, PackedWriter,
};
