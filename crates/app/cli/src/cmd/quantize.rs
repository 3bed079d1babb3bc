//! `csipose quantize`: turns a trained run into a `.csm` model file — fp32, int8 or int4
//! weights, per tensor or per output channel, post-training or after a QAT fine-tune (with a
//! progress bar) — written atomically; prints the file size by part and, when the dataset is at
//! hand, torso-PCK@20 of fp32 vs the quantized model on the run's validation split.

use super::split::{describe, make_split, KindArg};
use anyhow::{bail, Context, Result};
use csipose_dataset::PackedDataset;
use csipose_quantize::{breakdown, from_model_file, quantize, write_file, Bits, ScaleRule, Spec};
use csipose_runtime::ModelFile;
use csipose_train::trainer::{check_dataset, gather_y, EpochRecord, Progress};
use csipose_train::{checkpoint, fit, predict, torso_pck, TrainOptions, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleArg {
    /// scale = max|w| / qmax (nothing clipped).
    MaxAbs,
    /// Clipping ratio searched per group for the least squared error.
    Mse,
}

#[derive(clap::Args)]
pub struct Args {
    /// Trained run (its directory or checkpoint.safetensors); its EMA weights are quantized.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Weight precision: 8, 4, or 32 for an unquantized (fp32) model file.
    #[arg(long, value_parser = ["32", "8", "4"])]
    pub bits: String,
    /// One scale per output channel instead of one per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// How scales are chosen.
    #[arg(long, value_enum, default_value = "max-abs")]
    pub scale: ScaleArg,
    /// Linear weights to keep f32 besides biases, norms and embeddings (comma-separated
    /// names, or `none`) [default: graph.output.weight where the model has it].
    #[arg(long, value_delimiter = ',')]
    pub keep_f32: Vec<String>,
    /// Quantization-aware training: fine-tune from the checkpoint with fake-quantised weights
    /// before quantizing (needs the dataset).
    #[arg(long)]
    pub qat: bool,
    /// QAT epochs.
    #[arg(long, default_value_t = 5, requires = "qat")]
    pub epochs: usize,
    /// QAT peak learning rate (cosine down to a hundredth of it).
    #[arg(long, default_value_t = 3e-4, requires = "qat")]
    pub lr: f32,
    /// Directory for the QAT run's checkpoint [default: the output path with `.qat`].
    #[arg(long, requires = "qat")]
    pub qat_run: Option<PathBuf>,
    /// Packed dataset for QAT and evaluation [default: the run's dataset, when found].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Threads for QAT and prediction.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Model file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the numbers as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The parts of a run's `config.json` this command needs (all optional).
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

pub fn run(args: Args) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.max(1))
        .build()?;
    pool.install(|| run_in_pool(args))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.2}", 100.0 * v))
}

fn run_in_pool(args: Args) -> Result<()> {
    let bits = Bits::from_count(args.bits.parse().expect("clap checked")).expect("clap checked");
    if args.qat && bits == Bits::F32 {
        bail!("--qat needs --bits 8 or 4");
    }
    let spec = Spec {
        bits,
        per_channel: args.per_channel,
        scale: match args.scale {
            ScaleArg::MaxAbs => ScaleRule::MaxAbs,
            ScaleArg::Mse => ScaleRule::Mse,
        },
        keep_f32: Vec::new(),
    };
    let ck = super::predict::checkpoint_path(&args.checkpoint);
    let run_dir = ck.parent().unwrap_or(Path::new(".")).to_path_buf();
    let full = checkpoint::load(&ck)?;
    let cfg = full.model.cfg.clone();
    let spec = Spec {
        keep_f32: match args.keep_f32.as_slice() {
            _ if bits == Bits::F32 => Vec::new(),
            [] => csipose_quantize::default_keep_f32(&cfg),
            [n] if n == "none" => Vec::new(),
            names => names.to_vec(),
        },
        ..spec
    };
    spec.check(&cfg)?;
    csipose_quantize::runtime_config(&cfg)?;
    let info = run_info(&run_dir)?;

    // The dataset and the run's split, if we can find them.
    let data = match (&args.data, &info.data) {
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
    if args.qat && data.is_none() {
        bail!("--qat needs the training data: pass --data DIR");
    }
    let split = match &data {
        None => None,
        Some(d) => {
            let ds = PackedDataset::open(d)
                .with_context(|| format!("cannot open dataset {}", d.display()))?;
            check_dataset(&ds, &cfg)?;
            let kind_name = info.split.clone().unwrap_or_else(|| "random".into());
            let kind = <KindArg as clap::ValueEnum>::from_str(&kind_name, true)
                .map_err(|e| anyhow::anyhow!("config.json: split {kind_name:?}: {e}"))?;
            let s = make_split(
                kind,
                info.protocol.unwrap_or(3),
                info.split_seed.unwrap_or(0),
                info.ratio.unwrap_or(0.8),
                info.split_config.as_deref(),
            )?;
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
    let mut qat_note = serde_json::Value::Null;
    let weights = if args.qat {
        let (ds, train, val) = split.as_ref().expect("checked above");
        if train.is_empty() {
            bail!("the training subset is empty");
        }
        let opts = TrainOptions {
            epochs: args.epochs,
            lr: args.lr,
            min_lr: args.lr / 100.0,
            qat: Some(spec.clone()),
            ..full.opts.clone()
        };
        let mut t = Trainer::fine_tune(opts, &cfg, &full.ema, train.len())?;
        let qrun = args
            .qat_run
            .clone()
            .unwrap_or_else(|| args.out.with_extension("qat"));
        let per_epoch = t.state.steps_per_epoch as usize * t.opts.batch.min(train.len());
        let bar = ProgressBar::new((per_epoch * args.epochs) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} samples | {msg} | ETA {eta}")
                .expect("template"),
        );
        eprintln!(
            "QAT: {} epochs from the EMA weights, lr {:.1e} cosine, {}; checkpoints in {}",
            args.epochs,
            args.lr,
            spec.label(),
            qrun.display()
        );
        let start = Instant::now();
        let mut progress = Bar {
            bar: bar.clone(),
            epoch: 0,
            epochs: args.epochs,
            per_epoch,
            start,
        };
        fit(&mut t, ds, train, val, &qrun, &mut progress, None)?;
        bar.finish_and_clear();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "QAT took {secs:.0} s ({} threads, validation included)",
            args.threads
        );
        qat_note = json!({"epochs": args.epochs, "lr": args.lr, "seconds": secs,
            "threads": args.threads, "run": qrun.display().to_string()});
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
    write_file(&args.out, &bytes)?;

    println!(
        "{}: {} {} ({} parameters), {}",
        args.out.display(),
        cfg.name,
        spec.label(),
        cfg.param_count(),
        if args.qat {
            format!("after {} QAT epochs", args.epochs)
        } else {
            "post-training".into()
        }
    );
    let line = |what: &str, n: usize| {
        println!(
            "  {what:<44} {n:>9} bytes  {:>5.1}%",
            100.0 * n as f64 / b.total as f64
        )
    };
    line("file", b.total);
    line(
        &format!("quantized weights ({} values)", b.quantized_values),
        b.quantized_weights,
    );
    line("scales (f32)", b.scales);
    line(
        &format!("f32 tensors ({} values)", b.f32_values),
        b.f32_tensors,
    );
    line("header + tensor table + CRC", b.header_table_crc);
    line("alignment padding", b.padding);

    let mut pcks = serde_json::Map::new();
    if let Some((ds, _, val)) = &split {
        if val.is_empty() {
            eprintln!("note: the validation subset is empty; no torso-PCK");
        } else {
            let vy = gather_y(ds, val);
            let score = |w: &[f32]| torso_pck(&predict(&full.model, w, ds, val, &[]), &vy, 0.2);
            let fp32 = score(&original);
            println!("torso-PCK@20 on {} validation frames:", val.len());
            println!("  {:<58} {}", "fp32 (checkpoint EMA)", pct(fp32));
            pcks.insert("fp32".into(), json!(fp32));
            if args.qat {
                let ptq = quantize(&cfg, &original, &spec)?.dequantize();
                let p = score(&ptq);
                println!(
                    "  {:<58} {}",
                    format!("{} PTQ (no QAT)", spec.label()),
                    pct(p)
                );
                pcks.insert("ptq".into(), json!(p));
                let m = score(&weights);
                println!("  {:<58} {}", "QAT fp32 master EMA", pct(m));
                pcks.insert("qat_fp32_master".into(), json!(m));
            }
            let qv = score(&deq);
            let label = format!("{}{}", spec.label(), if args.qat { " QAT" } else { "" });
            println!(
                "  {label:<58} {}  ({:+.2} points)",
                pct(qv),
                100.0 * (qv.unwrap_or(f64::NAN) - fp32.unwrap_or(f64::NAN))
            );
            pcks.insert("quantized".into(), json!(qv));
        }
    }
    if let Some(out) = &args.json {
        let report = json!({
            "checkpoint": ck.display().to_string(),
            "model": cfg.name,
            "parameters": cfg.param_count(),
            "out": args.out.display().to_string(),
            "spec": spec,
            "label": spec.label(),
            "qat": qat_note,
            "bytes": b,
            "torso_pck20": pcks,
        });
        super::write_json(out, &report)?;
    }
    Ok(())
}
