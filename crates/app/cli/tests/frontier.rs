//! `csipose frontier` end to end on a small synthetic dataset: trains micro, reuses the
//! finished run on a second call, quantizes it four ways plus QAT, and writes FRONTIER.md,
//! frontier.json and the Pareto PNG with PCKs measured on the model files.

mod common;

use common::{ok, synthetic};

#[test]
fn frontier_trains_reuses_quantizes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let out = dir.path().join("frontier");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "frontier",
        "--data",
        d,
        "--configs",
        "micro",
        "--epochs",
        "1",
        "--qat-epochs",
        "1",
        "--iters",
        "20",
        "--out",
        o,
    ];
    let first = ok(&args);
    assert!(first.contains("micro: training 1 epochs"), "{first}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("frontier.json")).unwrap()).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["parameters"].as_u64(), Some(75_085));
    let prec = v["precisions"].as_array().unwrap();
    let names: Vec<&str> = prec
        .iter()
        .map(|r| r["precision"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fp32",
            "int8 PTQ",
            "int8 PTQ per-channel",
            "int4 PTQ (naive)",
            "int4 PTQ per-channel",
            "int4 QAT"
        ]
    );
    // The fp32 file scores what the run's own evaluation of its checkpoint scores.
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("runs/micro/metrics.json")).unwrap())
            .unwrap();
    let fp32 = prec[0]["torso_pck20"].as_f64().unwrap();
    assert!((fp32 - metrics["val_torso_pck20"].as_f64().unwrap()).abs() < 1e-9);
    // int8 files are about a quarter of fp32, int4 about an eighth; latencies are positive.
    let size = |i: usize| prec[i]["file_bytes"].as_u64().unwrap();
    assert!(size(1) * 3 < size(0) && size(3) * 5 < size(0), "{prec:?}");
    assert!(prec.iter().all(|r| r["median_us"].as_f64().unwrap() > 0.0));
    let md = std::fs::read_to_string(out.join("FRONTIER.md")).unwrap();
    assert!(
        md.contains("| micro | 75085 |") && md.contains("| int4 QAT |"),
        "{md}"
    );
    let png = std::fs::read(out.join("pareto.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    // A second call reuses the finished run instead of training again.
    let second = ok(&args);
    assert!(
        second.contains("micro: reusing the finished run"),
        "{second}"
    );
}
