//! The linear activity classifier: multinomial logistic regression with an L2 penalty over
//! per-window statistics of the amplitude frame features (the caller standardises them per
//! recording, by the recording's own windows, unlabelled), standardised by the training set.
//!
//! Statistics of one window (for every channel c, from the [`crate::features`] blocks): the mean
//! over frames of ln(1 + amplitude), the logarithm of its standard deviation over frames, and the
//! logarithm of the mean absolute change per frame (frames after the first) — the static level,
//! how much it moves, and how fast. Objective (as scikit-learn's `C`): Σ cross-entropy +
//! ‖W‖² / (2C), the bias unpenalised, minimised by L-BFGS to a gradient norm below 1e-6 of its
//! start (convex, so the result does not depend on a seed).

use crate::features::BLOCKS;

/// Added inside the logarithms of the spread statistics.
const LOG_FLOOR: f64 = 1e-3;

/// Statistics per window: 3 per channel.
pub const STATS_PER_CHANNEL: usize = 3;

/// The statistics of one window's `frames` (`[n, BLOCKS * channels]` amplitude features,
/// row-major): `[means (channels), ln std (channels), ln mean |change| (channels)]`.
pub fn window_stats(frames: &[f32], channels: usize) -> Vec<f32> {
    let dim = BLOCKS * channels;
    let n = frames.len() / dim.max(1);
    let mut out = vec![0f32; STATS_PER_CHANNEL * channels];
    if n == 0 {
        return out;
    }
    for c in 0..channels {
        let level = |t: usize| frames[t * dim + c] as f64;
        let mean = (0..n).map(level).sum::<f64>() / n as f64;
        let var = (0..n).map(|t| (level(t) - mean).powi(2)).sum::<f64>() / n as f64;
        let change = if n > 1 {
            (1..n)
                .map(|t| frames[t * dim + channels + c].abs() as f64)
                .sum::<f64>()
                / (n - 1) as f64
        } else {
            0.0
        };
        out[c] = mean as f32;
        out[channels + c] = (var.sqrt() + LOG_FLOOR).ln() as f32;
        out[2 * channels + c] = (change + LOG_FLOOR).ln() as f32;
    }
    out
}

/// A fitted multinomial logistic regression over standardised inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearClassifier {
    pub dim: usize,
    pub n_classes: usize,
    /// Training mean and standard deviation of each input (applied before the weights).
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// `[n_classes, dim + 1]`: the weights of each class, then its bias.
    pub weights: Vec<f64>,
}

impl LinearClassifier {
    /// Fits `rows` (each `dim` inputs) with `labels` (< `n_classes`) and penalty `c` (> 0).
    pub fn fit(
        rows: &[Vec<f32>],
        labels: &[usize],
        n_classes: usize,
        c: f64,
    ) -> Result<Self, String> {
        let Some(first) = rows.first() else {
            return Err("no training rows".into());
        };
        let dim = first.len();
        if rows.iter().any(|r| r.len() != dim) || labels.len() != rows.len() {
            return Err("rows of different lengths or a label count that differs".into());
        }
        if labels.iter().any(|&l| l >= n_classes) {
            return Err(format!("a label is not below {n_classes} classes"));
        }
        if !(c > 0.0 && c.is_finite()) {
            return Err(format!("C {c} must be positive"));
        }
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..dim)
            .map(|j| rows.iter().map(|r| r[j] as f64).sum::<f64>() / n)
            .collect();
        let scale: Vec<f64> = (0..dim)
            .map(|j| {
                let v = rows
                    .iter()
                    .map(|r| (r[j] as f64 - mean[j]).powi(2))
                    .sum::<f64>()
                    / n;
                if v > 1e-24 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let x: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                (0..dim)
                    .map(|j| (r[j] as f64 - mean[j]) / scale[j])
                    .collect()
            })
            .collect();
        let problem = Problem {
            x: &x,
            labels,
            n_classes,
            c,
        };
        let weights = lbfgs(&problem, vec![0.0; n_classes * (dim + 1)], 1000);
        Ok(LinearClassifier {
            dim,
            n_classes,
            mean,
            scale,
            weights,
        })
    }

    /// Class probabilities of one row of `dim` inputs.
    pub fn probabilities(&self, row: &[f32]) -> Vec<f32> {
        let x: Vec<f64> = (0..self.dim)
            .map(|j| (row[j] as f64 - self.mean[j]) / self.scale[j])
            .collect();
        softmax(&logits(&self.weights, &x, self.n_classes))
            .into_iter()
            .map(|p| p as f32)
            .collect()
    }
}

/// The penalised cross-entropy of standardised rows.
struct Problem<'a> {
    x: &'a [Vec<f64>],
    labels: &'a [usize],
    n_classes: usize,
    c: f64,
}

impl Problem<'_> {
    /// Σ cross-entropy + ‖W‖² / (2C) and its gradient.
    fn loss_grad(&self, w: &[f64]) -> (f64, Vec<f64>) {
        let k = self.n_classes;
        let d1 = self.x[0].len() + 1;
        let mut grad = vec![0f64; w.len()];
        let mut loss = 0.0;
        for (x, &y) in self.x.iter().zip(self.labels) {
            let z = logits(w, x, k);
            let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = top + z.iter().map(|v| (v - top).exp()).sum::<f64>().ln();
            loss += lse - z[y];
            for (cls, zc) in z.iter().enumerate() {
                let g = (zc - lse).exp() - if cls == y { 1.0 } else { 0.0 };
                let row = &mut grad[cls * d1..(cls + 1) * d1];
                for (gj, xj) in row.iter_mut().zip(x) {
                    *gj += g * xj;
                }
                row[d1 - 1] += g;
            }
        }
        for cls in 0..k {
            for j in 0..d1 - 1 {
                let v = w[cls * d1 + j];
                loss += v * v / (2.0 * self.c);
                grad[cls * d1 + j] += v / self.c;
            }
        }
        (loss, grad)
    }
}

fn logits(w: &[f64], x: &[f64], k: usize) -> Vec<f64> {
    let d1 = x.len() + 1;
    (0..k)
        .map(|cls| {
            let row = &w[cls * d1..(cls + 1) * d1];
            row[..d1 - 1].iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + row[d1 - 1]
        })
        .collect()
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Limited-memory BFGS (10 pairs) with a backtracking Armijo line search; stops when the
/// gradient norm falls below 1e-6 of its start, the step stalls, or after `max_iter` steps.
fn lbfgs(p: &Problem, mut w: Vec<f64>, max_iter: usize) -> Vec<f64> {
    const MEMORY: usize = 10;
    let (mut f, mut g) = p.loss_grad(&w);
    let g0 = dot(&g, &g).sqrt();
    let mut pairs: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    for _ in 0..max_iter {
        if dot(&g, &g).sqrt() <= 1e-6 * g0.max(1e-300) {
            break;
        }
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        if let Some((s, y, _)) = pairs.last() {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|qi| *qi *= gamma);
        } else {
            let scale = 1.0 / g0.max(1e-300);
            q.iter_mut().for_each(|qi| *qi *= scale);
        }
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&g, &dir);
        let dir = if slope < 0.0 {
            dir
        } else {
            pairs.clear();
            g.iter().map(|v| -v / g0.max(1e-300)).collect()
        };
        let slope = dot(&g, &dir);
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let trial: Vec<f64> = w.iter().zip(&dir).map(|(a, b)| a + step * b).collect();
            let (ft, gt) = p.loss_grad(&trial);
            if ft <= f + 1e-4 * step * slope {
                accepted = Some((trial, ft, gt));
                break;
            }
            step *= 0.5;
        }
        let Some((next, fn_, gn)) = accepted else {
            break;
        };
        let s: Vec<f64> = next.iter().zip(&w).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            pairs.push((s, y, 1.0 / sy));
            if pairs.len() > MEMORY {
                pairs.remove(0);
            }
        }
        let stalled = (f - fn_).abs() <= 1e-14 * f.abs().max(1.0);
        w = next;
        f = fn_;
        g = gn;
        if stalled {
            break;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use csipose_rng::Rng;

    fn toy(rng: &mut Rng, n: usize, dim: usize, k: usize) -> (Vec<Vec<f64>>, Vec<usize>) {
        let centres: Vec<Vec<f64>> = (0..k)
            .map(|_| (0..dim).map(|_| rng.normal()).collect())
            .collect();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % k;
            x.push(centres[c].iter().map(|m| m + rng.normal()).collect());
            y.push(c);
        }
        (x, y)
    }

    /// The gradient against central finite differences of the loss.
    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = Rng::new(3);
        let (x, y) = toy(&mut rng, 12, 4, 3);
        let p = Problem {
            x: &x,
            labels: &y,
            n_classes: 3,
            c: 0.7,
        };
        let w: Vec<f64> = (0..15).map(|_| 0.3 * rng.normal()).collect();
        let (_, g) = p.loss_grad(&w);
        for i in 0..w.len() {
            let h = 1e-6;
            let mut a = w.clone();
            a[i] += h;
            let mut b = w.clone();
            b[i] -= h;
            let fd = (p.loss_grad(&a).0 - p.loss_grad(&b).0) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                "{i}: {fd} vs {}",
                g[i]
            );
        }
    }

    /// L-BFGS reaches the optimum: the gradient there is (near) zero, and the fit separates
    /// well-separated classes.
    #[test]
    fn fit_reaches_a_stationary_point_and_separates() {
        let mut rng = Rng::new(5);
        let (x, y) = toy(&mut rng, 60, 5, 3);
        let rows: Vec<Vec<f32>> = x
            .iter()
            .map(|r| r.iter().map(|&v| (3.0 * v) as f32).collect())
            .collect();
        let m = LinearClassifier::fit(&rows, &y, 3, 0.5).unwrap();
        let xs: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                (0..5)
                    .map(|j| (r[j] as f64 - m.mean[j]) / m.scale[j])
                    .collect()
            })
            .collect();
        let p = Problem {
            x: &xs,
            labels: &y,
            n_classes: 3,
            c: 0.5,
        };
        let (_, g) = p.loss_grad(&m.weights);
        let (_, g0) = p.loss_grad(&vec![0.0; m.weights.len()]);
        assert!(dot(&g, &g).sqrt() < 1e-5 * dot(&g0, &g0).sqrt());
        let correct = rows
            .iter()
            .zip(&y)
            .filter(|(r, &l)| {
                let pr = m.probabilities(r);
                (0..3).all(|c| c == l || pr[c] < pr[l])
            })
            .count();
        assert!(correct >= 55, "{correct} of 60");
        assert!(LinearClassifier::fit(&rows, &y, 3, 0.0).is_err());
        assert!(LinearClassifier::fit(&rows, &y, 2, 1.0).is_err());
    }

    /// A stronger penalty (smaller C) shrinks the weights.
    #[test]
    fn smaller_c_shrinks_the_weights() {
        let mut rng = Rng::new(9);
        let (x, y) = toy(&mut rng, 30, 3, 2);
        let rows: Vec<Vec<f32>> = x
            .iter()
            .map(|r| r.iter().map(|&v| v as f32).collect())
            .collect();
        let norm = |c: f64| {
            let m = LinearClassifier::fit(&rows, &y, 2, c).unwrap();
            m.weights
                .chunks(4)
                .flat_map(|r| r[..3].to_vec())
                .map(|v| v * v)
                .sum::<f64>()
        };
        assert!(norm(0.01) < norm(1.0));
    }

    #[test]
    fn window_stats_are_level_spread_and_change() {
        // 2 channels, 3 frames: blocks [level c0, level c1, change c0, change c1, dev ...].
        let frames = [
            1.0f32, 2.0, 0.0, 0.0, 0.0, 0.0, //
            3.0, 2.0, 2.0, 0.0, 0.0, 0.0, //
            5.0, 2.0, 2.0, 0.0, 0.0, 0.0,
        ];
        let s = window_stats(&frames, 2);
        assert_eq!(s[0], 3.0);
        assert_eq!(s[1], 2.0);
        let sd = (8.0f64 / 3.0).sqrt();
        assert!((s[2] as f64 - (sd + LOG_FLOOR).ln()).abs() < 1e-6);
        assert!((s[3] as f64 - LOG_FLOOR.ln()).abs() < 1e-6);
        assert!((s[4] as f64 - (2.0 + LOG_FLOOR).ln()).abs() < 1e-6);
    }
}
