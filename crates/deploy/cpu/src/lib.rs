//! The one CPU-feature detector of the workspace's SIMD kernels (the runtime's Linear kernels,
//! the temporal attention's tiles): `no_std`, `cpuid` for the feature bits plus `xgetbv` for
//! the OS having enabled the register state they need (what `is_x86_feature_detected!`
//! checks), detected once and cached. Every query is `false` off x86-64.

#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};

/// The instruction-set features the kernels dispatch on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// AVX2 and FMA, with the YMM state enabled.
    pub avx2_fma: bool,
    /// AVX-512 F, with the opmask and ZMM state enabled.
    pub avx512f: bool,
    /// AVX-512 BW (with F's OS state).
    pub avx512bw: bool,
    /// AVX-512 VL (with F's OS state).
    pub avx512vl: bool,
    /// AVX-512 VNNI (`vpdpwssd`; with F's OS state).
    pub avx512vnni: bool,
}

const KNOWN: u32 = 1 << 31;
static CACHE: AtomicU32 = AtomicU32::new(0);

impl Features {
    fn bits(self) -> u32 {
        u32::from(self.avx2_fma)
            | u32::from(self.avx512f) << 1
            | u32::from(self.avx512bw) << 2
            | u32::from(self.avx512vl) << 3
            | u32::from(self.avx512vnni) << 4
    }
    fn from_bits(b: u32) -> Features {
        Features {
            avx2_fma: b & 1 != 0,
            avx512f: b & 2 != 0,
            avx512bw: b & 4 != 0,
            avx512vl: b & 8 != 0,
            avx512vnni: b & 16 != 0,
        }
    }

    /// AVX-512 F, BW and VL together (what the runtime's AVX-512 kernels use).
    pub fn avx512_fbwvl(&self) -> bool {
        self.avx512f && self.avx512bw && self.avx512vl
    }
}

/// This CPU's features (detected on the first call, then cached).
pub fn features() -> Features {
    let c = CACHE.load(Ordering::Relaxed);
    if c & KNOWN != 0 {
        return Features::from_bits(c);
    }
    let f = detect();
    CACHE.store(f.bits() | KNOWN, Ordering::Relaxed);
    f
}

/// AVX2 and FMA usable here.
pub fn has_avx2_fma() -> bool {
    features().avx2_fma
}

/// AVX2+FMA and AVX-512 F/BW/VL usable here.
pub fn has_avx512() -> bool {
    let f = features();
    f.avx2_fma && f.avx512_fbwvl()
}

/// AVX2+FMA and AVX-512 F/BW/VL/VNNI usable here.
pub fn has_avx512_vnni() -> bool {
    has_avx512() && features().avx512vnni
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // cpuid is a safe intrinsic on newer compilers
fn detect() -> Features {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let mut f = Features::default();
    // SAFETY: cpuid exists on every x86-64 CPU.
    let l0 = unsafe { __cpuid(0) };
    if l0.eax < 7 {
        return f;
    }
    // SAFETY: as above; leaves 1 and 7 exist (max leaf ≥ 7).
    let (l1, l7) = unsafe { (__cpuid(1), __cpuid_count(7, 0)) };
    let osxsave = l1.ecx & (1 << 27) != 0;
    if !osxsave {
        return f;
    }
    // SAFETY: OSXSAVE is set, so xgetbv is available and XCR0 readable.
    let xcr0 = unsafe { xgetbv0() };
    let ymm = xcr0 & 0b110 == 0b110; // XMM and YMM state
    let zmm = xcr0 & 0xe6 == 0xe6; // and opmask, ZMM_Hi256, Hi16_ZMM
    let fma = l1.ecx & (1 << 12) != 0;
    let avx = l1.ecx & (1 << 28) != 0;
    f.avx2_fma = ymm && fma && avx && l7.ebx & (1 << 5) != 0;
    f.avx512f = zmm && l7.ebx & (1 << 16) != 0;
    f.avx512bw = f.avx512f && l7.ebx & (1 << 30) != 0;
    f.avx512vl = f.avx512f && l7.ebx & (1 << 31) != 0;
    f.avx512vnni = f.avx512f && l7.ecx & (1 << 11) != 0;
    f
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Features {
    Features::default()
}

/// # Safety
/// The CPU must support `xgetbv` (CPUID.1:ECX.OSXSAVE set).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    core::arch::x86_64::_xgetbv(0)
}

#[cfg(test)]
mod tests {
    extern crate std;

    /// The detector agrees with std's `is_x86_feature_detected!` on this machine.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn agrees_with_std() {
        use std::arch::is_x86_feature_detected as det;
        let f = super::features();
        assert_eq!(f.avx2_fma, det!("avx2") && det!("fma"));
        assert_eq!(f.avx512f, det!("avx512f"));
        assert_eq!(f.avx512bw, det!("avx512bw"));
        assert_eq!(f.avx512vl, det!("avx512vl"));
        assert_eq!(f.avx512vnni, det!("avx512vnni"));
        // Cached: the second call answers the same.
        assert_eq!(super::features(), f);
    }
}
