//! `csipose models --input`: an input shape outside the architecture's bounds is a clear
//! error naming the field, not a panic or an overflow.

mod common;
use common::csipose;

#[test]
fn models_rejects_out_of_bounds_input_shapes() {
    for (input, want) in [
        (["0", "114", "10"], "antennas = 0"),
        (["100000", "100000", "10"], "antennas × subcarriers"),
        (["3", "114", "100000"], "packets = 100000"),
    ] {
        let mut args = vec!["models", "--input"];
        args.extend(input);
        let out = csipose(&args);
        assert!(!out.status.success(), "{input:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{input:?}: {err}");
        assert!(!err.contains("panicked"), "{input:?}: {err}");
    }
}
