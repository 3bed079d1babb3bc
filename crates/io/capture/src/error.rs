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
    /// The bytes do not form a valid record; the records after it can still be read.
    Invalid(String),
    /// The input cannot be read on from here: not this format at all (a file-level magic
    /// or header error), or the record framing is lost. The reader ends after it, so this
    /// can never be skipped.
    Fatal(String),
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
    pub fn fatal(offset: u64, msg: impl Into<String>) -> Self {
        CaptureError {
            offset,
            kind: ErrorKind::Fatal(msg.into()),
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
    /// True when the reader cannot go on past this error (a file-level error, lost framing,
    /// a read error): skipping it would silently lose the rest of the input.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, ErrorKind::Fatal(_) | ErrorKind::Io(_))
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
            ErrorKind::Invalid(m) | ErrorKind::Fatal(m) => write!(f, "byte {}: {m}", self.offset),
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
