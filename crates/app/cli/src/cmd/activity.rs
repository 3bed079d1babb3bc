//! `csipose activity`: flag parsing and printing for the activity classifier; the work is in
//! `csipose_pipeline` (manifests, features, training, evaluation, nested cross-validation).
//! `train` fits the classifier on a manifest and writes a `.rvne` blob (with `--search`, the
//! settings are first chosen by inner cross-validation on that manifest), `eval` scores a model
//! (accuracy, per-class accuracy, confusion-matrix PNG), `cv` runs stratified or grouped k-fold
//! cross-validation (nested when given `--search`), `transfer` trains on one manifest and scores
//! later sessions, `stream` classifies a capture frame by frame with the KV cache, and `manifest`
//! lists a packed dataset's sequences or a folder of ESP32-HAR windows.
//!
//! Manifest rows (see `csipose_pipeline::manifest`): captures, amplitude `.npy`, packed-dataset
//! sequences `DIR#S03/A12`, and `.npy` windows with per-window labels (`X-x.npy,X-y.npy`, text
//! labels numbered by the manifest's `#classes` line).
//!
//! Per-frame features: amplitude blocks, optionally the cross-antenna phase of complex CSI
//! (`--features`), feature transforms against session drift (`--transforms ratio,window-norm`),
//! or a trained pose model's pooled encoder vector per packed-dataset frame
//! (`--pose-features RUN`). The choice, the packets per frame, the transforms and the attention
//! window, block size and causality are stored in the `.rvne` head config record, and the class
//! names (the manifest's `#classes`), `--context` and `--adapt-norm` in its META section, so
//! `eval` and `stream` use what the model was trained with (a flag that contradicts the file is
//! refused; a file written before the META section takes the flags as given). `stream` of an
//! ESP32-HAR windows file streams each window after its stored `--context` earlier windows.
//! `--decode forward|viterbi` is stored too (the mode and the transition model learned from the
//! training manifest): `eval` decodes each manifest row with it, `stream` runs the forward
//! filter over the file's windows. With `--adapt-norm` stored, `eval` re-estimates the
//! normalisation on the whole manifest (offline, per session) and `stream` of a windows file,
//! like `serve`, before each window on every frame streamed so far (`--norm running`, the
//! default; `session`: the whole file; `stored`: no adaptation).
//! `transfer` chooses among `--search` by inner CV on the training manifest, or on a named
//! validation session (`--validate-on`, or every test session in turn with `--validate-each`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use csipose_attention::Backend;
use csipose_dataset::packed::FrameMeta;
use csipose_dataset::split::Subset;
use csipose_dataset::PackedDataset;
use csipose_pipeline::activity::{
    cross_validate, decode_recordings, fit, load_examples, mean_sd, nested_cv, parse_transforms,
    predict, predict_probabilities, select, stored_decode, transfer, transforms_name,
    validate_each, Choice, FeatureCache, FeatureSpec, FoldOptions, Loaded, SearchSpace, Settings,
};
use csipose_pipeline::manifest::{parse_sequence_key, read_manifest, Manifest, Row, Source};
use csipose_temporal::features::FeatureKind;
use csipose_temporal::model::{argmax, softmax, ActivityModel, RunningNorm};
use csipose_temporal::rvne::{RvneDecode, RvneMeta};
use csipose_temporal::sequence::{Decode, ForwardFilter};
use csipose_temporal::train::{accuracies, confusion_matrix};
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
    /// Train on one manifest (settings from --search by inner CV on it alone), score others.
    Transfer(TransferArgs),
    /// Write a manifest of a packed dataset's sequences (label = action - 1), optionally only
    /// one subset of a split, or of folders of ESP32-HAR windows (`--windows`).
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
    /// Feature transforms against session drift: none, ratio (log amplitudes relative to the
    /// antenna's mean over subcarriers), window-norm (minus each channel's mean over the
    /// sequence), or both (`ratio+window-norm`).
    #[arg(long, default_value = "none", value_parser = parse_transforms)]
    transforms: u16,
    /// Window manifests (ESP32-HAR): each window is classified with this many earlier windows
    /// of its recording before it (causal context; 0 = the window alone).
    #[arg(long, default_value_t = 0)]
    context: usize,
    /// Standardise every feature per recording (manifest row) by its own mean and deviation,
    /// in training and at test time (on the unlabelled test recording): against session drift.
    #[arg(long)]
    recording_norm: bool,
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
    /// Train with random smooth frequency responses of this size in dB (0 = off).
    #[arg(long, default_value_t = 0.0)]
    response_db: f32,
    /// Test-time adaptation: re-estimate the input normalisation on each test set (unlabelled)
    /// before predicting it.
    #[arg(long)]
    adapt_norm: bool,
    /// Test-time adaptation by information maximisation (TENT's entropy minimisation with
    /// SHOT's diversity term): this many full-batch steps move the input normalisation on each
    /// test set's unlabelled examples (after --adapt-norm; 0 = off). Not stored in a model file.
    #[arg(long, default_value_t = 0)]
    tent: usize,
    /// Pseudo-label self-training: this many rounds, each adds the test set's most confident
    /// half (unlabelled, labelled by the prediction) to the training data and retrains
    /// (0 = off). Needs the training data, so not stored in a model file.
    #[arg(long, default_value_t = 0)]
    self_train: usize,
    /// How a test recording's window probabilities become classes: none (each window by
    /// itself), forward (causal filter) or viterbi (whole recording, offline), both with a
    /// transition model learned from the training recordings' label order. `train` and
    /// `transfer --out` store the mode and the transition model in the model file.
    #[arg(long, default_value = "none", value_parser = parse_decode)]
    decode: Decode,
    /// Classify with the linear window-statistics classifier (multinomial logistic regression
    /// over each window's per-channel level, spread and change, standardised per recording)
    /// with this L2 penalty C instead of the attention model (0 = the attention model). Not
    /// stored in a model file.
    #[arg(long, default_value_t = 0.0)]
    linear: f64,
    #[command(flatten)]
    features: FeatureArgs,
}

fn parse_decode(s: &str) -> Result<Decode, String> {
    s.parse()
}

/// The honest protocol's settings search.
#[derive(clap::Args, Clone)]
struct SearchArgs {
    /// A search axis `key=v1,v2,...` (repeatable; every combination is tried): epochs, lr,
    /// batch, min-crop, layers, q-heads, kv-heads, head-dim, window, block-size, response-db,
    /// stride, context, recording-norm, transforms, adapt-norm, tent, self-train, ensemble
    /// (transfer), decode, linear, features. Chosen by inner CV on training data only, or (transfer) on the
    /// --validate-on session.
    #[arg(long = "search")]
    search: Vec<String>,
    /// Inner folds of the search.
    #[arg(long, default_value_t = 5)]
    inner_folds: usize,
    /// Folds keep whole manifest rows together (e.g. one recording's windows) instead of
    /// stratifying examples by class.
    #[arg(long)]
    grouped: bool,
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
    #[command(flatten)]
    search: SearchArgs,
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
    /// Test-time adaptation: re-estimate the input normalisation on the manifest's examples
    /// (unlabelled) before predicting them [default: as the model was trained (stored in the
    /// file); refused for a model trained without it].
    #[arg(long)]
    adapt_norm: bool,
    /// Window manifests: earlier windows before each one [default: the model's `--context` of
    /// train, stored in the file (0 for a file without it); another value is refused].
    #[arg(long)]
    context: Option<usize>,
    /// How each recording's (manifest row's) window probabilities become classes [default:
    /// the decoding stored in the file, none for a file without it]; forward and viterbi need
    /// the transition model a file trained with --decode forward|viterbi stores.
    #[arg(long, value_parser = parse_decode)]
    decode: Option<Decode>,
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
    /// Repeat the whole (nested) cross-validation with seeds seed, seed + 1, ... (folds and
    /// initialisation) and report the mean and standard deviation.
    #[arg(long, default_value_t = 1)]
    seeds: usize,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hyper: Hyper,
    #[command(flatten)]
    search: SearchArgs,
}

#[derive(clap::Args)]
struct TransferArgs {
    /// Training manifest (the only data settings are chosen on).
    #[arg(long)]
    train: PathBuf,
    /// Test manifests (repeatable), each scored as one session.
    #[arg(long, required = true)]
    test: Vec<PathBuf>,
    /// Seeds seed, seed + 1, ...; mean and standard deviation over them.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Write the first seed's model here (.rvne).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Choose among --search on this named validation session (a later recording than
    /// --train) instead of inner CV: each combination is trained on --train alone and scored
    /// on it; its labels only score. It must not be a --test manifest.
    #[arg(long, requires = "search", conflicts_with = "validate_each")]
    validate_on: Option<PathBuf>,
    /// Each --test manifest in turn is the named validation session and the others are
    /// reported (the same choices and numbers as one --validate-on run per session, with the
    /// combinations trained once).
    #[arg(long, requires = "search")]
    validate_each: bool,
    /// Models per prediction, trained with seeds seed, seed + 1, ... (mean softmax).
    #[arg(long, default_value_t = 1)]
    ensemble: usize,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hyper: Hyper,
    #[command(flatten)]
    search: SearchArgs,
}

#[derive(clap::Args)]
struct StreamArgs {
    /// A capture file, an amplitude .npy, or an ESP32-HAR windows file `NAME-x.npy` (with
    /// `NAME-y.npy` beside it): then each window is streamed with its `--context` earlier
    /// windows, as the model was trained, and one line per window is printed.
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
    /// Re-estimate the input normalisation on FILE first [default: as the model was trained
    /// (stored in the file); refused for a model trained without it].
    #[arg(long)]
    adapt_norm: bool,
    /// Windows files, a model trained with adapt-norm: which input normalisation. `running`
    /// (default): re-estimated before each window on every frame streamed so far, the current
    /// window's included (what `serve` does live); `session`: once on the whole file (the
    /// per-session estimate of `eval`); `stored`: the training set's, no adaptation.
    #[arg(long, value_enum)]
    norm: Option<StreamNorm>,
    /// Windows files: earlier windows streamed before each one [default: the model's
    /// `--context` of train, stored in the file (0 for a file without it); another value is
    /// refused].
    #[arg(long)]
    context: Option<usize>,
}

/// `activity stream --norm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StreamNorm {
    Running,
    Session,
    Stored,
}

#[derive(clap::Args)]
struct ManifestArgs {
    /// Packed dataset directory.
    #[arg(long, required_unless_present = "windows", conflicts_with = "windows")]
    data: Option<PathBuf>,
    /// Instead of a packed dataset: folders of ESP32-HAR windows (`NAME-x.npy` with
    /// `NAME-y.npy`), repeatable; rows are `NAME-x.npy,NAME-y.npy` with paths as given.
    #[arg(long)]
    windows: Vec<PathBuf>,
    /// Class names in class-number order for the `#classes` line of a --windows manifest
    /// (default: the sorted distinct labels found).
    #[arg(long, value_delimiter = ',', requires = "windows")]
    classes: Vec<String>,
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
        ActivityCommand::Transfer(a) => transfer_cmd(a),
        ActivityCommand::Stream(a) => stream_cmd(a),
        ActivityCommand::Manifest(a) => manifest_cmd(a),
    }
}

impl FeatureArgs {
    fn spec(&self) -> FeatureSpec {
        FeatureSpec {
            kind: match self.features {
                FeaturesArg::Auto => None,
                FeaturesArg::Amplitude => Some(FeatureKind::Amplitude),
                FeaturesArg::AmplitudePhase => Some(FeatureKind::AmplitudePhase),
            },
            stride: self.stride,
            pose: self.pose_features.clone(),
            transforms: self.transforms,
            context: self.context,
            recording_norm: self.recording_norm,
        }
    }
}

impl Hyper {
    /// The typed settings, validated.
    fn settings(&self) -> anyhow::Result<Settings> {
        use crate::validate;
        validate::above("--lr", self.lr as f64, 0.0, 1.0)?;
        validate::closed("--min-crop", self.min_crop as f64, 0.05, 1.0)?;
        validate::closed("--response-db", self.response_db as f64, 0.0, 40.0)?;
        validate::at_least("--epochs", self.epochs, 1)?;
        validate::at_least("--batch", self.batch, 1)?;
        let s = Settings {
            features: self.features.spec(),
            hyper: csipose_pipeline::activity::Hyper {
                epochs: self.epochs,
                backend: self.backend,
                layers: self.layers,
                q_heads: self.q_heads,
                kv_heads: self.kv_heads,
                head_dim: self.head_dim,
                lr: self.lr,
                batch: self.batch,
                min_crop: self.min_crop,
                seed: self.seed,
                window: self.window,
                block_size: self.block_size,
                response_db: self.response_db,
            },
            adapt_norm: self.adapt_norm,
            tent: self.tent,
            self_train: self.self_train,
            ensemble: 1,
            decode: self.decode,
            linear: self.linear,
        };
        s.validate()?;
        Ok(s)
    }
}

/// The files a manifest's rows read, the manifest itself and `more`: inputs that no output may
/// replace.
fn manifest_inputs(manifest: &Manifest, more: &[Option<&Path>]) -> Vec<PathBuf> {
    use csipose_pipeline::manifest::Source;
    let mut paths: Vec<Option<&Path>> = vec![Some(manifest.path.as_path())];
    for r in &manifest.rows {
        match &r.source {
            Source::File(p) => paths.push(Some(p)),
            Source::Packed { dir, .. } => paths.push(Some(dir)),
            Source::Windows { x, y } => {
                paths.push(Some(x));
                paths.push(Some(y));
            }
        }
    }
    paths.extend_from_slice(more);
    crate::validate::inputs(&paths)
}

/// Loads a manifest's examples with a progress bar, printing what was left out.
fn load(manifest: &Manifest, spec: &FeatureSpec) -> anyhow::Result<Loaded> {
    let bar = ProgressBar::new(manifest.rows.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "loading {wide_bar} {pos}/{len}",
    )?);
    let loaded = load_examples(manifest, spec, &|| bar.inc(1));
    bar.finish_and_clear();
    let loaded = loaded?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    Ok(loaded)
}

/// Trains with a progress bar.
fn fit_bar(
    loaded: &Loaded,
    idx: &[usize],
    h: &csipose_pipeline::activity::Hyper,
) -> anyhow::Result<ActivityModel> {
    let bar = ProgressBar::new(h.epochs as u64);
    bar.set_style(ProgressStyle::with_template(
        "training {wide_bar} {pos}/{len} {msg}",
    )?);
    let model = fit(loaded, idx, h, |s| {
        bar.set_message(format!("loss {:.3} train acc {:.3}", s.loss, s.accuracy));
        bar.inc(1);
    });
    bar.finish_and_clear();
    model
}

/// Refuses settings that would write a model file `eval`, `stream` and `serve` cannot repeat:
/// per-recording standardisation, information-maximisation adaptation, self-training (it needs
/// the training data) and ensembles are not stored in the model. (`--decode` is: the mode and
/// the transition model go into the META section.)
fn refuse_unstored(base: &Settings, space: &SearchSpace) -> anyhow::Result<()> {
    // Whether the search tries a value of `key` that is on (`on` of the value's text).
    let searched = |key: &str, on: fn(&str) -> bool| {
        space
            .axes
            .iter()
            .any(|(k, v)| k == key && v.iter().any(|x| on(x)))
    };
    fn above(x: &str, n: usize) -> bool {
        x.parse::<usize>().is_ok_and(|v| v > n)
    }
    anyhow::ensure!(
        !base.features.recording_norm && !searched("recording-norm", |x| x == "true"),
        "--recording-norm is not stored in the model file (eval, stream and serve could not repeat it): use it with cv, or transfer without --out"
    );
    for (key, on) in [
        ("tent", base.tent > 0 || searched("tent", |x| above(x, 0))),
        (
            "self-train",
            base.self_train > 0 || searched("self-train", |x| above(x, 0)),
        ),
        (
            "ensemble",
            base.ensemble > 1 || searched("ensemble", |x| above(x, 1)),
        ),
        (
            "linear",
            base.linear > 0.0 || searched("linear", |x| x.parse::<f64>().is_ok_and(|c| c > 0.0)),
        ),
    ] {
        anyhow::ensure!(
            !on,
            "--{key} is not stored in the model file (eval, stream and serve could not repeat it): use it with cv, or transfer without --out"
        );
    }
    Ok(())
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    let base = a.hyper.settings()?;
    let manifest = read_manifest(&a.manifest)?;
    let inputs = manifest_inputs(&manifest, &[a.hyper.features.pose_features.as_deref()]);
    crate::validate::output_file("--out", &a.out, &inputs)?;
    let space = SearchSpace::parse(&a.search.search, &base)?;
    refuse_unstored(&base, &space)?;
    let mut cache = FeatureCache::new(&manifest);
    cache.insert(&base.features, load(&manifest, &base.features)?);
    let settings = if space.is_empty() {
        base
    } else {
        let n = cache.get(&base.features)?.examples.len();
        let idx: Vec<usize> = (0..n).collect();
        let inner = FoldOptions {
            folds: a.search.inner_folds,
            seed: base.hyper.seed,
            grouped: a.search.grouped,
        };
        let sel = select(&mut cache, &idx, &base, &space, inner, |name, acc| {
            eprintln!("inner {}-fold CV {name}: {acc:.4}", inner.folds)
        })?;
        eprintln!("chosen on {}: {}", a.manifest.display(), sel.name);
        sel.settings
    };
    let loaded = cache.get(&settings.features)?;
    let all: Vec<usize> = (0..loaded.examples.len()).collect();
    let mut model = fit_bar(loaded, &all, &settings.hyper)?;
    model.meta = Some(stored_meta(
        &settings,
        manifest.classes.as_deref(),
        &model,
        loaded,
    )?);
    if let Some(d) = model.meta.as_ref().and_then(|m| m.decode.as_ref()) {
        eprintln!("{}", describe_decode(d));
    }
    let bytes = model.to_rvne(a.fp16)?;
    let mut file = csipose_npy::AtomicFile::create(&a.out)?;
    file.write_all(&bytes)?;
    file.commit()?;
    let predicted = predict(std::slice::from_ref(&model), loaded, &all, false)?;
    let (acc, _) = accuracies(&confusion_matrix(
        &loaded.labels(),
        &predicted,
        loaded.n_classes,
    ));
    eprintln!(
        "wrote {} ({} bytes, {} weights, {} features x {} per frame, transforms {}); training accuracy {:.4}",
        a.out.display(),
        bytes.len(),
        model.weights.len(),
        loaded.kind.name(),
        loaded.input_dim,
        transforms_name(loaded.transforms),
        acc
    );
    Ok(())
}

/// What a written model records besides its weights: the manifest's class names (when it
/// names as many as the model has), the feature settings `--context` and `--adapt-norm`, and
/// with `--decode forward|viterbi` the mode and the transition model learned from the label
/// order of `loaded` (all of the training manifest).
fn stored_meta(
    settings: &Settings,
    classes: Option<&[String]>,
    model: &ActivityModel,
    loaded: &Loaded,
) -> anyhow::Result<RvneMeta> {
    let all: Vec<usize> = (0..loaded.examples.len()).collect();
    Ok(RvneMeta {
        decode: stored_decode(loaded, &all, settings.decode)?,
        context: u16::try_from(settings.features.context)
            .context("--context does not fit the .rvne file's u16")?,
        adapt_norm: settings.adapt_norm,
        classes: classes
            .filter(|c| c.len() == model.shape.n_classes)
            .map(<[String]>::to_vec),
    })
}

/// One line saying what a file's decoding block holds.
fn describe_decode(d: &RvneDecode) -> String {
    format!(
        "decoding: {} with a stored transition model of {} classes ({})",
        d.mode.name(),
        d.transitions.n_classes,
        match d.step_frames {
            0 => "no fixed window length".to_string(),
            f => format!("{f} frames per window"),
        }
    )
}

/// The decoding block `models` store: the first one's, which every other must equal (`None`
/// when none stores one; a file without a block next to one with it is refused).
fn stored_decoding<'m>(
    models: &'m [ActivityModel],
    paths: &[PathBuf],
) -> anyhow::Result<Option<&'m RvneDecode>> {
    let of = |m: &'m ActivityModel| m.meta.as_ref().and_then(|m| m.decode.as_ref());
    let first = of(&models[0]);
    for (m, p) in models.iter().zip(paths).skip(1) {
        if of(m) != first {
            bail!(
                "{}: its stored decoding differs from {}'s; an ensemble needs them equal",
                p.display(),
                paths[0].display()
            );
        }
    }
    Ok(first)
}

/// The `--context` and `--adapt-norm` to evaluate `models` with: what the files store, the
/// flags where they store nothing; a flag that contradicts a file is refused.
fn stored_settings(
    models: &[ActivityModel],
    paths: &[PathBuf],
    context: Option<usize>,
    adapt_norm: bool,
) -> anyhow::Result<(usize, bool)> {
    let mut out: Option<(usize, bool, &Path)> = None;
    for (m, p) in models.iter().zip(paths) {
        let Some(meta) = &m.meta else { continue };
        let stored = meta.context as usize;
        if let Some(c) = context.filter(|&c| c != stored) {
            bail!(
                "--context {c}: {} was trained with --context {stored} (stored in the file); \
                 drop the flag or give the same value",
                p.display()
            );
        }
        if adapt_norm && !meta.adapt_norm {
            bail!(
                "--adapt-norm: {} was trained without --adapt-norm (stored in the file); drop \
                 the flag, or train a model with it",
                p.display()
            );
        }
        match out {
            Some((c, n, first)) if (c, n) != (stored, meta.adapt_norm) => bail!(
                "{}: its stored --context {stored} / --adapt-norm {} differ from {} \
                 (--context {c} / --adapt-norm {n}); an ensemble needs them equal",
                p.display(),
                meta.adapt_norm,
                first.display()
            ),
            Some(_) => {}
            None => out = Some((stored, meta.adapt_norm, p)),
        }
    }
    Ok(match out {
        Some((c, n, _)) => (c, n),
        None => (context.unwrap_or(0), adapt_norm),
    })
}

/// Class `c`'s name when the model stores names, else its number.
fn class_name(model: &ActivityModel, c: usize) -> String {
    model
        .meta
        .as_ref()
        .and_then(|m| m.classes.as_ref())
        .and_then(|n| n.get(c))
        .map(|n| format!("{c} ({n})"))
        .unwrap_or_else(|| c.to_string())
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
    // The confusion picture must not replace an input; checked before anything is read.
    let manifest = read_manifest(&a.manifest)?;
    let png = a
        .confusion_png
        .clone()
        .unwrap_or_else(|| a.model[0].with_extension("confusion.png"));
    let mut more: Vec<Option<&Path>> = a.model.iter().map(|p| Some(p.as_path())).collect();
    more.push(a.pose_features.as_deref());
    crate::validate::output_file("--confusion-png", &png, &manifest_inputs(&manifest, &more))?;
    let models = a
        .model
        .iter()
        .map(|p| load_model(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (model, first) = (&models[0], &a.model[0]);
    for (m, p) in models.iter().zip(&a.model).skip(1) {
        if m.shape.n_classes != model.shape.n_classes
            || m.shape.input_dim != model.shape.input_dim
            || (m.head.features, m.head.stride, m.head.transforms)
                != (
                    model.head.features,
                    model.head.stride,
                    model.head.transforms,
                )
        {
            bail!(
                "{}: its classes, features or input size differ from {}; an ensemble needs them equal",
                p.display(),
                first.display()
            );
        }
    }
    let (context, adapt_norm) = stored_settings(&models, &a.model, a.context, a.adapt_norm)?;
    let spec = FeatureSpec {
        context,
        ..FeatureSpec::from_model(model, a.pose_features.as_deref(), first)?
    };
    let loaded = load(&manifest, &spec)?;
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
    if let Some((i, e)) = loaded
        .examples
        .iter()
        .enumerate()
        .find(|(_, e)| e.label >= n_classes)
    {
        bail!(
            "{}: label {} but the model has {n_classes} classes",
            manifest.rows[loaded.groups[i]].source.display(),
            e.label
        );
    }
    let labels = loaded.labels();
    let idx: Vec<usize> = (0..labels.len()).collect();
    let stored = stored_decoding(&models, &a.model)?;
    let decode = a.decode.unwrap_or(stored.map_or(Decode::None, |d| d.mode));
    let predicted = match (decode, stored) {
        (Decode::None, _) => predict(&models, &loaded, &idx, adapt_norm)?,
        (_, None) => bail!(
            "--decode {}: {} stores no transition model; train it with --decode forward or \
             viterbi, or drop the flag",
            decode.name(),
            first.display()
        ),
        (_, Some(d)) => {
            eprintln!(
                "decoding: {} per recording (manifest row) with the transition model stored in {}",
                decode.name(),
                first.display()
            );
            let probs = predict_probabilities(&models, &loaded, &idx, adapt_norm)?;
            decode_recordings(&d.transitions, &probs, &loaded.groups, decode)?
        }
    };
    let (acc, per_class, confusion) = report(&labels, &predicted, n_classes);
    write_confusion_png(&png, &confusion)?;
    if a.json {
        let out = json!({
            "model": a.model, "manifest": a.manifest, "sequences": labels.len(),
            "features": loaded.kind.name(), "transforms": transforms_name(loaded.transforms),
            "adapt_norm": adapt_norm, "context": context, "decode": decode.name(),
            "classes": model.meta.as_ref().and_then(|m| m.classes.clone()),
            "accuracy": acc, "per_class_accuracy": per_class,
            "confusion": confusion, "confusion_png": png, "predicted": predicted,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "accuracy {acc:.4} on {} sequences (decode {}); confusion matrix {}",
            labels.len(),
            decode.name(),
            png.display()
        );
    }
    Ok(())
}

fn cv_cmd(a: CvArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.folds >= 2, "--folds must be at least 2");
    anyhow::ensure!(a.seeds >= 1, "--seeds must be at least 1");
    let base = a.hyper.settings()?;
    let manifest = read_manifest(&a.manifest)?;
    let space = SearchSpace::parse(&a.search.search, &base)?;
    let mut cache = FeatureCache::new(&manifest);
    cache.insert(&base.features, load(&manifest, &base.features)?);
    let mut seed_means = Vec::new();
    let mut runs = Vec::new();
    for k in 0..a.seeds as u64 {
        let mut settings = base.clone();
        settings.hyper.seed = base.hyper.seed + k;
        let outer = FoldOptions {
            folds: a.folds,
            seed: settings.hyper.seed,
            grouped: a.search.grouped,
        };
        if space.is_empty() {
            let loaded = cache.get(&settings.features)?;
            let all: Vec<usize> = (0..loaded.examples.len()).collect();
            let r = cross_validate(loaded, &all, &settings, outer, a.ensemble, |f, acc| {
                eprintln!("seed {}: fold {f}: accuracy {acc:.4}", settings.hyper.seed)
            })?;
            let labels = loaded.labels();
            let (_, per_class, confusion) = report(&labels, &r.predicted, loaded.n_classes);
            seed_means.push(r.mean);
            runs.push(json!({
                "seed": settings.hyper.seed, "fold_accuracy": r.fold_accuracy,
                "mean_accuracy": r.mean, "per_class_accuracy": per_class, "confusion": confusion,
                "features": loaded.kind.name(), "input_dim": loaded.input_dim,
            }));
        } else {
            let folds = nested_cv(
                &mut cache,
                &settings,
                &space,
                outer,
                a.search.inner_folds,
                a.ensemble,
                |f| {
                    eprintln!(
                        "seed {}: outer fold: accuracy {:.4} ({} test examples) with {} (inner {:.4})",
                        settings.hyper.seed,
                        f.accuracy,
                        f.test_idx.len(),
                        f.selection.name,
                        f.selection
                            .scores
                            .iter()
                            .map(|s| s.1)
                            .fold(f64::MIN, f64::max)
                    )
                },
            )?;
            let accs: Vec<f64> = folds.iter().map(|f| f.accuracy).collect();
            let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
            seed_means.push(mean);
            runs.push(json!({
                "seed": settings.hyper.seed, "fold_accuracy": accs, "mean_accuracy": mean,
                "chosen": folds.iter().map(|f| f.selection.name.clone()).collect::<Vec<_>>(),
                "inner_scores": folds.iter().map(|f| f.selection.scores.iter()
                    .map(|(n, s)| json!({"settings": n, "accuracy": s})).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
            }));
        }
    }
    let (mean, sd) = mean_sd(&seed_means);
    if a.json {
        let out = json!({
            "manifest": a.manifest, "folds": a.folds, "grouped": a.search.grouped,
            "nested": !space.is_empty(), "inner_folds": a.search.inner_folds,
            "search": a.search.search, "ensemble": a.ensemble.max(1),
            "epochs": a.hyper.epochs, "backend": format!("{:?}", a.hyper.backend).to_lowercase(),
            "seeds": a.seeds, "mean_accuracy": mean, "sd_accuracy": sd, "runs": runs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}{}-fold accuracy {:.2}% ± {:.2} over {} seed(s) (per seed {:.4?})",
            if space.is_empty() { "" } else { "nested " },
            a.folds,
            100.0 * mean,
            100.0 * sd,
            a.seeds,
            seed_means
        );
    }
    Ok(())
}

fn transfer_cmd(a: TransferArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.seeds >= 1, "--seeds must be at least 1");
    anyhow::ensure!(a.ensemble >= 1, "--ensemble must be at least 1");
    let base = Settings {
        ensemble: a.ensemble,
        ..a.hyper.settings()?
    };
    let train = read_manifest(&a.train)?;
    let tests = a
        .test
        .iter()
        .map(|p| read_manifest(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let validation = match &a.validate_on {
        Some(v) => {
            let same = |p: &Path| match (p.canonicalize(), v.canonicalize()) {
                (Ok(x), Ok(y)) => x == y,
                _ => p == v,
            };
            if same(&a.train) || a.test.iter().any(|t| same(t)) {
                bail!(
                    "--validate-on {}: the validation session must be neither --train nor a --test manifest",
                    v.display()
                );
            }
            Some(read_manifest(v)?)
        }
        None => None,
    };
    if let Some(out) = &a.out {
        let mut inputs = manifest_inputs(&train, &[a.hyper.features.pose_features.as_deref()]);
        for t in &tests {
            inputs.extend(manifest_inputs(t, &[]));
        }
        crate::validate::output_file("--out", out, &inputs)?;
    }
    let space = SearchSpace::parse(&a.search.search, &base)?;
    if a.out.is_some() {
        refuse_unstored(&base, &space)?;
    }
    let mut cache = FeatureCache::new(&train);
    cache.insert(&base.features, load(&train, &base.features)?);
    if a.validate_each {
        anyhow::ensure!(
            a.out.is_none(),
            "--validate-each writes no model; drop --out"
        );
        anyhow::ensure!(
            tests.len() >= 2,
            "--validate-each needs at least two --test sessions"
        );
        return validate_each_cmd(&a, &mut cache, &tests, &base, &space);
    }
    let mut per_test: Vec<Vec<f64>> = vec![Vec::new(); tests.len()];
    let mut runs = Vec::new();
    for k in 0..a.seeds as u64 {
        let mut settings = base.clone();
        settings.hyper.seed = base.hyper.seed + k;
        let inner = FoldOptions {
            folds: a.search.inner_folds,
            seed: settings.hyper.seed,
            grouped: a.search.grouped,
        };
        let choice = match &validation {
            Some(v) => Choice::Validation(v),
            None => Choice::Inner(inner),
        };
        let r = transfer(
            &mut cache,
            &tests,
            &settings,
            &space,
            choice,
            |name, acc| match &a.validate_on {
                Some(v) => eprintln!(
                    "seed {}: trained on {}, validated on {} {name}: {acc:.4}",
                    settings.hyper.seed,
                    a.train.display(),
                    v.display()
                ),
                None => eprintln!(
                    "seed {}: inner {}-fold CV on {} {name}: {acc:.4}",
                    settings.hyper.seed,
                    inner.folds,
                    a.train.display()
                ),
            },
        )?;
        if let Some(sel) = &r.selection {
            eprintln!("seed {}: chosen {}", settings.hyper.seed, sel.name);
        }
        let chosen = r.selection.as_ref().map(|s| s.name.clone());
        for (t, acc) in r.accuracy.iter().enumerate() {
            eprintln!(
                "seed {}: {}: accuracy {acc:.4}{}",
                settings.hyper.seed,
                a.test[t].display(),
                chosen
                    .as_ref()
                    .map(|c| format!(" with {c}"))
                    .unwrap_or_default()
            );
            per_test[t].push(*acc);
        }
        if k == 0 {
            if let Some(out) = &a.out {
                let used = r.selection.as_ref().map_or(&settings, |s| &s.settings);
                let mut model = r
                    .model
                    .clone()
                    .context("the linear classifier is not stored in a model file")?;
                let loaded = cache.get(&used.features)?;
                model.meta = Some(stored_meta(used, train.classes.as_deref(), &model, loaded)?);
                if let Some(d) = model.meta.as_ref().and_then(|m| m.decode.as_ref()) {
                    eprintln!("{}", describe_decode(d));
                }
                let bytes = model.to_rvne(false)?;
                let mut file = csipose_npy::AtomicFile::create(out)?;
                file.write_all(&bytes)?;
                file.commit()?;
                eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
            }
        }
        runs.push(json!({
            "seed": settings.hyper.seed, "chosen": chosen, "accuracy": r.accuracy,
            "selection_scores": r.selection.as_ref().map(|s| s.scores.iter()
                .map(|(n, acc)| json!({"settings": n, "accuracy": acc})).collect::<Vec<_>>()),
        }));
    }
    let summary: Vec<(f64, f64)> = per_test.iter().map(|v| mean_sd(v)).collect();
    if a.json {
        let out = json!({
            "train": a.train, "test": a.test, "seeds": a.seeds, "search": a.search.search,
            "inner_folds": a.search.inner_folds, "grouped": a.search.grouped,
            "validate_on": a.validate_on, "ensemble": a.ensemble,
            "mean_accuracy": summary.iter().map(|s| s.0).collect::<Vec<_>>(),
            "sd_accuracy": summary.iter().map(|s| s.1).collect::<Vec<_>>(),
            "runs": runs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (t, (m, s)) in a.test.iter().zip(&summary) {
            println!(
                "{}: accuracy {:.2}% ± {:.2} over {} seed(s)",
                t.display(),
                100.0 * m,
                100.0 * s,
                a.seeds
            );
        }
    }
    Ok(())
}

/// `transfer --validate-each`: per seed and validation session, the chosen combination and
/// the accuracy on the other sessions; then mean ± sd over seeds of every (validation,
/// reported) pair.
fn validate_each_cmd(
    a: &TransferArgs,
    cache: &mut FeatureCache,
    tests: &[Manifest],
    base: &Settings,
    space: &SearchSpace,
) -> anyhow::Result<()> {
    let n = tests.len();
    // reported[v][t]: accuracies over seeds on session t of the choice made on session v.
    let mut reported: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n]; n];
    let mut runs = Vec::new();
    for k in 0..a.seeds as u64 {
        let mut settings = base.clone();
        settings.hyper.seed = base.hyper.seed + k;
        let seed = settings.hyper.seed;
        let choices = validate_each(cache, tests, &settings, space, |name, t, acc| {
            eprintln!("seed {seed}: {name}: {}: {acc:.4}", a.test[t].display())
        })?;
        for c in &choices {
            let others: Vec<String> = (0..n)
                .filter(|&t| t != c.validation)
                .map(|t| format!("{} {:.4}", a.test[t].display(), c.accuracy[t]))
                .collect();
            eprintln!(
                "seed {seed}: validated on {} ({:.4}): chosen {} -> {}",
                a.test[c.validation].display(),
                c.validation_accuracy,
                c.chosen,
                others.join(", ")
            );
            for t in (0..n).filter(|&t| t != c.validation) {
                reported[c.validation][t].push(c.accuracy[t]);
            }
        }
        runs.push(json!({
            "seed": seed,
            "choices": choices.iter().map(|c| json!({
                "validate_on": a.test[c.validation], "chosen": c.chosen,
                "validation_accuracy": c.validation_accuracy, "accuracy": c.accuracy,
            })).collect::<Vec<_>>(),
        }));
    }
    let mut pairs = Vec::new();
    for (v, row) in reported.iter().enumerate() {
        for (t, accs) in row.iter().enumerate().filter(|(t, _)| *t != v) {
            let (m, s) = mean_sd(accs);
            pairs.push((v, t, m, s));
        }
    }
    if a.json {
        let out = json!({
            "train": a.train, "sessions": a.test, "seeds": a.seeds, "search": a.search.search,
            "ensemble": a.ensemble,
            "reported": pairs.iter().map(|&(v, t, m, s)| json!({
                "validate_on": a.test[v], "test": a.test[t], "mean_accuracy": m, "sd_accuracy": s,
            })).collect::<Vec<_>>(),
            "runs": runs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (v, t, m, s) in pairs {
            println!(
                "chosen on {} -> {}: accuracy {:.2}% ± {:.2} over {} seed(s)",
                a.test[v].display(),
                a.test[t].display(),
                100.0 * m,
                100.0 * s,
                a.seeds
            );
        }
    }
    Ok(())
}

/// The labels file beside an ESP32-HAR windows file `NAME-x.npy`, when there is one.
fn windows_labels(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?.to_str()?;
    let stem = name.strip_suffix("-x.npy")?;
    let y = file.with_file_name(format!("{stem}-y.npy"));
    y.is_file().then_some(y)
}

fn stream_cmd(a: StreamArgs) -> anyhow::Result<()> {
    let mut model = load_model(&a.model)?;
    let (context, adapt_norm) = stored_settings(
        std::slice::from_ref(&model),
        std::slice::from_ref(&a.model),
        a.context,
        a.adapt_norm,
    )?;
    if let (Some(n), false) = (a.norm, adapt_norm) {
        bail!(
            "--norm {}: {} was trained without --adapt-norm (stored in the file); it always \
             uses its stored normalisation",
            format!("{n:?}").to_lowercase(),
            a.model.display()
        );
    }
    let spec = FeatureSpec {
        context,
        ..FeatureSpec::from_model(&model, a.pose_features.as_deref(), &a.model)?
    };
    let file = a.file.to_string_lossy().into_owned();
    let labels = windows_labels(&a.file);
    let source = match (file.rsplit_once('#'), &labels) {
        (_, Some(y)) => Source::Windows {
            x: a.file.clone(),
            y: y.clone(),
        },
        (Some((dir, key)), None) => {
            let (environment, subject, action) =
                parse_sequence_key(key).map_err(anyhow::Error::msg)?;
            Source::Packed {
                dir: PathBuf::from(dir),
                environment,
                subject,
                action,
            }
        }
        (None, None) => Source::File(a.file.clone()),
    };
    if labels.is_none() && context > 0 {
        eprintln!(
            "note: {} was trained with --context {context} on windows; {} is one continuous \
             sequence, streamed from its first packet",
            a.model.display(),
            a.file.display()
        );
    }
    let manifest = Manifest {
        path: a.file.clone(),
        rows: vec![Row {
            source,
            label: labels.is_none().then_some(0),
        }],
        classes: model.meta.as_ref().and_then(|m| m.classes.clone()),
    };
    let loaded = load(&manifest, &spec)?;
    let dim = model.shape.input_dim;
    if loaded.input_dim != dim {
        bail!(
            "{}: gives {} features per frame, the model expects {dim}",
            a.file.display(),
            loaded.input_dim
        );
    }
    let windows = labels.is_some();
    // Windows files stream as `serve` runs them: the normalisation is the running estimate
    // over every frame streamed so far (the current window's included).
    let norm = a.norm.unwrap_or(if windows {
        StreamNorm::Running
    } else {
        StreamNorm::Session
    });
    let mut running =
        (adapt_norm && windows && norm == StreamNorm::Running).then(|| RunningNorm::new(dim));
    if running.is_some() {
        eprintln!(
            "note: {} was trained with --adapt-norm: its input normalisation is re-estimated on \
             the windows of {} streamed so far, before each window (as serve does live; \
             --norm session: once on the whole file, as eval)",
            a.model.display(),
            a.file.display()
        );
    } else if adapt_norm && norm == StreamNorm::Stored {
        eprintln!(
            "note: --norm stored: {} keeps its stored (training) normalisation",
            a.model.display()
        );
    } else if adapt_norm && norm == StreamNorm::Running {
        bail!(
            "--norm running: {} is one continuous sequence, streamed frame by frame; the running \
             estimate is for windows files (--norm session or stored)",
            a.file.display()
        );
    } else if adapt_norm {
        // As `eval` does for a model trained with --adapt-norm: the whole file is the session.
        eprintln!(
            "note: {} was trained with --adapt-norm: its input normalisation is re-estimated on {} first",
            a.model.display(),
            a.file.display()
        );
        let all: Vec<f32> = loaded
            .examples
            .iter()
            .flat_map(|e| e.frames.iter().copied())
            .collect();
        model.set_normalisation(&all);
    }
    // A stored decoding: the forward filter over this one recording's windows (a continuous
    // file is one window of its recording: each prediction is its first step).
    let decoding = model.meta.as_ref().and_then(|m| m.decode.clone());
    let mut filter = decoding
        .as_ref()
        .map(|d| ForwardFilter::new(&d.transitions));
    if let Some(d) = &decoding {
        let mode = match d.mode {
            Decode::Viterbi => {
                "stores viterbi decoding (offline, whole recordings); a stream \
                                decodes with its forward filter"
            }
            _ => "stores forward decoding",
        };
        let what = if windows {
            format!(
                "each window's class is filtered over the windows before it in {}",
                a.file.display()
            )
        } else {
            format!(
                "{} is one window of one recording: each prediction is weighted by the stored start probabilities",
                a.file.display()
            )
        };
        eprintln!("note: {} {mode}: {what}", a.model.display());
    }
    let mut filtered = vec![0f32; model.shape.n_classes];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (w, example) in loaded.examples.iter().enumerate() {
        let x = &example.frames;
        let frames = x.len() / dim;
        if let Some(r) = running.as_mut() {
            r.push(x);
            r.apply(&mut model);
        }
        let mut stream = model.streamer(frames)?;
        for t in 0..frames {
            let logits = stream.push(&x[t * dim..(t + 1) * dim])?;
            let last = t + 1 == frames;
            if !(last || (!windows && (t + 1) % a.every.max(1) == 0)) {
                continue;
            }
            let probs = softmax(&logits);
            let alone = argmax(&probs);
            // The decoded class and its filtered probability, then the window by itself.
            let (class, p, by_itself) = match filter.as_mut() {
                Some(f) => {
                    if !windows {
                        f.reset();
                    }
                    let c = f.step(&probs);
                    f.probabilities(&mut filtered);
                    let note = format!(
                        " [forward; window alone {} p={:.3}]",
                        class_name(&model, alone),
                        probs[alone]
                    );
                    (c, filtered[c], note)
                }
                None => (alone, probs[alone], String::new()),
            };
            if windows {
                writeln!(
                    out,
                    "window {w:>4} ({frames} frames, context {}): class {} p={p:.3}{by_itself} (labelled {})",
                    w.min(context),
                    class_name(&model, class),
                    class_name(&model, example.label)
                )?;
            } else {
                writeln!(
                    out,
                    "frame {:>4} (packet {:>5}): class {} p={p:.3}{by_itself}",
                    t + 1,
                    (t + 1) * loaded.stride,
                    class_name(&model, class),
                )?;
            }
        }
    }
    Ok(())
}

fn manifest_cmd(a: ManifestArgs) -> anyhow::Result<()> {
    crate::validate::closed("--ratio", a.ratio, 0.0, 1.0)?;
    let mut ins: Vec<Option<&Path>> = vec![a.data.as_deref()];
    ins.extend(a.windows.iter().map(|w| Some(w.as_path())));
    crate::validate::output_file("--out", &a.out, &crate::validate::inputs(&ins))?;
    let Some(data) = a.data else {
        // Rows reach the windows as given on the command line, relative to the manifest.
        let base = a.out.parent().unwrap_or(Path::new(""));
        let dirs: Vec<(PathBuf, PathBuf)> = a
            .windows
            .iter()
            .map(|d| (d.clone(), relative_to(d, base)))
            .collect();
        let classes = (!a.classes.is_empty()).then(|| a.classes.clone());
        let text = csipose_pipeline::manifest::windows_manifest(&dirs, classes)?;
        let mut file = csipose_npy::AtomicFile::create(&a.out)?;
        file.write_all(text.as_bytes())?;
        file.commit()?;
        eprintln!(
            "wrote {} ({} window files)",
            a.out.display(),
            text.lines().count() - 2
        );
        return Ok(());
    };
    let a = ManifestArgs {
        data: Some(data.clone()),
        ..a
    };
    let ds = PackedDataset::open(&data)
        .with_context(|| format!("opening packed dataset {}", data.display()))?;
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
        bail!("{}: no sequences selected", data.display());
    }
    let mut text = String::from("file,label\n");
    for &(e, s, act) in &sequences {
        if act < 1 {
            bail!(
                "{}: action {act} has no class number (actions start at 1)",
                data.display()
            );
        }
        text.push_str(&format!(
            "{}#E{e:02}/S{s:02}/A{act:02},{}\n",
            data.display(),
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

/// `path` as reached from the folder `base`: relative when both resolve (so a manifest can move
/// with the data beside it), else `path` made absolute.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let (Ok(p), Ok(b)) = (path.canonicalize(), base.canonicalize()) else {
        return std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    };
    let (pc, bc): (Vec<_>, Vec<_>) = (p.components().collect(), b.components().collect());
    let common = pc.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &pc[common..] {
        out.push(c);
    }
    out
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
