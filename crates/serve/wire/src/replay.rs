//! Replay: sends capture files, packed datasets and recordings to a UDP address as live
//! traffic, one source socket (port) per node, paced by the capture's timestamps (or a
//! packet rate) and with seeded, exactly counted faults: loss, reordering, duplication,
//! junk datagrams and node resets.
//!
//! What is sent (`SendAs`):
//! - `Live` (default): one csipose live frame per capture frame or dataset packet; node ids
//!   1..=N, a session per node drawn from the seeded RNG, a stream sequence per node from 0;
//! - `Adr018`: RuView ADR-018 frames (complex values must be int8: ESP32, Intel 5300);
//! - `Native`: the capture's own datagrams (Nexmon UDP payloads from the pcap, ESP32
//!   `CSI_DATA` lines as written).
//!
//! Recordings are always sent as recorded (the same bytes, in the same order, from one
//! socket per recorded source address), at their receive times' pace.
//!
//! Faults, decided per datagram of each node in send order, with one RNG seeded by `seed`:
//! reset (the node's `reset_at`-th datagram starts a new session with sequence 0; live
//! frames only), junk (an extra datagram of random bytes starting with `0xFF`, which no
//! format accepts, sent before it), loss (not sent), reorder (held back and sent right after
//! the node's next datagram), duplicate (sent twice in a row).

use crate::adr018;
use crate::frame::Samples;
use crate::lines::LineSplitter;
use crate::live::LiveFrame;
use crate::record::{is_recording, RecordReader};
use csipose_capture::{any, Format as CaptureFormat};
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// SplitMix64: small, fast, seedable; the same seed gives the same faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p` (never draws when `p` is 0, so a fault left off does not
    /// change the others' draws).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// Pacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the socket takes them.
    Max,
    /// Real time multiplied by this factor (1 = as captured).
    Factor(f64),
}

impl Speed {
    /// `max` or a positive number.
    pub fn parse(s: &str) -> Result<Speed, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "--speed {s:?}: give `max` or a positive number (1 = real time)"
            )),
        }
    }
}

/// What each capture frame becomes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendAs {
    Live,
    Adr018,
    Native,
}

impl SendAs {
    pub fn parse(s: &str) -> Result<SendAs, String> {
        match s {
            "live" => Ok(SendAs::Live),
            "adr018" => Ok(SendAs::Adr018),
            "native" => Ok(SendAs::Native),
            _ => Err(format!("--as {s:?}: give live, adr018 or native")),
        }
    }
}

/// Fault probabilities (each in [0, 1]) and the reset point.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    pub junk: f64,
    /// Each node restarts (new session, sequence 0) at its datagram number `K` (0-based).
    pub reset_at: Option<u64>,
}

/// Replay settings.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub to: SocketAddr,
    /// Nodes (1..=255): each sends the whole stream from its own socket.
    pub nodes: usize,
    pub speed: Speed,
    /// Packet rate used where the input has no timestamps (datasets, or `use_timestamps`
    /// off), in Hz.
    pub rate_hz: f64,
    /// Pace by the capture's timestamps where it has them.
    pub use_timestamps: bool,
    pub faults: Faults,
    pub seed: u64,
    pub send_as: SendAs,
    /// Allow a destination that is not a loopback address.
    pub allow_remote: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            to: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            nodes: 1,
            speed: Speed::Factor(1.0),
            rate_hz: 100.0,
            use_timestamps: true,
            faults: Faults::default(),
            seed: 0,
            send_as: SendAs::Live,
            allow_remote: false,
        }
    }
}

/// The default destination port.
pub const DEFAULT_PORT: u16 = 5500;
/// The largest node count.
pub const MAX_NODES: usize = 255;

/// Exact counts of what a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Datagrams the inputs gave, summed over nodes (before faults).
    pub datagrams: u64,
    /// Datagrams handed to the socket (junk and duplicates included).
    pub sent: u64,
    pub dropped: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub junk: u64,
    pub resets: u64,
    /// Source sockets used.
    pub nodes: usize,
    /// Bytes sent.
    pub bytes: u64,
}

impl ReplayStats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "datagrams": self.datagrams, "sent": self.sent, "dropped": self.dropped,
            "reordered": self.reordered, "duplicated": self.duplicated, "junk": self.junk,
            "resets": self.resets, "nodes": self.nodes, "bytes": self.bytes,
        })
    }
}

impl std::fmt::Display for ReplayStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} datagrams from {} node(s): sent {}, dropped by loss {}, reordered {}, duplicated {}, junk {}, resets {} ({} bytes)",
            self.datagrams, self.nodes, self.sent, self.dropped, self.reordered, self.duplicated,
            self.junk, self.resets, self.bytes
        )
    }
}

/// Resolves and checks `--to`: a `host:port` with a port, loopback unless `allow_remote`.
pub fn parse_target(s: &str, allow_remote: bool) -> Result<SocketAddr, String> {
    let addr = s
        .to_socket_addrs()
        .map_err(|e| format!("--to {s:?}: not a host:port address ({e})"))?
        .next()
        .ok_or_else(|| format!("--to {s:?}: resolves to no address"))?;
    check_target(addr, allow_remote)?;
    Ok(addr)
}

/// Checks a destination: port not 0, address not unspecified/multicast, loopback unless
/// `allow_remote`.
pub fn check_target(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if addr.port() == 0 {
        return Err(format!("--to {addr}: port 0 is not a destination"));
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!("--to {addr}: not a unicast destination address"));
    }
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(format!(
            "--to {addr}: not a loopback address; sending to another machine needs --allow-remote"
        ));
    }
    Ok(())
}

/// One frame's content before node, session and sequence are assigned.
#[derive(Clone, Debug)]
struct Body {
    rssi: Option<i8>,
    antennas: u16,
    subcarriers: u16,
    samples: Samples,
}

enum Payload {
    Frame(Body),
    Raw(Vec<u8>),
}

struct Item {
    /// Time from the input's first item, ns.
    time_ns: u64,
    /// Recording source index (None: sent by every node).
    stream: Option<usize>,
    payload: Payload,
}

type Items = Box<dyn Iterator<Item = Result<Item, String>>>;

/// What a path holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Capture(PathBuf, CaptureFormat),
    Dataset(PathBuf),
    Recording(PathBuf),
}

/// Tells a dataset folder (holding `X.npy`), a recording (magic) and a capture (detected).
pub fn classify(path: &Path) -> Result<Input, String> {
    if path.is_dir() {
        if path.join("X.npy").is_file() {
            return Ok(Input::Dataset(path.to_path_buf()));
        }
        return Err(format!(
            "{}: a folder without X.npy is not a packed dataset",
            path.display()
        ));
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(csipose_capture::detect::DETECT_BYTES as u64)
                .read_to_end(&mut head)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if is_recording(&head) {
        return Ok(Input::Recording(path.to_path_buf()));
    }
    let f = csipose_capture::detect(&head).map_err(|m| format!("{}: {m}", path.display()))?;
    Ok(Input::Capture(path.to_path_buf(), f))
}

fn period_ns(rate_hz: f64) -> u64 {
    (1e9 / rate_hz).round() as u64
}

fn body_from_complex(antennas: usize, sc: usize, values: &[[f64; 2]], rssi: Option<i8>) -> Body {
    Body {
        rssi,
        antennas: antennas as u16,
        subcarriers: sc as u16,
        samples: Samples::from_complex_f64(values),
    }
}

/// Capture frame → body and its own timestamp (ns), if the format has one.
fn capture_body(f: &any::Frame) -> (Body, Option<u64>) {
    match f {
        any::Frame::Intel5300(f) => {
            let nrx = f.nrx as usize;
            let v: Vec<[f64; 2]> = f.csi[0]
                .iter()
                .flat_map(|r| r.iter().map(|c| [c.re, c.im]))
                .collect();
            let rssi = Some(f.rssi_a as i8);
            (
                body_from_complex(nrx, csipose_capture::intel5300::SUBCARRIERS, &v, rssi),
                Some(f.timestamp_low as u64 * 1000),
            )
        }
        any::Frame::Atheros(f) => {
            let (nr, tones) = (f.nr as usize, f.num_tones as usize);
            let mut v = vec![[0.0; 2]; nr * tones];
            if f.nc > 0 && !f.csi.is_empty() {
                for rx in 0..nr {
                    for t in 0..tones {
                        let c = f.at(t, rx, 0);
                        v[rx * tones + t] = [c.re, c.im];
                    }
                }
            }
            (
                body_from_complex(nr, tones, &v, Some(f.rssi as i8)),
                Some(f.timestamp.saturating_mul(1000)),
            )
        }
        any::Frame::Esp32(f) => {
            let v: Vec<[f64; 2]> = f.csi.iter().map(|c| [c.re, c.im]).collect();
            let ts = f
                .fields
                .get(18)
                .and_then(|s| s.parse::<u64>().ok())
                .map(|t| t.saturating_mul(1000));
            let rssi = i8::try_from(f.rssi).ok();
            (body_from_complex(1, v.len(), &v, rssi), ts)
        }
        any::Frame::Nexmon(f) => {
            let v: Vec<[f64; 2]> = f.csi.iter().map(|c| [c.re, c.im]).collect();
            let ts = f.ts_sec as u64 * 1_000_000_000 + f.ts_frac as u64 * 1000;
            (body_from_complex(1, v.len(), &v, Some(f.rssi)), Some(ts))
        }
    }
}

/// Turns per-item device timestamps (which may wrap or be missing) into times from the
/// first item, never decreasing: a backwards step of more than half the counter's range is
/// the counter wrapping (Intel 5300 and ESP32 count µs in 32 bits); any other backwards step
/// (a reordered capture) counts as one packet period.
struct Clock {
    use_ts: bool,
    /// The timestamp counter's range in ns, where it wraps.
    wrap_ns: Option<u64>,
    period: u64,
    first: Option<u64>,
    last_raw: Option<u64>,
    now: u64,
    index: u64,
}

impl Clock {
    fn next(&mut self, ts: Option<u64>) -> u64 {
        let i = self.index;
        self.index += 1;
        match ts.filter(|_| self.use_ts) {
            Some(t) => {
                if self.first.is_none() {
                    self.first = Some(t);
                    self.now = 0;
                } else if let Some(prev) = self.last_raw {
                    self.now += match self.wrap_ns {
                        _ if t >= prev => t - prev,
                        Some(w) if prev - t > w / 2 => (t + w).saturating_sub(prev),
                        _ => self.period,
                    };
                }
                self.last_raw = Some(t);
                self.now
            }
            None => {
                self.now = i * self.period;
                self.now
            }
        }
    }
}

fn capture_items(
    path: &Path,
    format: CaptureFormat,
    opts: &ReplayOptions,
) -> Result<Items, String> {
    let name = path.display().to_string();
    let mut clock = Clock {
        use_ts: opts.use_timestamps,
        wrap_ns: match format {
            CaptureFormat::Intel5300 | CaptureFormat::Esp32 => Some((1u64 << 32) * 1000),
            _ => None,
        },
        period: period_ns(opts.rate_hz),
        first: None,
        last_raw: None,
        now: 0,
        index: 0,
    };
    match opts.send_as {
        SendAs::Live | SendAs::Adr018 => {
            let reader = any::open(path, Some(format), Default::default())?;
            Ok(Box::new(reader.filter_map(move |r| match r {
                Ok(f) => {
                    let (body, ts) = capture_body(&f);
                    Some(Ok(Item {
                        time_ns: clock.next(ts),
                        stream: None,
                        payload: Payload::Frame(body),
                    }))
                }
                // A cut-off last record ends the capture; it is reported, not fatal.
                Err(e) if e.is_truncation() => {
                    eprintln!("{name}: {e} (replaying the frames before it)");
                    None
                }
                Err(e) => Some(Err(format!("{name}: {e}"))),
            })))
        }
        SendAs::Native => match format {
            CaptureFormat::Nexmon => {
                let packets = pcap_payloads(path)?;
                Ok(Box::new(packets.into_iter().map(move |(ts, p)| {
                    Ok(Item {
                        time_ns: clock.next(Some(ts)),
                        stream: None,
                        payload: Payload::Raw(p),
                    })
                })))
            }
            CaptureFormat::Esp32 => {
                let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
                let mut lines = Vec::new();
                let mut split = LineSplitter::new(crate::MAX_DATAGRAM);
                let mut keep = |l: crate::lines::LineResult<'_>| {
                    if let Ok(l) = l {
                        let t = String::from_utf8_lossy(l);
                        if t.trim_start().starts_with(crate::esp::PREFIX) {
                            lines.push(l.to_vec());
                        }
                    }
                };
                split.feed(&bytes, &mut keep);
                split.finish(&mut keep);
                Ok(Box::new(lines.into_iter().map(move |l| {
                    let ts = crate::esp::decode_line(&l)
                        .ok()
                        .and_then(|f| f.device_time_ns);
                    Ok(Item {
                        time_ns: clock.next(ts),
                        stream: None,
                        payload: Payload::Raw(l),
                    })
                })))
            }
            other => Err(format!(
                "{name}: {other:?} captures have no native datagram format; use --as live"
            )),
        },
    }
}

/// The nexmon UDP payloads (bytes after the 42-byte Ethernet/IPv4/UDP headers, starting
/// with the 0x1111 magic) of a classic pcap, with their capture times in ns.
pub fn pcap_payloads(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let name = path.display();
    let b = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    if b.len() < 24 {
        return Err(format!("{name}: byte 0: shorter than a pcap header"));
    }
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (swapped, nanos) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xa1b2_3c4d => (false, true),
        0xd4c3_b2a1 => (true, false),
        0x4d3c_b2a1 => (true, true),
        _ => {
            return Err(format!(
                "{name}: byte 0: pcap magic {magic:#010x} is not a classic pcap's"
            ))
        }
    };
    let u32at = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if swapped {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32at(at + 8) as usize;
        if incl > csipose_capture::nexmon::MAX_PACKET as usize {
            return Err(format!(
                "{name}: byte {}: packet length {incl} is too large",
                at + 8
            ));
        }
        let Some(p) = b.get(at + 16..at + 16 + incl) else {
            eprintln!("{name}: byte {at}: last packet cut off (replaying the packets before it)");
            break;
        };
        let ts =
            u32at(at) as u64 * 1_000_000_000 + u32at(at + 4) as u64 * if nanos { 1 } else { 1000 };
        let h = csipose_capture::nexmon::NEXMON_HEADER;
        if p.len() > h + crate::nexmon_udp::HEADER && p[h..h + 2] == crate::nexmon_udp::MAGIC {
            out.push((ts, p[h..].to_vec()));
        }
        at += 16 + incl;
    }
    Ok(out)
}

fn dataset_items(dir: &Path, opts: &ReplayOptions) -> Result<Items, String> {
    if opts.send_as != SendAs::Live {
        return Err(format!(
            "{}: datasets hold amplitudes; only --as live can send them",
            dir.display()
        ));
    }
    let xp = dir.join("X.npy");
    let x = csipose_npy::MmapF32::open(&xp).map_err(|e| e.to_string())?;
    let shape = x.shape().to_vec();
    let [n, a, s, p] = shape[..] else {
        return Err(format!(
            "{}: shape {shape:?}, expected [N, A, S, P]",
            xp.display()
        ));
    };
    if a == 0 || s == 0 || p == 0 || a > u16::MAX as usize || s > u16::MAX as usize {
        return Err(format!(
            "{}: shape {shape:?} has an empty or too large axis",
            xp.display()
        ));
    }
    let period = period_ns(opts.rate_hz);
    let total = n * p;
    Ok(Box::new((0..total).map(move |k| {
        let (frame, packet) = (k / p, k % p);
        let v = x.as_slice();
        let base = frame * a * s * p;
        let amps: Vec<f32> = (0..a * s).map(|i| v[base + i * p + packet]).collect();
        Ok(Item {
            time_ns: k as u64 * period,
            stream: None,
            payload: Payload::Frame(Body {
                rssi: None,
                antennas: a as u16,
                subcarriers: s as u16,
                samples: Samples::AmplitudeF32(amps),
            }),
        })
    })))
}

fn recording_items(paths: Vec<PathBuf>) -> Result<(Items, usize), String> {
    // Sources are numbered in order of first appearance across all parts; one pass first to
    // count them (sockets are opened before sending starts).
    let mut sources: HashMap<SocketAddr, usize> = HashMap::new();
    let mut first: Option<u64> = None;
    for p in &paths {
        let r = RecordReader::open(p).map_err(|e| e.to_string())?;
        for rec in r {
            let rec = rec.map_err(|e| e.to_string())?;
            first.get_or_insert(rec.recv_time_ns);
            let n = sources.len();
            sources.entry(rec.source).or_insert(n);
        }
    }
    let count = sources.len();
    let t0 = first.unwrap_or(0);
    let mut last = t0;
    let iter = paths.into_iter().flat_map(|p| {
        let items: Box<dyn Iterator<Item = Result<_, String>>> = match RecordReader::open(&p) {
            Ok(r) => Box::new(ReportTruncation { inner: r }),
            Err(e) => Box::new(std::iter::once(Err(e.to_string()))),
        };
        items
    });
    let it = iter.map(move |r| {
        r.map(|rec| {
            // Receive times are wall-clock: never step backwards.
            last = last.max(rec.recv_time_ns);
            Item {
                time_ns: last - t0,
                stream: Some(sources.get(&rec.source).copied().unwrap_or(0)),
                payload: Payload::Raw(rec.data),
            }
        })
    });
    Ok((Box::new(it), count))
}

/// Records of one part; a cut-off last record is reported on stderr and ends the part.
struct ReportTruncation<R: Read> {
    inner: RecordReader<R>,
}

impl<R: Read> Iterator for ReportTruncation<R> {
    type Item = Result<crate::record::Record, String>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next() {
            Some(r) => Some(r.map_err(|e| e.to_string())),
            None => {
                if let Some(t) = self.inner.truncation() {
                    eprintln!(
                        "{}: byte {}: last record cut off ({} bytes present); replaying the records before it",
                        self.inner.path().display(),
                        t.offset,
                        t.got
                    );
                }
                None
            }
        }
    }
}

/// Per-node sending state.
struct Node {
    socket: UdpSocket,
    id: u32,
    session: u32,
    seq: u32,
    count: u64,
    held: Option<Vec<u8>>,
}

struct Sender<'a> {
    opts: &'a ReplayOptions,
    rng: Rng,
    stats: ReplayStats,
}

impl Sender<'_> {
    fn send(&mut self, node: &Node, b: &[u8]) -> Result<(), String> {
        node.socket
            .send_to(b, self.opts.to)
            .map_err(|e| format!("sending to {}: {e}", self.opts.to))?;
        self.stats.sent += 1;
        self.stats.bytes += b.len() as u64;
        Ok(())
    }

    fn datagram(&mut self, node: &mut Node, time_ns: u64, payload: &Payload) -> Result<(), String> {
        let f = self.opts.faults;
        self.stats.datagrams += 1;
        if f.reset_at == Some(node.count) {
            if let Some(h) = node.held.take() {
                self.send(node, &h)?;
            }
            node.session = node.session.wrapping_add(1);
            node.seq = 0;
            self.stats.resets += 1;
        }
        node.count += 1;
        let bytes = match payload {
            Payload::Raw(b) => b.clone(),
            Payload::Frame(body) => {
                let seq = node.seq;
                node.seq = node.seq.wrapping_add(1);
                match self.opts.send_as {
                    SendAs::Adr018 => {
                        let Samples::ComplexI8(s) = &body.samples else {
                            return Err(format!(
                                "--as adr018 needs int8 complex values; this input holds {}; use --as live",
                                body.samples.sample_type().name()
                            ));
                        };
                        let h = adr018::Header {
                            node_id: node.id as u8,
                            freq_mhz: 0,
                            seq,
                            rssi: body.rssi.unwrap_or(0),
                            noise_floor: 0,
                        };
                        adr018::encode(&h, body.antennas as usize, body.subcarriers as usize, s)
                            .ok_or("frame shape does not fit ADR-018 (more than 255 antennas?)")?
                    }
                    _ => LiveFrame {
                        node: node.id,
                        session: node.session,
                        seq,
                        device_time_ns: time_ns,
                        rssi_dbm: body.rssi,
                        antennas: body.antennas,
                        subcarriers: body.subcarriers,
                        samples: body.samples.clone(),
                    }
                    .encode()?,
                }
            }
        };
        if self.rng.chance(f.junk) {
            let n = 1 + (self.rng.next_u64() % 200) as usize;
            let mut j: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
            j[0] = 0xFF;
            self.send(node, &j)?;
            self.stats.junk += 1;
        }
        if self.rng.chance(f.loss) {
            self.stats.dropped += 1;
            return Ok(());
        }
        if node.held.is_none() && self.rng.chance(f.reorder) {
            node.held = Some(bytes);
            return Ok(());
        }
        self.send(node, &bytes)?;
        if self.rng.chance(f.duplicate) {
            self.send(node, &bytes)?;
            self.stats.duplicated += 1;
        }
        if let Some(h) = node.held.take() {
            self.send(node, &h)?;
            self.stats.reordered += 1;
        }
        Ok(())
    }
}

fn check_prob(name: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("--{name} {p}: a probability must be in [0, 1]"))
    }
}

/// Validates the options (before anything is opened or sent).
pub fn validate(opts: &ReplayOptions) -> Result<(), String> {
    check_target(opts.to, opts.allow_remote)?;
    if opts.nodes == 0 || opts.nodes > MAX_NODES {
        return Err(format!("--nodes {}: give 1 to {MAX_NODES}", opts.nodes));
    }
    if !(opts.rate_hz.is_finite() && opts.rate_hz > 0.0 && opts.rate_hz <= 1e6) {
        return Err(format!(
            "--rate {}: give a packet rate in (0, 1e6] Hz",
            opts.rate_hz
        ));
    }
    if let Speed::Factor(f) = opts.speed {
        if !(f.is_finite() && f > 0.0) {
            return Err(format!("--speed {f}: give `max` or a positive number"));
        }
    }
    let f = &opts.faults;
    if f.reset_at == Some(0) {
        return Err("--reset-at 0: a node can restart at its datagram 1 or later".into());
    }
    check_prob("loss", f.loss)?;
    check_prob("reorder", f.reorder)?;
    check_prob("duplicate", f.duplicate)?;
    check_prob("junk", f.junk)?;
    Ok(())
}

/// Replays `paths` (captures, dataset folders, or recording parts) to `opts.to`.
/// Returns the exact counts. `progress` is called with the stats every 1,000 datagrams.
pub fn replay(paths: &[PathBuf], opts: &ReplayOptions) -> Result<ReplayStats, String> {
    replay_with_progress(paths, opts, |_| {})
}

/// [`replay`] with a progress callback.
pub fn replay_with_progress(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    mut progress: impl FnMut(&ReplayStats),
) -> Result<ReplayStats, String> {
    validate(opts)?;
    if paths.is_empty() {
        return Err("no input files".into());
    }
    let inputs = paths
        .iter()
        .map(|p| classify(p))
        .collect::<Result<Vec<_>, _>>()?;
    let recordings: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Recording(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let (mut items, node_count): (Items, usize) = if !recordings.is_empty() {
        if recordings.len() != inputs.len() {
            return Err("recordings cannot be replayed together with captures or datasets".into());
        }
        if opts.nodes != 1 {
            return Err(
                "--nodes: a recording is sent from its own recorded sources; leave --nodes out"
                    .into(),
            );
        }
        if opts.faults.reset_at.is_some() {
            return Err(
                "--reset-at: recordings are sent as recorded; resets need --as live inputs".into(),
            );
        }
        recording_items(recordings)?
    } else {
        if opts.faults.reset_at.is_some() && opts.send_as != SendAs::Live {
            return Err("--reset-at needs --as live (only live frames carry a session)".into());
        }
        // Open every input first, so a bad one is reported before anything is sent; each
        // input starts one packet period after the previous one ended.
        let mut parts = Vec::new();
        for i in inputs {
            parts.push(match i {
                Input::Capture(p, f) => capture_items(&p, f, opts)?,
                Input::Dataset(d) => dataset_items(&d, opts)?,
                Input::Recording(_) => unreachable!("handled above"),
            });
        }
        let period = period_ns(opts.rate_hz);
        let mut cur_part = 0usize;
        let mut offset = 0u64;
        let mut last = 0u64;
        let shifted = parts
            .into_iter()
            .enumerate()
            .flat_map(|(k, part)| part.map(move |r| (k, r)))
            .map(move |(k, r)| {
                r.map(|mut it| {
                    if k != cur_part {
                        cur_part = k;
                        offset = last + period;
                    }
                    it.time_ns += offset;
                    last = it.time_ns;
                    it
                })
            });
        (Box::new(shifted), opts.nodes)
    };
    let bind_ip = match opts.to.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut rng = Rng::new(opts.seed);
    let mut nodes = Vec::with_capacity(node_count);
    for k in 0..node_count {
        let socket = UdpSocket::bind(SocketAddr::new(bind_ip, 0))
            .map_err(|e| format!("cannot open a UDP socket on {bind_ip}: {e}"))?;
        nodes.push(Node {
            socket,
            id: k as u32 + 1,
            session: rng.next_u64() as u32,
            seq: 0,
            count: 0,
            held: None,
        });
    }
    let mut sender = Sender {
        opts,
        rng,
        stats: ReplayStats {
            nodes: node_count,
            ..Default::default()
        },
    };
    let start = Instant::now();
    let mut next_progress = 1000;
    for item in &mut items {
        let item = item?;
        if let Speed::Factor(f) = opts.speed {
            let due = start + Duration::from_secs_f64(item.time_ns as f64 / 1e9 / f);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        match item.stream {
            Some(k) => {
                let node = &mut nodes[k];
                sender.datagram(node, item.time_ns, &item.payload)?;
            }
            None => {
                for node in nodes.iter_mut() {
                    sender.datagram(node, item.time_ns, &item.payload)?;
                }
            }
        }
        if sender.stats.datagrams >= next_progress {
            progress(&sender.stats);
            next_progress += 1000;
        }
    }
    for node in nodes.iter_mut() {
        if let Some(h) = node.held.take() {
            sender.send(node, &h)?;
        }
    }
    Ok(sender.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(wrap_ns: Option<u64>) -> Clock {
        Clock {
            use_ts: true,
            wrap_ns,
            period: 10,
            first: None,
            last_raw: None,
            now: 0,
            index: 0,
        }
    }

    #[test]
    fn clock_follows_timestamps_through_a_wrap() {
        let w = (1u64 << 32) * 1000;
        let mut c = clock(Some(w));
        assert_eq!(c.next(Some(w - 3000)), 0);
        assert_eq!(c.next(Some(w - 1000)), 2000);
        // The counter wrapped: 1000 ns before the top, then 500 ns after zero.
        assert_eq!(c.next(Some(500)), 3500);
        // A small backwards step is a reordered record: one period.
        assert_eq!(c.next(Some(400)), 3510);
        assert_eq!(c.next(Some(1400)), 4510);
        // Without a wrap range every backwards step is one period.
        let mut c = clock(None);
        c.next(Some(5000));
        assert_eq!(c.next(Some(100)), 10);
        // No timestamps: index × period.
        let mut c = clock(None);
        assert_eq!((c.next(None), c.next(None), c.next(None)), (0, 10, 20));
    }

    #[test]
    fn rng_is_seeded_and_chance_zero_never_draws() {
        let mut a = Rng::new(3);
        let mut b = Rng::new(3);
        assert_eq!(a.next_u64(), b.next_u64());
        let before = a.clone().next_u64();
        assert!(!a.chance(0.0));
        assert_eq!(a.next_u64(), before);
        let hits = (0..10_000).filter(|_| a.chance(0.25)).count();
        assert!((2300..2700).contains(&hits), "{hits}");
    }
}
