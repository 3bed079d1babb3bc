//! Augmentation: mixup (λ ~ Beta(α, α) on inputs and targets) and the CSI augmentation
//! ([`CsiAugment`]: a random static frequency response per antenna, receiver noise) for
//! training, and the test-time-augmentation (TTA) views of a CSI frame `[A, S, P]` for evaluation.
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
//!
//! Two more candidate views match the train-time [`CsiAugment`]: `channel-a` and `channel-b`,
//! two fixed smooth static responses (2 dB). Scored on micro trained with the room-robust
//! recipe (`--aug-prob 1 --aug-response-db 6 --aug-noise 0.05`, 30 epochs): cross-scene
//! identity 0.4741, channel-a 0.4713, channel-b 0.4800, antenna-gain 0.4815, the four `--tta`
//! views 0.4768; cross-subject identity 0.4745, channel-a 0.4780, channel-b 0.4724,
//! antenna-gain 0.4823, four views 0.4767. The two channel views move in opposite directions
//! and every change stays within ±0.8 points on one seed, so they are not added to `--tta`
//! (`csipose eval --views` averages any chosen set).

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

/// Train-time CSI augmentation that changes the channel a frame was measured through but
/// not the pose, so the keypoint labels stay as they are. Each training sample draws its own
/// parameters from a seed (deterministic for a seed whatever the thread count).
///
/// - `response_db`: a random smooth frequency response per receive antenna, the same for
///   every packet of the frame, multiplied onto the amplitude: `x[a, s, p] ← x[a, s, p] ·
///   10^(r_a(s)/20)` with `r_a(u) = σ (n₀ (2u − 1) + n₁ cos(2π f₁ u + φ₁) + n₂ cos(2π f₂ u + φ₂)) / √3`,
///   `u = s/(S−1)`, `n ~ N(0, 1)`, `f ~ U(0.3, 2)` cycles per band, σ = `response_db`. It
///   imitates what changes with the room and the receive chain: the static multipath sets
///   a slowly varying fading envelope over the band (paths of 10–60 ns excess delay ripple
///   with periods of 17–100 MHz, i.e. 0.4–2.4 cycles over a 40 MHz band), and each chain
///   adds its own gain tilt and ripple. Because it is static over the packets, the
///   body's packet-to-packet modulation is only rescaled, never invented.
/// - `noise`: receiver noise, `x ← x + noise · sd(x) · N(0, 1)` independently per value
///   (a lower SNR than the recording's).
///
/// Applied with probability `prob` per sample; with `prob = 0` (the default) nothing happens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CsiAugment {
    #[serde(deserialize_with = "crate::checkpoint::nan_f32")]
    pub prob: f32,
    #[serde(deserialize_with = "crate::checkpoint::nan_f32")]
    pub response_db: f32,
    #[serde(deserialize_with = "crate::checkpoint::nan_f32")]
    pub noise: f32,
}

impl Default for CsiAugment {
    fn default() -> Self {
        CsiAugment {
            prob: 0.0,
            response_db: 0.0,
            noise: 0.0,
        }
    }
}

impl CsiAugment {
    /// Whether this augmentation can change anything.
    pub fn active(&self) -> bool {
        self.prob > 0.0 && (self.response_db > 0.0 || self.noise > 0.0)
    }

    /// Augments one frame `x [A, S, P]` in place with the sample's own `seed`.
    pub fn apply(&self, x: &mut [f32], a: usize, s: usize, p: usize, seed: u64) {
        debug_assert_eq!(x.len(), a * s * p);
        let mut rng = Rng::new(seed);
        if !self.active() || rng.uniform() >= self.prob as f64 {
            return;
        }
        if self.response_db > 0.0 {
            let tau = std::f64::consts::TAU;
            for xa in x.chunks_exact_mut(s * p) {
                let n: [f64; 3] = [rng.normal(), rng.normal(), rng.normal()];
                let f = [0.3 + 1.7 * rng.uniform(), 0.3 + 1.7 * rng.uniform()];
                let ph = [tau * rng.uniform(), tau * rng.uniform()];
                let k = self.response_db as f64 / 3f64.sqrt();
                for (si, row) in xa.chunks_exact_mut(p).enumerate() {
                    let u = if s > 1 {
                        si as f64 / (s - 1) as f64
                    } else {
                        0.5
                    };
                    let db = k
                        * (n[0] * (2.0 * u - 1.0)
                            + n[1] * (tau * f[0] * u + ph[0]).cos()
                            + n[2] * (tau * f[1] * u + ph[1]).cos());
                    let g = 10f64.powf(db / 20.0) as f32;
                    row.iter_mut().for_each(|v| *v *= g);
                }
            }
        }
        if self.noise > 0.0 {
            let n = x.len() as f64;
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let sd = (self.noise as f64 * var.sqrt()) as f32;
            for v in x.iter_mut() {
                *v += sd * approx_normal(&mut rng);
            }
        }
    }
}

/// A cheap standard-normal draw: the sum of four 16-bit uniforms of one `u64`, centred and
/// scaled to unit variance (Irwin–Hall; tails end at ±3.46, which is fine for noise).
#[inline]
fn approx_normal(rng: &mut Rng) -> f32 {
    let r = rng.next_u64();
    let sum: u32 = (0..4).map(|i| ((r >> (16 * i)) & 0xFFFF) as u32).sum();
    // Σ of four U(0, 1) has mean 2 and variance 1/3.
    (sum as f32 / 65536.0 - 2.0) * 3.0f32.sqrt()
}

/// A test-time view of a CSI frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum View {
    Identity,
    PacketsReversed,
    PacketsRolled,
    AntennaGain,
    /// A fixed smooth static frequency response per antenna ([`CsiAugment`] at
    /// [`View::CHANNEL_DB`] dB, no noise, seed [`View::CHANNEL_SEEDS`]`[0]`): the frame as another
    /// static channel / receive chain would have measured it.
    ChannelA,
    /// The same with the second seed.
    ChannelB,
}

impl View {
    pub const ALL: [View; 4] = [
        View::Identity,
        View::PacketsReversed,
        View::PacketsRolled,
        View::AntennaGain,
    ];

    /// Every view that `csipose train` scores on the validation subset.
    pub const CANDIDATES: [View; 6] = [
        View::Identity,
        View::PacketsReversed,
        View::PacketsRolled,
        View::AntennaGain,
        View::ChannelA,
        View::ChannelB,
    ];
    /// Strength of the channel views, dB (see [`CsiAugment::response_db`]).
    pub const CHANNEL_DB: f32 = 2.0;
    /// Seeds of the channel views.
    pub const CHANNEL_SEEDS: [u64; 2] = [0x5EED_C4A1, 0x5EED_C4A2];

    pub fn name(self) -> &'static str {
        match self {
            View::Identity => "identity",
            View::PacketsReversed => "packets-reversed",
            View::PacketsRolled => "packets-rolled",
            View::AntennaGain => "antenna-gain",
            View::ChannelA => "channel-a",
            View::ChannelB => "channel-b",
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
            View::ChannelA | View::ChannelB => {
                out.copy_from_slice(x);
                let seed = View::CHANNEL_SEEDS[usize::from(self == View::ChannelB)];
                CsiAugment {
                    prob: 1.0,
                    response_db: View::CHANNEL_DB,
                    noise: 0.0,
                }
                .apply(out, a, s, p, seed);
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

    fn frame(a: usize, s: usize, p: usize) -> Vec<f32> {
        (0..a * s * p)
            .map(|i| 0.5 + 0.4 * ((i as f32) * 0.37).sin())
            .collect()
    }

    #[test]
    fn csi_augment_is_deterministic_and_keeps_shape() {
        let (a, s, p) = (3, 114, 10);
        let x = frame(a, s, p);
        let aug = CsiAugment {
            prob: 1.0,
            response_db: 2.0,
            noise: 0.05,
        };
        let (mut u, mut v, mut w) = (x.clone(), x.clone(), x.clone());
        aug.apply(&mut u, a, s, p, 7);
        aug.apply(&mut v, a, s, p, 7);
        aug.apply(&mut w, a, s, p, 8);
        assert_eq!(u.len(), x.len());
        assert_eq!(u, v, "same seed, same result");
        assert_ne!(u, w, "another seed, another channel");
        assert!(u.iter().all(|v| v.is_finite()));
        // Off, or probability 0: the frame is untouched.
        let mut z = x.clone();
        CsiAugment::default().apply(&mut z, a, s, p, 7);
        CsiAugment {
            prob: 0.0,
            ..aug.clone()
        }
        .apply(&mut z, a, s, p, 7);
        assert_eq!(z, x);
    }

    #[test]
    fn frequency_response_is_static_smooth_and_of_the_asked_size() {
        let (a, s, p) = (3, 114, 10);
        let x = frame(a, s, p);
        let aug = CsiAugment {
            prob: 1.0,
            response_db: 2.0,
            noise: 0.0,
        };
        let mut db_sq = 0.0f64;
        let mut n = 0usize;
        for seed in 0..200 {
            let mut y = x.clone();
            aug.apply(&mut y, a, s, p, seed);
            for ant in 0..a {
                let mut prev: Option<f64> = None;
                for sc in 0..s {
                    let o = (ant * s + sc) * p;
                    let g = (y[o] / x[o]) as f64;
                    // The same gain for every packet: the channel change is static, so the
                    // body's packet-to-packet modulation is rescaled, not altered.
                    for t in 1..p {
                        assert!(((y[o + t] / x[o + t]) as f64 - g).abs() < 1e-5 * g);
                    }
                    let db = 20.0 * g.log10();
                    // Smooth over the band: neighbouring subcarriers differ by a fraction of a dB.
                    if let Some(q) = prev {
                        assert!((db - q).abs() < 0.5, "{db} after {q}");
                    }
                    prev = Some(db);
                    db_sq += db * db;
                    n += 1;
                }
            }
        }
        // Each of the three terms has variance σ²/3 times its mean square over the band
        // ((2u−1)²: 1/3; cos²: about 1/2), so the RMS lies between 0.5σ and σ.
        let rms = (db_sq / n as f64).sqrt();
        assert!((1.0..2.0).contains(&rms), "rms {rms} dB");
    }

    #[test]
    fn receiver_noise_has_the_asked_level() {
        let (a, s, p) = (3, 114, 10);
        let x = frame(a, s, p);
        let aug = CsiAugment {
            prob: 1.0,
            response_db: 0.0,
            noise: 0.1,
        };
        let mut y = x.clone();
        aug.apply(&mut y, a, s, p, 3);
        let m = x.iter().sum::<f32>() / x.len() as f32;
        let sd = (x.iter().map(|v| (v - m).powi(2)).sum::<f32>() / x.len() as f32).sqrt();
        let d: Vec<f32> = y.iter().zip(&x).map(|(u, v)| u - v).collect();
        let dm = d.iter().sum::<f32>() / d.len() as f32;
        let dsd = (d.iter().map(|v| (v - dm).powi(2)).sum::<f32>() / d.len() as f32).sqrt();
        assert!(dm.abs() < 0.01 * sd, "noise is centred: {dm}");
        assert!(
            (dsd / (0.1 * sd) - 1.0).abs() < 0.08,
            "{dsd} vs {}",
            0.1 * sd
        );
    }

    #[test]
    fn approx_normal_has_unit_variance() {
        let mut rng = Rng::new(11);
        let v: Vec<f32> = (0..100_000).map(|_| approx_normal(&mut rng)).collect();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(m.abs() < 0.02 && (var - 1.0).abs() < 0.03, "{m} {var}");
    }

    #[test]
    fn channel_views_are_fixed_static_responses() {
        let (a, s, p) = (3, 114, 10);
        let x = frame(a, s, p);
        let (mut u, mut v, mut w) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
        View::ChannelA.apply(&x, &mut u, a, s, p);
        View::ChannelA.apply(&x, &mut v, a, s, p);
        View::ChannelB.apply(&x, &mut w, a, s, p);
        assert_eq!(u, v);
        assert_ne!(u, w);
        for ant in 0..a {
            for sc in 0..s {
                let o = (ant * s + sc) * p;
                let g = u[o] / x[o];
                assert!((0.5..2.0).contains(&g));
                for t in 0..p {
                    assert!((u[o + t] / x[o + t] - g).abs() < 1e-5 * g);
                }
            }
        }
    }
}
