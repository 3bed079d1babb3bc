//! `csipose frontier`: the accuracy / size / latency frontier of the model family, in the
//! shape of the reference's two tables.
//!
//! 1. trains every config on the dataset's split (or reuses a finished run with the same
//!    epochs in `OUT/runs/<config>`);
//! 2. writes each as an fp32 `.csm`, evaluates that file through the no_std runtime and times
//!    it (batch 1, one thread);
//! 3. quantizes micro: int8 PTQ, int4 PTQ (naive), int4 QAT (and the per-channel variants),
//!    evaluates and times each file;
//! 4. writes `OUT/FRONTIER.md`, `OUT/frontier.json` and `OUT/pareto.png`.
//!
//! Every PCK in the tables is measured on the deployed file (`eval --model`), not on the
//! training engine. Training, quantizing, evaluating and timing go through the pipeline with
//! typed options (the helpers `demo` uses); this module owns the reuse of finished runs and the
//! report.

use super::demo::{eval, eval_options, quantize, quantize_options, train};
use super::split::KindArg;
use anyhow::{bail, Context, Result};
use csipose_model::config::PRESETS;
use csipose_model::ModelConfig;
use csipose_pipeline::bench::time_file;
use csipose_pipeline::eval::Source;
use csipose_pipeline::split::{SplitChoice, SplitOptions};
use csipose_quantize::Bits;
use csipose_runtime::Kernel;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Packed dataset directory (e.g. the simulator's demo preset).
    #[arg(long)]
    pub data: PathBuf,
    /// Training epochs per config.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// QAT fine-tuning epochs for int4 micro.
    #[arg(long, default_value_t = 5)]
    pub qat_epochs: usize,
    /// Configs to include (comma-separated) [default: all six].
    #[arg(long, value_delimiter = ',')]
    pub configs: Option<Vec<String>>,
    /// Split the runs train on and the tables report (MM-Fi protocol 3; the random split with
    /// seed 0 and ratio 0.8).
    #[arg(long, value_enum, default_value = "random")]
    pub split: KindArg,
    /// Timed forwards per model (median reported).
    #[arg(long, default_value_t = 3000)]
    pub iters: usize,
    /// Training threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Output directory: runs/, models/, FRONTIER.md, frontier.json, pareto.png.
    #[arg(long, default_value = "frontier")]
    pub out: PathBuf,
}

/// One row of either table.
#[derive(serde::Serialize, Clone)]
struct Row {
    model: String,
    precision: String,
    parameters: usize,
    file_bytes: usize,
    torso_pck20: f64,
    median_us: f64,
    mflop: f64,
    gflops: f64,
    file: String,
}

/// Whether `run` finished `epochs` epochs (its metrics.json is written at the end).
fn finished(run: &Path, epochs: usize) -> bool {
    std::fs::read(run.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["epochs"].as_u64())
        == Some(epochs as u64)
}

/// The split the runs train on and the tables report.
fn split(args: &Args) -> SplitOptions {
    SplitOptions {
        kind: args.split.into(),
        ..SplitOptions::default()
    }
}

/// Evaluates a `.csm` on the split through the runtime and times it.
fn measure(args: &Args, model: &str, precision: &str, file: &Path) -> Result<Row> {
    let opts = eval_options(&args.data, split(args), Source::Model(file.to_path_buf()));
    let pck = eval(&opts, &file.with_extension("eval.json"))?;
    let (file_bytes, flops, t) = time_file(file, args.iters)?;
    let flops = flops as f64;
    let cfg = ModelConfig::preset(model).context("unknown preset")?;
    Ok(Row {
        model: model.into(),
        precision: precision.into(),
        parameters: cfg.param_count(),
        file_bytes,
        torso_pck20: pck,
        median_us: t.median_us,
        mflop: flops / 1e6,
        gflops: flops / (t.median_us * 1e3),
        file: file.display().to_string(),
    })
}

pub fn run(mut args: Args) -> Result<()> {
    let t0 = Instant::now();
    args.threads = crate::validate::threads("--threads", args.threads);
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.split == KindArg::Manual {
        bail!("--split manual needs --config FILE, which frontier does not take");
    }
    crate::validate::at_least("--iters", args.iters, 1)?;
    crate::validate::output_dir(
        "--out",
        &args.out,
        &crate::validate::inputs(&[Some(&args.data)]),
    )?;
    let configs: Vec<String> = match &args.configs {
        Some(c) => c.clone(),
        None => PRESETS.iter().map(|s| s.to_string()).collect(),
    };
    for c in &configs {
        if ModelConfig::preset(c).is_none() {
            bail!(
                "--configs: unknown config {c:?} (one of {})",
                PRESETS.join(", ")
            );
        }
    }
    let runs = args.out.join("runs");
    let models = args.out.join("models");
    for d in [&runs, &models] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }

    let mut family = Vec::new();
    for (i, name) in configs.iter().enumerate() {
        let run = runs.join(name);
        if finished(&run, args.epochs) {
            println!(
                "[{}/{}] {name}: reusing the finished run {}",
                i + 1,
                configs.len(),
                run.display()
            );
        } else {
            println!(
                "[{}/{}] {name}: training {} epochs -> {}",
                i + 1,
                configs.len(),
                args.epochs,
                run.display()
            );
            if run.exists() {
                std::fs::remove_dir_all(&run).with_context(|| {
                    format!("cannot remove the unfinished run {}", run.display())
                })?;
            }
            train(
                &args.data,
                name,
                args.epochs,
                split(&args),
                Some(args.threads),
                &run,
                false,
            )?;
        }
        let file = models.join(format!("{name}-fp32.csm"));
        quantize(&quantize_options(&run, &file, Bits::F32, false, None))?;
        family.push(measure(&args, name, "fp32", &file)?);
    }

    let mut precisions = Vec::new();
    if configs.iter().any(|c| c == "micro") {
        let run = runs.join("micro");
        if let Some(r) = family.iter().find(|r| r.model == "micro") {
            precisions.push(r.clone());
        }
        let qat = Some((args.qat_epochs, args.data.as_path()));
        let variants = [
            ("int8 PTQ", "int8", Bits::I8, false, None),
            ("int8 PTQ per-channel", "int8-pc", Bits::I8, true, None),
            ("int4 PTQ (naive)", "int4", Bits::I4, false, None),
            ("int4 PTQ per-channel", "int4-pc", Bits::I4, true, None),
            ("int4 QAT", "int4-qat", Bits::I4, false, qat),
        ];
        for (label, tag, bits, per_channel, qat) in variants {
            println!("\nmicro {label}");
            let file = models.join(format!("micro-{tag}.csm"));
            quantize(&quantize_options(&run, &file, bits, per_channel, qat))?;
            precisions.push(measure(&args, "micro", label, &file)?);
        }
    }

    write_report(&args, &family, &precisions, t0.elapsed().as_secs_f64())?;
    pareto_png(&args.out.join("pareto.png"), &family, &precisions)?;
    println!(
        "\nfrontier done in {:.0} s: {}, {}, {}",
        t0.elapsed().as_secs_f64(),
        args.out.join("FRONTIER.md").display(),
        args.out.join("frontier.json").display(),
        args.out.join("pareto.png").display()
    );
    Ok(())
}

fn write_report(args: &Args, family: &[Row], precisions: &[Row], secs: f64) -> Result<()> {
    let split_name = SplitChoice::from(args.split).name();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut md = String::new();
    md.push_str("# Frontier\n\n");
    md.push_str(&format!(
        "Written by `csipose frontier --data {} --epochs {} --qat-epochs {} --split {}` in {:.0} s \
         on {cpu} ({} kernel). Torso-PCK@20 on the {} split's validation frames, measured by running \
         each `.csm` file through the no_std runtime; latency is the median of {} batch-1 forwards on \
         one thread.\n\n",
        args.data.display(),
        args.epochs,
        args.qat_epochs,
        split_name,
        secs,
        Kernel::best().name(),
        split_name,
        args.iters
    ));
    md.push_str("## Models (fp32)\n\n| model | params | latency (µs) | MFLOP | GFLOP/s | torso-PCK@20 |\n|---|---:|---:|---:|---:|---:|\n");
    for r in family {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.2} | {:.1} | {:.2}% |\n",
            r.model,
            r.parameters,
            r.median_us,
            r.mflop,
            r.gflops,
            100.0 * r.torso_pck20
        ));
    }
    if !precisions.is_empty() {
        md.push_str("\n## micro by precision\n\n| precision | size (bytes) | latency (µs) | torso-PCK@20 |\n|---|---:|---:|---:|\n");
        for r in precisions {
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.2}% |\n",
                r.precision,
                r.file_bytes,
                r.median_us,
                100.0 * r.torso_pck20
            ));
        }
    }
    md.push_str(
        "\n`pareto.png`: left, parameters (log scale, x) against torso-PCK@20 (y); right, latency \
         (log scale, x) against torso-PCK@20 (y). Blue dots: the fp32 family, smallest to largest \
         joined in order of size; orange: micro's quantized files; the grey line joins the Pareto \
         front (no other point is both smaller/faster and more accurate). Grid lines every 0.1 in \
         PCK (every 0.02 when all points lie within 0.3) and at each power of ten on x.\n",
    );
    let json = json!({
        "data": args.data.display().to_string(),
        "split": split_name,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "kernel": Kernel::best().name(),
        "cpu": cpu,
        "seconds": secs,
        "models": family,
        "precisions": precisions,
    });
    let path = args.out.join("FRONTIER.md");
    let mut f = csipose_npy::AtomicFile::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(md.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    csipose_pipeline::write_json(&args.out.join("frontier.json"), &json)?;
    Ok(())
}

/// Indices of the points on the Pareto front (minimising x, maximising y), by increasing x.
fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut best = f64::NEG_INFINITY;
    idx.into_iter()
        .filter(|&i| {
            let keep = points[i].1 > best;
            if keep {
                best = points[i].1;
            }
            keep
        })
        .collect()
}

fn pareto_png(path: &Path, family: &[Row], precisions: &[Row]) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("plot: {e}");
    let (w, h) = (1000u32, 420u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (l, r) = root.split_horizontally(w / 2);
        let quant: Vec<&Row> = precisions
            .iter()
            .filter(|r| r.precision != "fp32")
            .collect();
        for (area, xs) in [(&l, 0usize), (&r, 1)] {
            let x_of = |row: &Row| {
                if xs == 0 {
                    row.parameters as f64
                } else {
                    row.median_us
                }
            };
            let all: Vec<(f64, f64)> = family
                .iter()
                .chain(quant.iter().copied())
                .map(|r| (x_of(r).max(1e-3).log10(), r.torso_pck20))
                .collect();
            if all.is_empty() {
                continue;
            }
            let x0 = all
                .iter()
                .map(|p| p.0)
                .fold(f64::INFINITY, f64::min)
                .floor();
            let x1 = all
                .iter()
                .map(|p| p.0)
                .fold(f64::NEG_INFINITY, f64::max)
                .ceil()
                .max(x0 + 1.0);
            let lo = all.iter().map(|p| p.1).fold(1.0, f64::min);
            let hi = all.iter().map(|p| p.1).fold(0.0, f64::max);
            // Grid every 0.1 in PCK, or every 0.02 when the points span less than 0.3.
            let step = if hi - lo > 0.3 { 0.1 } else { 0.02 };
            let y0 = ((lo - step / 2.0) / step).floor() * step;
            let y1 = ((hi + step / 2.0) / step).ceil() * step;
            let mut chart = ChartBuilder::on(area)
                .margin(16)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?;
            let grid = RGBColor(225, 225, 225);
            let mut y = y0;
            while y <= y1 + 1e-9 {
                chart
                    .draw_series(LineSeries::new([(x0, y), (x1, y)], grid))
                    .map_err(|e| err(&e))?;
                y += step;
            }
            let mut x = x0;
            while x <= x1 + 1e-9 {
                chart
                    .draw_series(LineSeries::new([(x, y0), (x, y1)], grid))
                    .map_err(|e| err(&e))?;
                x += 1.0;
            }
            let front = pareto_front(&all);
            chart
                .draw_series(LineSeries::new(
                    front.iter().map(|&i| all[i]),
                    RGBColor(150, 150, 150).stroke_width(3),
                ))
                .map_err(|e| err(&e))?;
            let fam = &all[..family.len()];
            let blue = RGBColor(31, 119, 180);
            let orange = RGBColor(255, 127, 14);
            chart
                .draw_series(LineSeries::new(fam.iter().copied(), blue))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(fam.iter().map(|&p| Circle::new(p, 5, blue.filled())))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(
                    all[family.len()..]
                        .iter()
                        .map(|&p| Circle::new(p, 5, orange.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let mut f = csipose_npy::AtomicFile::create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(&csipose_png::encode_rgb(w, h, &buf))
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pareto_front;

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        // (size, accuracy): b dominates c (smaller and better); d is the most accurate.
        let pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (4.0, 0.8), (0.5, 0.4)];
        assert_eq!(pareto_front(&pts), vec![4, 0, 1, 3]);
    }
}
