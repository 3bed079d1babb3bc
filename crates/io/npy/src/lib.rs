//! NumPy `.npy` / `.npz` files: the array container every csipose stage exchanges.
//!
//! Owns the `.npy` header format (versions 1–3), reading any little- or big-endian
//! numeric dtype into `f64`/`f32`/`i64` and fixed-width text (`<U15`) into `String`s, memory-mapped zero-copy views of
//! little-endian `f32`/`i32` arrays (the packed-dataset fast path), `.npz`
//! archives, and atomic writing (temporary name, then rename).

mod header;
mod npz;
mod read;
mod write;

pub use header::{parse_header, DType, Header, Kind};
pub use npz::Npz;
pub use read::{
    from_bytes, read, read_strings, strings_from_bytes, Array, MmapF32, MmapI32, Scalar,
};
pub use write::{write, write_to, AtomicFile, Element, NpyStreamWriter};

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a `.npy` file.
/// Every variant names the file (or archive member) and, where it applies, the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: byte {offset}: {msg}")]
    Format {
        path: PathBuf,
        offset: u64,
        msg: String,
    },
}

impl NpyError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NpyError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, offset: u64, msg: impl Into<String>) -> Self {
        NpyError::Format {
            path: path.into(),
            offset,
            msg: msg.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, NpyError>;
