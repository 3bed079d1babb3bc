//! Fuzz target: format detection on arbitrary bytes must not panic, and a detected format must
//! then read under the same checks as the per-format targets.
#![no_main]
csipose_fuzz::capture_target!(detect);
