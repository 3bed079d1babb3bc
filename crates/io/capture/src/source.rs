//! A byte source over any `impl Read` that counts the offset, reads fixed-size pieces
//! without trusting announced lengths for allocation, and tells a clean end of input
//! from an end inside a record.

use crate::error::{CaptureError, Result};
use std::io::{BufReader, Read};

pub(crate) struct Source<R> {
    inner: BufReader<R>,
    pos: u64,
}

/// What a fixed-size read found.
pub(crate) enum Fill {
    /// The buffer was filled.
    Full,
    /// The input ended before the first byte: a clean end.
    Eof,
    /// The input ended after this many bytes.
    Partial(usize),
}

impl<R: Read> Source<R> {
    pub fn new(inner: R) -> Self {
        Source {
            inner: BufReader::with_capacity(64 * 1024, inner),
            pos: 0,
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Fills `buf` as far as the input allows.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<Fill> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CaptureError::io(self.pos, e)),
            }
        }
        Ok(if got == buf.len() {
            Fill::Full
        } else if got == 0 {
            Fill::Eof
        } else {
            Fill::Partial(got)
        })
    }

    /// Reads a record's fixed-size header: `Ok(true)` when `buf` was filled, `Ok(false)` at a
    /// clean end of input, and a truncation error at the record's first byte when the input
    /// ends inside the header.
    pub fn record_header(&mut self, buf: &mut [u8]) -> Result<bool> {
        let start = self.pos;
        match self.fill(buf)? {
            Fill::Full => Ok(true),
            Fill::Eof => Ok(false),
            Fill::Partial(k) => Err(CaptureError::truncated(start, buf.len() as u64, k as u64)),
        }
    }

    /// Reads exactly `n` bytes of a record that started at `record_start` into `out`
    /// (cleared first). `n` is bounded by the caller (at most a u16 or a checked u32), and
    /// `out` grows in chunks, so a lying length costs no more memory than the input has.
    pub fn read_record_body(
        &mut self,
        n: usize,
        out: &mut Vec<u8>,
        record_start: u64,
    ) -> Result<()> {
        out.clear();
        let mut chunk = [0u8; 8192];
        let body_start = self.pos;
        while out.len() < n {
            let want = (n - out.len()).min(chunk.len());
            match self.fill(&mut chunk[..want])? {
                Fill::Full => out.extend_from_slice(&chunk[..want]),
                Fill::Eof => {
                    return Err(CaptureError::truncated(
                        record_start,
                        n as u64 + (body_start - record_start),
                        out.len() as u64 + (body_start - record_start),
                    ))
                }
                Fill::Partial(k) => {
                    out.extend_from_slice(&chunk[..k]);
                    return Err(CaptureError::truncated(
                        record_start,
                        n as u64 + (body_start - record_start),
                        out.len() as u64 + (body_start - record_start),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Skips `n` bytes of a record that started at `record_start`.
    pub fn skip(&mut self, n: u64, record_start: u64) -> Result<()> {
        let body_start = self.pos;
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| CaptureError::io(self.pos, e))?;
        self.pos += copied;
        if copied < n {
            return Err(CaptureError::truncated(
                record_start,
                n + (body_start - record_start),
                copied + (body_start - record_start),
            ));
        }
        Ok(())
    }

    /// Reads one line (without the trailing `\n` / `\r\n`) of at most `limit` bytes.
    /// Returns `None` at a clean end of input, else whether a newline ended the line.
    pub fn read_line(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<Option<bool>> {
        out.clear();
        let start = self.pos;
        let mut byte = [0u8; 1];
        let mut newline = false;
        loop {
            match self.inner.read(&mut byte) {
                Ok(0) => {
                    if out.is_empty() {
                        return Ok(None);
                    }
                    break;
                }
                Ok(_) => {
                    self.pos += 1;
                    if byte[0] == b'\n' {
                        newline = true;
                        break;
                    }
                    if out.len() >= limit {
                        return Err(CaptureError::fatal(
                            start,
                            format!("line longer than {limit} bytes (not a text capture?)"),
                        ));
                    }
                    out.push(byte[0]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CaptureError::io(self.pos, e)),
            }
        }
        if out.last() == Some(&b'\r') {
            out.pop();
        }
        Ok(Some(newline))
    }
}
