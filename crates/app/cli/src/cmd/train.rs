//! `csipose train`: train a pose model on a packed dataset with a progress bar; writes
//! `RUN/checkpoint.safetensors` (each epoch, atomically), `RUN/config.json`,
//! `RUN/metrics.json` and PNG plots; `--resume RUN` continues an interrupted run exactly.

use super::split::{describe, make_split, KindArg};
use anyhow::{bail, Context, Result};
use csipose_dataset::PackedDataset;
use csipose_train::trainer::{check_dataset, gather_y, EpochRecord, Progress};
use csipose_train::{checkpoint, fit, plots, predict, TrainOptions, Trainer, View};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Packed dataset directory (a resumed run uses the one it was started with).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Model preset: nano, micro, tiny, small, base, flagship.
    #[arg(long, default_value = "micro")]
    pub model: String,
    /// Passes over the training subset.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// How subjects are divided into train and validation (see `csipose split`).
    #[arg(long, value_enum, default_value = "random")]
    pub split: KindArg,
    /// MM-Fi protocol: 1 = daily actions, 2 = rehabilitation actions, 3 = all 27.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub protocol: u8,
    /// Random split: seed of the first action (MM-Fi's default 0).
    #[arg(long, default_value_t = 0)]
    pub split_seed: u32,
    /// Random split: fraction of subjects that train.
    #[arg(long, default_value_t = 0.8)]
    pub ratio: f64,
    /// Manual split: JSON file (see `csipose split --help`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training seed: initialisation, shuffling, mixup, dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per optimiser step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Train-time view augmentation: each training sample is shown as one of the four TTA
    /// views, drawn at random.
    #[arg(long)]
    pub view_augment: bool,
    /// Train-time CSI augmentation: probability that a training sample is augmented.
    #[arg(long, default_value_t = 0.0)]
    pub aug_prob: f32,
    /// Augmentation: standard deviation (dB) of the random smooth per-antenna frequency
    /// response (a different static channel and receive chain).
    #[arg(long, default_value_t = 0.0)]
    pub aug_response_db: f32,
    /// Augmentation: receiver noise, as a fraction of the frame's standard deviation.
    #[arg(long, default_value_t = 0.0)]
    pub aug_noise: f32,
    /// Threads (results are deterministic for a seed and a thread count).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Run directory to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

/// What `config.json` records about a run.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunConfig {
    data: PathBuf,
    /// `random`, `cross-subject`, `cross-scene` or `manual`.
    split: String,
    protocol: u8,
    split_seed: u32,
    ratio: f64,
    split_config: Option<PathBuf>,
    threads: usize,
    options: TrainOptions,
    model: csipose_model::ModelConfig,
    parameters: usize,
}

impl RunConfig {
    /// Train and validation frame indices of the run's split.
    fn select(&self, ds: &PackedDataset) -> Result<(Vec<usize>, Vec<usize>, String)> {
        let kind = <KindArg as clap::ValueEnum>::from_str(&self.split, true)
            .map_err(|e| anyhow::anyhow!("config.json: split {:?}: {e}", self.split))?;
        let split = make_split(
            kind,
            self.protocol,
            self.split_seed,
            self.ratio,
            self.split_config.as_deref(),
        )?;
        let sel = split.select(ds);
        Ok((sel.train, sel.val, describe(&split)))
    }
}

struct Bar {
    bar: ProgressBar,
    epoch: usize,
    epochs: usize,
    per_epoch: usize,
    start: Instant,
    start_pos: usize,
    last_val: Option<f64>,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, _steps: u64) {
        self.epoch = epoch;
        self.epochs = epochs;
    }
    fn step(&mut self, samples: usize, loss: f32) {
        let pos = self.epoch * self.per_epoch + samples;
        self.bar.set_position(pos as u64);
        let sps = (pos - self.start_pos) as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let val = self
            .last_val
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "-".into());
        self.bar.set_message(format!(
            "epoch {}/{} | {:.0} samples/s | loss {:.4} | val torso-PCK@20 {}",
            self.epoch + 1,
            self.epochs,
            sps,
            loss,
            val
        ));
    }
    fn epoch_end(&mut self, rec: &EpochRecord) {
        self.last_val = rec.val_torso_pck20;
        let line = format!(
            "epoch {:>3}: loss {:.4}  val torso-PCK@20 {}  lr {:.2e}  {:.0} samples/s",
            rec.epoch,
            rec.train_loss,
            rec.val_torso_pck20
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into()),
            rec.lr,
            rec.samples_per_s
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    let mut f = csipose_npy::AtomicFile::create(path)?;
    f.write_all(serde_json::to_string_pretty(v)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.commit()?;
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.max(1))
        .build()?;
    pool.install(|| run_in_pool(args))
}

fn run_in_pool(args: Args) -> Result<()> {
    let (out, mut trainer, rc) = if let Some(run) = &args.resume {
        let rc: RunConfig = serde_json::from_slice(
            &std::fs::read(run.join("config.json"))
                .with_context(|| format!("reading {}", run.join("config.json").display()))?,
        )
        .with_context(|| format!("{}: not a run config", run.join("config.json").display()))?;
        let t = checkpoint::load(&run.join("checkpoint.safetensors"))?;
        if rc.threads != args.threads {
            eprintln!(
                "note: the run used {} threads, this resume uses {}; results may differ in the last bits",
                rc.threads, args.threads
            );
        }
        (run.clone(), t, rc)
    } else {
        let out = args.out.clone().expect("clap requires --out");
        let data = args.data.clone().expect("clap requires --data");
        let ds = PackedDataset::open(&data)?;
        let h = &ds.info.hardware;
        let rc = RunConfig {
            data: data.clone(),
            split: clap::ValueEnum::to_possible_value(&args.split)
                .expect("named")
                .get_name()
                .to_string(),
            protocol: args.protocol,
            split_seed: args.split_seed,
            ratio: args.ratio,
            split_config: args.config.clone(),
            threads: args.threads,
            options: TrainOptions::default(),
            model: csipose_model::ModelConfig::preset("nano").expect("preset"),
            parameters: 0,
        };
        let (train, _, _) = rc.select(&ds)?;
        let opts = TrainOptions {
            model: args.model.clone(),
            epochs: args.epochs,
            batch: args.batch,
            lr: args.lr,
            seed: args.seed,
            view_augment: args.view_augment,
            augment: csipose_train::augment::CsiAugment {
                prob: args.aug_prob,
                response_db: args.aug_response_db,
                noise: args.aug_noise,
            },
            ..TrainOptions::default()
        };
        let t = Trainer::new(opts, [h.antennas, h.subcarriers, h.packets], train.len())?;
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let rc = RunConfig {
            options: t.opts.clone(),
            model: t.model.cfg.clone(),
            parameters: t.model.param_count(),
            ..rc
        };
        write_json(&out.join("config.json"), &rc)?;
        (out, t, rc)
    };
    let ds = PackedDataset::open(&rc.data)?;
    check_dataset(&ds, &trainer.model.cfg)?;
    let (train, val, split_text) = rc.select(&ds)?;
    if train.is_empty() {
        bail!("{}: the training subset is empty", rc.data.display());
    }
    let spe = trainer.state.steps_per_epoch as usize;
    let per_epoch = spe * trainer.opts.batch.min(train.len());
    let total = per_epoch * trainer.opts.epochs;
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} samples | {msg} | ETA {eta}")
            .expect("template"),
    );
    let done = per_epoch * trainer.state.epoch;
    bar.set_position(done as u64);
    bar.reset_eta();
    eprintln!(
        "{}: {} ({} parameters), {split_text}: {} train / {} val frames, {} threads",
        out.display(),
        trainer.model.cfg.name,
        trainer.model.param_count(),
        train.len(),
        val.len(),
        rc.threads
    );
    let mut progress = Bar {
        bar: bar.clone(),
        epoch: trainer.state.epoch,
        epochs: trainer.opts.epochs,
        per_epoch,
        start: Instant::now(),
        start_pos: done,
        last_val: trainer.state.history.last().and_then(|r| r.val_torso_pck20),
    };
    let summary = fit(&mut trainer, &ds, &train, &val, &out, &mut progress, None)?;
    bar.finish_and_clear();

    // TTA: each candidate view alone and the four TTA views averaged, on the validation subset.
    let vy = gather_y(&ds, &val);
    let mut tta = serde_json::Map::new();
    if !val.is_empty() {
        for v in View::CANDIDATES {
            let p = predict(&trainer.model, &trainer.ema, &ds, &val, &[v]);
            tta.insert(
                v.name().into(),
                serde_json::json!(csipose_train::torso_pck(&p, &vy, 0.2)),
            );
        }
        let p = predict(&trainer.model, &trainer.ema, &ds, &val, &View::ALL);
        tta.insert(
            "all-views".into(),
            serde_json::json!(csipose_train::torso_pck(&p, &vy, 0.2)),
        );
        let plain = predict(&trainer.model, &trainer.ema, &ds, &val, &[]);
        let pick: Vec<usize> = (0..8).map(|i| i * val.len() / 8).collect();
        let (mut pp, mut pt) = (Vec::new(), Vec::new());
        for &i in &pick {
            pp.extend_from_slice(&plain[i * 34..(i + 1) * 34]);
            pt.extend_from_slice(&vy[i * 34..(i + 1) * 34]);
        }
        plots::skeletons(&out.join("skeletons.png"), &pp, &pt)?;
    }
    let hist = &trainer.state.history;
    plots::training_curves(
        &out.join("curves.png"),
        &hist.iter().map(|r| r.train_loss as f64).collect::<Vec<_>>(),
        &hist
            .iter()
            .map(|r| r.val_torso_pck20.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    )?;
    let curve: Vec<(f64, f64)> = summary
        .val_pck_curve
        .iter()
        .filter_map(|&(k, v)| v.map(|v| (k, v)))
        .collect();
    plots::pck_curve(&out.join("pck.png"), &curve)?;
    let metrics = serde_json::json!({
        "model": trainer.model.cfg.name,
        "parameters": trainer.model.param_count(),
        "split": rc.split,
        "protocol": rc.protocol,
        "split_seed": rc.split_seed,
        "seed": rc.options.seed,
        "epochs": summary.epochs,
        "train_samples": summary.train_samples,
        "val_samples": summary.val_samples,
        "val_torso_pck20": summary.val_torso_pck20,
        "val_torso_pck_curve": summary.val_pck_curve,
        "val_torso_pck20_tta": tta,
        "history": hist,
    });
    write_json(&out.join("metrics.json"), &metrics)?;
    println!(
        "{}: val torso-PCK@20 {} after {} epochs ({} train / {} val frames)",
        out.display(),
        summary
            .val_torso_pck20
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into()),
        summary.epochs,
        summary.train_samples,
        summary.val_samples
    );
    Ok(())
}
