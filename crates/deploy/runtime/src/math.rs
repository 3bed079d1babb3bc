//! Scalar math without `std`: square root, `exp`, `tanh` and the per-sample standardisation
//! statistics, each matching what the training engine (`csipose-model`) computes with `std`
//! (to an ulp or two for `exp`, to 2.4e-7 for `tanh`). GELU, its rational tanh and the
//! epsilons are `csipose_spec::act`'s, the one definition engine and runtime both evaluate
//! (so GELU agrees bit for bit), re-exported here.

pub use csipose_spec::act::{
    fast_tanh, gelu, GELU_A, GELU_C, LN_EPS, STANDARDISE_EPS, TANH_CLAMP, TANH_P, TANH_Q,
};

/// Correctly rounded square root of an `f64` (IEEE `sqrtsd`; SSE2 is part of the x86-64
/// baseline, elsewhere Newton steps from a bit-level estimate, within an ulp).
#[inline]
pub fn sqrt_f64(x: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86-64.
        unsafe { _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(x))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        sqrt_f64_newton(x)
    }
}

/// Square root by Newton steps from a bit-level estimate (the non-x86 path of [`sqrt_f64`];
/// tested against `std` on every target).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) fn sqrt_f64_newton(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 || x == f64::INFINITY {
        return x;
    }
    let mut y = f64::from_bits((x.to_bits() >> 1) + (1023u64 << 51));
    for _ in 0..8 {
        y = 0.5 * (y + x / y);
    }
    y
}

/// Square root of an `f32` (computed in `f64`, then rounded: correctly rounded).
#[inline]
pub fn sqrt(x: f32) -> f32 {
    sqrt_f64(x as f64) as f32
}

/// `e^x` in `f32`: Cody-Waite reduction by `ln 2` and the Cephes `expf` polynomial (within
/// two ulp of libm on the clamped range; below -87.3 it returns ~1e-38 instead of 0). The AVX2
/// kernels evaluate the same steps on 8 lanes.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    // n = round(x·log2 e) without a float-to-int cast (vectorises): adding 1.5·2^23 leaves
    // the rounded integer in the low mantissa bits.
    let big = x * core::f32::consts::LOG2_E + ROUND_MAGIC;
    let nf = big - ROUND_MAGIC;
    let n = (big.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = x - nf * EXP_C1 - nf * EXP_C2;
    let r2 = r * r;
    let mut p = EXP_P[0];
    for c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = p * r2 + r + 1.0;
    y * f32::from_bits(((n + 127) as u32) << 23)
}

/// 1.5·2^23: adding it rounds an f32 of magnitude below 2^22 to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Clamp range of [`exp`] (results stay normal).
pub const EXP_LO: f32 = -87.336_54;
pub const EXP_HI: f32 = 88.376_26;
/// `ln 2` split for the reduction.
pub const EXP_C1: f32 = 0.693_359_4;
pub const EXP_C2: f32 = -2.121_944_4e-4;
/// Cephes `expf` polynomial, highest degree first.
pub const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `tanh` for `f32` as `1 - 2 / (e^{2x} + 1)`, `x` clamped to ±10 where tanh is 1 in `f32`
/// (absolute error within two ulp of 1, 2.4e-7; branch-free, so loops of it vectorise).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-10.0, 10.0);
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Logistic sigmoid, as the engine computes it: `1 / (1 + e^-x)` in `f32`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Sum of `f(v)` over `xs` in 32 f32 lanes (four independent 8-lane accumulators, so the
/// sum is not one long dependency chain), lanes and tail added in f64.
#[inline(always)]
fn sum_lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0.0f32; 32];
    let mut it = xs.chunks_exact(32);
    for c in &mut it {
        let c: &[f32; 32] = c.try_into().expect("chunk of 32");
        for l in 0..32 {
            acc[l] += f(c[l]);
        }
    }
    lanes_total(&acc, it.remainder(), f)
}

/// The end of [`sum_lanes`]: the 32 lane sums and the tail (`f` applied) added in f64 (shared
/// with the AVX-512 version in `vnni.rs`, which must give the same value).
#[inline(always)]
pub(crate) fn lanes_total(acc: &[f32; 32], rem: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let tail: f64 = rem.iter().map(|&v| f(v) as f64).sum();
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail
}

/// Mean and `1 / (std + eps)` of one sample (population std): the engine's definition (it
/// sums in a different order, so the values agree to float rounding, not bit for bit).
#[inline(always)]
pub fn standardise_stats(xs: &[f32]) -> (f32, f32) {
    let n = xs.len() as f64;
    let mean = (sum_lanes(xs, |v| v) / n) as f32;
    let var = sum_lanes(xs, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (sqrt_f64(var) as f32 + STANDARDISE_EPS))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn exp_tanh_sqrt_match_std() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let e = exp(x);
            let r = std::primitive::f32::exp(x);
            assert!(
                (e - r).abs() <= 2.0 * f32::EPSILON * r,
                "exp({x}) {e} vs {r}"
            );
            let t = tanh(x);
            let rt = std::primitive::f32::tanh(x);
            assert!(
                (t - rt).abs() <= 2.0 * f32::EPSILON,
                "tanh({x}) {t} vs {rt}"
            );
            let s = sqrt(x.abs());
            assert_eq!(s, x.abs().sqrt());
            x += 0.0137;
        }
        for v in [1e-300, 1e-10, 0.5, 2.0, 3.0, 1234.5678, 1e300, 0.0] {
            let s = sqrt_f64_newton(v);
            assert!(
                (s - v.sqrt()).abs() <= 2.0 * f64::EPSILON * v.sqrt(),
                "sqrt({v}) {s}"
            );
        }
        assert!(exp(-200.0) < 1e-37);
        assert!(exp(200.0) > 1e38);
    }
}
