//! x86-64 AVX-512 Linear kernel (exact f32 arithmetic like the AVX2 one, 16 lanes and 32
//! registers): tiles of up to 6 tokens × 64 columns (24 accumulators), int8/int4 codes widened
//! and converted in registers, masked last tile (no column tail left over), the same fused
//! epilogue ([`Avx512`], under the generic tiling loop [`crate::tile::run`]). f32 weights run
//! here too, except matrices whose column count is 8 mod 16, which
//! the AVX2 kernel covers without a masked tail and measured faster (micro's graph 17×56×56:
//! 1.04 vs 2.26 µs); everywhere else AVX-512 measured faster for f32 (flagship fp32 forward
//! 608 → 457 µs, base 180 → 153 µs; BENCHMARKS.md). f32 weights repacked into panels at load
//! ([`crate::kernels::Panels`], the [`P32`] kind: sequential aligned rows of 16, tiles of up
//! to 12 tokens × 2 vectors) are what the forward runs on these paths; the row-major kinds
//! serve the direct [`crate::kernels::linear`] calls.

use core::arch::x86_64::*;

use crate::format::TensorData;
use crate::kernels::{Act, Input, Panels, Weights};
use crate::math::{GELU_A, GELU_C, TANH_CLAMP, TANH_P, TANH_Q};
use crate::tile::{self, by_rows, MicroKernel};

const F32: u8 = 0;
const I8: u8 = 1;
const I4: u8 = 2;
/// f32 weights in [`crate::kernels::Panels`]: rows of 16 in sequence, zero padding.
pub(crate) const P32: u8 = 3;

pub(crate) struct Ctx {
    x: *const f32,
    ts: usize,
    ks: usize,
    k_len: usize,
    wp: *const u8,
    cols: usize,
    scales: *const f32,
    per_col: bool,
    bias: *const f32,
    act: Act,
    res: *const f32,
    y: *mut f32,
}

/// All columns of the Linear. The dispatcher ([`crate::kernels::linear`]) leaves f32 weights
/// with 8 mod 16 columns to the AVX2 kernel (module docs).
///
/// # Safety
/// AVX-512 F/BW/VL and AVX2+FMA must be available; the slices cover every index (checked by
/// `kernels::linear`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn linear(
    x: Input,
    w: &Weights,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let cols = w.cols;
    let (kind, wp, scales): (u8, *const u8, &[f32]) = match w.data {
        TensorData::F32(v) => (F32, v.as_ptr() as *const u8, &[]),
        TensorData::I8 { q, scales } => (I8, q.as_ptr() as *const u8, scales),
        TensorData::I4 { packed, scales } => (I4, packed.as_ptr(), scales),
    };
    let c = Ctx {
        x: x.x.as_ptr(),
        ts: x.ts,
        ks: x.ks,
        k_len: w.rows,
        wp,
        cols,
        scales: scales.as_ptr(),
        per_col: scales.len() > 1,
        bias: bias.map_or(core::ptr::null(), |b| b.as_ptr()),
        act,
        res: residual.map_or(core::ptr::null(), |r| r.as_ptr()),
        y: y.as_mut_ptr(),
    };
    let n = x.tokens;
    // SAFETY: AVX-512 available and every index in bounds (this function's contract); the
    // tiles mask the columns past `cols`.
    unsafe {
        match kind {
            F32 => tile::run::<Avx512<F32>>(&c, n, 0, cols),
            I8 => tile::run::<Avx512<I8>>(&c, n, 0, cols),
            _ => tile::run::<Avx512<I4>>(&c, n, 0, cols),
        }
    }
}

/// The f32 Linear over weights repacked in [`Panels`] (the same tiles and sums as [`linear`]
/// on the unpacked weights, bit for bit).
///
/// # Safety
/// AVX-512 F/BW/VL and AVX2+FMA must be available; the slices cover every index and `p.w`
/// holds [`crate::kernels::panels_len`] floats (checked by `kernels::linear_panels`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) unsafe fn linear_panels(
    x: Input,
    p: &Panels,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let c = Ctx {
        x: x.x.as_ptr(),
        ts: x.ts,
        ks: x.ks,
        k_len: p.rows,
        wp: p.w.as_ptr() as *const u8,
        cols: p.cols,
        scales: core::ptr::null(),
        per_col: false,
        bias: bias.map_or(core::ptr::null(), |b| b.as_ptr()),
        act,
        res: residual.map_or(core::ptr::null(), |r| r.as_ptr()),
        y: y.as_mut_ptr(),
    };
    // SAFETY: AVX-512 available and every index in bounds (this function's contract); the
    // panels are padded to whole vectors, the outputs masked past `cols`.
    unsafe { tile::run::<Avx512<P32>>(&c, x.tokens, 0, p.cols) }
}

/// The AVX-512 micro-kernel for weight kind `K` ([`F32`], [`I8`], [`I4`], [`P32`]): tiles of
/// up to 6 tokens × 4 vectors of 16 columns (24 accumulators: 4 weight vectors per broadcast,
/// so the broadcasts do not crowd the FMA pipes), the last vector of a row masked; panels
/// ([`P32`]) up to 12 tokens × 2 vectors (see `vectors`).
pub(crate) struct Avx512<const K: u8>;

impl<const K: u8> MicroKernel for Avx512<K> {
    type Ctx = Ctx;
    const MR: usize = if K == P32 { 12 } else { 6 };
    const LANES: usize = 16;
    /// (Panels also take 3.)
    const WIDTHS: &'static [usize] = &[4, 2, 1];
    const WIDTHS_ONE: &'static [usize] = &[4, 1];

    /// One token: 4 vectors while 64 columns fit, then single (masked) vectors. Several
    /// tokens: the narrowest width that covers what is left (4 past 32 columns, 2 past 16),
    /// its last vector masked. Panels ([`P32`]): the vectors that cover what is left, at most
    /// 4 for one token and 2 for several (no vector wholly past the columns, so no wasted
    /// FMAs; fewer, wider single-token tiles), and up to 12 tokens per tile, so the model's
    /// 10 tokens are one block of 10 × 2 vectors that reads each weight once (the 6 × 4 tiles
    /// read a strip twice, once per block of 5; measured faster in the forward: small 31.5 →
    /// 30.3 µs, base 64 → 62.5 µs, sums of stage minima). Each column's sum does not depend
    /// on the tile shape, so the panels equal the unpacked kernel bit for bit.
    #[inline(always)]
    fn vectors(left: usize, one_token: bool) -> usize {
        if K == P32 {
            let most = if one_token { 4 } else { 2 };
            return left.div_ceil(16).clamp(1, most);
        }
        match (one_token, left) {
            (true, 64..) => 4,
            (true, _) => 1,
            (false, 33..) => 4,
            (false, 17..) => 2,
            (false, _) => 1,
        }
    }

    /// # Safety
    /// As [`MicroKernel::tile`]: AVX-512 F/BW/VL and AVX2+FMA available, the tile inside the
    /// Linear `c` describes (vectors past `cols` masked).
    #[inline(always)]
    unsafe fn tile(c: &Ctx, t0: usize, r: usize, col: usize, v: usize) {
        // SAFETY: forwarded contract (AVX-512 present, the tile in bounds or masked).
        unsafe { tile_avx512::<K>(c, t0, r, col, v) }
    }
}

/// The register tile of `r` tokens × `v` vectors ([`MicroKernel::tile`]).
///
/// # Safety
/// AVX-512 F/BW/VL and AVX2+FMA available; the tile lies inside the Linear `c` describes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn tile_avx512<const K: u8>(c: &Ctx, t0: usize, r: usize, col: usize, v: usize) {
    // SAFETY: the caller's contract (features present, tile in bounds) is block's.
    unsafe {
        if K == P32 && r > 6 {
            // Panels: up to 12 tokens × 2 vectors (24 accumulators).
            match (r, v) {
                (7, 1) => block::<K, 7, 1>(c, t0, col),
                (8, 1) => block::<K, 8, 1>(c, t0, col),
                (9, 1) => block::<K, 9, 1>(c, t0, col),
                (10, 1) => block::<K, 10, 1>(c, t0, col),
                (11, 1) => block::<K, 11, 1>(c, t0, col),
                (_, 1) => block::<K, 12, 1>(c, t0, col),
                (7, _) => block::<K, 7, 2>(c, t0, col),
                (8, _) => block::<K, 8, 2>(c, t0, col),
                (9, _) => block::<K, 9, 2>(c, t0, col),
                (10, _) => block::<K, 10, 2>(c, t0, col),
                (11, _) => block::<K, 11, 2>(c, t0, col),
                (_, _) => block::<K, 12, 2>(c, t0, col),
            }
            return;
        }
        match v {
            4 => by_rows!(r, |R| block::<K, R, 4>(c, t0, col)),
            3 => by_rows!(r, |R| block::<K, R, 3>(c, t0, col)),
            2 => by_rows!(r, |R| block::<K, R, 2>(c, t0, col)),
            _ => by_rows!(r, |R| block::<K, R, 1>(c, t0, col)),
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
fn mask(left: usize) -> __mmask16 {
    if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as u16
    }
}

/// 16 weights (codes) of row `k` from column `col`, `m` = `mask(cols − col)` (masked past the
/// row's end; the mask is computed once per tile, so the loop has no branch per load); for
/// [`P32`] the panel row, unmasked (padded with zeros).
///
/// # Safety
/// AVX-512 F/BW/VL available; row `k`, columns `col..col + 16` (those `m` selects) lie inside
/// the weights `c` describes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn load16<const K: u8>(c: &Ctx, k: usize, col: usize, m: __mmask16) -> __m512 {
    // SAFETY: AVX-512 available (contract); the masked loads touch only the lanes `m` selects,
    // i.e. columns below `cols` of row `k`, inside the weights; the int4 load reads exactly the
    // bytes holding elements `idx..idx + n`.
    unsafe {
        let idx = k * c.cols + col;
        let left = c.cols.saturating_sub(col);
        match K {
            F32 => _mm512_maskz_loadu_ps(m, (c.wp as *const f32).add(idx)),
            // Panel `col / 16`, row `k`: 16 floats, zero past `cols`; masked all the same, so
            // a vector past the last panel (a tile's masked tail) reads nothing.
            P32 => {
                _mm512_maskz_loadu_ps(m, (c.wp as *const f32).add((col / 16 * c.k_len + k) * 16))
            }
            I8 => {
                let b = _mm_maskz_loadu_epi8(m, c.wp.add(idx) as *const i8);
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b))
            }
            _ => {
                // Elements idx .. idx+n lie in bytes idx/2 ..= (idx+n-1)/2 (at most 9 when idx
                // is odd: rows of an odd column count start mid-byte); load exactly those.
                let n = left.min(16);
                if n == 0 {
                    return _mm512_setzero_ps();
                }
                let p = c.wp.add(idx / 2);
                let nbytes = (idx + n - 1) / 2 - idx / 2 + 1;
                let raw = if nbytes == 8 {
                    _mm_loadl_epi64(p as *const __m128i)
                } else {
                    _mm_maskz_loadu_epi8(mask(nbytes), p as *const i8)
                };
                // Odd start: shift the 16 wanted nibbles down by one nibble (across the 8-byte
                // boundary) so element idx is the low nibble of byte 0.
                let b = if idx % 2 == 1 {
                    let lo = _mm_srli_epi64::<4>(raw);
                    let hi = _mm_slli_epi64::<60>(_mm_srli_si128::<8>(raw));
                    _mm_or_si128(lo, hi)
                } else {
                    raw
                };
                let m = _mm_set1_epi8(0x0f);
                let lo = _mm_and_si128(b, m);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
                let inter = _mm_unpacklo_epi8(lo, hi);
                let eight = _mm_set1_epi8(8);
                let s = _mm_sub_epi8(_mm_xor_si128(inter, eight), eight);
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s))
            }
        }
    }
}

/// GELU (tanh approximation) on 16 lanes, the same rational tanh as `math::fast_tanh`
/// (also used by the VNNI kernel).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub(crate) fn gelu16(x: __m512) -> __m512 {
    let s = _mm512_set1_ps;
    let x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    let mut u = _mm512_mul_ps(s(GELU_C), _mm512_add_ps(x, _mm512_mul_ps(s(GELU_A), x3)));
    u = _mm512_max_ps(_mm512_min_ps(u, s(TANH_CLAMP)), s(-TANH_CLAMP));
    let u2 = _mm512_mul_ps(u, u);
    let mut p = _mm512_fmadd_ps(u2, s(TANH_P[0]), s(TANH_P[1]));
    for &c in &TANH_P[2..] {
        p = _mm512_fmadd_ps(u2, p, s(c));
    }
    p = _mm512_mul_ps(p, u);
    let mut q = _mm512_fmadd_ps(u2, s(TANH_Q[0]), s(TANH_Q[1]));
    for &c in &TANH_Q[2..] {
        q = _mm512_fmadd_ps(u2, q, s(c));
    }
    let r0 = _mm512_rcp14_ps(q);
    let r = _mm512_mul_ps(r0, _mm512_fnmadd_ps(q, r0, s(2.0)));
    let t = _mm512_mul_ps(p, r);
    _mm512_mul_ps(_mm512_mul_ps(s(0.5), x), _mm512_add_ps(s(1.0), t))
}

/// One register tile: tokens `t0..t0 + R`, columns `col..col + 16C` (the last vectors masked
/// past the row's end). A single token sums even and odd inputs in two chains (8 independent
/// FMA chains at C = 4, what two FMA pipes of latency 4 need), added at the end.
///
/// # Safety
/// AVX-512 F/BW/VL and AVX2+FMA available; the tile lies inside the Linear `c` describes.
#[inline]
#[allow(clippy::needless_range_loop)] // index loops over the register tile, fully unrolled
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn block<const K: u8, const R: usize, const C: usize>(c: &Ctx, t0: usize, col: usize) {
    // SAFETY: AVX-512 F/BW/VL and AVX2+FMA available and the tile inside the Linear `c` describes
    // (contract, checked by `kernels::linear`): inputs `t0..t0 + R` at `x[t·ts + k·ks]` for k <
    // `k_len`, and every weight, scale, bias, residual and output access is masked to columns
    // below `cols`.
    unsafe {
        let mut ms = [0u16; C];
        for (v, m) in ms.iter_mut().enumerate() {
            *m = mask(c.cols.saturating_sub(col + 16 * v));
        }
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        let xp = c.x.add(t0 * c.ts);
        let mut k = 0;
        if R == 1 {
            let mut odd = [_mm512_setzero_ps(); C];
            while k + 2 <= c.k_len {
                let xb0 = _mm512_set1_ps(*xp.add(k * c.ks));
                let xb1 = _mm512_set1_ps(*xp.add((k + 1) * c.ks));
                for v in 0..C {
                    let w0 = load16::<K>(c, k, col + 16 * v, ms[v]);
                    let w1 = load16::<K>(c, k + 1, col + 16 * v, ms[v]);
                    acc[0][v] = _mm512_fmadd_ps(xb0, w0, acc[0][v]);
                    odd[v] = _mm512_fmadd_ps(xb1, w1, odd[v]);
                }
                k += 2;
            }
            for v in 0..C {
                acc[0][v] = _mm512_add_ps(acc[0][v], odd[v]);
            }
        }
        while k < c.k_len {
            let mut w = [_mm512_setzero_ps(); C];
            for (v, wv) in w.iter_mut().enumerate() {
                *wv = load16::<K>(c, k, col + 16 * v, ms[v]);
            }
            let xk = xp.add(k * c.ks);
            for (r, a) in acc.iter_mut().enumerate() {
                let xb = _mm512_set1_ps(*xk.add(r * c.ts));
                for v in 0..C {
                    a[v] = _mm512_fmadd_ps(xb, w[v], a[v]);
                }
            }
            k += 1;
        }
        // The sums leave the registers through one explicit, fully unrolled copy, so the epilogue
        // (not unrolled for large R) does not keep `acc` in memory inside the loop above (without
        // it, the 6 × 4 tile stored its 24 accumulators to the stack at every input).
        let mut sums = [[_mm512_setzero_ps(); C]; R];
        for r in 0..R {
            for v in 0..C {
                core::ptr::write_volatile(&mut sums[r][v], acc[r][v]);
            }
        }
        let acc = sums;
        for v in 0..C {
            let cc = col + 16 * v;
            let m = ms[v];
            let scale = if K == F32 || K == P32 {
                _mm512_set1_ps(1.0)
            } else if c.per_col {
                _mm512_maskz_loadu_ps(m, c.scales.add(cc))
            } else {
                _mm512_set1_ps(*c.scales)
            };
            let b = if c.bias.is_null() {
                _mm512_setzero_ps()
            } else {
                _mm512_maskz_loadu_ps(m, c.bias.add(cc))
            };
            for (r, a) in acc.iter().enumerate() {
                let mut o = a[v];
                if K != F32 && K != P32 {
                    o = _mm512_mul_ps(o, scale);
                }
                o = _mm512_add_ps(o, b);
                o = match c.act {
                    Act::None => o,
                    Act::Gelu => gelu16(o),
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
