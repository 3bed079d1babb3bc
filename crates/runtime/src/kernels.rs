//! The compute kernels and their run-time selection: a token-major Linear over f32, int8 or
//! int4 weights stored `[in, out]` with a fused epilogue (per-column scale, bias, GELU/ReLU,
//! residual), in a portable version and an x86-64 AVX2+FMA version ([`crate::avx2`]).
//!
//! CPU detection works without `std`: `cpuid` for the AVX2/FMA feature bits plus `xgetbv`
//! for the OS having enabled the YMM state (what `is_x86_feature_detected!` checks).

use crate::format::{TensorData, TensorView};

/// Which kernels a forward pass uses. Only constructible for a path this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel(Path);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
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
            if cpu_has_avx2_fma() {
                return Some(Kernel(Path::Avx2));
            }
        }
        None
    }

    /// The fastest path available here.
    pub fn best() -> Kernel {
        Kernel::avx2().unwrap_or(Kernel::portable())
    }

    /// Name of the path ("portable", "avx2+fma").
    pub fn name(&self) -> &'static str {
        match self.0 {
            Path::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => "avx2+fma",
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(crate) fn is_avx2(&self) -> bool {
        self.0 == Path::Avx2
    }
}

/// AVX2 and FMA in `cpuid` and the YMM state enabled by the OS (`xgetbv`).
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // cpuid is a safe intrinsic on newer compilers
fn cpu_has_avx2_fma() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: cpuid exists on every x86-64 CPU.
    let l0 = unsafe { __cpuid(0) };
    if l0.eax < 7 {
        return false;
    }
    let l1 = unsafe { __cpuid(1) };
    let fma = l1.ecx & (1 << 12) != 0;
    let osxsave = l1.ecx & (1 << 27) != 0;
    let avx = l1.ecx & (1 << 28) != 0;
    if !(fma && osxsave && avx) {
        return false;
    }
    // SAFETY: OSXSAVE is set, so xgetbv is available and XCR0 readable.
    let xcr0 = unsafe { xgetbv0() };
    if xcr0 & 0b110 != 0b110 {
        return false; // XMM and YMM state not both enabled by the OS
    }
    let l7 = unsafe { __cpuid_count(7, 0) };
    l7.ebx & (1 << 5) != 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    core::arch::x86_64::_xgetbv(0)
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
    if kern.is_avx2() {
        // SAFETY: a Kernel with the Avx2 path exists only where the CPU supports AVX2+FMA;
        // the asserts above bound every index the kernel uses.
        let done = unsafe { crate::avx2::linear(x, w, bias, act, residual, y) };
        linear_portable(x, w, bias, act, residual, y, done, cols);
        return;
    }
    let _ = kern;
    linear_portable(x, w, bias, act, residual, y, 0, cols);
}

/// Portable Linear over columns `c0..c1` (per output, the same k-ascending summation as the
/// SIMD version): each token's outputs accumulate in `y` row by row of the weights, so the
/// inner loop is contiguous and vectorises.
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
    let cols = w.cols;
    for t in 0..x.tokens {
        let yr = &mut y[t * cols + c0..t * cols + c1];
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
                    for (i, o) in yr.iter_mut().enumerate() {
                        *o += xv * crate::format::nibble(packed, base + c0 + i) as f32;
                    }
                }
            }
        }
        for (i, o) in yr.iter_mut().enumerate() {
            let c = c0 + i;
            let v = epilogue(*o, w.scale(c), bias.map_or(0.0, |b| b[c]), act);
            *o = match residual {
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
