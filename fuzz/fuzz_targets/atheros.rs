//! Fuzz target: the atheros reader on arbitrary bytes must not panic, loop or over-allocate,
//! and every error must point inside the input.
#![no_main]

use csipose_capture::any::Reader;
use csipose_capture::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reader = Reader::new(std::io::Cursor::new(data.to_vec()), Format::Atheros, Default::default());
    for (n, item) in reader.enumerate() {
        assert!(n <= data.len() + 1, "more items than input bytes");
        match item {
            Ok(frame) => {
                assert!(frame.offset() < data.len() as u64);
                let _ = frame.metadata();
                let (a, s, amp) = frame.rx_amplitudes();
                assert_eq!(amp.len(), a * s);
            }
            Err(e) => assert!(e.offset <= data.len() as u64, "offset {} past end", e.offset),
        }
    }
});
