//! The Linear's dispatcher and the public kernel API: [`Kernel`] (which paths this CPU has,
//! from `csipose-cpu`), the token-major Linear over f32, int8 or int4 weights stored
//! `[in, out]` with a fused epilogue (per-column scale, bias, GELU/ReLU, residual:
//! [`linear`], exact f32), the int16 fixed-point Linear over repacked weights
//! ([`linear_int16`], [`quantize_rows`], [`quantize_standardised`]; see [`crate::int16`]),
//! and LayerNorm.
//!
//! f32 weights repacked into the AVX-512 kernel's panel layout ([`Panels`], [`pack_panels`],
//! [`linear_panels`]; what [`crate::Runtime::new`] does on the AVX-512 paths) give the same
//! values as [`linear`] on the row-major weights, bit for bit.
//!
//! Per matrix the dispatcher picks a micro-kernel for the generic tiling loop
//! (`tile.rs`): AVX-512 for every column, except f32 weights whose column count is 8
//! mod 16 (the AVX2 kernel covers them without a masked tail, measured faster); AVX2+FMA for
//! the columns up to a multiple of 8 with the portable micro-kernel (`Portable`, here)
//! finishing the rest; the portable one alone elsewhere. int16 Linears run the VNNI
//! micro-kernel or the portable int16 reference.

use crate::format::{TensorData, TensorView};
use crate::int16::{Packed, QInput};
use crate::tile::MicroKernel;

/// Which kernels a forward pass uses. Only constructible for a path this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel(Path);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Portable,
    /// Portable, int16 activations for quantized weights (the reference of `Vnni16`).
    PortableInt16,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F/BW/VL f32 kernel (exact f32, like Avx2), AVX2+FMA elsewhere.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX-512 VNNI with int16 activations for int8/int4 weights; AVX2+FMA for the rest.
    #[cfg(target_arch = "x86_64")]
    Vnni16,
}

impl Kernel {
    /// Plain Rust, any target.
    pub const fn portable() -> Kernel {
        Kernel(Path::Portable)
    }

    /// AVX2 + FMA, if this CPU and OS support them.
    pub fn avx2() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if csipose_cpu::avx2_fma() {
                return Some(Kernel(Path::Avx2));
            }
        }
        None
    }

    /// Portable int16 fixed-point reference of [`Kernel::avx512_vnni16`] ([`crate::int16`]):
    /// every model Linear on repacked int16 weights (int8/int4 codes widened, f32 weights
    /// quantized per column) and int16 activations (one max-abs scale per token), exact int32
    /// sums. The attention products stay f32.
    pub const fn portable_int16() -> Kernel {
        Kernel(Path::PortableInt16)
    }

    /// int16 fixed point on AVX-512 VNNI (`vpdpwssd`) for every model Linear (see
    /// [`Kernel::portable_int16`], which it matches within 1e-5), f32 AVX-512/AVX2+FMA for the
    /// attention products, if this CPU and OS support AVX-512 F/BW/VL/VNNI, AVX2 and FMA. Not
    /// exact f32 arithmetic: see BENCHMARKS.md for its agreement with the training engine.
    /// [`crate::Runtime::new`] then needs [`crate::Runtime::consts_len_for`] floats of
    /// constants (an int16 working copy of the weights).
    pub fn avx512_vnni16() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if csipose_cpu::avx2_fma() && csipose_cpu::avx512_vnni() {
                return Some(Kernel(Path::Vnni16));
            }
        }
        None
    }

    /// AVX-512 F/BW/VL Linear kernel (exact f32 arithmetic, 16 lanes, 32 registers), if this
    /// CPU and OS support it together with AVX2+FMA.
    pub fn avx512() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if csipose_cpu::avx2_fma() && csipose_cpu::avx512() {
                return Some(Kernel(Path::Avx512));
            }
        }
        None
    }

    /// The fastest path available here: [`Kernel::avx512_vnni16`] (int16 fixed point for
    /// int8/int4 Linears, max |Δ| vs the training engine ≈ 1e-5, see BENCHMARKS.md; exact f32
    /// for fp32 files) where AVX-512 VNNI is present, else [`Kernel::best_exact`].
    pub fn best() -> Kernel {
        Kernel::avx512_vnni16().unwrap_or_else(Kernel::best_exact)
    }

    /// The fastest exact-f32 path available here (AVX-512 for int8/int4 weights with AVX2+FMA
    /// for the rest, else AVX2+FMA, else portable).
    pub fn best_exact() -> Kernel {
        Kernel::avx512()
            .or_else(Kernel::avx2)
            .unwrap_or(Kernel::portable())
    }

    /// Name of the path ("portable", "avx2+fma").
    pub fn name(&self) -> &'static str {
        match self.0 {
            Path::Portable => "portable",
            Path::PortableInt16 => "portable-int16",
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Path::Vnni16 => "avx512-vnni-int16",
        }
    }

    /// Whether this path uses AVX2+FMA (alone or beside AVX-512 VNNI).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn is_avx2(&self) -> bool {
        matches!(self.0, Path::Avx2 | Path::Avx512 | Path::Vnni16)
    }

    /// The same path without int16 Linears (for a model with nothing to repack): the int16
    /// paths become their exact-f32 counterparts (FMA summation again).
    pub(crate) fn without_int16(self) -> Kernel {
        match self.0 {
            Path::PortableInt16 => Kernel(Path::Portable),
            #[cfg(target_arch = "x86_64")]
            Path::Vnni16 => Kernel(Path::Avx512),
            p => Kernel(p),
        }
    }

    /// Whether this is the AVX-512 VNNI int16 path.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn is_vnni16(&self) -> bool {
        self.0 == Path::Vnni16
    }

    /// Whether this path uses AVX-512 (F/BW/VL at least).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn is_avx512(&self) -> bool {
        matches!(self.0, Path::Avx512 | Path::Vnni16)
    }

    /// Whether [`crate::Runtime::new`] repacks f32 Linears into [`Panels`] for this path (the
    /// AVX-512 paths).
    pub(crate) fn f32_panels(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.is_avx512();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The path with the largest constants buffer ([`crate::Runtime::consts_len`]): int16
    /// pairs and f32 panels.
    pub(crate) fn largest_consts() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        return Kernel(Path::Vnni16);
        #[cfg(not(target_arch = "x86_64"))]
        Kernel(Path::PortableInt16)
    }

    /// Runs `f` compiled for this path's vector instruction set: on the AVX-512 paths with
    /// AVX-512 F/BW/VL and AVX2+FMA enabled, on the AVX2 path with AVX2+FMA, so the forward's
    /// elementwise loops and reductions (written lane-wise, without reassociation) vectorise
    /// 16 or 8 wide; Rust contracts no multiply-add into an FMA, so they compute the portable
    /// path's values.
    #[inline(always)]
    pub(crate) fn vectorised<R>(self, f: impl FnOnce() -> R) -> R {
        #[cfg(target_arch = "x86_64")]
        if self.is_avx512() {
            // SAFETY: `is_avx512` holds only on the Avx512 and Vnni16 paths, which
            // `Kernel::avx512` / `Kernel::avx512_vnni16` build only where AVX-512 F/BW/VL and
            // AVX2+FMA were detected.
            return unsafe { with_avx512(f) };
        }
        #[cfg(target_arch = "x86_64")]
        if self.is_avx2() {
            // SAFETY: every path for which is_avx2 holds exists only where AVX2+FMA were
            // detected.
            return unsafe { with_avx2_fma(f) };
        }
        f()
    }

    /// Whether the model's Linears run in int16 fixed point on repacked weights.
    pub fn int16(&self) -> bool {
        match self.0 {
            Path::PortableInt16 => true,
            #[cfg(target_arch = "x86_64")]
            Path::Vnni16 => true,
            _ => false,
        }
    }
}

/// `f()` compiled with AVX2+FMA (what [`Kernel::vectorised`] inlines it into).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f()` compiled with AVX-512 F/BW/VL and AVX2+FMA (what [`Kernel::vectorised`] inlines it
/// into on the AVX-512 paths).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// A Linear weight matrix `[rows = in, cols = out]`, row-major, f32 or quantized.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    pub rows: usize,
    pub cols: usize,
    pub data: TensorData<'a>,
}

impl<'a> Weights<'a> {
    pub(crate) fn from_view(v: TensorView<'a>) -> Self {
        Weights {
            rows: v.slot.rows,
            cols: v.slot.cols,
            data: v.data,
        }
    }

    /// Scale of column `c` (1 for f32).
    #[inline]
    pub(crate) fn scale(&self, c: usize) -> f32 {
        match self.data {
            TensorData::F32(_) => 1.0,
            TensorData::I8 { scales, .. } | TensorData::I4 { scales, .. } => {
                if scales.len() == 1 {
                    scales[0]
                } else {
                    scales[c]
                }
            }
        }
    }

    /// Stored value (code for quantized weights, without the scale) at row `k`, column `c`.
    #[inline]
    pub(crate) fn code(&self, k: usize, c: usize) -> f32 {
        let i = k * self.cols + c;
        match self.data {
            TensorData::F32(w) => w[i],
            TensorData::I8 { q, .. } => q[i] as f32,
            TensorData::I4 { packed, .. } => crate::format::nibble(packed, i) as f32,
        }
    }

    /// Dequantised value at row `k`, column `c`.
    #[inline]
    pub fn get(&self, k: usize, c: usize) -> f32 {
        self.code(k, c) * self.scale(c)
    }
}

/// Activation applied after scale and bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    Gelu,
    Relu,
}

/// The input of a Linear: token `t`, feature `k` is at `x[t * ts + k * ks]`.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub x: &'a [f32],
    pub tokens: usize,
    pub ts: usize,
    pub ks: usize,
}

impl<'a> Input<'a> {
    /// `tokens` rows of `width` values, row-major.
    pub fn rows(x: &'a [f32], tokens: usize, width: usize) -> Input<'a> {
        Input {
            x,
            tokens,
            ts: width,
            ks: 1,
        }
    }

    #[inline]
    fn at(&self, t: usize, k: usize) -> f32 {
        self.x[t * self.ts + k * self.ks]
    }
    /// Whether every index the Linear reads is inside `x`.
    pub(crate) fn fits(&self, inp: usize) -> bool {
        self.tokens == 0
            || inp == 0
            || (self.tokens - 1) * self.ts + (inp - 1) * self.ks < self.x.len()
    }
}

/// `y[t, c] = act(scale_c · Σ_k x[t, k] · q[k, c] + bias[c]) (+ residual[t, c])` for every token
/// `t` and column `c` (y and residual row-major `[tokens, cols]`; no bias is 0).
pub fn linear(
    kern: Kernel,
    x: Input,
    w: &Weights,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (n, cols) = (x.tokens, w.cols);
    assert!(x.fits(w.rows), "linear: input too short");
    assert!(y.len() >= n * cols, "linear: output too short");
    if let Some(b) = bias {
        assert!(b.len() >= cols, "linear: bias too short");
    }
    if let Some(r) = residual {
        assert!(r.len() >= n * cols, "linear: residual too short");
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Per matrix: AVX-512 for all columns, except f32 weights with 8 mod 16 columns,
        // which the AVX2 kernel covers without a masked tail and measured faster.
        let f32_8mod16 = matches!(w.data, TensorData::F32(_)) && !avx512_f32_cols(cols);
        if kern.is_avx512() && !f32_8mod16 {
            // SAFETY: the Avx512 and Vnni16 paths exist only where AVX-512 F/BW/VL and
            // AVX2+FMA were detected; the asserts above bound every index.
            unsafe { crate::avx512::linear(x, w, bias, act, residual, y) };
            return;
        }
        if kern.is_avx2() {
            // The int16 path sums its f32 products (attention) as the portable kernel does,
            // so that it equals its reference `portable_int16` bit for bit.
            let no_fma = kern.0 == Path::Vnni16;
            // SAFETY: a Kernel with an AVX2 path exists only where the CPU supports
            // AVX2+FMA; the asserts above bound every index the kernel uses.
            let done = unsafe { crate::avx2::linear(no_fma, x, w, bias, act, residual, y) };
            linear_portable(x, w, bias, act, residual, y, done, cols);
            return;
        }
    }
    let _ = kern;
    linear_portable(x, w, bias, act, residual, y, 0, cols);
}

/// Whether the exact AVX-512 kernel runs f32 weights of `cols` columns: all but 8 mod 16,
/// which the AVX2 kernel covers without a masked tail (measured faster).
#[inline]
pub(crate) fn avx512_f32_cols(cols: usize) -> bool {
    cols % 16 != 8
}

/// f32 Linear weights repacked once (by [`crate::Runtime::new`], into caller memory) in the
/// AVX-512 f32 micro-kernel's panel layout: the columns padded with zeros to `cp` (a multiple
/// of 16) and cut into panels of 16, each panel `[rows][16]` contiguous, the panels one after
/// another (`w[(c / 16) · rows · 16 + k · 16 + c % 16]`). A tile of `v` vectors then reads `v`
/// sequential streams of aligned 64-byte rows, without masks; the sums are the unpacked
/// kernel's, bit for bit (same products in the same order, the padding masked at the store).
#[derive(Clone, Copy, Debug)]
pub struct Panels<'p> {
    pub rows: usize,
    pub cols: usize,
    /// `[cp / 16][rows][16]`, [`panels_len`] floats.
    pub w: &'p [f32],
}

/// Floats the [`Panels`] of a `rows × cols` Linear take (a multiple of 16).
pub fn panels_len(rows: usize, cols: usize) -> usize {
    rows * crate::int16::padded_cols(cols)
}

/// Repacks f32 weights into [`Panels`] in `out` (at least [`panels_len`] floats; 64-byte
/// aligned is best, not required). `None` for quantized weights (those stay unpacked).
pub fn pack_panels<'p>(w: &Weights, out: &'p mut [f32]) -> Option<Panels<'p>> {
    let TensorData::F32(v) = w.data else {
        return None;
    };
    let (rows, cols) = (w.rows, w.cols);
    let out = &mut out[..panels_len(rows, cols)];
    for (pi, panel) in out.chunks_exact_mut(rows * 16).enumerate() {
        for (k, row) in panel.chunks_exact_mut(16).enumerate() {
            for (l, o) in row.iter_mut().enumerate() {
                let c = pi * 16 + l;
                *o = if c < cols { v[k * cols + c] } else { 0.0 };
            }
        }
    }
    Some(Panels { rows, cols, w: out })
}

/// [`linear`] over f32 weights `w` and their [`Panels`] `p`: the AVX-512 panel kernel where
/// this path runs AVX-512 for `w` (the same values as [`linear`], bit for bit), else
/// [`linear`] itself.
#[allow(clippy::too_many_arguments)]
pub fn linear_panels(
    kern: Kernel,
    x: Input,
    w: &Weights,
    p: &Panels,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if kern.is_avx512() && avx512_f32_cols(w.cols) {
        let (n, cols) = (x.tokens, p.cols);
        assert!(
            p.rows == w.rows && p.cols == w.cols && p.w.len() >= panels_len(p.rows, cols),
            "linear_panels: panels do not match the weights"
        );
        assert!(x.fits(p.rows), "linear_panels: input too short");
        assert!(y.len() >= n * cols, "linear_panels: output too short");
        if let Some(b) = bias {
            assert!(b.len() >= cols, "linear_panels: bias too short");
        }
        if let Some(r) = residual {
            assert!(r.len() >= n * cols, "linear_panels: residual too short");
        }
        // SAFETY: the Avx512 and Vnni16 paths exist only where AVX-512 F/BW/VL and AVX2+FMA
        // were detected; the asserts above bound every index (panels padded to 16 columns).
        unsafe { crate::avx512::linear_panels(x, p, bias, act, residual, y) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
    linear(kern, x, w, bias, act, residual, y);
}

/// A model Linear's weights as [`crate::Runtime::new`] repacked them for its kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Repacked<'p> {
    /// int16 pairs for the int16 kernels (int8/int4 weights).
    Int16(Packed<'p>),
    /// f32 panels for the AVX-512 f32 kernel (f32 weights).
    Panels(Panels<'p>),
}

/// The int16 Linear ([`crate::int16`]) over pre-quantized activations and repacked weights:
/// AVX-512 VNNI on the `avx512_vnni16` path, the portable reference otherwise.
pub fn linear_int16(
    kern: Kernel,
    x: &QInput,
    w: &Packed,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (n, cols, np) = (x.tokens, w.cols, w.pairs());
    assert!(
        n == 0 || np == 0 || (n - 1) * x.ts + (np - 1) * x.js < x.q.len(),
        "linear_int16: input too short"
    );
    assert!(x.sx.len() >= n, "linear_int16: token scales too short");
    assert!(y.len() >= n * cols, "linear_int16: output too short");
    assert!(
        w.w.len() >= np * w.cp && w.scales.len() >= w.cp && w.cp.is_multiple_of(16) && w.cp >= cols,
        "linear_int16: bad packed weights"
    );
    if let Some(b) = bias {
        assert!(b.len() >= cols, "linear_int16: bias too short");
    }
    if let Some(r) = residual {
        assert!(r.len() >= n * cols, "linear_int16: residual too short");
    }
    #[cfg(target_arch = "x86_64")]
    if kern.0 == Path::Vnni16 {
        assert!(
            (w.w.as_ptr() as usize).is_multiple_of(64),
            "linear_int16: packed weights not 64-byte aligned"
        );
        // SAFETY: the Vnni16 path exists only where AVX-512 F/BW/VL/VNNI were detected; the
        // asserts above bound every index and the alignment.
        unsafe { crate::vnni::linear(x, w, bias, act, residual, y) };
        return;
    }
    let _ = kern;
    crate::int16::linear_portable(x, w, bias, act, residual, y);
}

/// Quantizes `tokens` rows of `k` values (row `t` at `x[t·xs..]`) to int16 token-major into
/// `q` (at least `tokens·⌈k/2⌉` floats) and `sx` (`tokens`), at most `qx` in magnitude.
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows<'q>(
    kern: Kernel,
    x: &[f32],
    tokens: usize,
    k: usize,
    xs: usize,
    qx: f32,
    q: &'q mut [f32],
    sx: &'q mut [f32],
) -> QInput<'q> {
    let np = k.div_ceil(2);
    assert!(
        tokens == 0 || k == 0 || (tokens - 1) * xs + k <= x.len(),
        "quantize_rows: input too short"
    );
    assert!(
        q.len() >= tokens * np && sx.len() >= tokens,
        "quantize_rows: buffers too short"
    );
    #[cfg(target_arch = "x86_64")]
    if kern.0 == Path::Vnni16 {
        // SAFETY: the Vnni16 path exists only where `Kernel::avx512_vnni16` detected AVX-512
        // F/BW/VL/VNNI; the asserts above bound every row read and every word written.
        unsafe { crate::vnni::quantize_rows(x, tokens, k, xs, qx, q, sx) };
    } else {
        crate::int16::quantize_rows_portable(x, tokens, k, xs, qx, q, sx);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kern;
        crate::int16::quantize_rows_portable(x, tokens, k, xs, qx, q, sx);
    }
    QInput {
        q: &q[..tokens * np],
        sx: &sx[..tokens],
        tokens,
        ts: np,
        js: 1,
    }
}

/// Standardises the feature-major frame `x [k, p]` as `(x − mean)·inv` and quantizes it to
/// int16 pair-major (the embedding's input) into `q` (at least `⌈k/2⌉·p`) and `sx` (`p`).
#[allow(clippy::too_many_arguments)]
pub fn quantize_standardised<'q>(
    kern: Kernel,
    x: &[f32],
    k: usize,
    p: usize,
    (mean, inv): (f32, f32),
    qx: f32,
    q: &'q mut [f32],
    sx: &'q mut [f32],
) -> QInput<'q> {
    let np = k.div_ceil(2);
    assert!(x.len() >= k * p, "quantize_standardised: input too short");
    assert!(
        q.len() >= np * p && sx.len() >= p,
        "quantize_standardised: buffers too short"
    );
    #[cfg(target_arch = "x86_64")]
    if kern.0 == Path::Vnni16 {
        // SAFETY: the Vnni16 path exists only where `Kernel::avx512_vnni16` detected AVX-512
        // F/BW/VL/VNNI; the asserts above bound the frame, the words and the scales.
        unsafe { crate::vnni::quantize_standardised(x, k, p, mean, inv, qx, q, sx) };
    } else {
        crate::int16::quantize_standardised_portable(x, k, p, mean, inv, qx, q, sx);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kern;
        crate::int16::quantize_standardised_portable(x, k, p, mean, inv, qx, q, sx);
    }
    QInput {
        q: &q[..np * p],
        sx: &sx[..p],
        tokens: p,
        ts: 1,
        js: p,
    }
}

/// Portable Linear over columns `c0..c1` ([`Portable`] under the generic tiling loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_portable(
    x: Input,
    w: &Weights,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
    c0: usize,
    c1: usize,
) {
    if c0 >= c1 {
        return;
    }
    assert!(y.len() >= x.tokens * w.cols && c1 <= w.cols);
    let ctx = PortableCtx {
        x,
        w,
        bias,
        act,
        residual,
        y: y.as_mut_ptr(),
    };
    // SAFETY: plain Rust; `y` holds `tokens · cols` values (asserted), which covers every
    // tile of columns `c0..c1`.
    unsafe { crate::tile::run::<Portable>(&ctx, x.tokens, c0, c1) };
}

/// What a [`Portable`] tile reads and writes (`y` is `[tokens, cols]`, row-major).
pub(crate) struct PortableCtx<'a> {
    x: Input<'a>,
    w: &'a Weights<'a>,
    bias: Option<&'a [f32]>,
    act: Act,
    residual: Option<&'a [f32]>,
    y: *mut f32,
}

/// The portable f32 micro-kernel: one token × every column of the range (the tiling loop
/// hands it whole rows): per output the same k-ascending summation as the SIMD kernels, each
/// token's outputs accumulating in `y` row by row of the weights, so the inner loop is
/// contiguous and vectorises.
pub(crate) struct Portable<'a>(core::marker::PhantomData<&'a ()>);

impl<'a> MicroKernel for Portable<'a> {
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
        let (x, w, cols) = (&cx.x, cx.w, cx.w.cols);
        let c1 = c0 + n;
        // SAFETY: the tile's contract: token t, columns c0..c1 lie inside `y [tokens, cols]`.
        let yr = unsafe { core::slice::from_raw_parts_mut(cx.y.add(t * cols + c0), n) };
        yr.fill(0.0);
        for k in 0..w.rows {
            let xv = x.at(t, k);
            let base = k * cols;
            match w.data {
                TensorData::F32(v) => {
                    for (o, &q) in yr.iter_mut().zip(&v[base + c0..base + c1]) {
                        *o += xv * q;
                    }
                }
                TensorData::I8 { q, .. } => {
                    for (o, &q) in yr.iter_mut().zip(&q[base + c0..base + c1]) {
                        *o += xv * q as f32;
                    }
                }
                TensorData::I4 { packed, .. } => {
                    // Byte by byte: low nibble, then high (a row may start on a high one).
                    let lo = |b: u8| (((b & 0x0f) ^ 8) as i32 - 8) as f32;
                    let hi = |b: u8| (((b >> 4) ^ 8) as i32 - 8) as f32;
                    let (mut e, mut i, n) = (base + c0, 0, yr.len());
                    if e % 2 == 1 {
                        yr[0] += xv * hi(packed[e / 2]);
                        e += 1;
                        i = 1;
                    }
                    while i + 2 <= n {
                        let b = packed[e / 2];
                        yr[i] += xv * lo(b);
                        yr[i + 1] += xv * hi(b);
                        i += 2;
                        e += 2;
                    }
                    if i < n {
                        yr[i] += xv * lo(packed[e / 2]);
                    }
                }
            }
        }
        for (i, o) in yr.iter_mut().enumerate() {
            let c = c0 + i;
            let v = epilogue(*o, w.scale(c), cx.bias.map_or(0.0, |b| b[c]), cx.act);
            *o = match cx.residual {
                Some(r) => v + r[t * cols + c],
                None => v,
            };
        }
    }
}

#[inline]
fn epilogue(acc: f32, scale: f32, bias: f32, act: Act) -> f32 {
    let v = acc * scale + bias;
    match act {
        Act::None => v,
        Act::Gelu => crate::math::gelu(v),
        Act::Relu => v.max(0.0),
    }
}

/// LayerNorm of each row of `x [rows, d]` into `y` (the engine's formula; sums in 16 lanes,
/// all rows' statistics first so the rows' reductions overlap).
#[inline(always)]
pub fn layernorm(x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], rows: usize, d: usize) {
    const MAXR: usize = 32;
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(MAXR);
        let mut mu = [0.0f32; MAXR];
        let mut rs = [0.0f32; MAXR];
        for r in 0..n {
            let xr = &x[(start + r) * d..(start + r + 1) * d];
            mu[r] = sum16(xr, |v| v) / d as f32;
        }
        for r in 0..n {
            let xr = &x[(start + r) * d..(start + r + 1) * d];
            let m = mu[r];
            let var = sum16(xr, |v| (v - m) * (v - m)) / d as f32;
            rs[r] = 1.0 / crate::math::sqrt(var + crate::math::LN_EPS);
        }
        for r in 0..n {
            let xr = &x[(start + r) * d..(start + r + 1) * d];
            let yr = &mut y[(start + r) * d..(start + r + 1) * d];
            let (m, s) = (mu[r], rs[r]);
            for i in 0..d {
                yr[i] = (xr[i] - m) * s * gamma[i] + beta[i];
            }
        }
        start += n;
    }
}

/// Σ f(x) in 16 lanes (two independent 8-lane accumulators), then the tail.
#[inline(always)]
fn sum16(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut it = xs.chunks_exact(16);
    for c in &mut it {
        let c: &[f32; 16] = c.try_into().expect("chunk of 16");
        for l in 0..16 {
            acc[l] += f(c[l]);
        }
    }
    let mut s = 0.0f32;
    for l in 0..8 {
        s += acc[l] + acc[l + 8];
    }
    for &v in it.remainder() {
        s += f(v);
    }
    s
}
