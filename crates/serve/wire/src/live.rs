//! The csipose live frame: one CSI frame per datagram, with node, session and stream
//! sequence, a device timestamp, its layout (antennas × subcarriers × sample type), the
//! samples and a CRC32. Byte layout (little-endian; FORMATS.md, "Live frame"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `C5 50 4C 46` (`0xC5`, `"PLF"`) |
//! | 4 | 1 | version = 1 |
//! | 5 | 1 | sample type: 1 complex i8, 2 complex i16, 3 complex f32, 4 amplitude f32 |
//! | 6 | 1 | rssi, dBm (i8; -128 = unknown) |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 4 | node id (u32) |
//! | 12 | 4 | session (u32) |
//! | 16 | 4 | stream sequence (u32) |
//! | 20 | 8 | device timestamp, ns (u64) |
//! | 28 | 2 | antennas (u16, ≥ 1) |
//! | 30 | 2 | subcarriers (u16, ≥ 1) |
//! | 32 | 4 | payload length in bytes (u32) = antennas × subcarriers × sample size |
//! | 36 | n | payload, antenna-major; complex samples as (re, im) |
//! | 36+n | 4 | CRC32 (IEEE, as zlib) of bytes 0 .. 36+n |

use crate::decode::MAX_DATAGRAM;
use crate::frame::{CsiFrame, Format, SampleType, Samples};
use crate::reject::{Reject, Rejected};

/// The magic bytes.
pub const MAGIC: [u8; 4] = [0xC5, b'P', b'L', b'F'];
/// The version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER: usize = 36;
/// Header plus CRC: the smallest possible frame is this plus one sample.
pub const OVERHEAD: usize = HEADER + 4;
/// The rssi byte value meaning "unknown".
pub const RSSI_UNKNOWN: i8 = i8::MIN;

/// One live frame.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveFrame {
    pub node: u32,
    pub session: u32,
    pub seq: u32,
    pub device_time_ns: u64,
    /// `None` is written as -128.
    pub rssi_dbm: Option<i8>,
    pub antennas: u16,
    pub subcarriers: u16,
    /// `antennas × subcarriers` samples, antenna-major.
    pub samples: Samples,
}

fn rej(reason: Reject, detail: String) -> Rejected {
    Rejected::new(Some(Format::Live), reason, detail)
}

/// Whether `b` starts with the live-frame magic.
pub fn is_live(b: &[u8]) -> bool {
    b.len() >= 4 && b[..4] == MAGIC
}

impl LiveFrame {
    /// The datagram bytes. Errors when the shape does not match the samples, a dimension
    /// is zero, or the frame would exceed [`MAX_DATAGRAM`].
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let (a, s) = (self.antennas as usize, self.subcarriers as usize);
        if a == 0 || s == 0 {
            return Err(format!(
                "antennas {a} and subcarriers {s} must be at least 1"
            ));
        }
        if self.samples.len() != a * s {
            return Err(format!(
                "{} samples for {a} antennas x {s} subcarriers",
                self.samples.len()
            ));
        }
        let ty = self.samples.sample_type();
        let n = a * s * ty.bytes();
        if OVERHEAD + n > MAX_DATAGRAM {
            return Err(format!(
                "frame of {} bytes exceeds the datagram limit {MAX_DATAGRAM}",
                OVERHEAD + n
            ));
        }
        let mut b = Vec::with_capacity(OVERHEAD + n);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(ty.code());
        b.push(self.rssi_dbm.unwrap_or(RSSI_UNKNOWN) as u8);
        b.push(0);
        b.extend_from_slice(&self.node.to_le_bytes());
        b.extend_from_slice(&self.session.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.device_time_ns.to_le_bytes());
        b.extend_from_slice(&self.antennas.to_le_bytes());
        b.extend_from_slice(&self.subcarriers.to_le_bytes());
        b.extend_from_slice(&(n as u32).to_le_bytes());
        match &self.samples {
            Samples::ComplexI8(v) => v.iter().for_each(|c| {
                b.push(c[0] as u8);
                b.push(c[1] as u8);
            }),
            Samples::ComplexI16(v) => v.iter().for_each(|c| {
                b.extend_from_slice(&c[0].to_le_bytes());
                b.extend_from_slice(&c[1].to_le_bytes());
            }),
            Samples::ComplexF32(v) => v.iter().for_each(|c| {
                b.extend_from_slice(&c[0].to_le_bytes());
                b.extend_from_slice(&c[1].to_le_bytes());
            }),
            Samples::AmplitudeF32(v) => {
                v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()))
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Decodes one live frame (the caller has seen the magic; it is checked again here).
    pub fn decode(b: &[u8]) -> Result<LiveFrame, Rejected> {
        if !is_live(b) {
            return Err(rej(
                Reject::UnknownFormat,
                "byte 0: not the live-frame magic".into(),
            ));
        }
        if b.len() < OVERHEAD {
            return Err(rej(
                Reject::Truncated,
                format!("{} bytes, header and CRC need {OVERHEAD}", b.len()),
            ));
        }
        if b[4] != VERSION {
            return Err(rej(
                Reject::BadVersion,
                format!("byte 4: version {} (this build reads {VERSION})", b[4]),
            ));
        }
        let u16at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let n = u32at(32) as usize;
        if b.len() - OVERHEAD != n {
            return Err(rej(
                Reject::BadLength,
                format!(
                    "byte 32: payload length {n}, but {} bytes follow the header before the CRC",
                    b.len() - OVERHEAD
                ),
            ));
        }
        let want = u32at(HEADER + n);
        let got = crc32fast::hash(&b[..HEADER + n]);
        if want != got {
            return Err(rej(
                Reject::BadCrc,
                format!(
                    "byte {}: CRC32 {want:#010x}, the bytes give {got:#010x}",
                    HEADER + n
                ),
            ));
        }
        let Some(ty) = SampleType::from_code(b[5]) else {
            return Err(rej(
                Reject::BadSampleType,
                format!("byte 5: sample type {}", b[5]),
            ));
        };
        if b[7] != 0 {
            return Err(rej(
                Reject::BadReserved,
                format!("byte 7: reserved byte is {}", b[7]),
            ));
        }
        let (a, s) = (u16at(28), u16at(30));
        if a == 0 || s == 0 || a as usize * s as usize * ty.bytes() != n {
            return Err(rej(
                Reject::BadDimensions,
                format!(
                    "byte 28: {a} antennas x {s} subcarriers of {} do not make the {n}-byte payload",
                    ty.name()
                ),
            ));
        }
        let p = &b[HEADER..HEADER + n];
        let f32at = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let samples = match ty {
            SampleType::ComplexI8 => Samples::ComplexI8(
                p.chunks_exact(2)
                    .map(|c| [c[0] as i8, c[1] as i8])
                    .collect(),
            ),
            SampleType::ComplexI16 => Samples::ComplexI16(
                p.chunks_exact(4)
                    .map(|c| {
                        [
                            i16::from_le_bytes([c[0], c[1]]),
                            i16::from_le_bytes([c[2], c[3]]),
                        ]
                    })
                    .collect(),
            ),
            SampleType::ComplexF32 => Samples::ComplexF32(
                p.chunks_exact(8)
                    .map(|c| [f32at(c), f32at(&c[4..])])
                    .collect(),
            ),
            SampleType::AmplitudeF32 => {
                Samples::AmplitudeF32(p.chunks_exact(4).map(f32at).collect())
            }
        };
        let finite = match &samples {
            Samples::ComplexF32(v) => v.iter().flatten().position(|x| !x.is_finite()),
            Samples::AmplitudeF32(v) => v.iter().position(|x| !x.is_finite()),
            _ => None,
        };
        if let Some(i) = finite {
            return Err(rej(
                Reject::NonFinite,
                format!("byte {}: value is NaN or infinite", HEADER + i * 4),
            ));
        }
        let rssi = b[6] as i8;
        Ok(LiveFrame {
            node: u32at(8),
            session: u32at(12),
            seq: u32at(16),
            device_time_ns: u64::from_le_bytes(b[20..28].try_into().unwrap_or([0; 8])),
            rssi_dbm: (rssi != RSSI_UNKNOWN).then_some(rssi),
            antennas: a,
            subcarriers: s,
            samples,
        })
    }

    /// As a [`CsiFrame`] (format [`Format::Live`]).
    pub fn into_csi_frame(self) -> CsiFrame {
        let mut f = CsiFrame::new(Format::Live, self.antennas, self.subcarriers, self.samples);
        f.node_id = Some(self.node);
        f.session = Some(self.session);
        f.seq = Some(self.seq as u64);
        f.device_time_ns = Some(self.device_time_ns);
        f.rssi_dbm = self.rssi_dbm.map(|r| r as i16);
        f
    }
}
