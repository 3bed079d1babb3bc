//! `csipose demo`: the main job end to end on a built-in default.
//!
//! Today it imports the miniature MM-Fi tree shipped beside the repository
//! (`../shared/mmfi-mini`) with the official preprocessing, then evaluates the mean-pose and
//! ridge-regression baselines on MM-Fi's random split. It trains no neural model yet: the
//! simulator, training and quantization stages fill the later steps in as they land.

use super::eval::{self, BaselineArg};
use super::import_mmfi;
use super::split::KindArg;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Working directory for the demo's datasets and reports.
    #[arg(long, default_value = "csipose-demo")]
    pub out: PathBuf,
    /// The miniature MM-Fi tree [default: the first of ../shared/mmfi-mini, shared/mmfi-mini
    /// that exists, relative to the current directory].
    #[arg(long)]
    pub mmfi_mini: Option<PathBuf>,
}

fn find_mmfi_mini(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    for c in ["../shared/mmfi-mini", "shared/mmfi-mini"] {
        if Path::new(c).join("expected.npz").exists() || Path::new(c).join("E01").is_dir() {
            return Ok(PathBuf::from(c));
        }
    }
    bail!("no miniature MM-Fi tree found at ../shared/mmfi-mini or shared/mmfi-mini; pass --mmfi-mini PATH")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mini = find_mmfi_mini(args.mmfi_mini)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    println!("csipose demo: MM-Fi import + baselines (no neural model is trained yet)\n");

    println!(
        "[1/3] import {} (official MM-Fi preprocessing)",
        mini.display()
    );
    let data = args.out.join("mmfi-mini");
    import_mmfi::run(import_mmfi::Args {
        root: mini,
        out: data.clone(),
        keypoints: import_mmfi::Keypoints::Rgb,
        image_size: (640, 480),
        skip_bad: false,
        with_phase: false,
    })?;

    for (step, baseline) in [(2, BaselineArg::Mean), (3, BaselineArg::Ridge)] {
        println!(
            "\n[{step}/3] {} baseline, MM-Fi random split (protocol 3, seed 0, ratio 0.8), validation subjects",
            baseline.name()
        );
        eval::run(eval::Args {
            data: data.clone(),
            predictions: None,
            checkpoint: None,
            tta: false,
            threads: 2,
            baseline: Some(baseline),
            split: Some(KindArg::Random),
            protocol: 3,
            seed: 0,
            ratio: 0.8,
            config: None,
            subset: None,
            k: 0.2,
            json: Some(args.out.join(format!("eval-{}.json", baseline.name()))),
        })?;
    }
    println!(
        "\ndemo done in {:.1} s; outputs in {}",
        t0.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
