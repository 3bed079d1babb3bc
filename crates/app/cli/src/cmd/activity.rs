//! `csipose activity`: activity recognition with the temporal head. `train` fits the classifier
//! on a manifest and writes a `.rvne` blob, `eval` scores a model (accuracy, per-class accuracy,
//! confusion-matrix PNG), `cv` runs stratified k-fold cross-validation, `stream` classifies a
//! capture frame by frame with the KV cache, and `manifest` lists a packed dataset's sequences.
//!
//! A manifest is a CSV `file,label` (header optional; relative paths are relative to the
//! manifest). A file is a CSI capture (any format the capture readers in `csipose-capture` read,
//! detected from its content), a `.npy` array of amplitudes `[packets, antennas x subcarriers]`,
//! or one sequence of a packed dataset written `DIR#S03/A12` (subject 3, action 12, every frame in
//! frame order) or `DIR#E01/S03/A12` (naming the environment too). Labels are class numbers
//! (0, 1, 2, ...).
//!
//! Per-frame features: amplitude blocks, optionally the cross-antenna phase of complex CSI
//! (`--features`), or a trained pose model's pooled encoder vector per packed-dataset frame
//! (`--pose-features RUN`). The choice, the packets per frame and the attention window, block
//! size and causality are stored in the `.rvne` head config record, so `eval` and `stream` use
//! what the model was trained with.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use csipose_attention::Backend;
use csipose_dataset::packed::FrameMeta;
use csipose_dataset::split::Subset;
use csipose_dataset::PackedDataset;
use csipose_temporal::features::{
    csi_feature_dim, csi_frame_features, encoder_frame_features, frame_features, FeatureKind,
    BLOCKS, DEFAULT_STRIDE, ENCODER_BLOCKS,
};
use csipose_temporal::model::{argmax, ActivityModel, ModelShape};
use csipose_temporal::rvne::HeadConfig;
use csipose_temporal::train::{
    accuracies, confusion_matrix, predict_all, predict_ensemble, stratified_folds, train, Example,
    TrainOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ActivityCommand,
}

#[derive(Subcommand)]
enum ActivityCommand {
    /// Train a classifier on a manifest and save it as .rvne.
    Train(TrainArgs),
    /// Evaluate a .rvne classifier on a manifest.
    Eval(EvalArgs),
    /// Stratified k-fold cross-validation on one manifest.
    Cv(CvArgs),
    /// Classify one capture frame by frame, printing the running prediction.
    Stream(StreamArgs),
    /// Write a manifest of a packed dataset's sequences (label = action - 1), optionally only
    /// one subset of a split.
    Manifest(ManifestArgs),
}

/// `--features`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FeaturesArg {
    /// Amplitude-phase where every input has complex CSI from at least 2 receive antennas,
    /// else amplitude.
    Auto,
    /// Amplitude blocks only (log amplitude, its change, its deviation from the running mean).
    Amplitude,
    /// Amplitude blocks plus the phase difference of neighbouring receive antennas (conjugate
    /// multiplication) and its change.
    AmplitudePhase,
}

/// How manifest rows become per-frame features.
#[derive(clap::Args, Clone)]
struct FeatureArgs {
    /// Per-frame features of captures and packed-dataset CSI.
    #[arg(long, value_enum, default_value = "auto")]
    features: FeaturesArg,
    /// Packets averaged into one frame [default: 4 for captures and .npy, the dataset's packets
    /// per frame for packed-dataset sequences].
    #[arg(long)]
    stride: Option<usize>,
    /// Instead of CSI features: the pooled encoder vector of this trained pose model (a run
    /// directory or its checkpoint.safetensors) for each frame of packed-dataset sequences.
    #[arg(long)]
    pose_features: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct Hyper {
    /// Training epochs.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Attention backend the model is trained with (and later runs with).
    #[arg(long, default_value = "sparse")]
    backend: Backend,
    /// Attention layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Query heads.
    #[arg(long, default_value_t = 4)]
    q_heads: usize,
    /// Key/value heads (divides --q-heads).
    #[arg(long, default_value_t = 1)]
    kv_heads: usize,
    /// Dimension per head.
    #[arg(long, default_value_t = 16)]
    head_dim: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Mini-batch size.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Each training sequence is cropped to a random span of at least this fraction.
    #[arg(long, default_value_t = 0.5)]
    min_crop: f32,
    /// Random seed (initialisation, shuffling, crops).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Attention window (tokens before each query).
    #[arg(long, default_value_t = 32)]
    window: u16,
    /// Attention landmark block size.
    #[arg(long, default_value_t = 16)]
    block_size: u16,
    #[command(flatten)]
    features: FeatureArgs,
}

#[derive(clap::Args)]
struct TrainArgs {
    #[arg(long)]
    manifest: PathBuf,
    /// Output .rvne file.
    #[arg(long)]
    out: PathBuf,
    /// Store fp16 weights (default fp32).
    #[arg(long)]
    fp16: bool,
    #[command(flatten)]
    hyper: Hyper,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[arg(long)]
    manifest: PathBuf,
    /// A .rvne model; give it several times (models trained with different --seed) to
    /// classify by their mean softmax probability.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    /// Confusion-matrix PNG (default: the model path with `.confusion.png`).
    #[arg(long)]
    confusion_png: Option<PathBuf>,
    /// The pose model whose encoder made the features (needed for a model trained with
    /// --pose-features).
    #[arg(long)]
    pose_features: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CvArgs {
    #[arg(long)]
    manifest: PathBuf,
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Models per fold, trained with seeds seed, seed + 1, ... (the folds always use --seed);
    /// each fold's test sequences are classified by their mean softmax probability.
    #[arg(long, default_value_t = 1)]
    ensemble: usize,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hyper: Hyper,
}

#[derive(clap::Args)]
struct StreamArgs {
    /// A capture file or amplitude .npy.
    file: PathBuf,
    #[arg(long)]
    model: PathBuf,
    /// Print every Nth frame's prediction (the last frame is always printed).
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// The pose model whose encoder made the features (for a model trained with
    /// --pose-features; FILE is then a packed-dataset sequence `DIR#S03/A12`).
    #[arg(long)]
    pose_features: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ManifestArgs {
    /// Packed dataset directory.
    #[arg(long)]
    data: PathBuf,
    /// Output CSV (rows `DATA#Eee/Sss/Aaa,label` with the path as given).
    #[arg(long)]
    out: PathBuf,
    /// Only the sequences of this split's subset (MM-Fi subject rules).
    #[arg(long, value_enum)]
    split: Option<super::split::KindArg>,
    /// Which subset of --split.
    #[arg(long, value_enum, default_value = "train", requires = "split")]
    subset: super::eval::SubsetArg,
    /// MM-Fi protocol (which actions): 1, 2 or 3 = all 27.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    protocol: u8,
    /// Random split: seed of the first action.
    #[arg(long, default_value_t = 0)]
    split_seed: u32,
    /// Random split: fraction of subjects that train.
    #[arg(long, default_value_t = 0.8)]
    ratio: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ActivityCommand::Train(a) => train_cmd(a),
        ActivityCommand::Eval(a) => eval_cmd(a),
        ActivityCommand::Cv(a) => cv_cmd(a),
        ActivityCommand::Stream(a) => stream_cmd(a),
        ActivityCommand::Manifest(a) => manifest_cmd(a),
    }
}

/// Where one manifest row's sequence comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// A capture or amplitude `.npy` file.
    File(PathBuf),
    /// One (environment, subject, action) sequence of a packed dataset.
    Packed {
        dir: PathBuf,
        environment: Option<i32>,
        subject: i32,
        action: i32,
    },
}

impl Source {
    /// How the row is written in a manifest (and named in messages).
    fn display(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Packed {
                dir,
                environment,
                subject,
                action,
            } => match environment {
                Some(e) => format!("{}#E{e:02}/S{subject:02}/A{action:02}", dir.display()),
                None => format!("{}#S{subject:02}/A{action:02}", dir.display()),
            },
        }
    }
}

/// Parses the part after `#`: `S03/A12` or `E01/S03/A12` (letters case-insensitive).
fn parse_sequence_key(key: &str) -> Result<(Option<i32>, i32, i32), String> {
    let parts: Vec<&str> = key.trim().split('/').collect();
    let field = |s: &str, letter: char| -> Result<i32, String> {
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if c.eq_ignore_ascii_case(&letter) => chars
                .as_str()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{s:?} is not {letter} followed by a number >= 1")),
            _ => Err(format!("expected {letter}<number>, found {s:?}")),
        }
    };
    match parts.as_slice() {
        [s, a] => Ok((None, field(s, 'S')?, field(a, 'A')?)),
        [e, s, a] => Ok((Some(field(e, 'E')?), field(s, 'S')?, field(a, 'A')?)),
        _ => Err(format!(
            "sequence {key:?} should be S<subject>/A<action> or E<env>/S<subject>/A<action>"
        )),
    }
}

impl Hyper {
    /// Checks the float options (see `crate::validate`).
    fn validate(&self) -> anyhow::Result<()> {
        use crate::validate;
        validate::above("--lr", self.lr as f64, 0.0, 1.0)?;
        validate::closed("--min-crop", self.min_crop as f64, 0.05, 1.0)?;
        validate::at_least("--epochs", self.epochs, 1)?;
        validate::at_least("--batch", self.batch, 1)?;
        Ok(())
    }
}

/// The files a manifest's rows read (capture files, packed-dataset folders): inputs that no
/// output may replace.
fn row_paths(rows: &[(Source, usize)]) -> Vec<&Path> {
    rows.iter()
        .map(|(s, _)| match s {
            Source::File(p) => p.as_path(),
            Source::Packed { dir, .. } => dir.as_path(),
        })
        .collect()
}

/// The inputs of a command reading `rows` from `manifest`, plus `more`.
fn manifest_inputs(
    manifest: &Path,
    rows: &[(Source, usize)],
    more: &[Option<&Path>],
) -> Vec<PathBuf> {
    let mut paths: Vec<Option<&Path>> = vec![Some(manifest)];
    paths.extend(row_paths(rows).into_iter().map(Some));
    paths.extend_from_slice(more);
    crate::validate::inputs(&paths)
}

/// `(source, label)` rows of a manifest.
fn read_manifest(path: &Path) -> anyhow::Result<Vec<(Source, usize)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.eq_ignore_ascii_case("file,label")) {
            continue;
        }
        let (file, label) = line
            .rsplit_once(',')
            .with_context(|| format!("{}:{}: expected `file,label`", path.display(), n + 1))?;
        let label: usize = label.trim().parse().with_context(|| {
            format!(
                "{}:{}: label {label:?} is not a class number",
                path.display(),
                n + 1
            )
        })?;
        let source = match file.trim().rsplit_once('#') {
            Some((dir, key)) => {
                let (environment, subject, action) = parse_sequence_key(key)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
                Source::Packed {
                    dir: base.join(dir),
                    environment,
                    subject,
                    action,
                }
            }
            None => Source::File(base.join(file.trim())),
        };
        rows.push((source, label));
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// One sequence's raw input: amplitudes `[packets, antennas x subcarriers]`, and the complex CSI
/// `[packets, antennas, subcarriers, 2]` where the source has it (captures, not amplitude `.npy`).
struct RawSequence {
    amplitudes: Vec<f32>,
    csi: Option<Vec<f32>>,
    antennas: usize,
    subcarriers: usize,
}

impl RawSequence {
    fn channels(&self) -> usize {
        self.antennas * self.subcarriers
    }

    /// Per-frame features of the given kind (`stride` packets per frame); `name` is for messages.
    fn features(&self, kind: FeatureKind, stride: usize, name: &str) -> anyhow::Result<Vec<f32>> {
        match kind {
            FeatureKind::Amplitude => Ok(frame_features(&self.amplitudes, self.channels(), stride)),
            FeatureKind::AmplitudePhase => {
                let Some(csi) = &self.csi else {
                    bail!(
                        "{name}: amplitude-phase features need complex CSI; this input has amplitudes only (use --features amplitude)"
                    );
                };
                if self.antennas < 2 {
                    bail!(
                        "{name}: amplitude-phase features need at least 2 receive antennas, it has {} (use --features amplitude)",
                        self.antennas
                    );
                }
                Ok(csi_frame_features(
                    csi,
                    self.antennas,
                    self.subcarriers,
                    stride,
                ))
            }
            FeatureKind::PoseEncoder => {
                bail!("{name}: pose-encoder features come from a packed dataset and a pose model")
            }
        }
    }
}

/// A capture file (format detected) or an amplitude `.npy`.
fn read_sequence(path: &Path) -> anyhow::Result<RawSequence> {
    if path.extension().is_some_and(|e| e == "npy") {
        let a = csipose_npy::read::<f32>(path)
            .with_context(|| format!("reading {}", path.display()))?;
        if a.shape.len() != 2 || a.shape[1] == 0 {
            bail!(
                "{}: expected a 2-D [packets, channels] array, got shape {:?}",
                path.display(),
                a.shape
            );
        }
        return Ok(RawSequence {
            subcarriers: a.shape[1],
            amplitudes: a.data,
            csi: None,
            antennas: 1,
        });
    }
    read_capture(path)
}

/// The first transmit stream's complex CSI `[rx][subcarrier]` of one packet.
fn rx_csi(frame: &csipose_capture::any::Frame) -> (usize, usize, Vec<[f64; 2]>) {
    use csipose_capture::any::Frame;
    match frame {
        Frame::Intel5300(f) => {
            let c: Vec<[f64; 2]> = f
                .csi
                .first()
                .map(|rx| {
                    rx.iter()
                        .flat_map(|r| r.iter().map(|z| [z.re, z.im]))
                        .collect()
                })
                .unwrap_or_default();
            let antennas = if c.is_empty() { 0 } else { f.nrx as usize };
            (antennas, csipose_capture::intel5300::SUBCARRIERS, c)
        }
        Frame::Atheros(f) => {
            let (nr, tones) = (f.nr as usize, f.num_tones as usize);
            let mut c = vec![[0.0; 2]; nr * tones];
            if f.nc > 0 && !f.csi.is_empty() {
                for rx in 0..nr {
                    for t in 0..tones {
                        let z = f.at(t, rx, 0);
                        c[rx * tones + t] = [z.re, z.im];
                    }
                }
            }
            (nr, tones, c)
        }
        Frame::Esp32(f) => (1, f.csi.len(), f.csi.iter().map(|z| [z.re, z.im]).collect()),
        Frame::Nexmon(f) => (1, f.csi.len(), f.csi.iter().map(|z| [z.re, z.im]).collect()),
    }
}

/// Complex CSI and amplitudes of a capture file (format detected) via the capture readers: the
/// first transmit stream's receive antennas x subcarriers per packet. Packets whose
/// antenna/subcarrier count differs from the first packet's are skipped; a truncated last record
/// ends the capture.
fn read_capture(path: &Path) -> anyhow::Result<RawSequence> {
    let reader =
        csipose_capture::any::open(path, None, Default::default()).map_err(anyhow::Error::msg)?;
    let mut csi = Vec::new();
    let mut amplitudes = Vec::new();
    let mut shape = (0usize, 0usize);
    let mut skipped = 0usize;
    for frame in reader {
        let frame = match frame {
            Ok(f) => f,
            Err(e) if e.is_truncation() && shape.0 * shape.1 > 0 => {
                eprintln!(
                    "{}: {e}; using the {} complete packets",
                    path.display(),
                    amplitudes.len() / (shape.0 * shape.1)
                );
                break;
            }
            Err(e) => bail!("{}: {e}", path.display()),
        };
        let (antennas, subcarriers, values) = rx_csi(&frame);
        if shape.0 * shape.1 == 0 {
            shape = (antennas, subcarriers);
        }
        if (antennas, subcarriers) != shape || antennas * subcarriers == 0 {
            skipped += 1;
            continue;
        }
        for z in values {
            csi.extend([z[0] as f32, z[1] as f32]);
            amplitudes.push(z[0].hypot(z[1]) as f32);
        }
    }
    if shape.0 * shape.1 == 0 || amplitudes.is_empty() {
        bail!("{}: no CSI packets", path.display());
    }
    if skipped > 0 {
        eprintln!(
            "{}: skipped {skipped} packets with a different antenna count",
            path.display()
        );
    }
    Ok(RawSequence {
        amplitudes,
        csi: Some(csi),
        antennas: shape.0,
        subcarriers: shape.1,
    })
}

/// (environment, subject, action) -> frame indices in frame order.
type SequenceIndex = BTreeMap<(i32, i32, i32), Vec<usize>>;

/// Packed datasets named by a manifest, opened once, with each one's sequences.
struct PackedSets {
    sets: Vec<(PathBuf, PackedDataset, SequenceIndex)>,
}

impl PackedSets {
    fn open(rows: &[(Source, usize)]) -> anyhow::Result<Self> {
        let mut sets: Vec<(PathBuf, PackedDataset, SequenceIndex)> = Vec::new();
        for (source, _) in rows {
            let Source::Packed { dir, .. } = source else {
                continue;
            };
            if sets.iter().any(|(d, _, _)| d == dir) {
                continue;
            }
            let ds = PackedDataset::open(dir)
                .with_context(|| format!("opening packed dataset {}", dir.display()))?;
            let mut index: BTreeMap<(i32, i32, i32), Vec<(i32, usize)>> = BTreeMap::new();
            for i in 0..ds.len() {
                let m = ds.meta(i);
                index
                    .entry((m.environment, m.subject, m.action))
                    .or_default()
                    .push((m.frame, i));
            }
            let index = index
                .into_iter()
                .map(|(k, mut v)| {
                    v.sort_unstable();
                    (k, v.into_iter().map(|(_, i)| i).collect())
                })
                .collect();
            sets.push((dir.clone(), ds, index));
        }
        Ok(PackedSets { sets })
    }

    /// The dataset and frame indices of a packed-dataset row.
    fn sequence(&self, source: &Source) -> anyhow::Result<(&PackedDataset, &[usize])> {
        let Source::Packed {
            dir,
            environment,
            subject,
            action,
        } = source
        else {
            bail!("{}: not a packed-dataset sequence", source.display());
        };
        let (_, ds, index) = self
            .sets
            .iter()
            .find(|(d, _, _)| d == dir)
            .expect("opened in PackedSets::open");
        let matches: Vec<_> = index
            .iter()
            .filter(|((e, s, a), _)| {
                s == subject && a == action && environment.is_none_or(|want| *e == want)
            })
            .collect();
        match matches.as_slice() {
            [] => bail!(
                "{}: the dataset has no frames of this sequence",
                source.display()
            ),
            [(_, frames)] => Ok((ds, frames.as_slice())),
            many => bail!(
                "{}: subject {subject} did action {action} in several environments ({}); name one as DIR#E01/S03/A12",
                source.display(),
                many.iter()
                    .map(|((e, _, _), _)| format!("E{e:02}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The amplitudes of a packed-dataset sequence as packets in time order: frame by frame, each
/// frame's `P` packets of `A x S` channels.
fn packed_raw(ds: &PackedDataset, frames: &[usize]) -> RawSequence {
    let h = &ds.info.hardware;
    let (a, s, p) = (h.antennas, h.subcarriers, h.packets);
    let mut amplitudes = Vec::with_capacity(frames.len() * a * s * p);
    for &i in frames {
        let x = ds.x(i);
        for packet in 0..p {
            amplitudes.extend((0..a * s).map(|c| x[c * p + packet]));
        }
    }
    RawSequence {
        amplitudes,
        csi: None,
        antennas: a,
        subcarriers: s,
    }
}

/// A trained pose model whose encoder gives per-frame features.
struct PoseEncoder {
    path: PathBuf,
    model: csipose_model::Model,
    params: Vec<f32>,
}

impl PoseEncoder {
    /// `path`: a run directory (its checkpoint.safetensors) or a checkpoint file.
    fn load(path: &Path) -> anyhow::Result<Self> {
        let file = if path.is_dir() {
            path.join("checkpoint.safetensors")
        } else {
            path.to_path_buf()
        };
        let (model, params) = csipose_train::checkpoint::load_model(&file)
            .with_context(|| format!("loading the pose model {}", file.display()))?;
        Ok(PoseEncoder {
            path: file,
            model,
            params,
        })
    }

    /// The pooled encoder vector `[frames, d]` of each frame of a packed-dataset sequence.
    fn features(
        &self,
        ds: &PackedDataset,
        frames: &[usize],
        name: &str,
    ) -> anyhow::Result<Vec<f32>> {
        let c = &self.model.cfg;
        let h = &ds.info.hardware;
        if (c.antennas, c.subcarriers, c.packets) != (h.antennas, h.subcarriers, h.packets) {
            bail!(
                "{name}: frames are {}x{}x{} but the pose model {} reads {}x{}x{}",
                h.antennas,
                h.subcarriers,
                h.packets,
                self.path.display(),
                c.antennas,
                c.subcarriers,
                c.packets
            );
        }
        let mut out = Vec::with_capacity(frames.len() * c.d);
        let mut ws = csipose_model::Workspace::default();
        for chunk in frames.chunks(256) {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| ds.x(i).iter().copied())
                .collect();
            self.model
                .forward(&self.params, &x, chunk.len(), None, &mut ws);
            out.extend_from_slice(self.model.pooled(&ws, chunk.len()));
        }
        Ok(out)
    }
}

/// How to turn rows into features: as asked on the command line for training, or as a loaded
/// model's head config says for eval and stream.
struct FeatureSpec {
    /// `None`: auto (amplitude-phase where every row allows it).
    kind: Option<FeatureKind>,
    stride: Option<usize>,
    pose: Option<PathBuf>,
}

impl FeatureSpec {
    fn from_args(f: &FeatureArgs) -> Self {
        FeatureSpec {
            kind: match f.features {
                FeaturesArg::Auto => None,
                FeaturesArg::Amplitude => Some(FeatureKind::Amplitude),
                FeaturesArg::AmplitudePhase => Some(FeatureKind::AmplitudePhase),
            },
            stride: f.stride,
            pose: f.pose_features.clone(),
        }
    }

    /// What `model` was trained with; `pose` must name the pose model when it read pose-encoder
    /// features.
    fn from_model(model: &ActivityModel, pose: Option<&Path>, what: &Path) -> anyhow::Result<Self> {
        let kind = FeatureKind::from_code(model.head.features)
            .with_context(|| format!("{}: unknown feature code", what.display()))?;
        match (kind, pose) {
            (FeatureKind::PoseEncoder, None) => bail!(
                "{}: the model reads pose-encoder features; name the pose model with --pose-features RUN",
                what.display()
            ),
            (k, Some(_)) if k != FeatureKind::PoseEncoder => bail!(
                "{}: the model reads {} features, not a pose encoder's; drop --pose-features",
                what.display(),
                k.name()
            ),
            _ => {}
        }
        Ok(FeatureSpec {
            kind: Some(kind),
            stride: Some(model.head.stride as usize),
            pose: pose.map(Path::to_path_buf),
        })
    }
}

/// Classifier input of every manifest row and how it was made.
struct Loaded {
    examples: Vec<Example>,
    input_dim: usize,
    kind: FeatureKind,
    stride: usize,
}

/// Loads every manifest row as classifier input, in parallel.
fn load_examples(rows: &[(Source, usize)], spec: &FeatureSpec) -> anyhow::Result<Loaded> {
    use rayon::prelude::*;
    let packed = PackedSets::open(rows)?;
    let is_packed = |s: &Source| matches!(s, Source::Packed { .. });
    let encoder = match &spec.pose {
        Some(p) => {
            if let Some((s, _)) = rows.iter().find(|(s, _)| !is_packed(s)) {
                bail!(
                    "{}: --pose-features needs packed-dataset sequences (DIR#S03/A12)",
                    s.display()
                );
            }
            Some(PoseEncoder::load(p)?)
        }
        None => None,
    };
    // Packets per frame: as given, else the datasets' own (packed rows) or 4 (files).
    let stride = match (spec.stride, &encoder) {
        (_, Some(_)) => 1,
        (Some(s), None) => s.max(1),
        (None, None) => {
            let mut packets: Vec<usize> = packed
                .sets
                .iter()
                .map(|(_, ds, _)| ds.info.hardware.packets)
                .collect();
            packets.dedup();
            let files = rows.iter().any(|(s, _)| !is_packed(s));
            match (packets.as_slice(), files) {
                ([], _) => DEFAULT_STRIDE,
                ([p], false) => *p,
                _ => bail!(
                    "the manifest mixes inputs with different packets per frame; give --stride"
                ),
            }
        }
    };
    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "loading {wide_bar} {pos}/{len}",
    )?);
    // Per row: (amplitude-or-given-kind features, amplitude-phase features where auto allows
    // them, channel shape).
    type RowFeatures = (Vec<f32>, Option<Vec<f32>>, (usize, usize));
    let loaded = rows
        .par_iter()
        .map(|(source, _)| -> anyhow::Result<RowFeatures> {
            let name = source.display();
            let out = if let Some(enc) = &encoder {
                let (ds, frames) = packed.sequence(source)?;
                let d = enc.model.cfg.d;
                let z = enc.features(ds, frames, &name)?;
                (encoder_frame_features(&z, d), None, (d, 1))
            } else {
                let raw = match source {
                    Source::File(path) => read_sequence(path)?,
                    Source::Packed { .. } => {
                        let (ds, frames) = packed.sequence(source)?;
                        packed_raw(ds, frames)
                    }
                };
                let shape = (raw.antennas, raw.subcarriers);
                match spec.kind {
                    Some(kind) => (raw.features(kind, stride, &name)?, None, shape),
                    None => {
                        let phase = (raw.csi.is_some() && raw.antennas >= 2)
                            .then(|| raw.features(FeatureKind::AmplitudePhase, stride, &name))
                            .transpose()?;
                        let amp = raw.features(FeatureKind::Amplitude, stride, &name)?;
                        (amp, phase, shape)
                    }
                }
            };
            bar.inc(1);
            Ok(out)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    let kind = match (&encoder, spec.kind) {
        (Some(_), _) => FeatureKind::PoseEncoder,
        (None, Some(k)) => k,
        (None, None) if loaded.iter().all(|l| l.1.is_some()) => FeatureKind::AmplitudePhase,
        (None, None) => FeatureKind::Amplitude,
    };
    let shape = loaded[0].2;
    let mut examples = Vec::with_capacity(rows.len());
    for ((source, label), (amp, phase, s)) in rows.iter().zip(loaded) {
        if s != shape {
            bail!(
                "{}: {}x{} channels per packet, but {} has {}x{}",
                source.display(),
                s.0,
                s.1,
                rows[0].0.display(),
                shape.0,
                shape.1
            );
        }
        let frames = match (kind, phase) {
            (FeatureKind::AmplitudePhase, Some(p)) if spec.kind.is_none() => p,
            _ => amp,
        };
        if frames.is_empty() {
            bail!("{}: no packets", source.display());
        }
        examples.push(Example {
            frames,
            label: *label,
        });
    }
    let input_dim = match kind {
        FeatureKind::Amplitude => BLOCKS * shape.0 * shape.1,
        FeatureKind::AmplitudePhase => csi_feature_dim(shape.0, shape.1),
        FeatureKind::PoseEncoder => ENCODER_BLOCKS * shape.0,
    };
    Ok(Loaded {
        examples,
        input_dim,
        kind,
        stride,
    })
}

fn fit(
    loaded: &Loaded,
    examples: &[Example],
    n_classes: usize,
    h: &Hyper,
) -> anyhow::Result<ActivityModel> {
    let shape = ModelShape {
        input_dim: loaded.input_dim,
        q_heads: h.q_heads,
        kv_heads: h.kv_heads,
        head_dim: h.head_dim,
        n_layers: h.layers,
        n_classes,
    };
    let head = HeadConfig {
        window: h.window,
        block_size: h.block_size,
        causal: true,
        features: loaded.kind.code(),
        stride: u16::try_from(loaded.stride).context("--stride does not fit in u16")?,
    };
    let mut model = ActivityModel::with_head(shape, h.backend, head, h.seed)?;
    let opts = TrainOptions {
        epochs: h.epochs,
        batch_size: h.batch,
        learning_rate: h.lr,
        seed: h.seed,
        min_crop: h.min_crop.clamp(0.05, 1.0),
        ..TrainOptions::default()
    };
    let bar = ProgressBar::new(h.epochs as u64);
    bar.set_style(ProgressStyle::with_template(
        "training {wide_bar} {pos}/{len} {msg}",
    )?);
    train(&mut model, examples, &opts, |s| {
        bar.set_message(format!("loss {:.3} train acc {:.3}", s.loss, s.accuracy));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    Ok(model)
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    a.hyper.validate()?;
    let rows = read_manifest(&a.manifest)?;
    let inputs = manifest_inputs(
        &a.manifest,
        &rows,
        &[a.hyper.features.pose_features.as_deref()],
    );
    crate::validate::output_file("--out", &a.out, &inputs)?;
    let loaded = load_examples(&rows, &FeatureSpec::from_args(&a.hyper.features))?;
    let n_classes = rows.iter().map(|r| r.1).max().unwrap_or(0) + 1;
    let model = fit(&loaded, &loaded.examples, n_classes, &a.hyper)?;
    let bytes = model.to_rvne(a.fp16)?;
    let mut file = csipose_npy::AtomicFile::create(&a.out)?;
    file.write_all(&bytes)?;
    file.commit()?;
    let labels: Vec<usize> = loaded.examples.iter().map(|e| e.label).collect();
    let (acc, _) = accuracies(&confusion_matrix(
        &labels,
        &predict_all(&model, &loaded.examples)?,
        n_classes,
    ));
    eprintln!(
        "wrote {} ({} bytes, {} weights, {} features x {} per frame); training accuracy {:.4}",
        a.out.display(),
        bytes.len(),
        model.weights.len(),
        loaded.kind.name(),
        loaded.input_dim,
        acc
    );
    Ok(())
}

fn load_model(path: &Path) -> anyhow::Result<ActivityModel> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ActivityModel::from_rvne(&bytes).with_context(|| format!("{}", path.display()))
}

fn report(
    labels: &[usize],
    predicted: &[usize],
    n_classes: usize,
) -> (f64, serde_json::Value, Vec<Vec<usize>>) {
    let confusion = confusion_matrix(labels, predicted, n_classes);
    let (acc, per_class) = accuracies(&confusion);
    let per_class: serde_json::Map<String, serde_json::Value> = per_class
        .iter()
        .enumerate()
        .filter_map(|(c, a)| a.map(|a| (c.to_string(), json!(a))))
        .collect();
    (acc, serde_json::Value::Object(per_class), confusion)
}

fn eval_cmd(a: EvalArgs) -> anyhow::Result<()> {
    let rows = read_manifest(&a.manifest)?;
    let png = a
        .confusion_png
        .clone()
        .unwrap_or_else(|| a.model[0].with_extension("confusion.png"));
    let mut more: Vec<Option<&Path>> = a.model.iter().map(|p| Some(p.as_path())).collect();
    more.push(a.pose_features.as_deref());
    let inputs = manifest_inputs(&a.manifest, &rows, &more);
    crate::validate::output_file("--confusion-png", &png, &inputs)?;
    let models = a
        .model
        .iter()
        .map(|p| load_model(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (model, first) = (&models[0], &a.model[0]);
    for (m, p) in models.iter().zip(&a.model).skip(1) {
        if m.shape.n_classes != model.shape.n_classes
            || m.shape.input_dim != model.shape.input_dim
            || (m.head.features, m.head.stride) != (model.head.features, model.head.stride)
        {
            bail!(
                "{}: its classes, features or input size differ from {}; an ensemble needs them equal",
                p.display(),
                first.display()
            );
        }
    }
    let spec = FeatureSpec::from_model(model, a.pose_features.as_deref(), first)?;
    let loaded = load_examples(&rows, &spec)?;
    if loaded.input_dim != model.shape.input_dim {
        bail!(
            "{}: model expects {} features per frame, {} gives {}",
            first.display(),
            model.shape.input_dim,
            a.manifest.display(),
            loaded.input_dim
        );
    }
    let n_classes = model.shape.n_classes;
    if let Some((source, label)) = rows.iter().find(|r| r.1 >= n_classes) {
        bail!(
            "{}: label {label} but the model has {n_classes} classes",
            source.display()
        );
    }
    let labels: Vec<usize> = loaded.examples.iter().map(|e| e.label).collect();
    let predicted = predict_ensemble(&models, &loaded.examples)?;
    let (acc, per_class, confusion) = report(&labels, &predicted, n_classes);
    write_confusion_png(&png, &confusion)?;
    if a.json {
        let out = json!({
            "model": a.model, "manifest": a.manifest, "sequences": labels.len(),
            "features": loaded.kind.name(),
            "accuracy": acc, "per_class_accuracy": per_class,
            "confusion": confusion, "confusion_png": png,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "accuracy {acc:.4} on {} sequences; confusion matrix {}",
            labels.len(),
            png.display()
        );
    }
    Ok(())
}

fn cv_cmd(a: CvArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.folds >= 2, "--folds must be at least 2");
    a.hyper.validate()?;
    let rows = read_manifest(&a.manifest)?;
    let loaded = load_examples(&rows, &FeatureSpec::from_args(&a.hyper.features))?;
    let examples = &loaded.examples;
    let n_classes = rows.iter().map(|r| r.1).max().unwrap_or(0) + 1;
    let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let folds = stratified_folds(&labels, a.folds, a.hyper.seed);
    let mut fold_acc = Vec::new();
    let mut all_pred = vec![0usize; labels.len()];
    for f in 0..a.folds {
        let train_set: Vec<Example> = (0..labels.len())
            .filter(|&i| folds[i] != f)
            .map(|i| examples[i].clone())
            .collect();
        let test_idx: Vec<usize> = (0..labels.len()).filter(|&i| folds[i] == f).collect();
        let test_set: Vec<Example> = test_idx.iter().map(|&i| examples[i].clone()).collect();
        let models = (0..a.ensemble.max(1))
            .map(|k| {
                let hyper = Hyper {
                    seed: a.hyper.seed + k as u64,
                    ..a.hyper.clone()
                };
                fit(&loaded, &train_set, n_classes, &hyper)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pred = predict_ensemble(&models, &test_set)?;
        let test_labels: Vec<usize> = test_set.iter().map(|e| e.label).collect();
        let (acc, _, _) = report(&test_labels, &pred, n_classes);
        for (&i, &p) in test_idx.iter().zip(&pred) {
            all_pred[i] = p;
        }
        eprintln!(
            "fold {f}: accuracy {acc:.4} ({} test sequences)",
            test_set.len()
        );
        fold_acc.push(acc);
    }
    let mean = fold_acc.iter().sum::<f64>() / fold_acc.len() as f64;
    let (_, per_class, confusion) = report(&labels, &all_pred, n_classes);
    if a.json {
        let out = json!({
            "manifest": a.manifest, "folds": a.folds, "seed": a.hyper.seed,
            "ensemble": a.ensemble.max(1),
            "epochs": a.hyper.epochs, "backend": format!("{:?}", a.hyper.backend).to_lowercase(),
            "features": loaded.kind.name(), "input_dim": loaded.input_dim,
            "fold_accuracy": fold_acc, "mean_accuracy": mean,
            "per_class_accuracy": per_class, "confusion": confusion,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "mean {}-fold accuracy {mean:.4} (folds {fold_acc:.4?}; {} features)",
            a.folds,
            loaded.kind.name()
        );
    }
    Ok(())
}

fn stream_cmd(a: StreamArgs) -> anyhow::Result<()> {
    let model = load_model(&a.model)?;
    let spec = FeatureSpec::from_model(&model, a.pose_features.as_deref(), &a.model)?;
    let file = a.file.to_string_lossy().into_owned();
    let source = match file.rsplit_once('#') {
        Some((dir, key)) => {
            let (environment, subject, action) =
                parse_sequence_key(key).map_err(anyhow::Error::msg)?;
            Source::Packed {
                dir: PathBuf::from(dir),
                environment,
                subject,
                action,
            }
        }
        None => Source::File(a.file.clone()),
    };
    let loaded = load_examples(&[(source, 0)], &spec)?;
    let dim = model.shape.input_dim;
    if loaded.input_dim != dim {
        bail!(
            "{}: gives {} features per frame, the model expects {dim}",
            a.file.display(),
            loaded.input_dim
        );
    }
    let x = &loaded.examples[0].frames;
    let frames = x.len() / dim;
    let mut stream = model.streamer(frames)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for t in 0..frames {
        let logits = stream.push(&x[t * dim..(t + 1) * dim])?;
        if (t + 1) % a.every.max(1) == 0 || t + 1 == frames {
            let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = logits.iter().map(|l| (l - m).exp()).sum();
            let class = argmax(&logits);
            writeln!(
                out,
                "frame {:>4} (packet {:>5}): class {class} p={:.3}",
                t + 1,
                (t + 1) * loaded.stride,
                1.0 / z
            )?;
        }
    }
    Ok(())
}

fn manifest_cmd(a: ManifestArgs) -> anyhow::Result<()> {
    crate::validate::closed("--ratio", a.ratio, 0.0, 1.0)?;
    crate::validate::output_file("--out", &a.out, &crate::validate::inputs(&[Some(&a.data)]))?;
    let ds = PackedDataset::open(&a.data)
        .with_context(|| format!("opening packed dataset {}", a.data.display()))?;
    let split = match a.split {
        Some(kind) => Some(super::split::make_split(
            kind,
            a.protocol,
            a.split_seed,
            a.ratio,
            None,
        )?),
        None => None,
    };
    let subset = match a.subset {
        super::eval::SubsetArg::Train => Subset::Train,
        super::eval::SubsetArg::Val => Subset::Val,
        super::eval::SubsetArg::All => Subset::All,
    };
    let sequences: std::collections::BTreeSet<(i32, i32, i32)> = (0..ds.len())
        .map(|i| ds.meta(i))
        .filter(|m: &FrameMeta| {
            split
                .as_ref()
                .is_none_or(|s| s.contains(subset, m.subject, m.action))
        })
        .map(|m| (m.environment, m.subject, m.action))
        .collect();
    if sequences.is_empty() {
        bail!("{}: no sequences selected", a.data.display());
    }
    let mut text = String::from("file,label\n");
    for &(e, s, act) in &sequences {
        if act < 1 {
            bail!(
                "{}: action {act} has no class number (actions start at 1)",
                a.data.display()
            );
        }
        text.push_str(&format!(
            "{}#E{e:02}/S{s:02}/A{act:02},{}\n",
            a.data.display(),
            act - 1
        ));
    }
    let mut file = csipose_npy::AtomicFile::create(&a.out)?;
    file.write_all(text.as_bytes())?;
    file.commit()?;
    eprintln!(
        "wrote {} ({} sequences; label = action - 1)",
        a.out.display(),
        sequences.len()
    );
    Ok(())
}

/// Confusion matrix as a PNG: one 16x16 cell per (true row, predicted column), white = 0 to
/// dark blue = the whole row; no text.
fn write_confusion_png(path: &Path, confusion: &[Vec<usize>]) -> anyhow::Result<()> {
    let n = confusion.len();
    let cell = 16usize;
    let side = n * cell;
    let mut rgb = vec![255u8; side * side * 3];
    for (r, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (c, &count) in row.iter().enumerate() {
            let f = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let colour = [
                (255.0 * (1.0 - 0.9 * f)) as u8,
                (255.0 * (1.0 - 0.7 * f)) as u8,
                (255.0 * (1.0 - 0.3 * f)) as u8,
            ];
            for y in r * cell..(r + 1) * cell {
                for x in c * cell..(c + 1) * cell {
                    let edge = x % cell == 0 || y % cell == 0;
                    let px = if edge { [200, 200, 200] } else { colour };
                    rgb[(y * side + x) * 3..(y * side + x) * 3 + 3].copy_from_slice(&px);
                }
            }
        }
    }
    let png = csipose_png::encode_rgb(side as u32, side as u32, &rgb);
    let mut file = csipose_npy::AtomicFile::create(path)?;
    file.write_all(&png)?;
    file.commit()?;
    Ok(())
}
