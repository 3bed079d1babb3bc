//! `csipose train`, `--resume` and `csipose predict` end to end on a small synthetic dataset.

mod common;

use common::synthetic;
use std::process::Command;

fn csipose(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "csipose {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn train_resume_predict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let run = dir.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    csipose(&[
        "train", "--data", d, "--model", "nano", "--epochs", "2", "--batch", "32", "--out", r,
    ]);
    for f in [
        "checkpoint.safetensors",
        "config.json",
        "metrics.json",
        "curves.png",
        "pck.png",
        "skeletons.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["epochs"], 2);
    assert!(m["val_torso_pck20"].as_f64().is_some());
    assert_eq!(m["history"].as_array().unwrap().len(), 2);
    // resuming a finished run changes nothing
    let before = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    csipose(&["train", "--resume", r]);
    assert_eq!(
        before,
        std::fs::read(run.join("checkpoint.safetensors")).unwrap()
    );

    let kp = dir.path().join("kp.npy");
    csipose(&[
        "predict",
        "--checkpoint",
        r,
        "--data",
        d,
        "--out",
        kp.to_str().unwrap(),
        "--tta",
    ]);
    let a: csipose_npy::Array<f32> = csipose_npy::read(&kp).unwrap();
    assert_eq!(a.shape, vec![300, 17, 2]);
    assert!(a.data.iter().all(|v| v.is_finite()));

    // eval with the checkpoint, plain and with TTA
    for tta in [false, true] {
        let json = dir.path().join(format!("eval-{tta}.json"));
        let mut a = vec![
            "eval",
            "--data",
            d,
            "--checkpoint",
            r,
            "--split",
            "random",
            "--json",
            json.to_str().unwrap(),
        ];
        if tta {
            a.push("--tta");
        }
        let out = csipose(&a);
        assert!(String::from_utf8_lossy(&out.stdout).contains("torso-PCK@0.2"));
        let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let p = e["torso_pck"]["pck"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(
            e["source"]["tta_views"].as_array().unwrap().len(),
            if tta { 4 } else { 1 }
        );
        if !tta {
            // same split and EMA weights as training: the same number as metrics.json
            assert!((p - m["val_torso_pck20"].as_f64().unwrap()).abs() < 1e-9);
        }
    }

    // eval --views: exactly the named views; "identity" alone is the plain evaluation
    let json = dir.path().join("eval-views.json");
    let j = json.to_str().unwrap();
    csipose(&[
        "eval",
        "--data",
        d,
        "--checkpoint",
        r,
        "--split",
        "random",
        "--views",
        "identity",
        "--json",
        j,
    ]);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(e["source"]["tta_views"], serde_json::json!(["identity"]));
    let p = e["torso_pck"]["pck"].as_f64().unwrap();
    assert!((p - m["val_torso_pck20"].as_f64().unwrap()).abs() < 1e-9);
    csipose(&[
        "eval",
        "--data",
        d,
        "--checkpoint",
        r,
        "--split",
        "random",
        "--views",
        "identity,channel-a,channel-b",
        "--json",
        j,
    ]);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(e["source"]["tta_views"].as_array().unwrap().len(), 3);
    let bad = Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args(["eval", "--data", d, "--checkpoint", r, "--split", "random"])
        .args(["--views", "identity,upside-down"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown view \"upside-down\""));

    // clear errors
    let bad = Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args(["predict", "--checkpoint", d, "--data", d, "--out", "x.npy"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checkpoint.safetensors"));
}

#[test]
fn models_json_lists_counts_and_flops() {
    let out = csipose(&["models", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let get = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
    assert_eq!(get("nano")["parameters"], 39_971);
    assert_eq!(get("nano")["difference"], 0);
    assert_eq!(get("flagship")["parameters"], 2_320_869);
    assert_eq!(get("flagship")["graph_width"], 96);
    for r in rows {
        let d = r["difference"].as_i64().unwrap();
        assert!(d.abs() < 200, "{r}");
        assert!(r["flops_per_forward"].as_u64().unwrap() > 0);
    }
    // FLOPs grow with the model
    let f: Vec<u64> = rows
        .iter()
        .map(|r| r["flops_per_forward"].as_u64().unwrap())
        .collect();
    assert!(f.windows(2).all(|w| w[0] < w[1]));
}
