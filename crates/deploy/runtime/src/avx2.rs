//! x86-64 AVX2+FMA Linear kernel: register tiles of up to 6 tokens × 16 columns (or 1 token ×
//! 64 columns for the single-vector products of the head), weights read row by row from the
//! `[in, out]` layout; int8 and int4 codes are widened and converted in registers
//! (dequantise-in-register) and the per-column scale is applied once, in the epilogue, which
//! also adds the bias, applies GELU/ReLU and the residual.
//!
//! The micro-kernel ([`Avx2`]) runs under the generic tiling loop ([`crate::tile::run`]);
//! only reached through [`crate::kernels::linear`] with a [`crate::Kernel`] whose AVX2 path
//! was detected at run time.

use core::arch::x86_64::*;

use crate::format::TensorData;
use crate::kernels::{Act, Input, Weights};
use crate::math::{GELU_A, GELU_C, TANH_CLAMP, TANH_P, TANH_Q};
use crate::tile::{self, by_rows, MicroKernel};

const F32: u8 = 0;
const I8: u8 = 1;
const I4: u8 = 2;
/// f32 weights summed with a separate multiply and add (no FMA): the portable kernel's
/// roundings exactly (for the int16 path, whose reference runs the portable f32 kernel).
const F32X: u8 = 3;

/// Everything a tile needs, as raw pointers (bounds were checked by the caller).
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

/// Computes the columns `0..8·⌊cols/8⌋` of the Linear and returns how many it did (the caller
/// finishes the rest with the portable code). Returns 0 for int4 tensors with an odd number
/// of columns (their rows do not start on a byte).
///
/// # Safety
/// AVX2 and FMA must be available; `x`, `bias`, `residual` and `y` must cover every index
/// (checked by `kernels::linear`). With `no_fma`, f32 weights are summed as the portable
/// kernel sums them (multiply, then add), bit for bit.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn linear(
    no_fma: bool,
    x: Input,
    w: &Weights,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) -> usize {
    let cols = w.cols;
    let (kind, wp, scales): (u8, *const u8, &[f32]) = match w.data {
        TensorData::F32(v) => (F32, v.as_ptr() as *const u8, &[]),
        TensorData::I8 { q, scales } => (I8, q.as_ptr() as *const u8, scales),
        TensorData::I4 { packed, scales } => {
            if !cols.is_multiple_of(2) {
                return 0;
            }
            (I4, packed.as_ptr(), scales)
        }
    };
    let vec_cols = cols / 8 * 8;
    if vec_cols == 0 || x.tokens == 0 {
        return 0;
    }
    let ctx = Ctx {
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
    // SAFETY: AVX2+FMA available and every index in bounds (this function's contract).
    unsafe {
        match kind {
            F32 if no_fma => tile::run::<Avx2<F32X>>(&ctx, n, 0, vec_cols),
            F32 => tile::run::<Avx2<F32>>(&ctx, n, 0, vec_cols),
            I8 => tile::run::<Avx2<I8>>(&ctx, n, 0, vec_cols),
            _ => tile::run::<Avx2<I4>>(&ctx, n, 0, vec_cols),
        }
    }
    vec_cols
}

/// The AVX2+FMA micro-kernel for weight kind `K` ([`F32`], [`F32X`], [`I8`], [`I4`]): tiles of
/// up to 6 tokens × 2 vectors of 8 columns (12 of the 16 ymm registers accumulate), a single
/// token × up to 8 vectors.
pub(crate) struct Avx2<const K: u8>;

impl<const K: u8> MicroKernel for Avx2<K> {
    type Ctx = Ctx;
    const MR: usize = 6;
    const LANES: usize = 8;
    const WIDTHS: &'static [usize] = &[2, 1];
    const WIDTHS_ONE: &'static [usize] = &[8, 4, 2, 1];

    /// # Safety
    /// As [`MicroKernel::tile`]: AVX2+FMA available, the tile inside the Linear `c` describes.
    #[inline(always)]
    unsafe fn tile(c: &Ctx, t0: usize, r: usize, col: usize, v: usize) {
        // SAFETY: forwarded contract (AVX2+FMA present, the tile in bounds).
        unsafe { tile_avx2::<K>(c, t0, r, col, v) }
    }
}

/// The register tile of `r` tokens × `v` vectors ([`MicroKernel::tile`]).
///
/// # Safety
/// AVX2+FMA available; the tile lies inside the Linear `c` describes.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const K: u8>(c: &Ctx, t0: usize, r: usize, col: usize, v: usize) {
    // SAFETY: the caller's contract (features present, tile in bounds) is block's.
    unsafe {
        match v {
            8 => block::<K, 1, 8>(c, t0, col),
            4 => block::<K, 1, 4>(c, t0, col),
            2 => by_rows!(r, |R| block::<K, R, 2>(c, t0, col)),
            _ => by_rows!(r, |R| block::<K, R, 1>(c, t0, col)),
        }
    }
}

/// Eight int4 codes (4 bytes) or sixteen (8 bytes) in `b`, unpacked to sign-extended bytes in
/// element order (low nibble first).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn unpack_nibbles(b: __m128i) -> __m128i {
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(b, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
    let inter = _mm_unpacklo_epi8(lo, hi);
    // (n ^ 8) - 8 sign-extends a 4-bit two's-complement value held in a byte.
    let eight = _mm_set1_epi8(8);
    _mm_sub_epi8(_mm_xor_si128(inter, eight), eight)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn bytes_to_ps(b: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))
}

/// `C` vectors of 8 weights (codes) starting at element `idx` of the weight matrix.
///
/// # Safety
/// AVX2 available; the `8C` weights from element `idx` (int4: their bytes) lie inside the
/// weights `wp` points to.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load_w<const K: u8, const C: usize>(wp: *const u8, idx: usize) -> [__m256; C] {
    // SAFETY: AVX2 is enabled on this function and the caller guarantees it (this function's
    // contract); `idx` and the `C` vectors after it lie inside the weights (the tile is in
    // bounds), so every load and `add` stays inside the weight slice.
    unsafe {
        let mut out = [_mm256_setzero_ps(); C];
        match K {
            F32 | F32X => {
                let p = (wp as *const f32).add(idx);
                for (v, o) in out.iter_mut().enumerate() {
                    *o = _mm256_loadu_ps(p.add(8 * v));
                }
            }
            I8 => {
                let p = wp.add(idx);
                for (v, o) in out.iter_mut().enumerate() {
                    *o = bytes_to_ps(_mm_loadl_epi64(p.add(8 * v) as *const __m128i));
                }
            }
            _ => {
                // idx is even (even column count, column a multiple of 8): byte-aligned.
                let p = wp.add(idx / 2);
                let mut v = 0;
                while v + 2 <= C {
                    let s = unpack_nibbles(_mm_loadl_epi64(p.add(4 * v) as *const __m128i));
                    out[v] = bytes_to_ps(s);
                    out[v + 1] = bytes_to_ps(_mm_srli_si128::<8>(s));
                    v += 2;
                }
                if v < C {
                    let word = core::ptr::read_unaligned(p.add(4 * v) as *const i32);
                    out[v] = bytes_to_ps(unpack_nibbles(_mm_cvtsi32_si128(word)));
                }
            }
        }
        out
    }
}

/// GELU (tanh approximation) on 8 lanes, the same rational tanh as `math::fast_tanh`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn gelu8(x: __m256) -> __m256 {
    let s = _mm256_set1_ps;
    let x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    let mut u = _mm256_mul_ps(s(GELU_C), _mm256_add_ps(x, _mm256_mul_ps(s(GELU_A), x3)));
    u = _mm256_max_ps(_mm256_min_ps(u, s(TANH_CLAMP)), s(-TANH_CLAMP));
    let u2 = _mm256_mul_ps(u, u);
    let mut p = _mm256_fmadd_ps(u2, s(TANH_P[0]), s(TANH_P[1]));
    for &c in &TANH_P[2..] {
        p = _mm256_fmadd_ps(u2, p, s(c));
    }
    p = _mm256_mul_ps(p, u);
    let mut q = _mm256_fmadd_ps(u2, s(TANH_Q[0]), s(TANH_Q[1]));
    for &c in &TANH_Q[2..] {
        q = _mm256_fmadd_ps(u2, q, s(c));
    }
    // p / q as p · rcp(q) with one Newton step (relative error ~1e-7, no divide).
    let r0 = _mm256_rcp_ps(q);
    let r = _mm256_mul_ps(r0, _mm256_fnmadd_ps(q, r0, s(2.0)));
    let t = _mm256_mul_ps(p, r);
    _mm256_mul_ps(_mm256_mul_ps(s(0.5), x), _mm256_add_ps(s(1.0), t))
}

/// One register tile: tokens `t0..t0+R`, columns `col..col+8C`.
///
/// # Safety
/// AVX2+FMA available; the tile lies inside the Linear `c` describes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn block<const K: u8, const R: usize, const C: usize>(c: &Ctx, t0: usize, col: usize) {
    // SAFETY: AVX2+FMA available and the tile `t0..t0 + R` × `col..col + 8C` inside the Linear `c`
    // describes (this function's contract, checked by `kernels::linear` before the tiles run), so
    // every input, weight, scale, bias, residual and output pointer below stays in bounds.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let xp = c.x.add(t0 * c.ts);
        for k in 0..c.k_len {
            let w = load_w::<K, C>(c.wp, k * c.cols + col);
            let xk = xp.add(k * c.ks);
            for (r, a) in acc.iter_mut().enumerate() {
                let xb = _mm256_set1_ps(*xk.add(r * c.ts));
                for v in 0..C {
                    a[v] = if K == F32X {
                        _mm256_add_ps(a[v], _mm256_mul_ps(xb, w[v]))
                    } else {
                        _mm256_fmadd_ps(xb, w[v], a[v])
                    };
                }
            }
        }
        for v in 0..C {
            let cc = col + 8 * v;
            let scale = if K == F32 || K == F32X {
                _mm256_set1_ps(1.0)
            } else if c.per_col {
                _mm256_loadu_ps(c.scales.add(cc))
            } else {
                _mm256_set1_ps(*c.scales)
            };
            let b = if c.bias.is_null() {
                _mm256_setzero_ps()
            } else {
                _mm256_loadu_ps(c.bias.add(cc))
            };
            for (r, a) in acc.iter().enumerate() {
                let mut o = a[v];
                if K != F32 && K != F32X {
                    o = _mm256_mul_ps(o, scale);
                }
                o = _mm256_add_ps(o, b);
                o = match c.act {
                    Act::None => o,
                    Act::Gelu => gelu8(o),
                    Act::Relu => _mm256_max_ps(o, _mm256_setzero_ps()),
                };
                let at = (t0 + r) * c.cols + cc;
                if !c.res.is_null() {
                    o = _mm256_add_ps(o, _mm256_loadu_ps(c.res.add(at)));
                }
                _mm256_storeu_ps(c.y.add(at), o);
            }
        }
    }
}
