//! Nexmon CSI UDP payloads, as nexmon_csi sends them to port 5500: an 18-byte header
//! (u16 magic `0x1111`, i8 rssi, u8 frame control, 6-byte source MAC, u16 sequence,
//! u16 core/spatial stream, u16 chanspec, u16 chip version; little-endian), then `nfft`
//! 32-bit CSI words, `nfft` = 64, 128 or 256 (20, 40, 80 MHz). The words are decoded by
//! `csipose_capture::nexmon::decode_csi` (int16 I/Q or the packed float format by chip).

use crate::frame::{CsiFrame, Format, Samples};
use crate::reject::{Reject, Rejected};
use csipose_capture::nexmon::{decode_csi, Chip};

/// Header bytes before the CSI words.
pub const HEADER: usize = 18;
/// The header's magic bytes (u16 `0x1111`).
pub const MAGIC: [u8; 2] = [0x11, 0x11];

fn rej(reason: Reject, detail: String) -> Rejected {
    Rejected::new(Some(Format::Nexmon), reason, detail)
}

/// Decodes one nexmon UDP payload. `chip`: `None` takes it from the chip-version field.
pub fn decode(b: &[u8], chip: Option<Chip>) -> Result<CsiFrame, Rejected> {
    if b.len() < HEADER {
        return Err(rej(
            Reject::Truncated,
            format!("{} bytes, the nexmon header needs {HEADER}", b.len()),
        ));
    }
    let csi = b.len() - HEADER;
    if !csi.is_multiple_of(4) || ![64, 128, 256].contains(&(csi / 4)) {
        return Err(rej(
            Reject::BadLength,
            format!(
                "{} bytes: {csi} CSI bytes after the header are not 64, 128 or 256 words (20/40/80 MHz)",
                b.len()
            ),
        ));
    }
    let nfft = csi / 4;
    let le16 = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let chip_version = le16(16);
    let Some(chip) = chip.or_else(|| Chip::from_version(chip_version)) else {
        return Err(rej(
            Reject::UnknownChip,
            format!("byte 16: chip version {chip_version:#06x} is not one csipose knows; configure the chip"),
        ));
    };
    let words: Vec<u32> = b[HEADER..]
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let values = decode_csi(chip, &words);
    let samples = if chip.is_int16() {
        Samples::ComplexI16(values.iter().map(|c| [c.re as i16, c.im as i16]).collect())
    } else {
        Samples::ComplexF32(values.iter().map(|c| [c.re as f32, c.im as f32]).collect())
    };
    let css = le16(12);
    let chanspec = le16(14);
    let mut f = CsiFrame::new(Format::Nexmon, 1, nfft as u16, samples);
    f.rssi_dbm = Some(b[2] as i8 as i16);
    f.mac = Some([b[4], b[5], b[6], b[7], b[8], b[9]]);
    f.seq = Some(le16(10) as u64);
    f.core = Some((css & 7) as u8);
    f.spatial_stream = Some(((css >> 3) & 7) as u8);
    f.channel = Some(chanspec & 0xff);
    Ok(f)
}

/// The UDP payload of a pcap frame as `csipose_capture::nexmon` reads it: the bytes after
/// the 42-byte Ethernet/IPv4/UDP headers.
pub fn payload_of_frame(frame: &[u8]) -> Option<&[u8]> {
    frame.get(csipose_capture::nexmon::NEXMON_HEADER..)
}

/// Encodes a nexmon UDP payload from a decoded capture frame's header fields and raw words.
pub fn encode(f: &csipose_capture::nexmon::Frame, words: &[u32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + 4 * words.len());
    b.extend_from_slice(&MAGIC);
    b.push(f.rssi as u8);
    b.push(f.frame_control);
    b.extend_from_slice(&f.source_mac);
    b.extend_from_slice(&f.sequence.to_le_bytes());
    let css = (f.core as u16 & 7) | ((f.spatial_stream as u16 & 7) << 3);
    b.extend_from_slice(&css.to_le_bytes());
    b.extend_from_slice(&f.chanspec.to_le_bytes());
    b.extend_from_slice(&f.chip_version.to_le_bytes());
    for w in words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b
}
