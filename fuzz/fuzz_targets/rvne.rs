//! Fuzz target: a .rvne activity model (parse, re-encode, parse) on arbitrary bytes must give an error
//! or a value, never a panic (see `csipose_fuzz::check_rvne`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| csipose_fuzz::check_rvne(data));
