//! Fuzz target: the CLI's option validation and the simulator's settings on arbitrary bytes must give an error
//! or a value, never a panic (see `csipose_fuzz::check_options`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| csipose_fuzz::check_options(data));
