//! Runs the built `csipose import-mmfi` on ../shared/mmfi-mini and on a corrupted copy.

mod common;

use common::csipose;

use csipose_dataset::PackedDataset;
use std::path::{Path, PathBuf};

fn mini() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/mmfi-mini"
    ))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn imports_the_mini_tree_and_prints_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds");
    let o = csipose(&["import-mmfi", s(&mini()), "--out", s(&out), "--with-phase"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let count = |label: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in {stdout}"));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(count("frames written"), "19", "{stdout}");
    assert_eq!(count("frame files read"), "20", "{stdout}");
    assert_eq!(count("skipped: empty frame file"), "1", "{stdout}");
    assert!(
        stdout.contains("E01/S01/A02/wifi-csi/frame004.mat"),
        "{stdout}"
    );
    let ds = PackedDataset::open(&out).unwrap();
    assert_eq!(ds.len(), 19);
    let mut exp = csipose_npy::Npz::open(mini().join("expected.npz")).unwrap();
    let csi = exp.read::<f64>("csi").unwrap().data;
    assert!(ds
        .x_all()
        .iter()
        .zip(&csi)
        .all(|(g, w)| (*g as f64 - w).abs() <= 1e-6));
    let meta = exp.read::<i64>("env_subject_action_frame").unwrap().data;
    let got: Vec<i64> = ds.meta_all().iter().map(|&v| v as i64).collect();
    assert_eq!(got, meta);
    assert!(out.join("phase.npy").exists());
    let cmd = ds.info.provenance["command"].as_str().unwrap();
    assert!(
        cmd.contains("import-mmfi") && cmd.contains("--with-phase"),
        "{cmd}"
    );
}

#[test]
fn a_corrupted_frame_fails_naming_it_and_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    // Only the E02 environment, with one frame file replaced by garbage.
    let seq = tree.join("E02/S11/A03");
    std::fs::create_dir_all(seq.join("wifi-csi")).unwrap();
    std::fs::create_dir_all(seq.join("rgb")).unwrap();
    let src = mini().join("E02/S11/A03");
    for i in 1..=5 {
        for (dir, ext) in [("wifi-csi", "mat"), ("rgb", "npy")] {
            let name = format!("{dir}/frame{i:03}.{ext}");
            std::fs::write(seq.join(&name), std::fs::read(src.join(&name)).unwrap()).unwrap();
        }
    }
    let bad = seq.join("wifi-csi/frame003.mat");
    std::fs::write(&bad, b"MATLAB 5.0 MAT-file, but not really").unwrap();
    let out = tmp.path().join("ds");
    let o = csipose(&["import-mmfi", s(&tree), "--out", s(&out)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains(s(&bad)), "{stderr}");
    assert!(stderr.contains("128-byte header"), "{stderr}");
    assert!(!out.exists());

    let o = csipose(&["import-mmfi", s(&tree), "--out", s(&out), "--skip-bad"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains(s(&bad)), "{stdout}");
    assert_eq!(PackedDataset::open(&out).unwrap().len(), 4);
}

#[test]
fn bad_arguments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds");
    let o = csipose(&[
        "import-mmfi",
        s(&mini()),
        "--out",
        s(&out),
        "--image-size",
        "640by480",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("WIDTHxHEIGHT"));
    let o = csipose(&["import-mmfi", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--out",
        "--keypoints",
        "--image-size",
        "--skip-bad",
        "--with-phase",
    ] {
        assert!(help.contains(flag), "{help}");
    }
    assert!(!out.exists());
}
