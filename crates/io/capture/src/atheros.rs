//! Atheros CSI Tool `.dat` files (either endianness): the streaming reader, the 10-bit
//! CSI unpacking as csiread 1.4.1 does it, and a writer for round-trip tests.
//!
//! A record is a `u16` length, a 25-byte status header (u64 timestamp, u16 csi_len,
//! u16 channel, err_info, noise_floor, rate, bandwidth, num_tones, nr, nc, rssi, rssi_1..3,
//! u16 payload_len), `csi_len` bytes of packed CSI and `payload_len` bytes of payload.
//! Multi-byte header fields follow the file's endianness; the CSI bit stream is read as
//! little-endian 16-bit words in either case. For each tone, rx and tx (tx fastest) the
//! stream holds a 10-bit two's-complement imaginary part, then the real part.

use crate::complex::Complex;
use crate::error::{CaptureError, Result};
use crate::skips::Skips;
use crate::source::Source;
use std::io::{Read, Write};

/// Status header bytes after the length field.
pub const HEADER: usize = 25;
/// The most receive or transmit antennas the tool reports.
pub const MAX_ANTENNAS: usize = 3;

/// Byte order of the header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }
    fn u64(self, b: [u8; 8]) -> u64 {
        match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        }
    }
    fn put16(self, v: u16) -> [u8; 2] {
        match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        }
    }
    fn put64(self, v: u64) -> [u8; 8] {
        match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        }
    }
}

/// One Atheros CSI record.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Byte offset of the record (its length field) in the input.
    pub offset: u64,
    pub timestamp: u64,
    pub csi_len: u16,
    pub channel: u16,
    pub err_info: u8,
    pub noise_floor: u8,
    pub rate: u8,
    pub bandwidth: u8,
    pub num_tones: u8,
    pub nr: u8,
    pub nc: u8,
    pub rssi: u8,
    pub rssi_1: u8,
    pub rssi_2: u8,
    pub rssi_3: u8,
    pub payload_len: u16,
    /// CSI `[tone][rx][tx]` flattened: index `(tone * nr + rx) * nc + tx`.
    pub csi: Vec<Complex>,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The CSI value of one tone, receive and transmit antenna.
    pub fn at(&self, tone: usize, rx: usize, tx: usize) -> Complex {
        self.csi[(tone * self.nr as usize + rx) * self.nc as usize + tx]
    }
}

/// Guesses the endianness from the first record's length field, which equals
/// `25 + csi_len + payload_len`. `None` if neither byte order is consistent.
pub fn detect_endian(head: &[u8]) -> Option<Endian> {
    if head.len() < 2 + HEADER {
        return None;
    }
    [Endian::Little, Endian::Big].into_iter().find(|&e| {
        let field = e.u16([head[0], head[1]]) as usize;
        let csi = e.u16([head[10], head[11]]) as usize;
        let pl = e.u16([head[25], head[26]]) as usize;
        field == HEADER + csi + pl && head[2 + 17] as usize <= MAX_ANTENNAS
    })
}

/// Unpacks `tones * nr * nc` CSI values (csiread's loop order: tone, rx, tx).
fn unpack_csi(bytes: &[u8], tones: usize, nr: usize, nc: usize) -> Vec<Complex> {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0) as u64;
    let mut out = Vec::with_capacity(tones * nr * nc);
    let mut idx = 2;
    let mut current: u64 = byte(0) | (byte(1) << 8);
    let mut bits_left: u32 = 16;
    let next10 = |current: &mut u64, bits_left: &mut u32, idx: &mut usize| -> f64 {
        if *bits_left < 10 {
            let h = byte(*idx) | (byte(*idx + 1) << 8);
            *idx += 2;
            *current |= h << *bits_left;
            *bits_left += 16;
        }
        let mut v = (*current & 0x3ff) as i64;
        if v & (1 << 9) != 0 {
            v -= 1 << 10;
        }
        *bits_left -= 10;
        *current >>= 10;
        v as f64
    };
    for _ in 0..tones * nr * nc {
        let im = next10(&mut current, &mut bits_left, &mut idx);
        let re = next10(&mut current, &mut bits_left, &mut idx);
        out.push(Complex::new(re, im));
    }
    out
}

/// Bytes of packed CSI needed for `tones * nr * nc` values.
pub fn csi_bytes_needed(tones: usize, nr: usize, nc: usize) -> usize {
    (tones * nr * nc * 20).div_ceil(16) * 2
}

/// Streams the records of an Atheros CSI Tool file.
///
/// A record that is inconsistent (length fields disagree, too many antennas, CSI shorter
/// than its shape needs) yields an `Err` with its offset and reading resumes after it; a
/// truncated last record yields one `Err` with [`CaptureError::is_truncation`] and ends.
/// Every record not yielded as a frame is counted by reason in [`Reader::skips`].
pub struct Reader<R> {
    src: Source<R>,
    endian: Option<Endian>,
    buf: Vec<u8>,
    done: bool,
    skips: Skips,
}

/// [`Reader::skips`] reason for a record that yielded an error.
pub const SKIP_BAD_RECORD: &str = "inconsistent records";

impl<R: Read> Reader<R> {
    /// A reader that detects the endianness from the first record.
    pub fn new(input: R) -> Self {
        Reader {
            src: Source::new(input),
            endian: None,
            buf: Vec::new(),
            done: false,
            skips: Skips::new(),
        }
    }
    /// Records read but not yielded as frames so far, by reason.
    pub fn skips(&self) -> &Skips {
        &self.skips
    }
    /// The endianness in use (known after the first record).
    pub fn endian(&self) -> Option<Endian> {
        self.endian
    }

    fn next_frame(&mut self) -> Option<Result<Frame>> {
        let start = self.src.pos();
        let mut head = [0u8; 2 + HEADER];
        match self.src.record_header(&mut head) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        }
        let e = match self.endian {
            Some(e) => e,
            None => match detect_endian(&head) {
                Some(e) => {
                    self.endian = Some(e);
                    e
                }
                None => {
                    self.done = true;
                    return Some(Err(CaptureError::fatal(
                        start,
                        "record length does not equal 25 + csi_len + payload_len in either byte order (not an Atheros CSI Tool file?)",
                    )));
                }
            },
        };
        let h = &head[2..];
        let field_len = e.u16([head[0], head[1]]) as usize;
        let csi_len = e.u16([h[8], h[9]]);
        let payload_len = e.u16([h[23], h[24]]);
        let (tones, nr, nc) = (h[16] as usize, h[17] as usize, h[18] as usize);
        if field_len < HEADER {
            self.done = true;
            return Some(Err(CaptureError::fatal(
                start,
                format!("record length {field_len} is shorter than the {HEADER}-byte header: the records after it cannot be found"),
            )));
        }
        if let Err(err) = self
            .src
            .read_record_body(field_len - HEADER, &mut self.buf, start)
        {
            self.done = true;
            return Some(Err(err));
        }
        if field_len != HEADER + csi_len as usize + payload_len as usize {
            return Some(Err(CaptureError::invalid(
                start,
                format!(
                    "record length {field_len} != 25 + csi_len {csi_len} + payload_len {payload_len}"
                ),
            )));
        }
        if nr > MAX_ANTENNAS || nc > MAX_ANTENNAS {
            return Some(Err(CaptureError::invalid(
                start + 2 + 17,
                format!("nr={nr} nc={nc}: the Atheros CSI Tool reports at most 3x3"),
            )));
        }
        let (csi_bytes, payload) = self.buf.split_at(csi_len as usize);
        let csi = if csi_len > 0 {
            if csi_bytes.len() < csi_bytes_needed(tones, nr, nc) {
                return Some(Err(CaptureError::invalid(
                    start + 2 + HEADER as u64,
                    format!(
                        "csi_len {csi_len} is shorter than the {} bytes {tones} tones x {nr} x {nc} need",
                        csi_bytes_needed(tones, nr, nc)
                    ),
                )));
            }
            unpack_csi(csi_bytes, tones, nr, nc)
        } else {
            Vec::new()
        };
        Some(Ok(Frame {
            offset: start,
            timestamp: e.u64(h[0..8].try_into().unwrap()),
            csi_len,
            channel: e.u16([h[10], h[11]]),
            err_info: h[12],
            noise_floor: h[13],
            rate: h[14],
            bandwidth: h[15],
            num_tones: h[16],
            nr: h[17],
            nc: h[18],
            rssi: h[19],
            rssi_1: h[20],
            rssi_2: h[21],
            rssi_3: h[22],
            payload_len,
            csi,
            payload: payload.to_vec(),
        }))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_frame();
        match &r {
            None => self.done = true,
            Some(Err(e)) => self.skips.add_error(e, SKIP_BAD_RECORD),
            Some(Ok(_)) => {}
        }
        r
    }
}

/// Encodes one record. CSI values must be integers in the 10-bit range; the CSI length is
/// recomputed from the shape and the payload length from the payload.
pub fn encode_record(f: &Frame, e: Endian) -> std::result::Result<Vec<u8>, String> {
    let (tones, nr, nc) = (f.num_tones as usize, f.nr as usize, f.nc as usize);
    if f.csi.len() != tones * nr * nc {
        return Err("csi length does not match tones x nr x nc".into());
    }
    let csi_len = if f.csi.is_empty() {
        0
    } else {
        csi_bytes_needed(tones, nr, nc)
    };
    let mut bits: Vec<u8> = vec![0; csi_len];
    let mut pos = 0usize;
    let mut put10 = |v: f64| -> std::result::Result<(), String> {
        if v.fract() != 0.0 || !(-512.0..=511.0).contains(&v) {
            return Err(format!("CSI value {v} is not a 10-bit integer"));
        }
        let u = (v as i64 & 0x3ff) as u32;
        for b in 0..10 {
            if (u >> b) & 1 == 1 {
                bits[(pos + b) / 8] |= 1 << ((pos + b) % 8);
            }
        }
        pos += 10;
        Ok(())
    };
    for c in &f.csi {
        put10(c.im)?;
        put10(c.re)?;
    }
    let field_len = HEADER + csi_len + f.payload.len();
    if field_len > u16::MAX as usize {
        return Err("record longer than 65535 bytes".into());
    }
    let mut out = Vec::with_capacity(2 + field_len);
    out.extend_from_slice(&e.put16(field_len as u16));
    out.extend_from_slice(&e.put64(f.timestamp));
    out.extend_from_slice(&e.put16(csi_len as u16));
    out.extend_from_slice(&e.put16(f.channel));
    out.extend_from_slice(&[
        f.err_info,
        f.noise_floor,
        f.rate,
        f.bandwidth,
        f.num_tones,
        f.nr,
        f.nc,
        f.rssi,
        f.rssi_1,
        f.rssi_2,
        f.rssi_3,
    ]);
    out.extend_from_slice(&e.put16(f.payload.len() as u16));
    out.extend_from_slice(&bits);
    out.extend_from_slice(&f.payload);
    Ok(out)
}

/// Writes frames as an Atheros CSI Tool stream.
pub fn write_frames<W: Write>(mut out: W, frames: &[Frame], e: Endian) -> std::io::Result<()> {
    for f in frames {
        let rec = encode_record(f, e)
            .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
        out.write_all(&rec)?;
    }
    Ok(())
}
