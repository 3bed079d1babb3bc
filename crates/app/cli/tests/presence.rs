//! `csipose presence` on the real ESPectre recordings and on a capture too short to calibrate.

mod common;
use common::{csipose, ok};
use std::path::PathBuf;

fn espectre() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/espectre"
    ))
}

#[test]
fn empty_room_recording_calibrates_and_stays_quiet() {
    let f = espectre().join("baseline/baseline_c3_64sc_20260329_130303.npz");
    let out = ok(&["presence", "--json", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["packets"], 1017);
    assert_eq!(v["subcarriers"], 64);
    let cal = v["calibrated_at_packet"].as_u64().expect("calibrated");
    assert!(cal < 600, "calibrated late: {cal}");
    let scored = v["scored_packets"].as_u64().unwrap();
    assert_eq!(scored, 1017 - cal);
    let motion = v["motion_packets"].as_u64().unwrap();
    assert!(
        motion * 20 < scored,
        "motion in {motion}/{scored} empty-room packets"
    );
}

/// The published evaluation (BENCHMARKS.md): with the default settings, chips C3, C5 and S3
/// stay at or above ESPectre's published anchors (C3 F1 98.0%, S3 false-positive rate 2.8%).
#[test]
fn espectre_evaluation_holds_its_numbers() {
    let out = ok(&[
        "presence",
        "--json",
        "--evaluate",
        espectre().to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let chip = |c: &str, k: &str| v["given_settings"]["per_chip"][c][k].as_f64().unwrap();
    assert!(chip("c3", "f1") >= 0.98, "{}", chip("c3", "f1"));
    assert!(chip("s3", "false_positive_rate") <= 0.028);
    assert!(chip("c5", "f1") >= 0.98);
    // Every packet of every session is either scored or counted as unscored.
    let per = &v["given_settings"]["per_chip"];
    let total: u64 = ["c3", "c5", "c6", "esp32", "s3"]
        .iter()
        .map(|c| {
            ["tp", "fp", "fn", "tn", "unscored"]
                .iter()
                .map(|k| per[c][k].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(total, 23_145, "packets in the ten sessions");
    assert_eq!(v["session_folds"]["folds"].as_array().unwrap().len(), 2);
}

#[test]
fn short_capture_reports_no_calibration_and_bad_flags_are_refused() {
    let cap = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures/example_4366c0.pcap"
    ));
    let out = ok(&["presence", cap.to_str().unwrap()]);
    assert!(out.contains("never calibrated"), "{out}");
    let o = csipose(&["presence", "--margin", "nan", cap.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("margin"), "{err}");
    let o = csipose(&["presence", "/nonexistent/x.npz"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.npz"));
}
