//! One interface over the four readers: open a file (format given or detected), iterate
//! frames of any format, count what was not decoded ([`Reader::skips`]), and get per-frame
//! metadata (as in the reference `.ref.json`) and the receive-antenna x subcarrier
//! amplitudes the windowing stage needs.

use crate::detect::{detect, Format, DETECT_BYTES};
use crate::{atheros, esp32, intel5300, nexmon, Complex, Result, Skips};
use serde_json::{json, Value};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// A frame of any format.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Intel5300(intel5300::Frame),
    Nexmon(nexmon::Frame),
    Esp32(esp32::Frame),
    Atheros(atheros::Frame),
}

impl Frame {
    /// Byte offset of the frame's record in the input.
    pub fn offset(&self) -> u64 {
        match self {
            Frame::Intel5300(f) => f.offset,
            Frame::Nexmon(f) => f.offset,
            Frame::Esp32(f) => f.offset,
            Frame::Atheros(f) => f.offset,
        }
    }

    /// Subcarriers per antenna (tones for Atheros): the frame's width.
    pub fn subcarriers(&self) -> usize {
        match self {
            Frame::Intel5300(_) => intel5300::SUBCARRIERS,
            Frame::Atheros(f) => f.num_tones as usize,
            Frame::Esp32(f) => f.csi.len(),
            Frame::Nexmon(f) => f.csi.len(),
        }
    }

    /// Per-frame metadata with the names the reference `.ref.json` files use.
    pub fn metadata(&self) -> Value {
        match self {
            Frame::Intel5300(f) => json!({
                "timestamp_low": f.timestamp_low, "bfee_count": f.bfee_count,
                "Nrx": f.nrx, "Ntx": f.ntx, "rssi_a": f.rssi_a, "rssi_b": f.rssi_b,
                "rssi_c": f.rssi_c, "noise": f.noise, "agc": f.agc, "perm": f.perm,
                "rate": f.rate,
            }),
            Frame::Atheros(f) => json!({
                "timestamp": f.timestamp, "csi_len": f.csi_len, "channel": f.channel,
                "rate": f.rate, "rssi": f.rssi, "nr": f.nr, "nc": f.nc,
                "num_tones": f.num_tones, "payload_len": f.payload_len,
            }),
            Frame::Esp32(f) => json!({ "rssi": f.rssi, "mac": f.mac }),
            Frame::Nexmon(f) => json!({
                "ts_sec": f.ts_sec, "ts_frac": f.ts_frac, "rssi": f.rssi,
                "frame_control": f.frame_control,
                "source_mac": f.source_mac.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"),
                "sequence": f.sequence, "core": f.core, "spatial_stream": f.spatial_stream,
                "chanspec": f.chanspec, "chip": f.chip.name(), "bandwidth_mhz": f.bandwidth_mhz,
            }),
        }
    }

    /// Complex CSI of the first transmit stream as `(antennas, subcarriers, [rx][sc])`: the one
    /// per-format extraction every consumer (windowing, activity features) goes through. An
    /// Intel frame without CSI gives 0 antennas; an Atheros frame without transmit streams gives
    /// zeros.
    pub fn rx_csi(&self) -> (usize, usize, Vec<Complex>) {
        match self {
            Frame::Intel5300(f) => {
                let c: Vec<Complex> = f
                    .csi
                    .first()
                    .map(|tx| tx.iter().flat_map(|r| r.iter().copied()).collect())
                    .unwrap_or_default();
                let antennas = if c.is_empty() { 0 } else { f.nrx as usize };
                (antennas, intel5300::SUBCARRIERS, c)
            }
            Frame::Atheros(f) => {
                let (nr, tones) = (f.nr as usize, f.num_tones as usize);
                let mut c = vec![Complex { re: 0.0, im: 0.0 }; nr * tones];
                if f.nc > 0 && !f.csi.is_empty() {
                    for rx in 0..nr {
                        for t in 0..tones {
                            c[rx * tones + t] = f.at(t, rx, 0);
                        }
                    }
                }
                (nr, tones, c)
            }
            Frame::Esp32(f) => (1, f.csi.len(), f.csi.clone()),
            Frame::Nexmon(f) => (1, f.csi.len(), f.csi.clone()),
        }
    }

    /// Amplitudes of the first transmit stream as `(antennas, subcarriers, [rx][sc])`
    /// (the magnitudes of [`Frame::rx_csi`]).
    pub fn rx_amplitudes(&self) -> (usize, usize, Vec<f64>) {
        let (antennas, subcarriers, c) = self.rx_csi();
        (antennas, subcarriers, c.iter().map(|z| z.abs()).collect())
    }
}

/// Frames of one capture, whatever its format.
pub struct Reader {
    pub format: Format,
    inner: Inner,
}

type Input = Box<dyn Read>;

enum Inner {
    Intel5300(intel5300::Reader<Input>),
    Nexmon(nexmon::Reader<Input>),
    Esp32(esp32::Reader<Input>),
    Atheros(atheros::Reader<Input>),
}

impl Iterator for Reader {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Intel5300(r) => r.next().map(|x| x.map(Frame::Intel5300)),
            Inner::Nexmon(r) => r.next().map(|x| x.map(Frame::Nexmon)),
            Inner::Esp32(r) => r.next().map(|x| x.map(Frame::Esp32)),
            Inner::Atheros(r) => r.next().map(|x| x.map(Frame::Atheros)),
        }
    }
}

impl Reader {
    /// Wraps a stream of a known format.
    pub fn new<R: Read + 'static>(input: R, format: Format, opts: nexmon::Options) -> Self {
        let input: Input = Box::new(input);
        let inner = match format {
            Format::Intel5300 => Inner::Intel5300(intel5300::Reader::new(input)),
            Format::Nexmon => Inner::Nexmon(nexmon::Reader::new(input, opts)),
            Format::Esp32 => Inner::Esp32(esp32::Reader::new(input)),
            Format::Atheros => Inner::Atheros(atheros::Reader::new(input)),
        };
        Reader { format, inner }
    }

    /// What was read but not yielded as a frame so far, by reason (errors yielded included).
    pub fn skips(&self) -> &Skips {
        match &self.inner {
            Inner::Intel5300(r) => r.skips(),
            Inner::Nexmon(r) => r.skips(),
            Inner::Esp32(r) => r.skips(),
            Inner::Atheros(r) => r.skips(),
        }
    }
}

/// Opens a capture file; `format: None` detects it from the content. An empty file is an
/// error whether the format is given or not. Errors name the file.
pub fn open(
    path: &Path,
    format: Option<Format>,
    opts: nexmon::Options,
) -> std::result::Result<Reader, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!(
            "{}: is a folder, not a capture file",
            path.display()
        ));
    }
    if meta.len() == 0 {
        return Err(format!("{}: the file is empty", path.display()));
    }
    let format = match format {
        Some(f) => f,
        None => {
            let mut head = Vec::with_capacity(DETECT_BYTES);
            File::open(path)
                .and_then(|f| f.take(DETECT_BYTES as u64).read_to_end(&mut head))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            detect(&head).map_err(|m| format!("{}: {m}", path.display()))?
        }
    };
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Reader::new(file, format, opts))
}

/// One received packet as the windowing stage sees it: `[antennas][subcarriers]` amplitudes.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    pub antennas: usize,
    pub subcarriers: usize,
    pub amplitudes: Vec<f64>,
}

/// Turns frames into packets. Every format gives one packet per frame, except Nexmon,
/// which reports each receive core (and spatial stream) of one received frame as its own
/// UDP packet with the same sequence number: consecutive Nexmon frames with one sequence
/// number are merged into one packet with one antenna per core (spatial stream 0, cores
/// in ascending order). Frames of one sequence number that are left out of its packet
/// (spatial streams above 0, repeated cores, another subcarrier count than the first) are
/// counted in [`PacketGrouper::skips`].
#[derive(Default)]
pub struct PacketGrouper {
    pending: Vec<nexmon::Frame>,
    skips: Skips,
}

/// [`PacketGrouper::skips`] reason for spatial streams other than 0.
pub const SKIP_OTHER_STREAM: &str =
    "nexmon frames of spatial streams above 0 (one stream per core is kept)";
/// [`PacketGrouper::skips`] reason for a core seen twice under one sequence number.
pub const SKIP_REPEATED_CORE: &str = "nexmon frames repeating a core of their sequence number";
/// [`PacketGrouper::skips`] reason for a width that differs within one sequence number.
pub const SKIP_OTHER_WIDTH: &str =
    "nexmon frames of another width than the first of their sequence number";

impl PacketGrouper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames left out of packets so far, by reason.
    pub fn skips(&self) -> &Skips {
        &self.skips
    }

    /// Feeds one frame; returns the packets it completes (zero, one or two).
    pub fn push(&mut self, frame: Frame) -> Vec<Packet> {
        let mut out = Vec::new();
        match frame {
            Frame::Nexmon(f) => {
                if self
                    .pending
                    .first()
                    .is_some_and(|p| p.sequence != f.sequence)
                {
                    out.extend(self.flush());
                }
                self.pending.push(f);
            }
            other => {
                out.extend(self.flush());
                let (antennas, subcarriers, amplitudes) = other.rx_amplitudes();
                out.push(Packet {
                    antennas,
                    subcarriers,
                    amplitudes,
                });
            }
        }
        out
    }

    /// Emits the packet still being gathered, if any (call at the end of the stream).
    pub fn flush(&mut self) -> Option<Packet> {
        if self.pending.is_empty() {
            return None;
        }
        let mut frames = std::mem::take(&mut self.pending);
        let subcarriers = frames[0].csi.len();
        let mut rows: Vec<&nexmon::Frame> = Vec::with_capacity(frames.len());
        let mut stream0 = false;
        for f in &frames {
            if f.csi.len() != subcarriers {
                self.skips.add(SKIP_OTHER_WIDTH);
            } else if f.spatial_stream == 0 {
                stream0 = true;
                rows.push(f);
            }
        }
        if !stream0 {
            // No spatial stream 0: the first frame's stream stands for it.
            let ss = frames[0].spatial_stream;
            rows = frames
                .iter()
                .filter(|f| f.csi.len() == subcarriers && f.spatial_stream == ss)
                .collect();
        }
        let others = frames.iter().filter(|f| f.csi.len() == subcarriers).count() - rows.len();
        self.skips.add_n(SKIP_OTHER_STREAM, others as u64);
        rows.sort_by_key(|f| f.core);
        let before = rows.len();
        rows.dedup_by_key(|f| f.core);
        self.skips
            .add_n(SKIP_REPEATED_CORE, (before - rows.len()) as u64);
        let amplitudes = rows
            .iter()
            .flat_map(|f| f.csi.iter().map(|c| c.abs()))
            .collect();
        let packet = Packet {
            antennas: rows.len(),
            subcarriers,
            amplitudes,
        };
        frames.clear();
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Complex;

    fn nex(seq: u16, core: u8, ss: u8, v: f64) -> Frame {
        Frame::Nexmon(nexmon::Frame {
            offset: 0,
            ts_sec: 0,
            ts_frac: 0,
            rssi: 0,
            frame_control: 0,
            source_mac: [0; 6],
            sequence: seq,
            core,
            spatial_stream: ss,
            chanspec: 0,
            chip_version: 0,
            chip: nexmon::Chip::Bcm4358,
            bandwidth_mhz: 20,
            csi: vec![Complex::new(v, 0.0); 2],
        })
    }

    #[test]
    fn nexmon_cores_of_one_sequence_become_antennas() {
        let mut g = PacketGrouper::new();
        let mut packets = Vec::new();
        for f in [
            nex(7, 1, 0, 2.0),
            nex(7, 0, 0, 1.0),
            nex(7, 0, 1, 9.0),
            nex(8, 0, 0, 3.0),
        ] {
            packets.extend(g.push(f));
        }
        packets.extend(g.flush());
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].antennas, 2);
        assert_eq!(packets[0].amplitudes, vec![1.0, 1.0, 2.0, 2.0]);
        assert_eq!(packets[1].antennas, 1);
        assert_eq!(packets[1].amplitudes, vec![3.0, 3.0]);
    }
}
