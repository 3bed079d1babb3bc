//! x86-64 AVX-512 VNNI int16 Linear kernel (`vpdpwssd`: 32 int16 multiply-adds per
//! instruction into int32, twice the f32 FMA rate on Zen 4) over weights repacked once
//! ([`crate::int16::Packed`]: aligned 64-byte loads, no unpacking in the loop) and the
//! activation quantizers feeding it; the same values as the portable versions in
//! [`crate::int16`].
//!
//! Tiles ([`Vnni`], under the generic tiling loop [`crate::tile::run`]): up to 6 tokens × up
//! to 4 zmm of columns (≤ 24 accumulators); per input pair, C
//! aligned weight loads, one 32-bit broadcast per token and R×C `vpdpwssd`. Epilogue: int32 →
//! f32, × token scale × column scale, + bias, GELU/ReLU, + residual, masked to the row's end.

use core::arch::x86_64::*;

use crate::int16::{Packed, QInput};
use crate::kernels::Act;
use crate::tile::{self, by_rows, MicroKernel};

/// The int16 Linear over all columns.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; `w.w` 64-byte aligned; `x` covers `tokens` tokens
/// of `w.pairs()` pairs, and bias, residual and `y` every index (checked by the caller).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(crate) unsafe fn linear(
    x: &QInput,
    w: &Packed,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let n = x.tokens;
    if n == 0 || w.cols == 0 {
        return;
    }
    let c = Ctx {
        x: x.q.as_ptr() as *const i32,
        ts: x.ts,
        js: x.js,
        sx: x.sx.as_ptr(),
        np: w.pairs(),
        w: w.w.as_ptr() as *const i32,
        cp: w.cp,
        cols: w.cols,
        scales: w.scales.as_ptr(),
        bias: bias.map_or(core::ptr::null(), |b| b.as_ptr()),
        act,
        res: residual.map_or(core::ptr::null(), |r| r.as_ptr()),
        y: y.as_mut_ptr(),
    };
    // SAFETY: AVX-512 VNNI available, `w.w` aligned and every index in bounds (this
    // function's contract); the tiles span the padded columns `0..cp` of the packed weights.
    unsafe { tile::run::<Vnni>(&c, n, 0, w.cp) };
}

/// The AVX-512 VNNI int16 micro-kernel: tiles of up to 6 tokens × 4 vectors of 16 columns
/// (≤ 24 int32 accumulators) over the packed weights' padded columns.
pub(crate) struct Vnni;

impl MicroKernel for Vnni {
    type Ctx = Ctx;
    const MR: usize = 6;
    const LANES: usize = 16;
    const WIDTHS: &'static [usize] = &[4, 3, 2, 1];
    const WIDTHS_ONE: &'static [usize] = &[4, 3, 2, 1];

    /// # Safety
    /// As [`MicroKernel::tile`]: AVX-512 VNNI available, the tile inside the packed Linear `c`
    /// describes (padded columns).
    #[inline(always)]
    unsafe fn tile(c: &Ctx, t0: usize, r: usize, col: usize, v: usize) {
        // SAFETY: forwarded contract (AVX-512 VNNI present, the tile in bounds).
        unsafe { tile_vnni(c, t0, r, col / 16, v) }
    }
}

/// The register tile of `r` tokens × `v` vectors from vector `v0` ([`MicroKernel::tile`]).
///
/// # Safety
/// AVX-512 VNNI available; the tile lies inside the Linear `c` describes (padded columns).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn tile_vnni(c: &Ctx, t0: usize, r: usize, v0: usize, v: usize) {
    // SAFETY: the caller's contract (features present, tile in bounds) is block's.
    unsafe {
        match v {
            4 => by_rows!(r, |R| block::<R, 4>(c, t0, v0)),
            3 => by_rows!(r, |R| block::<R, 3>(c, t0, v0)),
            2 => by_rows!(r, |R| block::<R, 2>(c, t0, v0)),
            _ => by_rows!(r, |R| block::<R, 1>(c, t0, v0)),
        }
    }
}

pub(crate) struct Ctx {
    x: *const i32,
    ts: usize,
    js: usize,
    sx: *const f32,
    np: usize,
    w: *const i32,
    cp: usize,
    cols: usize,
    scales: *const f32,
    bias: *const f32,
    act: Act,
    res: *const f32,
    y: *mut f32,
}

/// One register tile: tokens `t0..t0 + R` × the `C` vectors of 16 padded columns from vector
/// `v0`, every pair summed with `vpdpwssd`, then the f32 epilogue.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; the tile lies inside the packed Linear `c` describes.
#[inline]
#[allow(clippy::needless_range_loop)] // index loops over the register tile, fully unrolled
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn block<const R: usize, const C: usize>(c: &Ctx, t0: usize, v0: usize) {
    // SAFETY: AVX-512 VNNI available and the tile inside the Linear `c` describes (contract,
    // checked by `kernels::linear_int16`): pairs `j < np` of tokens `t0..t0 + R`, packed words
    // `j·cp + 16(v0 + v)..+16` below `np·cp` (aligned: `w` 64-byte aligned, `cp` a multiple of
    // 16), scales over the padded `cp` columns, bias/residual/output masked to columns below
    // `cols`.
    unsafe {
        // The accumulators stay in the 32 zmm registers (with the C weight vectors and a
        // broadcast).
        const { assert!(R * C <= 24) };
        let mut acc = [[_mm512_setzero_si512(); C]; R];
        let (ts, js, cp, np) = (c.ts, c.js, c.cp, c.np);
        let mut wp = c.w.add(v0 * 16);
        let mut xp = c.x.add(t0 * ts);
        for _ in 0..np {
            let mut wv = [_mm512_setzero_si512(); C];
            for (v, x) in wv.iter_mut().enumerate() {
                *x = _mm512_load_si512(wp.add(16 * v) as *const _);
            }
            for r in 0..R {
                let xb = _mm512_set1_epi32(*xp.add(r * ts));
                for v in 0..C {
                    acc[r][v] = dpwssd(acc[r][v], xb, wv[v]);
                }
            }
            wp = wp.add(cp);
            xp = xp.add(js);
        }
        // The sums leave the registers through one explicit, fully unrolled copy, so the epilogue
        // (not unrolled for large R) does not keep `acc` in memory inside the loop above.
        let mut sums = [[_mm512_setzero_si512(); C]; R];
        for r in 0..R {
            for v in 0..C {
                core::ptr::write_volatile(&mut sums[r][v], acc[r][v]);
            }
        }
        let acc = sums;
        for v in 0..C {
            let cc = (v0 + v) * 16;
            let left = c.cols.saturating_sub(cc);
            if left == 0 {
                continue;
            }
            let m: __mmask16 = if left >= 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let scale = _mm512_loadu_ps(c.scales.add(cc));
            let b = if c.bias.is_null() {
                _mm512_setzero_ps()
            } else {
                _mm512_maskz_loadu_ps(m, c.bias.add(cc))
            };
            for (r, a) in acc.iter().enumerate() {
                let sx = _mm512_set1_ps(*c.sx.add(t0 + r));
                let mut o = _mm512_cvtepi32_ps(a[v]);
                o = _mm512_mul_ps(o, _mm512_mul_ps(sx, scale));
                o = _mm512_add_ps(o, b);
                o = match c.act {
                    Act::None => o,
                    Act::Gelu => gelu_exact16(o),
                    Act::Relu => _mm512_max_ps(o, _mm512_setzero_ps()),
                };
                let at = (t0 + r) * c.cols + cc;
                if !c.res.is_null() {
                    o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(m, c.res.add(at)));
                }
                _mm512_mask_storeu_ps(c.y.add(at), m, o);
            }
        }
    }
}

/// `acc + Σ pairs a·b` (`vpdpwssd`) as inline assembly: LLVM's machine combiner otherwise
/// splits the intrinsic into `vpmaddwd` + `vpaddd` (two µops where Zen 4 runs one, 1/cycle),
/// which measured ~2× slower here.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut acc = acc;
    // SAFETY: this function is compiled (and only callable) with AVX-512 VNNI;
    // register-only, no memory or flags touched.
    unsafe {
        core::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(zmm_reg) acc,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// GELU on 16 lanes with exactly the operations of [`crate::math::gelu`] (separate
/// multiplies and adds, a true division), so this kernel's outputs equal the portable int16
/// reference's bit for bit: the int16 rounding of the next Linear's inputs would otherwise
/// amplify last-bit differences into ~1e-5.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn gelu_exact16(x: __m512) -> __m512 {
    use crate::math::{GELU_A, GELU_C, TANH_CLAMP, TANH_P, TANH_Q};
    let s = _mm512_set1_ps;
    let x3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(s(GELU_A), x), x), x);
    let u = _mm512_mul_ps(s(GELU_C), _mm512_add_ps(x, x3));
    let u = _mm512_min_ps(_mm512_max_ps(u, s(-TANH_CLAMP)), s(TANH_CLAMP));
    let u2 = _mm512_mul_ps(u, u);
    let mut p = _mm512_add_ps(_mm512_mul_ps(u2, s(TANH_P[0])), s(TANH_P[1]));
    for &c in &TANH_P[2..] {
        p = _mm512_add_ps(_mm512_mul_ps(u2, p), s(c));
    }
    p = _mm512_mul_ps(p, u);
    let mut q = _mm512_add_ps(_mm512_mul_ps(u2, s(TANH_Q[0])), s(TANH_Q[1]));
    for &c in &TANH_Q[2..] {
        q = _mm512_add_ps(_mm512_mul_ps(u2, q), s(c));
    }
    let t = _mm512_div_ps(p, q);
    _mm512_mul_ps(_mm512_mul_ps(s(0.5), x), _mm512_add_ps(s(1.0), t))
}

#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

/// Rounds `v · inv` to int32 (ties to even, the default MXCSR rounding), as
/// [`crate::int16::q16`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn q16(v: __m512, inv: __m512) -> __m512i {
    _mm512_cvtps_epi32(_mm512_mul_ps(v, inv))
}

/// [`crate::int16::quantize_rows_portable`], 16 lanes.
///
/// # Safety
/// AVX-512 F/BW/VL; `x` holds `tokens` rows of `k` values at stride `xs`, `q` `tokens·⌈k/2⌉`
/// words, `sx` `tokens` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn quantize_rows(
    x: &[f32],
    tokens: usize,
    k: usize,
    xs: usize,
    qx: f32,
    q: &mut [f32],
    sx: &mut [f32],
) {
    // SAFETY: AVX-512 F/BW/VL available (contract); rows `t < tokens` hold `k` values at `t·xs` in
    // `x` (checked by `kernels::quantize_rows`), loads are masked to `k`, stores to the row's
    // `2·⌈k/2⌉` int16 slots of `q`, scales to `sx[t]`, all inside the checked lengths.
    unsafe {
        let np = k.div_ceil(2);
        // In blocks of 32 tokens: all maxima first, then the scales, then the codes, so the
        // per-token reductions and divisions overlap instead of forming one chain per token.
        let mut t0 = 0;
        while t0 < tokens {
            let nt = (tokens - t0).min(32);
            let mut inv = [0.0f32; 32];
            for (j, iv) in inv.iter_mut().enumerate().take(nt) {
                let row = x.as_ptr().add((t0 + j) * xs);
                let (mut m0, mut m1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                let mut i = 0;
                while i + 32 <= k {
                    m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_loadu_ps(row.add(i))));
                    m1 = _mm512_max_ps(m1, _mm512_abs_ps(_mm512_loadu_ps(row.add(i + 16))));
                    i += 32;
                }
                while i < k {
                    let v = _mm512_maskz_loadu_ps(mask(k - i), row.add(i));
                    m0 = _mm512_max_ps(m0, _mm512_abs_ps(v));
                    i += 16;
                }
                *iv = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
            }
            for (j, iv) in inv.iter_mut().enumerate().take(nt) {
                let (s, i) = crate::int16::token_scale(*iv, qx);
                sx[t0 + j] = s;
                *iv = i;
            }
            for (j, &inv) in inv.iter().enumerate().take(nt) {
                let t = t0 + j;
                let row = x.as_ptr().add(t * xs);
                let iv = _mm512_set1_ps(inv);
                // 32 inputs → 16 int16 pairs per step, stored as the row's int16 codes.
                let dst = q.as_mut_ptr().add(t * np) as *mut i16;
                let mut i = 0;
                while i < k {
                    let a = _mm512_maskz_loadu_ps(mask(k - i), row.add(i));
                    let qa = _mm512_cvtepi32_epi16(q16(a, iv));
                    let left = 2 * np - i; // int16 slots left in the row (even)
                    if i + 16 < k {
                        let b = _mm512_maskz_loadu_ps(mask(k - i - 16), row.add(i + 16));
                        let qb = _mm512_cvtepi32_epi16(q16(b, iv));
                        let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(qa), qb);
                        _mm512_mask_storeu_epi16(dst.add(i), mask32(left), both);
                    } else {
                        _mm256_mask_storeu_epi16(dst.add(i), mask(left), qa);
                    }
                    i += 32;
                }
            }
            t0 += nt;
        }
    }
}

#[inline(always)]
fn mask32(n: usize) -> __mmask32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// [`crate::int16::quantize_standardised_portable`], 16 tokens per vector.
///
/// # Safety
/// AVX-512 F/BW/VL; `x` holds `k·p` values, `q` `⌈k/2⌉·p` words, `sx` `p` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn quantize_standardised(
    x: &[f32],
    k: usize,
    p: usize,
    mean: f32,
    inv: f32,
    qx: f32,
    q: &mut [f32],
    sx: &mut [f32],
) {
    // SAFETY: AVX-512 F/BW/VL available (contract); `x` holds `k·p` values (feature `f`, token `t`
    // at `f·p + t`, loads masked to `t < p`), `q` `⌈k/2⌉·p` words and `sx` `p` values (checked by
    // `kernels::quantize_standardised`).
    unsafe {
        let mv = _mm512_set1_ps(mean);
        let lo16 = _mm512_set1_epi32(0xffff);
        let xp = x.as_ptr();
        let qp = q.as_mut_ptr() as *mut i32;
        let mut t0 = 0;
        while t0 < p {
            let m = mask(p - t0);
            let ld = |f: usize| _mm512_maskz_loadu_ps(m, xp.add(f * p + t0));
            // Raw minimum and maximum per token (lane), two chains each.
            let inf = _mm512_set1_ps(f32::INFINITY);
            let (mut lo0, mut lo1) = (inf, inf);
            let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
            let (mut hi0, mut hi1) = (ninf, ninf);
            let mut f = 0;
            while f + 2 <= k {
                let (a, b) = (ld(f), ld(f + 1));
                lo0 = _mm512_min_ps(lo0, a);
                hi0 = _mm512_max_ps(hi0, a);
                lo1 = _mm512_min_ps(lo1, b);
                hi1 = _mm512_max_ps(hi1, b);
                f += 2;
            }
            if f < k {
                let a = ld(f);
                lo0 = _mm512_min_ps(lo0, a);
                hi0 = _mm512_max_ps(hi0, a);
            }
            let (mut lo, mut hi) = ([0.0f32; 16], [0.0f32; 16]);
            _mm512_storeu_ps(lo.as_mut_ptr(), _mm512_min_ps(lo0, lo1));
            _mm512_storeu_ps(hi.as_mut_ptr(), _mm512_max_ps(hi0, hi1));
            let mut cs = [0.0f32; 16];
            for l in 0..16.min(p - t0) {
                let (s, c) = crate::int16::embed_scale(lo[l], hi[l], mean, inv, qx);
                sx[t0 + l] = s;
                cs[l] = c;
            }
            let cv = _mm512_loadu_ps(cs.as_ptr());
            let code = |f: usize| q16(_mm512_sub_ps(ld(f), mv), cv);
            let np = k.div_ceil(2);
            for j in 0..k / 2 {
                let (a, b) = (code(2 * j), code(2 * j + 1));
                let wv = _mm512_or_si512(_mm512_and_si512(a, lo16), _mm512_slli_epi32::<16>(b));
                _mm512_mask_storeu_epi32(qp.add(j * p + t0), m, wv);
            }
            if np > k / 2 {
                let wv = _mm512_and_si512(code(k - 1), lo16);
                _mm512_mask_storeu_epi32(qp.add((np - 1) * p + t0), m, wv);
            }
            t0 += 16;
        }
    }
}

/// Multi-head self-attention over `p ≤ 16` tokens of `qkv [p, 3d]` into `ctx [p, d]`, heads of
/// `dh ≤ 64` columns, bit for bit what `ops::attention`'s portable steps compute (scores summed
/// over `t` ascending with a multiply then an add from 0, the softmax of `crate::ops::softmax_rows`
/// with its 8-lane sum, the context summed over keys ascending). Per head the scores are
/// computed transposed, one vector per key `j` with the queries `i` in the lanes (queries
/// transposed into `qt`, keys broadcast straight from `qkv`), so the whole softmax runs on
/// those `p` vectors in registers, lane by lane: the maximum, [`exp16`], the sum in
/// `sum8`'s order across the vectors, one division; the probabilities go to `pt [j][16]`
/// for the context product ([`attn_context`] with strides).
///
/// # Safety
/// AVX-512 F/BW/VL and AVX2+FMA; `qkv` holds `p·3d` values, `ctx` `p·d`; `p ≤ 16`, `dh ≤ 64`,
/// `heads · dh = d`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn attention(
    qkv: &[f32],
    ctx: &mut [f32],
    p: usize,
    d: usize,
    heads: usize,
    scale: f32,
) {
    let dh = d / heads;
    let mut qt = [0.0f32; 64 * 16];
    let mut pt = [0.0f32; 16 * 16];
    // SAFETY: AVX-512 available (contract); query `i < p` column `t < dh` of head `h` at
    // `qkv[i·3d + h·dh + t]`, keys at `+ d`, values at `+ 2d`, all inside `p·3d`; `qt` holds
    // `dh·16 ≤ 1024` values, `pt` `p·16 ≤ 256`; context rows `i < p` at `ctx[i·d + h·dh ..]`
    // masked to `dh` columns, inside `p·d`.
    unsafe {
        let (qp, op, qs) = (qkv.as_ptr(), ctx.as_mut_ptr(), 3 * d);
        for h in 0..heads {
            let q = qp.add(h * dh);
            for i in 0..p {
                for t in 0..dh {
                    *qt.as_mut_ptr().add(t * 16 + i) = *q.add(i * qs + t);
                }
            }
            let k = qp.add(d + h * dh);
            let (qt, pt) = (qt.as_ptr(), pt.as_mut_ptr());
            match p {
                1 => head_softmax::<1>(qt, k, qs, dh, scale, pt),
                2 => head_softmax::<2>(qt, k, qs, dh, scale, pt),
                3 => head_softmax::<3>(qt, k, qs, dh, scale, pt),
                4 => head_softmax::<4>(qt, k, qs, dh, scale, pt),
                5 => head_softmax::<5>(qt, k, qs, dh, scale, pt),
                6 => head_softmax::<6>(qt, k, qs, dh, scale, pt),
                7 => head_softmax::<7>(qt, k, qs, dh, scale, pt),
                8 => head_softmax::<8>(qt, k, qs, dh, scale, pt),
                9 => head_softmax::<9>(qt, k, qs, dh, scale, pt),
                10 => head_softmax::<10>(qt, k, qs, dh, scale, pt),
                11 => head_softmax::<11>(qt, k, qs, dh, scale, pt),
                12 => head_softmax::<12>(qt, k, qs, dh, scale, pt),
                13 => head_softmax::<13>(qt, k, qs, dh, scale, pt),
                14 => head_softmax::<14>(qt, k, qs, dh, scale, pt),
                15 => head_softmax::<15>(qt, k, qs, dh, scale, pt),
                _ => head_softmax::<16>(qt, k, qs, dh, scale, pt),
            }
            let v = qp.add(2 * d + h * dh);
            attn_context(pt, 1, 16, v, qs, dh, p, op.add(h * dh), d);
        }
    }
}

/// One head's probabilities, transposed ([`attention`]): `P = p` key vectors whose lane `i` is
/// query `i`; `pt[j·16 + i] = softmax_j(scale · Σ_t q[i, t] k[j, t])`.
///
/// # Safety
/// AVX-512 F; `qt` holds `dh·16` values, key `j < P` at `k[j·ks + t]` for `t < dh`, `pt`
/// `P·16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn head_softmax<const P: usize>(
    qt: *const f32,
    k: *const f32,
    ks: usize,
    dh: usize,
    scale: f32,
    pt: *mut f32,
) {
    // SAFETY: AVX-512 F available; the reads and writes stay in the ranges of the contract.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); P];
        for t in 0..dh {
            let qv = _mm512_loadu_ps(qt.add(t * 16));
            for (j, a) in acc.iter_mut().enumerate() {
                let kv = _mm512_set1_ps(*k.add(j * ks + t));
                *a = _mm512_add_ps(*a, _mm512_mul_ps(qv, kv));
            }
        }
        // The softmax over j, lane by lane, in `softmax_rows`' operations.
        let sc = _mm512_set1_ps(scale);
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for a in acc.iter_mut() {
            *a = _mm512_mul_ps(*a, sc);
            mx = _mm512_max_ps(mx, *a);
        }
        for a in acc.iter_mut() {
            *a = exp16(_mm512_sub_ps(*a, mx));
        }
        // `ops::sum8`: 8 lane sums over the whole chunks of 8, added pairwise, then the tail.
        let mut l8 = [_mm512_setzero_ps(); 8];
        for c in 0..P / 8 {
            for (l, s) in l8.iter_mut().enumerate() {
                *s = _mm512_add_ps(*s, acc[c * 8 + l]);
            }
        }
        let mut sum = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(l8[0], l8[4]), _mm512_add_ps(l8[1], l8[5])),
            _mm512_add_ps(_mm512_add_ps(l8[2], l8[6]), _mm512_add_ps(l8[3], l8[7])),
        );
        for a in acc.iter().skip(P / 8 * 8) {
            sum = _mm512_add_ps(sum, *a);
        }
        let inv = _mm512_div_ps(_mm512_set1_ps(1.0), sum);
        for (j, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(pt.add(j * 16), _mm512_mul_ps(*a, inv));
        }
    }
}

/// One attention head's context `out[i, c] = Σ_j s[i, j] · v[j, c]` (j ascending, multiply
/// then add from 0), `dh ≤ 64` columns: probability `(i, j)` at `s[i·si + j·sj]`, value row
/// `j` at `v[j·vs..]`, output row `i` at `out[i·os..]`.
///
/// # Safety
/// AVX-512 F; the pointers cover those ranges.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn attn_context(
    s: *const f32,
    si: usize,
    sj: usize,
    v: *const f32,
    vs: usize,
    dh: usize,
    p: usize,
    out: *mut f32,
    os: usize,
) {
    // SAFETY: AVX-512 F available and the pointers cover the ranges in the docs (contract, from
    // `ops::attention`'s length checks); `context_rows` gets row blocks inside `0..p` and `⌈dh/16⌉
    // ≤ 4` vectors.
    unsafe {
        let mut i = 0;
        while i < p {
            let r = (p - i).min(4);
            match (r, dh.div_ceil(16)) {
                (1, 1) => context_rows::<1, 1>(s, si, sj, v, vs, dh, p, out, os, i),
                (1, 2) => context_rows::<1, 2>(s, si, sj, v, vs, dh, p, out, os, i),
                (1, 3) => context_rows::<1, 3>(s, si, sj, v, vs, dh, p, out, os, i),
                (1, _) => context_rows::<1, 4>(s, si, sj, v, vs, dh, p, out, os, i),
                (2, 1) => context_rows::<2, 1>(s, si, sj, v, vs, dh, p, out, os, i),
                (2, 2) => context_rows::<2, 2>(s, si, sj, v, vs, dh, p, out, os, i),
                (2, 3) => context_rows::<2, 3>(s, si, sj, v, vs, dh, p, out, os, i),
                (2, _) => context_rows::<2, 4>(s, si, sj, v, vs, dh, p, out, os, i),
                (3, 1) => context_rows::<3, 1>(s, si, sj, v, vs, dh, p, out, os, i),
                (3, 2) => context_rows::<3, 2>(s, si, sj, v, vs, dh, p, out, os, i),
                (3, 3) => context_rows::<3, 3>(s, si, sj, v, vs, dh, p, out, os, i),
                (3, _) => context_rows::<3, 4>(s, si, sj, v, vs, dh, p, out, os, i),
                (_, 1) => context_rows::<4, 1>(s, si, sj, v, vs, dh, p, out, os, i),
                (_, 2) => context_rows::<4, 2>(s, si, sj, v, vs, dh, p, out, os, i),
                (_, 3) => context_rows::<4, 3>(s, si, sj, v, vs, dh, p, out, os, i),
                (_, _) => context_rows::<4, 4>(s, si, sj, v, vs, dh, p, out, os, i),
            }
            i += r;
        }
    }
}

/// Context of the `R` queries from `i0` over `C` vectors of 16 columns ([`attn_context`]).
///
/// # Safety
/// As [`attn_context`], with `i0 + R ≤ p` and `16·C ≥ dh`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn context_rows<const R: usize, const C: usize>(
    s: *const f32,
    si: usize,
    sj: usize,
    v: *const f32,
    vs: usize,
    dh: usize,
    p: usize,
    out: *mut f32,
    os: usize,
    i0: usize,
) {
    // SAFETY: AVX-512 F available (contract); probabilities `s[(i0 + r)·si + j·sj]` with `i0 + r <
    // p`, `j < p` (inside the caller's probabilities); values `v[j·vs + c]` and outputs `out[(i0 + r)·os + c]` masked to `c <
    // dh`.
    unsafe {
        let mut ms = [0u16; C];
        for (c, m) in ms.iter_mut().enumerate() {
            *m = mask(dh.saturating_sub(16 * c));
        }
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for j in 0..p {
            let mut vv = [_mm512_setzero_ps(); C];
            for (c, x) in vv.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(ms[c], v.add(j * vs + 16 * c));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let sv = _mm512_set1_ps(*s.add((i0 + r) * si + j * sj));
                for c in 0..C {
                    a[c] = _mm512_add_ps(a[c], _mm512_mul_ps(sv, vv[c]));
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for c in 0..C {
                _mm512_mask_storeu_ps(out.add((i0 + r) * os + 16 * c), ms[c], a[c]);
            }
        }
    }
}

/// [`crate::kernels::layernorm`] on 16 lanes, bit for bit: the same 16-lane sums (lanes `l`
/// and `l + 8` added, then those 8 in order, then the tail), the same scalar statistics, the
/// same elementwise formula.
///
/// # Safety
/// AVX-512 F/BW/VL; `x` and `y` hold `rows·d` values, `gamma` and `beta` `d`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn layernorm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    rows: usize,
    d: usize,
) {
    // SAFETY: AVX-512 F/BW/VL available (contract); `x` and `y` hold `rows·d` values,
    // `gamma`/`beta` `d` (checked by `ops::layernorm`); full loads stop at `d / 16 · 16` within
    // each row, the rest is masked.
    unsafe {
        let full = d / 16 * 16;
        let sum16 = |xr: *const f32, m: Option<f32>| -> f32 {
            let mut acc = _mm512_setzero_ps();
            let mv = _mm512_set1_ps(m.unwrap_or(0.0));
            let mut i = 0;
            while i < full {
                let mut v = _mm512_loadu_ps(xr.add(i));
                if m.is_some() {
                    let c = _mm512_sub_ps(v, mv);
                    v = _mm512_mul_ps(c, c);
                }
                acc = _mm512_add_ps(acc, v);
                i += 16;
            }
            let h = _mm256_add_ps(
                _mm512_castps512_ps256(acc),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc))),
            );
            let mut hs = [0.0f32; 8];
            _mm256_storeu_ps(hs.as_mut_ptr(), h);
            let mut s = 0.0f32;
            for v in hs {
                s += v;
            }
            for i in full..d {
                let v = *xr.add(i);
                s += match m {
                    Some(m) => (v - m) * (v - m),
                    None => v,
                };
            }
            s
        };
        // Up to 32 rows at a time, each phase over all of them (means, then variances, then
        // the outputs), so the rows' reduction chains overlap instead of queueing behind one
        // another's.
        const MAXR: usize = 32;
        let (mut mus, mut rss) = ([0.0f32; MAXR], [0.0f32; MAXR]);
        for r in 0..rows {
            let b = r % MAXR;
            if b == 0 {
                let n = (rows - r).min(MAXR);
                for (i, mu) in mus.iter_mut().enumerate().take(n) {
                    *mu = sum16(x.as_ptr().add((r + i) * d), None) / d as f32;
                }
                for (i, rs) in rss.iter_mut().enumerate().take(n) {
                    let var = sum16(x.as_ptr().add((r + i) * d), Some(mus[i])) / d as f32;
                    *rs = 1.0 / crate::math::sqrt(var + crate::math::LN_EPS);
                }
            }
            let xr = x.as_ptr().add(r * d);
            let (mv, sv) = (_mm512_set1_ps(mus[b]), _mm512_set1_ps(rss[b]));
            let yr = y.as_mut_ptr().add(r * d);
            let mut i = 0;
            while i < d {
                let m = mask(d - i);
                let v = _mm512_maskz_loadu_ps(m, xr.add(i));
                let g = _mm512_maskz_loadu_ps(m, gamma.as_ptr().add(i));
                let b = _mm512_maskz_loadu_ps(m, beta.as_ptr().add(i));
                let o = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(v, mv), sv), g), b);
                _mm512_mask_storeu_ps(yr.add(i), m, o);
                i += 16;
            }
        }
    }
}

/// The graph head's `m = Â f` on 16 lanes, bit for bit the portable loop: for joint `i` with
/// neighbours `nb[..cnt]` (itself included, ascending), `m_i = a·f_nb0 + a·f_nb1 + …` in that
/// order with `a = 1 / cnt`; rows of `g` values.
///
/// # Safety
/// AVX-512 F; `f` and `m` hold `nbs.len()·g` values and every neighbour index is below
/// `nbs.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn graph_mix(f: &[f32], m: &mut [f32], g: usize, nbs: &[([usize; 4], usize)]) {
    // SAFETY: AVX-512 F available (contract); every neighbour index is below `nbs.len()` and `f`,
    // `m` hold `nbs.len()·g` values (checked by `ops::graph_mix`); loads and stores are masked to
    // the row's `g` values.
    unsafe {
        let (fp, mp) = (f.as_ptr(), m.as_mut_ptr());
        for (i, (nb, cnt)) in nbs.iter().enumerate() {
            let a = _mm512_set1_ps(1.0 / *cnt as f32);
            let mut c = 0;
            while c < g {
                let k = mask(g - c);
                let mut o = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(k, fp.add(nb[0] * g + c)));
                for &j in &nb[1..*cnt] {
                    o = _mm512_add_ps(
                        o,
                        _mm512_mul_ps(a, _mm512_maskz_loadu_ps(k, fp.add(j * g + c))),
                    );
                }
                _mm512_mask_storeu_ps(mp.add(i * g + c), k, o);
                c += 16;
            }
        }
    }
}

/// [`crate::math::exp`] on 16 lanes, the same operations in the same order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn exp16(x: __m512) -> __m512 {
    use crate::math::{EXP_C1, EXP_C2, EXP_HI, EXP_LO, EXP_P};
    let s = _mm512_set1_ps;
    let magic = 12_582_912.0f32;
    let x = _mm512_min_ps(_mm512_max_ps(x, s(EXP_LO)), s(EXP_HI));
    let big = _mm512_add_ps(_mm512_mul_ps(x, s(core::f32::consts::LOG2_E)), s(magic));
    let nf = _mm512_sub_ps(big, s(magic));
    let n = _mm512_sub_epi32(
        _mm512_castps_si512(big),
        _mm512_set1_epi32(magic.to_bits() as i32),
    );
    let r = _mm512_sub_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(nf, s(EXP_C1))),
        _mm512_mul_ps(nf, s(EXP_C2)),
    );
    let r2 = _mm512_mul_ps(r, r);
    let mut p = s(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm512_add_ps(_mm512_mul_ps(p, r), s(c));
    }
    let y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, r2), r), s(1.0));
    let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(n, _mm512_set1_epi32(127)));
    _mm512_mul_ps(y, _mm512_castsi512_ps(e))
}

/// [`crate::ops::dot`] on 8 lanes, the same order: lane sums over chunks of 8, lanes added
/// pairwise `((0+4) + (1+5)) + ((2+6) + (3+7))`, then the tail.
///
/// # Safety
/// AVX2 available; `a` and `b` point to at least `n` values each.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn dot8(a: *const f32, b: *const f32, n: usize) -> f32 {
    // SAFETY: AVX2 available (contract of the callers, which run only on the AVX-512 paths); `a`
    // and `b` point to at least `n` values, and the 8-wide loads stop at `n / 8 · 8`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            acc = _mm256_add_ps(
                acc,
                _mm256_mul_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i))),
            );
            i += 8;
        }
        let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let t = _mm_add_ps(h, _mm_movehdup_ps(h));
        let mut s = _mm_cvtss_f32(_mm_add_ss(t, _mm_movehl_ps(t, t)));
        while i < n {
            s += *a.add(i) * *b.add(i);
            i += 1;
        }
        s
    }
}

/// The graph head's output, bit for bit the portable loop: `t = f_j · w_c + b_c` for the 17
/// joints × 2 coordinates, then `out = kp0 + scale · tanh(t)` ([`crate::math::tanh`] on 16
/// lanes).
///
/// # Safety
/// AVX-512 F; `f` holds `17·g` values, `w` `2·g`, `kp0` and `out` 34, `b` 2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn graph_out(
    f: &[f32],
    w: &[f32],
    g: usize,
    b: &[f32],
    kp0: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    // SAFETY: AVX-512 F available (contract); `f` holds `17·g` values, `w` `2·g`, `b` 2, `kp0` and
    // `out` `n ≤ 48` (checked by `ops::graph_out`); the 16-lane reads of the local `t [48]` stay
    // inside it and `kp0`/`out` accesses are masked to `n`.
    unsafe {
        let n = kp0.len();
        let mut t = [0.0f32; 48];
        for j in 0..n / 2 {
            for c in 0..2 {
                t[2 * j + c] = dot8(f.as_ptr().add(j * g), w.as_ptr().add(c * g), g) + b[c];
            }
        }
        let s = _mm512_set1_ps;
        let mut i = 0;
        while i < n {
            let m = mask(n - i);
            let x = _mm512_loadu_ps(t.as_ptr().add(i));
            let x = _mm512_min_ps(_mm512_max_ps(x, s(-10.0)), s(10.0));
            let e = exp16(_mm512_mul_ps(s(2.0), x));
            let th = _mm512_sub_ps(s(1.0), _mm512_div_ps(s(2.0), _mm512_add_ps(e, s(1.0))));
            let k = _mm512_maskz_loadu_ps(m, kp0.as_ptr().add(i));
            _mm512_mask_storeu_ps(
                out.as_mut_ptr().add(i),
                m,
                _mm512_add_ps(k, _mm512_mul_ps(s(scale), th)),
            );
            i += 16;
        }
    }
}

/// The attention pooling, bit for bit the portable one (`csipose_attn_core::pool` with the
/// runtime's pooling arithmetic, `ops::PoolNumerics`): token scores `h_t · w + b`
/// ([`dot8`]), softmax over the `p ≤ 16` tokens ([`exp16`], a sequential sum, one division per
/// token), then `z = Σ_t a_t · h_t` in token order.
///
/// # Safety
/// AVX-512 F; `h` holds `p·d` values, `w` and `z` `d`, `scores` `p`; `p ≤ 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn pool(
    h: &[f32],
    w: &[f32],
    b: f32,
    p: usize,
    d: usize,
    scores: &mut [f32],
    z: &mut [f32],
) {
    // SAFETY: AVX-512 F available (contract); `h` holds `p·d` values, `w` and `z` `d`, `scores` `p
    // ≤ 16` (checked by `ops::pool`); loads and stores are masked to `p` tokens and the row's `d`
    // values.
    unsafe {
        let mut mx = f32::NEG_INFINITY;
        for (t, sc) in scores.iter_mut().enumerate().take(p) {
            let s = dot8(h.as_ptr().add(t * d), w.as_ptr(), d) + b;
            *sc = s;
            mx = mx.max(s);
        }
        let m = mask(p);
        let e = exp16(_mm512_sub_ps(
            _mm512_maskz_loadu_ps(m, scores.as_ptr()),
            _mm512_set1_ps(mx),
        ));
        let mut es = [0.0f32; 16];
        _mm512_storeu_ps(es.as_mut_ptr(), e);
        let mut sum = 0.0f32;
        for &v in &es[..p] {
            sum += v;
        }
        _mm512_storeu_ps(es.as_mut_ptr(), _mm512_div_ps(e, _mm512_set1_ps(sum)));
        let mut c = 0;
        while c < d {
            let k = mask(d - c);
            let mut o = _mm512_setzero_ps();
            for (t, &a) in es.iter().enumerate().take(p) {
                let v = _mm512_maskz_loadu_ps(k, h.as_ptr().add(t * d + c));
                o = _mm512_add_ps(o, _mm512_mul_ps(_mm512_set1_ps(a), v));
            }
            _mm512_mask_storeu_ps(z.as_mut_ptr().add(c), k, o);
            c += 16;
        }
    }
}

/// [`crate::math::standardise_stats`] and [`quantize_standardised`] in two interleaved passes
/// (the lane sums of the mean with the tokens' min/max; the lane sums of the variance with the
/// codes, which need the mean but not the variance), for `p ≤ 16` tokens: the same values,
/// bit for bit, with the latency of the sum chains hidden. Returns `(mean, inv)`.
///
/// # Safety
/// AVX-512 F/BW/VL; `x` holds `k·p` values, `q` `⌈k/2⌉·p` words, `sx` `p`; `p ≤ 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn standardise_quantize(
    x: &[f32],
    k: usize,
    p: usize,
    qx: f32,
    q: &mut [f32],
    sx: &mut [f32],
) -> (f32, f32) {
    // SAFETY: AVX-512 F/BW/VL available (contract); `x` holds exactly `k·p` values (the 32-wide
    // loads stop at `n / 32 · 32`, the per-feature loads are masked to `p ≤ 16` tokens), `q`
    // `⌈k/2⌉·p` words, `sx` `p` (checked by `ops::standardise_quantize`).
    unsafe {
        let n = k * p;
        let chunks = n / 32;
        let xp = x.as_ptr();
        let m = mask(p);
        let ld = |f: usize| _mm512_maskz_loadu_ps(m, xp.add(f * p));
        // Pass 1: 32 lane sums (as `math::sum_lanes`) and the tokens' raw min/max.
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut lo = _mm512_set1_ps(f32::INFINITY);
        let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut f = 0;
        for c in 0..chunks {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(xp.add(32 * c)));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(xp.add(32 * c + 16)));
            let end = (c + 1) * k / chunks;
            while f < end {
                let v = ld(f);
                lo = _mm512_min_ps(lo, v);
                hi = _mm512_max_ps(hi, v);
                f += 1;
            }
        }
        while f < k {
            let v = ld(f);
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            f += 1;
        }
        let mut acc = [0.0f32; 32];
        _mm512_storeu_ps(acc.as_mut_ptr(), a0);
        _mm512_storeu_ps(acc.as_mut_ptr().add(16), a1);
        let nf = n as f64;
        let mean = (crate::math::lanes_total(&acc, &x[chunks * 32..n], |v| v) / nf) as f32;
        // Code factors c_t = qx / d_t (what `int16::embed_scale` computes; sx needs inv, later).
        let (mut los, mut his) = ([0.0f32; 16], [0.0f32; 16]);
        _mm512_storeu_ps(los.as_mut_ptr(), lo);
        _mm512_storeu_ps(his.as_mut_ptr(), hi);
        let (mut ds, mut cs) = ([0.0f32; 16], [0.0f32; 16]);
        for t in 0..p {
            let d = (his[t] - mean).max(mean - los[t]);
            ds[t] = d;
            cs[t] = if d > 0.0 { qx / d } else { 0.0 };
        }
        // Pass 2: the variance's lane sums, and the codes pair by pair.
        let mv = _mm512_set1_ps(mean);
        let cv = _mm512_loadu_ps(cs.as_ptr());
        let lo16 = _mm512_set1_epi32(0xffff);
        let qp = q.as_mut_ptr() as *mut i32;
        let code = |f: usize| q16(_mm512_sub_ps(ld(f), mv), cv);
        let pair = |j: usize| {
            let (a, b) = (code(2 * j), code(2 * j + 1));
            let wv = _mm512_or_si512(_mm512_and_si512(a, lo16), _mm512_slli_epi32::<16>(b));
            _mm512_mask_storeu_epi32(qp.add(j * p), m, wv);
        };
        let (mut b0, mut b1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let half = k / 2;
        let mut j = 0;
        for c in 0..chunks {
            let v0 = _mm512_sub_ps(_mm512_loadu_ps(xp.add(32 * c)), mv);
            let v1 = _mm512_sub_ps(_mm512_loadu_ps(xp.add(32 * c + 16)), mv);
            b0 = _mm512_add_ps(b0, _mm512_mul_ps(v0, v0));
            b1 = _mm512_add_ps(b1, _mm512_mul_ps(v1, v1));
            let end = (c + 1) * half / chunks;
            while j < end {
                pair(j);
                j += 1;
            }
        }
        while j < half {
            pair(j);
            j += 1;
        }
        if k % 2 == 1 {
            let wv = _mm512_and_si512(code(k - 1), lo16);
            _mm512_mask_storeu_epi32(qp.add(half * p), m, wv);
        }
        _mm512_storeu_ps(acc.as_mut_ptr(), b0);
        _mm512_storeu_ps(acc.as_mut_ptr().add(16), b1);
        let var =
            crate::math::lanes_total(&acc, &x[chunks * 32..n], |v| (v - mean) * (v - mean)) / nf;
        let inv = 1.0 / (crate::math::sqrt_f64(var) as f32 + crate::math::STANDARDISE_EPS);
        for t in 0..p {
            sx[t] = if ds[t] > 0.0 { ds[t] / qx * inv } else { 0.0 };
        }
        (mean, inv)
    }
}
