//! Fuzz target: the MQTT packet decoder on arbitrary bytes must not panic, and a decoded packet
//! must have consumed a length within the input and within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for limit in [2usize, 64, 1 << 20] {
        let mut rest = data;
        while let Ok(Some((_, n))) = csipose_mqtt::packet::decode(rest, limit) {
            assert!(n >= 2 && n <= rest.len() && n <= limit);
            rest = &rest[n..];
        }
    }
});
