//! End-to-end tests of `csipose split` and `csipose eval`: the built binary on the shared split
//! reference and on tiny packed datasets written here with `PackedWriter`.

mod common;

use common::{csipose, ok};

use csipose_dataset::packed::FrameMeta;
use csipose_dataset::{DatasetInfo, HardwareProfile, KeypointLayout, PackedWriter};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fails(args: &[&str]) -> String {
    let out = csipose(args);
    assert!(!out.status.success(), "csipose {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn split_json_matches_every_reference_table() {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/mmfi-mini/random_split_reference.json"
    );
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let tables = reference.as_object().unwrap();
    assert_eq!(tables.len(), 6);
    for (key, table) in tables {
        let parts: Vec<&str> = key.split('/').collect();
        let protocol = parts[0].trim_start_matches("protocol");
        let seed = parts[1].trim_start_matches("seed=");
        let ratio = parts[2].trim_start_matches("ratio=");
        let out = ok(&[
            "split",
            "--protocol",
            protocol,
            "--kind",
            "random",
            "--seed",
            seed,
            "--ratio",
            ratio,
            "--json",
        ]);
        let ours: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(&ours["actions"], table, "{key}");
    }
}

#[test]
fn split_table_and_errors() {
    let out = ok(&["split", "--protocol", "2", "--kind", "cross-subject"]);
    assert!(out.contains("protocol 2: 13 actions"), "{out}");
    assert!(
        out.contains("val   ( 8): S05 S10 S15 S20 S25 S30 S35 S40"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad-split.json");
    std::fs::write(
        &cfg,
        r#"{"train": {"subjects": ["S99"]}, "val": {"subjects": []}}"#,
    )
    .unwrap();
    let err = fails(&[
        "split",
        "--protocol",
        "1",
        "--kind",
        "manual",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        err.contains("bad-split.json") && err.contains("S99"),
        "{err}"
    );
    let err = fails(&["split", "--protocol", "4", "--kind", "random"]);
    assert!(err.contains("4"), "{err}");
}

/// A template pose (COCO-17 2D, in [0, 1]) with a torso of length ~0.3.
fn template(dims: usize) -> Vec<f32> {
    (0..17)
        .flat_map(|j| {
            let x = 0.3 + 0.02 * j as f32;
            let y = 0.2 + 0.035 * j as f32;
            let z = 0.1 * (j % 3) as f32;
            [x, y, z].into_iter().take(dims)
        })
        .collect()
}

/// 40 subjects x actions A01, A02 x 3 frames; CSI 12 random values; keypoints a linear function
/// of the CSI around the template. Returns the directory and the labels.
fn write_dataset(dir: &Path, layout: KeypointLayout) -> (PathBuf, Vec<f32>) {
    let hw = HardwareProfile {
        name: "test".into(),
        antennas: 2,
        subcarriers: 3,
        packets: 2,
        band: "5GHz".into(),
        bandwidth_mhz: 20.0,
    };
    let dims = layout.dims();
    let dest = dir.join(format!("ds-{}", layout.name()));
    let mut w = PackedWriter::create(&dest, DatasetInfo::new(hw, layout, "unit-test")).unwrap();
    let base = template(dims);
    let mut seed = 1u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut labels = Vec::new();
    for subject in 1..=40 {
        for action in 1..=2 {
            for frame in 1..=3 {
                let x: Vec<f32> = (0..12).map(|_| rnd()).collect();
                let y: Vec<f32> = base
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b + 0.1 * (x[i % 12] - 0.5) - 0.05 * (x[(i + 5) % 12] - 0.5))
                    .collect();
                let m = FrameMeta {
                    environment: (subject - 1) / 10 + 1,
                    subject,
                    action,
                    frame,
                };
                w.push(&x, &y, &[m]).unwrap();
                labels.extend(y);
            }
        }
    }
    w.finish().unwrap();
    (dest, labels)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn eval_perfect_predictions_all_frames_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, labels) = write_dataset(dir.path(), KeypointLayout::Coco17_2d);
    let pred = dir.path().join("pred.npy");
    csipose_npy::write(&pred, &[240, 17, 2], &labels).unwrap();
    let out_json = dir.path().join("out").join("metrics.json");
    std::fs::create_dir_all(out_json.parent().unwrap()).unwrap();
    let (d, p, j) = (
        ds.to_str().unwrap(),
        pred.to_str().unwrap(),
        out_json.to_str().unwrap(),
    );
    let table = ok(&["eval", "--data", d, "--predictions", p, "--json", j]);
    assert!(
        table.contains("torso-PCK@0.2") && table.contains("bbox-PCK@0.2 (bounding-box-normalised)"),
        "{table}"
    );
    assert!(table.contains("right_shoulder"), "{table}");
    let r = read_json(&out_json);
    assert_eq!(r["frames"], 240);
    assert_eq!(r["torso_pck"]["pck"], 1.0);
    assert_eq!(r["torso_pck"]["degenerate_torso"], 0);
    assert_eq!(r["bbox_pck"]["pck"], 1.0);
    assert_eq!(r["torso_pck_curve"].as_array().unwrap().len(), 51);
    assert_eq!(r["mpjpe"], Value::Null, "2D layout: no MPJPE");
    // Only the JSON is left in its directory (written atomically).
    assert_eq!(
        std::fs::read_dir(out_json.parent().unwrap())
            .unwrap()
            .count(),
        1
    );

    // With a cross-scene split, val = S31-S40: 10 subjects x 2 actions x 3 frames.
    ok(&[
        "eval",
        "--data",
        d,
        "--predictions",
        p,
        "--split",
        "cross-scene",
        "--json",
        j,
    ]);
    let r = read_json(&out_json);
    assert_eq!(r["frames"], 60);
    assert_eq!(r["split"]["kind"], "cross-scene");
    assert_eq!(r["split"]["subset"], "val");
    // Protocol 1 holds A02 only of A01/A02: half the frames.
    ok(&[
        "eval",
        "--data",
        d,
        "--predictions",
        p,
        "--split",
        "cross-scene",
        "--protocol",
        "1",
        "--subset",
        "all",
        "--json",
        j,
    ]);
    assert_eq!(read_json(&out_json)["frames"], 120);

    // Predictions with exactly the evaluated rows (val of cross-scene = the last 60 frames).
    let pv = dir.path().join("pred-val.npy");
    csipose_npy::write(&pv, &[60, 34], &labels[180 * 34..]).unwrap();
    ok(&[
        "eval",
        "--data",
        d,
        "--predictions",
        pv.to_str().unwrap(),
        "--split",
        "cross-scene",
        "--json",
        j,
    ]);
    assert_eq!(read_json(&out_json)["torso_pck"]["pck"], 1.0);

    // A manual split from a file: train S01-S20 on A01, validate S21-S23 on A01 and A02.
    let cfg = dir.path().join("manual.json");
    std::fs::write(
        &cfg,
        r#"{"train": {"subjects": ["S01", "S02", "S03", "S04", "S05", "S06", "S07", "S08", "S09",
            "S10", "S11", "S12", "S13", "S14", "S15", "S16", "S17", "S18", "S19", "S20"],
            "actions": ["A01"]},
            "val": {"subjects": ["S21", "S22", "S23"], "actions": ["A01", "A02"]}}"#,
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    ok(&[
        "eval",
        "--data",
        d,
        "--predictions",
        p,
        "--split",
        "manual",
        "--config",
        c,
        "--json",
        j,
    ]);
    let r = read_json(&out_json);
    assert_eq!(r["frames"], 3 * 2 * 3);
    assert_eq!(r["split"]["kind"], "manual");
    ok(&[
        "eval",
        "--data",
        d,
        "--baseline",
        "mean",
        "--split",
        "manual",
        "--config",
        c,
        "--subset",
        "train",
        "--json",
        j,
    ]);
    let r = read_json(&out_json);
    assert_eq!(
        (r["frames"].as_u64(), r["source"]["train_frames"].as_u64()),
        (Some(60), Some(60))
    );
    // --subset and --config need a split.
    let err = fails(&["eval", "--data", d, "--predictions", p, "--subset", "train"]);
    assert!(err.contains("--split"), "{err}");
    let err = fails(&["eval", "--data", d, "--predictions", p, "--config", c]);
    assert!(err.contains("--split"), "{err}");

    // Wrong row count: an error naming the file.
    let err = fails(&["eval", "--data", d, "--predictions", pv.to_str().unwrap()]);
    assert!(
        err.contains("pred-val.npy") && err.contains("60 rows"),
        "{err}"
    );
}

#[test]
fn eval_counts_errors_by_hand() {
    // Shift joint 0 of every prediction by 0.5 * torso length: correct at k = 0.5 and not at
    // k = 0.2, so torso-PCK@0.2 = 16/17 and per-joint PCK of joint 0 is 0.
    let dir = tempfile::tempdir().unwrap();
    let (ds, labels) = write_dataset(dir.path(), KeypointLayout::Coco17_2d);
    let mut pred = labels.clone();
    for f in 0..240 {
        let y = &labels[f * 34..(f + 1) * 34];
        let torso = ((y[12] - y[22]).powi(2) + (y[13] - y[23]).powi(2)).sqrt();
        pred[f * 34] += 0.45 * torso;
    }
    let p = dir.path().join("pred.npy");
    csipose_npy::write(&p, &[240, 34], &pred).unwrap();
    let j = dir.path().join("m.json");
    ok(&[
        "eval",
        "--data",
        ds.to_str().unwrap(),
        "--predictions",
        p.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]);
    let r = read_json(&j);
    let pck = r["torso_pck"]["pck"].as_f64().unwrap();
    assert!((pck - 16.0 / 17.0).abs() < 1e-12, "{pck}");
    assert_eq!(r["torso_pck"]["per_joint"][0], 0.0);
    assert_eq!(r["torso_pck"]["per_joint"][1], 1.0);
    assert_eq!(r["torso_pck_curve"][50]["pck"], 1.0);
}

#[test]
fn eval_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _) = write_dataset(dir.path(), KeypointLayout::Coco17_2d);
    let d = ds.to_str().unwrap();
    let j = dir.path().join("m.json");
    let js = j.to_str().unwrap();
    let run = |b: &str| {
        ok(&[
            "eval",
            "--data",
            d,
            "--baseline",
            b,
            "--split",
            "cross-subject",
            "--json",
            js,
        ]);
        read_json(&j)
    };
    let mean = run("mean");
    let ridge = run("ridge");
    assert_eq!(mean["source"]["baseline"], "mean");
    assert_eq!(mean["source"]["train_frames"], 192);
    assert_eq!(mean["frames"], 48);
    let (pm, pr) = (
        mean["torso_pck"]["pck"].as_f64().unwrap(),
        ridge["torso_pck"]["pck"].as_f64().unwrap(),
    );
    // Labels are an exact linear function of the CSI: ridge is (nearly) perfect, the mean is not.
    assert!(pr > 0.99, "ridge {pr}");
    assert!(pm < 0.95, "mean {pm}");
    assert!(ridge["source"]["ridge_alpha"].as_f64().unwrap() > 0.0);
    // --baseline needs a split.
    let err = fails(&["eval", "--data", d, "--baseline", "mean"]);
    assert!(err.contains("--split"), "{err}");
}

#[test]
fn eval_3d_reports_pa_mpjpe() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, labels) = write_dataset(dir.path(), KeypointLayout::H36m17_3d);
    // Rotate 90 degrees about z, scale 2, translate: PA-MPJPE 0, MPJPE large.
    let pred: Vec<f32> = labels
        .chunks_exact(3)
        .flat_map(|p| [-2.0 * p[1] + 1.0, 2.0 * p[0] - 3.0, 2.0 * p[2] + 0.5])
        .collect();
    let p = dir.path().join("pred.npy");
    csipose_npy::write(&p, &[240, 17, 3], &pred).unwrap();
    let j = dir.path().join("m.json");
    let table = ok(&[
        "eval",
        "--data",
        ds.to_str().unwrap(),
        "--predictions",
        p.to_str().unwrap(),
        "--json",
        j.to_str().unwrap(),
    ]);
    assert!(
        table.contains("PA-MPJPE") && table.contains("right_shoulder"),
        "{table}"
    );
    let r = read_json(&j);
    assert_eq!(r["layout"], "h36m17-3d");
    assert!(r["pa_mpjpe"].as_f64().unwrap() < 1e-5, "{}", r["pa_mpjpe"]);
    assert!(r["mpjpe"].as_f64().unwrap() > 1.0);
    assert_eq!(r["mpjpe_per_joint"].as_array().unwrap().len(), 17);
}

#[test]
fn eval_rejects_bad_prediction_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, labels) = write_dataset(dir.path(), KeypointLayout::Coco17_2d);
    let d = ds.to_str().unwrap();
    let good = dir.path().join("good.npy");
    csipose_npy::write(&good, &[240, 17, 2], &labels).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.path().join("bad.npy");
    let b = bad.to_str().unwrap();
    // Truncated at many points, and with flipped header bytes: never a panic, always an error
    // naming the file.
    let cuts = [0usize, 5, 9, 40, 127, 128, bytes.len() / 2, bytes.len() - 1];
    for cut in cuts {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let out = csipose(&["eval", "--data", d, "--predictions", b]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "cut {cut}: {err}");
        assert!(err.contains("bad.npy"), "cut {cut}: {err}");
    }
    for pos in [0usize, 6, 8, 10, 20, 30, 50] {
        let mut m = bytes.clone();
        m[pos] ^= 0x5a;
        std::fs::write(&bad, &m).unwrap();
        let out = csipose(&["eval", "--data", d, "--predictions", b]);
        assert!(
            out.status.code().is_some(),
            "killed by a signal at byte {pos}"
        );
        if !out.status.success() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("bad.npy"));
        }
    }
    // Wrong shape and a NaN.
    csipose_npy::write(&bad, &[240, 17, 3], &vec![0.0f32; 240 * 51]).unwrap();
    let err = fails(&["eval", "--data", d, "--predictions", b]);
    assert!(err.contains("bad.npy") && err.contains("shape"), "{err}");
    let mut nan = labels.clone();
    nan[100] = f32::NAN;
    csipose_npy::write(&bad, &[240, 34], &nan).unwrap();
    let err = fails(&["eval", "--data", d, "--predictions", b]);
    assert!(
        err.contains("bad.npy") && err.contains("not finite"),
        "{err}"
    );
}
