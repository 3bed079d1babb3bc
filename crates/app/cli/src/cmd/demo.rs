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
//! Each step calls the pipeline with typed options (what the subcommands build from their
//! flags) and prints what the subcommand would. The helpers for that (the options of `eval`,
//! `quantize` and `train` with their defaults, and running and printing each) are shared with
//! `frontier`.

use anyhow::{bail, Context};
use csipose_dataset::mmfi::ImportOptions;
use csipose_dataset::split::Subset;
use csipose_pipeline::eval::{Baseline, EvalOptions, Source};
use csipose_pipeline::quantize::{KeepF32, Qat, QuantizeOptions};
use csipose_pipeline::simulate::{Preview, SimulateOptions};
use csipose_pipeline::split::SplitOptions;
use csipose_pipeline::train::{Start, TrainOptions};
use csipose_quantize::{Bits, ScaleRule};
use csipose_sim::{Preset, SimConfig};
use indicatif::ProgressBar;
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

/// Evaluates, prints the table as `csipose eval` does, writes the JSON report to `json`;
/// returns torso-PCK@20.
pub fn eval(opts: &EvalOptions, json: &Path) -> anyhow::Result<f64> {
    let o = csipose_pipeline::eval::run(opts, &ProgressBar::new(0))?;
    super::eval::print(opts, &o, false);
    super::eval::write_report(&o, json)?;
    o.torso_pck().with_context(|| {
        format!(
            "{}: no torso-PCK (every torso degenerate)",
            opts.data.display()
        )
    })
}

/// Options of `csipose eval --split S` (protocol 3, seed 0, ratio 0.8, validation subset,
/// k = 0.2, 2 threads) for one source.
pub fn eval_options(data: &Path, split: SplitOptions, source: Source) -> EvalOptions {
    EvalOptions {
        data: data.to_path_buf(),
        source,
        split: Some(split),
        subset: Subset::Val,
        k: 0.2,
        threads: 2,
    }
}

/// Options of `csipose quantize --checkpoint RUN --out FILE --bits B` (max-abs scales per
/// tensor, the model's default f32 weights, 2 threads); with `qat`, `--qat --epochs E --data
/// DATA` (lr 3e-4, the QAT run beside the file).
pub fn quantize_options(
    run: &Path,
    file: &Path,
    bits: Bits,
    per_channel: bool,
    qat: Option<(usize, &Path)>,
) -> QuantizeOptions {
    QuantizeOptions {
        checkpoint: run.to_path_buf(),
        bits,
        per_channel,
        scale: ScaleRule::MaxAbs,
        keep_f32: KeepF32::Default,
        qat: qat.map(|(epochs, _)| Qat {
            epochs,
            lr: 3e-4,
            run: file.with_extension("qat"),
        }),
        data: qat.map(|(_, data)| data.to_path_buf()),
        threads: 2,
        out: file.to_path_buf(),
    }
}

/// Quantizes and prints as `csipose quantize` does.
pub fn quantize(opts: &QuantizeOptions) -> anyhow::Result<()> {
    super::quantize::print(&csipose_pipeline::quantize::run(
        opts,
        &ProgressBar::new(0),
    )?);
    Ok(())
}

/// Trains `model` for `epochs` on `split` into `out` (batch 64, lr 1e-3, seed 0, the trainer's
/// defaults otherwise) and prints as `csipose train` does.
pub fn train(
    data: &Path,
    model: &str,
    epochs: usize,
    split: SplitOptions,
    threads: Option<usize>,
    out: &Path,
    overwrite: bool,
) -> anyhow::Result<()> {
    let opts = TrainOptions {
        start: Start::New {
            data: data.to_path_buf(),
            split,
            options: csipose_train::TrainOptions {
                model: model.into(),
                epochs,
                ..csipose_train::TrainOptions::default()
            },
            out: out.to_path_buf(),
            overwrite,
        },
        threads,
        stop_after: None,
    };
    super::train::print(&csipose_pipeline::train::run(&opts, &ProgressBar::new(0))?);
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mini = find_mmfi_mini(args.mmfi_mini.clone())?;
    if let Some(m) = &mini {
        crate::validate::output_dir("--out", &args.out, std::slice::from_ref(m))?;
        // What `csipose import-mmfi` checks of its --out.
        crate::validate::output_dir(
            "--out",
            &args.out.join("mmfi-mini"),
            &crate::validate::inputs(&[Some(m)]),
        )?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = |name: &str| args.out.join(name);
    // MM-Fi's random split, protocol 3 (seed 0, ratio 0.8).
    let split = SplitOptions::default();
    println!("csipose demo: MM-Fi import, simulation, baselines, micro training, evaluation, quantization and timing\n");

    match mini {
        Some(mini) => {
            println!(
                "[1/6] import {} (official MM-Fi preprocessing)",
                mini.display()
            );
            let dest = out("mmfi-mini");
            // `csipose import-mmfi`'s defaults: COCO-17 keypoints from rgb/, 640x480 images.
            let opts = ImportOptions {
                command_line: Some(crate::validate::command_line()),
                ..ImportOptions::default()
            };
            let summary =
                csipose_pipeline::import::mmfi(&mini, &dest, &opts, &ProgressBar::new(0))?;
            print!("{summary}");
        }
        None => println!("[1/6] no ../shared/mmfi-mini here: MM-Fi import step skipped"),
    }

    let data = out("sim-demo");
    println!("\n[2/6] simulate the demo preset -> {}", data.display());
    let preview = out("preview.png");
    let sim = SimulateOptions {
        config: SimConfig::default(),
        plan: Preset::Demo.plan(),
        out: Some(data.clone()),
        tree: None,
        preview: Some(Preview {
            path: preview,
            action: 12,
        }),
        command_line: crate::validate::command_line(),
    };
    csipose_pipeline::simulate::run(&sim, &ProgressBar::new(0))?;

    let mut rows: Vec<(String, f64)> = Vec::new();
    let baselines: &[Baseline] = if args.no_ridge {
        &[Baseline::Mean]
    } else {
        &[Baseline::Mean, Baseline::Ridge]
    };
    for &b in baselines {
        let name = b.name();
        println!("\n[3/6] {name} baseline on MM-Fi's random split (protocol 3, seed 0, ratio 0.8)");
        let opts = eval_options(&data, split.clone(), Source::Baseline(b));
        let pck = eval(&opts, &out(&format!("eval-{name}.json")))?;
        rows.push((format!("{name} baseline"), pck));
    }

    let run_dir = out("micro");
    println!(
        "\n[4/6] train micro for {} epochs -> {}",
        args.epochs,
        run_dir.display()
    );
    // The demo's own run from an earlier `demo` is replaced, as every other demo output is.
    train(
        &data,
        "micro",
        args.epochs,
        split.clone(),
        None,
        &run_dir,
        true,
    )?;

    println!("\n[5/6] evaluate micro (EMA weights) on the validation subjects");
    let source = Source::Checkpoint {
        path: run_dir.clone(),
        views: vec![csipose_train::View::Identity],
    };
    let pck = eval(
        &eval_options(&data, split.clone(), source),
        &out("eval-micro.json"),
    )?;
    rows.push(("micro".into(), pck));

    println!(
        "\n[6/6] quantize micro into .csm files, evaluate each through the no_std runtime, time it"
    );
    let models = out("models");
    std::fs::create_dir_all(&models)
        .with_context(|| format!("cannot create {}", models.display()))?;
    let variants = [
        ("fp32", "fp32", Bits::F32, None),
        ("int8 PTQ", "int8", Bits::I8, None),
        (
            "int4 QAT",
            "int4-qat",
            Bits::I4,
            Some((args.qat_epochs, data.as_path())),
        ),
    ];
    let mut files = Vec::new();
    for (label, tag, bits, qat) in variants {
        let file = models.join(format!("micro-{tag}.csm"));
        println!("\nmicro {label} -> {}", file.display());
        quantize(&quantize_options(&run_dir, &file, bits, false, qat))?;
        let opts = eval_options(&data, split.clone(), Source::Model(file.clone()));
        let pck = eval(&opts, &file.with_extension("eval.json"))?;
        let (size, _, t) = csipose_pipeline::bench::time_file(&file, 5000)?;
        files.push((label, size, t.median_us, pck));
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
