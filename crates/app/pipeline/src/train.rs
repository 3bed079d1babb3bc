//! Training a pose model into a run folder ([`run`] with [`TrainOptions`]: a new run, or the
//! resume of an interrupted one) on a packed dataset and an MM-Fi split, with an `indicatif`
//! bar the caller hands in. It owns the run folder's layout: `config.json` first, then after
//! every epoch (each atomically) `checkpoint.safetensors`, `metrics.json` and `curves.png`, and
//! at the end the PCK curve, skeletons and TTA scores.
//!
//! The run folder is locked while training (a second trainer is refused with "in use by pid
//! N"); an existing run is replaced only with `overwrite`, a folder that is not a run never; a
//! resume checks the dataset against the fingerprint in `config.json` and keeps the run's own
//! thread count unless told otherwise. Notes (an older run, a changed thread count) and each
//! finished epoch go to stderr.

use crate::split::{describe, SplitChoice, SplitOptions};
use anyhow::{bail, Context, Result};
use csipose_dataset::PackedDataset;
use csipose_files::{check_output_dir, check_replaceable, resolve, OutputKind, PathLock};
use csipose_train::trainer::{
    check_dataset, dataset_fingerprint, gather_y, DatasetFingerprint, EpochRecord, FitSummary,
    Progress,
};
use csipose_train::{checkpoint, fit, plots, predict, Trainer, View};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a training run starts.
#[derive(Clone, Debug)]
// Built once per training call: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Start {
    /// A new run in the folder `out` (new or empty, or a run replaced when `overwrite`).
    New {
        /// Packed dataset directory.
        data: PathBuf,
        /// The split whose train subset is trained on and whose validation subset is scored.
        split: SplitOptions,
        /// Model preset and optimiser settings (checked with their `validate`).
        options: csipose_train::TrainOptions,
        out: PathBuf,
        overwrite: bool,
    },
    /// Continue the run in this folder from its last checkpoint (its dataset, split and
    /// options come from its `config.json`).
    Resume(PathBuf),
}

/// One training call.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub start: Start,
    /// Threads (results are deterministic for a seed and a thread count); `None`: 2 for a new
    /// run, the run's own for a resume, so that the result stays bit-identical.
    pub threads: Option<usize>,
    /// Stop after this many epochs in this call, as a kill after that epoch's checkpoint would
    /// (the run stays resumable).
    pub stop_after: Option<usize>,
}

/// What a training call ended with.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub out: PathBuf,
    /// Epochs done so far (fewer than planned when `stop_after` stopped the call).
    pub epochs_done: usize,
    pub epochs_planned: usize,
    /// Validation torso-PCK@20 (EMA weights), its curve and the subset sizes.
    pub summary: FitSummary,
}

/// The checkpoint file for a run directory or a file path.
pub fn checkpoint_path(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("checkpoint.safetensors")
    } else {
        p.to_path_buf()
    }
}

/// The files `csipose train` writes into a run folder (what `--overwrite` replaces).
const RUN_FILES: [&str; 6] = [
    "checkpoint.safetensors",
    "config.json",
    "metrics.json",
    "curves.png",
    "pck.png",
    "skeletons.png",
];

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
    options: csipose_train::TrainOptions,
    model: csipose_model::ModelConfig,
    parameters: usize,
    /// The dataset the run started on (absent in runs written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dataset: Option<DatasetFingerprint>,
}

fn read_run_config(run: &Path) -> Result<RunConfig> {
    let p = run.join("config.json");
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{}: no config.json, so this is not a training run (start one with --out)",
            run.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a run config", p.display()))
}

/// A run's settings as `csipose train` spells them: each training flag and the value the run
/// recorded in `config.json` (paths resolved, floats as Rust prints them). A resumed run keeps
/// all of these; a caller refuses a flag given with another value.
pub fn recorded_flags(run: &Path) -> Result<Vec<(&'static str, String)>> {
    let rc = read_run_config(run)?;
    let o = &rc.options;
    let path = |p: &Path| resolve(p).display().to_string();
    Ok(vec![
        ("--data", path(&rc.data)),
        ("--model", o.model.clone()),
        ("--epochs", o.epochs.to_string()),
        ("--split", rc.split.clone()),
        ("--protocol", rc.protocol.to_string()),
        ("--split-seed", rc.split_seed.to_string()),
        ("--ratio", rc.ratio.to_string()),
        (
            "--config",
            rc.split_config.as_deref().map(path).unwrap_or_default(),
        ),
        ("--seed", o.seed.to_string()),
        ("--batch", o.batch.to_string()),
        ("--lr", o.lr.to_string()),
        ("--view-augment", o.view_augment.to_string()),
        ("--aug-prob", o.augment.prob.to_string()),
        ("--aug-response-db", o.augment.response_db.to_string()),
        ("--aug-noise", o.augment.noise.to_string()),
    ])
}

impl RunConfig {
    /// Train and validation frame indices of the run's split.
    fn select(&self, ds: &PackedDataset) -> Result<(Vec<usize>, Vec<usize>, String)> {
        let kind = SplitChoice::from_name(&self.split)
            .with_context(|| format!("config.json: split {:?}", self.split))?;
        let split = SplitOptions {
            kind,
            protocol: self.protocol,
            seed: self.split_seed,
            ratio: self.ratio,
            config: self.split_config.clone(),
        }
        .build()?;
        let sel = split.select(ds);
        Ok((sel.train, sel.val, describe(&split)))
    }
}

/// The run's progress on the caller's bar; after each epoch's checkpoint it also writes
/// `metrics.json` and `curves.png`.
struct Bar {
    bar: ProgressBar,
    epoch: usize,
    epochs: usize,
    per_epoch: usize,
    start: Instant,
    start_pos: usize,
    last_val: Option<f64>,
    /// The run folder, for the per-epoch `metrics.json` and `curves.png`.
    out: PathBuf,
    /// What `metrics.json` says besides the history (model, split, sizes).
    base: serde_json::Value,
}

/// `metrics.json` as it stands after the epochs in `hist`: `finished` tells a run still
/// training (or stopped) from one that has ended; the PCK curve and TTA scores come at the end.
fn progress_metrics(
    base: &serde_json::Value,
    hist: &[EpochRecord],
    finished: bool,
) -> serde_json::Value {
    let mut m = base.clone();
    m["finished"] = finished.into();
    m["epochs"] = hist.len().into();
    m["val_torso_pck20"] = serde_json::json!(hist.last().and_then(|r| r.val_torso_pck20));
    m["history"] = serde_json::json!(hist);
    m
}

/// `curves.png`: training loss and validation torso-PCK@20 per epoch (written atomically).
fn write_curves(out: &Path, hist: &[EpochRecord]) -> Result<()> {
    plots::training_curves(
        &out.join("curves.png"),
        &hist.iter().map(|r| r.train_loss as f64).collect::<Vec<_>>(),
        &hist
            .iter()
            .map(|r| r.val_torso_pck20.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
    )
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
    fn epoch_saved(&mut self, t: &Trainer) -> Result<()> {
        let hist = &t.state.history;
        write_json(
            &self.out.join("metrics.json"),
            &progress_metrics(&self.base, hist, false),
        )?;
        write_curves(&self.out, hist)
    }
}

/// Writes a run file (`config.json`, `metrics.json`) as pretty JSON atomically; unlike
/// [`crate::write_json`]'s reports, with no final newline, as runs have always been written.
fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    let mut f = csipose_npy::AtomicFile::create(path)?;
    f.write_all(serde_json::to_string_pretty(v)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.commit()?;
    Ok(())
}

/// Trains (or resumes) a run; `bar` shows the samples done (hidden bars print one line per
/// epoch to stderr instead).
pub fn run(opts: &TrainOptions, bar: &ProgressBar) -> Result<TrainOutcome> {
    let threads = match (opts.threads, &opts.start) {
        (Some(0), _) => bail!("threads must be at least 1"),
        (Some(t), _) => t,
        // A resumed run keeps its own thread count: the sharding of each batch, and so the
        // last bits of every sum, depend on it.
        (None, Start::Resume(run)) => read_run_config(run)?.threads.max(1),
        (None, Start::New { .. }) => 2,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| run_in_pool(opts, threads, bar))
}

/// Refuses `--out` unless it is a new or empty folder, or a training run and `--overwrite` is
/// given (whose files are then removed); never a folder that is, holds or lies inside an input.
fn prepare_out(
    out: &Path,
    data: &Path,
    split_config: Option<&Path>,
    overwrite: bool,
) -> Result<()> {
    let mut inputs = vec![data];
    inputs.extend(split_config);
    check_output_dir(out, &inputs)?;
    if resolve(out).starts_with(resolve(data)) {
        bail!(
            "{}: the run folder would lie inside the dataset {}; a dataset writer replacing it \
             would delete the run: choose a path outside",
            out.display(),
            data.display()
        );
    }
    check_replaceable(out, OutputKind::Run)?;
    let is_run = out.join("config.json").is_file();
    if is_run && !overwrite {
        let done = checkpoint::load(&out.join("checkpoint.safetensors"))
            .map(|t| format!("{} of {} epochs done", t.state.epoch, t.opts.epochs))
            .unwrap_or_else(|_| "no readable checkpoint".into());
        bail!(
            "{}: a training run is already there ({done}); continue it with --resume {} or \
             replace it with --overwrite",
            out.display(),
            out.display()
        );
    }
    if is_run {
        for f in RUN_FILES {
            let p = out.join(f);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", p.display()))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn run_in_pool(opts: &TrainOptions, threads: usize, bar: &ProgressBar) -> Result<TrainOutcome> {
    let out = match &opts.start {
        Start::New { out, .. } => out.clone(),
        Start::Resume(run) => run.clone(),
    };
    // Held until training ends: a second trainer on this folder is refused, and never deletes
    // this one's temporary checkpoint.
    let _lock = PathLock::acquire(&out)?;
    let (mut trainer, rc, ds) = match &opts.start {
        Start::Resume(run) => {
            let rc = read_run_config(run)?;
            let ds = PackedDataset::open(&rc.data)
                .with_context(|| format!("the run's dataset {}", rc.data.display()))?;
            let now = dataset_fingerprint(&ds);
            match &rc.dataset {
                Some(fp) => {
                    if let Some(diff) = fp.differences(&now) {
                        bail!(
                            "{}: the dataset {} changed since the run started ({diff}); resuming \
                         would train on other data. Restore the dataset, or start a new run \
                         with --out",
                            run.display(),
                            rc.data.display()
                        );
                    }
                }
                None => eprintln!(
                    "note: {} records no dataset fingerprint (an older run): only the size of the \
                 training subset is checked",
                    run.join("config.json").display()
                ),
            }
            let ck = run.join("checkpoint.safetensors");
            let t = if ck.exists() {
                let t = checkpoint::load(&ck)?;
                if t.model.cfg != rc.model {
                    bail!(
                        "{}: the checkpoint's model differs from {} in config.json",
                        ck.display(),
                        rc.model.name
                    );
                }
                t
            } else {
                eprintln!(
                    "note: {}: no checkpoint yet (the run stopped before its first epoch ended); \
                 starting it from the beginning",
                    run.display()
                );
                let (train, _, _) = rc.select(&ds)?;
                let h = &ds.info.hardware;
                Trainer::new(
                    rc.options.clone(),
                    [h.antennas, h.subcarriers, h.packets],
                    train.len(),
                )?
            };
            t.opts
                .validate()
                .with_context(|| format!("{}: the run's options are not valid", ck.display()))?;
            if rc.threads != threads {
                eprintln!(
                    "note: the run used {} threads, this resume uses {threads} (--threads); \
                 results may differ in the last bits",
                    rc.threads
                );
            }
            (t, rc, ds)
        }
        Start::New {
            data,
            split,
            options,
            out,
            overwrite,
        } => {
            let ds = PackedDataset::open(data)?;
            let h = &ds.info.hardware;
            let rc = RunConfig {
                data: data.clone(),
                split: split.kind.name().to_string(),
                protocol: split.protocol,
                split_seed: split.seed,
                ratio: split.ratio,
                split_config: split.config.clone(),
                threads,
                options: csipose_train::TrainOptions::default(),
                model: csipose_model::ModelConfig::preset("nano").expect("preset"),
                parameters: 0,
                dataset: None,
            };
            let (train, _, _) = rc.select(&ds)?;
            let t = Trainer::new(
                options.clone(),
                [h.antennas, h.subcarriers, h.packets],
                train.len(),
            )?;
            check_dataset(&ds, &t.model.cfg)?;
            // Last check before anything is written (with --overwrite, the old run's files go here).
            prepare_out(out, data, split.config.as_deref(), *overwrite)?;
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            let rc = RunConfig {
                options: t.opts.clone(),
                model: t.model.cfg.clone(),
                parameters: t.model.param_count(),
                dataset: Some(dataset_fingerprint(&ds)),
                ..rc
            };
            write_json(&out.join("config.json"), &rc)?;
            (t, rc, ds)
        }
    };
    check_dataset(&ds, &trainer.model.cfg)?;
    let (train, val, split_text) = rc.select(&ds)?;
    if train.is_empty() {
        bail!("{}: the training subset is empty", rc.data.display());
    }
    let spe = trainer.state.steps_per_epoch as usize;
    let per_epoch = spe * trainer.opts.batch.min(train.len());
    let total = per_epoch * trainer.opts.epochs;
    bar.set_length(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} samples | {msg} | ETA {eta}")
            .expect("template"),
    );
    let done = per_epoch * trainer.state.epoch;
    bar.set_position(done as u64);
    bar.reset_eta();
    eprintln!(
        "{}: {} ({} parameters), {split_text}: {} train / {} val frames, {threads} threads",
        out.display(),
        trainer.model.cfg.name,
        trainer.model.param_count(),
        train.len(),
        val.len(),
    );
    let base = serde_json::json!({
        "model": trainer.model.cfg.name,
        "parameters": trainer.model.param_count(),
        "split": rc.split,
        "protocol": rc.protocol,
        "split_seed": rc.split_seed,
        "seed": rc.options.seed,
        "epochs_planned": trainer.opts.epochs,
        "train_samples": train.len(),
        "val_samples": val.len(),
    });
    let mut progress = Bar {
        bar: bar.clone(),
        epoch: trainer.state.epoch,
        epochs: trainer.opts.epochs,
        per_epoch,
        start: Instant::now(),
        start_pos: done,
        last_val: trainer.state.history.last().and_then(|r| r.val_torso_pck20),
        out: out.clone(),
        base: base.clone(),
    };
    let summary = fit(
        &mut trainer,
        &ds,
        &train,
        &val,
        &out,
        &mut progress,
        opts.stop_after,
    )?;
    bar.finish_and_clear();
    let outcome = TrainOutcome {
        epochs_done: trainer.state.epoch,
        epochs_planned: trainer.opts.epochs,
        summary,
        out: out.clone(),
    };
    if outcome.epochs_done < outcome.epochs_planned {
        return Ok(outcome);
    }
    let summary = &outcome.summary;

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
    write_curves(&out, hist)?;
    let curve: Vec<(f64, f64)> = summary
        .val_pck_curve
        .iter()
        .filter_map(|&(k, v)| v.map(|v| (k, v)))
        .collect();
    plots::pck_curve(&out.join("pck.png"), &curve)?;
    let mut metrics = progress_metrics(&base, hist, true);
    metrics["val_torso_pck20"] = serde_json::json!(summary.val_torso_pck20);
    metrics["val_torso_pck_curve"] = serde_json::json!(summary.val_pck_curve);
    metrics["val_torso_pck20_tta"] = serde_json::Value::Object(tta);
    write_json(&out.join("metrics.json"), &metrics)?;
    Ok(outcome)
}
