//! Splits any byte stream (stdin, a serial device, TCP) into lines with a maximum line
//! length: a longer line is dropped up to its next newline and reported once as
//! [`Reject::TooLarge`], so memory stays bounded whatever arrives.

use crate::reject::{Reject, Rejected};

/// The default maximum line length (bytes, without the newline).
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// What [`LineSplitter`] hands out: a complete line (without `\n` or `\r\n`) or an
/// over-long line's rejection.
pub type LineResult<'a> = Result<&'a [u8], Rejected>;

/// Incremental line splitter with a bounded buffer.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    discarding: bool,
    overlong: u64,
}

impl LineSplitter {
    /// `max_line`: the longest line kept (at least 1).
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            max: max_line.max(1),
            buf: Vec::new(),
            discarding: false,
            overlong: 0,
        }
    }
    /// Over-long lines dropped so far.
    pub fn overlong(&self) -> u64 {
        self.overlong
    }
    /// Bytes held for the line in progress.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn emit(&mut self, f: &mut impl FnMut(LineResult<'_>)) {
        let mut line: &[u8] = &self.buf;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        f(Ok(line));
        self.buf.clear();
    }

    fn too_long(&mut self, f: &mut impl FnMut(LineResult<'_>)) {
        self.overlong += 1;
        self.discarding = true;
        self.buf.clear();
        f(Err(Rejected::new(
            None,
            Reject::TooLarge,
            format!("line longer than {} bytes dropped", self.max),
        )));
    }

    /// Feeds bytes; calls `f` for every line completed (and every over-long line).
    pub fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(LineResult<'_>)) {
        while !data.is_empty() {
            let nl = data.iter().position(|&c| c == b'\n');
            let (chunk, rest, ended) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if self.discarding {
                if ended {
                    self.discarding = false;
                }
                continue;
            }
            // +1: a line of exactly `max` bytes may still carry a '\r'.
            if self.buf.len() + chunk.len() > self.max + 1 {
                self.too_long(&mut f);
                if ended {
                    self.discarding = false;
                }
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if ended {
                if self.buf.len() > self.max && self.buf.last() != Some(&b'\r') {
                    self.buf.clear();
                    self.overlong += 1;
                    f(Err(Rejected::new(
                        None,
                        Reject::TooLarge,
                        format!("line longer than {} bytes dropped", self.max),
                    )));
                } else {
                    self.emit(&mut f);
                }
            }
        }
    }

    /// Ends the stream: a last line without a newline is handed out (if not empty).
    pub fn finish(&mut self, mut f: impl FnMut(LineResult<'_>)) {
        if !self.discarding && !self.buf.is_empty() {
            self.emit(&mut f);
        }
        self.buf.clear();
        self.discarding = false;
    }
}

/// Reads `input` to its end (stdin, a serial device already configured with `stty`, a
/// TCP stream), splits it into lines of at most `max_line` bytes and decodes each as an
/// ESP32 `CSI_DATA` row, calling `f` with every outcome: frames, and rejections for
/// over-long lines, console noise and bad rows alike. Empty lines carry nothing and are
/// skipped. Returns the first read error (an interrupted read is retried).
pub fn decode_stream<R: std::io::Read>(
    mut input: R,
    max_line: usize,
    mut f: impl FnMut(Result<crate::CsiFrame, Rejected>),
) -> std::io::Result<()> {
    let mut split = LineSplitter::new(max_line);
    let mut buf = vec![0u8; 64 * 1024];
    let mut handle = |l: LineResult<'_>| match l {
        Ok(line) if line.iter().all(|c| c.is_ascii_whitespace()) => {}
        Ok(line) => f(crate::decode::decode_line(line)),
        Err(r) => f(Err(r)),
    };
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => split.feed(&buf[..n], &mut handle),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    split.finish(&mut handle);
    Ok(())
}
