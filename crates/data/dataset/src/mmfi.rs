//! MM-Fi import: walks an extracted tree or the per-environment zip archives and writes a packed dataset.
//!
//! Input layout (as distributed): `E01/S01/A01/wifi-csi/frame001.mat` (MATLAB v5, `CSIamp` and
//! `CSIphase`, 3 x 114 x 10), `E01/S01/A01/rgb/frame001.npy` (17 x 2 COCO keypoints in pixels)
//! and `E01/S01/A01/ground_truth.npy` (frames x 17 x 3, Human3.6M order). ROOT may be such a
//! tree, a directory of zip archives (`E01.zip` holding `E01/S01/...` entries, read in place,
//! zip64 included), a mix of both, or a single `.zip` file.
//!
//! Frames are written in sorted (environment, subject, action, frame) order with the official
//! toolbox preprocessing ([`crate::preprocess::preprocess_frame`]). Work proceeds in batches of
//! whole sequences processed in parallel, so memory stays bounded however large the input.
//!
//! Rules:
//! - an empty (0-byte) frame file is skipped, as the toolbox skips it, and reported;
//! - a frame without a single finite CSI value is skipped and reported (the toolbox would give NaN);
//! - bad input (unreadable `.mat`, missing `CSIamp`, wrong shape, missing or malformed keypoint
//!   file, ground truth shorter than the frames) stops the import with an error naming the file,
//!   or with `skip_bad` skips that frame (that sequence, for a bad `ground_truth.npy`) and lists it.

use crate::mat;
use crate::packed::{
    DatasetError, DatasetInfo, FrameMeta, HardwareProfile, KeypointLayout, PackedWriter, Result,
    JOINTS,
};
use crate::preprocess::{self, Refusal, Repair};
use csipose_npy::{NpyError, NpyStreamWriter};
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the keypoints (Y) come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeypointSource {
    /// `rgb/frameNNN.npy` pixels divided by the image size: COCO-17 2D.
    Rgb,
    /// `ground_truth.npy` row `frame - 1`: Human3.6M-order 3D.
    Gt3d,
}

impl KeypointSource {
    pub fn layout(self) -> KeypointLayout {
        match self {
            KeypointSource::Rgb => KeypointLayout::Coco17_2d,
            KeypointSource::Gt3d => KeypointLayout::H36m17_3d,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            KeypointSource::Rgb => "rgb",
            KeypointSource::Gt3d => "gt3d",
        }
    }
}

/// Options of [`import_mmfi`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub keypoints: KeypointSource,
    /// Width and height in pixels that `rgb` keypoints are divided by.
    pub image_size: (u32, u32),
    /// Skip (and list) bad input instead of stopping.
    pub skip_bad: bool,
    /// Also write the raw `CSIphase` as `phase.npy` (float32 `[N, A, S, P]`).
    pub with_phase: bool,
    /// Frames processed in parallel (and held in memory) per batch; at least one sequence.
    pub batch_frames: usize,
    /// The command line, recorded in the provenance.
    pub command_line: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            keypoints: KeypointSource::Rgb,
            image_size: (640, 480),
            skip_bad: false,
            with_phase: false,
            batch_frames: 1024,
            command_line: None,
        }
    }
}

/// Progress reporting hook (the CLI drives a progress bar with it).
pub trait Progress: Sync {
    /// Called once with the number of frame files to process.
    fn start(&self, _total_frames: u64) {}
    /// Called as frames are processed (from several threads).
    fn advance(&self, _frames: u64) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A file that was skipped as bad input, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedFile {
    pub file: PathBuf,
    pub reason: String,
    /// Frames lost with it (1 for a frame file; the sequence's frames for a ground-truth file).
    pub frames: usize,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportSummary {
    pub root: PathBuf,
    pub out: PathBuf,
    /// The zip archives read (empty for an extracted tree).
    pub archives: Vec<PathBuf>,
    pub sequences: usize,
    /// Frame files (`wifi-csi/frameNNN.mat`) found, empty ones included.
    pub frame_files: usize,
    /// Frames written to the dataset.
    pub written: usize,
    /// Empty frame files, skipped as the toolbox skips them.
    pub skipped_empty: Vec<PathBuf>,
    /// Bad input skipped with `skip_bad`.
    pub skipped_bad: Vec<SkippedFile>,
    /// Frames with no finite CSI value, skipped.
    pub skipped_no_finite: Vec<PathBuf>,
    /// Frames that needed each repair (see [`crate::preprocess`]).
    pub repairs: BTreeMap<Repair, usize>,
    /// Frames with at least one repair.
    pub repaired_frames: usize,
    /// NaN / inf CSI values filled by the toolbox rule (per-packet mean).
    pub filled_values: u64,
    /// With `with_phase`: non-finite phase values written as 0.
    pub phase_nonfinite: Option<u64>,
}

impl ImportSummary {
    /// Frames lost to bad input.
    pub fn skipped_bad_frames(&self) -> usize {
        self.skipped_bad.iter().map(|s| s.frames).sum()
    }
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let input = if self.archives.is_empty() {
            "extracted tree".to_string()
        } else {
            format!("{} zip archive(s)", self.archives.len())
        };
        writeln!(
            f,
            "MM-Fi import of {} ({input}) -> {}",
            self.root.display(),
            self.out.display()
        )?;
        let line = |f: &mut std::fmt::Formatter<'_>, label: &str, n: u64| {
            writeln!(f, "  {label:<46}{n:>8}")
        };
        line(f, "frame files read", self.frame_files as u64)?;
        line(
            f,
            "sequences (environment, subject, action)",
            self.sequences as u64,
        )?;
        line(f, "frames written", self.written as u64)?;
        line(
            f,
            "skipped: empty frame file",
            self.skipped_empty.len() as u64,
        )?;
        for p in &self.skipped_empty {
            writeln!(f, "      {}", p.display())?;
        }
        line(
            f,
            "skipped: bad input (frames)",
            self.skipped_bad_frames() as u64,
        )?;
        for s in &self.skipped_bad {
            let frames = if s.frames == 1 {
                String::new()
            } else {
                format!(" [{} frames]", s.frames)
            };
            writeln!(f, "      {}: {}{frames}", s.file.display(), s.reason)?;
        }
        line(
            f,
            "skipped: no finite CSI value",
            self.skipped_no_finite.len() as u64,
        )?;
        for p in &self.skipped_no_finite {
            writeln!(f, "      {}", p.display())?;
        }
        line(f, "repaired frames", self.repaired_frames as u64)?;
        for (r, label) in [
            (Repair::EmptyPacket, "repaired: packet without finite value"),
            (
                Repair::ConstantFrame,
                "repaired: constant frame set to zeros",
            ),
        ] {
            line(f, label, self.repairs.get(&r).copied().unwrap_or(0) as u64)?;
        }
        line(
            f,
            "NaN/inf CSI values filled (toolbox rule)",
            self.filled_values,
        )?;
        if let Some(n) = self.phase_nonfinite {
            line(f, "phase.npy: non-finite values written as 0", n)?;
        }
        Ok(())
    }
}

/// Imports the MM-Fi data under `root` into a packed dataset at `out`.
///
/// `out` must not exist or must be a packed dataset (it is replaced atomically at the end);
/// on any error nothing is left at `out`.
pub fn import_mmfi(
    root: &Path,
    out: &Path,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportSummary> {
    check_destination(out)?;
    if opts.image_size.0 == 0 || opts.image_size.1 == 0 {
        return Err(DatasetError::invalid(
            root,
            format!("image size {:?} has a zero side", opts.image_size),
        ));
    }
    let input = discover(root)?;
    let total: usize = input.sequences.iter().map(|s| s.frames.len()).sum();
    if total == 0 && input.sequences.is_empty() {
        return Err(DatasetError::invalid(
            root,
            "no MM-Fi data found: expected E01/S01/A01/wifi-csi/frame001.mat or per-environment zip archives (E01.zip)",
        ));
    }
    let hw = HardwareProfile::mmfi();
    let shape = [hw.antennas, hw.subcarriers, hw.packets];
    let mut info = DatasetInfo::new(hw.clone(), opts.keypoints.layout(), "mmfi-import");
    info.provenance = serde_json::Value::Null;
    let mut writer = PackedWriter::create(out, info)?;
    let mut phase_writer = if opts.with_phase {
        Some(NpyStreamWriter::<f32>::create(
            writer.extra_path("phase.npy"),
            &shape,
        )?)
    } else {
        None
    };
    let mut summary = ImportSummary {
        root: root.to_path_buf(),
        out: out.to_path_buf(),
        archives: input.archives.iter().map(|a| a.path.clone()).collect(),
        sequences: input.sequences.len(),
        frame_files: total,
        phase_nonfinite: opts.with_phase.then_some(0),
        ..ImportSummary::default()
    };
    progress.start(total as u64);
    let batch_frames = opts.batch_frames.max(1);
    let mut start = 0;
    while start < input.sequences.len() {
        let mut end = start;
        let mut n = 0;
        while end < input.sequences.len()
            && (n == 0 || n + input.sequences[end].frames.len() <= batch_frames)
        {
            n += input.sequences[end].frames.len();
            end += 1;
        }
        let batch = &input.sequences[start..end];
        process_batch(
            &input,
            batch,
            opts,
            progress,
            &mut writer,
            phase_writer.as_mut(),
            &mut summary,
        )?;
        start = end;
    }
    if summary.written == 0 {
        return Err(DatasetError::invalid(
            root,
            format!(
                "no frame could be imported ({} frame files found, all skipped)",
                summary.frame_files
            ),
        ));
    }
    let phase_rows = match phase_writer {
        Some(w) => Some(w.finish()?),
        None => None,
    };
    writer.set_provenance(provenance(root, &input, opts, &summary, phase_rows));
    writer.finish()?;
    Ok(summary)
}

/// Refuses to replace anything at `out` but a packed dataset.
fn check_destination(out: &Path) -> Result<()> {
    if out.exists() && !(out.is_dir() && out.join("dataset.json").is_file()) {
        return Err(DatasetError::invalid(
            out,
            "exists and is not a csipose packed dataset; refusing to replace it",
        ));
    }
    Ok(())
}

fn provenance(
    root: &Path,
    input: &Input,
    opts: &ImportOptions,
    s: &ImportSummary,
    phase_rows: Option<usize>,
) -> serde_json::Value {
    let root_abs = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut skipped: Vec<serde_json::Value> = Vec::new();
    for p in &s.skipped_empty {
        skipped.push(json!({"file": p.display().to_string(), "reason": "empty frame file (skipped as the toolbox does)", "frames": 1}));
    }
    for p in &s.skipped_no_finite {
        skipped.push(json!({"file": p.display().to_string(), "reason": Refusal::NoFiniteValue.to_string(), "frames": 1}));
    }
    for b in &s.skipped_bad {
        skipped.push(
            json!({"file": b.file.display().to_string(), "reason": b.reason, "frames": b.frames}),
        );
    }
    let mut p = json!({
        "importer": "csipose import-mmfi",
        "csipose_version": env!("CARGO_PKG_VERSION"),
        "command": opts.command_line,
        "root": root_abs.display().to_string(),
        "input": if input.archives.is_empty() { "extracted tree" } else { "zip archives" },
        "archives": input.archives.iter().map(|a| a.path.display().to_string()).collect::<Vec<_>>(),
        "options": {
            "keypoints": opts.keypoints.name(),
            "image_size": [opts.image_size.0, opts.image_size.1],
            "skip_bad": opts.skip_bad,
            "with_phase": opts.with_phase,
        },
        "preprocessing": "MM-Fi toolbox: inf -> NaN; per packet p, NaN in [:, :, p] -> mean of that slice's finite values; min-max of the whole frame. Repairs where the toolbox gives NaN: a packet with no finite value takes the frame's finite mean; a constant frame becomes zeros; a frame with no finite value is skipped.",
        "counts": {
            "sequences": s.sequences,
            "frame_files": s.frame_files,
            "written": s.written,
            "skipped_empty": s.skipped_empty.len(),
            "skipped_no_finite_value": s.skipped_no_finite.len(),
            "skipped_bad_frames": s.skipped_bad_frames(),
            "skipped_bad_files": s.skipped_bad.len(),
            "repaired_frames": s.repaired_frames,
            "repairs": {
                "empty_packet": s.repairs.get(&Repair::EmptyPacket).copied().unwrap_or(0),
                "constant_frame": s.repairs.get(&Repair::ConstantFrame).copied().unwrap_or(0),
            },
            "filled_values": s.filled_values,
        },
        "skipped_files": skipped,
    });
    if let Some(rows) = phase_rows {
        p["extra_arrays"] = json!({
            "phase.npy": {
                "dtype": "float32",
                "shape": [rows, 3, 114, 10],
                "content": "raw CSIphase as stored in the .mat files, row-aligned with X.npy; no preprocessing",
                "nonfinite_set_to_zero": s.phase_nonfinite.unwrap_or(0),
            }
        });
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Input discovery

/// Where a file is: in the extracted tree (at the path its label gives) or in a zip archive.
#[derive(Clone, Debug)]
enum Source {
    File,
    Zip { archive: usize, index: usize },
}

/// One frame's files; names only, so that the index of 320,760 frames stays small.
#[derive(Clone, Debug)]
struct FrameFiles {
    frame: i32,
    csi: Source,
    /// `frame001.mat`
    csi_name: Box<str>,
    rgb: Option<Source>,
    /// `frame001.npy` (the expected name when the file is missing)
    rgb_name: Box<str>,
}

#[derive(Debug)]
struct Sequence {
    env: i32,
    subject: i32,
    action: i32,
    /// `.../E01/S01/A01` (a path, or `archive.zip!/E01/S01/A01`).
    label: PathBuf,
    frames: Vec<FrameFiles>,
    gt: Option<Source>,
}

impl Sequence {
    fn tree_path(&self, parts: &[&str]) -> PathBuf {
        let mut p = self.label.clone();
        p.extend(parts);
        p
    }
}

struct Archive {
    path: PathBuf,
    zip: zip::ZipArchive<SharedFile>,
}

struct Input {
    archives: Vec<Archive>,
    sequences: Vec<Sequence>,
}

/// Largest single file read (MM-Fi frames are ~55 KB, ground truth ~120 KB).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// The name errors and summaries give a file: its path, or `archive.zip!/entry`.
fn source_label(archives: &[Archive], src: Option<&Source>, tree_path: PathBuf) -> PathBuf {
    match src {
        Some(Source::Zip { archive, index }) => {
            let a = &archives[*archive];
            let entry = a.zip.name_for_index(*index).unwrap_or("?");
            PathBuf::from(format!("{}!/{entry}", a.path.display()))
        }
        _ => tree_path,
    }
}

impl Input {
    fn csi_label(&self, seq: &Sequence, f: &FrameFiles) -> PathBuf {
        source_label(
            &self.archives,
            Some(&f.csi),
            seq.tree_path(&["wifi-csi", &f.csi_name]),
        )
    }
    fn rgb_label(&self, seq: &Sequence, f: &FrameFiles) -> PathBuf {
        source_label(
            &self.archives,
            f.rgb.as_ref(),
            seq.tree_path(&["rgb", &f.rgb_name]),
        )
    }
    fn gt_label(&self, seq: &Sequence) -> PathBuf {
        source_label(
            &self.archives,
            seq.gt.as_ref(),
            seq.tree_path(&["ground_truth.npy"]),
        )
    }

    /// Reads a whole file; `label` is its path for [`Source::File`].
    fn read(&self, src: &Source, label: &Path) -> Result<Vec<u8>> {
        match src {
            Source::File => {
                let p = label;
                let len = std::fs::metadata(p)
                    .map_err(|e| DatasetError::io(label, e))?
                    .len();
                if len > MAX_FILE_BYTES {
                    return Err(DatasetError::invalid(
                        label,
                        format!("{len} bytes is far too large for an MM-Fi file"),
                    ));
                }
                std::fs::read(p).map_err(|e| DatasetError::io(label, e))
            }
            Source::Zip { archive, index } => {
                let mut zip = self.archives[*archive].zip.clone();
                let entry = zip
                    .by_index(*index)
                    .map_err(|e| DatasetError::invalid(label, format!("zip entry: {e}")))?;
                let size = entry.size();
                if size > MAX_FILE_BYTES {
                    return Err(DatasetError::invalid(
                        label,
                        format!("{size} bytes is far too large for an MM-Fi file"),
                    ));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry
                    .take(MAX_FILE_BYTES + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| DatasetError::invalid(label, format!("zip entry: {e}")))?;
                if buf.len() as u64 > MAX_FILE_BYTES {
                    return Err(DatasetError::invalid(
                        label,
                        "zip entry inflates beyond its recorded size",
                    ));
                }
                Ok(buf)
            }
        }
    }
}

/// `E01` -> 1 for prefix `E`.
fn parse_tagged(name: &str, prefix: char) -> Option<i32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `frame007.mat` -> 7 for extension `.mat`.
fn parse_frame(name: &str, ext: &str) -> Option<i32> {
    let digits = name.strip_prefix("frame")?.strip_suffix(ext)?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Default)]
struct SeqBuilder {
    label: PathBuf,
    csi: BTreeMap<i32, (Source, Box<str>)>,
    rgb: BTreeMap<i32, (Source, Box<str>)>,
    gt: Option<Source>,
}

type Key = (i32, i32, i32);

/// Adds a frame file to a sequence's `sub` directory map; two files for one frame number
/// (`frame1.mat` and `frame001.mat`, or the same entry in two archives) are an error.
fn insert_unique(
    archives: &[Archive],
    seq: &mut SeqBuilder,
    sub: &str,
    frame: i32,
    src: Source,
    name: &str,
) -> Result<()> {
    let map = if sub == "wifi-csi" {
        &mut seq.csi
    } else {
        &mut seq.rgb
    };
    if let Some((old_src, old_name)) = map.get(&frame) {
        let label = |src: &Source, name: &str| {
            source_label(archives, Some(src), seq.label.join(sub).join(name))
        };
        return Err(DatasetError::invalid(
            label(&src, name),
            format!(
                "duplicate of {} (same frame number)",
                label(old_src, old_name).display()
            ),
        ));
    }
    map.insert(frame, (src, name.into()));
    Ok(())
}

fn seq_entry(
    seqs: &mut BTreeMap<Key, SeqBuilder>,
    key: Key,
    label: impl FnOnce() -> PathBuf,
) -> &mut SeqBuilder {
    seqs.entry(key).or_insert_with(|| SeqBuilder {
        label: label(),
        ..SeqBuilder::default()
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))? {
        let e = e.map_err(|e| DatasetError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let is_dir = path.is_dir();
        v.push((name, path, is_dir));
    }
    v.sort();
    Ok(v)
}

fn discover(root: &Path) -> Result<Input> {
    let mut seqs: BTreeMap<Key, SeqBuilder> = BTreeMap::new();
    let mut archive_paths = Vec::new();
    if root.is_file() {
        archive_paths.push(root.to_path_buf());
    } else {
        for (name, path, is_dir) in read_dir_sorted(root)? {
            if is_dir {
                if let Some(env) = parse_tagged(&name, 'E') {
                    discover_env_dir(&path, env, &mut seqs)?;
                }
            } else if name.to_ascii_lowercase().ends_with(".zip") {
                archive_paths.push(path);
            }
        }
    }
    let mut archives: Vec<Archive> = Vec::new();
    for path in archive_paths {
        let file = File::open(&path).map_err(|e| DatasetError::io(&path, e))?;
        let zip =
            zip::ZipArchive::new(SharedFile::new(file).map_err(|e| DatasetError::io(&path, e))?)
                .map_err(|e| {
                    DatasetError::invalid(&path, format!("not a readable zip archive: {e}"))
                })?;
        archives.push(Archive { path, zip });
        let archive = archives.len() - 1;
        for index in 0..archives[archive].zip.len() {
            let Some(name) = archives[archive].zip.name_for_index(index) else {
                continue;
            };
            discover_zip_entry(&archives, archive, index, name, &mut seqs)?;
        }
    }
    let mut sequences = Vec::new();
    for ((env, subject, action), b) in seqs {
        let mut rgb = b.rgb;
        let frames = b
            .csi
            .into_iter()
            .map(|(frame, (csi, csi_name))| {
                let (rgb, rgb_name) = match rgb.remove(&frame) {
                    Some((s, name)) => (Some(s), name),
                    None => {
                        let stem = csi_name.strip_suffix(".mat").unwrap_or(&csi_name);
                        (None, format!("{stem}.npy").into())
                    }
                };
                FrameFiles {
                    frame,
                    csi,
                    csi_name,
                    rgb,
                    rgb_name,
                }
            })
            .collect();
        sequences.push(Sequence {
            env,
            subject,
            action,
            label: b.label,
            frames,
            gt: b.gt,
        });
    }
    Ok(Input {
        archives,
        sequences,
    })
}

fn discover_env_dir(dir: &Path, env: i32, seqs: &mut BTreeMap<Key, SeqBuilder>) -> Result<()> {
    for (sname, spath, sdir) in read_dir_sorted(dir)? {
        let Some(subject) = parse_tagged(&sname, 'S').filter(|_| sdir) else {
            continue;
        };
        for (aname, apath, adir) in read_dir_sorted(&spath)? {
            let Some(action) = parse_tagged(&aname, 'A').filter(|_| adir) else {
                continue;
            };
            let seq = seq_entry(seqs, (env, subject, action), || apath.clone());
            for (sub, ext) in [("wifi-csi", ".mat"), ("rgb", ".npy")] {
                let dir = apath.join(sub);
                if !dir.is_dir() {
                    continue;
                }
                for (name, _, is_dir) in read_dir_sorted(&dir)? {
                    if let Some(frame) = parse_frame(&name, ext).filter(|_| !is_dir) {
                        insert_unique(&[], seq, sub, frame, Source::File, &name)?;
                    }
                }
            }
            if apath.join("ground_truth.npy").is_file() {
                seq.gt = Some(Source::File);
            }
        }
    }
    Ok(())
}

fn discover_zip_entry(
    archives: &[Archive],
    archive: usize,
    index: usize,
    name: &str,
    seqs: &mut BTreeMap<Key, SeqBuilder>,
) -> Result<()> {
    if name.ends_with('/') || name.ends_with('\\') {
        return Ok(());
    }
    let comps: Vec<&str> = name.split(['/', '\\']).filter(|c| !c.is_empty()).collect();
    let n = comps.len();
    let archive_path = &archives[archive].path;
    let key_at = |i: usize| -> Option<Key> {
        Some((
            parse_tagged(comps[i], 'E')?,
            parse_tagged(comps[i + 1], 'S')?,
            parse_tagged(comps[i + 2], 'A')?,
        ))
    };
    let seq_label = |upto: usize| {
        PathBuf::from(format!(
            "{}!/{}",
            archive_path.display(),
            comps[..upto].join("/")
        ))
    };
    let src = Source::Zip { archive, index };
    if n >= 4 && comps[n - 1] == "ground_truth.npy" {
        if let Some(key) = key_at(n - 4) {
            let seq = seq_entry(seqs, key, || seq_label(n - 1));
            if let Some(old) = &seq.gt {
                let label = |s: &Source| source_label(archives, Some(s), PathBuf::new());
                return Err(DatasetError::invalid(
                    label(&src),
                    format!("duplicate of {}", label(old).display()),
                ));
            }
            seq.gt = Some(src);
        }
        return Ok(());
    }
    if n >= 5 {
        let Some(key) = key_at(n - 5) else {
            return Ok(());
        };
        let (sub, ext) = match comps[n - 2] {
            "wifi-csi" => ("wifi-csi", ".mat"),
            "rgb" => ("rgb", ".npy"),
            _ => return Ok(()),
        };
        if let Some(frame) = parse_frame(comps[n - 1], ext) {
            let seq = seq_entry(seqs, key, || seq_label(n - 2));
            insert_unique(archives, seq, sub, frame, src, comps[n - 1])?;
        }
    }
    Ok(())
}

/// A file shared by several readers, each with its own position (positional reads), so
/// that one opened zip archive can be read from many threads at once.
#[derive(Clone)]
struct SharedFile {
    file: Arc<File>,
    pos: u64,
    len: u64,
}

impl SharedFile {
    fn new(file: File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(SharedFile {
            file: Arc::new(file),
            pos: 0,
            len,
        })
    }
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.pos)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&*self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processing

/// One sequence's `ground_truth.npy`: `[rows, 17, 3]` row-major.
struct GroundTruth {
    rows: usize,
    data: Vec<f64>,
}

enum FrameOutcome {
    Written {
        x: Vec<f32>,
        y: Vec<f32>,
        phase: Option<Vec<f32>>,
        phase_nonfinite: u64,
        report: preprocess::Report,
    },
    Empty,
    NoFinite,
    Bad(DatasetError),
    /// The sequence as a whole is bad (its ground truth); accounted once per sequence.
    SequenceBad,
}

/// The file an error names, and the rest of its message.
fn split_error(e: &DatasetError) -> (PathBuf, String) {
    match e {
        DatasetError::Invalid { path, msg } => (path.clone(), msg.clone()),
        DatasetError::Io { path, source } => (path.clone(), source.to_string()),
        DatasetError::Npy(NpyError::Io { path, source }) => (path.clone(), source.to_string()),
        DatasetError::Npy(NpyError::Format { path, offset, msg }) => {
            (path.clone(), format!("byte {offset}: {msg}"))
        }
    }
}

fn load_ground_truth(input: &Input, seq: &Sequence) -> Result<GroundTruth> {
    let label = input.gt_label(seq);
    let src = seq.gt.as_ref().ok_or_else(|| {
        DatasetError::invalid(
            &label,
            "missing ground_truth.npy (needed for --keypoints gt3d)",
        )
    })?;
    let bytes = input.read(src, &label)?;
    let a = csipose_npy::from_bytes::<f64>(&bytes, &label)?;
    if a.shape.len() != 3 || a.shape[1] != JOINTS || a.shape[2] != 3 {
        return Err(DatasetError::invalid(
            &label,
            format!("shape {:?}, expected [frames, 17, 3]", a.shape),
        ));
    }
    let rows = a.shape[0];
    if let Some(first) = seq.frames.first().filter(|f| f.frame < 1) {
        return Err(DatasetError::invalid(
            input.csi_label(seq, first),
            format!(
                "frame {}: MM-Fi frames are numbered from 1 (frame N is row N-1 of {})",
                first.frame,
                label.display()
            ),
        ));
    }
    if let Some(last) = seq.frames.last() {
        if last.frame as usize > rows {
            return Err(DatasetError::invalid(
                &label,
                format!(
                    "ground truth has {rows} frames but {} is frame {}",
                    input.csi_label(seq, last).display(),
                    last.frame
                ),
            ));
        }
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(DatasetError::invalid(
            &label,
            format!(
                "non-finite value at frame {}, joint {}",
                i / (JOINTS * 3) + 1,
                i / 3 % JOINTS
            ),
        ));
    }
    Ok(GroundTruth { rows, data: a.data })
}

const CSI_SHAPE: [usize; 3] = [3, 114, 10];

/// Reads a `[3, 114, 10]` variable of a parsed frame file.
fn frame_variable(m: &mat::MatFile, name: &str, label: &Path) -> Result<Vec<f64>> {
    let Some(v) = m.get(name) else {
        let found = m.names().join(", ");
        return Err(DatasetError::invalid(
            label,
            format!("no numeric variable `{name}` (variables: [{found}])"),
        ));
    };
    if v.dims != CSI_SHAPE {
        return Err(DatasetError::invalid(
            label,
            format!("`{name}` has shape {:?}, expected {CSI_SHAPE:?}", v.dims),
        ));
    }
    Ok(v.data.clone())
}

fn process_frame(
    input: &Input,
    opts: &ImportOptions,
    seq: &Sequence,
    f: &FrameFiles,
    gt: Option<&GroundTruth>,
) -> Result<FrameOutcome> {
    let csi_label = input.csi_label(seq, f);
    let bytes = input.read(&f.csi, &csi_label)?;
    if bytes.is_empty() {
        return Ok(FrameOutcome::Empty);
    }
    let wanted: &[&str] = if opts.with_phase {
        &["CSIamp", "CSIphase"]
    } else {
        &["CSIamp"]
    };
    let m = mat::read_variables_named(&bytes, &csi_label, wanted)
        .map_err(|e| DatasetError::invalid(&e.path, format!("byte {}: {}", e.offset, e.msg)))?;
    drop(bytes);
    let mut amp = frame_variable(&m, "CSIamp", &csi_label)?;
    let (phase, phase_nonfinite) = if opts.with_phase {
        let raw = frame_variable(&m, "CSIphase", &csi_label)?;
        let nonfinite = raw.iter().filter(|v| !v.is_finite()).count() as u64;
        let p: Vec<f32> = raw
            .iter()
            .map(|&v| if v.is_finite() { v as f32 } else { 0.0 })
            .collect();
        (Some(p), nonfinite)
    } else {
        (None, 0)
    };
    let report = match preprocess::preprocess_frame(&mut amp, 3, 114, 10) {
        Ok(r) => r,
        Err(Refusal::NoFiniteValue) => return Ok(FrameOutcome::NoFinite),
        Err(r @ Refusal::WrongLength) => {
            return Err(DatasetError::invalid(&csi_label, r.to_string()))
        }
    };
    let x: Vec<f32> = amp.iter().map(|&v| v as f32).collect();
    let y: Vec<f32> = match opts.keypoints {
        KeypointSource::Rgb => {
            let rgb_label = input.rgb_label(seq, f);
            let src = f.rgb.as_ref().ok_or_else(|| {
                DatasetError::invalid(
                    &rgb_label,
                    "missing rgb keypoint file (needed for --keypoints rgb)",
                )
            })?;
            let bytes = input.read(src, &rgb_label)?;
            let a = csipose_npy::from_bytes::<f64>(&bytes, &rgb_label)?;
            if a.shape != [JOINTS, 2] {
                return Err(DatasetError::invalid(
                    &rgb_label,
                    format!("shape {:?}, expected [17, 2]", a.shape),
                ));
            }
            if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
                return Err(DatasetError::invalid(
                    &rgb_label,
                    format!("non-finite keypoint coordinate at joint {}", i / 2),
                ));
            }
            let (w, h) = (opts.image_size.0 as f64, opts.image_size.1 as f64);
            a.data
                .chunks_exact(2)
                .flat_map(|p| [(p[0] / w) as f32, (p[1] / h) as f32])
                .collect()
        }
        KeypointSource::Gt3d => {
            let gt = gt.expect("ground truth loaded for gt3d");
            let row = usize::try_from(f.frame)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .filter(|&r| r < gt.rows)
                .ok_or_else(|| {
                    DatasetError::invalid(
                        input.csi_label(seq, f),
                        format!(
                            "frame {} has no row in the ground truth's {} frames",
                            f.frame, gt.rows
                        ),
                    )
                })?;
            let l = JOINTS * 3;
            gt.data[row * l..(row + 1) * l]
                .iter()
                .map(|&v| v as f32)
                .collect()
        }
    };
    Ok(FrameOutcome::Written {
        x,
        y,
        phase,
        phase_nonfinite,
        report,
    })
}

fn process_batch(
    input: &Input,
    batch: &[Sequence],
    opts: &ImportOptions,
    progress: &dyn Progress,
    writer: &mut PackedWriter,
    mut phase_writer: Option<&mut NpyStreamWriter<f32>>,
    summary: &mut ImportSummary,
) -> Result<()> {
    let gts: Vec<Option<Result<GroundTruth>>> = batch
        .par_iter()
        .map(|seq| {
            (opts.keypoints == KeypointSource::Gt3d && !seq.frames.is_empty())
                .then(|| load_ground_truth(input, seq))
        })
        .collect();
    let jobs: Vec<(usize, &FrameFiles)> = batch
        .iter()
        .enumerate()
        .flat_map(|(si, s)| s.frames.iter().map(move |f| (si, f)))
        .collect();
    let outcomes: Vec<FrameOutcome> = jobs
        .par_iter()
        .map(|&(si, f)| {
            let out = match &gts[si] {
                Some(Err(_)) => Ok(FrameOutcome::SequenceBad),
                Some(Ok(gt)) => process_frame(input, opts, &batch[si], f, Some(gt)),
                None => process_frame(input, opts, &batch[si], f, None),
            }
            .unwrap_or_else(FrameOutcome::Bad);
            progress.advance(1);
            out
        })
        .collect();

    let mut outcomes = outcomes.into_iter();
    for (si, seq) in batch.iter().enumerate() {
        if seq.frames.is_empty() {
            let e = DatasetError::invalid(
                seq.label.join("wifi-csi"),
                "no wifi-csi frame files (frameNNN.mat) for this sequence",
            );
            skip_or_fail(e, 0, opts, summary)?;
        }
        if let Some(Err(e)) = &gts[si] {
            skip_or_fail_ref(e, seq.frames.len(), opts, summary)?;
        }
        for f in &seq.frames {
            let outcome = outcomes.next().expect("one outcome per frame");
            match outcome {
                FrameOutcome::Written {
                    x,
                    y,
                    phase,
                    phase_nonfinite,
                    report,
                } => {
                    let meta = FrameMeta {
                        environment: seq.env,
                        subject: seq.subject,
                        action: seq.action,
                        frame: f.frame,
                    };
                    writer.push(&x, &y, &[meta])?;
                    if let (Some(w), Some(p)) = (phase_writer.as_mut(), phase) {
                        w.push(&p)?;
                    }
                    if let Some(n) = summary.phase_nonfinite.as_mut() {
                        *n += phase_nonfinite;
                    }
                    summary.filled_values += report.filled as u64;
                    if !report.repairs.is_empty() {
                        summary.repaired_frames += 1;
                    }
                    for r in report.repairs {
                        *summary.repairs.entry(r).or_insert(0) += 1;
                    }
                    summary.written += 1;
                }
                FrameOutcome::Empty => summary.skipped_empty.push(input.csi_label(seq, f)),
                FrameOutcome::NoFinite => summary.skipped_no_finite.push(input.csi_label(seq, f)),
                FrameOutcome::Bad(e) => skip_or_fail(e, 1, opts, summary)?,
                FrameOutcome::SequenceBad => {}
            }
        }
    }
    Ok(())
}

/// With `skip_bad`, records the bad file; otherwise returns the error.
fn skip_or_fail(
    e: DatasetError,
    frames: usize,
    opts: &ImportOptions,
    summary: &mut ImportSummary,
) -> Result<()> {
    if !opts.skip_bad {
        return Err(e);
    }
    let (file, reason) = split_error(&e);
    summary.skipped_bad.push(SkippedFile {
        file,
        reason,
        frames,
    });
    Ok(())
}

fn skip_or_fail_ref(
    e: &DatasetError,
    frames: usize,
    opts: &ImportOptions,
    summary: &mut ImportSummary,
) -> Result<()> {
    let (file, reason) = split_error(e);
    skip_or_fail(DatasetError::invalid(file, reason), frames, opts, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_strictly() {
        assert_eq!(parse_tagged("E01", 'E'), Some(1));
        assert_eq!(parse_tagged("S40", 'S'), Some(40));
        assert_eq!(parse_tagged("A1", 'A'), Some(1));
        for bad in ["E", "e01", "E01x", "E-1", "S01", "E0000001"] {
            assert_eq!(parse_tagged(bad, 'E'), None, "{bad}");
        }
        assert_eq!(parse_frame("frame001.mat", ".mat"), Some(1));
        assert_eq!(parse_frame("frame297.npy", ".npy"), Some(297));
        for bad in [
            "frame.mat",
            "frame001.npy",
            "Frame001.mat",
            "frame0a1.mat",
            "x.mat",
        ] {
            assert_eq!(parse_frame(bad, ".mat"), None, "{bad}");
        }
    }

    #[test]
    fn shared_file_reads_and_seeks_independently() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let mut a = SharedFile::new(File::open(&p).unwrap()).unwrap();
        let mut b = a.clone();
        let mut buf = [0u8; 3];
        a.seek(SeekFrom::Start(4)).unwrap();
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"456");
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"012");
        assert_eq!(b.seek(SeekFrom::End(-2)).unwrap(), 8);
        assert_eq!(b.seek(SeekFrom::Current(-1)).unwrap(), 7);
        assert!(b.seek(SeekFrom::Current(-100)).is_err());
    }
}
