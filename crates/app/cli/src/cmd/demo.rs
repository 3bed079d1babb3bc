//! `csipose demo`: the main job end to end on a built-in default.
//!
//! 1. imports the miniature MM-Fi tree beside the repository (`../shared/mmfi-mini`), when
//!    present, with the official preprocessing (the path real MM-Fi data takes);
//! 2. simulates the `demo` preset (48,600 MM-Fi-like frames with exact ground truth);
//! 3. fits and evaluates the mean-pose and ridge-regression baselines on MM-Fi's random split;
//! 4. trains the `micro` pose model on the same split;
//! 5. evaluates it;
//! 6. quantizes it (fp32 file, int8 post-training, int4 quantization-aware fine-tuning) into
//!    `.csm` model files, evaluates each file through the no_std runtime and times it
//!    (batch 1, one thread);
//! 7. prints the summary tables.
//!
//! Subcommands are driven through their own argument parsers, so the demo runs exactly what
//! a user would type.

use anyhow::{bail, Context};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Working directory for the demo's datasets, runs and reports.
    #[arg(long, default_value = "csipose-demo")]
    pub out: PathBuf,
    /// The miniature MM-Fi tree [default: ../shared/mmfi-mini or shared/mmfi-mini, whichever
    /// exists relative to the current directory; the import step is skipped when neither does].
    #[arg(long)]
    pub mmfi_mini: Option<PathBuf>,
    /// Training epochs for the micro model.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// QAT fine-tuning epochs for the int4 model.
    #[arg(long, default_value_t = 3)]
    pub qat_epochs: usize,
    /// Skip the ridge baseline (about a minute and a half on 2 cores).
    #[arg(long)]
    pub no_ridge: bool,
}

/// Parses `argv` with subcommand `C`'s own clap definition.
#[derive(Parser)]
struct Sub<C: clap::Args> {
    #[command(flatten)]
    args: C,
}

pub fn parse<C: clap::Args>(argv: &[&str]) -> anyhow::Result<C> {
    let mut full = vec!["csipose"];
    full.extend_from_slice(argv);
    Ok(Sub::<C>::try_parse_from(full)
        .with_context(|| format!("demo: bad internal arguments {argv:?}"))?
        .args)
}

fn find_mmfi_mini(given: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = given {
        if !p.is_dir() {
            bail!("--mmfi-mini {}: no such directory", p.display());
        }
        return Ok(Some(p));
    }
    Ok(["../shared/mmfi-mini", "shared/mmfi-mini"]
        .iter()
        .map(PathBuf::from)
        .find(|c| c.join("E01").is_dir()))
}

pub fn torso_pck(json: &Path) -> anyhow::Result<f64> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["torso_pck"]["pck"]
        .as_f64()
        .with_context(|| format!("{}: no torso_pck.pck", json.display()))
}

pub fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{}: not UTF-8", p.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mini = find_mmfi_mini(args.mmfi_mini.clone())?;
    if let Some(m) = &mini {
        crate::validate::output_dir("--out", &args.out, std::slice::from_ref(m))?;
        crate::validate::output_dir(
            "--out",
            &args.out.join("mmfi-mini"),
            std::slice::from_ref(m),
        )?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = |name: &str| args.out.join(name);
    let split = ["--split", "random", "--protocol", "3"];
    println!("csipose demo: MM-Fi import, simulation, baselines, micro training, evaluation, quantization and timing\n");

    match mini {
        Some(mini) => {
            println!(
                "[1/6] import {} (official MM-Fi preprocessing)",
                mini.display()
            );
            let dest = out("mmfi-mini");
            super::import_mmfi::run(parse(&[path_str(&mini)?, "--out", path_str(&dest)?])?)?;
        }
        None => println!("[1/6] no ../shared/mmfi-mini here: MM-Fi import step skipped"),
    }

    let data = out("sim-demo");
    let data_s = path_str(&data)?.to_string();
    println!("\n[2/6] simulate the demo preset -> {data_s}");
    let preview = out("preview.png");
    super::simulate::run(parse(&[
        "--preset",
        "demo",
        "--out",
        &data_s,
        "--preview",
        path_str(&preview)?,
    ])?)?;

    let mut rows: Vec<(String, f64)> = Vec::new();
    let baselines: &[&str] = if args.no_ridge {
        &["mean"]
    } else {
        &["mean", "ridge"]
    };
    for b in baselines {
        println!("\n[3/6] {b} baseline on MM-Fi's random split (protocol 3, seed 0, ratio 0.8)");
        let json = out(&format!("eval-{b}.json"));
        let mut argv = vec![
            "--data",
            &data_s,
            "--baseline",
            b,
            "--json",
            path_str(&json)?,
        ];
        argv.extend_from_slice(&split);
        super::eval::run(parse(&argv)?)?;
        rows.push((format!("{b} baseline"), torso_pck(&json)?));
    }

    let run_dir = out("micro");
    let epochs = args.epochs.to_string();
    println!(
        "\n[4/6] train micro for {epochs} epochs -> {}",
        run_dir.display()
    );
    let mut argv = vec!["--data", &data_s, "--model", "micro", "--epochs", &epochs];
    argv.extend_from_slice(&split);
    // The demo's own run from an earlier `demo` is replaced, as every other demo output is.
    argv.extend_from_slice(&["--out", path_str(&run_dir)?, "--overwrite"]);
    super::train::run(parse(&argv)?)?;

    println!("\n[5/6] evaluate micro (EMA weights) on the validation subjects");
    let json = out("eval-micro.json");
    let mut argv = vec![
        "--data",
        &data_s,
        "--checkpoint",
        path_str(&run_dir)?,
        "--json",
        path_str(&json)?,
    ];
    argv.extend_from_slice(&split);
    super::eval::run(parse(&argv)?)?;
    rows.push(("micro".into(), torso_pck(&json)?));

    println!(
        "\n[6/6] quantize micro into .csm files, evaluate each through the no_std runtime, time it"
    );
    let models = out("models");
    std::fs::create_dir_all(&models)
        .with_context(|| format!("cannot create {}", models.display()))?;
    let qat_epochs = args.qat_epochs.to_string();
    let variants: [(&str, &str, Vec<&str>); 3] = [
        ("fp32", "fp32", vec!["--bits", "32"]),
        ("int8 PTQ", "int8", vec!["--bits", "8"]),
        (
            "int4 QAT",
            "int4-qat",
            vec![
                "--bits",
                "4",
                "--qat",
                "--epochs",
                &qat_epochs,
                "--data",
                &data_s,
            ],
        ),
    ];
    let mut files = Vec::new();
    for (label, tag, extra) in variants {
        let file = models.join(format!("micro-{tag}.csm"));
        println!("\nmicro {label} -> {}", file.display());
        let mut argv = vec![
            "--checkpoint",
            path_str(&run_dir)?,
            "--out",
            path_str(&file)?,
        ];
        argv.extend_from_slice(&extra);
        super::quantize::run(parse(&argv)?)?;
        let json = file.with_extension("eval.json");
        let mut argv = vec![
            "--data",
            &data_s,
            "--model",
            path_str(&file)?,
            "--json",
            path_str(&json)?,
        ];
        argv.extend_from_slice(&split);
        super::eval::run(parse(&argv)?)?;
        let (size, _, t) = super::bench::time_file(&file, 5000)?;
        files.push((label, size, t.median_us, torso_pck(&json)?));
    }

    println!("\nsummary: simulated demo preset, random split, validation frames");
    println!("  {:<16} {:>14}", "model", "torso-PCK@20");
    for (name, pck) in &rows {
        println!("  {name:<16} {:>13.2}%", 100.0 * pck);
    }
    println!(
        "\n  micro as deployed (.csm through the no_std runtime, batch 1, one thread, {} kernel)",
        csipose_runtime::Kernel::best().name()
    );
    println!(
        "  {:<12} {:>12} {:>14} {:>14}",
        "precision", "size (B)", "latency (µs)", "torso-PCK@20"
    );
    for (label, size, us, pck) in &files {
        println!("  {label:<12} {size:>12} {us:>14.1} {:>13.2}%", 100.0 * pck);
    }
    println!(
        "\ndemo done in {:.0} s; datasets, run, plots (micro/*.png, preview.png), model files (models/*.csm) and JSON reports in {}",
        t0.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
