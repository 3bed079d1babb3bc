//! Fuzz target: format detection on arbitrary bytes must not panic, and a detected format
//! must then be readable without panicking.
#![no_main]

use csipose_capture::any::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(format) = csipose_capture::detect(data) {
        for item in Reader::new(std::io::Cursor::new(data.to_vec()), format, Default::default()) {
            let _ = item;
        }
    }
});
