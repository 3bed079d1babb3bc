//! Intel IWL5300 (Linux 802.11n CSI Tool) `.dat` files: the streaming reader, the
//! `read_bfee.c` decoding, the antenna permutation as MATLAB `read_bf_file.m` applies it,
//! `get_scaled_csi.m`, and a writer for round-trip tests.
//!
//! A file is a sequence of records: a big-endian `u16` length `L`, a one-byte code, and
//! `L - 1` body bytes. Code `0xbb` is a beamforming-feedback (bfee) record and is decoded;
//! every other code is skipped by its length.
//!
//! ```no_run
//! use csipose_capture::intel5300;
//! let file = std::fs::File::open("csi.dat").unwrap();
//! for frame in intel5300::Reader::new(file) {
//!     let frame = frame.unwrap(); // or report the error (it names the byte offset)
//!     let amp = frame.csi_amplitude(); // [ntx][nrx][30]
//!     let _ = amp;
//! }
//! ```

use crate::complex::Complex;
use crate::error::{CaptureError, ErrorKind, Result};
use crate::skips::Skips;
use crate::source::Source;
use std::io::{Read, Write};

/// Subcarrier groups reported per antenna pair.
pub const SUBCARRIERS: usize = 30;
/// The bfee record code.
pub const CODE_BFEE: u8 = 0xbb;
/// Fixed bfee header bytes before the CSI payload.
pub const BFEE_HEADER: usize = 20;

/// One decoded bfee record (one received packet).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Byte offset of the record (its length field) in the input.
    pub offset: u64,
    pub timestamp_low: u32,
    pub bfee_count: u16,
    pub nrx: u8,
    pub ntx: u8,
    pub rssi_a: u8,
    pub rssi_b: u8,
    pub rssi_c: u8,
    /// Noise floor in dBm; -127 means unknown (monitor mode).
    pub noise: i8,
    pub agc: u8,
    pub antenna_sel: u8,
    /// 1-based antenna permutation, as MATLAB's `perm`.
    pub perm: [u8; 3],
    /// The `fake_rate_n_flags` field.
    pub rate: u16,
    /// Whether the permutation was applied to `csi` (MATLAB skips it for 1 antenna and
    /// when `sum(perm)` is not 1, 3, 6 for 1, 2, 3 antennas).
    pub perm_applied: bool,
    /// Complex CSI `[ntx][nrx][30]`, permutation applied as MATLAB does.
    pub csi: Vec<Vec<[Complex; SUBCARRIERS]>>,
}

impl Frame {
    /// |CSI| as `[ntx][nrx][30]`.
    pub fn csi_amplitude(&self) -> Vec<Vec<[f64; SUBCARRIERS]>> {
        self.csi
            .iter()
            .map(|tx| tx.iter().map(|rx| rx.map(|c| c.abs())).collect())
            .collect()
    }

    /// `get_scaled_csi`: CSI in units of sqrt(SNR), `[ntx][nrx][30]`.
    pub fn scaled_csi(&self) -> Vec<Vec<[Complex; SUBCARRIERS]>> {
        let dbinv = |x: f64| 10f64.powf(x / 10.0);
        // Sum |csi|² in MATLAB's column-major order: tx fastest, then rx, then subcarrier.
        let mut csi_pwr = 0.0;
        for s in 0..SUBCARRIERS {
            for rx in 0..self.nrx as usize {
                for tx in 0..self.ntx as usize {
                    csi_pwr += self.csi[tx][rx][s].norm_sqr();
                }
            }
        }
        let rssi_pwr = dbinv(self.total_rss());
        let scale = rssi_pwr / (csi_pwr / 30.0);
        let noise_db = if self.noise == -127 {
            -92.0
        } else {
            self.noise as f64
        };
        let thermal_noise_pwr = dbinv(noise_db);
        let quant_error_pwr = scale * (self.nrx as f64 * self.ntx as f64);
        let total_noise_pwr = thermal_noise_pwr + quant_error_pwr;
        let k = (scale / total_noise_pwr).sqrt();
        let extra = match self.ntx {
            2 => Some(2f64.sqrt()),
            3 => Some(dbinv(4.5).sqrt()),
            _ => None,
        };
        self.csi
            .iter()
            .map(|tx| {
                tx.iter()
                    .map(|rx| {
                        rx.map(|c| {
                            let v = c.scale(k);
                            match extra {
                                Some(e) => v.scale(e),
                                None => v,
                            }
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// `get_total_rss`: total received power in dBm from the per-antenna RSSIs and AGC.
    pub fn total_rss(&self) -> f64 {
        let dbinv = |x: f64| 10f64.powf(x / 10.0);
        let mut mag = 0.0;
        for r in [self.rssi_a, self.rssi_b, self.rssi_c] {
            if r != 0 {
                mag += dbinv(r as f64);
            }
        }
        10.0 * mag.log10() - 44.0 - self.agc as f64
    }
}

/// The permutation `read_bfee.c` derives from `antenna_sel` (1-based).
pub fn perm_from_antenna_sel(antenna_sel: u8) -> [u8; 3] {
    [
        (antenna_sel & 3) + 1,
        ((antenna_sel >> 2) & 3) + 1,
        ((antenna_sel >> 4) & 3) + 1,
    ]
}

/// Whether `read_bf_file.m` applies `perm` for `nrx` antennas, made safe: MATLAB applies it
/// when `nrx > 1` and `sum(perm) == [1 3 6](nrx)`; csipose also requires every used entry
/// to name an existing antenna (MATLAB would otherwise grow the matrix or fail).
fn perm_applies(perm: [u8; 3], nrx: usize) -> bool {
    const TRIANGLE: [u32; 3] = [1, 3, 6];
    if !(2..=3).contains(&nrx) {
        return false;
    }
    let sum: u32 = perm.iter().map(|&p| p as u32).sum();
    sum == TRIANGLE[nrx - 1] && perm[..nrx].iter().all(|&p| (p as usize) <= nrx)
}

/// Length in bytes of the CSI payload for `nrx * ntx` antenna pairs.
pub fn payload_len(nrx: usize, ntx: usize) -> usize {
    (30 * (nrx * ntx * 8 * 2 + 3)).div_ceil(8)
}

/// Decodes the body of a bfee record (the bytes after the code), as `read_bfee.c` does,
/// then applies the permutation as `read_bf_file.m` does. Errors are relative to `body`.
pub fn decode_bfee(body: &[u8]) -> std::result::Result<Frame, (usize, String)> {
    if body.len() < BFEE_HEADER {
        return Err((
            0,
            format!(
                "bfee record of {} bytes is shorter than its {BFEE_HEADER}-byte header",
                body.len()
            ),
        ));
    }
    let u16le = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let nrx = body[8] as usize;
    let ntx = body[9] as usize;
    if !(1..=3).contains(&nrx) || !(1..=3).contains(&ntx) {
        return Err((
            8,
            format!("antenna counts Nrx={nrx} Ntx={ntx} outside the Intel 5300's 1..3"),
        ));
    }
    let len = u16le(16) as usize;
    let calc_len = payload_len(nrx, ntx);
    if len != calc_len {
        return Err((
            16,
            format!("wrong beamforming matrix size: {len} bytes, {calc_len} expected for Nrx={nrx} Ntx={ntx}"),
        ));
    }
    let payload = &body[BFEE_HEADER..];
    if payload.len() < calc_len {
        return Err((
            BFEE_HEADER,
            format!(
                "CSI payload of {} bytes is shorter than the {calc_len} its header announces",
                payload.len()
            ),
        ));
    }
    let byte = |i: usize| payload.get(i).copied().unwrap_or(0) as u32;
    let mut raw = vec![vec![[Complex::ZERO; SUBCARRIERS]; nrx]; ntx];
    let mut index = 0usize;
    for (s, _) in (0..SUBCARRIERS).enumerate() {
        index += 3;
        let rem = (index % 8) as u32;
        for j in 0..nrx * ntx {
            let k = index / 8;
            let re = ((byte(k) >> rem) | (byte(k + 1) << (8 - rem))) as u8 as i8;
            let im = ((byte(k + 1) >> rem) | (byte(k + 2) << (8 - rem))) as u8 as i8;
            // MATLAB fills [Ntx, Nrx, 30] column-major: tx varies fastest.
            raw[j % ntx][j / ntx][s] = Complex::new(re as f64, im as f64);
            index += 16;
        }
    }
    let antenna_sel = body[15];
    let perm = perm_from_antenna_sel(antenna_sel);
    let perm_applied = perm_applies(perm, nrx);
    let csi = if perm_applied {
        let mut out = raw.clone();
        for tx in 0..ntx {
            for k in 0..nrx {
                out[tx][perm[k] as usize - 1] = raw[tx][k];
            }
        }
        out
    } else {
        raw
    };
    Ok(Frame {
        offset: 0,
        timestamp_low: u32::from_le_bytes([body[0], body[1], body[2], body[3]]),
        bfee_count: u16le(4),
        nrx: nrx as u8,
        ntx: ntx as u8,
        rssi_a: body[10],
        rssi_b: body[11],
        rssi_c: body[12],
        noise: body[13] as i8,
        agc: body[14],
        antenna_sel,
        perm,
        rate: u16le(18),
        perm_applied,
        csi,
    })
}

/// Streams the bfee frames of an Intel 5300 `.dat` file.
///
/// Yields `Ok(frame)` per bfee record. A record that cannot be decoded yields an `Err`
/// naming its byte offset and reading continues with the next record; a truncated last
/// record yields one `Err` for which [`CaptureError::is_truncation`] is true, and then the
/// iterator ends. Records with other codes are skipped; everything not yielded as a frame
/// is counted by reason in [`Reader::skips`].
pub struct Reader<R> {
    src: Source<R>,
    body: Vec<u8>,
    done: bool,
    skips: Skips,
}

/// [`Reader::skips`] reason for a bfee record that yielded an error.
pub const SKIP_BAD_BFEE: &str = "undecodable bfee records";

/// [`Reader::skips`] reason for records of another code than 0xbb.
pub fn skip_other_code(code: u8) -> String {
    format!("records with code {code:#04x} (not bfee CSI)")
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            src: Source::new(input),
            body: Vec::new(),
            done: false,
            skips: Skips::new(),
        }
    }
    /// Records read but not yielded as frames so far, all reasons together.
    pub fn skipped(&self) -> u64 {
        self.skips.total()
    }
    /// Records read but not yielded as frames so far, by reason.
    pub fn skips(&self) -> &Skips {
        &self.skips
    }

    fn next_frame(&mut self) -> Option<Result<Frame>> {
        loop {
            let start = self.src.pos();
            let mut head = [0u8; 3];
            match self.src.record_header(&mut head) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            let field_len = u16::from_be_bytes([head[0], head[1]]) as usize;
            let code = head[2];
            if field_len == 0 {
                self.done = true;
                return Some(Err(CaptureError::fatal(
                    start,
                    "record length 0 cannot hold its code byte (not an Intel 5300 .dat, or corrupt): the records after it cannot be found",
                )));
            }
            if code != CODE_BFEE {
                if let Err(e) = self.src.skip(field_len as u64 - 1, start) {
                    self.done = true;
                    return Some(Err(e));
                }
                self.skips.add(&skip_other_code(code));
                continue;
            }
            if let Err(e) = self
                .src
                .read_record_body(field_len - 1, &mut self.body, start)
            {
                self.done = true;
                return Some(Err(e));
            }
            return Some(match decode_bfee(&self.body) {
                Ok(mut f) => {
                    f.offset = start;
                    Ok(f)
                }
                Err((at, msg)) => Err(CaptureError {
                    offset: start + 3 + at as u64,
                    kind: ErrorKind::Invalid(format!("bfee record at byte {start}: {msg}")),
                }),
            });
        }
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
            Some(Err(e)) => self.skips.add_error(e, SKIP_BAD_BFEE),
            Some(Ok(_)) => {}
        }
        r
    }
}

/// Every complete frame of a `.dat` file. A truncated last record ends the list without
/// an error (as MATLAB's `read_bf_file` does); any other error names the file and offset.
pub fn read_file(path: impl AsRef<std::path::Path>) -> std::result::Result<Vec<Frame>, String> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frames = Vec::new();
    for item in Reader::new(file) {
        match item {
            Ok(f) => frames.push(f),
            Err(e) if e.is_truncation() => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(frames)
}

/// Encodes a frame as a bfee record (length, code, body). The CSI is un-permuted first when
/// the reader would permute it, so `decode(encode(f)) == f` for integer CSI in i8 range.
/// Fails when the CSI shape does not match `ntx`/`nrx` or a value is not an i8.
pub fn encode_bfee(frame: &Frame) -> std::result::Result<Vec<u8>, String> {
    let (nrx, ntx) = (frame.nrx as usize, frame.ntx as usize);
    if !(1..=3).contains(&nrx) || !(1..=3).contains(&ntx) {
        return Err(format!("Nrx={nrx} Ntx={ntx} outside 1..3"));
    }
    if frame.csi.len() != ntx || frame.csi.iter().any(|t| t.len() != nrx) {
        return Err("csi shape does not match [ntx][nrx][30]".into());
    }
    let perm = perm_from_antenna_sel(frame.antenna_sel);
    let mut raw = frame.csi.clone();
    if perm_applies(perm, nrx) {
        let mut seen = [false; 3];
        for &p in &perm[..nrx] {
            if seen[p as usize - 1] {
                return Err("antenna_sel gives a permutation that is not invertible".into());
            }
            seen[p as usize - 1] = true;
        }
        for tx in 0..ntx {
            for k in 0..nrx {
                raw[tx][k] = frame.csi[tx][perm[k] as usize - 1];
            }
        }
    }
    let plen = payload_len(nrx, ntx);
    let mut payload = vec![0u8; plen];
    let mut put_bits = |bit: usize, v: u8| {
        for b in 0..8 {
            if (v >> b) & 1 == 1 {
                payload[(bit + b) / 8] |= 1 << ((bit + b) % 8);
            }
        }
    };
    let to_i8 = |x: f64| -> std::result::Result<u8, String> {
        if x.fract() == 0.0 && (-128.0..=127.0).contains(&x) {
            Ok(x as i8 as u8)
        } else {
            Err(format!("CSI value {x} is not an 8-bit integer"))
        }
    };
    let mut index = 0;
    for s in 0..SUBCARRIERS {
        index += 3;
        for j in 0..nrx * ntx {
            let c = raw[j % ntx][j / ntx][s];
            put_bits(index, to_i8(c.re)?);
            put_bits(index + 8, to_i8(c.im)?);
            index += 16;
        }
    }
    let mut body = Vec::with_capacity(BFEE_HEADER + plen);
    body.extend_from_slice(&frame.timestamp_low.to_le_bytes());
    body.extend_from_slice(&frame.bfee_count.to_le_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&[
        frame.nrx,
        frame.ntx,
        frame.rssi_a,
        frame.rssi_b,
        frame.rssi_c,
        frame.noise as u8,
        frame.agc,
        frame.antenna_sel,
    ]);
    body.extend_from_slice(&(plen as u16).to_le_bytes());
    body.extend_from_slice(&frame.rate.to_le_bytes());
    body.extend_from_slice(&payload);
    let mut rec = Vec::with_capacity(3 + body.len());
    rec.extend_from_slice(&((body.len() + 1) as u16).to_be_bytes());
    rec.push(CODE_BFEE);
    rec.extend_from_slice(&body);
    Ok(rec)
}

/// Writes frames as an Intel 5300 `.dat` stream.
pub fn write_frames<W: Write>(mut out: W, frames: &[Frame]) -> std::io::Result<()> {
    for f in frames {
        let rec =
            encode_bfee(f).map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
        out.write_all(&rec)?;
    }
    Ok(())
}
