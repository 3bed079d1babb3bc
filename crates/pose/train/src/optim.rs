//! AdamW with decoupled weight decay, the cosine learning-rate schedule with linear warmup,
//! and the exponential moving average (EMA) of the weights that evaluation uses.

use csipose_model::config::Layout;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// AdamW (Loshchilov & Hutter): `p -= lr · (m̂ / (√v̂ + eps) + wd · p)`, decay only on the
/// 2-D weight matrices of Linear layers (not biases, LayerNorm or embeddings).
#[derive(Clone, Debug)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// First moment (PyTorch `exp_avg`).
    pub m: Vec<f32>,
    /// Second moment (PyTorch `exp_avg_sq`).
    pub v: Vec<f32>,
    /// Steps taken.
    pub t: u64,
    decay: Vec<bool>,
}

/// Whether weight decay applies to a tensor.
pub fn decays(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with("weight") && !name.starts_with("pool.")
}

impl AdamW {
    /// For the pose model's parameters: decay on the Linear weight matrices ([`decays`]).
    pub fn new(layout: &Layout, weight_decay: f32) -> AdamW {
        let mut decay = vec![false; layout.total];
        for t in &layout.tensors {
            if decays(&t.name, &t.shape) {
                decay[t.offset..t.offset + t.len].fill(true);
            }
        }
        AdamW::with_decay(decay, weight_decay)
    }

    /// For any flat parameter vector: element `i` decays where `decay[i]`. (An element that
    /// neither decays nor ever gets a non-zero gradient stays exactly where it is.)
    pub fn with_decay(decay: Vec<bool>, weight_decay: f32) -> AdamW {
        let n = decay.len();
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            decay,
        }
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let step = lr / bc1;
        let inv_bc2 = 1.0 / bc2;
        // Element-wise, so split into fixed chunks over rayon's threads and vectorised (the
        // same operations per element in the same order: bit-identical to a serial loop).
        const CHUNK: usize = 1 << 14;
        let n = params.len();
        params[..n]
            .par_chunks_mut(CHUNK)
            .zip(self.m[..n].par_chunks_mut(CHUNK))
            .zip(self.v[..n].par_chunks_mut(CHUNK))
            .zip(grads[..n].par_chunks(CHUNK))
            .zip(self.decay[..n].par_chunks(CHUNK))
            .for_each(|((((ps, ms), vs), gs), ds)| {
                csipose_model::layers::wide(|| {
                    for ((((p, m), v), &g), &d) in ps.iter_mut().zip(ms).zip(vs).zip(gs).zip(ds) {
                        let mn = b1 * *m + (1.0 - b1) * g;
                        let vn = b2 * *v + (1.0 - b2) * g * g;
                        *m = mn;
                        *v = vn;
                        let mut q = *p;
                        if d {
                            q -= lr * wd * q;
                        }
                        q -= step * mn / ((vn * inv_bc2).sqrt() + eps);
                        *p = q;
                    }
                })
            });
    }
}

/// Cosine schedule with linear warmup: `lr · s / w` for `s < w`, then
/// `lr_min + (lr - lr_min) · ½(1 + cos(π (s - w) / (total - w)))`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(deserialize_with = "crate::checkpoint::nan_f32")]
    pub lr: f32,
    #[serde(deserialize_with = "crate::checkpoint::nan_f32")]
    pub min_lr: f32,
    pub warmup: u64,
    pub total: u64,
}

impl Schedule {
    pub fn at(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.lr * (step + 1) as f32 / self.warmup as f32;
        }
        let span = (self.total.saturating_sub(self.warmup)).max(1) as f64;
        let t = ((step - self.warmup) as f64 / span).min(1.0);
        let c = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        self.min_lr + (self.lr - self.min_lr) * c as f32
    }
}

/// EMA update `e ← δ e + (1-δ) p` with `δ = min(decay, (1 + t) / (10 + t))` so the average
/// follows the weights closely early in training.
pub fn ema_update(ema: &mut [f32], params: &[f32], decay: f32, step: u64) {
    let warm = (1.0 + step as f32) / (10.0 + step as f32);
    let d = decay.min(warm);
    ema.par_chunks_mut(1 << 14)
        .zip(params.par_chunks(1 << 14))
        .for_each(|(es, ps)| {
            csipose_model::layers::wide(|| {
                for (e, p) in es.iter_mut().zip(ps) {
                    *e = d * *e + (1.0 - d) * p;
                }
            })
        });
}

/// SmoothL1 (Huber with `beta`), mean over all values; writes `∂loss/∂pred` into `grad`.
pub fn smooth_l1(pred: &[f32], target: &[f32], beta: f32, grad: &mut [f32]) -> f32 {
    (smooth_l1_sum(pred, target, beta, pred.len() as f32, grad) / pred.len() as f64) as f32
}

/// SmoothL1 summed over this part of a batch whose mean is over `n` values in all:
/// returns the sum and writes `∂(mean loss)/∂pred` into `grad`.
pub fn smooth_l1_sum(pred: &[f32], target: &[f32], beta: f32, n: f32, grad: &mut [f32]) -> f64 {
    let mut loss = 0.0f64;
    for ((p, t), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
        let d = p - t;
        if d.abs() < beta {
            loss += (0.5 * d * d / beta) as f64;
            *g = d / beta / n;
        } else {
            loss += (d.abs() - 0.5 * beta) as f64;
            *g = d.signum() / n;
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use csipose_model::ModelConfig;

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let s = Schedule {
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: 10,
            total: 110,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-9);
        assert!((s.at(9) - 1e-3).abs() < 1e-9);
        assert!((s.at(10) - 1e-3).abs() < 1e-9);
        assert!((s.at(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-7);
        assert!((s.at(110) - 1e-5).abs() < 1e-9);
        assert!(s.at(30) > s.at(80));
    }

    #[test]
    fn adamw_first_step_moves_by_lr_and_decays_weights_only() {
        let cfg = ModelConfig::preset_for("nano", 1, 2, 2).unwrap();
        let layout = cfg.layout();
        let mut opt = AdamW::new(&layout, 0.1);
        let mut p = vec![1.0f32; layout.total];
        let g = vec![0.5f32; layout.total];
        opt.step(&mut p, &g, 0.01);
        let w = layout.get("embed.weight").unwrap();
        let b = layout.get("embed.bias").unwrap();
        // bias: 1 - lr·sign(g) ; weight additionally decays by lr·wd·p
        assert!((p[b.offset] - 0.99).abs() < 1e-6);
        assert!((p[w.offset] - (1.0 - 0.001 - 0.01)).abs() < 1e-6);
    }

    #[test]
    fn smooth_l1_values_and_gradient() {
        let mut g = [0.0; 2];
        let l = smooth_l1(&[0.05, 1.0], &[0.0, 0.0], 0.1, &mut g);
        // 0.5·0.0025/0.1 = 0.0125 ; 1 - 0.05 = 0.95 ; mean 0.48125
        assert!((l - 0.48125).abs() < 1e-6);
        assert!((g[0] - 0.25).abs() < 1e-6 && (g[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn ema_tracks_early_and_smooths_late() {
        let mut e = vec![0.0f32];
        ema_update(&mut e, &[1.0], 0.999, 0);
        assert!((e[0] - 0.9).abs() < 1e-6); // δ = 0.1 at step 0
        let mut e = vec![0.0f32];
        ema_update(&mut e, &[1.0], 0.99, 1_000_000);
        assert!((e[0] - 0.01).abs() < 1e-6);
    }
}
