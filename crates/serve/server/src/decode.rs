//! From a `csipose-wire` [`CsiFrame`] to the server's [`Packet`]: node identity (the frame's
//! node id, or for formats without one an id given to each source on first sight, 1000, 1001,
//! ...), amplitudes and complex CSI as f32, and the receive time. Also the recording handle.

use std::collections::HashMap;
use std::time::Instant;

use csipose_wire::CsiFrame;

/// First id given to sources whose packets carry no node id.
pub const FIRST_SOURCE_ID: u32 = 1000;
/// Most such sources remembered; beyond it their packets are rejected (`too_many_sources`).
pub const MAX_SOURCES: usize = 256;

/// One decoded packet on its way to the pipeline.
#[derive(Clone, Debug)]
pub struct Packet {
    pub node: u32,
    pub format: &'static str,
    pub seq: Option<u64>,
    pub device_time_ns: Option<u64>,
    pub rssi: Option<i32>,
    pub antennas: usize,
    pub subcarriers: usize,
    /// `antennas × subcarriers` amplitudes, antenna-major.
    pub amplitudes: Vec<f32>,
    /// `antennas × subcarriers × (re, im)` when the format carries complex CSI.
    pub csi: Option<Vec<f32>>,
    pub received: Instant,
    pub received_unix: f64,
    /// The node restarted (sequence reset or new session): the pipeline starts over.
    pub reset: bool,
}

/// Ids for sources whose packets carry none.
#[derive(Debug, Default)]
pub struct SourceIds {
    ids: HashMap<String, u32>,
}

impl SourceIds {
    /// The id of `source` (an address or `stdin`), `None` when the table is full.
    pub fn id(&mut self, source: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(source) {
            return Some(*id);
        }
        if self.ids.len() >= MAX_SOURCES {
            return None;
        }
        let id = FIRST_SOURCE_ID + self.ids.len() as u32;
        self.ids.insert(source.to_string(), id);
        Some(id)
    }
}

/// The packet of a decoded frame for node `node`.
pub fn packet(frame: &CsiFrame, node: u32, received: Instant, received_unix: f64) -> Packet {
    let csi = frame.samples.complex_f64().map(|c| {
        c.iter()
            .flat_map(|z| [z[0] as f32, z[1] as f32])
            .collect::<Vec<f32>>()
    });
    Packet {
        node,
        format: frame.format.name(),
        seq: frame.seq,
        device_time_ns: frame.device_time_ns,
        rssi: frame.rssi_dbm.map(i32::from),
        antennas: frame.antennas as usize,
        subcarriers: frame.subcarriers as usize,
        amplitudes: frame.amplitudes(),
        csi,
        received,
        received_unix,
        reset: false,
    }
}

/// An open recording (raw datagrams with receive times).
pub struct Recording {
    pub path: std::path::PathBuf,
    pub started_unix: f64,
}

impl Recording {
    /// Starts recording into `--record-dir`; `Err((status, message))` when it cannot.
    pub fn start(s: &crate::Shared) -> Result<serde_json::Value, (u16, String)> {
        if s.cfg.record_dir.is_none() {
            return Err((409, "recording is off: start the server with --record-dir".into()));
        }
        Err((501, "recording is not available in this build".into()))
    }

    /// The recording's file name (no directories).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Appends one datagram.
    pub fn write(
        &mut self,
        _bytes: &[u8],
        _received_unix: f64,
        _from: std::net::SocketAddr,
    ) -> anyhow::Result<()> {
        anyhow::bail!("recording is not available in this build")
    }

    pub fn finish(self) -> anyhow::Result<()> {
        Ok(())
    }
}
