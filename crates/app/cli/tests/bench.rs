//! End-to-end checks of `csipose bench`: a saved random model times and reports JSON with its
//! size, precision, kernel and FLOPs; missing and damaged files fail with the file's name.

mod common;

use common::csipose;

#[test]
fn bench_saves_times_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nano8.csm");
    let p = path.to_str().unwrap();
    let out = csipose(&[
        "bench", "--random", "nano", "--bits", "8", "--save", p, "--iters", "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = csipose(&["bench", "--model", p, "--iters", "20", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "nano");
    assert_eq!(v["precision"], "int8");
    assert_eq!(v["file_bytes"], std::fs::metadata(&path).unwrap().len());
    assert_eq!(v["flops_per_forward"], 725_952);
    assert!(v["median_us"].as_f64().unwrap() > 0.0);
    assert!(v["p90_us"].as_f64().unwrap() >= v["median_us"].as_f64().unwrap());
    let out = csipose(&[
        "bench", "--model", p, "--iters", "10", "--kernel", "portable", "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kernel"], "portable");
    // The kernel actually run: an fp32 file has no int16 Linears, so the int16 kernels run
    // their exact-f32 counterparts and say so (on any CPU: `auto` is int16 only with VNNI).
    for (kernel, want) in [("portable-int16", Some("portable")), ("auto", None)] {
        let out = csipose(&[
            "bench", "--random", "nano", "--bits", "32", "--iters", "10", "--kernel", kernel,
            "--json",
        ]);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got = v["kernel"].as_str().unwrap();
        assert!(!got.contains("int16"), "fp32 file reported as {got}");
        if let Some(w) = want {
            assert_eq!(got, w);
        }
        assert_eq!(v["precision"], "fp32");
    }
    let out = csipose(&[
        "bench",
        "--model",
        p,
        "--iters",
        "10",
        "--kernel",
        "portable-int16",
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kernel"], "portable-int16");
}

#[test]
fn bench_names_the_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.csm");
    let out = csipose(&["bench", "--model", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.csm"), "{err}");

    let good = dir.path().join("good.csm");
    let g = good.to_str().unwrap();
    assert!(
        csipose(&["bench", "--random", "nano", "--save", g, "--iters", "10"])
            .status
            .success()
    );
    let mut bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    let bad = dir.path().join("bad.csm");
    std::fs::write(&bad, &bytes).unwrap();
    let out = csipose(&["bench", "--model", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csm") && err.contains("CRC32"), "{err}");
}
