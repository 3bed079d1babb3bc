//! x86-64 AVX-512 VNNI Linear kernel for int8/int4 weights with int16 activations
//! (`vpdpwssd`: 32 int16 multiply-adds per instruction into int32, twice the f32 FMA rate).
//! Each token's inputs are quantized to int16 with one max-abs scale
//! ([`crate::kernels::quantize_tokens`], shared with the portable int16 path); weight rows
//! `k` and `k+1` are interleaved into int16 pairs in registers (int4 nibbles unpacked first);
//! the epilogue converts the exact int32 sums and applies token scale × column scale, bias,
//! GELU/ReLU and the residual.
//!
//! Tiles: up to 10 tokens × 32 columns (20 zmm accumulators); the last tile of a row is masked
//! to the remaining columns (loads and stores never pass the row's end).

use core::arch::x86_64::*;

use crate::format::TensorData;
use crate::kernels::{Act, Weights};

const I8: u8 = 1;
const I4: u8 = 2;

struct Ctx {
    /// int16 activations `[tokens, kp]` (kp = rows rounded up to even, zero padded).
    xq: *const i16,
    kp: usize,
    sx: *const f32,
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

/// All columns of the int16-activation Linear; returns how many it did (all, or 0 for f32
/// weights and for int4 weights with an odd column count, left to the caller).
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `xq` holds `tokens × kp` values, `sx` `tokens`, and
/// bias, residual and `y` cover every index (checked by `kernels::linear`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(crate) unsafe fn linear(
    xq: &[i16],
    kp: usize,
    sx: &[f32],
    tokens: usize,
    w: &Weights,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) -> usize {
    let cols = w.cols;
    let (kind, wp, scales): (u8, *const u8, &[f32]) = match w.data {
        TensorData::F32(_) => return 0,
        TensorData::I8 { q, scales } => (I8, q.as_ptr() as *const u8, scales),
        TensorData::I4 { packed, scales } => {
            if !cols.is_multiple_of(2) {
                return 0;
            }
            (I4, packed.as_ptr(), scales)
        }
    };
    if tokens == 0 {
        return 0;
    }
    let c = Ctx {
        xq: xq.as_ptr(),
        kp,
        sx: sx.as_ptr(),
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
    match kind {
        I8 => run::<I8>(&c, tokens, cols),
        _ => run::<I4>(&c, tokens, cols),
    }
    cols
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn run<const K: u8>(c: &Ctx, n: usize, cols: usize) {
    let nb = n.div_ceil(10);
    let (base, extra) = (n / nb, n % nb);
    let mut col = 0;
    while col < cols {
        // Full 32- or 16-column tiles; the last tile is masked to the remaining columns.
        let two = col + 32 <= cols;
        let mut t0 = 0;
        for b in 0..nb {
            let r = base + usize::from(b < extra);
            if two {
                rows::<K, 2>(c, t0, r, col);
            } else {
                rows::<K, 1>(c, t0, r, col);
            }
            t0 += r;
        }
        col += if two { 32 } else { 16 };
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn rows<const K: u8, const C: usize>(c: &Ctx, t0: usize, r: usize, col: usize) {
    match r {
        1 => block::<K, 1, C>(c, t0, col),
        2 => block::<K, 2, C>(c, t0, col),
        3 => block::<K, 3, C>(c, t0, col),
        4 => block::<K, 4, C>(c, t0, col),
        5 => block::<K, 5, C>(c, t0, col),
        6 => block::<K, 6, C>(c, t0, col),
        7 => block::<K, 7, C>(c, t0, col),
        8 => block::<K, 8, C>(c, t0, col),
        9 => block::<K, 9, C>(c, t0, col),
        _ => block::<K, 10, C>(c, t0, col),
    }
}

/// Sixteen signed codes of row `k`, columns `col..col+16`, as bytes (zero past the last row
/// and past the row's end).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn row16<const K: u8>(c: &Ctx, k: usize, col: usize) -> __m128i {
    if k >= c.k_len {
        return _mm_setzero_si128();
    }
    let idx = k * c.cols + col;
    let left = c.cols - col; // columns from `col` to the row's end
    if K == I8 {
        if left >= 16 {
            _mm_loadu_si128(c.wp.add(idx) as *const __m128i)
        } else {
            _mm_maskz_loadu_epi8((1u16 << left) - 1, c.wp.add(idx) as *const i8)
        }
    } else {
        // even column count: idx is even; `left` even too
        let b = if left >= 16 {
            _mm_loadl_epi64(c.wp.add(idx / 2) as *const __m128i)
        } else {
            _mm_maskz_loadu_epi8((1u16 << (left / 2)) - 1, c.wp.add(idx / 2) as *const i8)
        };
        let m = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(b, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), m);
        let inter = _mm_unpacklo_epi8(lo, hi);
        let eight = _mm_set1_epi8(8);
        _mm_sub_epi8(_mm_xor_si128(inter, eight), eight)
    }
}

/// Rows `k`, `k+1` of 16 columns as 16 int16 pairs (one per 32-bit lane, row `k` low).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn pair16<const K: u8>(c: &Ctx, k: usize, col: usize) -> __m512i {
    let a = row16::<K>(c, k, col);
    let b = row16::<K>(c, k + 1, col);
    let lo = _mm_unpacklo_epi8(a, b);
    let hi = _mm_unpackhi_epi8(a, b);
    let both = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
    _mm512_cvtepi8_epi16(both)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn block<const K: u8, const R: usize, const C: usize>(c: &Ctx, t0: usize, col: usize) {
    let mut acc = [[_mm512_setzero_si512(); C]; R];
    let mut k = 0;
    while k < c.k_len {
        let mut w = [_mm512_setzero_si512(); C];
        for (v, wv) in w.iter_mut().enumerate() {
            *wv = pair16::<K>(c, k, col + 16 * v);
        }
        for (r, a) in acc.iter_mut().enumerate() {
            let xp = c.xq.add((t0 + r) * c.kp + k) as *const i32;
            let xb = _mm512_set1_epi32(core::ptr::read_unaligned(xp));
            for v in 0..C {
                a[v] = _mm512_dpwssd_epi32(a[v], xb, w[v]);
            }
        }
        k += 2;
    }
    for v in 0..C {
        let cc = col + 16 * v;
        let m: __mmask16 = if c.cols - cc >= 16 {
            0xffff
        } else {
            (1u16 << (c.cols - cc)) - 1
        };
        let scale = if c.per_col {
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
            let sx = _mm512_set1_ps(*c.sx.add(t0 + r));
            let mut o = _mm512_cvtepi32_ps(a[v]);
            o = _mm512_mul_ps(o, _mm512_mul_ps(sx, scale));
            o = _mm512_add_ps(o, b);
            o = match c.act {
                Act::None => o,
                Act::Gelu => crate::avx512::gelu16(o),
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
