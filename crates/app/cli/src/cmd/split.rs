//! `csipose split`: prints the train and validation subjects of each action for an MM-Fi split
//! (and holds the split options that `train`, `eval` and `activity` share, turned into the
//! pipeline's [`SplitOptions`]).

use anyhow::Context;
use csipose_dataset::split::{action_name, subject_name, Split};
use csipose_pipeline::split::{describe, split_json, SplitChoice, SplitOptions};
use std::path::{Path, PathBuf};

/// The split kinds on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// numpy-legacy random permutation of the 40 subjects per action (MM-Fi's random_split).
    Random,
    /// Validation S05, S10, ..., S40.
    CrossSubject,
    /// Validation S31-S40 (environment E04).
    CrossScene,
    /// Subjects and actions from a JSON file (--config).
    Manual,
}

#[derive(clap::Args)]
pub struct Args {
    /// MM-Fi protocol: 1 = daily actions (A02-A05, A13, A14, A17-A23, A27),
    /// 2 = rehabilitation actions (A01, A06-A12, A15, A16, A24-A26), 3 = all 27.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub protocol: u8,
    /// How subjects are divided.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Random split: seed of the first action (action at position p uses seed + p).
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Random split: fraction of the 40 subjects that train (floor(ratio * 40)).
    #[arg(long, default_value_t = 0.8)]
    pub ratio: f64,
    /// Manual split: JSON file {"train": {"subjects": [...], "actions": [...]}, "val": {...}}.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl From<KindArg> for SplitChoice {
    fn from(k: KindArg) -> SplitChoice {
        match k {
            KindArg::Random => SplitChoice::Random,
            KindArg::CrossSubject => SplitChoice::CrossSubject,
            KindArg::CrossScene => SplitChoice::CrossScene,
            KindArg::Manual => SplitChoice::Manual,
        }
    }
}

/// The split options of a command line.
pub fn split_options(
    kind: KindArg,
    protocol: u8,
    seed: u32,
    ratio: f64,
    config: Option<&Path>,
) -> SplitOptions {
    SplitOptions {
        kind: kind.into(),
        protocol,
        seed,
        ratio,
        config: config.map(Path::to_path_buf),
    }
}

/// Builds a split from command-line options, checking that they fit together.
pub fn make_split(
    kind: KindArg,
    protocol: u8,
    seed: u32,
    ratio: f64,
    config: Option<&Path>,
) -> anyhow::Result<Split> {
    split_options(kind, protocol, seed, ratio, config).build()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let split = make_split(
        args.kind,
        args.protocol,
        args.seed,
        args.ratio,
        args.config.as_deref(),
    )
    .context("cannot build the split")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&split_json(&split))?);
        return Ok(());
    }
    println!("{}: {} actions", describe(&split), split.actions.len());
    let names = |v: &[i32]| {
        v.iter()
            .map(|s| subject_name(*s))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (a, s) in &split.actions {
        println!(
            "{}  train ({:2}): {}",
            action_name(*a),
            s.train.len(),
            names(&s.train)
        );
        println!("     val   ({:2}): {}", s.val.len(), names(&s.val));
    }
    Ok(())
}
