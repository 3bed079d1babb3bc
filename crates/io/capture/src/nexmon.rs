//! Nexmon CSI `.pcap` files: the pcap stream, the nexmon UDP header, and the CSI words as
//! nexmon_csi's `csireader.m` decodes them: `int16` I/Q for bcm4339 and bcm43455c0, and
//! the packed floating-point format (`unpack_float.c`) for bcm4358 (9-bit mantissa,
//! 5-bit exponent) and bcm4366c0 (12-bit mantissa, 6-bit exponent). Also a pcap writer
//! for the int16 chips, used by the round-trip tests.
//!
//! Frame layout (bytes from the start of the captured Ethernet frame): 42 bytes of
//! Ethernet/IPv4/UDP headers; the nexmon header (u16 magic 0x1111, i8 rssi, u8 frame
//! control, 6-byte source MAC, u16 sequence, u16 core/spatial-stream, u16 chanspec,
//! u16 chip version), all little-endian; then `nfft = 3.2 * bandwidth` 32-bit CSI words.
//! The CSI length comes from the UDP header's length field (`udp_len - 8 - 18` bytes), so
//! bytes captured after the UDP payload (an Ethernet FCS, padding) are ignored. A packet
//! that is not nexmon CSI, or whose CSI is of another bandwidth than asked for, is skipped
//! and counted by reason in [`Reader::skips`].

use crate::complex::Complex;
use crate::error::{CaptureError, Result};
use crate::skips::Skips;
use crate::source::Source;
use std::io::{Read, Write};

/// Bytes before the CSI words (`HOFFSET = 16` 32-bit words in `csireader.m`, 1-based).
pub const CSI_OFFSET: usize = 60;
/// Offset of the nexmon header's magic (after Ethernet, IPv4 and UDP headers).
pub const NEXMON_HEADER: usize = 42;
/// The nexmon header magic.
pub const MAGIC: u16 = 0x1111;
/// The largest packet accepted (pcap's usual maximum snapshot length).
pub const MAX_PACKET: u32 = 262_144;
/// Bytes of the nexmon header before the CSI words.
pub const NEXMON_HEADER_LEN: usize = 18;

/// [`Reader::skips`] reason for packets too short to hold Ethernet, IPv4 and UDP headers.
pub const SKIP_SHORT: &str = "packets shorter than the 42 bytes of Ethernet/IPv4/UDP headers";
/// [`Reader::skips`] reason for packets that are not IPv4/UDP (no IP options).
pub const SKIP_NOT_UDP: &str = "packets that are not IPv4/UDP";
/// [`Reader::skips`] reason for UDP payloads shorter than the nexmon header.
pub const SKIP_NO_HEADER: &str = "UDP payloads shorter than the 18-byte nexmon header";
/// [`Reader::skips`] reason for packets whose capture ends inside the UDP payload.
pub const SKIP_CUT: &str =
    "packets captured shorter than their UDP length (snapshot length too small)";
/// [`Reader::skips`] reason for UDP payloads without the 0x1111 magic.
pub const SKIP_NO_MAGIC: &str = "UDP packets without the nexmon magic 0x1111 (not CSI)";
/// [`Reader::skips`] reason for a packet that yielded an error.
pub const SKIP_BAD_PACKET: &str = "CSI packets of an unknown chip";

/// [`Reader::skips`] reason for CSI of a size that is no bandwidth's.
pub const SKIP_ODD_SIZE: &str =
    "packets whose CSI size fits no bandwidth (256, 512 or 1024 bytes for 20, 40, 80 MHz)";
/// [`Reader::skips`] reason for CSI of `got` MHz when `want` MHz was asked for.
pub fn skip_other_bandwidth(got: u32, want: u32) -> String {
    format!("packets of {got} MHz CSI ({want} MHz asked for)")
}

/// The Broadcom chips nexmon_csi supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chip {
    Bcm4339,
    Bcm43455c0,
    Bcm4358,
    Bcm4366c0,
}

impl Chip {
    /// Parses `4339`, `43455c0`, `4358`, `4366c0` (with or without a `bcm` prefix).
    pub fn parse(s: &str) -> Option<Chip> {
        let s = s.trim().to_ascii_lowercase();
        match s.strip_prefix("bcm").unwrap_or(&s) {
            "4339" => Some(Chip::Bcm4339),
            "43455c0" | "43455" => Some(Chip::Bcm43455c0),
            "4358" => Some(Chip::Bcm4358),
            "4366c0" | "4366" => Some(Chip::Bcm4366c0),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Chip::Bcm4339 => "4339",
            Chip::Bcm43455c0 => "43455c0",
            Chip::Bcm4358 => "4358",
            Chip::Bcm4366c0 => "4366c0",
        }
    }
    /// The chip a header's chip-version field names, where it is known.
    pub fn from_version(v: u16) -> Option<Chip> {
        match v {
            0x0001 => Some(Chip::Bcm4339),
            0x0065 | 0xa6dc => Some(Chip::Bcm43455c0),
            0x0003 | 0xdead => Some(Chip::Bcm4358),
            0x006a | 0xe834 => Some(Chip::Bcm4366c0),
            _ => None,
        }
    }
    /// The chip-version value this crate's writer puts in the header.
    pub fn version(self) -> u16 {
        match self {
            Chip::Bcm4339 => 0x0001,
            Chip::Bcm43455c0 => 0x0065,
            Chip::Bcm4358 => 0xdead,
            Chip::Bcm4366c0 => 0x006a,
        }
    }
    /// Whether the CSI words are plain int16 I/Q (else the packed float format).
    pub fn is_int16(self) -> bool {
        matches!(self, Chip::Bcm4339 | Chip::Bcm43455c0)
    }
}

/// Reader settings: chip and bandwidth, each given or inferred per packet.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `None`: from the header's chip-version field.
    pub chip: Option<Chip>,
    /// Bandwidth in MHz (20, 40, 80); `None`: from the packet length.
    pub bandwidth_mhz: Option<u32>,
}

/// One CSI packet.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Byte offset of the packet record in the pcap.
    pub offset: u64,
    pub ts_sec: u32,
    /// Microseconds (or nanoseconds in a nanosecond pcap).
    pub ts_frac: u32,
    pub rssi: i8,
    pub frame_control: u8,
    pub source_mac: [u8; 6],
    pub sequence: u16,
    pub core: u8,
    pub spatial_stream: u8,
    pub chanspec: u16,
    pub chip_version: u16,
    pub chip: Chip,
    pub bandwidth_mhz: u32,
    /// `nfft` values in the order the capture holds them.
    pub csi: Vec<Complex>,
}

/// `unpack_float_acphy` from nexmon_csi's `unpack_float.c` with `nbits = 10`,
/// `autoscale = 1`: returns interleaved I, Q as the C code's int32 output.
pub fn unpack_float(nman: u32, nexp: u32, words: &[u32]) -> Vec<i32> {
    const SGN: u32 = 1 << 31;
    let nbits: i32 = 10;
    let iq_mask: u32 = (1 << (nman - 1)) - 1;
    let e_mask: u32 = (1 << nexp) - 1;
    let e_p: i32 = 1 << (nexp - 1);
    let sgnr_mask: u32 = 1 << (nexp + 2 * nman - 1);
    let sgni_mask: u32 = sgnr_mask >> nman;
    let e_zero: i32 = -(nman as i32);
    let mut maxbit = -e_p;
    let mut he = Vec::with_capacity(words.len());
    let mut out = Vec::with_capacity(words.len() * 2);
    for &h in words {
        let mut vi = (h >> (nexp + nman)) & iq_mask;
        let mut vq = (h >> nexp) & iq_mask;
        let mut e = (h & e_mask) as i32;
        if e >= e_p {
            e -= e_p << 1;
        }
        he.push(e);
        let mut x = vi | vq;
        if x != 0 {
            let (mut m, mut b, mut s): (u32, u32, u32) = (0xffff_0000, 0xffff, 16);
            while s > 0 {
                if x & m != 0 {
                    e += s as i32;
                    x >>= s;
                }
                s >>= 1;
                m = (m >> s) & b;
                b >>= s;
            }
            if e > maxbit {
                maxbit = e;
            }
        }
        if h & sgnr_mask != 0 {
            vi |= SGN;
        }
        if h & sgni_mask != 0 {
            vq |= SGN;
        }
        out.push(vi);
        out.push(vq);
    }
    let shft = nbits - maxbit;
    out.iter()
        .enumerate()
        .map(|(i, &v)| {
            let mut e = he[i >> 1] + shft;
            let mut vi = v;
            let mut sgn: i32 = 1;
            if vi & SGN != 0 {
                sgn = -1;
                vi &= !SGN;
            }
            let mag: i32 = if e < e_zero {
                0
            } else if e < 0 {
                e = -e;
                (vi >> e) as i32
            } else if e < 32 {
                (vi as i32).wrapping_shl(e as u32)
            } else {
                0
            };
            sgn.wrapping_mul(mag)
        })
        .collect()
}

/// Decodes `nfft` CSI words for `chip`.
pub fn decode_csi(chip: Chip, words: &[u32]) -> Vec<Complex> {
    match chip {
        Chip::Bcm4339 | Chip::Bcm43455c0 => words
            .iter()
            .map(|&w| {
                Complex::new(
                    (w & 0xffff) as u16 as i16 as f64,
                    (w >> 16) as u16 as i16 as f64,
                )
            })
            .collect(),
        Chip::Bcm4358 | Chip::Bcm4366c0 => {
            let (nman, nexp) = if chip == Chip::Bcm4358 {
                (9, 5)
            } else {
                (12, 6)
            };
            unpack_float(nman, nexp, words)
                .chunks_exact(2)
                .map(|p| Complex::new(p[0] as f64, p[1] as f64))
                .collect()
        }
    }
}

/// Streams the CSI packets of a nexmon_csi pcap.
///
/// Packets that are not nexmon CSI (no 0x1111 magic, CSI of no bandwidth's size, or of
/// another bandwidth than [`Options::bandwidth_mhz`]) are skipped and counted by reason in
/// [`Reader::skips`], as `csireader.m` skips them. A packet whose chip cannot be told
/// yields an `Err` (reading goes on); a truncated last packet yields one `Err` with
/// [`CaptureError::is_truncation`] and ends the stream.
pub struct Reader<R> {
    src: Source<R>,
    opts: Options,
    swapped: bool,
    started: bool,
    buf: Vec<u8>,
    skips: Skips,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(input: R, opts: Options) -> Self {
        Reader {
            src: Source::new(input),
            opts,
            swapped: false,
            started: false,
            buf: Vec::new(),
            skips: Skips::new(),
            done: false,
        }
    }
    /// Packets read but not yielded as frames so far, all reasons together.
    pub fn skipped(&self) -> u64 {
        self.skips.total()
    }
    /// Packets read but not yielded as frames so far, by reason.
    pub fn skips(&self) -> &Skips {
        &self.skips
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.swapped {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    fn read_global_header(&mut self) -> Result<bool> {
        let mut g = [0u8; 24];
        if !self.src.record_header(&mut g)? {
            return Ok(false);
        }
        let magic = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        self.swapped = match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d => false,
            0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
            _ => {
                return Err(CaptureError::fatal(
                    0,
                    format!(
                        "pcap magic {magic:#010x} is not a pcap file's (pcapng is not supported)"
                    ),
                ))
            }
        };
        Ok(true)
    }

    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if !self.started {
            self.started = true;
            match self.read_global_header() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        loop {
            let start = self.src.pos();
            let mut ph = [0u8; 16];
            match self.src.record_header(&mut ph) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            let ts_sec = self.u32(&ph[0..]);
            let ts_frac = self.u32(&ph[4..]);
            let incl = self.u32(&ph[8..]);
            if incl > MAX_PACKET {
                self.done = true;
                return Some(Err(CaptureError::fatal(
                    start + 8,
                    format!("packet length {incl} exceeds the pcap maximum {MAX_PACKET}: the packets after it cannot be found"),
                )));
            }
            if let Err(e) = self
                .src
                .read_record_body(incl as usize, &mut self.buf, start)
            {
                self.done = true;
                return Some(Err(e));
            }
            let p = &self.buf;
            let nfft = match csi_words(p, self.opts.bandwidth_mhz) {
                Ok(n) => n,
                Err(reason) => {
                    self.skips.add(&reason);
                    continue;
                }
            };
            let h = &p[NEXMON_HEADER..];
            let le16 = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
            let css = le16(12);
            let chip_version = le16(16);
            let chip = match self.opts.chip.or_else(|| Chip::from_version(chip_version)) {
                Some(c) => c,
                None => {
                    return Some(Err(CaptureError::invalid(
                        start + 16 + NEXMON_HEADER as u64 + 16,
                        format!("chip version {chip_version:#06x} is not one csipose knows; give the chip (4339, 43455c0, 4358, 4366c0)"),
                    )))
                }
            };
            let words: Vec<u32> = p[CSI_OFFSET..CSI_OFFSET + 4 * nfft]
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect();
            return Some(Ok(Frame {
                offset: start,
                ts_sec,
                ts_frac,
                rssi: h[2] as i8,
                frame_control: h[3],
                source_mac: h[4..10].try_into().unwrap(),
                sequence: le16(10),
                core: (css & 7) as u8,
                spatial_stream: ((css >> 3) & 7) as u8,
                chanspec: le16(14),
                chip_version,
                chip,
                bandwidth_mhz: (nfft * 5 / 16) as u32,
                csi: decode_csi(chip, &words),
            }));
        }
    }
}

/// The number of CSI words in the captured packet `p`, from its UDP length, or the reason
/// it is not nexmon CSI of the bandwidth asked for (`want_mhz`; `None`: any of 20/40/80).
fn csi_words(p: &[u8], want_mhz: Option<u32>) -> std::result::Result<usize, String> {
    if p.len() < NEXMON_HEADER {
        return Err(SKIP_SHORT.into());
    }
    let be16 = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]) as usize;
    // Ethernet type IPv4, IP version 4 with a 20-byte header, protocol UDP.
    if be16(12) != 0x0800 || p[14] != 0x45 || p[23] != 17 {
        return Err(SKIP_NOT_UDP.into());
    }
    let udp_len = be16(38);
    let Some(csi_bytes) = udp_len.checked_sub(8 + NEXMON_HEADER_LEN) else {
        return Err(SKIP_NO_HEADER.into());
    };
    if p.len() < CSI_OFFSET + csi_bytes {
        return Err(SKIP_CUT.into());
    }
    if u16::from_le_bytes([p[NEXMON_HEADER], p[NEXMON_HEADER + 1]]) != MAGIC {
        return Err(SKIP_NO_MAGIC.into());
    }
    if ![256, 512, 1024].contains(&csi_bytes) {
        return Err(SKIP_ODD_SIZE.into());
    }
    let nfft = csi_bytes / 4;
    let got_mhz = (nfft * 5 / 16) as u32;
    match want_mhz {
        Some(want) if want != got_mhz => Err(skip_other_bandwidth(got_mhz, want)),
        _ => Ok(nfft),
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
            Some(Err(e)) => self.skips.add_error(e, SKIP_BAD_PACKET),
            Some(Ok(_)) => {}
        }
        r
    }
}

/// Writes a little-endian microsecond pcap of int16-chip CSI frames (bcm4339/43455c0),
/// with the Ethernet/IPv4/UDP framing nexmon uses. Values must be i16 integers.
pub fn write_int16_pcap<W: Write>(mut out: W, frames: &[Frame]) -> std::io::Result<()> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&[0; 8])?;
    out.write_all(&MAX_PACKET.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?;
    for f in frames {
        if !f.chip.is_int16() {
            return Err(bad(format!(
                "writer supports int16 chips only, not {}",
                f.chip.name()
            )));
        }
        let mut p = Vec::with_capacity(CSI_OFFSET + 4 * f.csi.len());
        p.extend_from_slice(&[0xff; 6]);
        p.extend_from_slice(b"NEXMON");
        p.extend_from_slice(&[0x08, 0x00]);
        let ip_len = (p.capacity() - 14) as u16;
        p.extend_from_slice(&[0x45, 0x00]);
        p.extend_from_slice(&ip_len.to_be_bytes());
        p.extend_from_slice(&[
            0, 1, 0, 0, 1, 0x11, 0, 0, 10, 10, 10, 10, 255, 255, 255, 255,
        ]);
        p.extend_from_slice(&5500u16.to_be_bytes());
        p.extend_from_slice(&5500u16.to_be_bytes());
        p.extend_from_slice(&(ip_len - 20).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&MAGIC.to_le_bytes());
        p.push(f.rssi as u8);
        p.push(f.frame_control);
        p.extend_from_slice(&f.source_mac);
        p.extend_from_slice(&f.sequence.to_le_bytes());
        let css = (f.core as u16 & 7) | ((f.spatial_stream as u16 & 7) << 3);
        p.extend_from_slice(&css.to_le_bytes());
        p.extend_from_slice(&f.chanspec.to_le_bytes());
        p.extend_from_slice(&f.chip_version.to_le_bytes());
        for c in &f.csi {
            let q = |x: f64| -> std::io::Result<u16> {
                if x.fract() == 0.0 && (-32768.0..=32767.0).contains(&x) {
                    Ok(x as i16 as u16)
                } else {
                    Err(bad(format!("CSI value {x} is not an int16")))
                }
            };
            p.extend_from_slice(&q(c.re)?.to_le_bytes());
            p.extend_from_slice(&q(c.im)?.to_le_bytes());
        }
        out.write_all(&f.ts_sec.to_le_bytes())?;
        out.write_all(&f.ts_frac.to_le_bytes())?;
        out.write_all(&(p.len() as u32).to_le_bytes())?;
        out.write_all(&(p.len() as u32).to_le_bytes())?;
        out.write_all(&p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_float_hand_computed() {
        // bcm4366c0 layout (nman 12, nexp 6): I at bits 18.., sign I bit 29, Q at bits 6..,
        // sign Q bit 17, exponent bits 0..5 (two's complement).
        let w = |vi: u32, vq: u32, e: u32, si: bool, sq: bool| {
            (vi << 18) | (vq << 6) | (e & 63) | ((si as u32) << 29) | ((sq as u32) << 17)
        };
        // One word, mantissa 1, exponent 0: normalised so the top bit lands at bit 10.
        assert_eq!(
            unpack_float(12, 6, &[w(1, 0, 0, false, false)]),
            vec![1024, 0]
        );
        // The largest exponent sets the scale for every word; signs apply per part.
        assert_eq!(
            unpack_float(12, 6, &[w(1, 3, 0, true, false), w(1, 0, 2, false, true)]),
            vec![-256, 768, 1024, 0]
        );
        // Negative exponents (62 = -2, 32 = -32) shift right, or to zero below -nman.
        // maxbit = 9 (second word), so every exponent is raised by 10 - 9 = 1.
        assert_eq!(
            unpack_float(
                12,
                6,
                &[
                    w(4, 0, 62, false, false),
                    w(1, 0, 9, false, false),
                    w(5, 0, 32, false, false)
                ]
            ),
            vec![2, 0, 1024, 0, 0, 0]
        );
    }

    #[test]
    fn int16_words_are_real_then_imaginary() {
        let words = [0xfffe_0003u32];
        assert_eq!(
            decode_csi(Chip::Bcm43455c0, &words),
            vec![Complex::new(3.0, -2.0)]
        );
    }
}
