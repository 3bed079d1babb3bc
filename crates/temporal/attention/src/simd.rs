//! Small vector helpers written so LLVM vectorises them (eight independent lanes), plus
//! runtime dispatch to an AVX2 build of the hot loops on x86-64.

/// Dot product with eight partial sums.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product of two fixed-size vectors (`D` a multiple of 8).
#[inline(always)]
pub fn dot_fixed<const D: usize>(a: &[f32; D], b: &[f32; D]) -> f32 {
    let mut acc = [0.0f32; 8];
    for c in 0..D / 8 {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Sum with eight partial sums.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y += alpha * x`.
#[inline(always)]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `y *= alpha`.
#[inline(always)]
pub fn scale(alpha: f32, y: &mut [f32]) {
    for yi in y.iter_mut() {
        *yi *= alpha;
    }
}

/// `e^x` to about 2 ulp for x in [-87, 88] (inputs below are clamped to -87, giving ~1e-38
/// instead of a denormal). Branch-free so loops over slices vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let y = x * std::f32::consts::LOG2_E + MAGIC;
    let n = y - MAGIC;
    let e = (y.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let poly = p * r * r + r + 1.0;
    poly * f32::from_bits(((e + 127) as u32) << 23)
}

/// `acc += sum_t probs[t] * value(t)[..acc.len()]`, in registers where the CPU allows.
#[inline(always)]
pub fn accumulate<'s>(probs: &[f32], value: impl Fn(usize) -> &'s [f32], acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA are available (checked at run time).
        unsafe {
            match acc.len() {
                8 => return avx2::accumulate::<8>(probs, value, acc),
                16 => return avx2::accumulate::<16>(probs, value, acc),
                32 => return avx2::accumulate::<32>(probs, value, acc),
                _ => {}
            }
        }
    }
    let d = acc.len();
    for (t, &p) in probs.iter().enumerate() {
        axpy(p, &value(t)[..d], acc);
    }
}

/// This crate's arithmetic for the shared attention math ([`csipose_attn_core`]): [`dot`] and
/// [`sum`] in eight partial sums, the polynomial [`exp`].
pub(crate) struct AttnNumerics;

impl csipose_attn_core::Numerics for AttnNumerics {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        sum(xs)
    }
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        exp(x)
    }
}

/// True when the AVX2 + FMA build of the hot loops can run here.
#[inline]
pub fn has_avx2() -> bool {
    csipose_cpu::avx2_fma()
}

/// Defines `$name(args)` that runs `$body` compiled for AVX2 + FMA when the CPU has them and for
/// the baseline target otherwise. `$body` should call only `#[inline(always)]` helpers.
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    inner($($arg),*)
                }
                if $crate::simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                    unsafe { avx2($($arg),*) };
                    return;
                }
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// AVX2 + FMA versions of the fixed-size kernels.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // lane loops index several arrays at once
pub mod avx2 {
    use std::arch::x86_64::*;

    use csipose_attn_core::OnlineSoftmax;

    use crate::sparse::CHUNK;

    /// Horizontal sum of eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `acc += sum_t probs[t] * value(t)` for `D` in 8, 16, 32, accumulating in registers.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2 and FMA ([`super::has_avx2`]). Lengths are checked: `D`,
    /// `acc` and every row `value` returns are asserted to hold at least `D` floats.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accumulate<'s, const D: usize>(
        probs: &[f32],
        value: impl Fn(usize) -> &'s [f32],
        acc: &mut [f32],
    ) {
        assert!((D == 8 || D == 16 || D == 32) && acc.len() >= D);
        let lanes = D / 8;
        let zero = _mm256_setzero_ps();
        let [mut a0, mut a1, mut a2, mut a3] = [zero; 4];
        for (t, &p) in probs.iter().enumerate() {
            let row = value(t);
            assert!(row.len() >= D);
            let pv = _mm256_set1_ps(p);
            let vp = row.as_ptr();
            a0 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vp), a0);
            if lanes > 1 {
                a1 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vp.add(8)), a1);
            }
            if lanes > 2 {
                a2 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vp.add(16)), a2);
                a3 = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vp.add(24)), a3);
            }
        }
        for (lane, a) in [a0, a1, a2, a3].into_iter().enumerate().take(lanes) {
            let at = acc.as_mut_ptr().add(lane * 8);
            _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), a));
        }
    }

    /// `e^(x - n·ln 2)` for `n = round(x / ln 2)`: the range reduction (ln 2 in two parts) and
    /// the polynomial shared by [`exp8`] and the tile kernel's AVX-512 exponential, which differ
    /// only in how they round `n` and scale by `2^n`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp_poly(x: __m256, n: __m256) -> __m256 {
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        _mm256_add_ps(
            _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r),
            _mm256_set1_ps(1.0),
        )
    }

    /// `e^x` on eight lanes, the same algorithm as `super::exp`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let magic = _mm256_set1_ps(12_582_912.0);
        let y = _mm256_add_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            magic,
        );
        let n = _mm256_sub_ps(y, magic);
        let e = _mm256_sub_epi32(_mm256_castps_si256(y), _mm256_set1_epi32(0x4B40_0000));
        let poly = exp_poly(x, n);
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(e, _mm256_set1_epi32(127)),
            23,
        ));
        _mm256_mul_ps(poly, pow2)
    }

    /// The online softmax of `crate::sparse::attend_items` with explicit 256-bit vectors.
    /// `D` is 8, 16 or 32; every row `item` returns has at least `D` floats.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2 and FMA ([`super::has_avx2`]). Lengths are checked: `D`, `qv`,
    /// `out` and every key and value row `item` returns are asserted to hold at least `D` floats.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend_items<'s, const D: usize>(
        qv: &[f32],
        scale_factor: f32,
        total: usize,
        item: impl Fn(usize) -> (&'s [f32], &'s [f32]),
        out: &mut [f32],
    ) {
        assert!((D == 8 || D == 16 || D == 32) && qv.len() >= D && out.len() >= D);
        let lanes = D / 8;
        let sc = _mm256_set1_ps(scale_factor);
        let mut q = [_mm256_setzero_ps(); 4];
        for c in 0..lanes {
            q[c] = _mm256_mul_ps(_mm256_loadu_ps(qv.as_ptr().add(c * 8)), sc);
        }
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut scores = [0.0f32; CHUNK];
        let mut state = OnlineSoftmax::EMPTY;
        let mut start = 0;
        while start < total {
            let count = CHUNK.min(total - start);
            // Scores, eight items at a time: one horizontal-add tree turns eight dot vectors into
            // one vector of eight scores, stored whole (no narrow stores read back wide). Missing
            // items of the last group are -inf, masked out after the exp.
            let lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mut c = 0;
            while c < count {
                let here = (count - c).min(8);
                let mut dots = [_mm256_setzero_ps(); 8];
                for (k, dot) in dots.iter_mut().enumerate().take(here) {
                    let key = item(start + c + k).0;
                    assert!(key.len() >= D);
                    *dot = _mm256_mul_ps(q[0], _mm256_loadu_ps(key.as_ptr()));
                    for lane in 1..lanes {
                        *dot = _mm256_fmadd_ps(
                            q[lane],
                            _mm256_loadu_ps(key.as_ptr().add(lane * 8)),
                            *dot,
                        );
                    }
                }
                // After two levels, lane j of t01 holds partial sums of items 0..4 (low half)
                // and of the same items (high half); likewise t23 for items 4..8.
                let t0 = _mm256_hadd_ps(dots[0], dots[1]);
                let t1 = _mm256_hadd_ps(dots[2], dots[3]);
                let t2 = _mm256_hadd_ps(dots[4], dots[5]);
                let t3 = _mm256_hadd_ps(dots[6], dots[7]);
                let t01 = _mm256_hadd_ps(t0, t1);
                let t23 = _mm256_hadd_ps(t2, t3);
                let lo = _mm256_permute2f128_ps(t01, t23, 0x20);
                let hi = _mm256_permute2f128_ps(t01, t23, 0x31);
                let mut s8 = _mm256_add_ps(lo, hi);
                if here < 8 {
                    let live = _mm256_cmpgt_epi32(_mm256_set1_epi32(here as i32), lane_index);
                    s8 = _mm256_blendv_ps(
                        _mm256_set1_ps(f32::NEG_INFINITY),
                        s8,
                        _mm256_castsi256_ps(live),
                    );
                }
                _mm256_storeu_ps(scores.as_mut_ptr().add(c), s8);
                c += 8;
            }
            let padded = count.div_ceil(8) * 8;
            let mut maxv = _mm256_set1_ps(f32::NEG_INFINITY);
            for c in (0..padded).step_by(8) {
                maxv = _mm256_max_ps(maxv, _mm256_loadu_ps(scores.as_ptr().add(c)));
            }
            let maxv = _mm_max_ps(_mm256_castps256_ps128(maxv), _mm256_extractf128_ps(maxv, 1));
            let maxv = _mm_max_ps(maxv, _mm_movehl_ps(maxv, maxv));
            let chunk_max = _mm_cvtss_f32(_mm_max_ss(maxv, _mm_movehdup_ps(maxv)));
            if let Some(f) = state.raise::<super::AttnNumerics>(chunk_max) {
                let fv = _mm256_set1_ps(f);
                for a in acc[..lanes].iter_mut() {
                    *a = _mm256_mul_ps(*a, fv);
                }
            }
            let mv = _mm256_set1_ps(state.max);
            let mut total_p = _mm256_setzero_ps();
            for c in (0..padded).step_by(8) {
                let p = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores.as_ptr().add(c)), mv));
                let live = _mm256_cmpgt_epi32(_mm256_set1_epi32((count - c) as i32), lane_index);
                let p = _mm256_and_ps(p, _mm256_castsi256_ps(live));
                _mm256_storeu_ps(scores.as_mut_ptr().add(c), p);
                total_p = _mm256_add_ps(total_p, p);
            }
            state.add(hsum(total_p));
            // Named accumulators so they stay in registers across items; two sets (even and
            // odd items) halve the dependency chain through the FMA latency.
            // (Fresh per chunk, added to `acc` after, so nothing else is live in this loop.)
            let zero = _mm256_setzero_ps();
            let [mut a0, mut a1, mut a2, mut a3] = [zero; 4];
            let [mut b0, mut b1, mut b2, mut b3] = [zero; 4];
            let mut c = 0;
            while c + 2 <= count {
                let (va, vb) = (item(start + c).1, item(start + c + 1).1);
                assert!(va.len() >= D && vb.len() >= D);
                let (pa, pb) = (_mm256_set1_ps(scores[c]), _mm256_set1_ps(scores[c + 1]));
                let (ra, rb) = (va.as_ptr(), vb.as_ptr());
                a0 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra), a0);
                b0 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(rb), b0);
                if lanes > 1 {
                    a1 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra.add(8)), a1);
                    b1 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(rb.add(8)), b1);
                }
                if lanes > 2 {
                    a2 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra.add(16)), a2);
                    b2 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(rb.add(16)), b2);
                    a3 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra.add(24)), a3);
                    b3 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(rb.add(24)), b3);
                }
                c += 2;
            }
            if c < count {
                let value = item(start + c).1;
                assert!(value.len() >= D);
                let (pa, ra) = (_mm256_set1_ps(scores[c]), value.as_ptr());
                a0 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra), a0);
                if lanes > 1 {
                    a1 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra.add(8)), a1);
                }
                if lanes > 2 {
                    a2 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra.add(16)), a2);
                    a3 = _mm256_fmadd_ps(pa, _mm256_loadu_ps(ra.add(24)), a3);
                }
            }
            let sums = [
                _mm256_add_ps(a0, b0),
                _mm256_add_ps(a1, b1),
                _mm256_add_ps(a2, b2),
                _mm256_add_ps(a3, b3),
            ];
            for (a, c) in acc.iter_mut().zip(sums) {
                *a = _mm256_add_ps(*a, c);
            }
            start += count;
        }
        let inv = _mm256_set1_ps(state.inverse());
        for lane in 0..lanes {
            _mm256_storeu_ps(
                out.as_mut_ptr().add(lane * 8),
                _mm256_mul_ps(acc[lane], inv),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The AVX2 kernel and the portable kernels agree (both run whatever the CPU picks).
    #[test]
    fn avx2_and_portable_kernels_agree() {
        let values: Vec<f32> = (0..4000)
            .map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0)
            .collect();
        for &total in &[1usize, 3, 8, 13, 32, 33, 70] {
            for d in [8usize, 16, 32] {
                let item = |t: usize| {
                    (
                        &values[t * 40..t * 40 + d],
                        &values[t * 40 + 7..t * 40 + 7 + d],
                    )
                };
                let q = &values[3000..3000 + d];
                let mut fixed = vec![0.0f32; d];
                let mut any = vec![0.0f32; d];
                match d {
                    8 => crate::sparse::attend_items::<8>(q, 0.3, total, item, &mut fixed),
                    16 => crate::sparse::attend_items::<16>(q, 0.3, total, item, &mut fixed),
                    _ => crate::sparse::attend_items::<32>(q, 0.3, total, item, &mut fixed),
                }
                crate::sparse::attend_any(0.3, q, total, item, &mut any);
                let close =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
                assert!(
                    close(&fixed, &any),
                    "portable fixed vs any, d={d} total={total}"
                );
                #[cfg(target_arch = "x86_64")]
                if super::has_avx2() {
                    let mut simd = vec![0.0f32; d];
                    // SAFETY: AVX2 + FMA checked just above.
                    unsafe {
                        match d {
                            8 => super::avx2::attend_items::<8>(q, 0.3, total, item, &mut simd),
                            16 => super::avx2::attend_items::<16>(q, 0.3, total, item, &mut simd),
                            _ => super::avx2::attend_items::<32>(q, 0.3, total, item, &mut simd),
                        }
                    }
                    assert!(close(&simd, &any), "avx2 vs any, d={d} total={total}");
                }
            }
        }
    }

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = (super::exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(-1000.0) < 1e-37);
    }

    #[test]
    fn dot_and_axpy_match_plain_loops() {
        for n in [1usize, 7, 8, 9, 32, 33] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((super::dot(&a, &b) - plain).abs() < 1e-5);
            let mut y = b.clone();
            super::axpy(0.5, &a, &mut y);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
            }
        }
    }
}
