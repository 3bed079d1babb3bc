//! `csipose eval`: scores predicted keypoints (a `.npy` file, or a baseline fitted on the train
//! subset) against a packed dataset: torso-PCK@k and its curve, per-joint PCK, bounding-box PCK,
//! MPJPE and PA-MPJPE for 3D layouts. Prints a table and writes the numbers as JSON (atomically).

use super::split::{describe, make_split, KindArg};
use anyhow::{bail, Context};
use csipose_baseline::{Lambda, MeanPose, Ridge};
use csipose_dataset::split::{Split, Subset};
use csipose_dataset::{KeypointLayout, PackedDataset};
use csipose_metrics::{evaluate, thresholds, Pck, PckNorm, PoseLayout};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BaselineArg {
    /// The mean training pose for every frame.
    Mean,
    /// Ridge regression from the flattened CSI frame (alpha chosen on held-out train subjects).
    Ridge,
}

impl BaselineArg {
    pub fn name(self) -> &'static str {
        match self {
            BaselineArg::Mean => "mean",
            BaselineArg::Ridge => "ridge",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SubsetArg {
    Val,
    Train,
    All,
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

/// Joint names of a layout, for the per-joint table.
pub fn joint_names(layout: KeypointLayout) -> [&'static str; 17] {
    match layout {
        KeypointLayout::Coco17_2d => csipose_spec::coco::NAMES,
        KeypointLayout::H36m17_3d => [
            "pelvis",
            "right_hip",
            "right_knee",
            "right_ankle",
            "left_hip",
            "left_knee",
            "left_ankle",
            "spine",
            "thorax",
            "neck",
            "head",
            "left_shoulder",
            "left_elbow",
            "left_wrist",
            "right_shoulder",
            "right_elbow",
            "right_wrist",
        ],
    }
}

/// Predicts the `eval` frames with a `.csm` model file through the runtime (one frame per
/// call, frames spread over `threads`, each with its own scratch); returns the rows and the
/// kernel path used.
pub fn predict_csm(
    path: &Path,
    ds: &PackedDataset,
    eval: &[usize],
    threads: usize,
) -> anyhow::Result<(Vec<f32>, &'static str)> {
    use csipose_runtime::{ModelFile, Runtime};
    use rayon::prelude::*;
    let bytes = super::bench::read_aligned(path)?;
    let file = ModelFile::parse(bytes.bytes())
        .with_context(|| format!("invalid model file {}", path.display()))?;
    let (cfg, _) = csipose_quantize::from_model_file(&file)?;
    csipose_train::trainer::check_dataset(ds, &cfg)
        .with_context(|| format!("model file {}", path.display()))?;
    let kernel = csipose_runtime::Kernel::best();
    let mut consts = vec![0.0f32; Runtime::consts_len_for(&file.config, kernel)];
    let rt = Runtime::new(&file, kernel, &mut consts)
        .with_context(|| format!("model file {}", path.display()))?;
    let scratch_len = Runtime::scratch_len(&file.config);
    let out_len = csipose_runtime::forward::OUTPUTS;
    let mut pred = vec![0.0f32; eval.len() * out_len];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    pool.install(|| {
        pred.par_chunks_mut(out_len * 256)
            .zip(eval.par_chunks(256))
            .try_for_each(|(rows, frames)| {
                let mut scratch = vec![0.0f32; scratch_len];
                let mut out = [0.0f32; csipose_runtime::forward::OUTPUTS];
                for (row, &f) in rows.chunks_exact_mut(out_len).zip(frames) {
                    rt.forward(ds.x(f), &mut scratch, &mut out)
                        .map_err(|e| anyhow::anyhow!("frame {f}: {e}"))?;
                    row.copy_from_slice(&out);
                }
                anyhow::Ok(())
            })
    })?;
    Ok((pred, kernel.name()))
}

/// Reads predictions and returns the rows for `eval` (`[eval.len(), label_len]`).
fn load_predictions(path: &Path, ds: &PackedDataset, eval: &[usize]) -> anyhow::Result<Vec<f32>> {
    let arr = csipose_npy::read::<f32>(path)
        .with_context(|| format!("cannot read predictions {}", path.display()))?;
    let ll = ds.label_len();
    let dims = ds.info.keypoints.dims();
    let rows = match arr.shape.as_slice() {
        [r, 17, d] if *d == dims => *r,
        [r, l] if *l == ll => *r,
        s => bail!(
            "{}: shape {s:?}, expected [rows, 17, {dims}] or [rows, {ll}] for layout {}",
            path.display(),
            ds.info.keypoints.name()
        ),
    };
    if let Some(e) = arr.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {} (row {}, element {e}) is not finite",
            path.display(),
            arr.data[e],
            e / ll
        );
    }
    if rows == eval.len() {
        Ok(arr.data)
    } else if rows == ds.len() {
        Ok(eval
            .iter()
            .flat_map(|&i| arr.data[i * ll..(i + 1) * ll].iter().copied())
            .collect())
    } else {
        bail!(
            "{}: {rows} rows, but {} frames are evaluated and the dataset has {}",
            path.display(),
            eval.len(),
            ds.len()
        )
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

fn pck_json(p: &Pck) -> serde_json::Value {
    let degenerate_key = match p.norm {
        PckNorm::Torso => "degenerate_torso",
        PckNorm::BoundingBox => "degenerate_bbox",
    };
    json!({
        "k": p.k,
        "pck": p.pck,
        "per_joint": p.per_joint,
        "samples": p.samples,
        degenerate_key: p.degenerate,
    })
}

fn curve_json(c: &[Pck]) -> serde_json::Value {
    c.iter().map(|p| json!({"k": p.k, "pck": p.pck})).collect()
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
            .map(super::predict::checkpoint_path);
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
    let ds = PackedDataset::open(&args.data)
        .with_context(|| format!("cannot open dataset {}", args.data.display()))?;
    let split: Option<Split> = match args.split {
        Some(kind) => Some(make_split(
            kind,
            args.protocol,
            args.seed,
            args.ratio,
            args.config.as_deref(),
        )?),
        None => {
            if args.config.is_some() {
                bail!("--config needs --split manual");
            }
            None
        }
    };
    let subset_arg = args.subset.unwrap_or(SubsetArg::Val);
    let subset = match subset_arg {
        SubsetArg::Val => Subset::Val,
        SubsetArg::Train => Subset::Train,
        SubsetArg::All => Subset::All,
    };
    let (train, eval) = match &split {
        Some(s) => {
            let sel = s.select(&ds);
            (sel.train.clone(), sel.subset(subset))
        }
        None => (Vec::new(), (0..ds.len()).collect::<Vec<_>>()),
    };
    let what = match &split {
        Some(s) => format!(
            "{} subset of the {}",
            format!("{subset_arg:?}").to_lowercase(),
            describe(s)
        ),
        None => "all frames".to_string(),
    };
    if eval.is_empty() {
        bail!(
            "{}: the {what} selects no frames to evaluate",
            args.data.display()
        );
    }

    let mut source = serde_json::Map::new();
    let pred = match (&args.predictions, args.baseline) {
        _ if args.model.is_some() => {
            let path = args.model.as_deref().expect("checked");
            source.insert("model".into(), path.display().to_string().into());
            let (pred, kernel) = predict_csm(path, &ds, &eval, args.threads)?;
            source.insert("runtime_kernel".into(), kernel.into());
            pred
        }
        (Some(p), _) => {
            source.insert("predictions".into(), p.display().to_string().into());
            load_predictions(p, &ds, &eval)?
        }
        (None, Some(b)) => {
            if train.is_empty() {
                bail!(
                    "{}: the {} selects no training frames for the baseline",
                    args.data.display(),
                    describe(split.as_ref().expect("clap requires --split"))
                );
            }
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
                "fitting the {} baseline on {} frames",
                b.name(),
                train.len()
            ));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let pred = match b {
                BaselineArg::Mean => {
                    source.insert("baseline".into(), "mean".into());
                    MeanPose::fit(&ds, &train)?.predict(&eval)
                }
                BaselineArg::Ridge => {
                    let r = Ridge::fit(&ds, &train, &Lambda::default())?;
                    source.insert("baseline".into(), "ridge".into());
                    source.insert("ridge_alpha".into(), r.alpha.into());
                    source.insert(
                        "ridge_holdout_mse".into(),
                        r.holdout
                            .iter()
                            .map(|(a, e)| json!({"alpha": a, "mse": e}))
                            .collect(),
                    );
                    r.predict(&ds, &eval)
                }
            };
            bar.finish_and_clear();
            source.insert("train_frames".into(), train.len().into());
            pred
        }
        (None, None) => {
            let ck = args
                .checkpoint
                .as_deref()
                .expect("clap requires --predictions, --baseline or --checkpoint");
            let path = super::predict::checkpoint_path(ck);
            let (model, w) = csipose_train::checkpoint::load_model(&path)?;
            csipose_train::trainer::check_dataset(&ds, &model.cfg)?;
            let views: Vec<csipose_train::View> = if !args.views.is_empty() {
                args.views
                    .iter()
                    .map(|n| {
                        csipose_train::View::CANDIDATES
                            .into_iter()
                            .find(|v| v.name() == n)
                            .with_context(|| format!("--views: unknown view {n:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?
            } else if args.tta {
                csipose_train::View::ALL.to_vec()
            } else {
                vec![csipose_train::View::Identity]
            };
            source.insert("checkpoint".into(), path.display().to_string().into());
            source.insert(
                "tta_views".into(),
                views.iter().map(|v| v.name()).collect::<Vec<_>>().into(),
            );
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
                "predicting {} frames with {} ({} views)",
                eval.len(),
                model.cfg.name,
                views.len()
            ));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(args.threads.max(1))
                .build()?;
            let pred = pool.install(|| csipose_train::predict(&model, &w, &ds, &eval, &views));
            bar.finish_and_clear();
            pred
        }
    };

    let kl = ds.info.keypoints;
    let layout = PoseLayout {
        joints: 17,
        dims: kl.dims(),
        torso: kl.torso_joints(),
    };
    let gt: Vec<f32> = eval.iter().flat_map(|&i| ds.y(i).iter().copied()).collect();
    let ev = evaluate(&pred, &gt, &layout, args.k);
    let ks = thresholds(0.5, 50);
    let (torso, bbox) = (&ev.torso_pck, &ev.bbox_pck);
    let (torso_curve, bbox_curve) = (&ev.torso_pck_curve, &ev.bbox_pck_curve);
    let is3d = kl.dims() == 3;
    let (mp, pa, mpj) = (ev.mpjpe, ev.pa_mpjpe, &ev.mpjpe_per_joint);

    // The table.
    let k = args.k;
    println!(
        "csipose eval: {} frames ({what}) of {}, layout {}",
        eval.len(),
        args.data.display(),
        kl.name()
    );
    match (&args.predictions, args.baseline) {
        _ if args.model.is_some() => println!(
            "model file: {} (no_std runtime, batch 1)",
            args.model.as_deref().unwrap_or(Path::new("")).display()
        ),
        (Some(p), _) => println!("predictions: {}", p.display()),
        (None, Some(b)) => println!(
            "baseline: {} fitted on {} train frames",
            b.name(),
            train.len()
        ),
        (None, None) => println!(
            "checkpoint: {}{}",
            args.checkpoint
                .as_deref()
                .unwrap_or(Path::new(""))
                .display(),
            if args.tta { " with TTA (4 views)" } else { "" }
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

    if let Some(out) = &args.json {
        let report = json!({
            "data": args.data.display().to_string(),
            "layout": kl.name(),
            "source": source,
            "split": split.as_ref().map(|s| {
                let mut j = super::split::split_json(s);
                j.as_object_mut().expect("object").remove("actions");
                j["subset"] = format!("{subset_arg:?}").to_lowercase().into();
                j
            }),
            "frames": eval.len(),
            "k": k,
            "joints": joint_names(kl),
            "torso_pck": pck_json(torso),
            "torso_pck_curve": curve_json(torso_curve),
            "bbox_pck": pck_json(bbox),
            "bbox_pck_curve": curve_json(bbox_curve),
            "mpjpe": mp,
            "pa_mpjpe": pa,
            "mpjpe_per_joint": mpj,
        });
        super::write_json(out, &report)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
