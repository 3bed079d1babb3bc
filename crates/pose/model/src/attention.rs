//! Multi-head self-attention over a sample's tokens, forward and backward: the steps of
//! [`csipose_attn_core::attend`] and [`csipose_attn_core::attend_backward`] with the model's
//! arithmetic (`layers::ModelNumerics`: dot products and sums added in element order, the standard
//! library's `exp`), laid out for vectors. Per sample and head the keys (forward) or values
//! (backward) are transposed into `[dh, p]` scratch so that one query's `p` dot products run
//! side by side in vector lanes, each still adding its `dh` products in order from the same
//! start; the softmax is attn-core's own ([`csipose_attn_core::softmax`]); the sums of
//! `y += a·x` updates (the context, and the q, k and v gradients) run output row by output
//! row with 16 or 8 columns of partial sums in registers, each adding its terms in the order
//! attn-core's steps add them, from zero (so the gradient rows are written, not zeroed and
//! accumulated). Each output element sees the same operations in the same order as attn-core's
//! scalar steps, so the results are equal bit for bit (tested against them, compiled for AVX2
//! and portable).

use crate::layers::ModelNumerics;
use rayon::prelude::*;

/// Lanes of the side-by-side dot products (one AVX2 vector).
const LANES: usize = 8;

/// What `ModelNumerics::dot` starts its sum from (`Sum` for `f32` folds from this), so the
/// lane-wise dot products round exactly as it does.
#[inline(always)]
fn dot_start() -> f32 {
    std::iter::empty::<f32>().sum()
}

/// `dst[at(r)..][..dh] = Σ_s coef(r, s) · row(s)` for `r < n_out`, the sum over `s < n_sum`
/// in order from 0 — each element what a zeroed destination holds after
/// [`csipose_attn_core::axpy`]`(coef(r, s), row(s), ·)` for `s = 0, 1, …` — with the partial
/// sums of 16 or 8 columns kept in registers.
#[inline(always)]
fn combine<'a>(
    n_out: usize,
    n_sum: usize,
    dh: usize,
    coef: impl Fn(usize, usize) -> f32,
    row: impl Fn(usize) -> &'a [f32],
    dst: &mut [f32],
    at: impl Fn(usize) -> usize,
) {
    for r in 0..n_out {
        let o = &mut dst[at(r)..][..dh];
        let mut t0 = 0;
        while t0 + 2 * LANES <= dh {
            let mut acc = [0.0f32; 2 * LANES];
            for s in 0..n_sum {
                let c = coef(r, s);
                let x: &[f32; 2 * LANES] = row(s)[t0..t0 + 2 * LANES].try_into().unwrap();
                for l in 0..2 * LANES {
                    acc[l] += c * x[l];
                }
            }
            o[t0..t0 + 2 * LANES].copy_from_slice(&acc);
            t0 += 2 * LANES;
        }
        if t0 + LANES <= dh {
            let mut acc = [0.0f32; LANES];
            for s in 0..n_sum {
                let c = coef(r, s);
                let x: &[f32; LANES] = row(s)[t0..t0 + LANES].try_into().unwrap();
                for l in 0..LANES {
                    acc[l] += c * x[l];
                }
            }
            o[t0..t0 + LANES].copy_from_slice(&acc);
            t0 += LANES;
        }
        for (t, ot) in o.iter_mut().enumerate().skip(t0) {
            let mut acc = 0.0f32;
            for s in 0..n_sum {
                acc += coef(r, s) * row(s)[t];
            }
            *ot = acc;
        }
    }
}

/// Rows `j` of `src` (`rows(j)` returns row `j`, `dh` long) for `j < p`, transposed into
/// `dst [dh, pp]` (`pp` = `p` rounded up to [`LANES`]; padding columns zero).
#[inline(always)]
fn transpose<'a>(
    rows: impl Fn(usize) -> &'a [f32],
    p: usize,
    dh: usize,
    pp: usize,
    dst: &mut [f32],
) {
    let dst = &mut dst[..dh * pp];
    if pp > p {
        for t in 0..dh {
            dst[t * pp + p..(t + 1) * pp].fill(0.0);
        }
    }
    for j in 0..p {
        for (t, &v) in rows(j)[..dh].iter().enumerate() {
            dst[t * pp + j] = v;
        }
    }
}

/// `out[j] = x · col_j` for `j < out.len()`, with the columns `col_j` of `mt [x.len(), pp]`:
/// each dot product adds its products in the order of `x`, as `ModelNumerics::dot`.
#[inline(always)]
fn dots(x: &[f32], mt: &[f32], pp: usize, out: &mut [f32]) {
    let p = out.len();
    for j0 in (0..p).step_by(LANES) {
        let mut acc = [dot_start(); LANES];
        for (t, &xt) in x.iter().enumerate() {
            let col: &[f32; LANES] = mt[t * pp + j0..t * pp + j0 + LANES].try_into().unwrap();
            for l in 0..LANES {
                acc[l] += xt * col[l];
            }
        }
        let n = (p - j0).min(LANES);
        out[j0..j0 + n].copy_from_slice(&acc[..n]);
    }
}

/// Scratch floats one sample needs: a transposed head (`dh × pp`) and a head's `p × p`
/// score gradients.
fn scratch_len(p: usize, dh: usize) -> usize {
    dh * p.next_multiple_of(LANES) + p * p
}

/// Multi-head self-attention core for `batch` samples of `p` tokens. `qkv` is `[batch·p, 3d]`
/// (q, k, v side by side, head h at columns `h·dh..`); writes `ctx [batch·p, d]` and the
/// attention probabilities `probs [batch, heads, p, p]`. Each (sample, head, query) is
/// [`csipose_attn_core::attend`] with scale `1/√dh`.
pub fn forward(
    qkv: &[f32],
    ctx: &mut [f32],
    probs: &mut [f32],
    batch: usize,
    p: usize,
    d: usize,
    heads: usize,
) {
    let dh = d / heads;
    ctx[..batch * p * d]
        .par_chunks_mut(p * d)
        .zip(probs[..batch * heads * p * p].par_chunks_mut(heads * p * p))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; scratch_len(p, dh)],
            |scratch, (b, (cb, pb))| {
                let qb = &qkv[b * p * 3 * d..(b + 1) * p * 3 * d];
                forward_sample_dispatch(qb, cb, pb, scratch, p, d, heads);
            },
        );
}

#[allow(clippy::too_many_arguments)]
fn forward_sample_dispatch(
    qb: &[f32],
    cb: &mut [f32],
    pb: &mut [f32],
    scratch: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { forward_sample_avx2(qb, cb, pb, scratch, p, d, heads) };
        return;
    }
    forward_sample(qb, cb, pb, scratch, p, d, heads);
}

/// [`forward_sample`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_sample_avx2(
    qb: &[f32],
    cb: &mut [f32],
    pb: &mut [f32],
    scratch: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
) {
    forward_sample(qb, cb, pb, scratch, p, d, heads)
}

/// One sample of [`forward`]: `qb [p, 3d]` to `cb [p, d]` and `pb [heads, p, p]`.
#[inline(always)]
fn forward_sample(
    qb: &[f32],
    cb: &mut [f32],
    pb: &mut [f32],
    scratch: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
) {
    let dh = d / heads;
    let pp = p.next_multiple_of(LANES);
    let scale = 1.0 / (dh as f32).sqrt();
    let (kt, _) = scratch.split_at_mut(dh * pp);
    for h in 0..heads {
        let ph = &mut pb[h * p * p..(h + 1) * p * p];
        transpose(|j| &qb[j * 3 * d + d + h * dh..][..dh], p, dh, pp, kt);
        for i in 0..p {
            let q = &qb[i * 3 * d + h * dh..][..dh];
            let s = &mut ph[i * p..(i + 1) * p];
            // attn-core's `probabilities`: scaled scores, then the softmax (whose `· 1` is exact).
            dots(q, kt, pp, s);
            for v in s.iter_mut() {
                *v *= scale;
            }
            csipose_attn_core::softmax::<ModelNumerics>(s, 1.0);
        }
        // The context `o_i = Σ_j p_ij v_j` (attn-core's `attend`: zeroed, then `j` in order).
        let ph = &*ph;
        combine(
            p,
            p,
            dh,
            |i, j| ph[i * p + j],
            |j| &qb[j * 3 * d + 2 * d + h * dh..][..dh],
            cb,
            |i| i * d + h * dh,
        );
    }
}

/// Backward of [`forward`]: `dqkv [batch·p, 3d]` overwritten from `dctx`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    qkv: &[f32],
    probs: &[f32],
    dctx: &[f32],
    dqkv: &mut [f32],
    batch: usize,
    p: usize,
    d: usize,
    heads: usize,
) {
    let dh = d / heads;
    dqkv[..batch * p * 3 * d]
        .par_chunks_mut(p * 3 * d)
        .enumerate()
        .for_each_init(
            || vec![0.0f32; scratch_len(p, dh)],
            |scratch, (b, gb)| {
                let qb = &qkv[b * p * 3 * d..(b + 1) * p * 3 * d];
                let dcb = &dctx[b * p * d..(b + 1) * p * d];
                let pb = &probs[b * heads * p * p..(b + 1) * heads * p * p];
                backward_sample_dispatch(qb, pb, dcb, gb, scratch, p, d, heads);
            },
        );
}

#[allow(clippy::too_many_arguments)]
fn backward_sample_dispatch(
    qb: &[f32],
    pb: &[f32],
    dcb: &[f32],
    gb: &mut [f32],
    scratch: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { backward_sample_avx2(qb, pb, dcb, gb, scratch, p, d, heads) };
        return;
    }
    backward_sample(qb, pb, dcb, gb, scratch, p, d, heads);
}

/// [`backward_sample`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_sample_avx2(
    qb: &[f32],
    pb: &[f32],
    dcb: &[f32],
    gb: &mut [f32],
    scratch: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
) {
    backward_sample(qb, pb, dcb, gb, scratch, p, d, heads)
}

/// One sample of [`backward`]: `gb [p, 3d]` (overwritten) from `dcb [p, d]`, query by query
/// and head by head in [`csipose_attn_core::attend_backward`]'s order: per item `j`,
/// `dp_j = dout·v_j`, `dv_j += p_j dout` and `w += p_j dp_j`; then `ds_j = p_j (dp_j − w) ·
/// scale`; then `dq += ds_j k_j` for `j` in order, then `dk_j += ds_j q`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_sample(
    qb: &[f32],
    pb: &[f32],
    dcb: &[f32],
    gb: &mut [f32],
    scratch: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
) {
    let dh = d / heads;
    let pp = p.next_multiple_of(LANES);
    let scale = 1.0 / (dh as f32).sqrt();
    let row = 3 * d;
    let (vt, ds) = scratch.split_at_mut(dh * pp);
    let ds = &mut ds[..p * p];
    for h in 0..heads {
        let ph = &pb[h * p * p..(h + 1) * p * p];
        let (qo, ko, vo) = (h * dh, d + h * dh, 2 * d + h * dh);
        transpose(|j| &qb[j * row + vo..][..dh], p, dh, pp, vt);
        // Per query: dp_j = dout·v_j, w = Σ_j p_j dp_j (in order from 0), and
        // ds_j = p_j (dp_j − w) · scale.
        for i in 0..p {
            let probs = &ph[i * p..(i + 1) * p];
            let dsi = &mut ds[i * p..(i + 1) * p];
            dots(&dcb[i * d + h * dh..][..dh], vt, pp, dsi);
            let mut w = 0.0f32;
            for (&pj, &dp) in probs.iter().zip(dsi.iter()) {
                w += pj * dp;
            }
            for (s, &pj) in dsi.iter_mut().zip(probs) {
                *s = pj * (*s - w) * scale;
            }
        }
        // Each gradient element sums its terms over the queries (dv, dk) or items (dq) in
        // the order attend_backward adds them, from zero.
        let ds = &*ds;
        combine(
            p,
            p,
            dh,
            |j, i| ph[i * p + j],
            |i| &dcb[i * d + h * dh..][..dh],
            gb,
            |j| j * row + vo,
        );
        combine(
            p,
            p,
            dh,
            |i, j| ds[i * p + j],
            |j| &qb[j * row + ko..][..dh],
            gb,
            |i| i * row + qo,
        );
        combine(
            p,
            p,
            dh,
            |j, i| ds[i * p + j],
            |i| &qb[i * row + qo..][..dh],
            gb,
            |j| j * row + ko,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// One sample's q, k and v gradients of one head in `[p, 3d]` rows, for the reference.
    struct SampleGrads<'g> {
        gb: &'g mut [f32],
        qo: usize,
        ko: usize,
        dh: usize,
        row: usize,
        d: usize,
    }

    impl csipose_attn_core::HeadGrads for SampleGrads<'_> {
        fn dq(&mut self) -> &mut [f32] {
            &mut self.gb[self.qo..self.qo + self.dh]
        }
        fn dk(&mut self, j: usize) -> &mut [f32] {
            let o = j * self.row + self.ko;
            &mut self.gb[o..o + self.dh]
        }
        fn dv(&mut self, j: usize) -> &mut [f32] {
            let o = j * self.row + self.ko + self.d;
            &mut self.gb[o..o + self.dh]
        }
    }

    /// attn-core's `attend` per (sample, head, query): the definition.
    fn reference_forward(
        qkv: &[f32],
        batch: usize,
        p: usize,
        d: usize,
        heads: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let dh = d / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let (mut ctx, mut probs) = (vec![0.0; batch * p * d], vec![0.0; batch * heads * p * p]);
        for b in 0..batch {
            let qb = &qkv[b * p * 3 * d..(b + 1) * p * 3 * d];
            for h in 0..heads {
                for i in 0..p {
                    let o = ((b * heads + h) * p + i) * p;
                    csipose_attn_core::attend::<ModelNumerics>(
                        &qb[i * 3 * d + h * dh..][..dh],
                        |j| &qb[j * 3 * d + d + h * dh..][..dh],
                        |j| &qb[j * 3 * d + 2 * d + h * dh..][..dh],
                        scale,
                        &mut probs[o..o + p],
                        &mut ctx[(b * p + i) * d + h * dh..][..dh],
                    );
                }
            }
        }
        (ctx, probs)
    }

    /// attn-core's `attend_backward` per (sample, head, query): the definition.
    fn reference_backward(
        qkv: &[f32],
        probs: &[f32],
        dctx: &[f32],
        batch: usize,
        p: usize,
        d: usize,
        heads: usize,
    ) -> Vec<f32> {
        let dh = d / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut dqkv = vec![0.0; batch * p * 3 * d];
        let mut ds = vec![0.0; p];
        for b in 0..batch {
            let qb = &qkv[b * p * 3 * d..(b + 1) * p * 3 * d];
            let gb = &mut dqkv[b * p * 3 * d..(b + 1) * p * 3 * d];
            for h in 0..heads {
                for i in 0..p {
                    let qo = i * 3 * d + h * dh;
                    let o = ((b * heads + h) * p + i) * p;
                    let mut grads = SampleGrads {
                        gb: &mut *gb,
                        qo,
                        ko: d + h * dh,
                        dh,
                        row: 3 * d,
                        d,
                    };
                    csipose_attn_core::attend_backward::<ModelNumerics>(
                        &qb[qo..qo + dh],
                        |j| &qb[j * 3 * d + d + h * dh..][..dh],
                        |j| &qb[j * 3 * d + 2 * d + h * dh..][..dh],
                        &probs[o..o + p],
                        &dctx[(b * p + i) * d + h * dh..][..dh],
                        scale,
                        &mut ds,
                        &mut grads,
                    );
                }
            }
        }
        dqkv
    }

    fn same(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Forward and backward equal attn-core's scalar steps bit for bit, for the AVX2-compiled
    /// path (where the CPU has it) and the portable one, at head widths and token counts with
    /// and without tails (dh 24 and p 10 are tiny's and small's).
    #[test]
    fn equal_to_attn_core_bit_for_bit() {
        let mut rng = Rng::new(7);
        for &(batch, p, d, heads) in &[
            (3, 10, 96, 4),
            (2, 10, 128, 4),
            (2, 13, 40, 2),
            (1, 5, 8, 2),
            (2, 17, 48, 3),
            (1, 1, 16, 1),
        ] {
            let dh = d / heads;
            let qkv: Vec<f32> = (0..batch * p * 3 * d)
                .map(|_| 2.0 * rng.normal() as f32)
                .collect();
            let dctx: Vec<f32> = (0..batch * p * d).map(|_| rng.normal() as f32).collect();
            let (want_ctx, want_probs) = reference_forward(&qkv, batch, p, d, heads);
            let want_dqkv = reference_backward(&qkv, &want_probs, &dctx, batch, p, d, heads);
            // The public entry points (the widest path this CPU runs).
            let (mut ctx, mut probs) = (
                vec![f32::NAN; batch * p * d],
                vec![f32::NAN; batch * heads * p * p],
            );
            forward(&qkv, &mut ctx, &mut probs, batch, p, d, heads);
            same(&ctx, &want_ctx, "ctx");
            same(&probs, &want_probs, "probs");
            let mut dqkv = vec![f32::NAN; qkv.len()];
            backward(&qkv, &probs, &dctx, &mut dqkv, batch, p, d, heads);
            same(&dqkv, &want_dqkv, "dqkv");
            // Each path per sample.
            let mut scratch = vec![0.0; scratch_len(p, dh)];
            type Fwd = fn(&[f32], &mut [f32], &mut [f32], &mut [f32], usize, usize, usize);
            type Bwd = fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32], usize, usize, usize);
            let mut paths: Vec<(&str, Fwd, Bwd)> =
                vec![("portable", forward_sample, backward_sample)];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                paths.push((
                    "avx2",
                    |a, b, c, s, p, d, h| unsafe { forward_sample_avx2(a, b, c, s, p, d, h) },
                    |a, b, c, g, s, p, d, h| unsafe {
                        backward_sample_avx2(a, b, c, g, s, p, d, h)
                    },
                ));
            }
            for (name, fwd, bwd) in paths {
                for b in 0..batch {
                    let qb = &qkv[b * p * 3 * d..(b + 1) * p * 3 * d];
                    let (mut cb, mut pb) = (vec![f32::NAN; p * d], vec![f32::NAN; heads * p * p]);
                    fwd(qb, &mut cb, &mut pb, &mut scratch, p, d, heads);
                    same(&cb, &want_ctx[b * p * d..(b + 1) * p * d], name);
                    same(
                        &pb,
                        &want_probs[b * heads * p * p..(b + 1) * heads * p * p],
                        name,
                    );
                    let mut gb = vec![f32::NAN; p * 3 * d];
                    bwd(
                        qb,
                        &pb,
                        &dctx[b * p * d..(b + 1) * p * d],
                        &mut gb,
                        &mut scratch,
                        p,
                        d,
                        heads,
                    );
                    same(&gb, &want_dqkv[b * p * 3 * d..(b + 1) * p * 3 * d], name);
                }
            }
        }
    }
}
