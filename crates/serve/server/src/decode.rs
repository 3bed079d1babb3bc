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

/// An open recording: every datagram the UDP socket receives (accepted or not), with its
/// receive time and source address, in `csipose-wire`'s recording format (fsync'ed at least
/// once a second, rotated into part files), so `csipose replay` can send it again.
pub struct Recording {
    pub path: std::path::PathBuf,
    pub started_unix: f64,
    writer: csipose_wire::record::RecordWriter,
}

impl Recording {
    /// Starts recording into `--record-dir` under a new name; `Err((status, message))` when
    /// it cannot.
    pub fn start(s: &crate::Shared) -> Result<serde_json::Value, (u16, String)> {
        let Some(dir) = &s.cfg.record_dir else {
            return Err((
                409,
                "recording is off: start the server with --record-dir".into(),
            ));
        };
        let mut rec = s.recorder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = rec.as_ref() {
            return Err((409, format!("already recording to {}", r.file_name())));
        }
        let secs = crate::unix_now() as u64;
        let mut last_err = String::new();
        for n in 0..100 {
            let prefix = dir.join(format!("csipose-{secs}-{n}"));
            match csipose_wire::record::RecordWriter::create(&prefix, Default::default()) {
                Ok(writer) => {
                    let r = Recording {
                        path: writer.current_path().to_path_buf(),
                        started_unix: crate::unix_now(),
                        writer,
                    };
                    let v = serde_json::json!({"recording": true, "file": r.file_name()});
                    *rec = Some(r);
                    return Ok(v);
                }
                // The name is taken: try the next.
                Err(e) if csipose_wire::record::part_path(&prefix, 0).exists() => {
                    last_err = e.to_string()
                }
                Err(e) => return Err((500, e.to_string())),
            }
        }
        Err((500, last_err))
    }

    /// Appends one datagram.
    pub fn write(
        &mut self,
        bytes: &[u8],
        recv_ns: u64,
        from: std::net::SocketAddr,
    ) -> anyhow::Result<()> {
        self.writer.append(recv_ns, from, bytes)?;
        self.path = self.writer.current_path().to_path_buf();
        Ok(())
    }

    /// Syncs when the sync interval has passed (call regularly).
    pub fn tick(&mut self) -> anyhow::Result<()> {
        self.writer.tick()?;
        Ok(())
    }

    /// The recording's current part file name (no directories).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Syncs and closes; returns the part files' names.
    pub fn finish(self) -> anyhow::Result<Vec<String>> {
        let paths = self.writer.finish()?;
        Ok(paths
            .iter()
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect())
    }
}
