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
    /// Continue the run in this directory from its last checkpoint.
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
    if args.split == KindArg::Manual && args.config.is_none() {
        bail!("--split manual needs --config FILE (the split as JSON; see `csipose split --help`)");
    }
    // Options first: a bad flag is refused before any file or folder is touched.
    let start = match &args.resume {
        Some(run) => Start::Resume(run.clone()),
        None => {
            let options = csipose_train::TrainOptions {
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
                ..csipose_train::TrainOptions::default()
            };
            options.validate()?;
            if args.split == KindArg::Random && !(0.0..=1.0).contains(&args.ratio) {
                bail!(
                    "--ratio must be a finite number in [0, 1], got {}",
                    args.ratio
                );
            }
            Start::New {
                data: args.data.clone().expect("clap requires --data"),
                split: split_options(
                    args.split,
                    args.protocol,
                    args.split_seed,
                    args.ratio,
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
