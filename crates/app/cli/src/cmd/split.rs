//! `csipose split`: prints the train and validation subjects of each action for an MM-Fi split
//! (and holds the split options that `csipose eval` shares).

use anyhow::{bail, Context};
use csipose_dataset::split::{action_name, random_permutation, subject_name, Split, SplitKind};
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

/// Builds a split from command-line options, checking that they fit together.
pub fn make_split(
    kind: KindArg,
    protocol: u8,
    seed: u32,
    ratio: f64,
    config: Option<&Path>,
) -> anyhow::Result<Split> {
    let kind = match (kind, config) {
        (KindArg::Manual, Some(p)) => SplitKind::Manual(p.to_path_buf()),
        (KindArg::Manual, None) => bail!("--kind manual needs --config FILE"),
        (_, Some(_)) => bail!("--config only applies to the manual split"),
        (KindArg::Random, None) => {
            if !(0.0..=1.0).contains(&ratio) {
                bail!("--ratio {ratio} is outside [0, 1]");
            }
            SplitKind::Random { seed, ratio }
        }
        (KindArg::CrossSubject, None) => SplitKind::CrossSubject,
        (KindArg::CrossScene, None) => SplitKind::CrossScene,
    };
    Ok(Split::new(kind, protocol)?)
}

/// The split as JSON: options plus, per action, train and val subjects (and, for the random
/// split, numpy's permutation), in the layout of `random_split_reference.json`.
pub fn split_json(split: &Split) -> serde_json::Value {
    let mut actions = split.to_json();
    let mut out = serde_json::json!({
        "protocol": split.protocol,
        "kind": split.kind.name(),
    });
    match &split.kind {
        SplitKind::Random { seed, ratio } => {
            out["seed"] = (*seed).into();
            out["ratio"] = (*ratio).into();
            let positions = csipose_dataset::split::protocol_actions(split.protocol)
                .expect("a built split has a valid protocol");
            for (pos, a) in positions.iter().enumerate() {
                actions[action_name(*a)]["permutation"] = random_permutation(*seed, pos).into();
            }
        }
        SplitKind::Manual(p) => out["config"] = p.display().to_string().into(),
        _ => {}
    }
    out["actions"] = actions;
    out
}

/// A one-line description, e.g. `random split (seed 0, ratio 0.8), protocol 1`.
pub fn describe(split: &Split) -> String {
    let what = match &split.kind {
        SplitKind::Random { seed, ratio } => format!("random split (seed {seed}, ratio {ratio})"),
        SplitKind::Manual(p) => format!("manual split ({})", p.display()),
        k => format!("{} split", k.name()),
    };
    format!("{what}, protocol {}", split.protocol)
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
