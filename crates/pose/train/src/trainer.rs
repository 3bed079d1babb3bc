//! The training loop: batches from a packed dataset by index list, mixup, forward/backward,
//! SmoothL1, AdamW with the cosine schedule, EMA; per-epoch validation with the EMA weights,
//! atomic checkpoints each epoch and exact resume; prediction with optional TTA; optional
//! quantization-aware training ([`TrainOptions::qat`]: fake-quantised Linear weights in the
//! forward pass, straight-through gradients into the f32 master weights).

use crate::augment::{CsiAugment, MixPlan, View};
use crate::checkpoint;
use crate::optim::{ema_update, smooth_l1_sum, AdamW, Schedule};
use crate::torso_pck;
use anyhow::{bail, Context, Result};
use csipose_dataset::{KeypointLayout, PackedDataset};
use csipose_metrics::{pck_curve, PckNorm, PoseLayout};
use csipose_model::layers::with_single_threaded;
use csipose_model::rng::splitmix64;
use csipose_model::{Model, ModelConfig, Rng, Workspace, OUTPUTS};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Training hyper-parameters (saved in `config.json` and the checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub model: String,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub weight_decay: f32,
    /// Warmup length as a fraction of all steps.
    pub warmup_fraction: f32,
    pub ema_decay: f32,
    /// Mixup α (λ ~ Beta(α, α)); 0 turns mixup off.
    pub mixup_alpha: f64,
    pub dropout: f32,
    pub huber_beta: f32,
    pub seed: u64,
    /// Train-time view augmentation: each sample is replaced by one of the TTA views
    /// ([`View::ALL`], identity included) drawn uniformly, so the model sees what TTA shows it.
    #[serde(default)]
    pub view_augment: bool,
    /// Quantization-aware training: each step runs forward and backward on the fake-quantised
    /// weights `Q(w)` (scales from the current weights) and applies the gradient to the f32
    /// master weights through the straight-through estimator; validation and
    /// [`Trainer::predict_ema`] use `Q(EMA)`. `None` (the default) is plain training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<csipose_quantize::Spec>,
    /// Train-time CSI augmentation (random static frequency response, noise); see
    /// [`CsiAugment`]. Off in checkpoints written before it existed.
    #[serde(default)]
    pub augment: CsiAugment,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            model: "micro".into(),
            epochs: 30,
            batch: 64,
            lr: 1e-3,
            min_lr: 1e-5,
            weight_decay: 0.05,
            warmup_fraction: 0.05,
            ema_decay: 0.998,
            mixup_alpha: 0.2,
            dropout: 0.1,
            huber_beta: 0.1,
            seed: 0,
            view_augment: false,
            qat: None,
            augment: CsiAugment::default(),
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f32,
    pub val_torso_pck20: Option<f64>,
    pub lr: f32,
    pub samples_per_s: f64,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// The RNG after the last completed epoch (each epoch reseeds from seed and epoch, so
    /// this is for the record and for checking).
    pub rng: Rng,
    pub steps_per_epoch: u64,
    pub history: Vec<EpochRecord>,
}

/// One thread's share of a batch: its activations, output gradient and weight gradients.
#[derive(Default)]
struct Shard {
    ws: Workspace,
    dout: Vec<f32>,
    grads: Vec<f32>,
}

/// A model being trained: weights, EMA, optimiser state and reusable buffers.
pub struct Trainer {
    pub model: Model,
    pub opts: TrainOptions,
    pub params: Vec<f32>,
    pub ema: Vec<f32>,
    pub opt: AdamW,
    pub schedule: Schedule,
    pub state: TrainState,
    shards: Vec<Shard>,
    grads: Vec<f32>,
    xb: Vec<f32>,
    yb: Vec<f32>,
    qat: Option<Qat>,
}

/// QAT state: the fake quantiser, `Q(params)` of the current step and its scales.
struct Qat {
    fq: csipose_quantize::FakeQuant,
    qparams: Vec<f32>,
    scales: Vec<f32>,
}

fn epoch_rng(seed: u64, epoch: usize) -> Rng {
    let mut s = seed ^ 0x5EED_0000_0000_0000;
    let a = splitmix64(&mut s);
    Rng::new(a ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Checks the dataset holds COCO-17 2D keypoints of the model's input shape.
pub fn check_dataset(ds: &PackedDataset, cfg: &ModelConfig) -> Result<()> {
    if ds.info.keypoints != KeypointLayout::Coco17_2d {
        bail!(
            "{}: keypoints are {}, the pose models need coco17-2d",
            ds.dir.display(),
            ds.info.keypoints.name()
        );
    }
    let h = &ds.info.hardware;
    if (h.antennas, h.subcarriers, h.packets) != (cfg.antennas, cfg.subcarriers, cfg.packets) {
        bail!(
            "{}: frames are [{}, {}, {}], the model expects [{}, {}, {}]",
            ds.dir.display(),
            h.antennas,
            h.subcarriers,
            h.packets,
            cfg.antennas,
            cfg.subcarriers,
            cfg.packets
        );
    }
    Ok(())
}

impl Trainer {
    /// A fresh trainer for `n_train` training samples of input shape `[a, s, p]`.
    pub fn new(opts: TrainOptions, input: [usize; 3], n_train: usize) -> Result<Trainer> {
        let mut cfg = ModelConfig::preset_for(&opts.model, input[0], input[1], input[2])
            .with_context(|| format!("unknown model {:?}", opts.model))?;
        cfg.dropout = opts.dropout;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("model {}: {e}", cfg.name))?;
        if opts.batch == 0 || opts.epochs == 0 {
            bail!("batch and epochs must be positive");
        }
        if n_train == 0 {
            bail!("the training subset is empty");
        }
        let model = Model::new(cfg);
        let params = model.init_params(opts.seed);
        let steps_per_epoch = (n_train / opts.batch).max(1) as u64;
        let total = steps_per_epoch * opts.epochs as u64;
        let schedule = Schedule {
            lr: opts.lr,
            min_lr: opts.min_lr,
            warmup: ((total as f32 * opts.warmup_fraction) as u64).max(1),
            total,
        };
        let opt = AdamW::new(&model.layout, opts.weight_decay);
        let n = params.len();
        Ok(Trainer {
            ema: params.clone(),
            params,
            opt,
            schedule,
            state: TrainState {
                epoch: 0,
                step: 0,
                rng: epoch_rng(opts.seed, 0),
                steps_per_epoch,
                history: Vec::new(),
            },
            shards: Vec::new(),
            grads: vec![0.0; n],
            xb: Vec::new(),
            yb: Vec::new(),
            qat: None,
            model,
            opts,
        })
    }

    /// A trainer that fine-tunes `weights` (e.g. a run's EMA weights) of `cfg` with fresh
    /// optimiser state and schedule: params and EMA both start at `weights`. Used for QAT.
    pub fn fine_tune(
        opts: TrainOptions,
        cfg: &ModelConfig,
        weights: &[f32],
        n_train: usize,
    ) -> Result<Trainer> {
        if let Some(spec) = &opts.qat {
            spec.check(cfg)?;
        }
        let opts = TrainOptions {
            model: cfg.name.clone(),
            ..opts
        };
        let mut t = Trainer::new(opts, [cfg.antennas, cfg.subcarriers, cfg.packets], n_train)?;
        let fresh = ModelConfig {
            dropout: cfg.dropout,
            ..t.model.cfg.clone()
        };
        if &fresh != cfg {
            bail!(
                "{} is not the {} preset for its input shape; cannot fine-tune it",
                cfg.name,
                cfg.name
            );
        }
        if weights.len() != t.params.len() {
            bail!(
                "{} has {} parameters, got {}",
                cfg.name,
                t.params.len(),
                weights.len()
            );
        }
        t.params.copy_from_slice(weights);
        t.ema.copy_from_slice(weights);
        Ok(t)
    }

    /// Rebuilds a trainer from saved tensors and state (used by [`checkpoint::load`]).
    pub fn from_parts(
        opts: TrainOptions,
        cfg: ModelConfig,
        params: Vec<f32>,
        ema: Vec<f32>,
        opt: AdamW,
        schedule: Schedule,
        state: TrainState,
    ) -> Trainer {
        let model = Model::new(cfg);
        let n = params.len();
        Trainer {
            model,
            opts,
            params,
            ema,
            opt,
            schedule,
            state,
            shards: Vec::new(),
            grads: vec![0.0; n],
            xb: Vec::new(),
            yb: Vec::new(),
            qat: None,
        }
    }

    /// One optimiser step on the samples `idx` (mixup drawn from `rng`). Returns the loss.
    pub fn step(&mut self, ds: &PackedDataset, idx: &[usize], rng: &mut Rng) -> f32 {
        let b = idx.len();
        let (fl, ol) = (self.model.cfg.frame_len(), OUTPUTS);
        self.xb.resize(b * fl, 0.0);
        self.yb.resize(b * ol, 0.0);
        // Gather the batch straight from the memory map, mixed as it is copied.
        let plan = MixPlan::draw(rng, self.opts.mixup_alpha, b);
        let (xb, yb) = (&mut self.xb, &mut self.yb);
        xb.par_chunks_mut(fl)
            .zip(yb.par_chunks_mut(ol))
            .enumerate()
            .for_each(|(k, (xr, yr))| match &plan {
                None => {
                    xr.copy_from_slice(ds.x(idx[k]));
                    yr.copy_from_slice(ds.y(idx[k]));
                }
                Some(p) => {
                    let j = idx[p.partner[k]];
                    p.mix(ds.x(idx[k]), ds.x(j), xr);
                    p.mix(ds.y(idx[k]), ds.y(j), yr);
                }
            });
        if self.opts.view_augment {
            let c = &self.model.cfg;
            let (a, sc, p) = (c.antennas, c.subcarriers, c.packets);
            let views: Vec<View> = (0..b)
                .map(|_| View::ALL[rng.below(View::ALL.len())])
                .collect();
            self.xb.par_chunks_mut(fl).zip(views).for_each(|(xr, v)| {
                if v != View::Identity {
                    let orig = xr.to_vec();
                    v.apply(&orig, xr, a, sc, p);
                }
            });
        }
        let mut key_state = self.opts.seed ^ self.state.step.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let key = splitmix64(&mut key_state);
        if self.opts.augment.active() {
            // Each sample's augmentation seed comes from (seed, step, position in the batch),
            // not from `rng`, so runs without augmentation keep their random streams.
            let c = &self.model.cfg;
            let (a, sc, p) = (c.antennas, c.subcarriers, c.packets);
            let aug = &self.opts.augment;
            self.xb.par_chunks_mut(fl).enumerate().for_each(|(k, xr)| {
                let mut st =
                    key ^ 0xA076_1D64_78BD_642F ^ (k as u64).wrapping_mul(0xE703_7ED1_A0B4_28DB);
                aug.apply(xr, a, sc, p, splitmix64(&mut st));
            });
        }
        // Data parallel: one shard of the batch per thread, each a whole forward/backward on
        // its own workspace with single-threaded matrix products; gradients summed in shard
        // order (deterministic for a thread count).
        let n_shards = rayon::current_num_threads().clamp(1, b);
        self.shards.resize_with(n_shards, Shard::default);
        let total = (b * ol) as f32;
        let params = match &self.opts.qat {
            None => &self.params,
            Some(spec) => {
                let q = self.qat.get_or_insert_with(|| Qat {
                    fq: csipose_quantize::FakeQuant::new(&self.model.cfg, spec),
                    qparams: Vec::new(),
                    scales: Vec::new(),
                });
                q.fq.apply(&self.params, &mut q.qparams, &mut q.scales);
                &q.qparams
            }
        };
        let model = &self.model;
        let (xb, yb, beta) = (&self.xb, &self.yb, self.opts.huber_beta);
        let plen = params.len();
        let loss: f64 = self
            .shards
            .par_iter_mut()
            .enumerate()
            .map(|(s, sh)| {
                let (lo, hi) = (s * b / n_shards, (s + 1) * b / n_shards);
                let n = hi - lo;
                with_single_threaded(|| {
                    let mut ks = key ^ (s as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let skey = splitmix64(&mut ks);
                    let out =
                        model.forward(params, &xb[lo * fl..hi * fl], n, Some(skey), &mut sh.ws);
                    sh.dout.resize(n * ol, 0.0);
                    let l = smooth_l1_sum(out, &yb[lo * ol..hi * ol], beta, total, &mut sh.dout);
                    sh.grads.resize(plen, 0.0);
                    sh.grads.fill(0.0);
                    model.backward(params, n, &sh.dout, &mut sh.grads, &mut sh.ws);
                    l
                })
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        let loss = (loss / total as f64) as f32;
        let shards = &self.shards;
        self.grads
            .par_chunks_mut(1 << 14)
            .enumerate()
            .for_each(|(c, g)| {
                let r = c * (1 << 14)..c * (1 << 14) + g.len();
                g.copy_from_slice(&shards[0].grads[r.clone()]);
                for sh in &shards[1..] {
                    for (a, v) in g.iter_mut().zip(&sh.grads[r.clone()]) {
                        *a += v;
                    }
                }
            });
        if let Some(q) = &self.qat {
            q.fq.straight_through(&self.params, &q.scales, &mut self.grads);
        }
        let lr = self.schedule.at(self.state.step);
        self.opt.step(&mut self.params, &self.grads, lr);
        ema_update(
            &mut self.ema,
            &self.params,
            self.opts.ema_decay,
            self.state.step,
        );
        self.state.step += 1;
        loss
    }

    /// Trains one epoch over `train_idx`; `on_step(samples_done, loss)` after every step.
    pub fn train_epoch(
        &mut self,
        ds: &PackedDataset,
        train_idx: &[usize],
        on_step: &mut dyn FnMut(usize, f32),
    ) -> (f32, f64) {
        let mut rng = epoch_rng(self.opts.seed, self.state.epoch);
        let mut order = train_idx.to_vec();
        rng.shuffle(&mut order);
        let b = self.opts.batch.min(order.len());
        let steps = self.state.steps_per_epoch as usize;
        let start = Instant::now();
        let mut sum = 0.0f64;
        for s in 0..steps {
            let loss = self.step(ds, &order[s * b..(s + 1) * b], &mut rng);
            sum += loss as f64;
            on_step((s + 1) * b, loss);
        }
        let secs = start.elapsed().as_secs_f64();
        self.state.rng = rng;
        self.state.epoch += 1;
        (
            (sum / steps as f64) as f32,
            (steps * b) as f64 / secs.max(1e-9),
        )
    }

    /// Predictions of the EMA weights for `idx` (see [`predict`]); with QAT, of `Q(EMA)`.
    pub fn predict_ema(&self, ds: &PackedDataset, idx: &[usize], views: &[View]) -> Vec<f32> {
        predict(&self.model, &self.eval_weights(), ds, idx, views)
    }

    /// The weights evaluation uses: the EMA, fake-quantised when training with QAT.
    pub fn eval_weights(&self) -> std::borrow::Cow<'_, [f32]> {
        match &self.opts.qat {
            None => std::borrow::Cow::Borrowed(&self.ema),
            Some(spec) => {
                let (mut q, mut s) = (Vec::new(), Vec::new());
                csipose_quantize::FakeQuant::new(&self.model.cfg, spec)
                    .apply(&self.ema, &mut q, &mut s);
                std::borrow::Cow::Owned(q)
            }
        }
    }
}

/// Keypoints `[idx.len(), 34]` for the samples `idx`, averaged over the TTA `views`
/// (just `[View::Identity]` for no TTA). No dropout.
pub fn predict(
    model: &Model,
    params: &[f32],
    ds: &PackedDataset,
    idx: &[usize],
    views: &[View],
) -> Vec<f32> {
    let c = &model.cfg;
    let fl = c.frame_len();
    let chunk = 256;
    let mut ws = Workspace::default();
    let mut out = vec![0.0f32; idx.len() * OUTPUTS];
    let mut xb = vec![0.0f32; chunk * fl];
    let views = if views.is_empty() {
        &[View::Identity][..]
    } else {
        views
    };
    for (ci, ids) in idx.chunks(chunk).enumerate() {
        let o = &mut out[ci * chunk * OUTPUTS..(ci * chunk + ids.len()) * OUTPUTS];
        for &v in views {
            for (k, &i) in ids.iter().enumerate() {
                v.apply(
                    ds.x(i),
                    &mut xb[k * fl..(k + 1) * fl],
                    c.antennas,
                    c.subcarriers,
                    c.packets,
                );
            }
            let y = model.forward(params, &xb[..ids.len() * fl], ids.len(), None, &mut ws);
            for (a, b) in o.iter_mut().zip(y) {
                *a += b / views.len() as f32;
            }
        }
    }
    out
}

/// Ground truth `[idx.len(), 34]`.
pub fn gather_y(ds: &PackedDataset, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| ds.y(i).iter().copied()).collect()
}

/// What [`fit`] reports at the end.
#[derive(Clone, Debug, Serialize)]
pub struct FitSummary {
    pub val_torso_pck20: Option<f64>,
    /// torso-PCK at thresholds 0.00, 0.01, …, 0.50.
    pub val_pck_curve: Vec<(f64, Option<f64>)>,
    pub epochs: usize,
    pub train_samples: usize,
    pub val_samples: usize,
}

/// Progress callbacks for [`fit`].
pub trait Progress {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: u64) {}
    fn step(&mut self, _samples: usize, _loss: f32) {}
    fn epoch_end(&mut self, _rec: &EpochRecord) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// Trains (or resumes) until `trainer.opts.epochs`, validating with the EMA weights and
/// writing `out/checkpoint.safetensors` atomically after each epoch. `stop_after` ends early
/// after that many epochs in this call (for tests of resume).
pub fn fit(
    trainer: &mut Trainer,
    ds: &PackedDataset,
    train_idx: &[usize],
    val_idx: &[usize],
    out: &Path,
    progress: &mut dyn Progress,
    stop_after: Option<usize>,
) -> Result<FitSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // A run killed while writing its checkpoint leaves the temporary file: remove it.
    for e in std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".checkpoint.safetensors.tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let val_y = gather_y(ds, val_idx);
    let mut done = 0;
    while trainer.state.epoch < trainer.opts.epochs && stop_after.is_none_or(|s| done < s) {
        let e = trainer.state.epoch;
        progress.epoch_start(e, trainer.opts.epochs, trainer.state.steps_per_epoch);
        let lr = trainer.schedule.at(trainer.state.step);
        let (loss, sps) = trainer.train_epoch(ds, train_idx, &mut |s, l| progress.step(s, l));
        let val = if val_idx.is_empty() {
            None
        } else {
            torso_pck(&trainer.predict_ema(ds, val_idx, &[]), &val_y, 0.2)
        };
        let rec = EpochRecord {
            epoch: e + 1,
            train_loss: loss,
            val_torso_pck20: val,
            lr,
            samples_per_s: sps,
        };
        trainer.state.history.push(rec.clone());
        checkpoint::save(&out.join("checkpoint.safetensors"), trainer)?;
        progress.epoch_end(&rec);
        done += 1;
    }
    let ks: Vec<f64> = (0..=50).map(|i| i as f64 / 100.0).collect();
    let curve = if val_idx.is_empty() {
        vec![None; ks.len()]
    } else {
        pck_curve(
            &trainer.predict_ema(ds, val_idx, &[]),
            &val_y,
            &PoseLayout::COCO17_2D,
            PckNorm::Torso,
            &ks,
        )
        .into_iter()
        .map(|p| p.pck)
        .collect()
    };
    Ok(FitSummary {
        val_torso_pck20: curve[20],
        val_pck_curve: ks.into_iter().zip(curve).collect(),
        epochs: trainer.state.epoch,
        train_samples: train_idx.len(),
        val_samples: val_idx.len(),
    })
}
