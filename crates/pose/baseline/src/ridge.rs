//! Ridge regression from the flattened CSI frame to the keypoints.
//!
//! Features are standardised with the training rows' mean and standard deviation (a constant
//! feature becomes 0); labels are centred on the training mean, which is the unpenalised bias.
//! The weights minimise `mean_rows ||x W - y||^2 + alpha ||W||^2`, i.e. they solve
//! `(X^T X + n alpha I) W = X^T Y` by Cholesky. With more features than rows the dual form
//! `W = X^T (X X^T + n alpha I)^-1 Y` is used (same solution, an `n x n` system).
//! Gram matrices are accumulated in parallel (rayon).
//!
//! `alpha` is either fixed or chosen on a held-out part of the training rows
//! ([`Lambda::HoldOut`], the default): every fifth group (MM-Fi: subject) in sorted order is
//! held out (the last group when there are fewer than five; the last fifth of the rows when there
//! is only one group), each candidate is fitted on the rest and scored by held-out mean squared
//! error, and the best is refitted on all training rows.

use crate::linalg::{cholesky, cholesky_solve, syrk_lower};
use crate::{check_indices, BaselineError, Result, Samples};
use rayon::prelude::*;

/// The candidate `alpha`s of [`Lambda::default`].
pub const DEFAULT_ALPHAS: [f64; 7] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0];

/// How the ridge strength `alpha` is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Lambda {
    Fixed(f64),
    /// Pick the best of these on held-out groups of the training rows.
    HoldOut(Vec<f64>),
}

impl Default for Lambda {
    fn default() -> Self {
        Lambda::HoldOut(DEFAULT_ALPHAS.to_vec())
    }
}

/// A fitted ridge regression.
#[derive(Clone, Debug)]
pub struct Ridge {
    mean_x: Vec<f64>,
    inv_std_x: Vec<f64>,
    mean_y: Vec<f64>,
    /// `[x_len, y_len]` row-major, in standardised-feature space.
    weights: Vec<f64>,
    /// The `alpha` used.
    pub alpha: f64,
    /// Held-out mean squared error of every candidate `(alpha, mse)` (empty for a fixed alpha).
    pub holdout: Vec<(f64, f64)>,
}

/// Standardised rows, `[rows, x_len]` row-major.
fn standardised(data: &dyn Samples, idx: &[usize], mean: &[f64], inv_std: &[f64]) -> Vec<f64> {
    let d = mean.len();
    let mut z = vec![0.0; idx.len() * d];
    z.par_chunks_mut(d)
        .zip(idx.par_iter())
        .for_each(|(row, &i)| {
            for (((o, x), m), s) in row.iter_mut().zip(data.x(i)).zip(mean).zip(inv_std) {
                *o = (*x as f64 - m) * s;
            }
        });
    z
}

/// Solves the ridge problem for standardised rows and centred labels; returns `[d, m]` weights.
struct Normal {
    d: usize,
    m: usize,
    n: usize,
    kind: NormalKind,
}

enum NormalKind {
    /// `G = Z^T Z` (`d x d`), `B = Z^T Y` (`d x m`).
    Primal { g: Vec<f64>, b: Vec<f64> },
    /// `K = Z Z^T` (`n x n`), with Z and Y kept.
    Dual {
        k: Vec<f64>,
        z: Vec<f64>,
        y: Vec<f64>,
    },
}

const CHUNK: usize = 256;

impl Normal {
    /// The normal equations of rows `idx`: primal when `d <= n`, else dual.
    fn build(data: &dyn Samples, idx: &[usize], r: &Ridge) -> Normal {
        Normal::build_form(data, idx, r, r.mean_x.len() <= idx.len())
    }

    fn build_form(data: &dyn Samples, idx: &[usize], r: &Ridge, primal: bool) -> Normal {
        let (d, m, n) = (r.mean_x.len(), r.mean_y.len(), idx.len());
        let labels = |rows: &[usize]| -> Vec<f64> {
            rows.iter()
                .flat_map(|&i| {
                    data.y(i)
                        .iter()
                        .zip(&r.mean_y)
                        .map(|(v, mu)| *v as f64 - mu)
                })
                .collect()
        };
        if primal {
            let mut g = vec![0.0; d * d];
            let mut b = vec![0.0; d * m];
            let mut zt = Vec::new();
            for rows in idx.chunks(CHUNK) {
                let z = standardised(data, rows, &r.mean_x, &r.inv_std_x);
                let y = labels(rows);
                let c = rows.len();
                // Feature-major copy: zt[f * c + r] = z[r * d + f].
                zt.clear();
                zt.resize(d * c, 0.0);
                for (r, zr) in z.chunks_exact(d).enumerate() {
                    for (f, v) in zr.iter().enumerate() {
                        zt[f * c + r] = *v;
                    }
                }
                // Lower triangle of G (Cholesky reads only the lower one).
                syrk_lower(&mut g, d, 0, &zt, d, c, 1.0);
                b.par_chunks_mut(m).enumerate().for_each(|(f, brow)| {
                    for (a, yr) in zt[f * c..(f + 1) * c].iter().zip(y.chunks_exact(m)) {
                        for (bv, yv) in brow.iter_mut().zip(yr) {
                            *bv += a * yv;
                        }
                    }
                });
            }
            Normal {
                d,
                m,
                n,
                kind: NormalKind::Primal { g, b },
            }
        } else {
            let z = standardised(data, idx, &r.mean_x, &r.inv_std_x);
            let y = labels(idx);
            let mut k = vec![0.0; n * n];
            // Lower triangle of K = Z Z^T (Cholesky reads only the lower one).
            syrk_lower(&mut k, n, 0, &z, n, d, 1.0);
            Normal {
                d,
                m,
                n,
                kind: NormalKind::Dual { k, z, y },
            }
        }
    }

    /// The normal equations of both row sets (primal forms only).
    fn merge(mut self, other: Normal) -> Normal {
        match (&mut self.kind, other.kind) {
            (NormalKind::Primal { g, b }, NormalKind::Primal { g: g2, b: b2 }) => {
                g.iter_mut().zip(&g2).for_each(|(x, y)| *x += y);
                b.iter_mut().zip(&b2).for_each(|(x, y)| *x += y);
                self.n += other.n;
                self
            }
            _ => unreachable!("merge is only called on primal forms"),
        }
    }

    fn solve(&self, alpha: f64) -> Result<Vec<f64>> {
        let (d, m, n) = (self.d, self.m, self.n);
        let ridge = n as f64 * alpha;
        match &self.kind {
            NormalKind::Primal { g, b } => {
                let mut a = g.clone();
                for i in 0..d {
                    a[i * d + i] += ridge;
                }
                cholesky(&mut a, d).map_err(BaselineError::Ridge)?;
                let mut w = b.clone();
                cholesky_solve(&a, d, &mut w, m);
                Ok(w)
            }
            NormalKind::Dual { k, z, y } => {
                let mut a = k.clone();
                for i in 0..n {
                    a[i * n + i] += ridge;
                }
                cholesky(&mut a, n).map_err(BaselineError::Ridge)?;
                let mut coef = y.clone();
                cholesky_solve(&a, n, &mut coef, m);
                // W = Z^T coef
                let mut w = vec![0.0; d * m];
                w.par_chunks_mut(m).enumerate().for_each(|(f, wrow)| {
                    for (r, cr) in coef.chunks_exact(m).enumerate() {
                        let a = z[r * d + f];
                        for (wv, cv) in wrow.iter_mut().zip(cr) {
                            *wv += a * cv;
                        }
                    }
                });
                Ok(w)
            }
        }
    }
}

/// Rows of `train` to hold out when choosing alpha (see the module doc).
fn holdout_rows(data: &dyn Samples, train: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut groups: Vec<i64> = train.iter().map(|&i| data.group(i)).collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.len() >= 2 {
        let held: Vec<i64> = if groups.len() >= 5 {
            groups.iter().skip(4).step_by(5).copied().collect()
        } else {
            vec![*groups.last().unwrap()]
        };
        train
            .iter()
            .partition(|&&i| held.binary_search(&data.group(i)).is_err())
    } else {
        let cut = train.len() - train.len() / 5;
        (train[..cut].to_vec(), train[cut..].to_vec())
    }
}

impl Ridge {
    /// Fits on the rows `train` of `data`.
    pub fn fit(data: &dyn Samples, train: &[usize], lambda: &Lambda) -> Result<Ridge> {
        if train.is_empty() {
            return Err(BaselineError::NoTrainingRows);
        }
        check_indices(data, train)?;
        let alphas = match lambda {
            Lambda::Fixed(a) => vec![*a],
            Lambda::HoldOut(c) => c.clone(),
        };
        if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(BaselineError::Ridge(format!(
                "alpha must be positive and finite, got {alphas:?}"
            )));
        }
        let (d, m) = (data.x_len(), data.y_len());
        let n = train.len() as f64;
        let mut sum = vec![0.0f64; d];
        let mut sq = vec![0.0f64; d];
        let mut ysum = vec![0.0f64; m];
        for &i in train {
            for ((s, q), v) in sum.iter_mut().zip(&mut sq).zip(data.x(i)) {
                let v = *v as f64;
                *s += v;
                *q += v * v;
            }
            for (s, v) in ysum.iter_mut().zip(data.y(i)) {
                *s += *v as f64;
            }
        }
        let mean_x: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let inv_std_x = sq
            .iter()
            .zip(&mean_x)
            .map(|(q, mu)| {
                let var = (q / n - mu * mu).max(0.0);
                let sd = var.sqrt();
                if sd > 1e-12 * (1.0 + mu.abs()) {
                    1.0 / sd
                } else {
                    0.0
                }
            })
            .collect();
        let mut ridge = Ridge {
            mean_x,
            inv_std_x,
            mean_y: ysum.iter().map(|s| s / n).collect(),
            weights: Vec::new(),
            alpha: alphas[0],
            holdout: Vec::new(),
        };
        // The primal normal equations of the fit rows, reused (plus the held-out rows) for the
        // final fit: standardisation already uses every training row, so Gram matrices add up.
        let mut reuse: Option<Normal> = None;
        if alphas.len() > 1 {
            let (fit, held) = holdout_rows(data, train);
            if !fit.is_empty() && !held.is_empty() {
                let normal = Normal::build(data, &fit, &ridge);
                let mut best = (f64::INFINITY, alphas[0]);
                for &a in &alphas {
                    ridge.weights = normal.solve(a)?;
                    let pred = ridge.predict(data, &held);
                    let mut se = 0.0;
                    for (r, &i) in held.iter().enumerate() {
                        for (p, y) in pred[r * m..(r + 1) * m].iter().zip(data.y(i)) {
                            se += (*p as f64 - *y as f64).powi(2);
                        }
                    }
                    let mse = se / (held.len() * m) as f64;
                    ridge.holdout.push((a, mse));
                    if mse < best.0 {
                        best = (mse, a);
                    }
                }
                ridge.alpha = best.1;
                if matches!(normal.kind, NormalKind::Primal { .. }) {
                    reuse = Some(normal.merge(Normal::build_form(data, &held, &ridge, true)));
                }
            }
        }
        let normal = match reuse {
            Some(n) => n,
            None => Normal::build(data, train, &ridge),
        };
        ridge.weights = normal.solve(ridge.alpha)?;
        Ok(ridge)
    }

    /// Predictions for rows `idx`: `[idx.len(), y_len]`.
    pub fn predict(&self, data: &dyn Samples, idx: &[usize]) -> Vec<f32> {
        let m = self.mean_y.len();
        let mut out = vec![0.0f32; idx.len() * m];
        out.par_chunks_mut(m.max(1))
            .zip(idx.par_iter())
            .for_each(|(o, &i)| {
                let mut acc = self.mean_y.clone();
                for (f, x) in data.x(i).iter().enumerate() {
                    let z = (*x as f64 - self.mean_x[f]) * self.inv_std_x[f];
                    if z != 0.0 {
                        for (a, w) in acc.iter_mut().zip(&self.weights[f * m..(f + 1) * m]) {
                            *a += z * w;
                        }
                    }
                }
                for (o, a) in o.iter_mut().zip(acc) {
                    *o = a as f32;
                }
            });
        out
    }

    /// The weights in the original feature units: `y = bias + x W` with `W` `[x_len, y_len]`.
    pub fn coefficients(&self) -> (Vec<f64>, Vec<f64>) {
        let m = self.mean_y.len();
        let mut w = self.weights.clone();
        let mut bias = self.mean_y.clone();
        for (f, row) in w.chunks_exact_mut(m).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v *= self.inv_std_x[f];
                bias[c] -= *v * self.mean_x[f];
            }
        }
        (bias, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Table;

    /// Deterministic pseudo-random numbers in [-1, 1).
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// y = bias + x W_true (+ noise), rows in 10 groups.
    fn synthetic(n: usize, d: usize, m: usize, noise: f64) -> (Table, Vec<f64>, Vec<f64>) {
        let mut s = 42;
        let w: Vec<f64> = (0..d * m).map(|_| lcg(&mut s)).collect();
        let bias: Vec<f64> = (0..m).map(|c| c as f64 - 1.0).collect();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let row: Vec<f64> = (0..d).map(|f| 3.0 * lcg(&mut s) + f as f64).collect();
            for c in 0..m {
                let v: f64 = bias[c] + (0..d).map(|f| row[f] * w[f * m + c]).sum::<f64>();
                y.push((v + noise * lcg(&mut s)) as f32);
            }
            x.extend(row.iter().map(|v| *v as f32));
        }
        let groups = (0..n as i64).map(|i| i % 10).collect();
        (
            Table {
                x,
                y,
                x_len: d,
                y_len: m,
                groups,
            },
            bias,
            w,
        )
    }

    #[test]
    fn recovers_a_linear_map_primal() {
        let (t, bias, w) = synthetic(400, 12, 3, 0.0);
        let train: Vec<usize> = (0..400).collect();
        let r = Ridge::fit(&t, &train, &Lambda::Fixed(1e-9)).unwrap();
        let (b, wf) = r.coefficients();
        for (got, want) in b.iter().zip(&bias).chain(wf.iter().zip(&w)) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        let p = r.predict(&t, &[5, 7]);
        for (got, want) in p.iter().zip(t.y[15..18].iter().chain(&t.y[21..24])) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn dual_form_matches_primal() {
        // 20 rows, 50 features: fit takes the dual path; the primal path on the same rows must
        // give the same weights.
        let (t, _, _) = synthetic(20, 50, 2, 0.1);
        let rows: Vec<usize> = (0..20).collect();
        let mut r = Ridge::fit(&t, &rows, &Lambda::Fixed(0.05)).unwrap();
        let dual = Normal::build_form(&t, &rows, &r, false)
            .solve(0.05)
            .unwrap();
        let primal = Normal::build_form(&t, &rows, &r, true).solve(0.05).unwrap();
        assert_eq!(dual, r.weights, "fit used the dual form");
        for (a, b) in dual.iter().zip(&primal) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // And it is a real fit: far better than the mean pose on the training rows.
        let mse = |p: &[f32]| -> f64 {
            p.iter()
                .zip(&t.y)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>()
                / p.len() as f64
        };
        let mean = crate::MeanPose::fit(&t, &rows).unwrap().predict(&rows);
        r.weights = primal;
        assert!(mse(&r.predict(&t, &rows)) < 0.2 * mse(&mean));
    }

    #[test]
    fn holdout_picks_a_small_alpha_for_clean_data() {
        let (t, _, _) = synthetic(300, 8, 2, 0.01);
        let train: Vec<usize> = (0..300).collect();
        let r = Ridge::fit(&t, &train, &Lambda::default()).unwrap();
        assert_eq!(r.holdout.len(), DEFAULT_ALPHAS.len());
        assert!(r.alpha <= 1e-2, "{:?}", r.holdout);
        // The held-out error grows with heavy regularisation.
        assert!(r.holdout.last().unwrap().1 > r.holdout[0].1);
    }

    #[test]
    fn holdout_refit_equals_a_fixed_fit() {
        // The final fit reuses the fit-part Gram matrix plus the held-out part; it must equal a
        // direct fit with the chosen alpha.
        let (t, _, _) = synthetic(300, 8, 2, 0.3);
        let train: Vec<usize> = (0..300).collect();
        let chosen = Ridge::fit(&t, &train, &Lambda::default()).unwrap();
        let direct = Ridge::fit(&t, &train, &Lambda::Fixed(chosen.alpha)).unwrap();
        for (a, b) in chosen.weights.iter().zip(&direct.weights) {
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn rejects_bad_alpha_and_empty_train() {
        let (t, _, _) = synthetic(10, 3, 1, 0.0);
        assert!(Ridge::fit(&t, &[0, 1], &Lambda::Fixed(0.0)).is_err());
        assert!(Ridge::fit(&t, &[0, 1], &Lambda::Fixed(f64::NAN)).is_err());
        assert!(matches!(
            Ridge::fit(&t, &[], &Lambda::Fixed(1.0)),
            Err(BaselineError::NoTrainingRows)
        ));
    }

    #[test]
    fn constant_features_are_ignored() {
        let t = Table {
            x: vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0],
            y: vec![2.0, 4.0, 6.0, 8.0],
            x_len: 2,
            y_len: 1,
            groups: vec![],
        };
        let r = Ridge::fit(&t, &[0, 1, 2, 3], &Lambda::Fixed(1e-12)).unwrap();
        let p = r.predict(&t, &[0, 3]);
        assert!(
            (p[0] - 2.0).abs() < 1e-6 && (p[1] - 8.0).abs() < 1e-6,
            "{p:?}"
        );
    }
}
