//! The attention math of the project, described once (`no_std`, no dependencies): for one query
//! head over `n` items (tokens or landmarks) with key rows `k_j` and value rows `v_j`,
//!
//! - scores `s_j = scale · q·k_j` and probabilities `p = softmax(s)` ([`probabilities`],
//!   [`softmax`]: maximum subtracted, exponentials, multiplied by the inverse of their sum),
//! - the output `o = Σ_j p_j v_j` ([`attend`]),
//! - attention pooling, the same with a learnt query `w`, a score bias `b` and the rows as
//!   both keys and values: `p = softmax_t(w·h_t + b)`, `z = Σ_t p_t h_t` ([`pool`]; its
//!   backward is [`attend_backward`] with `k_t = v_t = h_t`, scale 1),
//! - its backward ([`attend_backward`]): `dv_j += p_j do`, `dp_j = do·v_j`,
//!   `ds_j = p_j (dp_j − Σ_i p_i dp_i) · scale`, `dq += Σ_j ds_j k_j`, `dk_j += ds_j q`,
//! - and the running state of the same softmax computed chunk by chunk ([`OnlineSoftmax`]).
//!
//! Every caller goes through these: the pose model's training forward and backward and its
//! attention pooling (`csipose-model`), the batch-1 runtime's softmax and pooling
//! (`csipose-runtime`, whose score and context products run on its Linear kernel), and the temporal head's grouped-query attention
//! (`csipose-attention`: the backward, and the online-softmax bookkeeping of its row and dense
//! kernels; its SIMD kernels are vectorised forms of the same steps, tested against them).
//! What differs between callers is only the arithmetic of the elementary operations — the order
//! of a dot product's or a sum's additions, the exponential and whether the exponentials are
//! divided by their sum or multiplied by its reciprocal — which each caller supplies as
//! [`Numerics`], so each keeps its own rounding (the model's training stays bit for bit what it
//! was, the runtime's vector paths stay equal to its portable one).

#![cfg_attr(not(test), no_std)]

/// The elementary operations of a caller: how it rounds a dot product, a sum, `e^x` and the
/// softmax's normalisation.
pub trait Numerics {
    /// `a · b` over `min(a.len(), b.len())` elements.
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `Σ xs`.
    fn sum(xs: &[f32]) -> f32;
    /// `e^x`.
    fn exp(x: f32) -> f32;
    /// `s_j ← s_j / sum` for every `j`: by default each multiplied by `1 / sum` (one
    /// division); a caller may divide each instead (the poolings do).
    #[inline(always)]
    fn normalise(s: &mut [f32], sum: f32) {
        let inv = 1.0 / sum;
        for v in s.iter_mut() {
            *v *= inv;
        }
    }
}

/// `y += alpha · x`, element by element (one multiply and one add each, no fused multiply-add),
/// over `min(x.len(), y.len())` elements.
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// Softmax of `scale · s` in place: `s_j ← e^(scale·s_j − max) · (1 / Σ_i e^(scale·s_i − max))`
/// with `max = max_j scale·s_j`. An empty `s` is left empty.
#[inline(always)]
pub fn softmax<N: Numerics>(s: &mut [f32], scale: f32) {
    let max = s.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    exp_normalise::<N>(s, scale, max);
}

/// The end of [`softmax`] once `max = max_j scale·s_j` is known: exponentials of the shifted
/// scores, normalised by their sum ([`Numerics::normalise`]).
#[inline(always)]
fn exp_normalise<N: Numerics>(s: &mut [f32], scale: f32, max: f32) {
    for v in s.iter_mut() {
        *v = N::exp(*v * scale - max);
    }
    let sum = N::sum(s);
    N::normalise(s, sum);
}

/// The attention probabilities of one query head `q` over the items `0..probs.len()` whose key
/// rows `key(j)` returns: `probs ← softmax(scale · q·k_j)` ([`softmax`]; the scores are scaled
/// as they are computed).
#[inline(always)]
pub fn probabilities<'a, N: Numerics>(
    q: &[f32],
    key: impl Fn(usize) -> &'a [f32],
    scale: f32,
    probs: &mut [f32],
) {
    let mut max = f32::NEG_INFINITY;
    for (j, s) in probs.iter_mut().enumerate() {
        *s = N::dot(q, key(j)) * scale;
        max = max.max(*s);
    }
    // Already scaled: `s · 1` is `s` exactly.
    exp_normalise::<N>(probs, 1.0, max);
}

/// One query head `q` over the items `0..probs.len()` whose key and value rows `key(j)` and
/// `value(j)` return: `probs` as [`probabilities`] and `out = Σ_j p_j v_j` (accumulated in item
/// order from zero).
#[inline(always)]
pub fn attend<'a, N: Numerics>(
    q: &[f32],
    key: impl Fn(usize) -> &'a [f32],
    value: impl Fn(usize) -> &'a [f32],
    scale: f32,
    probs: &mut [f32],
    out: &mut [f32],
) {
    probabilities::<N>(q, key, scale, probs);
    out.fill(0.0);
    for (j, &p) in probs.iter().enumerate() {
        axpy(p, value(j), out);
    }
}

/// Attention pooling of the rows `row(t)`, `t < probs.len()`, with query `w` and score bias
/// `b`: `probs ← softmax_t(w·h_t + b)` (scale 1) and `out = Σ_t p_t h_t` (accumulated in row
/// order from zero). [`attend`] with the rows as keys and values and a bias on the scores; the
/// backward is [`attend_backward`] with `key = value = row`, scale 1 (the bias's gradient is
/// `Σ_t ds_t`, the `ds` it leaves).
#[inline(always)]
pub fn pool<'a, N: Numerics>(
    w: &[f32],
    bias: f32,
    row: impl Fn(usize) -> &'a [f32],
    probs: &mut [f32],
    out: &mut [f32],
) {
    let mut max = f32::NEG_INFINITY;
    for (t, s) in probs.iter_mut().enumerate() {
        *s = N::dot(row(t), w) + bias;
        max = max.max(*s);
    }
    exp_normalise::<N>(probs, 1.0, max);
    out.fill(0.0);
    for (t, &p) in probs.iter().enumerate() {
        axpy(p, row(t), out);
    }
}

/// Where [`attend_backward`] adds its gradients: the query's, and each item's key and value.
/// The three may live in one buffer (the pose model's `[tokens, 3d]`), so each is lent in turn.
pub trait HeadGrads {
    /// `∂L/∂q` of this head (accumulated into).
    fn dq(&mut self) -> &mut [f32];
    /// `∂L/∂k_j` (accumulated into).
    fn dk(&mut self, j: usize) -> &mut [f32];
    /// `∂L/∂v_j` (accumulated into).
    fn dv(&mut self, j: usize) -> &mut [f32];
}

/// Backward of [`attend`] for one query head, given its probabilities `probs` and the output's
/// gradient `dout`; `ds` is scratch of `probs.len()` values. In this order:
/// 1. per item `j`: `dp_j = dout·v_j`, `dv_j += p_j dout`, and `w = Σ_j p_j dp_j` (in item
///    order from zero);
/// 2. `ds_j = p_j (dp_j − w) · scale` (the softmax backward, times the score scale);
/// 3. `dq += ds_j k_j` for `j` in order, then `dk_j += ds_j q`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn attend_backward<'a, N: Numerics>(
    q: &[f32],
    key: impl Fn(usize) -> &'a [f32],
    value: impl Fn(usize) -> &'a [f32],
    probs: &[f32],
    dout: &[f32],
    scale: f32,
    ds: &mut [f32],
    grads: &mut impl HeadGrads,
) {
    let n = probs.len();
    let ds = &mut ds[..n];
    let mut w = 0.0f32;
    for j in 0..n {
        let dp = N::dot(dout, value(j));
        let p = probs[j];
        axpy(p, dout, grads.dv(j));
        ds[j] = dp;
        w += p * dp;
    }
    for (d, &p) in ds.iter_mut().zip(probs) {
        *d = p * (*d - w) * scale;
    }
    let dq = grads.dq();
    for (j, &s) in ds.iter().enumerate() {
        axpy(s, key(j), dq);
    }
    for (j, &s) in ds.iter().enumerate() {
        axpy(s, q, grads.dk(j));
    }
}

/// The running state of a softmax computed chunk by chunk (an online softmax, as in flash
/// attention): the largest score so far and the sum of `e^(s − max)` so far. A caller keeps its
/// own accumulator `acc = Σ e^(s_j − max) v_j`; per chunk of scores it calls
/// [`raise`](Self::raise) with the chunk's maximum (and multiplies `acc` by the factor it
/// returns), adds `e^(s_j − max)` of the chunk's scores with [`add`](Self::add) and their
/// weighted values to `acc`; at the end the output is `acc · `[`inverse`](Self::inverse). The
/// result equals [`attend`]'s up to rounding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineSoftmax {
    /// The largest score so far (`-inf` before the first).
    pub max: f32,
    /// `Σ e^(s − max)` over the scores so far.
    pub sum: f32,
}

impl Default for OnlineSoftmax {
    fn default() -> Self {
        OnlineSoftmax::EMPTY
    }
}

impl OnlineSoftmax {
    /// No scores yet.
    pub const EMPTY: OnlineSoftmax = OnlineSoftmax {
        max: f32::NEG_INFINITY,
        sum: 0.0,
    };

    /// Makes `chunk_max` the running maximum when it is larger. Then the running sum has been
    /// multiplied by `e^(old − new)` (0 when there was no score before) and the same factor is
    /// returned for the caller's accumulator; `None` when the maximum stands.
    #[inline(always)]
    pub fn raise<N: Numerics>(&mut self, chunk_max: f32) -> Option<f32> {
        if chunk_max > self.max {
            let f = if self.max == f32::NEG_INFINITY {
                0.0
            } else {
                N::exp(self.max - chunk_max)
            };
            self.sum *= f;
            self.max = chunk_max;
            Some(f)
        } else {
            None
        }
    }

    /// Adds a chunk's `Σ e^(s − max)`.
    #[inline(always)]
    pub fn add(&mut self, exp_sum: f32) {
        self.sum += exp_sum;
    }

    /// `1 / sum`, or 0 when there were no scores (an empty softmax attends to nothing).
    #[inline(always)]
    pub fn inverse(&self) -> f32 {
        if self.sum > 0.0 {
            1.0 / self.sum
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain sequential arithmetic and the standard library's `exp`.
    struct Plain;
    impl Numerics for Plain {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            a.iter().zip(b).map(|(x, y)| x * y).sum()
        }
        fn sum(xs: &[f32]) -> f32 {
            xs.iter().sum()
        }
        fn exp(x: f32) -> f32 {
            x.exp()
        }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Separate q, k and v gradients of one head.
    struct Grads {
        dq: Vec<f32>,
        dk: Vec<f32>,
        dv: Vec<f32>,
        d: usize,
    }
    impl HeadGrads for Grads {
        fn dq(&mut self) -> &mut [f32] {
            &mut self.dq
        }
        fn dk(&mut self, j: usize) -> &mut [f32] {
            &mut self.dk[j * self.d..(j + 1) * self.d]
        }
        fn dv(&mut self, j: usize) -> &mut [f32] {
            &mut self.dv[j * self.d..(j + 1) * self.d]
        }
    }

    fn forward(q: &[f32], k: &[f32], v: &[f32], d: usize, scale: f32) -> Vec<f32> {
        let n = k.len() / d;
        let mut probs = vec![0.0; n];
        let mut out = vec![0.0; d];
        attend::<Plain>(
            q,
            |j| &k[j * d..(j + 1) * d],
            |j| &v[j * d..(j + 1) * d],
            scale,
            &mut probs,
            &mut out,
        );
        out
    }

    #[test]
    fn softmax_is_a_distribution_and_shift_invariant() {
        let mut s = values(13, 1);
        let mut t: Vec<f32> = s.iter().map(|x| x + 3.0).collect();
        softmax::<Plain>(&mut s, 1.7);
        softmax::<Plain>(&mut t, 1.7);
        let total: f32 = s.iter().sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        for (a, b) in s.iter().zip(&t) {
            assert!(*a > 0.0 && (a - b).abs() < 1e-6, "{a} {b}");
        }
        // Large scores do not overflow.
        let mut big = [1000.0f32, 999.0];
        softmax::<Plain>(&mut big, 1.0);
        assert!((big[0] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        softmax::<Plain>(&mut [], 1.0);
    }

    #[test]
    fn attend_matches_the_definition() {
        let (d, n, scale) = (5, 7, 0.4);
        let (q, k, v) = (values(d, 2), values(n * d, 3), values(n * d, 4));
        let out = forward(&q, &k, &v, d, scale);
        let s: Vec<f64> = (0..n)
            .map(|j| (0..d).map(|t| (q[t] * k[j * d + t]) as f64).sum::<f64>() * scale as f64)
            .collect();
        let z: f64 = s.iter().map(|x| x.exp()).sum();
        for c in 0..d {
            let want: f64 = (0..n).map(|j| s[j].exp() / z * v[j * d + c] as f64).sum();
            assert!(
                (out[c] as f64 - want).abs() < 1e-5,
                "{c}: {} vs {want}",
                out[c]
            );
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (d, n, scale) = (4, 6, 0.5);
        let (q, k, v) = (values(d, 5), values(n * d, 6), values(n * d, 7));
        let dout = values(d, 8);
        // L = dout · out
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let o = forward(q, k, v, d, scale);
            o.iter().zip(&dout).map(|(a, b)| (a * b) as f64).sum()
        };
        let mut probs = vec![0.0; n];
        let mut out = vec![0.0; d];
        attend::<Plain>(
            &q,
            |j| &k[j * d..(j + 1) * d],
            |j| &v[j * d..(j + 1) * d],
            scale,
            &mut probs,
            &mut out,
        );
        let mut g = Grads {
            dq: vec![0.0; d],
            dk: vec![0.0; n * d],
            dv: vec![0.0; n * d],
            d,
        };
        let mut ds = vec![0.0; n];
        attend_backward::<Plain>(
            &q,
            |j| &k[j * d..(j + 1) * d],
            |j| &v[j * d..(j + 1) * d],
            &probs,
            &dout,
            scale,
            &mut ds,
            &mut g,
        );
        let eps = 1e-2f32;
        let check = |which: usize, analytic: &[f32]| {
            for (i, &a) in analytic.iter().enumerate() {
                let mut x = [q.clone(), k.clone(), v.clone()];
                x[which][i] += eps;
                let plus = loss(&x[0], &x[1], &x[2]);
                x[which][i] -= 2.0 * eps;
                let minus = loss(&x[0], &x[1], &x[2]);
                let numeric = (plus - minus) / (2.0 * eps as f64);
                assert!(
                    (numeric - a as f64).abs() < 2e-3 * (1.0 + numeric.abs()),
                    "input {which} element {i}: analytic {a}, numeric {numeric}"
                );
            }
        };
        check(0, &g.dq);
        check(1, &g.dk);
        check(2, &g.dv);
        assert!(g
            .dq
            .iter()
            .chain(&g.dk)
            .chain(&g.dv)
            .any(|x| x.abs() > 1e-3));
    }

    /// [`Plain`], dividing by the sum (as the poolings do).
    struct Dividing;
    impl Numerics for Dividing {
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            Plain::dot(a, b)
        }
        fn sum(xs: &[f32]) -> f32 {
            Plain::sum(xs)
        }
        fn exp(x: f32) -> f32 {
            x.exp()
        }
        fn normalise(s: &mut [f32], sum: f32) {
            for v in s.iter_mut() {
                *v /= sum;
            }
        }
    }

    #[test]
    fn pool_is_the_written_out_pooling_and_its_backward_checks() {
        let (d, n, b) = (6, 9, 0.3f32);
        let (w, h) = (values(d, 12), values(n * d, 13));
        let mut probs = vec![0.0; n];
        let mut z = vec![0.0; d];
        pool::<Dividing>(&w, b, |t| &h[t * d..(t + 1) * d], &mut probs, &mut z);
        // The loop the model and the runtime had, operation for operation: bit for bit.
        let mut s: Vec<f32> = (0..n)
            .map(|t| Plain::dot(&h[t * d..(t + 1) * d], &w) + b)
            .collect();
        let mx = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in s.iter_mut() {
            *v = (*v - mx).exp();
            sum += *v;
        }
        for v in s.iter_mut() {
            *v /= sum;
        }
        let mut want = vec![0.0f32; d];
        for t in 0..n {
            for (o, x) in want.iter_mut().zip(&h[t * d..(t + 1) * d]) {
                *o += s[t] * x;
            }
        }
        assert_eq!(probs, s);
        assert_eq!(z, want);
        // Backward of L = dz · z through attend_backward (k = v = h, scale 1), against
        // finite differences in w, h and b.
        let dz = values(d, 14);
        let loss = |w: &[f32], h: &[f32], b: f32| -> f64 {
            let (mut p, mut z) = (vec![0.0; n], vec![0.0; d]);
            pool::<Dividing>(w, b, |t| &h[t * d..(t + 1) * d], &mut p, &mut z);
            z.iter().zip(&dz).map(|(a, c)| (a * c) as f64).sum()
        };
        struct PoolGrads {
            dw: Vec<f32>,
            dh: Vec<f32>,
            d: usize,
        }
        impl HeadGrads for PoolGrads {
            fn dq(&mut self) -> &mut [f32] {
                &mut self.dw
            }
            fn dk(&mut self, j: usize) -> &mut [f32] {
                &mut self.dh[j * self.d..(j + 1) * self.d]
            }
            fn dv(&mut self, j: usize) -> &mut [f32] {
                &mut self.dh[j * self.d..(j + 1) * self.d]
            }
        }
        let mut g = PoolGrads {
            dw: vec![0.0; d],
            dh: vec![0.0; n * d],
            d,
        };
        let mut ds = vec![0.0; n];
        let row = |t: usize| &h[t * d..(t + 1) * d];
        attend_backward::<Dividing>(&w, row, row, &probs, &dz, 1.0, &mut ds, &mut g);
        let db: f32 = ds.iter().sum();
        let eps = 1e-2f32;
        let num = |f: &dyn Fn(f32) -> f64| (f(eps) - f(-eps)) / (2.0 * eps as f64);
        let close = |a: f32, n: f64, what: &str| {
            assert!(
                (n - a as f64).abs() < 2e-3 * (1.0 + n.abs()),
                "{what}: analytic {a}, numeric {n}"
            );
        };
        for i in 0..d {
            let n = num(&|e| {
                let mut w2 = w.clone();
                w2[i] += e;
                loss(&w2, &h, b)
            });
            close(g.dw[i], n, "dw");
        }
        for i in 0..n * d {
            let n = num(&|e| {
                let mut h2 = h.clone();
                h2[i] += e;
                loss(&w, &h2, b)
            });
            close(g.dh[i], n, "dh");
        }
        close(db, num(&|e| loss(&w, &h, b + e)), "db");
        assert!(g.dw.iter().chain(&g.dh).any(|x| x.abs() > 1e-3));
    }

    #[test]
    fn online_softmax_over_chunks_equals_the_whole() {
        let (d, n, scale) = (3, 11, 0.9);
        let (q, k, v) = (values(d, 9), values(n * d, 10), values(n * d, 11));
        let exact = forward(&q, &k, &v, d, scale);
        for chunk in [1, 2, 4, 11] {
            let mut state = OnlineSoftmax::EMPTY;
            let mut acc = vec![0.0f32; d];
            for j0 in (0..n).step_by(chunk) {
                let js = j0..(j0 + chunk).min(n);
                let s: Vec<f32> = js
                    .clone()
                    .map(|j| Plain::dot(&q, &k[j * d..(j + 1) * d]) * scale)
                    .collect();
                let cmax = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if let Some(f) = state.raise::<Plain>(cmax) {
                    acc.iter_mut().for_each(|a| *a *= f);
                }
                let e: Vec<f32> = s.iter().map(|x| (x - state.max).exp()).collect();
                state.add(Plain::sum(&e));
                for (j, p) in js.zip(e) {
                    axpy(p, &v[j * d..(j + 1) * d], &mut acc);
                }
            }
            for (a, b) in acc.iter().zip(&exact) {
                assert!((a * state.inverse() - b).abs() < 1e-6, "chunk {chunk}");
            }
        }
        assert_eq!(OnlineSoftmax::EMPTY.inverse(), 0.0);
        let mut s = OnlineSoftmax::default();
        assert_eq!(s.raise::<Plain>(2.0), Some(0.0));
        assert_eq!(s.raise::<Plain>(1.0), None);
    }
}
