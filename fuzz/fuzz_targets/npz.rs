//! Fuzz target: an `.npz` archive, every member read (see `csipose_fuzz::check_npz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| csipose_fuzz::check_npz(data));
