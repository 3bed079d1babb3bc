//! Augmentation: mixup (λ ~ Beta(α, α) on inputs and targets) for training, and the
//! test-time-augmentation (TTA) views of a CSI frame `[A, S, P]` for evaluation.
//!
//! TTA views and why they are physical:
//! - `identity`.
//! - `packets-reversed`: the P packets of one frame span a few milliseconds, during which the
//!   body is quasi-static; they are repeated measurements of the same channel, so their order
//!   carries (almost) no pose information.
//! - `packets-rolled`: the same argument, a cyclic shift by P/2.
//! - `antenna-gain`: each receive chain has its own automatic gain control; scaling antenna a
//!   by (0.95, 1.0, 1.05)ᵃ imitates a slightly different AGC state. (A global gain is not a
//!   view: per-sample standardisation removes it exactly.)
//!
//! Each view's validation torso-PCK@20 alone and all four averaged are written to
//! `metrics.json` by `csipose train`. Measured on the simulator's demo preset (random split,
//! protocol 3, 30 epochs, seed 0): no view measurably helps. micro: identity 0.6694,
//! packets-reversed 0.6692, packets-rolled 0.6681, antenna-gain 0.6389, all four 0.6674; the
//! antenna gain view hurts (the model uses the relative antenna amplitudes). Trained with
//! `--view-augment` (each training sample shown as a random view): identity 0.6719, all four
//! 0.6727, antenna-gain 0.6642. `--tta` is therefore off by default.

use csipose_model::Rng;
use serde::{Deserialize, Serialize};

/// One batch's mixup: `x_i ← λ x_i + (1-λ) x_π(i)` (same for `y`), λ ~ Beta(α, α).
#[derive(Clone, Debug, PartialEq)]
pub struct MixPlan {
    pub lambda: f32,
    pub partner: Vec<usize>,
}

impl MixPlan {
    /// Draws λ and the partner permutation (`None` when mixup is off or the batch has one sample).
    pub fn draw(rng: &mut Rng, alpha: f64, batch: usize) -> Option<MixPlan> {
        if alpha <= 0.0 || batch < 2 {
            return None;
        }
        let lambda = rng.beta(alpha, alpha) as f32;
        let mut partner: Vec<usize> = (0..batch).collect();
        rng.shuffle(&mut partner);
        Some(MixPlan { lambda, partner })
    }

    /// Writes `λ a + (1-λ) b` into `out`.
    #[inline]
    pub fn mix(&self, a: &[f32], b: &[f32], out: &mut [f32]) {
        let (l, m) = (self.lambda, 1.0 - self.lambda);
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = l * x + m * y;
        }
    }
}

/// Mixes a batch in place (see [`MixPlan`]). Returns λ (1 when mixup is off).
pub fn mixup(rng: &mut Rng, alpha: f64, x: &mut [f32], y: &mut [f32], batch: usize) -> f32 {
    let Some(plan) = MixPlan::draw(rng, alpha, batch) else {
        return 1.0;
    };
    mix_rows(x, batch, plan.lambda, &plan.partner);
    mix_rows(y, batch, plan.lambda, &plan.partner);
    plan.lambda
}

fn mix_rows(v: &mut [f32], batch: usize, lam: f32, perm: &[usize]) {
    let w = v.len() / batch;
    let orig = v.to_vec();
    for (i, &j) in perm.iter().enumerate() {
        let (a, b) = (&orig[i * w..(i + 1) * w], &orig[j * w..(j + 1) * w]);
        for ((o, x), y) in v[i * w..(i + 1) * w].iter_mut().zip(a).zip(b) {
            *o = lam * x + (1.0 - lam) * y;
        }
    }
}

/// A test-time view of a CSI frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum View {
    Identity,
    PacketsReversed,
    PacketsRolled,
    AntennaGain,
}

impl View {
    pub const ALL: [View; 4] = [
        View::Identity,
        View::PacketsReversed,
        View::PacketsRolled,
        View::AntennaGain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Identity => "identity",
            View::PacketsReversed => "packets-reversed",
            View::PacketsRolled => "packets-rolled",
            View::AntennaGain => "antenna-gain",
        }
    }

    /// Writes the view of one frame `x [A, S, P]` into `out`.
    pub fn apply(self, x: &[f32], out: &mut [f32], a: usize, s: usize, p: usize) {
        match self {
            View::Identity => out.copy_from_slice(x),
            View::PacketsReversed => {
                for (o, i) in out.chunks_exact_mut(p).zip(x.chunks_exact(p)) {
                    for t in 0..p {
                        o[t] = i[p - 1 - t];
                    }
                }
            }
            View::PacketsRolled => {
                for (o, i) in out.chunks_exact_mut(p).zip(x.chunks_exact(p)) {
                    for t in 0..p {
                        o[t] = i[(t + p / 2) % p];
                    }
                }
            }
            View::AntennaGain => {
                for ant in 0..a {
                    let g = 0.95f32.powi(-(ant as i32)) * 0.95;
                    let g = if a == 1 { 1.0 } else { g };
                    let r = ant * s * p..(ant + 1) * s * p;
                    for (o, i) in out[r.clone()].iter_mut().zip(&x[r]) {
                        *o = g * i;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixup_is_convex_and_keeps_batch_mean() {
        let mut rng = Rng::new(5);
        let batch = 8;
        let mut x: Vec<f32> = (0..batch * 3).map(|i| i as f32).collect();
        let mut y: Vec<f32> = (0..batch * 2).map(|i| (i % 5) as f32).collect();
        let (sx, sy): (f32, f32) = (x.iter().sum(), y.iter().sum());
        let lam = mixup(&mut rng, 0.2, &mut x, &mut y, batch);
        assert!((0.0..=1.0).contains(&lam));
        // a permutation mix keeps the column sums
        assert!((x.iter().sum::<f32>() - sx).abs() < 1e-3);
        assert!((y.iter().sum::<f32>() - sy).abs() < 1e-3);
    }

    #[test]
    fn packet_views_permute_packets_only() {
        let (a, s, p) = (2, 3, 4);
        let x: Vec<f32> = (0..a * s * p).map(|i| i as f32).collect();
        let mut o = vec![0.0; x.len()];
        View::PacketsReversed.apply(&x, &mut o, a, s, p);
        assert_eq!(&o[..4], &[3.0, 2.0, 1.0, 0.0]);
        View::PacketsRolled.apply(&x, &mut o, a, s, p);
        assert_eq!(&o[..4], &[2.0, 3.0, 0.0, 1.0]);
        let mut sorted = o.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, x);
        View::AntennaGain.apply(&x, &mut o, a, s, p);
        assert!((o[1] - 0.95).abs() < 1e-6 && (o[s * p + 1] - (s * p + 1) as f32).abs() < 1e-4);
    }
}
