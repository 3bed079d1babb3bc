//! Fuzz target: a .csm model file (parse and weight read-back) on arbitrary bytes must give an error
//! or a value, never a panic (see `csipose_fuzz::check_model_file`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| csipose_fuzz::check_model_file(data));
