//! Fuzz target: the esp32 reader on arbitrary bytes must not panic, loop or over-allocate, and every
//! error must point inside the input (see `check_capture`).
#![no_main]
csipose_fuzz::capture_target!(Esp32);
