//! RuView ADR-018 raw CSI frames (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `0xC5110001` (u32) |
//! | 4 | 1 | node_id (u8) |
//! | 5 | 1 | n_ant (u8) |
//! | 6 | 2 | n_sc (u16) |
//! | 8 | 4 | centre frequency, MHz (u32) |
//! | 12 | 4 | seq (u32) |
//! | 16 | 1 | rssi, dBm (i8) |
//! | 17 | 1 | noise floor, dBm (i8) |
//! | 18 | 2 | reserved |
//! | 20 | 2·n_ant·n_sc | per antenna, per subcarrier: imag (i8), real (i8) |
//!
//! The length must be exactly `20 + 2·n_ant·n_sc`. Other RuView magics (`0xC5110002`,
//! `0xC5110004`, `0xC5110006`) are counted as [`Reject::IgnoredType`].

use crate::frame::{CsiFrame, Format, Samples};
use crate::reject::{Reject, Rejected};

/// The raw-CSI frame magic.
pub const MAGIC_RAW: u32 = 0xC511_0001;
/// The RuView magics that are counted and ignored.
pub const MAGIC_IGNORED: [u32; 3] = [0xC511_0002, 0xC511_0004, 0xC511_0006];
/// Bytes before the samples.
pub const HEADER: usize = 20;

/// Whether the first four bytes are a RuView magic (`0xC51100xx`, little-endian).
pub fn is_ruview(b: &[u8]) -> bool {
    b.len() >= 4 && u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0xFFFF_FF00 == 0xC511_0000
}

fn rej(reason: Reject, detail: String) -> Rejected {
    Rejected::new(Some(Format::Adr018), reason, detail)
}

/// Decodes one ADR-018 datagram (the caller has seen a RuView magic).
pub fn decode(b: &[u8]) -> Result<CsiFrame, Rejected> {
    if b.len() < 4 {
        return Err(rej(
            Reject::Truncated,
            format!("{} bytes, no magic", b.len()),
        ));
    }
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if MAGIC_IGNORED.contains(&magic) {
        return Err(rej(
            Reject::IgnoredType,
            format!("byte 0: RuView frame type {magic:#010x} is not raw CSI"),
        ));
    }
    if magic != MAGIC_RAW {
        return Err(rej(
            Reject::UnknownType,
            format!("byte 0: unknown RuView magic {magic:#010x}"),
        ));
    }
    if b.len() < HEADER {
        return Err(rej(
            Reject::Truncated,
            format!("{} bytes, the header needs {HEADER}", b.len()),
        ));
    }
    let n_ant = b[5] as usize;
    let n_sc = u16::from_le_bytes([b[6], b[7]]) as usize;
    if n_ant == 0 || n_sc == 0 {
        return Err(rej(
            Reject::BadDimensions,
            format!("byte 5: n_ant {n_ant}, n_sc {n_sc}: both must be at least 1"),
        ));
    }
    let want = HEADER + 2 * n_ant * n_sc;
    if b.len() != want {
        return Err(rej(
            Reject::BadLength,
            format!(
                "{} bytes, but n_ant {n_ant} x n_sc {n_sc} needs 20 + 2*{} = {want}",
                b.len(),
                n_ant * n_sc
            ),
        ));
    }
    let samples = b[HEADER..]
        .chunks_exact(2)
        .map(|p| [p[1] as i8, p[0] as i8])
        .collect();
    let mut f = CsiFrame::new(
        Format::Adr018,
        n_ant as u16,
        n_sc as u16,
        Samples::ComplexI8(samples),
    );
    f.node_id = Some(b[4] as u32);
    f.freq_mhz = Some(u32::from_le_bytes([b[8], b[9], b[10], b[11]]));
    f.seq = Some(u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as u64);
    f.rssi_dbm = Some(b[16] as i8 as i16);
    f.noise_floor_dbm = Some(b[17] as i8 as i16);
    Ok(f)
}

/// Fields of an ADR-018 header (for [`encode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub node_id: u8,
    pub freq_mhz: u32,
    pub seq: u32,
    pub rssi: i8,
    pub noise_floor: i8,
}

/// Encodes an ADR-018 raw CSI frame from `[re, im]` i8 samples (antenna-major).
/// Panics never; returns `None` when the shape does not fit (`n_ant` > 255, `n_sc` > 65535,
/// or `samples.len() != n_ant * n_sc`).
pub fn encode(h: &Header, n_ant: usize, n_sc: usize, samples: &[[i8; 2]]) -> Option<Vec<u8>> {
    if n_ant == 0 || n_ant > 255 || n_sc == 0 || n_sc > 65535 || samples.len() != n_ant * n_sc {
        return None;
    }
    let mut b = Vec::with_capacity(HEADER + 2 * samples.len());
    b.extend_from_slice(&MAGIC_RAW.to_le_bytes());
    b.push(h.node_id);
    b.push(n_ant as u8);
    b.extend_from_slice(&(n_sc as u16).to_le_bytes());
    b.extend_from_slice(&h.freq_mhz.to_le_bytes());
    b.extend_from_slice(&h.seq.to_le_bytes());
    b.push(h.rssi as u8);
    b.push(h.noise_floor as u8);
    b.extend_from_slice(&[0, 0]);
    for s in samples {
        b.push(s[1] as u8);
        b.push(s[0] as u8);
    }
    Some(b)
}
