//! The forward pass's operations, each dispatched on the [`Kernel`] (the one place that
//! decides which instruction set runs a stage; [`crate::forward`] is only their sequence):
//! the model Linear ([`lin`]: int16 on repacked weights or the f32 kernels), LayerNorm,
//! multi-head attention, attention pooling, the graph head's mixing and output, the
//! embedding's standardisation (and int16 quantization). On the AVX-512 paths (exact f32 and
//! VNNI int16) the
//! non-Linear stages run in AVX-512 code that performs exactly the portable operations
//! (`vnni.rs`), so that path equals its portable reference bit for bit; elsewhere they are the
//! portable loops below, vectorised by [`Kernel::vectorised`].

use crate::format::TensorData;
use crate::int16::QInput;
use crate::kernels::{
    layernorm as layernorm_portable, linear, linear_int16, linear_panels, quantize_rows,
    quantize_standardised, Act, Input, Kernel, Repacked, Weights,
};
use crate::math;

/// LayerNorm of `rows` rows of `d` (the AVX-512 version on the int16 path, the same values).
#[inline(always)]
pub(crate) fn layernorm(
    kern: Kernel,
    x: &[f32],
    g: &[f32],
    b: &[f32],
    y: &mut [f32],
    rows: usize,
    d: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if kern.is_avx512() {
        assert!(x.len() >= rows * d && y.len() >= rows * d && g.len() >= d && b.len() >= d);
        // SAFETY: `is_avx512` holds only on the Avx512 and Vnni16 paths, which
        // `Kernel::avx512` / `Kernel::avx512_vnni16` build only where AVX-512 F/BW/VL and
        // AVX2+FMA were detected; lengths checked above.
        unsafe { crate::vnni::layernorm(x, g, b, y, rows, d) };
        return;
    }
    let _ = kern;
    layernorm_portable(x, g, b, y, rows, d);
}

/// One model Linear: on its repacked int16 weights when the kernel packed them (inputs
/// quantized into `q` first), on its f32 panels when packed so, else the f32 kernels. `x` is
/// row-major (`ks` = 1).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn lin(
    kern: Kernel,
    x: Input,
    w: &Weights,
    pk: Option<&Repacked>,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
    q: (&mut [f32], &mut [f32]),
) {
    match pk {
        Some(Repacked::Int16(pk)) => {
            let xq = quantize_rows(kern, x.x, x.tokens, w.rows, x.ts, pk.qx, q.0, q.1);
            linear_int16(kern, &xq, pk, bias, act, residual, y);
        }
        Some(Repacked::Panels(p)) => linear_panels(kern, x, w, p, bias, act, residual, y),
        None => linear(kern, x, w, bias, act, residual, y),
    }
}

/// Dot product in eight lanes (lane `l` sums elements `l, l+8, ...`), lanes added pairwise,
/// then the tail: the same order on every path, and vectorisable.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = lanes_sum(&acc);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Sum of `xs` in eight lanes, as [`dot`].
#[inline(always)]
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let c = xs.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    let mut s = lanes_sum(&acc);
    for x in r {
        s += x;
    }
    s
}

#[inline(always)]
fn lanes_sum(a: &[f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Scratch of [`attention`].
pub(crate) struct AttnBufs<'a> {
    /// One head's keys, transposed and zero-padded: `[dh, pp]`.
    pub(crate) kt: &'a mut [f32],
    /// Scores / probabilities `[p, pp]`.
    pub(crate) s: &'a mut [f32],
    /// One head's values `[p, dh]`.
    pub(crate) vh: &'a mut [f32],
    /// One head's context `[p, dh]`.
    pub(crate) ch: &'a mut [f32],
}

/// Multi-head self-attention over the `p` tokens of `qkv [p, 3d]` into `ctx [p, d]`. Per
/// head, `S = Q·Kᵀ` and `C = softmax(S)·V` run on the Linear kernel (keys transposed and
/// padded to a multiple of 8 columns, values copied contiguous); the softmax between them is
/// [`softmax_rows`] (the shared attention math of `csipose-attn-core`). On the AVX-512 paths
/// (up to 16 tokens, heads up to 64 wide) `vnni::attention` computes the same values, bit for
/// bit, in one kernel.
#[inline(always)]
pub(crate) fn attention(
    kern: Kernel,
    qkv: &[f32],
    ctx: &mut [f32],
    b: AttnBufs,
    p: usize,
    d: usize,
    heads: usize,
) {
    let dh = d / heads;
    let pp = p.div_ceil(8) * 8;
    let scale = 1.0 / math::sqrt(dh as f32);
    let (kt, s, vh, ch) = (
        &mut b.kt[..dh * pp],
        &mut b.s[..p * pp],
        &mut b.vh[..p * dh],
        &mut b.ch[..p * dh],
    );
    // The AVX-512 paths: the whole attention in one kernel (the same roundings as the
    // portable steps below, so the int16 path still equals `portable_int16`), reading Q, K and
    // V in place.
    #[cfg(target_arch = "x86_64")]
    if kern.is_avx512() && p <= 16 && dh <= 64 {
        assert!(qkv.len() >= p * 3 * d && ctx.len() >= p * d && heads * dh == d);
        // SAFETY: `is_avx512` holds only on the Avx512 and Vnni16 paths, which
        // `Kernel::avx512` / `Kernel::avx512_vnni16` build only where AVX-512 F/BW/VL and
        // AVX2+FMA were detected; lengths and shapes checked above.
        unsafe { crate::vnni::attention(qkv, ctx, p, d, heads, scale) };
        return;
    }
    kt.fill(0.0);
    for h in 0..heads {
        for j in 0..p {
            let k = &qkv[j * 3 * d + d + h * dh..j * 3 * d + d + (h + 1) * dh];
            for (t, &v) in k.iter().enumerate() {
                kt[t * pp + j] = v;
            }
            vh[j * dh..(j + 1) * dh].copy_from_slice(
                &qkv[j * 3 * d + 2 * d + h * dh..j * 3 * d + 2 * d + (h + 1) * dh],
            );
        }
        let q = Input {
            x: &qkv[h * dh..],
            tokens: p,
            ts: 3 * d,
            ks: 1,
        };
        let kw = Weights {
            rows: dh,
            cols: pp,
            data: TensorData::F32(kt),
        };
        linear(kern, q, &kw, None, Act::None, None, s);
        softmax_rows(s, p, pp, scale);
        let vw = Weights {
            rows: p,
            cols: dh,
            data: TensorData::F32(vh),
        };
        let a = Input {
            x: s,
            tokens: p,
            ts: pp,
            ks: 1,
        };
        linear(kern, a, &vw, None, Act::None, None, ch);
        for i in 0..p {
            ctx[i * d + h * dh..i * d + (h + 1) * dh].copy_from_slice(&ch[i * dh..(i + 1) * dh]);
        }
    }
}

/// The runtime's arithmetic for the shared attention math ([`csipose_attn_core`]): sums in
/// eight lanes ([`sum8`], [`dot`]) and [`math::exp`].
struct RuntimeNumerics;

impl csipose_attn_core::Numerics for RuntimeNumerics {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        sum8(xs)
    }
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        math::exp(x)
    }
}

/// Softmax of `scores · scale` over the first `p` columns of each row of `s [p, pp]`
/// ([`csipose_attn_core::softmax`]; `vnni::attention` computes it on 16 lanes, transposed).
#[inline(always)]
fn softmax_rows(s: &mut [f32], p: usize, pp: usize, scale: f32) {
    for row in s.chunks_exact_mut(pp) {
        csipose_attn_core::softmax::<RuntimeNumerics>(&mut row[..p], scale);
    }
}

/// The embedding's input for the int16 Linear: the frame `x [k, p]` (feature-major)
/// standardised and quantized pair-major into `q`/`sx` in one pass from `x` (one fused
/// AVX-512 pass for up to 16 tokens on the VNNI path; the same values as the statistics
/// followed by [`quantize_standardised`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn standardise_quantize<'q>(
    kern: Kernel,
    x: &[f32],
    k: usize,
    p: usize,
    qx: f32,
    q: &'q mut [f32],
    sx: &'q mut [f32],
) -> QInput<'q> {
    #[cfg(target_arch = "x86_64")]
    if kern.is_vnni16() && p <= 16 {
        let np = k.div_ceil(2);
        assert!(x.len() == k * p && q.len() >= np * p && sx.len() >= p);
        // SAFETY: `is_vnni16` holds only on the Vnni16 path, which `Kernel::avx512_vnni16`
        // builds only where AVX-512 F/BW/VL/VNNI were detected; lengths checked above.
        unsafe { crate::vnni::standardise_quantize(x, k, p, qx, q, sx) };
        return QInput {
            q: &q[..np * p],
            sx: &sx[..p],
            tokens: p,
            ts: 1,
            js: p,
        };
    }
    let st = math::standardise_stats(x);
    quantize_standardised(kern, x, k, p, st, qx, q, sx)
}

/// The frame `x` standardised over the whole sample into `tok` (the f32 embedding's input,
/// layout kept).
#[inline(always)]
pub(crate) fn standardise(x: &[f32], tok: &mut [f32]) {
    let (mean, inv) = math::standardise_stats(x);
    for (t, &v) in tok.iter_mut().zip(x) {
        *t = (v - mean) * inv;
    }
}

/// Attention pooling: token scores `h_t · w + b`, softmax over the `p` tokens, then
/// `z = Σ_t a_t · h_t` (`h [p, d]`; `scores` holds `p`): [`csipose_attn_core::pool`] with
/// [`PoolNumerics`] (`vnni::pool` is its AVX-512 form, bit for bit).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool(
    kern: Kernel,
    h: &[f32],
    w: &[f32],
    b: f32,
    p: usize,
    d: usize,
    scores: &mut [f32],
    z: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if kern.is_avx512() && p <= 16 {
        assert!(h.len() >= p * d && w.len() >= d && scores.len() >= p && z.len() >= d);
        // SAFETY: `is_avx512` holds only on the Avx512 and Vnni16 paths, which
        // `Kernel::avx512` / `Kernel::avx512_vnni16` build only where AVX-512 F/BW/VL and
        // AVX2+FMA were detected; lengths checked above.
        unsafe { crate::vnni::pool(h, w, b, p, d, scores, z) };
        return;
    }
    let _ = kern;
    let row = |t: usize| &h[t * d..(t + 1) * d];
    csipose_attn_core::pool::<PoolNumerics>(w, b, row, &mut scores[..p], &mut z[..d]);
}

/// The runtime's arithmetic for the attention pooling ([`csipose_attn_core::pool`]): scores
/// by [`dot`], the exponentials summed in token order, each divided by the sum.
struct PoolNumerics;

impl csipose_attn_core::Numerics for PoolNumerics {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
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
        math::exp(x)
    }
    #[inline(always)]
    fn normalise(s: &mut [f32], sum: f32) {
        for v in s.iter_mut() {
            *v /= sum;
        }
    }
}

/// The graph head's `m = Â f` over rows of `g` values: for joint `i` with neighbours
/// `nbs[i].0[..nbs[i].1]` (itself included, ascending), `m_i = a·f_nb0 + a·f_nb1 + …` in that
/// order, `a = 1 / count`.
#[inline(always)]
pub(crate) fn graph_mix(
    kern: Kernel,
    f: &[f32],
    m: &mut [f32],
    g: usize,
    nbs: &[([usize; 4], usize)],
) {
    #[cfg(target_arch = "x86_64")]
    if kern.is_avx512() {
        let n = nbs.len();
        assert!(f.len() >= n * g && m.len() >= n * g);
        assert!(nbs
            .iter()
            .all(|(nb, cnt)| nb[..*cnt].iter().all(|&j| j < n)));
        // SAFETY: `is_avx512` holds only on the Avx512 and Vnni16 paths, which
        // `Kernel::avx512` / `Kernel::avx512_vnni16` build only where AVX-512 F/BW/VL and
        // AVX2+FMA were detected; every neighbour index is below `nbs.len()` and the lengths
        // are checked above.
        unsafe { crate::vnni::graph_mix(f, m, g, nbs) };
        return;
    }
    let _ = kern;
    for (i, (nb, cnt)) in nbs.iter().enumerate() {
        let a = 1.0 / *cnt as f32;
        let m = &mut m[i * g..(i + 1) * g];
        let f0 = &f[nb[0] * g..(nb[0] + 1) * g];
        for (o, v) in m.iter_mut().zip(f0) {
            *o = a * v;
        }
        for &j in &nb[1..*cnt] {
            let fj = &f[j * g..(j + 1) * g];
            for (o, v) in m.iter_mut().zip(fj) {
                *o += a * v;
            }
        }
    }
}

/// The graph head's output: `t = f_j · w_c + b_c` for the joints × 2 coordinates (`w` the
/// output weight transposed, `[2, g]`), then `out = kp0 + scale · tanh(t)`; `t` is scratch of
/// `kp0.len()` values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn graph_out(
    kern: Kernel,
    f: &[f32],
    w: &[f32],
    g: usize,
    b: &[f32],
    kp0: &[f32],
    scale: f32,
    t: &mut [f32],
    out: &mut [f32],
) {
    let n = kp0.len();
    #[cfg(target_arch = "x86_64")]
    if kern.is_avx512() {
        assert!(f.len() >= n / 2 * g && w.len() >= 2 * g && b.len() >= 2);
        assert!(out.len() >= n && n <= 48);
        // SAFETY: `is_avx512` holds only on the Avx512 and Vnni16 paths, which
        // `Kernel::avx512` / `Kernel::avx512_vnni16` build only where AVX-512 F/BW/VL and
        // AVX2+FMA were detected; lengths checked above.
        unsafe { crate::vnni::graph_out(f, w, g, b, kp0, scale, out) };
        return;
    }
    let _ = kern;
    for j in 0..n / 2 {
        let fj = &f[j * g..(j + 1) * g];
        t[2 * j] = dot(fj, &w[..g]) + b[0];
        t[2 * j + 1] = dot(fj, &w[g..2 * g]) + b[1];
    }
    for ((o, t), k) in out.iter_mut().zip(t.iter()).zip(kp0.iter()) {
        *o = k + scale * math::tanh(*t);
    }
}
