//! `csipose eval`: the flags of an evaluation (predicted keypoints in a `.npy` file, a
//! baseline fitted on the train subset, a checkpoint or a `.csm` file, against a packed
//! dataset), checked and turned into [`EvalOptions`]; the pipeline scores, this prints the
//! table (torso-PCK@k and its curve, per-joint PCK, bounding-box PCK, MPJPE and PA-MPJPE for 3D
//! layouts) and writes the numbers as JSON (atomically).

use super::split::{split_options, KindArg};
use anyhow::{bail, Context};
use csipose_dataset::split::Subset;
use csipose_metrics::thresholds;
use csipose_pipeline::eval::{joint_names, Baseline, EvalOptions, EvalOutcome, Source};
use csipose_train::View;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BaselineArg {
    /// The mean training pose for every frame.
    Mean,
    /// Ridge regression from the flattened CSI frame (alpha chosen on held-out train subjects).
    Ridge,
}

impl From<BaselineArg> for Baseline {
    fn from(b: BaselineArg) -> Baseline {
        match b {
            BaselineArg::Mean => Baseline::Mean,
            BaselineArg::Ridge => Baseline::Ridge,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SubsetArg {
    Val,
    Train,
    All,
}

impl From<SubsetArg> for Subset {
    fn from(s: SubsetArg) -> Subset {
        match s {
            SubsetArg::Val => Subset::Val,
            SubsetArg::Train => Subset::Train,
            SubsetArg::All => Subset::All,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Packed dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Predicted keypoints, float `[rows, 17, dims]` (or `[rows, 17*dims]`): one row per evaluated
    /// frame, or one per dataset frame (then the split selects the rows).
    #[arg(
        long,
        conflicts_with = "baseline",
        required_unless_present_any = ["baseline", "checkpoint", "model"]
    )]
    pub predictions: Option<PathBuf>,
    /// Instead of --predictions: predict with a trained run's EMA weights (the run directory or
    /// its checkpoint.safetensors).
    #[arg(long, conflicts_with_all = ["predictions", "baseline"])]
    pub checkpoint: Option<PathBuf>,
    /// Instead of --predictions: run a `.csm` model file (fp32, int8 or int4, from
    /// `csipose quantize`) through the no_std runtime, one frame at a time, as deployed.
    #[arg(long, conflicts_with_all = ["predictions", "baseline", "checkpoint"])]
    pub model: Option<PathBuf>,
    /// With --checkpoint: average the predictions of the four test-time views.
    #[arg(long, requires = "checkpoint")]
    pub tta: bool,
    /// With --checkpoint: average exactly these views instead (comma-separated names:
    /// identity, packets-reversed, packets-rolled, antenna-gain, channel-a, channel-b).
    #[arg(
        long,
        requires = "checkpoint",
        conflicts_with = "tta",
        value_delimiter = ','
    )]
    pub views: Vec<String>,
    /// With --checkpoint: threads for prediction.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Instead of --predictions: fit this baseline on the split's train subset and evaluate it.
    #[arg(long, value_enum, requires = "split")]
    pub baseline: Option<BaselineArg>,
    /// Split that chooses the evaluated frames (without it every frame is evaluated).
    #[arg(long, value_enum)]
    pub split: Option<KindArg>,
    /// MM-Fi protocol: 1 = daily actions, 2 = rehabilitation actions, 3 = all 27.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub protocol: u8,
    /// Random split: seed of the first action.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Random split: fraction of subjects that train.
    #[arg(long, default_value_t = 0.8)]
    pub ratio: f64,
    /// Manual split: JSON file (see `csipose split --help`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Which frames of the split are evaluated [default: val].
    #[arg(long, value_enum, requires = "split")]
    pub subset: Option<SubsetArg>,
    /// PCK threshold factor k.
    #[arg(long, default_value_t = 0.2)]
    pub k: f64,
    /// Write the metrics as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

pub fn run(mut args: Args) -> anyhow::Result<()> {
    use crate::validate;
    validate::closed("--k", args.k, 0.0, 10.0)?;
    validate::closed("--ratio", args.ratio, 0.0, 1.0)?;
    args.threads = validate::threads("--threads", args.threads);
    if let Some(out) = &args.json {
        let ck = args
            .checkpoint
            .as_deref()
            .map(csipose_pipeline::train::checkpoint_path);
        let inputs = validate::inputs(&[
            Some(&args.data),
            args.predictions.as_deref(),
            args.checkpoint.as_deref(),
            ck.as_deref(),
            args.model.as_deref(),
            args.config.as_deref(),
        ]);
        validate::output_file("--json", out, &inputs)?;
    }
    if args.split.is_none() && args.config.is_some() {
        bail!("--config needs --split manual");
    }
    let source = match (&args.model, &args.predictions, args.baseline) {
        (Some(m), _, _) => Source::Model(m.clone()),
        (None, Some(p), _) => Source::Predictions(p.clone()),
        (None, None, Some(b)) => Source::Baseline(b.into()),
        (None, None, None) => {
            let views: Vec<View> = if !args.views.is_empty() {
                args.views
                    .iter()
                    .map(|n| {
                        View::CANDIDATES
                            .into_iter()
                            .find(|v| v.name() == n)
                            .with_context(|| format!("--views: unknown view {n:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?
            } else if args.tta {
                View::ALL.to_vec()
            } else {
                vec![View::Identity]
            };
            Source::Checkpoint {
                path: args
                    .checkpoint
                    .clone()
                    .expect("clap requires --predictions, --baseline or --checkpoint"),
                views,
            }
        }
    };
    let opts = EvalOptions {
        data: args.data.clone(),
        source,
        split: args.split.map(|kind| {
            split_options(
                kind,
                args.protocol,
                args.seed,
                args.ratio,
                args.config.as_deref(),
            )
        }),
        subset: args.subset.unwrap_or(SubsetArg::Val).into(),
        k: args.k,
        threads: args.threads,
    };
    let outcome = csipose_pipeline::eval::run(&opts, &ProgressBar::new(0))?;
    print(&opts, &outcome, args.tta);
    if let Some(out) = &args.json {
        write_report(&outcome, out)?;
    }
    Ok(())
}

/// Writes the JSON report and says so.
pub fn write_report(o: &EvalOutcome, path: &Path) -> anyhow::Result<()> {
    csipose_pipeline::write_json(path, &o.report_json())?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The table: what was evaluated, PCK at k and along the curve, per joint.
pub fn print(opts: &EvalOptions, o: &EvalOutcome, tta: bool) {
    let kl = o.layout;
    let ev = &o.metrics;
    let ks = thresholds(0.5, 50);
    let (torso, bbox) = (&ev.torso_pck, &ev.bbox_pck);
    let (torso_curve, bbox_curve) = (&ev.torso_pck_curve, &ev.bbox_pck_curve);
    let is3d = kl.dims() == 3;
    let (mp, pa, mpj) = (ev.mpjpe, ev.pa_mpjpe, &ev.mpjpe_per_joint);
    let k = o.k;
    println!(
        "csipose eval: {} frames ({}) of {}, layout {}",
        o.frames,
        o.what,
        o.data.display(),
        kl.name()
    );
    match &opts.source {
        Source::Model(m) => println!("model file: {} (no_std runtime, batch 1)", m.display()),
        Source::Predictions(p) => println!("predictions: {}", p.display()),
        Source::Baseline(b) => println!(
            "baseline: {} fitted on {} train frames",
            b.name(),
            o.train_frames
        ),
        Source::Checkpoint { path, .. } => println!(
            "checkpoint: {}{}",
            path.display(),
            if tta { " with TTA (4 views)" } else { "" }
        ),
    }
    let line = |label: String, value: Option<f64>, note: String| {
        println!("{label:<40}{}{note}", fmt(value));
    };
    line(
        format!("torso-PCK@{k}"),
        torso.pck,
        format!(
            "  ({} frames; {} with a degenerate torso left out)",
            torso.samples, torso.degenerate
        ),
    );
    line(
        format!("bbox-PCK@{k} (bounding-box-normalised)"),
        bbox.pck,
        format!("  ({} with a degenerate box left out)", bbox.degenerate),
    );
    if is3d {
        line("MPJPE".into(), mp, String::new());
        line("PA-MPJPE".into(), pa, String::new());
    }
    println!("threshold k   torso-PCK   bbox-PCK");
    for i in [5usize, 10, 20, 30, 40, 50] {
        println!(
            "  {:<11} {:<11} {}",
            format!("{:.2}", ks[i]),
            fmt(torso_curve[i].pck),
            fmt(bbox_curve[i].pck)
        );
    }
    println!(
        "joint             torso-PCK@{k}  bbox-PCK@{k}{}",
        if is3d { "  MPJPE" } else { "" }
    );
    for (j, name) in joint_names(kl).iter().enumerate() {
        let extra = mpj
            .as_ref()
            .map_or(String::new(), |m| format!("  {}", fmt(m[j])));
        println!(
            "  {j:2} {name:<14} {:<13} {:<12}{extra}",
            fmt(torso.per_joint[j]),
            fmt(bbox.per_joint[j])
        );
    }
}
