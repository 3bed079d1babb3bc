//! Fuzz target: a training checkpoint (both loaders) on arbitrary bytes must give an error
//! or a value, never a panic (see `csipose_fuzz::check_checkpoint`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| csipose_fuzz::check_checkpoint(data));
