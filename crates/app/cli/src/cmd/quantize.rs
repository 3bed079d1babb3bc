//! `csipose quantize`: the flags that turn a trained run into a `.csm` model file (fp32, int8 or
//! int4 weights, per tensor or per output channel, post-training or after a QAT fine-tune),
//! checked (outputs apart from the inputs and from each other) and turned into
//! [`QuantizeOptions`]; the pipeline quantizes (with a progress bar for QAT) and writes the file,
//! this prints the file size by part and, when the dataset is at hand, torso-PCK@20 of fp32 vs
//! the quantized model on the run's validation split.

use anyhow::{bail, Result};
use csipose_pipeline::quantize::{KeepF32, Qat, QuantizeOptions, QuantizeOutcome};
use csipose_quantize::{Bits, ScaleRule};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleArg {
    /// scale = max|w| / qmax (nothing clipped).
    MaxAbs,
    /// Clipping ratio searched per group for the least squared error.
    Mse,
}

#[derive(clap::Args)]
pub struct Args {
    /// Trained run (its directory or checkpoint.safetensors); its EMA weights are quantized.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Weight precision: 8, 4, or 32 for an unquantized (fp32) model file.
    #[arg(long, value_parser = ["32", "8", "4"])]
    pub bits: String,
    /// One scale per output channel instead of one per tensor.
    #[arg(long)]
    pub per_channel: bool,
    /// How scales are chosen.
    #[arg(long, value_enum, default_value = "max-abs")]
    pub scale: ScaleArg,
    /// Linear weights to keep f32 besides biases, norms and embeddings (comma-separated
    /// names, or `none`) [default: graph.output.weight where the model has it].
    #[arg(long, value_delimiter = ',')]
    pub keep_f32: Vec<String>,
    /// Quantization-aware training: fine-tune from the checkpoint with fake-quantised weights
    /// before quantizing (needs the dataset).
    #[arg(long)]
    pub qat: bool,
    /// QAT epochs.
    #[arg(long, default_value_t = 5, requires = "qat")]
    pub epochs: usize,
    /// QAT peak learning rate (cosine down to a hundredth of it).
    #[arg(long, default_value_t = 3e-4, requires = "qat")]
    pub lr: f32,
    /// Directory for the QAT run's checkpoint [default: the output path with `.qat`].
    #[arg(long, requires = "qat")]
    pub qat_run: Option<PathBuf>,
    /// Packed dataset for QAT and evaluation [default: the run's dataset, when found].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Threads for QAT and prediction.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Model file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the numbers as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(mut args: Args) -> Result<()> {
    use crate::validate;
    validate::above("--lr", args.lr as f64, 0.0, 1.0)?;
    args.threads = validate::threads("--threads", args.threads);
    let ck = csipose_pipeline::train::checkpoint_path(&args.checkpoint);
    let run_dir = ck.parent().unwrap_or(Path::new("."));
    let inputs = validate::inputs(&[
        Some(&args.checkpoint),
        Some(&ck),
        Some(run_dir),
        args.data.as_deref(),
    ]);
    validate::output_file("--out", &args.out, &inputs)?;
    if let Some(j) = &args.json {
        validate::output_file("--json", j, &inputs)?;
    }
    let qrun = args
        .qat_run
        .clone()
        .unwrap_or_else(|| args.out.with_extension("qat"));
    if args.qat {
        validate::output_dir("--qat-run", &qrun, &inputs)?;
    }
    validate::distinct_outputs(&[
        ("--out", Some(&args.out)),
        ("--json", args.json.as_deref()),
        ("--qat-run", args.qat.then_some(qrun.as_path())),
    ])?;
    let bits = Bits::from_count(args.bits.parse().expect("clap checked")).expect("clap checked");
    if args.qat && bits == Bits::F32 {
        bail!("--qat needs --bits 8 or 4");
    }
    let opts = QuantizeOptions {
        checkpoint: args.checkpoint.clone(),
        bits,
        per_channel: args.per_channel,
        scale: match args.scale {
            ScaleArg::MaxAbs => ScaleRule::MaxAbs,
            ScaleArg::Mse => ScaleRule::Mse,
        },
        keep_f32: match args.keep_f32.as_slice() {
            [] => KeepF32::Default,
            [n] if n == "none" => KeepF32::None,
            names => KeepF32::Names(names.to_vec()),
        },
        qat: args.qat.then_some(Qat {
            epochs: args.epochs,
            lr: args.lr,
            run: qrun,
        }),
        data: args.data.clone(),
        threads: args.threads,
        out: args.out.clone(),
    };
    let outcome = csipose_pipeline::quantize::run(&opts, &ProgressBar::new(0))?;
    print(&outcome);
    if let Some(out) = &args.json {
        csipose_pipeline::write_json(out, &outcome.report_json())?;
    }
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.2}", 100.0 * v))
}

/// The file written, its size by part and, when scored, fp32 against the quantized model.
pub fn print(o: &QuantizeOutcome) {
    let b = &o.bytes;
    println!(
        "{}: {} {} ({} parameters), {}",
        o.out.display(),
        o.model,
        o.spec.label(),
        o.parameters,
        match &o.qat {
            Some(q) => format!("after {} QAT epochs", q.epochs),
            None => "post-training".into(),
        }
    );
    let line = |what: &str, n: usize| {
        println!(
            "  {what:<44} {n:>9} bytes  {:>5.1}%",
            100.0 * n as f64 / b.total as f64
        )
    };
    line("file", b.total);
    line(
        &format!("quantized weights ({} values)", b.quantized_values),
        b.quantized_weights,
    );
    line("scales (f32)", b.scales);
    line(
        &format!("f32 tensors ({} values)", b.f32_values),
        b.f32_tensors,
    );
    line("header + tensor table + CRC", b.header_table_crc);
    line("alignment padding", b.padding);

    let Some(s) = &o.scores else {
        return;
    };
    println!("torso-PCK@20 on {} validation frames:", s.val_frames);
    println!("  {:<58} {}", "fp32 (checkpoint EMA)", pct(s.fp32));
    if let (Some(p), Some(m)) = (s.ptq, s.qat_fp32_master) {
        println!(
            "  {:<58} {}",
            format!("{} PTQ (no QAT)", o.spec.label()),
            pct(p)
        );
        println!("  {:<58} {}", "QAT fp32 master EMA", pct(m));
    }
    let label = format!(
        "{}{}",
        o.spec.label(),
        if o.qat.is_some() { " QAT" } else { "" }
    );
    println!(
        "  {label:<58} {}  ({:+.2} points)",
        pct(s.quantized),
        100.0 * (s.quantized.unwrap_or(f64::NAN) - s.fp32.unwrap_or(f64::NAN))
    );
}
