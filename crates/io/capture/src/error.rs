//! The one error type of the capture readers: every error carries the byte offset where
//! the problem starts, and says whether it is a truncated last record (reported, not fatal).

use std::fmt;

/// What went wrong at [`CaptureError::offset`].
#[derive(Debug)]
pub enum ErrorKind {
    /// The underlying reader failed.
    Io(std::io::Error),
    /// The input ended inside a record: `needed` bytes were announced, `got` were there.
    /// Every complete frame before it has already been yielded.
    Truncated { needed: u64, got: u64 },
    /// The bytes do not form a valid record.
    Invalid(String),
}

/// A reader error, with the byte offset (from the start of the input) of the bad record.
#[derive(Debug)]
pub struct CaptureError {
    pub offset: u64,
    pub kind: ErrorKind,
}

impl CaptureError {
    pub fn invalid(offset: u64, msg: impl Into<String>) -> Self {
        CaptureError {
            offset,
            kind: ErrorKind::Invalid(msg.into()),
        }
    }
    pub fn truncated(offset: u64, needed: u64, got: u64) -> Self {
        CaptureError {
            offset,
            kind: ErrorKind::Truncated { needed, got },
        }
    }
    pub fn io(offset: u64, e: std::io::Error) -> Self {
        CaptureError {
            offset,
            kind: ErrorKind::Io(e),
        }
    }
    /// True when the input simply ended inside the last record: the frames before it are good.
    pub fn is_truncation(&self) -> bool {
        matches!(self.kind, ErrorKind::Truncated { .. })
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "byte {}: read error: {e}", self.offset),
            ErrorKind::Truncated { needed, got } => write!(
                f,
                "byte {}: truncated record: {needed} bytes announced, only {got} present",
                self.offset
            ),
            ErrorKind::Invalid(m) => write!(f, "byte {}: {m}", self.offset),
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, CaptureError>;
