//! Fuzz target: `.npy` bytes as every element type and as text (see `csipose_fuzz::check_npy`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| csipose_fuzz::check_npy(data));
