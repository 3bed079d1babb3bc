//! End-to-end tests of `csipose capture ...` on the real captures in ../shared/captures.

mod common;

use common::{csipose, ok};

use std::path::{Path, PathBuf};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared")).join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn export_writes_the_reference_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 6] = [
        ("example.dat", &[], "example.dat.csi.npy"),
        ("example.dat", &["--scaled"], "example.dat.scaled.npy"),
        (
            "example_4358.pcap",
            &["--chip", "4358", "--bw", "80"],
            "example_4358.pcap.csi.npy",
        ),
        ("example_4366c0.pcap", &[], "example_4366c0.pcap.csi.npy"),
        (
            "ath_csi_1.dat",
            &["--format", "atheros"],
            "ath_csi_1.dat.csi.npy",
        ),
        ("example_csi.csv", &[], "example_csi.csv.csi.npy"),
    ];
    for (i, (file, extra, reference)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("{i}.npy"));
        let input = shared(&format!("captures/{file}"));
        let mut args = vec!["capture", "export", s(&input), "--out", s(&out)];
        args.extend_from_slice(extra);
        ok(&args);
        let got = csipose_npy::read::<f64>(&out).unwrap();
        let want = csipose_npy::read::<f64>(shared(&format!("captures/{reference}"))).unwrap();
        assert_eq!(got.shape, want.shape, "{file} {extra:?}");
        let scale = want.data.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(g, w)| (g - w).abs() / w.abs().max(scale * 1e-12))
            .fold(0f64, f64::max);
        assert!(worst <= 1e-9, "{file} {extra:?}: relative error {worst}");
    }
}

#[test]
fn info_json_matches_the_reference_metadata() {
    for file in ["example.dat", "ath_csi_1.dat", "example_csi.csv"] {
        let text = ok(&[
            "capture",
            "info",
            s(&shared(&format!("captures/{file}"))),
            "--json",
        ]);
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(shared(&format!("captures/{file}.ref.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(got["frames"], want["frames"], "{file}");
        let (g, w) = (
            got["per_frame"].as_array().unwrap(),
            want["per_frame"].as_array().unwrap(),
        );
        assert_eq!(g.len(), w.len());
        for (gf, wf) in g.iter().zip(w) {
            for (key, wv) in wf.as_object().unwrap() {
                let gv = &gf[key];
                match (gv.as_f64(), wv.as_f64()) {
                    (Some(a), Some(b)) => assert_eq!(a, b, "{file} {key}"),
                    _ => assert_eq!(gv, wv, "{file} {key}"),
                }
            }
        }
    }
}

#[test]
fn inspect_writes_a_png_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("heat.png");
    let text = ok(&[
        "capture",
        "inspect",
        s(&shared("captures/example.dat")),
        "--png",
        s(&png),
    ]);
    assert!(text.contains("frames: 26"), "{text}");
    assert!(text.contains("antenna 2"), "{text}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn truncated_capture_keeps_complete_frames_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(shared("captures/example.dat")).unwrap();
    let cut = dir.path().join("cut.dat");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out_npy = dir.path().join("cut.npy");
    let out = csipose(&["capture", "export", s(&cut), "--out", s(&out_npy)]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("truncated record") && stderr.contains("byte "),
        "{stderr}"
    );
    let got = csipose_npy::read::<f64>(&out_npy).unwrap();
    assert_eq!(got.shape[0], 25);
}

#[test]
fn unknown_content_is_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, [0x00u8, 0x10, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).unwrap();
    let out = csipose(&["capture", "info", s(&junk)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("junk.bin"), "{stderr}");
    for f in ["nexmon:", "esp32:", "intel5300:", "atheros:"] {
        assert!(stderr.contains(f), "{f} missing in {stderr}");
    }
    // No output file is left behind by a failed export.
    let npy = dir.path().join("x.npy");
    assert!(!csipose(&["capture", "export", s(&junk), "--out", s(&npy)])
        .status
        .success());
    assert!(!npy.exists());
}

#[test]
fn to_dataset_windows_captures_with_manifest_labels() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("labels.csv");
    let a = shared("wiar/height90/csi_a1_1.dat");
    let b = shared("wiar/height90/csi_a12_1.dat");
    std::fs::write(
        &manifest,
        format!("file,label\n{},1\n{},12\n", s(&a), s(&b)),
    )
    .unwrap();
    let out = dir.path().join("ds");
    ok(&[
        "capture",
        "to-dataset",
        "--manifest",
        s(&manifest),
        "--packets",
        "30",
        "--out",
        s(&out),
    ]);
    let ds = csipose_dataset::PackedDataset::open(&out).unwrap();
    assert_eq!(ds.info.hardware.antennas, 3);
    assert_eq!(ds.info.hardware.subcarriers, 30);
    assert_eq!(ds.info.hardware.packets, 30);
    assert!(ds.len() >= 16, "{} windows", ds.len());
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..ds.len() {
        let m = ds.meta(i);
        seen.insert((m.subject, m.action));
        let x = ds.x(i);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(ds.y(i).iter().all(|&v| v == 0.0));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![(1, 1), (2, 12)]);
    // The MM-Fi profile interpolates 30 -> 114 subcarriers.
    let out2 = dir.path().join("ds2");
    ok(&[
        "capture",
        "to-dataset",
        s(&a),
        "--profile",
        "mmfi",
        "--out",
        s(&out2),
    ]);
    let ds2 = csipose_dataset::PackedDataset::open(&out2).unwrap();
    assert_eq!(ds2.x(0).len(), 3 * 114 * 10);
    assert_eq!(ds2.meta(0).action, 0);
    // Nexmon: the 4358 capture holds cores 0-1 x spatial streams 0-1 of one frame,
    // which become one packet with two antennas.
    let out3 = dir.path().join("ds3");
    let pcap = shared("captures/example_4358.pcap");
    ok(&[
        "capture",
        "to-dataset",
        s(&pcap),
        "--packets",
        "1",
        "--out",
        s(&out3),
    ]);
    let ds3 = csipose_dataset::PackedDataset::open(&out3).unwrap();
    assert_eq!((ds3.len(), ds3.info.hardware.antennas), (1, 2));
    assert_eq!(ds3.info.hardware.subcarriers, 256);
}
