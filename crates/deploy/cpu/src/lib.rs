//! Run-time CPU feature detection for the SIMD kernels of the runtime and the attention crate,
//! without `std`: `cpuid` for the feature bits plus `xgetbv` for the OS having enabled the
//! register state (what `std::arch::is_x86_feature_detected!` checks). Each answer is
//! computed once and cached. Off x86-64 every feature is absent.
#![no_std]

use core::sync::atomic::{AtomicU8, Ordering};

const KNOWN: u8 = 1 << 7;
const AVX2_FMA: u8 = 1;
const AVX512: u8 = 1 << 1;
const AVX512_VNNI: u8 = 1 << 2;

static FEATURES: AtomicU8 = AtomicU8::new(0);

fn features() -> u8 {
    let f = FEATURES.load(Ordering::Relaxed);
    if f & KNOWN != 0 {
        return f;
    }
    let f = KNOWN | detect();
    FEATURES.store(f, Ordering::Relaxed);
    f
}

/// AVX2 and FMA, with the YMM state enabled by the OS.
pub fn avx2_fma() -> bool {
    features() & AVX2_FMA != 0
}

/// AVX-512 F, BW and VL, with the opmask/ZMM state enabled by the OS.
pub fn avx512() -> bool {
    features() & AVX512 != 0
}

/// AVX-512 F, BW, VL and VNNI, with the opmask/ZMM state enabled by the OS.
pub fn avx512_vnni() -> bool {
    features() & AVX512_VNNI != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    0
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // cpuid is a safe intrinsic on newer compilers
fn detect() -> u8 {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: cpuid exists on every x86-64 CPU.
    let l0 = unsafe { __cpuid(0) };
    if l0.eax < 7 {
        return 0;
    }
    // SAFETY: as above; leaf 1 always exists.
    let l1 = unsafe { __cpuid(1) };
    let fma = l1.ecx & (1 << 12) != 0;
    let osxsave = l1.ecx & (1 << 27) != 0;
    let avx = l1.ecx & (1 << 28) != 0;
    if !osxsave {
        return 0;
    }
    // SAFETY: OSXSAVE is set, so xgetbv is available and XCR0 readable.
    let xcr0 = unsafe { xgetbv0() };
    // SAFETY: leaf 7 exists (checked on leaf 0).
    let l7 = unsafe { __cpuid_count(7, 0) };
    let mut f = 0;
    // XMM and YMM state enabled, AVX, FMA, AVX2.
    if fma && avx && xcr0 & 0b110 == 0b110 && l7.ebx & (1 << 5) != 0 {
        f |= AVX2_FMA;
    }
    // Opmask, ZMM_Hi256, Hi16_ZMM state enabled (and XMM/YMM); AVX-512 F, BW, VL.
    if xcr0 & 0xe6 == 0xe6
        && l7.ebx & (1 << 16) != 0
        && l7.ebx & (1 << 30) != 0
        && l7.ebx & (1 << 31) != 0
    {
        f |= AVX512;
        if l7.ecx & (1 << 11) != 0 {
            f |= AVX512_VNNI;
        }
    }
    f
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    core::arch::x86_64::_xgetbv(0)
}

#[cfg(test)]
mod tests {
    extern crate std;

    /// Agrees with the standard library's detection, and the cached answer is stable.
    #[test]
    fn matches_std_detection() {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            assert_eq!(super::avx2_fma(), has!("avx2") && has!("fma"));
            assert_eq!(
                super::avx512(),
                has!("avx512f") && has!("avx512bw") && has!("avx512vl")
            );
            assert_eq!(super::avx512_vnni(), super::avx512() && has!("avx512vnni"));
        }
        assert_eq!(super::features(), super::features());
        assert!(!super::avx512_vnni() || super::avx512());
    }
}
