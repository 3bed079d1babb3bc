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

fn fails(args: &[&str]) -> String {
    let out = csipose(args);
    assert!(
        !out.status.success(),
        "csipose {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn to_dataset_replaces_only_a_csipose_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let caps = dir.path().join("caps");
    std::fs::create_dir(&caps).unwrap();
    let input = caps.join("example.dat");
    std::fs::copy(shared("captures/example.dat"), &input).unwrap();
    // The folder holding the input.
    let e = fails(&[
        "capture",
        "to-dataset",
        s(&input),
        "--packets",
        "5",
        "--out",
        s(&caps),
    ]);
    assert!(e.contains("contains the input"), "{e}");
    assert!(input.exists());
    // A folder of the user's.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), b"keep me").unwrap();
    let e = fails(&[
        "capture",
        "to-dataset",
        s(&input),
        "--packets",
        "5",
        "--out",
        s(&mine),
    ]);
    assert!(e.contains("not a csipose dataset"), "{e}");
    assert_eq!(std::fs::read(mine.join("notes.txt")).unwrap(), b"keep me");
    // A dataset it wrote is replaced.
    let ds = dir.path().join("ds");
    for _ in 0..2 {
        ok(&[
            "capture",
            "to-dataset",
            s(&input),
            "--packets",
            "5",
            "--out",
            s(&ds),
        ]);
    }
    assert_eq!(csipose_dataset::PackedDataset::open(&ds).unwrap().len(), 5);
}

#[test]
fn outputs_that_resolve_to_the_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.dat");
    std::fs::copy(shared("captures/example.dat"), &input).unwrap();
    let want = std::fs::read(&input).unwrap();
    let dotted = dir.path().join(".").join("in.dat");
    let link = dir.path().join("link.dat");
    std::fs::hard_link(&input, &link).unwrap();
    for out in [&input, &dotted, &link] {
        let e = fails(&["capture", "export", s(&input), "--out", s(out)]);
        assert!(e.contains("would overwrite the input"), "{e}");
        let e = fails(&["capture", "inspect", s(&input), "--png", s(out)]);
        assert!(e.contains("would overwrite the input"), "{e}");
    }
    assert_eq!(std::fs::read(&input).unwrap(), want);
}

#[test]
fn a_missing_output_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared("captures/example.dat");
    let npy = dir.path().join("nodir").join("x.npy");
    let e = fails(&["capture", "export", s(&input), "--out", s(&npy)]);
    assert!(
        e.contains("nodir does not exist") && !e.contains(".tmp-"),
        "{e}"
    );
    let png = dir.path().join("nodir").join("x.png");
    let e = fails(&["capture", "inspect", s(&input), "--png", s(&png)]);
    assert!(
        e.contains("nodir does not exist") && !e.contains(".tmp-"),
        "{e}"
    );
}

#[test]
fn esp32_byte_order_mark_keeps_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(&std::fs::read(shared("captures/example_csi.csv")).unwrap());
    let bom = dir.path().join("bom.csv");
    std::fs::write(&bom, bytes).unwrap();
    let npy = dir.path().join("bom.npy");
    ok(&["capture", "export", s(&bom), "--out", s(&npy)]);
    let got = csipose_npy::read::<f64>(&npy).unwrap();
    let want = csipose_npy::read::<f64>(shared("captures/example_csi.csv.csi.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    assert_eq!(got.data, want.data);
}

/// Every packet of a little-endian pcap with 4 FCS bytes appended (lengths grown to match).
fn with_fcs(pcap: &[u8]) -> Vec<u8> {
    let mut out = pcap[..24].to_vec();
    let mut at = 24;
    while at < pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.extend_from_slice(&pcap[at..at + 8]);
        out.extend_from_slice(&((incl + 4) as u32).to_le_bytes());
        out.extend_from_slice(&((incl + 4) as u32).to_le_bytes());
        out.extend_from_slice(&pcap[at + 16..at + 16 + incl]);
        out.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        at += 16 + incl;
    }
    out
}

#[test]
fn nexmon_packets_with_an_fcs_decode_like_the_plain_capture() {
    let dir = tempfile::tempdir().unwrap();
    let fcs = dir.path().join("fcs.pcap");
    std::fs::write(
        &fcs,
        with_fcs(&std::fs::read(shared("captures/example_4366c0.pcap")).unwrap()),
    )
    .unwrap();
    let npy = dir.path().join("fcs.npy");
    let text = ok(&["capture", "export", s(&fcs), "--out", s(&npy)]);
    assert!(!text.contains("not decoded"), "{text}");
    let got = csipose_npy::read::<f64>(&npy).unwrap();
    let want = csipose_npy::read::<f64>(shared("captures/example_4366c0.pcap.csi.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    assert_eq!(got.data, want.data);
}

#[test]
fn zero_frames_is_an_error_that_gives_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = shared("captures/example_4358.pcap");
    let npy = dir.path().join("x.npy");
    for cmd in ["info", "export"] {
        let mut args = vec!["capture", cmd, s(&pcap), "--bw", "20"];
        if cmd == "export" {
            args.extend(["--out", s(&npy)]);
        }
        let e = fails(&args);
        assert!(
            e.contains("no CSI frames") && e.contains("4 packets of 80 MHz CSI (20 MHz asked for)"),
            "{e}"
        );
    }
    assert!(!npy.exists());
    // An empty file, format given or not.
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    for f in ["auto", "nexmon", "esp32", "intel5300", "atheros"] {
        let e = fails(&["capture", "info", s(&empty), "--format", f]);
        assert!(e.contains("empty.pcap: the file is empty"), "{f}: {e}");
    }
    // Every record bad and --skip-bad: still an error, with the count.
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "CSI_DATA,AP,x,notanumber,[1 2]\n".repeat(3)).unwrap();
    let e = fails(&[
        "capture",
        "info",
        s(&csv),
        "--format",
        "esp32",
        "--skip-bad",
    ]);
    assert!(
        e.contains("no CSI frames") && e.contains("3 malformed lines"),
        "{e}"
    );
}

#[test]
fn a_file_level_error_is_not_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let ng = dir.path().join("ng.pcap");
    let mut bytes = 0x0a0d_0d0au32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[7u8; 60]);
    std::fs::write(&ng, bytes).unwrap();
    let e = fails(&["capture", "info", s(&ng), "--format", "nexmon"]);
    assert!(
        e.contains("pcap magic") && !e.contains("use --skip-bad"),
        "{e}"
    );
    let e = fails(&[
        "capture",
        "info",
        s(&ng),
        "--format",
        "nexmon",
        "--skip-bad",
    ]);
    assert!(e.contains("--skip-bad does not skip"), "{e}");
}

#[test]
fn to_dataset_without_a_window_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let e = fails(&[
        "capture",
        "to-dataset",
        s(&shared("captures/example.dat")),
        "--packets",
        "4000000000",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("no windows") && e.contains("26 packets"), "{e}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let e = fails(&[
        "capture",
        "to-dataset",
        s(&shared("captures/example.dat")),
        "--stride",
        "0",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--stride must be at least 1"), "{e}");
}

/// The ESP32 example with every fourth row's CSI doubled to 128 subcarriers.
fn mixed_width_csv(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shared("captures/example_csi.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i % 4 == 3 {
            let (a, b) = (line.find('[').unwrap(), line.find(']').unwrap());
            let vals = &line[a + 1..b].trim();
            out.push_str(&format!("{}{vals} {vals}{}\n", &line[..=a], &line[b..]));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let p = dir.join("mixed.csv");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn mixed_widths_are_refused_everywhere_unless_one_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let csv = mixed_width_csv(dir.path());
    let npy = dir.path().join("m.npy");
    let png = dir.path().join("m.png");
    let ds = dir.path().join("ds");
    let runs: [Vec<&str>; 3] = [
        vec!["capture", "export", s(&csv), "--out", s(&npy)],
        vec!["capture", "inspect", s(&csv), "--png", s(&png)],
        vec![
            "capture",
            "to-dataset",
            s(&csv),
            "--packets",
            "2",
            "--out",
            s(&ds),
        ],
    ];
    for args in &runs {
        let e = fails(args);
        assert!(
            e.contains("mixed widths")
                && e.contains("10 frames of 64 subcarriers, 3 frames of 128 subcarriers")
                && e.contains("--subcarriers N"),
            "{args:?}: {e}"
        );
    }
    assert!(!npy.exists() && !png.exists() && !ds.exists());
    // info describes them instead.
    let text = ok(&["capture", "info", s(&csv)]);
    assert!(
        text.contains("3 frames of 1x128") && text.contains("mixed widths"),
        "{text}"
    );
    // --subcarriers keeps one width, and says what it left out.
    for args in &runs {
        let mut args = args.clone();
        args.extend(["--subcarriers", "64"]);
        let text = ok(&args);
        assert!(
            text.contains("3 frames of 128 subcarriers (--subcarriers 64 asked for)"),
            "{args:?}: {text}"
        );
    }
    assert_eq!(
        csipose_npy::read::<f64>(&npy).unwrap().shape,
        vec![10, 64, 2]
    );
    let d = csipose_dataset::PackedDataset::open(&ds).unwrap();
    assert_eq!((d.len(), d.info.hardware.subcarriers), (5, 64));
}

#[test]
fn info_and_export_print_what_was_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read_to_string(shared("captures/example_csi.csv")).unwrap();
    let csv = dir.path().join("noisy.csv");
    std::fs::write(&csv, format!("boot ok\nwifi: connected\n{plain}")).unwrap();
    let text = ok(&["capture", "info", s(&csv)]);
    assert!(
        text.contains("not decoded: 2")
            && text.contains("2 lines that are not CSI_DATA rows (console output)"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["capture", "info", s(&csv), "--json"])).unwrap();
    assert_eq!(
        json["not_decoded"]["lines that are not CSI_DATA rows (console output)"],
        2
    );
    let npy = dir.path().join("n.npy");
    let text = ok(&["capture", "export", s(&csv), "--out", s(&npy)]);
    assert!(
        text.contains("2 lines that are not CSI_DATA rows"),
        "{text}"
    );
    let ds = dir.path().join("ds");
    let text = ok(&[
        "capture",
        "to-dataset",
        s(&csv),
        "--packets",
        "4",
        "--out",
        s(&ds),
    ]);
    assert!(
        text.contains("2 lines that are not CSI_DATA rows")
            && text.contains("1 packets in no window"),
        "{text}"
    );
}
