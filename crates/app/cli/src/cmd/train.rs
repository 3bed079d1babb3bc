//! `csipose train`: the flags of a training run, checked before anything is touched, turned
//! into [`csipose_pipeline::train::TrainOptions`]; the pipeline trains (with a progress bar)
//! and writes the run folder, this prints where it ended. `--resume RUN` continues an
//! interrupted run exactly.

use super::split::{split_options, KindArg};
use anyhow::{bail, Result};
use csipose_pipeline::train::{Start, TrainOptions, TrainOutcome};
use indicatif::ProgressBar;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Packed dataset directory (a resumed run uses the one it was started with).
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Model preset: nano, micro, tiny, small, base, flagship [default: micro].
    #[arg(long)]
    pub model: Option<String>,
    /// Passes over the training subset [default: 30].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// How subjects are divided into train and validation (see `csipose split`) [default:
    /// random].
    #[arg(long, value_enum)]
    pub split: Option<KindArg>,
    /// MM-Fi protocol: 1 = daily actions, 2 = rehabilitation actions, 3 = all 27 [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub protocol: Option<u8>,
    /// Random split: seed of the first action [default: 0, MM-Fi's].
    #[arg(long)]
    pub split_seed: Option<u32>,
    /// Random split: fraction of subjects that train [default: 0.8].
    #[arg(long)]
    pub ratio: Option<f64>,
    /// Manual split: JSON file (see `csipose split --help`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training seed: initialisation, shuffling, mixup, dropout [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Samples per optimiser step [default: 64].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak learning rate [default: 0.001].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Train-time view augmentation: each training sample is shown as one of the four TTA
    /// views, drawn at random.
    #[arg(long)]
    pub view_augment: bool,
    /// Train-time CSI augmentation: probability that a training sample is augmented
    /// [default: 0].
    #[arg(long)]
    pub aug_prob: Option<f32>,
    /// Augmentation: standard deviation (dB) of the random smooth per-antenna frequency
    /// response (a different static channel and receive chain) [default: 0].
    #[arg(long)]
    pub aug_response_db: Option<f32>,
    /// Augmentation: receiver noise, as a fraction of the frame's standard deviation
    /// [default: 0].
    #[arg(long)]
    pub aug_noise: Option<f32>,
    /// Threads (results are deterministic for a seed and a thread count) [default: 2; with
    /// --resume, the run's own, so that the result stays bit-identical].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run directory to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Replace the training run already at --out (its checkpoint, config, metrics and plots).
    #[arg(long, requires = "out")]
    pub overwrite: bool,
    /// Continue the run in this directory from its last checkpoint. A resumed run keeps its
    /// settings (dataset, model, epochs, split, seed, batch, learning rate, augmentation): such
    /// a flag given with the run's own value is accepted, with another value refused (start a
    /// new run with --out to change it). Only --threads may differ (see there).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// For tests: stop after this many epochs in this call, as a kill after that epoch's
    /// checkpoint would (the run stays resumable).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let split = args.split.unwrap_or(KindArg::Random);
    if split == KindArg::Manual && args.config.is_none() && args.resume.is_none() {
        bail!("--split manual needs --config FILE (the split as JSON; see `csipose split --help`)");
    }
    // Options first: a bad flag is refused before any file or folder is touched.
    let start = match &args.resume {
        Some(run) => {
            check_resume_flags(run, &args)?;
            Start::Resume(run.clone())
        }
        None => {
            let options = csipose_train::TrainOptions {
                model: args.model.clone().unwrap_or_else(|| "micro".into()),
                epochs: args.epochs.unwrap_or(30),
                batch: args.batch.unwrap_or(64),
                lr: args.lr.unwrap_or(1e-3),
                seed: args.seed.unwrap_or(0),
                view_augment: args.view_augment,
                augment: csipose_train::augment::CsiAugment {
                    prob: args.aug_prob.unwrap_or(0.0),
                    response_db: args.aug_response_db.unwrap_or(0.0),
                    noise: args.aug_noise.unwrap_or(0.0),
                },
                ..csipose_train::TrainOptions::default()
            };
            options.validate()?;
            let ratio = args.ratio.unwrap_or(0.8);
            if split == KindArg::Random && !(0.0..=1.0).contains(&ratio) {
                bail!("--ratio must be a finite number in [0, 1], got {ratio}");
            }
            Start::New {
                data: args.data.clone().expect("clap requires --data"),
                split: split_options(
                    split,
                    args.protocol.unwrap_or(3),
                    args.split_seed.unwrap_or(0),
                    ratio,
                    args.config.as_deref(),
                ),
                options,
                out: args.out.clone().expect("clap requires --out"),
                overwrite: args.overwrite,
            }
        }
    };
    let opts = TrainOptions {
        start,
        threads: args.threads,
        stop_after: args.stop_after,
    };
    print(&csipose_pipeline::train::run(&opts, &ProgressBar::new(0))?);
    Ok(())
}

/// The training flags given on the command line, as [`csipose_pipeline::train::recorded_flags`]
/// spells the run's values (paths resolved).
fn given_flags(args: &Args) -> Vec<(&'static str, String)> {
    use clap::ValueEnum;
    let path = |p: &std::path::Path| csipose_files::resolve(p).display().to_string();
    let mut given = Vec::new();
    let mut add = |flag: &'static str, v: Option<String>| {
        if let Some(v) = v {
            given.push((flag, v));
        }
    };
    add("--data", args.data.as_deref().map(path));
    add("--model", args.model.clone());
    add("--epochs", args.epochs.map(|v| v.to_string()));
    add(
        "--split",
        args.split
            .and_then(|k| k.to_possible_value())
            .map(|v| v.get_name().to_string()),
    );
    add("--protocol", args.protocol.map(|v| v.to_string()));
    add("--split-seed", args.split_seed.map(|v| v.to_string()));
    add("--ratio", args.ratio.map(|v| v.to_string()));
    add("--config", args.config.as_deref().map(path));
    add("--seed", args.seed.map(|v| v.to_string()));
    add("--batch", args.batch.map(|v| v.to_string()));
    add("--lr", args.lr.map(|v| v.to_string()));
    add("--view-augment", args.view_augment.then(|| "true".into()));
    add("--aug-prob", args.aug_prob.map(|v| v.to_string()));
    add(
        "--aug-response-db",
        args.aug_response_db.map(|v| v.to_string()),
    );
    add("--aug-noise", args.aug_noise.map(|v| v.to_string()));
    given
}

/// Refuses a training flag given with `--resume` whose value differs from the run's: a resumed
/// run keeps its settings (a flag equal to the run's value is accepted).
fn check_resume_flags(run: &std::path::Path, args: &Args) -> Result<()> {
    let given = given_flags(args);
    if given.is_empty() {
        return Ok(());
    }
    let recorded = csipose_pipeline::train::recorded_flags(run)?;
    for (flag, value) in given {
        let theirs = recorded
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if value != theirs {
            let theirs = if theirs.is_empty() { "none" } else { theirs };
            bail!(
                "{flag} {value}: the run {} was started with {flag} {theirs}; a resumed run keeps \
                 its settings; start a new run with --out (or --out {} --overwrite) to change them",
                run.display(),
                run.display()
            );
        }
    }
    Ok(())
}

/// Where a training call ended: a stopped run's note on stderr, a finished run's score.
pub fn print(o: &TrainOutcome) {
    if o.epochs_done < o.epochs_planned {
        eprintln!(
            "{}: stopped after {} of {} epochs (--stop-after); continue with --resume",
            o.out.display(),
            o.epochs_done,
            o.epochs_planned
        );
        return;
    }
    let s = &o.summary;
    println!(
        "{}: val torso-PCK@20 {} after {} epochs ({} train / {} val frames)",
        o.out.display(),
        s.val_torso_pck20
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into()),
        s.epochs,
        s.train_samples,
        s.val_samples
    );
}
