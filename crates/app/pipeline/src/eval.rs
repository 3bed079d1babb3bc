//! Scoring keypoints against a packed dataset ([`run`] with [`EvalOptions`]): predictions
//! from a `.npy` file, a baseline fitted on the split's train subset, a trained run's EMA
//! weights (averaged over test-time views) or a `.csm` file through the no_std runtime, on a
//! split's subset or every frame. Returns every metric (torso-PCK@k and its curve, per-joint
//! and bounding-box PCK, MPJPE and PA-MPJPE for 3D layouts) as an [`EvalOutcome`], which also
//! gives the JSON report ([`EvalOutcome::report_json`]).

use crate::split::{describe, split_json, SplitOptions};
use anyhow::{bail, Context};
use csipose_baseline::{Lambda, MeanPose, Ridge};
use csipose_dataset::split::{Split, Subset};
use csipose_dataset::{KeypointLayout, PackedDataset};
use csipose_metrics::{evaluate, Evaluation, Pck, PckNorm, PoseLayout};
use csipose_train::View;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A baseline fitted on the train subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// The mean training pose for every frame.
    Mean,
    /// Ridge regression from the flattened CSI frame (alpha chosen on held-out train subjects).
    Ridge,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Mean => "mean",
            Baseline::Ridge => "ridge",
        }
    }
}

/// Where the evaluated keypoints come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Predicted keypoints, float `[rows, 17, dims]` (or `[rows, 17*dims]`): one row per
    /// evaluated frame, or one per dataset frame (then the split selects the rows).
    Predictions(PathBuf),
    /// A trained run's EMA weights (the run directory or its checkpoint.safetensors), the
    /// predictions of these views averaged.
    Checkpoint { path: PathBuf, views: Vec<View> },
    /// A `.csm` model file run through the no_std runtime, one frame at a time, as deployed.
    Model(PathBuf),
    /// A baseline fitted on the split's train subset (needs a split).
    Baseline(Baseline),
}

/// One evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Packed dataset directory.
    pub data: PathBuf,
    pub source: Source,
    /// The split that chooses the evaluated frames (`None`: every frame).
    pub split: Option<SplitOptions>,
    /// Which frames of the split are evaluated.
    pub subset: Subset,
    /// PCK threshold factor k.
    pub k: f64,
    /// Threads for prediction (checkpoints and model files).
    pub threads: usize,
}

/// What an evaluation measured.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    /// The dataset, as given.
    pub data: PathBuf,
    pub layout: KeypointLayout,
    /// The split built from the options, if any, and its evaluated subset.
    pub split: Option<Split>,
    pub subset: Subset,
    /// The evaluated frames in words, e.g. `val subset of the random split (seed 0, ratio
    /// 0.8), protocol 3`.
    pub what: String,
    /// Frames evaluated.
    pub frames: usize,
    /// Frames a baseline was fitted on (0 for the other sources).
    pub train_frames: usize,
    /// The source as the JSON report records it (paths, baseline settings, views, kernel).
    pub source: serde_json::Map<String, serde_json::Value>,
    pub k: f64,
    pub metrics: Evaluation,
}

/// The subset's name as reports spell it.
fn subset_name(s: Subset) -> &'static str {
    match s {
        Subset::Train => "train",
        Subset::Val => "val",
        Subset::All => "all",
    }
}

/// Evaluates; `bar` spins while a baseline is fitted or a checkpoint predicts.
pub fn run(opts: &EvalOptions, bar: &ProgressBar) -> anyhow::Result<EvalOutcome> {
    let ds = PackedDataset::open(&opts.data)
        .with_context(|| format!("cannot open dataset {}", opts.data.display()))?;
    let split: Option<Split> = opts.split.as_ref().map(SplitOptions::build).transpose()?;
    let subset = opts.subset;
    let (train, eval) = match &split {
        Some(s) => {
            let sel = s.select(&ds);
            (sel.train.clone(), sel.subset(subset))
        }
        None => (Vec::new(), (0..ds.len()).collect::<Vec<_>>()),
    };
    let what = match &split {
        Some(s) => format!("{} subset of the {}", subset_name(subset), describe(s)),
        None => "all frames".to_string(),
    };
    if eval.is_empty() {
        bail!(
            "{}: the {what} selects no frames to evaluate",
            opts.data.display()
        );
    }

    let spin = |msg: String| {
        bar.set_style(ProgressStyle::default_spinner());
        bar.set_message(msg);
        bar.enable_steady_tick(Duration::from_millis(200));
    };
    let mut source = serde_json::Map::new();
    let mut train_frames = 0;
    let pred = match &opts.source {
        Source::Model(path) => {
            source.insert("model".into(), path.display().to_string().into());
            let (pred, kernel) = predict_csm(path, &ds, &eval, opts.threads)?;
            source.insert("runtime_kernel".into(), kernel.into());
            pred
        }
        Source::Predictions(p) => {
            source.insert("predictions".into(), p.display().to_string().into());
            load_predictions(p, &ds, &eval)?
        }
        Source::Baseline(b) => {
            let Some(split) = &split else {
                bail!("the {} baseline needs a split to fit on", b.name());
            };
            if train.is_empty() {
                bail!(
                    "{}: the {} selects no training frames for the baseline",
                    opts.data.display(),
                    describe(split)
                );
            }
            spin(format!(
                "fitting the {} baseline on {} frames",
                b.name(),
                train.len()
            ));
            let pred = match b {
                Baseline::Mean => {
                    source.insert("baseline".into(), "mean".into());
                    MeanPose::fit(&ds, &train)?.predict(&eval)
                }
                Baseline::Ridge => {
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
            train_frames = train.len();
            pred
        }
        Source::Checkpoint { path, views } => {
            let path = crate::train::checkpoint_path(path);
            let (model, w) = csipose_train::checkpoint::load_model(&path)?;
            csipose_train::trainer::check_dataset(&ds, &model.cfg)?;
            source.insert("checkpoint".into(), path.display().to_string().into());
            source.insert(
                "tta_views".into(),
                views.iter().map(|v| v.name()).collect::<Vec<_>>().into(),
            );
            spin(format!(
                "predicting {} frames with {} ({} views)",
                eval.len(),
                model.cfg.name,
                views.len()
            ));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(opts.threads.max(1))
                .build()?;
            let pred = pool.install(|| csipose_train::predict(&model, &w, &ds, &eval, views));
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
    let metrics = evaluate(&pred, &gt, &layout, opts.k);
    Ok(EvalOutcome {
        data: opts.data.clone(),
        layout: kl,
        split,
        subset,
        what,
        frames: eval.len(),
        train_frames,
        source,
        k: opts.k,
        metrics,
    })
}

impl EvalOutcome {
    /// torso-PCK at k (`None` when every frame's torso is degenerate).
    pub fn torso_pck(&self) -> Option<f64> {
        self.metrics.torso_pck.pck
    }

    /// The JSON report `csipose eval --json` writes.
    pub fn report_json(&self) -> serde_json::Value {
        let ev = &self.metrics;
        json!({
            "data": self.data.display().to_string(),
            "layout": self.layout.name(),
            "source": self.source,
            "split": self.split.as_ref().map(|s| {
                let mut j = split_json(s);
                j.as_object_mut().expect("object").remove("actions");
                j["subset"] = subset_name(self.subset).into();
                j
            }),
            "frames": self.frames,
            "k": self.k,
            "joints": joint_names(self.layout),
            "torso_pck": pck_json(&ev.torso_pck),
            "torso_pck_curve": curve_json(&ev.torso_pck_curve),
            "bbox_pck": pck_json(&ev.bbox_pck),
            "bbox_pck_curve": curve_json(&ev.bbox_pck_curve),
            "mpjpe": ev.mpjpe,
            "pa_mpjpe": ev.pa_mpjpe,
            "mpjpe_per_joint": ev.mpjpe_per_joint,
        })
    }
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
fn predict_csm(
    path: &Path,
    ds: &PackedDataset,
    eval: &[usize],
    threads: usize,
) -> anyhow::Result<(Vec<f32>, &'static str)> {
    use csipose_runtime::{ModelFile, Runtime};
    use rayon::prelude::*;
    let bytes = crate::bench::read_aligned(path)?;
    let file = ModelFile::parse(bytes.bytes())
        .with_context(|| format!("invalid model file {}", path.display()))?;
    let (cfg, _) = csipose_quantize::from_model_file(&file)?;
    csipose_train::trainer::check_dataset(ds, &cfg)
        .with_context(|| format!("model file {}", path.display()))?;
    let kernel = csipose_runtime::Kernel::best();
    let mut consts = vec![0.0f32; Runtime::consts_len_for_file(&file, kernel)];
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
    Ok((pred, rt.run_kernel().name()))
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
