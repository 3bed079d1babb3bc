//! The probes of RELIABILITY.md "Commands and inputs": an output that resolves to an input is
//! refused before any work (by path, through `.` and by hard link) and the input is left intact;
//! every float option is checked (finite, in range) with the flag and range named; thread counts
//! are capped; non-UTF-8 paths work; the simulator survives dropout probabilities of 1.

mod common;

use common::{copy_tree, csipose, csipose_os, hash_tree, mmfi_mini, ok, refused, s, synthetic};

/// The smallest simulation: one sequence of two frames.
const TINY: [&str; 8] = [
    "--envs",
    "1",
    "--subjects",
    "1",
    "--actions",
    "1",
    "--frames-per-seq",
    "2",
];

#[test]
fn an_output_equal_to_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    synthetic(&data, 20);
    let run = d.join("run");
    std::fs::create_dir(&run).unwrap();
    let ck = run.join("checkpoint.safetensors");
    std::fs::write(&ck, b"not read: the output check comes first").unwrap();
    let manifest = d.join("m.csv");
    std::fs::write(&manifest, "file,label\na.npy,0\nb.npy,1\n").unwrap();
    let model = d.join("model.rvne");
    std::fs::write(&model, b"not read either").unwrap();
    let link = d.join("link.npy");
    std::fs::hard_link(data.join("X.npy"), &link).unwrap();
    let mini = d.join("mini");
    copy_tree(&mmfi_mini(), &mini);
    let before = hash_tree(d);

    let x = data.join("X.npy");
    let dotted = data.join(".").join("X.npy");
    let overwrite = "would overwrite the input";
    for out in [&x, &dotted, &link, &ck] {
        let err = refused(
            &[
                "predict",
                "--checkpoint",
                s(&run),
                "--data",
                s(&data),
                "--out",
                s(out),
            ],
            overwrite,
        );
        assert!(err.contains("--out "), "{err}");
    }
    refused(
        &[
            "eval",
            "--data",
            s(&data),
            "--predictions",
            s(&d.join("p.npy")),
            "--json",
            s(&x),
        ],
        overwrite,
    );
    refused(
        &[
            "eval",
            "--data",
            s(&data),
            "--predictions",
            s(&d.join("p.npy")),
            "--json",
            s(&d.join("p.npy")),
        ],
        overwrite,
    );
    refused(
        &[
            "activity",
            "train",
            "--manifest",
            s(&manifest),
            "--out",
            s(&manifest),
        ],
        overwrite,
    );
    // A file the manifest names is an input too.
    refused(
        &[
            "activity",
            "train",
            "--manifest",
            s(&manifest),
            "--out",
            s(&d.join("b.npy")),
        ],
        overwrite,
    );
    refused(
        &[
            "activity",
            "eval",
            "--manifest",
            s(&manifest),
            "--model",
            s(&model),
            "--confusion-png",
            s(&model),
        ],
        "--confusion-png",
    );
    refused(
        &[
            "activity",
            "manifest",
            "--data",
            s(&data),
            "--out",
            s(&data.join("meta.npy")),
        ],
        overwrite,
    );
    refused(
        &[
            "quantize",
            "--checkpoint",
            s(&run),
            "--bits",
            "8",
            "--out",
            s(&ck),
        ],
        overwrite,
    );
    refused(
        &[
            "quantize",
            "--checkpoint",
            s(&run),
            "--bits",
            "8",
            "--out",
            s(&d.join("q.csm")),
            "--json",
            s(&d.join("q.csm")),
        ],
        "--out and --json",
    );
    refused(
        &[
            "quantize",
            "--checkpoint",
            s(&run),
            "--bits",
            "4",
            "--qat",
            "--qat-run",
            s(&run),
            "--out",
            s(&d.join("q.csm")),
        ],
        "--qat-run",
    );
    refused(&["import-mmfi", s(&mini), "--out", s(&mini)], "--out");
    refused(
        &["import-mmfi", s(&mini), "--out", s(&mini.join("E01"))],
        overwrite,
    );
    refused(
        &["frontier", "--data", s(&data), "--out", s(&data)],
        overwrite,
    );
    refused(
        &["demo", "--mmfi-mini", s(&mini), "--out", s(d)],
        "contains the input",
    );
    assert_eq!(before, hash_tree(d), "an input changed");
    assert!(!d.join("p.npy").exists() && !d.join("q.csm").exists());
}

#[test]
fn simulate_outputs_must_be_apart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let mut args = vec!["simulate", "--out", s(&out), "--mmfi-tree", s(&out)];
    args.extend_from_slice(&TINY);
    refused(&args, "--mmfi-tree and --out are both");
    let inner = out.join("tree");
    let mut args = vec!["simulate", "--out", s(&out), "--mmfi-tree", s(&inner)];
    args.extend_from_slice(&TINY);
    refused(&args, "one lies inside the other");
    let png = out.join("p.png");
    let mut args = vec!["simulate", "--out", s(&out), "--preview", s(&png)];
    args.extend_from_slice(&TINY);
    refused(&args, "--preview");
    assert!(!out.exists());
}

#[test]
fn float_options_are_finite_and_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let o = s(&out);
    for (flag, value, want) in [
        (
            "--snr-db",
            "nan",
            "--snr-db NaN is not a finite number in [-40, 200]",
        ),
        (
            "--subcarrier-dropout",
            "2",
            "--subcarrier-dropout 2 is not a finite number in [0, 1]",
        ),
        ("--packet-dropout", "-0.5", "--packet-dropout -0.5"),
        ("--body-rcs-scale", "nan", "--body-rcs-scale NaN"),
        ("--body-rcs-scale", "1e300", "[0, 100]"),
        ("--agc-jitter-db", "inf", "--agc-jitter-db inf"),
        ("--position-jitter", "5", "--position-jitter 5"),
        ("--heading-jitter", "-1", "--heading-jitter -1"),
    ] {
        let opt = format!("{flag}={value}");
        let mut args = vec!["simulate", "--out", o, &opt];
        args.extend_from_slice(&TINY);
        refused(&args, want);
    }
    assert!(!out.exists());
    let data = dir.path().join("data");
    synthetic(&data, 10);
    let d = s(&data);
    refused(
        &["eval", "--data", d, "--predictions", "p.npy", "--k", "nan"],
        "--k NaN is not a finite number in [0, 10]",
    );
    refused(
        &[
            "eval",
            "--data",
            d,
            "--split",
            "random",
            "--baseline",
            "mean",
            "--ratio",
            "2",
        ],
        "--ratio 2 is not a finite number in [0, 1]",
    );
    refused(
        &[
            "activity",
            "train",
            "--manifest",
            "m.csv",
            "--out",
            "x.rvne",
            "--lr",
            "nan",
        ],
        "--lr NaN is not a finite number in (0, 1]",
    );
    refused(
        &["activity", "cv", "--manifest", "m.csv", "--min-crop", "0"],
        "--min-crop 0 is not a finite number in [0.05, 1]",
    );
    refused(
        &[
            "activity", "manifest", "--data", d, "--out", "m.csv", "--ratio", "inf",
        ],
        "--ratio inf",
    );
    refused(
        &[
            "quantize",
            "--checkpoint",
            "run",
            "--bits",
            "4",
            "--qat",
            "--lr=-1",
            "--out",
            "q.csm",
        ],
        "--lr -1 is not a finite number in (0, 1]",
    );
    refused(
        &["temporal", "bench", "--budget", "nan"],
        "--budget NaN is not a finite number in (0, 3600]",
    );
}

#[test]
fn simulate_takes_dropout_one_and_caps_threads() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, i) in [("--subcarrier-dropout", 0), ("--packet-dropout", 1)] {
        let out = dir.path().join(format!("ds{i}"));
        let mut args = vec!["simulate", "--out", s(&out), flag, "1"];
        args.extend_from_slice(&TINY);
        ok(&args);
        let ds = csipose_dataset::PackedDataset::open(&out).unwrap();
        assert_eq!(ds.len(), 2);
        assert!((0..2).all(|f| ds.x(f).iter().all(|v| v.is_finite())));
    }
    let out = dir.path().join("threads");
    let mut args = vec!["simulate", "--out", s(&out), "--threads", "100000"];
    args.extend_from_slice(&TINY);
    let o = csipose(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("--threads 100000 capped to"), "{err}");
}

#[cfg(unix)]
#[test]
fn non_utf8_paths_are_recorded_lossily() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(OsStr::from_bytes(b"sim\xff"));
    let mut args: Vec<&OsStr> = vec![OsStr::new("simulate"), OsStr::new("--out"), out.as_os_str()];
    args.extend(TINY.iter().map(OsStr::new));
    let o = csipose_os(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = std::fs::read_to_string(out.join("dataset.json")).unwrap();
    assert!(info.contains("sim\u{fffd}"), "{info}");
    let mm = dir.path().join(OsStr::from_bytes(b"mm\xfe"));
    let mini = mmfi_mini();
    let o = csipose_os(&[
        OsStr::new("import-mmfi"),
        mini.as_os_str(),
        OsStr::new("--out"),
        mm.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = std::fs::read_to_string(mm.join("dataset.json")).unwrap();
    assert!(info.contains("mm\u{fffd}"), "{info}");
}
