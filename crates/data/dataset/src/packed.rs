//! The packed dataset: the one on-disk format every stage reads and writes.
//!
//! A directory holding
//! - `X.npy`    float32 `[N, A, S, P]` CSI amplitude (antennas, subcarriers, packets),
//! - `Y.npy`    float32 `[N, 17, 2]` keypoints in [0, 1] (or `[N, 17, 3]` for 3D layouts),
//! - `meta.npy` int32   `[N, 4]` environment, subject, action, frame index (1-based),
//! - `dataset.json` the [`DatasetInfo`]: hardware profile, keypoint layout, source, provenance.
//!
//! Arrays are memory-mapped on open, so a dataset costs page cache, not a second copy.
//! [`PackedWriter`] streams rows into a temporary directory and renames it into place in
//! [`PackedWriter::finish`]: an interrupted writer leaves no half dataset. A writer holds an
//! advisory lock on its destination from creation to finish, so a second writer of the same
//! dataset (in this process or another) is refused with "in use by pid N" instead of racing it.

use csipose_npy::{MmapF32, MmapI32, NpyError, NpyStreamWriter};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

impl DatasetError {
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        DatasetError::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, DatasetError>;

/// The radio that produced (or is simulated to produce) the CSI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HardwareProfile {
    /// Profile name: `mmfi`, `iwl5300`, `esp32`, or a capture format.
    pub name: String,
    /// Receive antennas (A).
    pub antennas: usize,
    /// Subcarriers (S).
    pub subcarriers: usize,
    /// Packets per frame (P).
    pub packets: usize,
    /// Band, e.g. `5GHz` or `2.4GHz`.
    pub band: String,
    /// Channel bandwidth in MHz.
    pub bandwidth_mhz: f64,
}

impl HardwareProfile {
    /// MM-Fi's Atheros receiver: 3 antennas, 114 subcarriers, 5 GHz, 40 MHz, 10 packets per frame.
    pub fn mmfi() -> Self {
        HardwareProfile {
            name: "mmfi".into(),
            antennas: 3,
            subcarriers: 114,
            packets: 10,
            band: "5GHz".into(),
            bandwidth_mhz: 40.0,
        }
    }
    /// Values in one frame (A·S·P).
    pub fn frame_len(&self) -> usize {
        self.antennas * self.subcarriers * self.packets
    }
}

/// How `Y.npy` is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeypointLayout {
    /// COCO-17 2D keypoints, x and y normalised to [0, 1] by the image size.
    #[serde(rename = "coco17-2d")]
    Coco17_2d,
    /// Human3.6M-order 17 joints in 3D (metres), as MM-Fi's ground_truth.npy.
    #[serde(rename = "h36m17-3d")]
    H36m17_3d,
}

impl KeypointLayout {
    pub fn dims(self) -> usize {
        match self {
            KeypointLayout::Coco17_2d => 2,
            KeypointLayout::H36m17_3d => 3,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            KeypointLayout::Coco17_2d => "coco17-2d",
            KeypointLayout::H36m17_3d => "h36m17-3d",
        }
    }
    /// Joints whose distance defines the torso for torso-PCK
    /// (COCO: right shoulder 6, left hip 11; H36M: right shoulder 14, left hip 4).
    pub fn torso_joints(self) -> (usize, usize) {
        match self {
            KeypointLayout::Coco17_2d => (6, 11),
            KeypointLayout::H36m17_3d => (14, 4),
        }
    }
}

/// Number of keypoints in every layout.
pub const JOINTS: usize = 17;

/// The contents of `dataset.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Always `csipose-packed`.
    pub format: String,
    /// Format version, currently 1.
    pub version: u32,
    /// Number of frames (N).
    pub frames: usize,
    pub hardware: HardwareProfile,
    pub keypoints: KeypointLayout,
    /// What made it: `mmfi-import`, `simulator`, `capture`, ...
    pub source: String,
    /// Free-form provenance: command line, input root, seed, counts of skipped frames, ...
    #[serde(default)]
    pub provenance: serde_json::Value,
}

impl DatasetInfo {
    pub fn new(hardware: HardwareProfile, keypoints: KeypointLayout, source: &str) -> Self {
        DatasetInfo {
            format: "csipose-packed".into(),
            version: 1,
            frames: 0,
            hardware,
            keypoints,
            source: source.into(),
            provenance: serde_json::Value::Null,
        }
    }
}

/// One frame's identity within MM-Fi's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameMeta {
    pub environment: i32,
    pub subject: i32,
    pub action: i32,
    /// 1-based frame index, as in MM-Fi's file names.
    pub frame: i32,
}

impl FrameMeta {
    pub fn to_array(self) -> [i32; 4] {
        [self.environment, self.subject, self.action, self.frame]
    }
    pub fn from_slice(m: &[i32]) -> Self {
        FrameMeta {
            environment: m[0],
            subject: m[1],
            action: m[2],
            frame: m[3],
        }
    }
}

/// A packed dataset opened for reading (memory-mapped).
pub struct PackedDataset {
    pub dir: PathBuf,
    pub info: DatasetInfo,
    x: MmapF32,
    y: MmapF32,
    meta: MmapI32,
}

impl PackedDataset {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let jpath = dir.join("dataset.json");
        let text = std::fs::read_to_string(&jpath).map_err(|e| DatasetError::io(&jpath, e))?;
        let info: DatasetInfo = serde_json::from_str(&text)
            .map_err(|e| DatasetError::invalid(&jpath, format!("bad dataset.json: {e}")))?;
        if info.format != "csipose-packed" || info.version != 1 {
            return Err(DatasetError::invalid(
                &jpath,
                format!(
                    "unsupported format {} version {}",
                    info.format, info.version
                ),
            ));
        }
        let x = MmapF32::open(dir.join("X.npy"))?;
        let y = MmapF32::open(dir.join("Y.npy"))?;
        let meta = MmapI32::open(dir.join("meta.npy"))?;
        let h = &info.hardware;
        let n = info.frames;
        let want_x = [n, h.antennas, h.subcarriers, h.packets];
        if x.shape() != want_x {
            return Err(DatasetError::invalid(
                dir.join("X.npy"),
                format!("shape {:?}, dataset.json says {:?}", x.shape(), want_x),
            ));
        }
        let want_y = [n, JOINTS, info.keypoints.dims()];
        if y.shape() != want_y {
            return Err(DatasetError::invalid(
                dir.join("Y.npy"),
                format!("shape {:?}, dataset.json says {:?}", y.shape(), want_y),
            ));
        }
        if meta.shape() != [n, 4] {
            return Err(DatasetError::invalid(
                dir.join("meta.npy"),
                format!("shape {:?}, expected [{n}, 4]", meta.shape()),
            ));
        }
        Ok(PackedDataset {
            dir,
            info,
            x,
            y,
            meta,
        })
    }

    pub fn len(&self) -> usize {
        self.info.frames
    }
    pub fn is_empty(&self) -> bool {
        self.info.frames == 0
    }
    /// Values per frame (A·S·P).
    pub fn frame_len(&self) -> usize {
        self.info.hardware.frame_len()
    }
    /// Values per label (17·2 or 17·3).
    pub fn label_len(&self) -> usize {
        JOINTS * self.info.keypoints.dims()
    }
    /// Frame `i`'s CSI, `[A, S, P]` row-major.
    pub fn x(&self, i: usize) -> &[f32] {
        let l = self.frame_len();
        &self.x.as_slice()[i * l..(i + 1) * l]
    }
    /// Frame `i`'s keypoints, `[17, dims]` row-major.
    pub fn y(&self, i: usize) -> &[f32] {
        let l = self.label_len();
        &self.y.as_slice()[i * l..(i + 1) * l]
    }
    pub fn meta(&self, i: usize) -> FrameMeta {
        FrameMeta::from_slice(&self.meta.as_slice()[i * 4..i * 4 + 4])
    }
    /// The whole CSI array, `[N, A, S, P]` (memory-mapped).
    pub fn x_all(&self) -> &[f32] {
        self.x.as_slice()
    }
    /// The whole label array (memory-mapped).
    pub fn y_all(&self) -> &[f32] {
        self.y.as_slice()
    }
    /// The whole meta array `[N, 4]` (memory-mapped).
    pub fn meta_all(&self) -> &[i32] {
        self.meta.as_slice()
    }
}

/// Streams frames into a new packed dataset; nothing appears at the destination until
/// [`PackedWriter::finish`]. Dropping an unfinished writer removes its temporary directory.
pub struct PackedWriter {
    dest: PathBuf,
    tmp: PathBuf,
    info: DatasetInfo,
    x: Option<NpyStreamWriter<f32>>,
    y: Option<NpyStreamWriter<f32>>,
    meta: Option<NpyStreamWriter<i32>>,
    finished: bool,
    /// Held until the writer is finished or dropped (declared last: released after cleanup).
    _lock: csipose_files::PathLock,
}

impl PackedWriter {
    pub fn create(dest: impl AsRef<Path>, info: DatasetInfo) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| DatasetError::io(&parent, e))?;
        let name = dest
            .file_name()
            .ok_or_else(|| DatasetError::invalid(&dest, "output path has no directory name"))?
            .to_string_lossy()
            .into_owned();
        let lock = csipose_files::PathLock::acquire(&dest).map_err(|e| match e {
            csipose_files::FilesError::InUse { lock, pid, .. } => DatasetError::invalid(
                &dest,
                format!(
                    "in use by pid {pid} (lock {}): another command is writing this dataset; \
                     wait for it to finish or stop it",
                    lock.display()
                ),
            ),
            other => DatasetError::invalid(&dest, format!("cannot lock: {other}")),
        })?;
        remove_stale_temporaries(&parent, &name);
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| DatasetError::io(&tmp, e))?;
        let h = &info.hardware;
        let x =
            NpyStreamWriter::create(tmp.join("X.npy"), &[h.antennas, h.subcarriers, h.packets])?;
        let y = NpyStreamWriter::create(tmp.join("Y.npy"), &[JOINTS, info.keypoints.dims()])?;
        let meta = NpyStreamWriter::create(tmp.join("meta.npy"), &[4])?;
        Ok(PackedWriter {
            dest,
            tmp,
            info,
            x: Some(x),
            y: Some(y),
            meta: Some(meta),
            finished: false,
            _lock: lock,
        })
    }

    /// Appends frames: `x` holds whole `[A, S, P]` frames, `y` and `meta` the matching rows.
    pub fn push(&mut self, x: &[f32], y: &[f32], meta: &[FrameMeta]) -> Result<()> {
        let n = meta.len();
        let fl = self.info.hardware.frame_len();
        let ll = JOINTS * self.info.keypoints.dims();
        if x.len() != n * fl || y.len() != n * ll {
            return Err(DatasetError::invalid(
                &self.dest,
                format!(
                    "push of {n} frames got {} CSI values (want {}) and {} label values (want {})",
                    x.len(),
                    n * fl,
                    y.len(),
                    n * ll
                ),
            ));
        }
        if x.iter().chain(y).any(|v| !v.is_finite()) {
            return Err(DatasetError::invalid(
                &self.dest,
                "refusing to write a non-finite value",
            ));
        }
        let m: Vec<i32> = meta.iter().flat_map(|m| m.to_array()).collect();
        self.x.as_mut().unwrap().push(x)?;
        self.y.as_mut().unwrap().push(y)?;
        self.meta.as_mut().unwrap().push(&m)?;
        Ok(())
    }

    pub fn frames(&self) -> usize {
        self.meta.as_ref().map_or(0, |m| m.rows())
    }

    /// Path for an extra file (e.g. `phase.npy`) inside the temporary directory, so that it
    /// is renamed into place together with the dataset by [`PackedWriter::finish`]. The
    /// caller must have finished writing it (renamed its own temporary) before `finish`.
    pub fn extra_path(&self, file_name: &str) -> PathBuf {
        self.tmp.join(file_name)
    }

    /// Sets the provenance recorded in dataset.json.
    pub fn set_provenance(&mut self, p: serde_json::Value) {
        self.info.provenance = p;
    }

    /// Finalises the arrays, writes dataset.json and renames the directory into place
    /// (replacing an existing dataset at the destination). Returns the frame count.
    pub fn finish(mut self) -> Result<usize> {
        let n = self.x.take().unwrap().finish()?;
        self.y.take().unwrap().finish()?;
        self.meta.take().unwrap().finish()?;
        self.info.frames = n;
        let jpath = self.tmp.join("dataset.json");
        let text = serde_json::to_string_pretty(&self.info).expect("serialisable");
        std::fs::write(&jpath, text + "\n").map_err(|e| DatasetError::io(&jpath, e))?;
        if self.dest.exists() {
            let old = self.tmp.with_extension("old");
            std::fs::rename(&self.dest, &old).map_err(|e| DatasetError::io(&self.dest, e))?;
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| DatasetError::io(&self.dest, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| DatasetError::io(&self.dest, e))?;
        }
        self.finished = true;
        Ok(n)
    }
}

/// Removes `.{name}.tmp-{pid}` directories left by writers that were killed (SIGKILL, power
/// loss) before they could clean up: those whose process no longer exists. Only checked where
/// `/proc` exists; elsewhere stale temporaries are left alone (they never shadow a dataset).
fn remove_stale_temporaries(parent: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = fname.strip_prefix(&prefix) else {
            continue;
        };
        let pid = pid.strip_suffix(".old").unwrap_or(pid);
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for PackedWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.x = None;
            self.y = None;
            self.meta = None;
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_info() -> DatasetInfo {
        let hw = HardwareProfile {
            name: "test".into(),
            antennas: 2,
            subcarriers: 3,
            packets: 2,
            band: "5GHz".into(),
            bandwidth_mhz: 20.0,
        };
        DatasetInfo::new(hw, KeypointLayout::Coco17_2d, "unit-test")
    }

    #[test]
    fn write_then_open() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ds");
        let mut w = PackedWriter::create(&dest, tiny_info()).unwrap();
        for i in 0..3 {
            let x: Vec<f32> = (0..12).map(|v| (v + i * 12) as f32).collect();
            let y = vec![i as f32 / 10.0; 34];
            let m = FrameMeta {
                environment: 1,
                subject: 2,
                action: 3,
                frame: i + 1,
            };
            w.push(&x, &y, &[m]).unwrap();
        }
        assert!(!dest.exists(), "nothing at the destination before finish");
        assert_eq!(w.finish().unwrap(), 3);
        let ds = PackedDataset::open(&dest).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.x(2)[0], 24.0);
        assert_eq!(ds.y(1)[5], 0.1);
        assert_eq!(ds.meta(2).frame, 3);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ds");
        {
            let mut w = PackedWriter::create(&dest, tiny_info()).unwrap();
            w.push(
                &[0.0; 12],
                &[0.0; 34],
                &[FrameMeta {
                    environment: 1,
                    subject: 1,
                    action: 1,
                    frame: 1,
                }],
            )
            .unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_temporary_of_a_dead_writer_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        // pid 0 never names a user process, so this stands for a writer killed by SIGKILL.
        let stale = dir.path().join(".ds.tmp-0");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("X.npy"), b"half").unwrap();
        let w = PackedWriter::create(dir.path().join("ds"), tiny_info()).unwrap();
        if Path::new("/proc/self").exists() {
            assert!(!stale.exists());
        }
        drop(w);
    }

    #[test]
    fn second_writer_of_a_dataset_is_refused_until_the_first_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ds");
        let w = PackedWriter::create(&dest, tiny_info()).unwrap();
        let err = PackedWriter::create(&dest, tiny_info())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("in use by pid {}", std::process::id())) && err.contains("ds"),
            "{err}"
        );
        // The refused writer touched nothing: the first one's temporary is still there.
        assert!(dir
            .path()
            .join(format!(".ds.tmp-{}", std::process::id()))
            .is_dir());
        assert_eq!(w.finish().unwrap(), 0);
        let w2 = PackedWriter::create(&dest, tiny_info()).unwrap();
        drop(w2);
        assert!(
            PackedDataset::open(&dest).is_ok(),
            "a dropped writer leaves the old dataset"
        );
    }

    #[test]
    fn refuses_bad_rows_and_nan() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackedWriter::create(dir.path().join("ds"), tiny_info()).unwrap();
        let m = [FrameMeta {
            environment: 1,
            subject: 1,
            action: 1,
            frame: 1,
        }];
        assert!(w.push(&[0.0; 11], &[0.0; 34], &m).is_err());
        let mut x = vec![0.0; 12];
        x[3] = f32::NAN;
        assert!(w.push(&x, &[0.0; 34], &m).is_err());
    }

    #[test]
    fn open_checks_shapes_against_json() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ds");
        let mut w = PackedWriter::create(&dest, tiny_info()).unwrap();
        w.push(
            &[0.0; 12],
            &[0.0; 34],
            &[FrameMeta {
                environment: 1,
                subject: 1,
                action: 1,
                frame: 1,
            }],
        )
        .unwrap();
        w.finish().unwrap();
        let j = dest.join("dataset.json");
        let text = std::fs::read_to_string(&j)
            .unwrap()
            .replace("\"subcarriers\": 3", "\"subcarriers\": 4");
        std::fs::write(&j, text).unwrap();
        let err = PackedDataset::open(&dest).err().unwrap().to_string();
        assert!(err.contains("X.npy") && err.contains("shape"), "{err}");
    }
}
