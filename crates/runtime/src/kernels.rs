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
            if cpu_has_avx2_fma() {
                return Some(Kernel(Path::Avx2));
            }
        }
        None
    }

    /// Portable code that, like [`Kernel::avx512_vnni16`], quantizes each token's inputs of
    /// an int8/int4 Linear to int16 (one max-abs scale per token) and sums exactly in int32.
    pub const fn portable_int16() -> Kernel {
        Kernel(Path::PortableInt16)
    }

    /// AVX-512 VNNI (`vpdpwssd`) for int8/int4 weights with int16 activations, AVX2+FMA for
    /// everything else, if this CPU and OS support AVX-512 F/BW/VL/VNNI, AVX2 and FMA. Not exact
    /// f32 arithmetic: the activation rounding moves outputs by about 1e-5 (see BENCHMARKS.md);
    /// it agrees with [`Kernel::portable_int16`] within 1e-5.
    pub fn avx512_vnni16() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        {
            if cpu_has_avx2_fma() && cpu_has_avx512_vnni() {
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
            if cpu_has_avx2_fma() && cpu_has_avx512() {
                return Some(Kernel(Path::Avx512));
            }
        }
        None
    }

    /// The fastest exact-f32 path available here (AVX-512 for int8/int4 weights with AVX2+FMA
    /// for the rest, else AVX2+FMA, else portable).
    pub fn best() -> Kernel {
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

    /// Whether int8/int4 Linears take int16 activations.
    pub(crate) fn int16(&self) -> bool {
        match self.0 {
            Path::PortableInt16 => true,
            #[cfg(target_arch = "x86_64")]
            Path::Vnni16 => true,
            _ => false,
        }
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

/// AVX-512 F, BW and VL in `cpuid` and the opmask/ZMM state enabled by the OS.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
fn cpu_has_avx512() -> bool {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let l1 = unsafe { __cpuid(1) };
    if l1.ecx & (1 << 27) == 0 {
        return false;
    }
    // SAFETY: OSXSAVE is set.
    let xcr0 = unsafe { xgetbv0() };
    if xcr0 & 0xe6 != 0xe6 {
        return false;
    }
    let l7 = unsafe { __cpuid_count(7, 0) };
    l7.ebx & (1 << 16) != 0 && l7.ebx & (1 << 30) != 0 && l7.ebx & (1 << 31) != 0
}

/// AVX-512 F, BW, VL and VNNI in `cpuid` and the opmask/ZMM state enabled by the OS.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
fn cpu_has_avx512_vnni() -> bool {
    // SAFETY: cpuid leaf 7 exists wherever AVX-512 was detected.
    cpu_has_avx512() && unsafe { core::arch::x86_64::__cpuid_count(7, 0) }.ecx & (1 << 11) != 0
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
    if kern.int16() && !matches!(w.data, TensorData::F32(_)) {
        let kp = w.rows + w.rows % 2;
        if n * kp <= XQ_MAX {
            let mut buf = [core::mem::MaybeUninit::<i16>::uninit(); XQ_MAX];
            let mut sx = [0.0f32; MAX_TOKENS];
            if n <= MAX_TOKENS {
                let xq = quantize_tokens(x, w, kp, &mut buf, &mut sx);
                #[allow(unused_mut)]
                let mut done = 0;
                #[cfg(target_arch = "x86_64")]
                if kern.0 == Path::Vnni16 {
                    // SAFETY: the Vnni16 path exists only where AVX-512 F/BW/VNNI were
                    // detected; xq has n·kp values, sx n, the asserts above bound the rest.
                    done =
                        unsafe { crate::vnni::linear(xq, kp, &sx, n, w, bias, act, residual, y) };
                }
                linear_int16_portable(xq, kp, &sx, n, w, bias, act, residual, y, done, cols);
                return;
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if kern.0 == Path::Avx512 {
        // SAFETY: the Avx512 path exists only where AVX-512 F/BW/VL were detected; the asserts
        // above bound every index.
        let done = unsafe { crate::avx512::linear(x, w, bias, act, residual, y) };
        if done == cols {
            return;
        }
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

/// Largest `tokens × rows` whose int16 activations fit the stack buffer of [`linear`]; larger
/// Linears take the f32 path.
pub const XQ_MAX: usize = 8192;
/// Largest token count of the int16 path.
pub const MAX_TOKENS: usize = 64;

/// Quantizes each token's inputs to int16 with one scale `max|x| / qmax` (`qmax` ≤ 32767,
/// lowered for long rows so the int32 sums cannot overflow), rows padded to even with 0.
/// Rounding: to nearest (ties to even) by the `1.5·2^23` addition, in lanes (vectorises).
fn quantize_tokens<'b>(
    x: Input,
    w: &Weights,
    kp: usize,
    buf: &'b mut [core::mem::MaybeUninit<i16>; XQ_MAX],
    sx: &mut [f32; MAX_TOKENS],
) -> &'b [i16] {
    const MAGIC: f32 = 12_582_912.0;
    let wmax: usize = if matches!(w.data, TensorData::I4 { .. }) {
        8
    } else {
        127
    };
    let qmax = (32767usize).min(i32::MAX as usize / (wmax * kp.max(1))) as f32;
    let rows = w.rows;
    let q16 = |v: f32, inv: f32| -> i16 {
        let r = (v * inv).clamp(-qmax, qmax) + MAGIC;
        (r.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) as i16
    };
    for t in 0..x.tokens {
        let dst = &mut buf[t * kp..(t + 1) * kp];
        let s;
        if x.ks == 1 {
            let row = &x.x[t * x.ts..t * x.ts + rows];
            let mut m8 = [0.0f32; 8];
            let mut it = row.chunks_exact(8);
            for c in &mut it {
                let c: &[f32; 8] = c.try_into().expect("chunk of 8");
                for l in 0..8 {
                    m8[l] = m8[l].max(c[l].abs());
                }
            }
            let mut mx = m8.iter().fold(0.0f32, |a, &b| a.max(b));
            for v in it.remainder() {
                mx = mx.max(v.abs());
            }
            s = if mx > 0.0 { mx / qmax } else { 1.0 };
            let inv = 1.0 / s;
            for (q, &v) in dst.iter_mut().zip(row) {
                q.write(q16(v, inv));
            }
        } else {
            let mut mx = 0.0f32;
            for k in 0..rows {
                mx = mx.max(x.at(t, k).abs());
            }
            s = if mx > 0.0 { mx / qmax } else { 1.0 };
            let inv = 1.0 / s;
            for (k, q) in dst.iter_mut().enumerate().take(rows) {
                q.write(q16(x.at(t, k), inv));
            }
        }
        sx[t] = s;
        if kp > rows {
            dst[rows].write(0);
        }
    }
    // SAFETY: the first tokens·kp elements were all written above.
    unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const i16, x.tokens * kp) }
}

/// The int16-activation Linear over columns `c0..c1`: exact int32 sums, then the epilogue.
#[allow(clippy::too_many_arguments)]
fn linear_int16_portable(
    xq: &[i16],
    kp: usize,
    sx: &[f32],
    tokens: usize,
    w: &Weights,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
    c0: usize,
    c1: usize,
) {
    let cols = w.cols;
    for t in 0..tokens {
        for c in c0..c1 {
            let mut acc = 0i32;
            for k in 0..w.rows {
                let q = match w.data {
                    TensorData::I8 { q, .. } => q[k * cols + c] as i32,
                    TensorData::I4 { packed, .. } => {
                        crate::format::nibble(packed, k * cols + c) as i32
                    }
                    TensorData::F32(_) => unreachable!("int16 path takes quantized weights"),
                };
                acc = acc.wrapping_add(xq[t * kp + k] as i32 * q);
            }
            let mut v = acc as f32 * (sx[t] * w.scale(c)) + bias.map_or(0.0, |b| b[c]);
            v = match act {
                Act::None => v,
                Act::Gelu => crate::math::gelu(v),
                Act::Relu => v.max(0.0),
            };
            y[t * cols + c] = match residual {
                Some(r) => v + r[t * cols + c],
                None => v,
            };
        }
    }
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
