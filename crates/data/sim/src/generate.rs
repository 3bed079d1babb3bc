//! Whole simulated datasets: which sequences a size or preset means (with MM-Fi's subject
//! numbering), simulating them in parallel, and writing the packed dataset (plus `Y3d.npy`)
//! and optionally an MM-Fi-layout tree, each atomically.
//!
//! Subject numbering follows MM-Fi so that its splits apply unchanged: environment E0e holds
//! subjects S((e−1)·10 + 1) … S((e−1)·10 + 10). With fewer than 40 subjects, `--subjects`
//! are shared out evenly over the environments (the first environments take one more when
//! it does not divide) and each environment keeps the lowest numbers of its own block:
//! e.g. 8 subjects over 4 environments are S01, S02 (E01), S11, S12 (E02), S21, S22 (E03),
//! S31, S32 (E04), so cross-scene (S31–S40) is still "E04".
//!
//! Every sequence is simulated from seeds derived from (seed, environment, subject, action)
//! and written in (environment, subject, action, frame) order: the output is identical for
//! any number of threads.

use crate::sequence::{SequenceSpec, Simulator};
use csipose_dataset::mat_write::{mat_bytes, to_column_major, MatVar};
use csipose_dataset::packed::{FrameMeta, Result};
use csipose_dataset::{DatasetError, DatasetInfo, KeypointLayout, PackedWriter};
use csipose_npy::NpyStreamWriter;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The size of a simulated dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub envs: u32,
    pub subjects: u32,
    pub actions: u32,
    pub frames_per_seq: usize,
}

/// Named sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 4 environments × 40 subjects × 27 actions × 45 frames = 48,600 frames: every subject
    /// and action of MM-Fi, with 4.5-second sequences instead of 29.7 s.
    Demo,
    /// MM-Fi's full size: 4 × 40 × 27 × 297 = 320,760 frames.
    MmfiFull,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Preset> {
        match s {
            "demo" => Some(Preset::Demo),
            "mmfi-full" => Some(Preset::MmfiFull),
            _ => None,
        }
    }
    pub fn plan(self) -> Plan {
        match self {
            Preset::Demo => Plan {
                envs: 4,
                subjects: 40,
                actions: 27,
                frames_per_seq: 45,
            },
            Preset::MmfiFull => Plan {
                envs: 4,
                subjects: 40,
                actions: 27,
                frames_per_seq: 297,
            },
        }
    }
}

impl Plan {
    /// MM-Fi subject numbers per environment (see the module documentation).
    pub fn subjects_by_env(&self) -> std::result::Result<Vec<(u32, Vec<u32>)>, String> {
        if !(1..=4).contains(&self.envs) {
            return Err(format!("--envs {} is not in 1..=4", self.envs));
        }
        if self.subjects < self.envs || self.subjects > 10 * self.envs {
            return Err(format!(
                "--subjects {} must lie between --envs ({}) and 10 per environment ({})",
                self.subjects,
                self.envs,
                10 * self.envs
            ));
        }
        if !(1..=crate::motion::ACTIONS).contains(&self.actions) {
            return Err(format!("--actions {} is not in 1..=27", self.actions));
        }
        if self.frames_per_seq == 0 || self.frames_per_seq > 999 {
            return Err(format!(
                "--frames-per-seq {} is not in 1..=999",
                self.frames_per_seq
            ));
        }
        let per = self.subjects / self.envs;
        let extra = self.subjects % self.envs;
        Ok((1..=self.envs)
            .map(|e| {
                let n = per + u32::from(e <= extra);
                (e, (1..=n).map(|i| (e - 1) * 10 + i).collect())
            })
            .collect())
    }

    /// All sequences in output order.
    pub fn sequences(&self) -> std::result::Result<Vec<SequenceSpec>, String> {
        let mut v = Vec::new();
        for (env, subjects) in self.subjects_by_env()? {
            for subject in subjects {
                for action in 1..=self.actions {
                    v.push(SequenceSpec {
                        env,
                        subject,
                        action,
                        frames: self.frames_per_seq,
                    });
                }
            }
        }
        Ok(v)
    }

    pub fn frames(&self) -> usize {
        (self.subjects * self.actions) as usize * self.frames_per_seq
    }
}

/// What [`write_dataset`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub frames: usize,
    pub sequences: usize,
    /// Frames with a fully dropped packet, filled by the preprocessing's documented repair.
    pub repaired_frames: usize,
    /// Frames with no finite value, written as zeros (0 for any config that passes
    /// [`SimConfig::validate`](crate::SimConfig::validate), which this function checks first).
    pub empty_frames: usize,
    pub tree: Option<PathBuf>,
}

/// File in the root of a simulated MM-Fi-layout tree that marks it as ours: an existing tree
/// is replaced only when it carries this marker (or is an empty directory).
pub const TREE_MARKER: &str = "csipose-simulated-tree.json";

/// Refuses to replace `path` unless it is absent, an empty directory, or a directory for
/// which `ours` holds.
fn check_replaceable(path: &Path, what: &str, ours: impl Fn(&Path) -> bool) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let empty_dir = path.is_dir()
        && std::fs::read_dir(path)
            .map_err(io_err(path))?
            .next()
            .is_none();
    if empty_dir || (path.is_dir() && ours(path)) {
        return Ok(());
    }
    Err(DatasetError::invalid(
        path,
        format!("exists and is not {what}; refusing to replace it"),
    ))
}

/// Description of `Y3d.npy` recorded in the provenance.
pub const Y3D_DOC: &str = "Y3d.npy: float32 [N, 17, 3] Human3.6M-order 3D joints in metres, \
camera frame (x right, y down, z forward), the same rows as ground_truth.npy of the MM-Fi tree";

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |e| DatasetError::io(p, e)
}

/// Writes one sequence's MM-Fi-layout files under `root`.
fn write_tree_sequence(
    root: &Path,
    spec: &SequenceSpec,
    seq: &crate::sequence::Sequence,
    sim: &Simulator,
) -> Result<()> {
    let h = &sim.radio.hardware;
    let (na, ns, np) = (h.antennas, h.subcarriers, h.packets);
    let fl = na * ns * np;
    let dir = root
        .join(format!("E{:02}", spec.env))
        .join(format!("S{:02}", spec.subject))
        .join(format!("A{:02}", spec.action));
    let csi = dir.join("wifi-csi");
    let rgb = dir.join("rgb");
    std::fs::create_dir_all(&csi).map_err(io_err(&csi))?;
    std::fs::create_dir_all(&rgb).map_err(io_err(&rgb))?;
    let dims = [na, ns, np];
    for f in 0..spec.frames {
        let amp = to_column_major(&seq.raw_amp[f * fl..(f + 1) * fl], &dims);
        let ph = to_column_major(&seq.raw_phase[f * fl..(f + 1) * fl], &dims);
        let bytes = mat_bytes(
            &[
                MatVar {
                    name: "CSIamp",
                    dims: &dims,
                    data: &amp,
                },
                MatVar {
                    name: "CSIphase",
                    dims: &dims,
                    data: &ph,
                },
            ],
            false,
        );
        let p = csi.join(format!("frame{:03}.mat", f + 1));
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
        let mut npy = Vec::with_capacity(128 + 34 * 8);
        csipose_npy::write_to(&mut npy, &[17, 2], &seq.pixels[f * 34..(f + 1) * 34])
            .map_err(io_err(&rgb))?;
        let p = rgb.join(format!("frame{:03}.npy", f + 1));
        std::fs::write(&p, npy).map_err(io_err(&p))?;
    }
    let mut npy = Vec::new();
    csipose_npy::write_to(&mut npy, &[spec.frames, 17, 3], &seq.y3d).map_err(io_err(&dir))?;
    let p = dir.join("ground_truth.npy");
    std::fs::write(&p, npy).map_err(io_err(&p))?;
    Ok(())
}

/// Removes a temporary tree unless disarmed.
struct TempTree(Option<PathBuf>);
impl Drop for TempTree {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Simulates `plan` and writes the packed dataset at `out` (and, with `tree`, an MM-Fi-layout
/// tree there). `provenance` is stored in dataset.json with the simulator's own settings
/// added under `"simulator"`. `progress` is called with the frames finished so far.
pub fn write_dataset(
    sim: &Simulator,
    plan: &Plan,
    out: &Path,
    tree: Option<&Path>,
    mut provenance: serde_json::Value,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary> {
    let specs = plan
        .sequences()
        .map_err(|m| DatasetError::invalid(out, m))?;
    let cfg = &sim.config;
    cfg.validate().map_err(|m| DatasetError::invalid(out, m))?;
    if let Some(t) = tree {
        let (o, r) = (csipose_files::resolve(out), csipose_files::resolve(t));
        if o.starts_with(&r) || r.starts_with(&o) {
            return Err(DatasetError::invalid(
                t,
                format!(
                    "the MM-Fi tree and the dataset {} must be separate folders, neither inside the other",
                    out.display()
                ),
            ));
        }
    }
    if tree.is_some() && !cfg.keep_raw {
        return Err(DatasetError::invalid(
            out,
            "an MM-Fi tree needs a simulator built with keep_raw",
        ));
    }
    check_replaceable(out, "a csipose packed dataset", |p| {
        p.join("dataset.json").is_file()
    })?;
    if let Some(t) = tree {
        check_replaceable(t, "a tree written by csipose simulate", |p| {
            p.join(TREE_MARKER).is_file()
        })?;
    }
    let info = DatasetInfo::new(
        sim.radio.hardware.clone(),
        KeypointLayout::Coco17_2d,
        "simulator",
    );
    let mut writer = PackedWriter::create(out, info)?;
    let mut y3d = NpyStreamWriter::<f32>::create(writer.extra_path("Y3d.npy"), &[17, 3])?;
    let mut tmp_tree = match tree {
        Some(t) => {
            let name = t
                .file_name()
                .ok_or_else(|| DatasetError::invalid(t, "tree path has no directory name"))?
                .to_string_lossy()
                .into_owned();
            let parent = match t.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
            }
            std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
            TempTree(Some(tmp))
        }
        None => TempTree(None),
    };
    let chunk = (4 * rayon::current_num_threads()).max(4);
    let mut done = 0u64;
    let mut repaired = 0;
    let mut empty = 0;
    for batch in specs.chunks(chunk) {
        let results: Vec<Result<crate::sequence::Sequence>> = batch
            .par_iter()
            .map(|spec| {
                let mut seq = sim.sequence(*spec);
                if let Some(root) = &tmp_tree.0 {
                    write_tree_sequence(root, spec, &seq, sim)?;
                    seq.raw_amp = Vec::new();
                    seq.raw_phase = Vec::new();
                }
                Ok(seq)
            })
            .collect();
        for (spec, seq) in batch.iter().zip(results) {
            let seq = seq?;
            let meta: Vec<FrameMeta> = (0..spec.frames)
                .map(|f| FrameMeta {
                    environment: spec.env as i32,
                    subject: spec.subject as i32,
                    action: spec.action as i32,
                    frame: f as i32 + 1,
                })
                .collect();
            writer.push(&seq.x, &seq.y2d, &meta)?;
            let y: Vec<f32> = seq.y3d.iter().map(|&v| v as f32).collect();
            y3d.push(&y)?;
            repaired += seq.repaired_frames;
            empty += seq.empty_frames;
            done += spec.frames as u64;
            progress(done);
        }
    }
    y3d.finish()?;
    let sim_prov = serde_json::json!({
        "seed": cfg.seed,
        "profile": cfg.profile.name(),
        "snr_db": cfg.snr_db,
        "agc_jitter_db": cfg.agc_jitter_db,
        "subcarrier_dropout": cfg.subcarrier_dropout,
        "packet_dropout": cfg.packet_dropout,
        "quantize_8bit": cfg.quantize,
        "position_jitter_m": cfg.position_jitter_m,
        "heading_jitter_rad": cfg.heading_jitter_rad,
        "body_rcs_scale": cfg.body_rcs_scale,
        "envs": plan.envs,
        "subjects": plan.subjects,
        "actions": plan.actions,
        "frames_per_seq": plan.frames_per_seq,
        "frame_rate_hz": crate::sequence::FRAME_RATE,
        "packet_interval_s": sim.radio.packet_interval_s,
        "center_hz": sim.radio.center_hz,
        "subcarrier_index": sim.radio.subcarrier_index,
        "repaired_frames": repaired,
        "empty_frames": empty,
        "extra_files": [Y3D_DOC],
    });
    let sim_prov_copy = sim_prov.clone();
    match &mut provenance {
        serde_json::Value::Object(m) => {
            m.insert("simulator".into(), sim_prov);
        }
        _ => provenance = serde_json::json!({ "simulator": sim_prov }),
    }
    writer.set_provenance(provenance);
    let frames = writer.finish()?;
    let mut tree_out = None;
    if let (Some(t), Some(tmp)) = (tree, tmp_tree.0.as_ref()) {
        let marker = tmp.join(TREE_MARKER);
        let text = serde_json::to_string_pretty(&sim_prov_copy).expect("serialisable");
        std::fs::write(&marker, text + "\n").map_err(io_err(&marker))?;
        if t.exists() {
            std::fs::remove_dir_all(t).map_err(io_err(t))?;
        }
        std::fs::rename(tmp, t).map_err(io_err(t))?;
        tree_out = Some(t.to_path_buf());
    }
    tmp_tree.0 = None;
    Ok(Summary {
        frames,
        sequences: specs.len(),
        repaired_frames: repaired,
        empty_frames: empty,
        tree: tree_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_numbering_follows_mmfi() {
        let full = Preset::MmfiFull.plan();
        let by = full.subjects_by_env().unwrap();
        assert_eq!(by[3], (4, (31..=40).collect()));
        assert_eq!(full.frames(), 320_760);
        assert_eq!(full.sequences().unwrap().len(), 1080);
        let small = Plan {
            envs: 4,
            subjects: 6,
            actions: 2,
            frames_per_seq: 3,
        };
        let by = small.subjects_by_env().unwrap();
        assert_eq!(
            by,
            vec![
                (1, vec![1, 2]),
                (2, vec![11, 12]),
                (3, vec![21]),
                (4, vec![31])
            ]
        );
        assert_eq!(small.frames(), 36);
        assert!(Plan {
            subjects: 41,
            ..full
        }
        .subjects_by_env()
        .is_err());
        assert!(Plan { envs: 5, ..full }.subjects_by_env().is_err());
        assert!(Plan {
            actions: 28,
            ..full
        }
        .subjects_by_env()
        .is_err());
        let demo = Preset::Demo.plan();
        assert!(
            (45_000..=55_000).contains(&demo.frames()),
            "{}",
            demo.frames()
        );
    }
}
