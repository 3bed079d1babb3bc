//! The layers' kernels, each an explicit forward and backward over flat row-major `f32`
//! buffers: matrix product (over the engine's own packed kernels, `crate::gemm`), Linear, LayerNorm, GELU (tanh
//! approximation), dropout, multi-head self-attention over a sample's tokens, attention
//! pooling and the skeleton-graph mixing `Â f`. Weight gradients accumulate (`+=`); input
//! gradients overwrite. Work splits over samples with rayon in fixed chunks, so results do
//! not depend on scheduling. Elementwise passes that follow one another (GELU then dropout,
//! dropout then the residual add, and their backwards) also run fused chunk by chunk, with the
//! same operations in the same order as the separate passes; LayerNorm runs eight rows side
//! by side; attention is vectorised in `crate::attention`, the dropout mask in
//! `crate::dropout` — all bit for bit what the plain loops give.

use rayon::prelude::*;

thread_local! {
    static SINGLE_THREADED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether matrix products on this thread run without splitting over threads.
pub fn single_threaded() -> bool {
    SINGLE_THREADED.with(|c| c.get())
}

/// Runs `f` with matrix products on this thread kept on this thread (used when the batch
/// is already split over threads, one shard each).
pub fn with_single_threaded<T>(f: impl FnOnce() -> T) -> T {
    let old = SINGLE_THREADED.with(|c| c.replace(true));
    let r = f();
    SINGLE_THREADED.with(|c| c.set(old));
    r
}

/// Runs `f` compiled for AVX2 where the CPU has it (8 lanes instead of SSE2's 4). Rust never
/// fuses a multiply and an add by itself and keeps the order of float sums, so the results are
/// the same bit for bit; only the width of the vectorised loops changes. `f` must be small
/// enough to be inlined into the AVX2 function (one loop over a chunk).
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `c[m, n] (+)= a · b` with `a` an `m × k` and `b` a `k × n` matrix given by row and column
/// strides (so transposes are free); `c` is row-major. Panics if a stride walks out of a slice.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
) {
    // Shapes and strides are checked once, in `gemm::matmul_isa`.
    let par = m * n * k >= 1 << 18 && rayon::current_num_threads() > 1 && !single_threaded();
    crate::gemm::matmul(
        m,
        n,
        k,
        c,
        accumulate,
        crate::gemm::Strided {
            data: a,
            rs: a_rs,
            cs: a_cs,
        },
        crate::gemm::Strided {
            data: b,
            rs: b_rs,
            cs: b_cs,
        },
        par,
    );
}

/// Linear forward: `y[rows, out] = x[rows, inp] · wᵀ + b`, with `w` stored `[out, inp]` (PyTorch).
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    rows: usize,
    inp: usize,
    out: usize,
) {
    for r in y[..rows * out].chunks_exact_mut(out) {
        r.copy_from_slice(&b[..out]);
    }
    matmul(rows, out, inp, y, true, x, inp, 1, w, 1, inp);
}

/// Linear backward: `dx = dy · w` (if asked; overwrites), `dw += dyᵀ · x`, `db += Σ_rows dy`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
    rows: usize,
    inp: usize,
    out: usize,
) {
    if let Some(dx) = dx {
        matmul(rows, inp, out, dx, false, dy, out, 1, w, inp, 1);
    }
    matmul(out, inp, rows, dw, true, dy, 1, out, x, inp, 1);
    for r in dy[..rows * out].chunks_exact(out) {
        for (g, v) in db[..out].iter_mut().zip(r) {
            *g += v;
        }
    }
}

pub use csipose_spec::act::LN_EPS;

/// LayerNorm over the last dimension `d`; saves each row's mean and 1/std for the backward.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    rows: usize,
    d: usize,
) {
    y[..rows * d]
        .par_chunks_mut(LN_ROWS * d)
        .zip(mean[..rows].par_chunks_mut(LN_ROWS))
        .zip(rstd[..rows].par_chunks_mut(LN_ROWS))
        .enumerate()
        .with_min_len(8)
        .for_each(|(g, ((yg, mg), rg))| {
            let xg = &x[g * LN_ROWS * d..][..yg.len()];
            wide(|| layernorm_rows(xg, gamma, beta, yg, mg, rg));
        });
}

/// Rows LayerNorm handles side by side: their sums are independent chains, so they overlap
/// instead of each waiting out the latency of its own `d` additions.
const LN_ROWS: usize = 8;

/// What `Sum` for `f32` folds from, so sums written out as loops round as `iter().sum()` does.
#[inline(always)]
fn sum_start() -> f32 {
    std::iter::empty::<f32>().sum()
}

/// Up to [`LN_ROWS`] rows of [`layernorm_forward`] (`mean.len()` of them): writes `y` and each
/// row's mean and 1/std. Per row, exactly `mu = Σ x / d`, `var = Σ (x − mu)² / d` (sums in
/// element order, as `iter().sum()`), `s = 1/√(var + eps)`, `y = (x − mu)·s·γ + β`.
#[inline(always)]
fn layernorm_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let n = mean.len();
    let d = x.len() / n;
    let mut acc = [sum_start(); LN_ROWS];
    for i in 0..d {
        for (l, a) in acc[..n].iter_mut().enumerate() {
            *a += x[l * d + i];
        }
    }
    let mut mu = [0.0f32; LN_ROWS];
    for l in 0..n {
        mu[l] = acc[l] / d as f32;
    }
    let mut acc = [sum_start(); LN_ROWS];
    for i in 0..d {
        for (l, a) in acc[..n].iter_mut().enumerate() {
            let v = x[l * d + i];
            *a += (v - mu[l]) * (v - mu[l]);
        }
    }
    for l in 0..n {
        let var = acc[l] / d as f32;
        let s = 1.0 / (var + LN_EPS).sqrt();
        let (xr, yr) = (&x[l * d..(l + 1) * d], &mut y[l * d..(l + 1) * d]);
        for i in 0..d {
            yr[i] = (xr[i] - mu[l]) * s * gamma[i] + beta[i];
        }
        (mean[l], rstd[l]) = (mu[l], s);
    }
}

/// LayerNorm backward: `dx` overwritten, `dgamma`, `dbeta` accumulated.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    rows: usize,
    d: usize,
) {
    let (dgamma, dbeta) = (&mut dgamma[..d], &mut dbeta[..d]);
    wide(|| {
        for r in 0..rows {
            let (mu, s) = (mean[r], rstd[r]);
            let (xr, dyr) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
            for i in 0..d {
                let g = dyr[i];
                dgamma[i] += g * (xr[i] - mu) * s;
                dbeta[i] += g;
            }
        }
    });
    dx[..rows * d]
        .par_chunks_mut(LN_ROWS * d)
        .enumerate()
        .with_min_len(8)
        .for_each(|(g, dxg)| {
            let r0 = g * LN_ROWS;
            let n = dxg.len() / d;
            let (xg, dyg) = (&x[r0 * d..][..n * d], &dy[r0 * d..][..n * d]);
            let (mg, sg) = (&mean[r0..r0 + n], &rstd[r0..r0 + n]);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { layernorm_rows_backward_avx2(xg, gamma, mg, sg, dyg, dxg) };
                return;
            }
            layernorm_rows_backward(xg, gamma, mg, sg, dyg, dxg);
        });
}

/// [`layernorm_rows_backward`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn layernorm_rows_backward_avx2(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    layernorm_rows_backward(x, gamma, mean, rstd, dy, dx)
}

/// Up to [`LN_ROWS`] rows (`mean.len()`) of [`layernorm_backward`]'s input gradient, side by
/// side. Per row, exactly: `Σ g` and `Σ g·(x − mu)·s` with `g = dy·γ` (in element order from
/// 0), then `dx = s·(g − Σg/d − x̂·Σgx̂/d)` with `x̂ = (x − mu)·s`.
#[inline(always)]
fn layernorm_rows_backward(
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let n = mean.len();
    let d = x.len() / n;
    let (mut sum_g, mut sum_gx) = ([0.0f32; LN_ROWS], [0.0f32; LN_ROWS]);
    for i in 0..d {
        for l in 0..n {
            let g = dy[l * d + i] * gamma[i];
            sum_g[l] += g;
            sum_gx[l] += g * (x[l * d + i] - mean[l]) * rstd[l];
        }
    }
    for l in 0..n {
        let (mu, s) = (mean[l], rstd[l]);
        let (mg, mgx) = (sum_g[l] / d as f32, sum_gx[l] / d as f32);
        let (xr, dyr, dxr) = (
            &x[l * d..(l + 1) * d],
            &dy[l * d..(l + 1) * d],
            &mut dx[l * d..(l + 1) * d],
        );
        for i in 0..d {
            let xhat = (xr[i] - mu) * s;
            dxr[i] = s * (dyr[i] * gamma[i] - mg - xhat * mgx);
        }
    }
}

#[cfg(test)]
mod layernorm_tests {
    use super::*;

    /// The one-row-at-a-time LayerNorm the side-by-side rows must equal bit for bit.
    fn reference(x: &[f32], gamma: &[f32], beta: &[f32], dy: &[f32], d: usize) -> [Vec<f32>; 5] {
        let rows = x.len() / d;
        let (mut y, mut mean, mut rstd, mut dx) = (
            vec![0.0; rows * d],
            vec![0.0; rows],
            vec![0.0; rows],
            vec![0.0; rows * d],
        );
        let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
        for r in 0..rows {
            let xr = &x[r * d..(r + 1) * d];
            let mu = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / d as f32;
            let s = 1.0 / (var + LN_EPS).sqrt();
            for i in 0..d {
                y[r * d + i] = (xr[i] - mu) * s * gamma[i] + beta[i];
            }
            (mean[r], rstd[r]) = (mu, s);
            let dyr = &dy[r * d..(r + 1) * d];
            let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
            for i in 0..d {
                let g = dyr[i] * gamma[i];
                sum_g += g;
                sum_gx += g * (xr[i] - mu) * s;
                dgamma[i] += dyr[i] * (xr[i] - mu) * s;
                dbeta[i] += dyr[i];
            }
            let (mg, mgx) = (sum_g / d as f32, sum_gx / d as f32);
            for i in 0..d {
                let xhat = (xr[i] - mu) * s;
                dx[r * d + i] = s * (dyr[i] * gamma[i] - mg - xhat * mgx);
            }
        }
        [y, mean, rstd, dx, [dgamma, dbeta].concat()]
    }

    fn same(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Forward and backward equal the row-at-a-time formulas bit for bit, through the public
    /// entry points (AVX2 where the CPU has it) and the portable row groups, with row counts
    /// that leave a partial group.
    #[test]
    fn side_by_side_rows_equal_one_row_at_a_time() {
        let mut rng = crate::rng::Rng::new(11);
        for &(rows, d) in &[(1, 5), (7, 96), (8, 96), (23, 128), (320, 96), (13, 33)] {
            let v = |n: usize, rng: &mut crate::rng::Rng, sc: f32| -> Vec<f32> {
                (0..n).map(|_| sc * rng.normal() as f32 + 0.3).collect()
            };
            let (x, gamma, beta, dy) = (
                v(rows * d, &mut rng, 2.0),
                v(d, &mut rng, 1.0),
                v(d, &mut rng, 1.0),
                v(rows * d, &mut rng, 1.0),
            );
            let want = reference(&x, &gamma, &beta, &dy, d);
            let (mut y, mut mean, mut rstd) =
                (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows]);
            layernorm_forward(&x, &gamma, &beta, &mut y, &mut mean, &mut rstd, rows, d);
            same(&y, &want[0], "y");
            same(&mean, &want[1], "mean");
            same(&rstd, &want[2], "rstd");
            let (mut dx, mut dg, mut db) = (vec![0.0; rows * d], vec![0.0; d], vec![0.0; d]);
            layernorm_backward(
                &x, &gamma, &mean, &rstd, &dy, &mut dx, &mut dg, &mut db, rows, d,
            );
            same(&dx, &want[3], "dx");
            same(&[dg, db].concat(), &want[4], "dgamma, dbeta");
            // The portable row groups (the entry points above took AVX2 where it exists).
            for r0 in (0..rows).step_by(LN_ROWS) {
                let n = (rows - r0).min(LN_ROWS);
                let (xg, dyg) = (&x[r0 * d..(r0 + n) * d], &dy[r0 * d..(r0 + n) * d]);
                let (mut yg, mut mg, mut sg) = (vec![0.0; n * d], vec![0.0; n], vec![0.0; n]);
                layernorm_rows(xg, &gamma, &beta, &mut yg, &mut mg, &mut sg);
                same(&yg, &want[0][r0 * d..(r0 + n) * d], "portable y");
                same(&mg, &want[1][r0..r0 + n], "portable mean");
                same(&sg, &want[2][r0..r0 + n], "portable rstd");
                let mut dxg = vec![0.0; n * d];
                layernorm_rows_backward(xg, &gamma, &mg, &sg, dyg, &mut dxg);
                same(&dxg, &want[3][r0 * d..(r0 + n) * d], "portable dx");
            }
        }
    }
}

/// GELU (tanh form), its derivative and the rational tanh: [`csipose_spec::act`], the one
/// definition the runtime evaluates too.
pub use csipose_spec::act::{fast_tanh, gelu, gelu_grad};

/// `y = gelu(x)` elementwise.
pub fn gelu_forward(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(4096)
        .zip(x.par_chunks(4096))
        .for_each(|(yc, xc)| {
            wide(|| {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = gelu(v);
                }
            })
        });
}

/// `d *= gelu'(x)` elementwise (in place on the incoming gradient).
pub fn gelu_backward(x: &[f32], d: &mut [f32]) {
    d.par_chunks_mut(4096)
        .zip(x.par_chunks(4096))
        .for_each(|(dc, xc)| {
            wide(|| {
                for (g, &v) in dc.iter_mut().zip(xc) {
                    *g *= gelu_grad(v);
                }
            })
        });
}

/// Inverted dropout in place. `mask` receives 0 or 1/(1-p); the keep decision for element
/// `i` is a hash of (`key`, `i`), so it is the same for any thread count (vectorised in
/// [`crate::dropout`]).
pub fn dropout_forward(x: &mut [f32], mask: &mut [f32], p: f32, key: u64) {
    let scale = 1.0 / (1.0 - p);
    x.par_chunks_mut(4096)
        .zip(mask.par_chunks_mut(4096))
        .enumerate()
        .for_each(|(c, (xc, mc))| crate::dropout::apply(xc, mc, p, scale, key, (c * 4096) as u64));
}

/// Dropout backward: `d *= mask`.
pub fn dropout_backward(mask: &[f32], d: &mut [f32]) {
    wide(|| {
        for (g, m) in d.iter_mut().zip(mask) {
            *g *= m;
        }
    })
}

/// One dropout site's draw: the probability and the key of its mask ([`dropout_forward`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropDraw {
    pub p: f32,
    pub key: u64,
}

/// [`gelu_forward`] then, when `drop` is given, [`dropout_forward`] on `y` (recording the
/// mask), fused chunk by chunk while a chunk is in cache: the same operations on the same
/// values, so the same results bit for bit.
pub fn gelu_dropout_forward(x: &[f32], y: &mut [f32], drop: Option<(DropDraw, &mut [f32])>) {
    let Some((dr, mask)) = drop else {
        return gelu_forward(x, y);
    };
    let scale = 1.0 / (1.0 - dr.p);
    let n = y.len();
    y.par_chunks_mut(4096)
        .zip(x[..n].par_chunks(4096))
        .zip(mask[..n].par_chunks_mut(4096))
        .enumerate()
        .for_each(|(c, ((yc, xc), mc))| {
            wide(|| {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = gelu(v);
                }
            });
            crate::dropout::apply(yc, mc, dr.p, scale, dr.key, (c * 4096) as u64);
        });
}

/// `x = drop(x) + r`: [`dropout_forward`] on `x` (recording the mask) when `drop` is given,
/// then `x += r`, fused chunk by chunk (the same results bit for bit as the two passes).
pub fn dropout_add_forward(x: &mut [f32], mask: &mut [f32], drop: Option<DropDraw>, r: &[f32]) {
    let n = x.len();
    let add = |xc: &mut [f32], rc: &[f32]| {
        wide(|| {
            for (v, &a) in xc.iter_mut().zip(rc) {
                *v += a;
            }
        })
    };
    match drop {
        None => x
            .par_chunks_mut(4096)
            .zip(r[..n].par_chunks(4096))
            .for_each(|(xc, rc)| add(xc, rc)),
        Some(dr) => {
            let scale = 1.0 / (1.0 - dr.p);
            x.par_chunks_mut(4096)
                .zip(r[..n].par_chunks(4096))
                .zip(mask[..n].par_chunks_mut(4096))
                .enumerate()
                .for_each(|(c, ((xc, rc), mc))| {
                    crate::dropout::apply(xc, mc, dr.p, scale, dr.key, (c * 4096) as u64);
                    add(xc, rc);
                });
        }
    }
}

/// `dst = src · mask` (the dropout backward of a copied gradient), or `dst = src` without a
/// mask.
pub fn dropout_backward_into(mask: Option<&[f32]>, src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    match mask {
        None => dst.copy_from_slice(&src[..n]),
        Some(m) => wide(|| {
            for ((o, &g), &k) in dst.iter_mut().zip(&src[..n]).zip(&m[..n]) {
                *o = g * k;
            }
        }),
    }
}

/// [`dropout_backward`] (when `mask` is given) then [`gelu_backward`] in one pass:
/// `d = (d · mask) · gelu'(x)`.
pub fn gelu_dropout_backward(x: &[f32], mask: Option<&[f32]>, d: &mut [f32]) {
    let Some(mask) = mask else {
        return gelu_backward(x, d);
    };
    let n = d.len();
    d.par_chunks_mut(4096)
        .zip(x[..n].par_chunks(4096))
        .zip(mask[..n].par_chunks(4096))
        .for_each(|((dc, xc), mc)| {
            wide(|| {
                for ((g, &v), &m) in dc.iter_mut().zip(xc).zip(mc) {
                    *g = *g * m * gelu_grad(v);
                }
            })
        });
}

/// The model's arithmetic for the shared attention math ([`csipose_attn_core`]): dot products
/// and sums added in element order, the standard library's `exp`.
pub(crate) struct ModelNumerics;

impl csipose_attn_core::Numerics for ModelNumerics {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
    }
    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        let mut s = 0.0;
        for &x in xs {
            s += x;
        }
        s
    }
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        x.exp()
    }
}

/// Multi-head self-attention core and its backward (`dqkv` overwritten from `dctx`): each
/// (sample, head, query) is [`csipose_attn_core::attend`] with scale `1/√dh`, vectorised in
/// the `attention` module, which owns them.
pub use crate::attention::{backward as attention_backward, forward as attention_forward};

/// Attention pooling: score `s_t = h_t · w + b`, `a = softmax_t(s)`, `z = Σ_t a_t h_t`.
/// Writes `probs [batch, p]` and `z [batch, d]`.
#[allow(clippy::too_many_arguments)]
pub fn pool_forward(
    h: &[f32],
    w: &[f32],
    bias: f32,
    probs: &mut [f32],
    z: &mut [f32],
    batch: usize,
    p: usize,
    d: usize,
) {
    z[..batch * d]
        .par_chunks_mut(d)
        .zip(probs[..batch * p].par_chunks_mut(p))
        .enumerate()
        .for_each(|(b, (zb, pb))| {
            let hb = &h[b * p * d..(b + 1) * p * d];
            let row = |t: usize| &hb[t * d..(t + 1) * d];
            csipose_attn_core::pool::<PoolNumerics>(&w[..d], bias, row, pb, zb);
        });
}

/// The model's arithmetic for the attention pooling ([`csipose_attn_core::pool`]):
/// [`ModelNumerics`], with the exponentials divided by their sum.
struct PoolNumerics;

impl csipose_attn_core::Numerics for PoolNumerics {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        ModelNumerics::dot(a, b)
    }
    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        ModelNumerics::sum(xs)
    }
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        ModelNumerics::exp(x)
    }
    #[inline(always)]
    fn normalise(s: &mut [f32], sum: f32) {
        for v in s.iter_mut() {
            *v /= sum;
        }
    }
}

/// The pooling's gradients for [`csipose_attn_core::attend_backward`]: keys and values are the
/// rows `h_t`, so both land in `dh_t`; the query's (the pooling weight's) is summed by
/// [`pool_backward`] afterwards in sample order, so here it goes nowhere (an empty slice).
struct PoolGrads<'a> {
    dh: &'a mut [f32],
    d: usize,
}

impl csipose_attn_core::HeadGrads for PoolGrads<'_> {
    fn dq(&mut self) -> &mut [f32] {
        &mut []
    }
    fn dk(&mut self, j: usize) -> &mut [f32] {
        &mut self.dh[j * self.d..(j + 1) * self.d]
    }
    fn dv(&mut self, j: usize) -> &mut [f32] {
        &mut self.dh[j * self.d..(j + 1) * self.d]
    }
}

/// Backward of [`pool_forward`]: `dh` overwritten, `dw`, `db` accumulated.
#[allow(clippy::too_many_arguments)]
pub fn pool_backward(
    h: &[f32],
    w: &[f32],
    probs: &[f32],
    dz: &[f32],
    dh: &mut [f32],
    dw: &mut [f32],
    db: &mut f32,
    batch: usize,
    p: usize,
    d: usize,
) {
    // Per sample ([`csipose_attn_core::attend_backward`], k = v = h, scale 1):
    // ds_t = a_t (dz·h_t - Σ_u a_u dz·h_u); dh_t = a_t dz + ds_t w.
    let mut ds = vec![0.0f32; batch * p];
    ds.par_chunks_mut(p)
        .zip(dh[..batch * p * d].par_chunks_mut(p * d))
        .enumerate()
        .for_each(|(b, (dsb, dhb))| {
            let hb = &h[b * p * d..(b + 1) * p * d];
            let pb = &probs[b * p..(b + 1) * p];
            let dzb = &dz[b * d..(b + 1) * d];
            let row = |t: usize| &hb[t * d..(t + 1) * d];
            dhb.fill(0.0);
            let mut g = PoolGrads { dh: dhb, d };
            csipose_attn_core::attend_backward::<PoolNumerics>(
                &w[..d],
                row,
                row,
                pb,
                dzb,
                1.0,
                dsb,
                &mut g,
            );
        });
    for (r, &s) in ds.iter().enumerate() {
        *db += s;
        for (g, x) in dw[..d].iter_mut().zip(&h[r * d..(r + 1) * d]) {
            *g += s * x;
        }
    }
}

/// Graph mixing per sample: `out[b] = adj · f[b]` (or `adjᵀ · f[b]` when `transpose`), with
/// `adj [n, n]` and `f[b] [n, g]`. The backward of the mixing is the transposed mixing.
pub fn graph_mix(
    adj: &[f32],
    transpose: bool,
    f: &[f32],
    out: &mut [f32],
    batch: usize,
    n: usize,
    g: usize,
) {
    out[..batch * n * g]
        .par_chunks_mut(n * g)
        .enumerate()
        .for_each(|(b, ob)| {
            let fb = &f[b * n * g..(b + 1) * n * g];
            ob.fill(0.0);
            for i in 0..n {
                for j in 0..n {
                    let a = if transpose {
                        adj[j * n + i]
                    } else {
                        adj[i * n + j]
                    };
                    if a != 0.0 {
                        for (o, x) in ob[i * g..(i + 1) * g]
                            .iter_mut()
                            .zip(&fb[j * g..(j + 1) * g])
                        {
                            *o += a * x;
                        }
                    }
                }
            }
        });
}
