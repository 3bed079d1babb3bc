//! `csipose activity`: activity recognition with the temporal head. `train` fits the classifier
//! on a manifest and writes a `.rvne` blob, `eval` scores a model (accuracy, per-class accuracy,
//! confusion-matrix PNG), `cv` runs stratified k-fold cross-validation, and `stream` classifies a
//! capture frame by frame with the KV cache.
//!
//! A manifest is a CSV `file,label` (header optional; relative paths are relative to the
//! manifest). A file is a CSI capture (any format the capture readers in `csipose-capture` read,
//! detected from its content) or a `.npy` array of amplitudes `[packets, antennas x subcarriers]`.
//! Labels are class numbers (0, 1, 2, ...).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use csipose_attention::Backend;
use csipose_temporal::features::{frame_features, BLOCKS, DEFAULT_STRIDE};
use csipose_temporal::model::{argmax, ActivityModel, ModelShape};
use csipose_temporal::train::{
    accuracies, confusion_matrix, predict_all, stratified_folds, train, Example, TrainOptions,
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
    #[arg(long)]
    model: PathBuf,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    /// Confusion-matrix PNG (default: the model path with `.confusion.png`).
    #[arg(long)]
    confusion_png: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CvArgs {
    #[arg(long)]
    manifest: PathBuf,
    #[arg(long, default_value_t = 5)]
    folds: usize,
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ActivityCommand::Train(a) => train_cmd(a),
        ActivityCommand::Eval(a) => eval_cmd(a),
        ActivityCommand::Cv(a) => cv_cmd(a),
        ActivityCommand::Stream(a) => stream_cmd(a),
    }
}

/// `(file, label)` rows of a manifest.
fn read_manifest(path: &Path) -> anyhow::Result<Vec<(PathBuf, usize)>> {
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
        rows.push((base.join(file.trim()), label));
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// Amplitudes `[packets, channels]` of a capture or `.npy` file.
fn read_amplitudes(path: &Path) -> anyhow::Result<(Vec<f32>, usize)> {
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
        return Ok((a.data, a.shape[1]));
    }
    read_capture_amplitudes(path)
}

/// Amplitudes of a capture file (format detected) via the capture readers: the first transmit
/// stream's receive antennas x subcarriers per packet. Packets whose antenna/subcarrier count
/// differs from the first packet's are skipped; a truncated last record ends the capture.
fn read_capture_amplitudes(path: &Path) -> anyhow::Result<(Vec<f32>, usize)> {
    let reader =
        csipose_capture::any::open(path, None, Default::default()).map_err(anyhow::Error::msg)?;
    let mut data = Vec::new();
    let mut channels = 0usize;
    let mut skipped = 0usize;
    for frame in reader {
        let frame = match frame {
            Ok(f) => f,
            Err(e) if e.is_truncation() && channels > 0 => {
                eprintln!(
                    "{}: {e}; using the {} complete packets",
                    path.display(),
                    data.len() / channels
                );
                break;
            }
            Err(e) => bail!("{}: {e}", path.display()),
        };
        let (antennas, subcarriers, amps) = frame.rx_amplitudes();
        let c = antennas * subcarriers;
        if channels == 0 {
            channels = c;
        }
        if c != channels || c == 0 {
            skipped += 1;
            continue;
        }
        data.extend(amps.iter().map(|&a| a as f32));
    }
    if channels == 0 || data.is_empty() {
        bail!("{}: no CSI packets", path.display());
    }
    if skipped > 0 {
        eprintln!(
            "{}: skipped {skipped} packets with a different antenna count",
            path.display()
        );
    }
    Ok((data, channels))
}

/// Loads every manifest row as classifier input, in parallel.
fn load_examples(rows: &[(PathBuf, usize)]) -> anyhow::Result<(Vec<Example>, usize)> {
    use rayon::prelude::*;
    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "loading {wide_bar} {pos}/{len}",
    )?);
    let loaded = rows
        .par_iter()
        .map(|(path, label)| {
            let (amps, channels) = read_amplitudes(path)?;
            bar.inc(1);
            Ok((
                Example {
                    frames: frame_features(&amps, channels, DEFAULT_STRIDE),
                    label: *label,
                },
                channels,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    bar.finish_and_clear();
    let channels = loaded[0].1;
    for ((path, _), (example, c)) in rows.iter().zip(&loaded) {
        if *c != channels {
            bail!(
                "{}: {c} channels per packet, but {} has {channels}",
                path.display(),
                rows[0].0.display()
            );
        }
        if example.frames.is_empty() {
            bail!("{}: no packets", path.display());
        }
    }
    Ok((
        loaded.into_iter().map(|(e, _)| e).collect(),
        BLOCKS * channels,
    ))
}

fn fit(
    examples: &[Example],
    input_dim: usize,
    n_classes: usize,
    h: &Hyper,
) -> anyhow::Result<ActivityModel> {
    let shape = ModelShape {
        input_dim,
        q_heads: h.q_heads,
        kv_heads: h.kv_heads,
        head_dim: h.head_dim,
        n_layers: h.layers,
        n_classes,
    };
    let mut model = ActivityModel::new(shape, h.backend, h.seed)?;
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
    let rows = read_manifest(&a.manifest)?;
    let (examples, input_dim) = load_examples(&rows)?;
    let n_classes = rows.iter().map(|r| r.1).max().unwrap_or(0) + 1;
    let model = fit(&examples, input_dim, n_classes, &a.hyper)?;
    let bytes = model.to_rvne(a.fp16)?;
    let mut file = csipose_npy::AtomicFile::create(&a.out)?;
    file.write_all(&bytes)?;
    file.commit()?;
    let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let (acc, _) = accuracies(&confusion_matrix(
        &labels,
        &predict_all(&model, &examples)?,
        n_classes,
    ));
    eprintln!(
        "wrote {} ({} bytes, {} weights); training accuracy {:.4}",
        a.out.display(),
        bytes.len(),
        model.weights.len(),
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
    let model = load_model(&a.model)?;
    let rows = read_manifest(&a.manifest)?;
    let (examples, input_dim) = load_examples(&rows)?;
    if input_dim != model.shape.input_dim {
        bail!(
            "{}: model expects {} features per frame, {} gives {input_dim}",
            a.model.display(),
            model.shape.input_dim,
            a.manifest.display()
        );
    }
    let n_classes = model.shape.n_classes;
    if let Some((path, label)) = rows.iter().find(|r| r.1 >= n_classes) {
        bail!(
            "{}: label {label} but the model has {n_classes} classes",
            path.display()
        );
    }
    let labels: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let predicted = predict_all(&model, &examples)?;
    let (acc, per_class, confusion) = report(&labels, &predicted, n_classes);
    let png = a
        .confusion_png
        .unwrap_or_else(|| a.model.with_extension("confusion.png"));
    write_confusion_png(&png, &confusion)?;
    if a.json {
        let out = json!({
            "model": a.model, "manifest": a.manifest, "sequences": labels.len(),
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
    let rows = read_manifest(&a.manifest)?;
    let (examples, input_dim) = load_examples(&rows)?;
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
        let model = fit(&train_set, input_dim, n_classes, &a.hyper)?;
        let pred = predict_all(&model, &test_set)?;
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
            "epochs": a.hyper.epochs, "backend": format!("{:?}", a.hyper.backend).to_lowercase(),
            "fold_accuracy": fold_acc, "mean_accuracy": mean,
            "per_class_accuracy": per_class, "confusion": confusion,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "mean {}-fold accuracy {mean:.4} (folds {fold_acc:.4?})",
            a.folds
        );
    }
    Ok(())
}

fn stream_cmd(a: StreamArgs) -> anyhow::Result<()> {
    let model = load_model(&a.model)?;
    let (amps, channels) = read_amplitudes(&a.file)?;
    let x = frame_features(&amps, channels, DEFAULT_STRIDE);
    let dim = model.shape.input_dim;
    if BLOCKS * channels != dim {
        bail!(
            "{}: {channels} channels give {} features, the model expects {dim}",
            a.file.display(),
            BLOCKS * channels
        );
    }
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
                (t + 1) * DEFAULT_STRIDE,
                1.0 / z
            )?;
        }
    }
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
