//! The project's one optimiser, shared by the pose trainer (`csipose-train`) and the activity
//! classifier (`csipose-temporal`): AdamW with decoupled weight decay on a flat parameter
//! vector, and the cosine learning-rate schedule with linear warmup. Which elements decay is
//! the caller's choice ([`DecayMask`]); the pose model's rule is implemented by its `Layout`.
//!
//! The serde helpers [`nan_f32`] and [`nan_f64`] read a float written as JSON `null` (NaN or
//! ±inf) back as NaN; [`Schedule`] uses them and the pose checkpoints re-export them.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Serde `deserialize_with` for an `f32` that may have been written as `null` (NaN or ±inf):
/// `null` reads back as NaN.
pub fn nan_f32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    Ok(<Option<f32> as Deserialize>::deserialize(d)?.unwrap_or(f32::NAN))
}

/// [`nan_f32`] for `f64`.
pub fn nan_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Which elements of a flat parameter vector take weight decay (`true` = decays).
pub trait DecayMask {
    fn decay_mask(&self) -> Vec<bool>;
}

impl DecayMask for [bool] {
    fn decay_mask(&self) -> Vec<bool> {
        self.to_vec()
    }
}

impl DecayMask for Vec<bool> {
    fn decay_mask(&self) -> Vec<bool> {
        self.clone()
    }
}

/// AdamW (Loshchilov & Hutter): `p -= lr · (m̂ / (√v̂ + eps) + wd · p)`, decay only where the
/// [`DecayMask`] says so. An element that neither decays nor ever gets a non-zero gradient
/// stays exactly where it is.
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

impl AdamW {
    /// For the parameters `params` describes (one element per parameter), with β = (0.9,
    /// 0.999) and eps = 1e-8.
    pub fn new<P: DecayMask + ?Sized>(params: &P, weight_decay: f32) -> AdamW {
        let decay = params.decay_mask();
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
        assert_eq!(params.len(), self.m.len(), "AdamW: parameter count");
        assert_eq!(grads.len(), self.m.len(), "AdamW: gradient count");
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let step = lr / bc1;
        let inv_bc2 = 1.0 / bc2;
        // Element-wise, so split into fixed chunks over rayon's threads: the same operations per
        // element in the same order, so bit-identical to a serial loop at any thread count.
        const CHUNK: usize = 1 << 14;
        params
            .par_chunks_mut(CHUNK)
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .zip(grads.par_chunks(CHUNK))
            .zip(self.decay.par_chunks(CHUNK))
            .for_each(|((((ps, ms), vs), gs), ds)| {
                let k = Consts {
                    b1,
                    b2,
                    eps,
                    lr,
                    wd,
                    step,
                    inv_bc2,
                };
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    unsafe { update_avx2(&k, ps, ms, vs, gs, ds) };
                    return;
                }
                update(&k, ps, ms, vs, gs, ds);
            });
    }
}

/// The per-step constants of [`AdamW::step`]'s update.
struct Consts {
    b1: f32,
    b2: f32,
    eps: f32,
    lr: f32,
    wd: f32,
    /// `lr / (1 - β1^t)`.
    step: f32,
    /// `1 / (1 - β2^t)`.
    inv_bc2: f32,
}

/// [`update`] compiled for AVX2 (8 lanes instead of SSE2's 4). Rust never fuses a multiply
/// and an add by itself, keeps the order of float operations, and square root and division
/// are correctly rounded at any width, so the results are the same bit for bit.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2(
    k: &Consts,
    ps: &mut [f32],
    ms: &mut [f32],
    vs: &mut [f32],
    gs: &[f32],
    ds: &[bool],
) {
    update(k, ps, ms, vs, gs, ds)
}

/// The AdamW update of one chunk: moments, decoupled decay, step.
#[inline(always)]
fn update(k: &Consts, ps: &mut [f32], ms: &mut [f32], vs: &mut [f32], gs: &[f32], ds: &[bool]) {
    // Indexed over slices of one length (a five-way zip does not vectorise).
    let n = ps.len();
    let (ms, vs, gs, ds) = (&mut ms[..n], &mut vs[..n], &gs[..n], &ds[..n]);
    for i in 0..n {
        let g = gs[i];
        let mn = k.b1 * ms[i] + (1.0 - k.b1) * g;
        let vn = k.b2 * vs[i] + (1.0 - k.b2) * g * g;
        ms[i] = mn;
        vs[i] = vn;
        // A select, not a branch, so the loop vectorises.
        let p = ps[i];
        let q = if ds[i] { p - k.lr * k.wd * p } else { p };
        ps[i] = q - k.step * mn / ((vn * k.inv_bc2).sqrt() + k.eps);
    }
}

/// Cosine schedule with linear warmup: `lr · (s + 1) / w` for `s < w`, then
/// `lr_min + (lr - lr_min) · ½(1 + cos(π (s - w) / (total - w)))`. A step is whatever the
/// caller counts: the pose trainer counts optimiser steps, the activity classifier epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(deserialize_with = "nan_f32")]
    pub lr: f32,
    #[serde(deserialize_with = "nan_f32")]
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn schedule_without_warmup_starts_at_full_rate() {
        let s = Schedule {
            lr: 2e-3,
            min_lr: 1e-4,
            warmup: 0,
            total: 4,
        };
        assert_eq!(s.at(0), 2e-3);
        assert!((s.at(2) - (1e-4 + 0.5 * 1.9e-3)).abs() < 1e-9);
        assert!((s.at(4) - 1e-4).abs() < 1e-9);
    }

    #[test]
    fn adamw_first_step_moves_by_lr_and_decays_only_masked_elements() {
        let mut opt = AdamW::new(&[true, false, false][..], 0.1);
        let mut p = vec![1.0f32; 3];
        opt.step(&mut p, &[0.5, 0.5, 0.0], 0.01);
        // Decayed: 1 - lr·wd·p - lr·sign(g); not decayed: 1 - lr·sign(g); no decay and no
        // gradient: exactly where it was.
        assert!((p[0] - (1.0 - 0.001 - 0.01)).abs() < 1e-6);
        assert!((p[1] - 0.99).abs() < 1e-6);
        assert_eq!(p[2], 1.0);
        assert_eq!(opt.t, 1);
    }

    #[test]
    fn adamw_matches_the_textbook_update_over_steps() {
        // Against the unfused formula in f64, three steps with changing gradients.
        let mut opt = AdamW::new(&vec![true, false], 0.05);
        let mut p = [0.7f32, -1.3];
        let (mut m, mut v, mut q) = ([0.0f64; 2], [0.0f64; 2], [0.7f64, -1.3]);
        for (t, g) in [[0.3f32, -0.2], [-0.1, 0.4], [0.25, 0.05]]
            .iter()
            .enumerate()
        {
            opt.step(&mut p, g, 0.02);
            for i in 0..2 {
                let g = g[i] as f64;
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t as i32 + 1));
                let vh = v[i] / (1.0 - 0.999f64.powi(t as i32 + 1));
                let wd = if i == 0 { 0.05 } else { 0.0 };
                q[i] -= 0.02 * (mh / (vh.sqrt() + 1e-8) + wd * q[i]);
                assert!((p[i] as f64 - q[i]).abs() < 1e-5, "step {t} elem {i}");
            }
        }
    }

    #[test]
    fn vectorised_step_equals_the_scalar_formula_bit_for_bit() {
        // More than one chunk, odd length, mixed decay, gradients of all sizes.
        let n = (1 << 14) + 1001;
        let decay: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        let mut opt = AdamW::new(&decay, 0.05);
        let mut p: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.013).sin()).collect();
        let (mut q, mut m, mut v) = (p.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        for t in 1..=3u64 {
            let g: Vec<f32> = (0..n)
                .map(|i| ((i as f32 + t as f32) * 0.7).cos() * 10f32.powi(i as i32 % 7 - 4))
                .collect();
            let lr = 1e-3 * t as f32;
            opt.step(&mut p, &g, lr);
            let bc1 = 1.0 - 0.9f32.powi(t as i32);
            let bc2 = 1.0 - 0.999f32.powi(t as i32);
            let (step, inv_bc2) = (lr / bc1, 1.0 / bc2);
            for i in 0..n {
                m[i] = 0.9 * m[i] + (1.0 - 0.9) * g[i];
                v[i] = 0.999 * v[i] + (1.0 - 0.999) * g[i] * g[i];
                if decay[i] {
                    q[i] -= lr * 0.05 * q[i];
                }
                q[i] -= step * m[i] / ((v[i] * inv_bc2).sqrt() + 1e-8);
            }
            for i in 0..n {
                assert_eq!(p[i].to_bits(), q[i].to_bits(), "step {t} element {i}");
                assert_eq!(opt.m[i].to_bits(), m[i].to_bits());
                assert_eq!(opt.v[i].to_bits(), v[i].to_bits());
            }
        }
    }

    /// The portable update and the AVX2 one (where the CPU has it) agree bit for bit.
    #[test]
    fn portable_and_avx2_updates_agree() {
        let n = 1003;
        let k = Consts {
            b1: 0.9,
            b2: 0.999,
            eps: 1e-8,
            lr: 3e-3,
            wd: 0.05,
            step: 3e-3 / 0.19,
            inv_bc2: 1.0 / 0.002_998,
        };
        let p0: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.31).sin()).collect();
        let m0: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.17).cos() * 1e-2).collect();
        let v0: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.11).sin().abs() * 1e-4)
            .collect();
        let g: Vec<f32> = (0..n)
            .map(|i| ((i as f32) * 0.7).cos() * 10f32.powi(i as i32 % 9 - 5))
            .collect();
        let d: Vec<bool> = (0..n).map(|i| i % 4 != 1).collect();
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        update(&k, &mut p, &mut m, &mut v, &g, &d);
        assert!(p.iter().zip(&p0).any(|(a, b)| a != b));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let (mut p2, mut m2, mut v2) = (p0.clone(), m0.clone(), v0.clone());
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { update_avx2(&k, &mut p2, &mut m2, &mut v2, &g, &d) };
            for i in 0..n {
                assert_eq!(p[i].to_bits(), p2[i].to_bits(), "element {i}");
                assert_eq!(m[i].to_bits(), m2[i].to_bits());
                assert_eq!(v[i].to_bits(), v2[i].to_bits());
            }
        }
    }

    #[test]
    fn null_reads_back_as_nan() {
        let s: Schedule =
            serde_json::from_str(r#"{"lr":null,"min_lr":0.5,"warmup":1,"total":2}"#).unwrap();
        assert!(s.lr.is_nan() && s.min_lr == 0.5);
        let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(back.lr.is_nan() && back.total == 2);
    }
}
