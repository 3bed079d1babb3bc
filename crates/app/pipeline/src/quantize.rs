//! Turning a trained run into a `.csm` model file ([`run`] with [`QuantizeOptions`]): fp32,
//! int8 or int4 weights, per tensor or per output channel, post-training or after a
//! quantization-aware fine-tune (QAT, with a bar the caller hands in), checked by parsing the
//! encoded file back and written atomically. When the run's dataset is at hand (or given), it
//! also scores torso-PCK@20 of the fp32 weights against the quantized model on the run's
//! validation split. Returns the file's size by part and the scores ([`QuantizeOutcome`], which
//! also gives the JSON report).

use crate::split::{describe, SplitChoice, SplitOptions};
use anyhow::{bail, Context, Result};
use csipose_dataset::PackedDataset;
use csipose_files::OutputKind;
use csipose_quantize::{
    breakdown, from_model_file, quantize, write_file, Bits, Breakdown, ScaleRule, Spec,
};
use csipose_runtime::ModelFile;
use csipose_train::trainer::{check_dataset, gather_y, EpochRecord, Progress};
use csipose_train::{checkpoint, fit, predict, torso_pck, TrainOptions, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Linear weights kept f32 besides biases, norms and embeddings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepF32 {
    /// The model's default (`graph.output.weight` where it has one).
    Default,
    /// None: every Linear weight is quantized.
    None,
    /// These weights by name.
    Names(Vec<String>),
}

/// Quantization-aware fine-tuning before quantizing.
#[derive(Clone, Debug, PartialEq)]
pub struct Qat {
    pub epochs: usize,
    /// Peak learning rate (cosine down to a hundredth of it).
    pub lr: f32,
    /// Directory for the QAT run's checkpoint.
    pub run: PathBuf,
}

/// One quantization.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// Trained run (its directory or checkpoint.safetensors); its EMA weights are quantized.
    pub checkpoint: PathBuf,
    /// Weight precision (`Bits::F32`: an unquantized model file).
    pub bits: Bits,
    /// One scale per output channel instead of one per tensor.
    pub per_channel: bool,
    pub scale: ScaleRule,
    pub keep_f32: KeepF32,
    /// QAT (needs `bits` 8 or 4 and the dataset).
    pub qat: Option<Qat>,
    /// Packed dataset for QAT and evaluation (`None`: the run's dataset, when found).
    pub data: Option<PathBuf>,
    /// Threads for QAT and prediction.
    pub threads: usize,
    /// Model file to write.
    pub out: PathBuf,
}

/// torso-PCK@20 on the run's validation frames.
#[derive(Clone, Debug)]
pub struct Scores {
    pub val_frames: usize,
    /// The checkpoint's EMA weights in f32.
    pub fp32: Option<f64>,
    /// With QAT: the checkpoint quantized without it, and QAT's f32 master weights.
    pub ptq: Option<Option<f64>>,
    pub qat_fp32_master: Option<Option<f64>>,
    /// The weights the file holds.
    pub quantized: Option<f64>,
}

/// What a QAT fine-tune took.
#[derive(Clone, Debug)]
pub struct QatReport {
    pub epochs: usize,
    pub lr: f32,
    pub seconds: f64,
    pub threads: usize,
    pub run: PathBuf,
}

/// What a quantization wrote and measured.
#[derive(Clone, Debug)]
pub struct QuantizeOutcome {
    /// The checkpoint file read.
    pub checkpoint: PathBuf,
    /// The model file written.
    pub out: PathBuf,
    /// Model preset name and parameter count.
    pub model: String,
    pub parameters: usize,
    pub spec: Spec,
    pub qat: Option<QatReport>,
    /// The file's bytes by part.
    pub bytes: Breakdown,
    /// `None` when neither the run's dataset nor `data` was found, or the validation subset is
    /// empty.
    pub scores: Option<Scores>,
}

impl QuantizeOutcome {
    /// The JSON report `csipose quantize --json` writes.
    pub fn report_json(&self) -> serde_json::Value {
        let mut pcks = serde_json::Map::new();
        if let Some(s) = &self.scores {
            pcks.insert("fp32".into(), json!(s.fp32));
            if let Some(p) = s.ptq {
                pcks.insert("ptq".into(), json!(p));
            }
            if let Some(m) = s.qat_fp32_master {
                pcks.insert("qat_fp32_master".into(), json!(m));
            }
            pcks.insert("quantized".into(), json!(s.quantized));
        }
        let qat = match &self.qat {
            Some(q) => json!({"epochs": q.epochs, "lr": q.lr, "seconds": q.seconds,
                "threads": q.threads, "run": q.run.display().to_string()}),
            None => serde_json::Value::Null,
        };
        json!({
            "checkpoint": self.checkpoint.display().to_string(),
            "model": self.model,
            "parameters": self.parameters,
            "out": self.out.display().to_string(),
            "spec": self.spec,
            "label": self.spec.label(),
            "qat": qat,
            "bytes": self.bytes,
            "torso_pck20": pcks,
        })
    }
}

/// What the marker file of a QAT run folder says (see [`csipose_files::mark`]).
pub const QAT_RUN: &str = "quantize --qat";

/// Refuses a QAT run folder that is neither new, empty, a QAT run folder (marked
/// [`QAT_RUN`]) nor one written before the marker (only `checkpoint.safetensors` in it): a
/// folder of the user's or another command's output is never written into.
fn check_qat_replaceable(dir: &Path) -> Result<()> {
    let marked = csipose_files::check_replaceable(dir, OutputKind::Marked(QAT_RUN));
    let Err(e) = marked else {
        return Ok(());
    };
    let only_checkpoint = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .all(|e| e.file_name() == "checkpoint.safetensors")
        })
        .unwrap_or(false);
    if only_checkpoint && dir.is_dir() {
        return Ok(());
    }
    Err(anyhow::anyhow!("--qat-run {e}"))
}

/// Quantizes (after QAT when asked) and writes the model file.
pub fn run(opts: &QuantizeOptions, bar: &ProgressBar) -> Result<QuantizeOutcome> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()?;
    pool.install(|| run_in_pool(opts, bar))
}

fn run_in_pool(opts: &QuantizeOptions, bar: &ProgressBar) -> Result<QuantizeOutcome> {
    let bits = opts.bits;
    if opts.qat.is_some() && bits == Bits::F32 {
        bail!("--qat needs --bits 8 or 4");
    }
    let ck = crate::train::checkpoint_path(&opts.checkpoint);
    let run_dir = ck.parent().unwrap_or(Path::new(".")).to_path_buf();
    // The model file must not be the QAT run's own checkpoint; the QAT run folder must not be
    // (or hold, or lie in) an input, and is locked while the fine-tune writes it.
    let _qat_lock = match &opts.qat {
        Some(q) => {
            csipose_files::check_output_file(&opts.out, &[&q.run.join("checkpoint.safetensors")])?;
            let mut inputs = vec![opts.checkpoint.as_path(), ck.as_path(), run_dir.as_path()];
            inputs.extend(opts.data.as_deref());
            csipose_files::check_output_dir(&q.run, &inputs)?;
            let lock = csipose_files::PathLock::acquire(&q.run)?;
            check_qat_replaceable(&q.run)?;
            Some(lock)
        }
        None => None,
    };
    let full = checkpoint::load(&ck)?;
    let cfg = full.model.cfg.clone();
    let spec = Spec {
        bits,
        per_channel: opts.per_channel,
        scale: opts.scale,
        keep_f32: match &opts.keep_f32 {
            _ if bits == Bits::F32 => Vec::new(),
            KeepF32::Default => csipose_quantize::default_keep_f32(&cfg),
            KeepF32::None => Vec::new(),
            KeepF32::Names(names) => names.clone(),
        },
    };
    spec.check(&cfg)?;
    csipose_quantize::runtime_config(&cfg)?;
    let info = run_info(&run_dir)?;

    // The dataset and the run's split, if we can find them.
    let data = match (&opts.data, &info.data) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(r)) => {
            let found = resolve_data(r, &run_dir);
            if found.is_none() {
                eprintln!(
                    "note: the run's dataset {} was not found; pass --data to evaluate",
                    r.display()
                );
            }
            found
        }
        (None, None) => None,
    };
    if opts.qat.is_some() && data.is_none() {
        bail!("--qat needs the training data: pass --data DIR");
    }
    let split = match &data {
        None => None,
        Some(d) => {
            let ds = PackedDataset::open(d)
                .with_context(|| format!("cannot open dataset {}", d.display()))?;
            check_dataset(&ds, &cfg)?;
            let kind_name = info.split.clone().unwrap_or_else(|| "random".into());
            let kind = SplitChoice::from_name(&kind_name)
                .with_context(|| format!("config.json: split {kind_name:?}"))?;
            let s = SplitOptions {
                kind,
                protocol: info.protocol.unwrap_or(3),
                seed: info.split_seed.unwrap_or(0),
                ratio: info.ratio.unwrap_or(0.8),
                config: info.split_config.clone(),
            }
            .build()?;
            let sel = s.select(&ds);
            eprintln!(
                "{}: {} ({} parameters); {}: {} train / {} val frames of {}",
                ck.display(),
                cfg.name,
                cfg.param_count(),
                describe(&s),
                sel.train.len(),
                sel.val.len(),
                d.display()
            );
            Some((ds, sel.train, sel.val))
        }
    };

    // QAT fine-tune, or the checkpoint's EMA weights as they are.
    let original = full.ema.clone();
    let mut qat_report = None;
    let weights = if let Some(q) = &opts.qat {
        let (ds, train, val) = split.as_ref().expect("checked above");
        if train.is_empty() {
            bail!("the training subset is empty");
        }
        let topts = TrainOptions {
            epochs: q.epochs,
            lr: q.lr,
            min_lr: q.lr / 100.0,
            qat: Some(spec.clone()),
            ..full.opts.clone()
        };
        let mut t = Trainer::fine_tune(topts, &cfg, &full.ema, train.len())?;
        let per_epoch = t.state.steps_per_epoch as usize * t.opts.batch.min(train.len());
        bar.set_length((per_epoch * q.epochs) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} samples | {msg} | ETA {eta}")
                .expect("template"),
        );
        eprintln!(
            "QAT: {} epochs from the EMA weights, lr {:.1e} cosine, {}; checkpoints in {}",
            q.epochs,
            q.lr,
            spec.label(),
            q.run.display()
        );
        let start = Instant::now();
        let mut progress = Bar {
            bar: bar.clone(),
            epoch: 0,
            epochs: q.epochs,
            per_epoch,
            start,
        };
        std::fs::create_dir_all(&q.run).with_context(|| format!("creating {}", q.run.display()))?;
        csipose_files::mark(&q.run, QAT_RUN)?;
        fit(&mut t, ds, train, val, &q.run, &mut progress, None)?;
        bar.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "QAT took {secs:.0} s ({} threads, validation included)",
            opts.threads
        );
        qat_report = Some(QatReport {
            epochs: q.epochs,
            lr: q.lr,
            seconds: secs,
            threads: opts.threads,
            run: q.run.clone(),
        });
        t.ema
    } else {
        original.clone()
    };

    let q = quantize(&cfg, &weights, &spec)?;
    let deq = q.dequantize();
    let bytes = q.to_csm()?;
    // Read what we are about to write back and check it holds exactly these weights.
    let buf = csipose_files::AlignedBytes::copy_from(&bytes);
    let file = ModelFile::parse(buf.bytes())
        .map_err(|e| anyhow::anyhow!("the encoded model does not parse: {e}"))?;
    let (_, back) = from_model_file(&file)?;
    if back != deq {
        bail!("internal error: the encoded model does not hold the quantized weights");
    }
    let b = breakdown(&file);
    write_file(&opts.out, &bytes)?;

    let mut scores = None;
    if let Some((ds, _, val)) = &split {
        if val.is_empty() {
            eprintln!("note: the validation subset is empty; no torso-PCK");
        } else {
            let vy = gather_y(ds, val);
            let score = |w: &[f32]| torso_pck(&predict(&full.model, w, ds, val, &[]), &vy, 0.2);
            let fp32 = score(&original);
            let (ptq, master) = if opts.qat.is_some() {
                let ptq = quantize(&cfg, &original, &spec)?.dequantize();
                (Some(score(&ptq)), Some(score(&weights)))
            } else {
                (None, None)
            };
            scores = Some(Scores {
                val_frames: val.len(),
                fp32,
                ptq,
                qat_fp32_master: master,
                quantized: score(&deq),
            });
        }
    }
    Ok(QuantizeOutcome {
        checkpoint: ck,
        out: opts.out.clone(),
        model: cfg.name.clone(),
        parameters: cfg.param_count(),
        spec,
        qat: qat_report,
        bytes: b,
        scores,
    })
}

/// The parts of a run's `config.json` quantizing needs (all optional).
#[derive(serde::Deserialize, Default)]
struct RunInfo {
    data: Option<PathBuf>,
    split: Option<String>,
    protocol: Option<u8>,
    split_seed: Option<u32>,
    ratio: Option<f64>,
    split_config: Option<PathBuf>,
}

fn run_info(run_dir: &Path) -> Result<RunInfo> {
    let p = run_dir.join("config.json");
    match std::fs::read(&p) {
        Ok(b) => {
            serde_json::from_slice(&b).with_context(|| format!("{}: not a run config", p.display()))
        }
        Err(_) => Ok(RunInfo::default()),
    }
}

/// The run's dataset path: as recorded, or relative to one of the run directory's ancestors
/// (runs record the path relative to where `csipose train` was started).
fn resolve_data(recorded: &Path, run_dir: &Path) -> Option<PathBuf> {
    if recorded.join("dataset.json").exists() {
        return Some(recorded.to_path_buf());
    }
    if recorded.is_absolute() {
        return None;
    }
    let abs = std::fs::canonicalize(run_dir).ok()?;
    abs.ancestors()
        .map(|a| a.join(recorded))
        .find(|p| p.join("dataset.json").exists())
}

/// The QAT fine-tune's progress on the caller's bar.
struct Bar {
    bar: ProgressBar,
    epoch: usize,
    epochs: usize,
    per_epoch: usize,
    start: Instant,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, _steps: u64) {
        (self.epoch, self.epochs) = (epoch, epochs);
    }
    fn step(&mut self, samples: usize, loss: f32) {
        let pos = self.epoch * self.per_epoch + samples;
        self.bar.set_position(pos as u64);
        let sps = pos as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "QAT epoch {}/{} | {sps:.0} samples/s | loss {loss:.4}",
            self.epoch + 1,
            self.epochs
        ));
    }
    fn epoch_end(&mut self, rec: &EpochRecord) {
        let line = format!(
            "QAT epoch {:>3}: loss {:.4}  val torso-PCK@20 (quantized EMA) {}  lr {:.2e}",
            rec.epoch,
            rec.train_loss,
            rec.val_torso_pck20
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into()),
            rec.lr
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}
