//! int16 fixed-point Linears: the weights of every model Linear repacked once (by
//! [`crate::Runtime::new`], into caller memory) as int16 pairs in the layout the AVX-512 VNNI
//! kernel reads (`vpdpwssd`), each token's inputs quantized to int16 (one max-abs scale per
//! token), exact int32 sums, then the f32 epilogue. This module owns the repacking, the
//! activation quantizers and the portable reference Linear ([`crate::Kernel::portable_int16`],
//! the `PortableInt16` micro-kernel);
//! the AVX-512 versions are in `vnni.rs` and compute the same values.
//!
//! Weights: int8 and int4 codes are widened exactly (their scales kept). f32 weights are
//! quantized per output column, `code = round(w / s_c)` with `s_c = max_k |w[k, c]| / qw`.
//!
//! No int32 overflow, guaranteed: with `S = max_c Σ_k |code[k, c]|` the activations use at
//! most `qx = min(32767, ⌊(2³¹ − 1) / S⌋)`, so every sum is bounded by `qx · S < 2³¹`. For
//! int8/int4 weights `S ≤ 127·K` (15-bit activations for K ≤ 516). For f32 weights `qw` is
//! chosen so that weights and activations get about the same number of bits
//! (`qw ≈ qx ≈ √(2³¹ / L)`, `L = max_c Σ_k |w[k, c]| / max_k |w[k, c]|`, about 12–13 bits
//! for the presets' widths).
//!
//! Layout of one packed Linear (`rows` = K inputs, `cols` outputs, `cp` = cols rounded up to
//! 16): `[K/2 rounded up][cp]` 32-bit words, word `(j, c)` = code `(2j, c)` in the low 16 bits
//! and code `(2j + 1, c)` in the high 16 (0 past the last row and column), then `cp` column
//! scales (0 in the padding): [`packed_len`] floats, a multiple of 16, so consecutive packed
//! Linears stay 64-byte aligned when the first is. Words are stored as f32 bit patterns in the
//! caller's `&mut [f32]` constants buffer.
//!
//! Activations ([`QInput`]): token `t`'s pair `j` (inputs `2j`, `2j + 1`, same packing) is the
//! word at `q[t·ts + j·js]`; token-major (`ts = K/2`, `js = 1`) from row-major f32 inputs, or
//! pair-major (`ts = 1`, `js = tokens`) for the embedding, whose input is stored feature-major.

use crate::format::TensorData;
use crate::kernels::{Act, Weights};
use crate::tile::MicroKernel;

/// Largest int16 code of an activation or f32 weight.
pub const QMAX: f32 = 32767.0;
const LIMIT: f64 = i32::MAX as f64;
/// `1.5 · 2^23`: adding it rounds an f32 of magnitude below 2^22 to an integer (ties to even).
const MAGIC: f32 = 12_582_912.0;

/// Columns rounded up to a multiple of 16 (one zmm of int32 sums).
pub fn padded_cols(cols: usize) -> usize {
    cols.div_ceil(16) * 16
}

/// Floats one packed Linear of `rows × cols` takes (a multiple of 16).
pub fn packed_len(rows: usize, cols: usize) -> usize {
    let cp = padded_cols(cols);
    rows.div_ceil(2) * cp + cp
}

/// A Linear's weights repacked for the int16 path (see the module docs for the layout).
#[derive(Clone, Copy, Debug)]
pub struct Packed<'p> {
    pub rows: usize,
    pub cols: usize,
    /// Columns padded to 16.
    pub cp: usize,
    /// `[rows/2 rounded up][cp]` words (f32 bit patterns of the int32 words).
    pub w: &'p [f32],
    /// `[cp]` column scales.
    pub scales: &'p [f32],
    /// Largest activation code (≤ 32767), what keeps the int32 sums from overflowing.
    pub qx: f32,
}

impl Packed<'_> {
    /// Pairs per input row (K/2 rounded up).
    #[inline]
    pub fn pairs(&self) -> usize {
        self.rows.div_ceil(2)
    }
    /// The 32-bit word of pair `j`, column `c`.
    #[inline]
    pub fn word(&self, j: usize, c: usize) -> i32 {
        self.w[j * self.cp + c].to_bits() as i32
    }
}

/// Rounds to the nearest integer, ties to even (`|v| < 2^22`), as `cvtps2dq` does.
#[inline(always)]
pub(crate) fn round_even(v: f32) -> i32 {
    ((v + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32)
}

/// Two int16 codes as one 32-bit word, `lo` in the low half.
#[inline(always)]
pub(crate) fn word(lo: i32, hi: i32) -> f32 {
    f32::from_bits((lo as u16 as u32) | ((hi as u16 as u32) << 16))
}

/// Repacks `w` into `out` (at least [`packed_len`] floats; 64-byte aligned for the AVX-512
/// kernel's aligned loads) and returns the view.
pub fn pack<'p>(w: &Weights, out: &'p mut [f32]) -> Packed<'p> {
    let (rows, cols) = (w.rows, w.cols);
    let cp = padded_cols(cols);
    let np = rows.div_ceil(2);
    let out = &mut out[..packed_len(rows, cols)];
    let (words, scales) = out.split_at_mut(np * cp);
    // Column scales and the weight codes' bound `qw` (f32 weights only).
    let mut qw = 0.0f32;
    match w.data {
        TensorData::F32(_) => {
            let mut l = 1.0f64;
            for c in 0..cols {
                let (mut m, mut s) = (0.0f64, 0.0f64);
                for k in 0..rows {
                    let a = (w.code(k, c) as f64).abs();
                    m = m.max(a);
                    s += a;
                }
                if m > 0.0 {
                    l = l.max(s / m);
                }
            }
            qw = (crate::math::sqrt_f64(LIMIT / l) as u64).min(QMAX as u64) as f32;
            for (c, s) in scales.iter_mut().enumerate().take(cols) {
                let m = (0..rows).fold(0.0f32, |m, k| m.max(w.code(k, c).abs()));
                *s = if m > 0.0 { m / qw } else { 0.0 };
            }
        }
        _ => {
            for (c, s) in scales.iter_mut().enumerate().take(cols) {
                *s = w.scale(c);
            }
        }
    }
    for s in scales[cols..].iter_mut() {
        *s = 0.0;
    }
    let code = |k: usize, c: usize| -> i32 {
        if k >= rows || c >= cols {
            return 0;
        }
        match w.data {
            TensorData::F32(_) => {
                let s = scales[c];
                if s > 0.0 {
                    round_even((w.code(k, c) / s).clamp(-qw, qw))
                } else {
                    0
                }
            }
            _ => w.code(k, c) as i32,
        }
    };
    let mut l1 = [0u64; 16];
    let mut bound = 0u64;
    for c0 in (0..cp).step_by(16) {
        l1.fill(0);
        for j in 0..np {
            for (i, acc) in l1.iter_mut().enumerate() {
                let c = c0 + i;
                let (a, b) = (code(2 * j, c), code(2 * j + 1, c));
                words[j * cp + c] = word(a, b);
                *acc += a.unsigned_abs() as u64 + b.unsigned_abs() as u64;
            }
        }
        bound = bound.max(l1.iter().copied().max().unwrap_or(0));
    }
    let qx = if bound == 0 {
        QMAX
    } else {
        ((LIMIT / bound as f64) as u64).min(QMAX as u64) as f32
    };
    let (words, scales) = (&*words, &*scales);
    Packed {
        rows,
        cols,
        cp,
        w: words,
        scales,
        qx,
    }
}

/// int16 activations of one Linear: token `t`'s pair `j` is the word `q[t·ts + j·js]`
/// (f32 bit patterns), its scale `sx[t]`.
#[derive(Clone, Copy, Debug)]
pub struct QInput<'a> {
    pub q: &'a [f32],
    pub sx: &'a [f32],
    pub tokens: usize,
    pub ts: usize,
    pub js: usize,
}

/// Scale and its inverse of a token whose largest magnitude is `mx`.
#[inline(always)]
pub(crate) fn token_scale(mx: f32, qx: f32) -> (f32, f32) {
    if mx > 0.0 {
        (mx / qx, qx / mx)
    } else {
        (0.0, 0.0)
    }
}

/// The code of `v` at inverse scale `inv = qx / mx` (`|v| ≤ mx`): no clamp needed, as
/// `|v · inv| ≤ fl(mx · inv)` is within an ulp of `qx` and rounds to at most `qx`.
#[inline(always)]
pub(crate) fn q16(v: f32, inv: f32) -> i32 {
    round_even(v * inv)
}

/// Quantizes `tokens` rows of `k` values (row `t` at `x[t·xs..]`) token-major into `q`
/// (`tokens · ⌈k/2⌉` words) and `sx`.
pub fn quantize_rows_portable(
    x: &[f32],
    tokens: usize,
    k: usize,
    xs: usize,
    qx: f32,
    q: &mut [f32],
    sx: &mut [f32],
) {
    let np = k.div_ceil(2);
    for t in 0..tokens {
        let row = &x[t * xs..t * xs + k];
        let mx = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (s, inv) = token_scale(mx, qx);
        sx[t] = s;
        for j in 0..np {
            let a = q16(row[2 * j], inv);
            let b = if 2 * j + 1 < k {
                q16(row[2 * j + 1], inv)
            } else {
                0
            };
            q[t * np + j] = word(a, b);
        }
    }
}

/// Standardises the embedding input `x [k, p]` (feature-major: token `t`, feature `f` at
/// `x[f·p + t]`) and quantizes it pair-major into `q` (`⌈k/2⌉ · p` words) and `sx` (`p`):
/// `code = round((x − mean) · c_t)` with `c_t = qx / d_t`, `d_t = max_f |x − mean|` taken from
/// the token's raw minimum and maximum (rounding is monotonic, so this is the exact maximum of
/// the rounded differences), and `sx_t = d_t / qx · inv` in standardised units.
#[allow(clippy::too_many_arguments)]
pub fn quantize_standardised_portable(
    x: &[f32],
    k: usize,
    p: usize,
    mean: f32,
    inv: f32,
    qx: f32,
    q: &mut [f32],
    sx: &mut [f32],
) {
    for t in 0..p {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for f in 0..k {
            lo = lo.min(x[f * p + t]);
            hi = hi.max(x[f * p + t]);
        }
        let (s, c) = embed_scale(lo, hi, mean, inv, qx);
        sx[t] = s;
        let v = |f: usize| {
            if f < k {
                q16(x[f * p + t] - mean, c)
            } else {
                0
            }
        };
        for j in 0..k.div_ceil(2) {
            q[j * p + t] = word(v(2 * j), v(2 * j + 1));
        }
    }
}

/// `(sx_t, c_t)` of an embedding token whose raw values lie in `[lo, hi]`.
#[inline(always)]
pub(crate) fn embed_scale(lo: f32, hi: f32, mean: f32, inv: f32, qx: f32) -> (f32, f32) {
    let d = (hi - mean).max(mean - lo);
    if d > 0.0 {
        (d / qx * inv, qx / d)
    } else {
        (0.0, 0.0)
    }
}

/// The reference int16 Linear: exact int32 sums, then the epilogue
/// `act(sum · (sx_t · s_c) + bias_c) (+ residual)` ([`PortableInt16`] under the generic
/// tiling loop).
pub(crate) fn linear_portable(
    x: &QInput,
    w: &Packed,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(y.len() >= x.tokens * w.cols);
    let ctx = PortableCtx {
        x,
        w,
        bias,
        act,
        residual,
        y: y.as_mut_ptr(),
    };
    // SAFETY: plain Rust; `y` holds `tokens · cols` values (asserted), every tile's row.
    unsafe { crate::tile::run::<PortableInt16>(&ctx, x.tokens, 0, w.cols) };
}

/// What a [`PortableInt16`] tile reads and writes (`y` is `[tokens, cols]`, row-major).
pub(crate) struct PortableCtx<'a> {
    x: &'a QInput<'a>,
    w: &'a Packed<'a>,
    bias: Option<&'a [f32]>,
    act: Act,
    residual: Option<&'a [f32]>,
    y: *mut f32,
}

/// The portable int16 micro-kernel: one token × every column of the range, each output an
/// exact int32 dot product over the pairs.
pub(crate) struct PortableInt16<'a>(core::marker::PhantomData<&'a ()>);

impl<'a> MicroKernel for PortableInt16<'a> {
    type Ctx = PortableCtx<'a>;
    const MR: usize = 1;
    const LANES: usize = 1;
    const WIDTHS: &'static [usize] = &[1];
    const WIDTHS_ONE: &'static [usize] = &[1];

    /// The whole rest of the row.
    #[inline(always)]
    fn vectors(left: usize, _one_token: bool) -> usize {
        left
    }

    /// # Safety
    /// As [`MicroKernel::tile`]: token `t`, columns `c0..c0 + n` inside the Linear `cx`
    /// describes (no instruction-set requirement).
    #[inline(always)]
    unsafe fn tile(cx: &PortableCtx<'a>, t: usize, _r: usize, c0: usize, n: usize) {
        let (x, w, cols) = (cx.x, cx.w, cx.w.cols);
        // SAFETY: the tile's contract: token t, columns c0..c0+n lie inside `y [tokens, cols]`.
        let yr = unsafe { core::slice::from_raw_parts_mut(cx.y.add(t * cols + c0), n) };
        for (i, o) in yr.iter_mut().enumerate() {
            let c = c0 + i;
            let mut acc = 0i32;
            for j in 0..w.pairs() {
                let a = x.q[t * x.ts + j * x.js].to_bits();
                let b = w.word(j, c) as u32;
                let lo = (a as u16 as i16 as i32) * (b as u16 as i16 as i32);
                let hi = ((a >> 16) as u16 as i16 as i32) * ((b >> 16) as u16 as i16 as i32);
                acc = acc.wrapping_add(lo).wrapping_add(hi);
            }
            let mut v = acc as f32 * (x.sx[t] * w.scales[c]) + cx.bias.map_or(0.0, |b| b[c]);
            v = match cx.act {
                Act::None => v,
                Act::Gelu => crate::math::gelu(v),
                Act::Relu => v.max(0.0),
            };
            *o = match cx.residual {
                Some(r) => v + r[t * cols + c],
                None => v,
            };
        }
    }
}
