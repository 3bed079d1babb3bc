//! The numeric form of the network's elementwise pieces, the single definition engine and
//! runtime both evaluate (so their outputs agree bit for bit): standardisation and LayerNorm
//! epsilons, the GELU in its tanh form over a 13/6 rational tanh, and the graph head's
//! correction scale.

/// Standardisation epsilon: each sample becomes `(x - mean) / (std + 1e-6)` over all its values.
pub const STANDARDISE_EPS: f32 = 1e-6;
/// LayerNorm epsilon (PyTorch's default): `(x - mean) / sqrt(var + 1e-5)`.
pub const LN_EPS: f32 = 1e-5;
/// Scale of the graph head's correction: `kp = kp0 + 0.3 · tanh(·)`.
pub const GRAPH_SCALE: f32 = 0.3;

/// GELU tanh-approximation constant `sqrt(2/π)`.
pub const GELU_C: f32 = 0.797_884_6;
/// GELU tanh-approximation cubic coefficient.
pub const GELU_A: f32 = 0.044_715;

/// [`fast_tanh`] clamps its argument to ±this (tanh is 1 in f32 beyond it).
pub const TANH_CLAMP: f32 = 7.905_311;
/// Numerator of [`fast_tanh`], in powers of x² from the highest (Horner order), times x.
pub const TANH_P: [f32; 7] = [
    -2.760_768_5e-16,
    2.000_188e-13,
    -8.604_672e-11,
    5.122_297e-8,
    1.485_722_4e-5,
    6.372_619_3e-4,
    4.893_524_6e-3,
];
/// Denominator of [`fast_tanh`], in powers of x² from the highest.
pub const TANH_Q: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3];

/// tanh as a 13/6 rational function (the approximation Eigen uses for `float`): within a
/// few ulp of `f32::tanh` on the clamped range, branch-free. SIMD versions evaluate the same
/// [`TANH_P`] / [`TANH_Q`] in the same order.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let mut p = x2 * TANH_P[0] + TANH_P[1];
    let mut i = 2;
    while i < TANH_P.len() {
        p = x2 * p + TANH_P[i];
        i += 1;
    }
    p *= x;
    let mut q = x2 * TANH_Q[0] + TANH_Q[1];
    let mut i = 2;
    while i < TANH_Q.len() {
        q = x2 * q + TANH_Q[i];
        i += 1;
    }
    p / q
}

/// GELU, tanh approximation (PyTorch `approximate="tanh"`).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + fast_tanh(GELU_C * (x + GELU_A * x * x * x)))
}

/// Derivative of [`gelu`].
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let t = fast_tanh(GELU_C * (x + GELU_A * x * x * x));
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Horner loop over the tables is the literal polynomial, bit for bit.
    #[test]
    fn fast_tanh_is_the_literal_rational_function() {
        let literal = |x: f32| {
            let x = x.clamp(-7.905_311, 7.905_311);
            let x2 = x * x;
            let mut p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
            p = x2 * p + -8.604_672e-11;
            p = x2 * p + 5.122_297e-8;
            p = x2 * p + 1.485_722_4e-5;
            p = x2 * p + 6.372_619_3e-4;
            p = x2 * p + 4.893_524_6e-3;
            p *= x;
            let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
            q = x2 * q + 2.268_434_6e-3;
            q = x2 * q + 4.893_525e-3;
            p / q
        };
        for i in -2000..=2000 {
            let x = i as f32 * 0.00731;
            assert_eq!(fast_tanh(x).to_bits(), literal(x).to_bits(), "x = {x}");
        }
        assert_eq!(fast_tanh(100.0), fast_tanh(TANH_CLAMP));
    }

    #[test]
    fn gelu_grad_matches_a_central_difference() {
        for i in -60..=60 {
            let x = i as f32 * 0.1;
            let h = 1e-3f32;
            let num = (gelu(x + h) - gelu(x - h)) / (2.0 * h);
            assert!(
                (num - gelu_grad(x)).abs() < 2e-3,
                "x = {x}: {num} vs {}",
                gelu_grad(x)
            );
        }
    }
}
