//! Inverted dropout's mask, vectorised: element `i` is kept (factor `1/(1-p)`) when
//! [`csipose_rng::hash_uniform`]`(key, i) ≥ p`, else dropped (factor 0), and multiplied by its
//! factor in place. The hash is splitmix64 of `key ^ i·C` (two 64-bit multiplies per element),
//! computed here eight or sixteen indices at a time: with AVX-512 DQ's 64-bit multiply, with
//! AVX2's 32-bit multiplies assembling the low 64 bits of each product, or one index at a time
//! through `hash_uniform` itself (portable). All integer arithmetic until the top 24 bits
//! become a float (exactly), so every path gives the same mask bit for bit; the tests check each
//! path the CPU runs against `hash_uniform`.

use crate::gemm::Isa;

/// The multiplier of the index in [`csipose_rng::hash_uniform`].
const IDX_MUL: u64 = 0xD6E8_FEB8_6659_FD93;
/// splitmix64's increment and multipliers ([`csipose_rng::splitmix64`]).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// The path [`apply`] takes on this CPU: AVX-512 when it has F, BW, VL and DQ (the 64-bit
/// multiply), else AVX2, else portable.
pub fn chosen() -> Isa {
    static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if csipose_cpu::avx512() && std::arch::is_x86_feature_detected!("avx512dq") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// Whether this CPU runs `isa`'s dropout path.
pub fn available(isa: Isa) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => csipose_cpu::avx512() && std::arch::is_x86_feature_detected!("avx512dq"),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx512 | Isa::Avx2 => false,
        Isa::Portable => true,
    }
}

/// Elements `base .. base + x.len()` of a dropout with probability `p` under `key`: `mask[i]`
/// receives `scale` (kept) or 0 (dropped) and `x[i]` is multiplied by it, on the path
/// [`chosen`].
pub fn apply(x: &mut [f32], mask: &mut [f32], p: f32, scale: f32, key: u64, base: u64) {
    apply_isa(chosen(), x, mask, p, scale, key, base)
}

/// [`apply`] on a given path (tests force each one the CPU runs).
///
/// # Panics
/// If the CPU lacks `isa`'s path, or `mask` is shorter than `x`.
pub fn apply_isa(
    isa: Isa,
    x: &mut [f32],
    mask: &mut [f32],
    p: f32,
    scale: f32,
    key: u64,
    base: u64,
) {
    assert!(mask.len() >= x.len(), "dropout: mask too short");
    assert!(
        available(isa),
        "dropout: this CPU cannot run {}",
        isa.name()
    );
    let mask = &mut mask[..x.len()];
    let done = match isa {
        // SAFETY: the CPU runs the path (checked just above); the lengths are equal.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512(x, mask, p, scale, key, base) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2(x, mask, p, scale, key, base) },
        _ => 0,
    };
    portable(
        &mut x[done..],
        &mut mask[done..],
        p,
        scale,
        key,
        base.wrapping_add(done as u64),
    );
}

/// One element at a time through [`csipose_rng::hash_uniform`], the definition.
fn portable(x: &mut [f32], mask: &mut [f32], p: f32, scale: f32, key: u64, base: u64) {
    for (i, (v, m)) in x.iter_mut().zip(mask.iter_mut()).enumerate() {
        let u = csipose_rng::hash_uniform(key, base.wrapping_add(i as u64));
        *m = if u >= p { scale } else { 0.0 };
        *v *= *m;
    }
}

/// Whole blocks of 16 elements; returns how many it did.
///
/// # Safety
/// The CPU supports AVX-512 F and DQ; `mask.len() == x.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn avx512(
    x: &mut [f32],
    mask: &mut [f32],
    p: f32,
    scale: f32,
    key: u64,
    base: u64,
) -> usize {
    use std::arch::x86_64::*;
    let n = x.len() / 16 * 16;
    let c = IDX_MUL;
    let lanes = _mm512_set_epi64(
        7u64.wrapping_mul(c) as i64,
        6u64.wrapping_mul(c) as i64,
        5u64.wrapping_mul(c) as i64,
        4u64.wrapping_mul(c) as i64,
        3u64.wrapping_mul(c) as i64,
        2u64.wrapping_mul(c) as i64,
        c as i64,
        0,
    );
    let step8 = _mm512_set1_epi64(8u64.wrapping_mul(c) as i64);
    let step16 = _mm512_set1_epi64(16u64.wrapping_mul(c) as i64);
    // index · C for lanes base + 0..8 and base + 8..16, advanced by 16·C per block.
    let mut ic0 = _mm512_add_epi64(_mm512_set1_epi64(base.wrapping_mul(c) as i64), lanes);
    let mut ic1 = _mm512_add_epi64(ic0, step8);
    let keyv = _mm512_set1_epi64(key as i64);
    let (gold, m1, m2) = (
        _mm512_set1_epi64(GOLDEN as i64),
        _mm512_set1_epi64(MIX1 as i64),
        _mm512_set1_epi64(MIX2 as i64),
    );
    // The top 24 bits of splitmix64(key ^ index·C) of eight lanes, as eight i32.
    let bits = |ic: __m512i| -> __m256i {
        let mut z = _mm512_add_epi64(_mm512_xor_si512(keyv, ic), gold);
        z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), m1);
        z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), m2);
        z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
        _mm512_cvtepi64_epi32(_mm512_srli_epi64(z, 40))
    };
    let (pv, sv, unit) = (
        _mm512_set1_ps(p),
        _mm512_set1_ps(scale),
        _mm512_set1_ps(1.0 / (1u64 << 24) as f32),
    );
    let (xp, mp) = (x.as_mut_ptr(), mask.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let lo = bits(ic0);
        let hi = bits(ic1);
        let b = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        let u = _mm512_mul_ps(_mm512_cvtepi32_ps(b), unit);
        let keep = _mm512_cmp_ps_mask(u, pv, _CMP_GE_OQ);
        let m = _mm512_maskz_mov_ps(keep, sv);
        // SAFETY: i + 16 ≤ n ≤ x.len() = mask.len().
        unsafe {
            _mm512_storeu_ps(mp.add(i), m);
            _mm512_storeu_ps(xp.add(i), _mm512_mul_ps(_mm512_loadu_ps(xp.add(i)), m));
        }
        ic0 = _mm512_add_epi64(ic0, step16);
        ic1 = _mm512_add_epi64(ic1, step16);
        i += 16;
    }
    n
}

/// Whole blocks of 8 elements; returns how many it did.
///
/// # Safety
/// The CPU supports AVX2; `mask.len() == x.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2(x: &mut [f32], mask: &mut [f32], p: f32, scale: f32, key: u64, base: u64) -> usize {
    use std::arch::x86_64::*;
    let n = x.len() / 8 * 8;
    let c = IDX_MUL;
    let lanes = _mm256_set_epi64x(
        3u64.wrapping_mul(c) as i64,
        2u64.wrapping_mul(c) as i64,
        c as i64,
        0,
    );
    let step4 = _mm256_set1_epi64x(4u64.wrapping_mul(c) as i64);
    let step8 = _mm256_set1_epi64x(8u64.wrapping_mul(c) as i64);
    let mut ic0 = _mm256_add_epi64(_mm256_set1_epi64x(base.wrapping_mul(c) as i64), lanes);
    let mut ic1 = _mm256_add_epi64(ic0, step4);
    let keyv = _mm256_set1_epi64x(key as i64);
    let gold = _mm256_set1_epi64x(GOLDEN as i64);
    // The low 64 bits of z · M: lo·lo + ((lo·hi + hi·lo) << 32), each a 32 × 32 → 64 product.
    let mul = |z: __m256i, m: u64| -> __m256i {
        let (ml, mh) = (
            _mm256_set1_epi64x(m as i64),
            _mm256_set1_epi64x((m >> 32) as i64),
        );
        let lo = _mm256_mul_epu32(z, ml);
        let cross = _mm256_add_epi64(
            _mm256_mul_epu32(z, mh),
            _mm256_mul_epu32(_mm256_srli_epi64(z, 32), ml),
        );
        _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32))
    };
    // The top 24 bits of splitmix64(key ^ index·C) of four lanes, in the even i32 lanes.
    let bits = |ic: __m256i| -> __m256i {
        let mut z = _mm256_add_epi64(_mm256_xor_si256(keyv, ic), gold);
        z = mul(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), MIX1);
        z = mul(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), MIX2);
        z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
        _mm256_srli_epi64(z, 40)
    };
    let even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let (pv, sv, unit) = (
        _mm256_set1_ps(p),
        _mm256_set1_ps(scale),
        _mm256_set1_ps(1.0 / (1u64 << 24) as f32),
    );
    let (xp, mp) = (x.as_mut_ptr(), mask.as_mut_ptr());
    let mut i = 0;
    while i < n {
        let lo = _mm256_permutevar8x32_epi32(bits(ic0), even);
        let hi = _mm256_permutevar8x32_epi32(bits(ic1), even);
        let b = _mm256_permute2x128_si256(lo, hi, 0x20);
        let u = _mm256_mul_ps(_mm256_cvtepi32_ps(b), unit);
        let m = _mm256_and_ps(_mm256_cmp_ps(u, pv, _CMP_GE_OQ), sv);
        // SAFETY: i + 8 ≤ n ≤ x.len() = mask.len().
        unsafe {
            _mm256_storeu_ps(mp.add(i), m);
            _mm256_storeu_ps(xp.add(i), _mm256_mul_ps(_mm256_loadu_ps(xp.add(i)), m));
        }
        ic0 = _mm256_add_epi64(ic0, step8);
        ic1 = _mm256_add_epi64(ic1, step8);
        i += 8;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|&i| available(i))
            .collect()
    }

    /// Every path gives the definition's mask and products bit for bit, at any offset and
    /// length (whole blocks and tails), for keys and probabilities of all sizes.
    #[test]
    fn every_path_matches_hash_uniform() {
        eprintln!("dropout paths on this CPU: {:?}", paths());
        for isa in paths() {
            for &(key, p) in &[
                (0u64, 0.1f32),
                (99, 0.25),
                (u64::MAX, 0.5),
                (0x1234_5678_9ABC_DEF0, 0.9),
            ] {
                let scale = 1.0 / (1.0 - p);
                for &(base, n) in &[
                    (0u64, 0usize),
                    (0, 1),
                    (0, 7),
                    (5, 16),
                    (4096, 37),
                    (u64::MAX - 40, 41),
                    (123_456, 1000),
                ] {
                    let x0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() - 0.1).collect();
                    let (mut x, mut m) = (x0.clone(), vec![f32::NAN; n + 3]);
                    apply_isa(isa, &mut x, &mut m, p, scale, key, base);
                    for i in 0..n {
                        let u = csipose_rng::hash_uniform(key, base.wrapping_add(i as u64));
                        let want = if u >= p { scale } else { 0.0 };
                        assert_eq!(m[i].to_bits(), want.to_bits(), "{isa:?} key {key} i {i}");
                        assert_eq!(x[i].to_bits(), (x0[i] * want).to_bits(), "{isa:?} i {i}");
                    }
                    assert!(m[n..].iter().all(|v| v.is_nan()), "{isa:?} wrote past x");
                }
            }
        }
    }
}
