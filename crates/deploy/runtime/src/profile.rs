//! Cycle counts per stage of the forward (feature `profile`, x86-64 only): a development aid
//! for finding where the time goes; off by default, when `prof!` compiles to nothing.

#[cfg(all(feature = "profile", target_arch = "x86_64"))]
mod counters {
    use core::sync::atomic::{AtomicU64, Ordering};
    /// Stage names, in the order of [`CYCLES`].
    pub const STAGES: [&str; 14] = [
        "standardise",
        "embed",
        "qkv",
        "attention",
        "out_proj",
        "layernorm",
        "ffn1",
        "ffn2",
        "pool",
        "head",
        "graph_in",
        "graph_mix",
        "graph_linear",
        "graph_out",
    ];
    /// Accumulated time-stamp-counter ticks per stage.
    pub static CYCLES: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];
    static LAST: AtomicU64 = AtomicU64::new(0);
    #[inline(always)]
    pub(crate) fn start() {
        // SAFETY: rdtsc exists on every x86-64 CPU.
        LAST.store(unsafe { core::arch::x86_64::_rdtsc() }, Ordering::Relaxed);
    }
    #[inline(always)]
    pub(crate) fn mark(stage: usize) {
        // SAFETY: rdtsc exists on every x86-64 CPU.
        let now = unsafe { core::arch::x86_64::_rdtsc() };
        let last = LAST.swap(now, Ordering::Relaxed);
        CYCLES[stage].fetch_add(now - last, Ordering::Relaxed);
    }
}
#[cfg(all(feature = "profile", target_arch = "x86_64"))]
pub(crate) use counters::{mark, start};
#[cfg(all(feature = "profile", target_arch = "x86_64"))]
pub use counters::{CYCLES, STAGES};

/// Off: nothing to count.
#[cfg(not(all(feature = "profile", target_arch = "x86_64")))]
#[inline(always)]
pub(crate) fn start() {}

/// Off: nothing to count.
#[cfg(not(all(feature = "profile", target_arch = "x86_64")))]
#[inline(always)]
pub(crate) fn mark(_stage: usize) {}

/// `prof!(start)` starts the stage clock, `prof!(n)` charges the time since to stage `n`.
macro_rules! prof {
    (start) => {
        $crate::profile::start()
    };
    ($n:expr) => {
        $crate::profile::mark($n)
    };
}
pub(crate) use prof;
