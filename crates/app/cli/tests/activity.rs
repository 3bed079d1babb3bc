//! End-to-end checks of `csipose activity train / eval / stream` on small synthetic amplitude
//! `.npy` sequences: the model file is a valid .rvne, eval reports JSON and writes a PNG, stream
//! prints one line per frame, and bad manifests fail with the file and line.

use std::path::Path;
use std::process::Command;

fn csipose() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csipose"))
}

/// Three classes of 4-channel amplitude sequences: slow wave, fast wave, flat + noise.
fn write_dataset(dir: &Path) -> std::path::PathBuf {
    let mut manifest = String::from("file,label\n");
    let mut state = 12345u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for label in 0..3usize {
        for rep in 0..8 {
            let packets = 100 + rep * 7;
            let mut data = Vec::new();
            for p in 0..packets {
                let t = p as f32;
                for c in 0..4 {
                    let base = 10.0 + c as f32;
                    let v = match label {
                        0 => base + 3.0 * (t * 0.05 + rep as f32).sin(),
                        1 => base + 3.0 * (t * 0.6 + rep as f32).sin(),
                        _ => base,
                    };
                    data.push(v + 0.3 * noise());
                }
            }
            let name = format!("s{label}_{rep}.npy");
            csipose_npy::write(dir.join(&name), &[packets, 4], &data).unwrap();
            manifest.push_str(&format!("{name},{label}\n"));
        }
    }
    let path = dir.join("train.csv");
    std::fs::write(&path, manifest).unwrap();
    path
}

#[test]
fn train_eval_stream_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_dataset(dir.path());
    let model = dir.path().join("model.rvne");
    let out = csipose()
        .args(["activity", "train", "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(&model)
        .args([
            "--epochs",
            "40",
            "--q-heads",
            "2",
            "--head-dim",
            "8",
            "--lr",
            "0.01",
            "--batch",
            "8",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&model).unwrap();
    let view = csipose_temporal::rvne::RvneView::parse(&bytes).unwrap();
    assert_eq!(
        view.header.input_dim, 12,
        "4 channels -> amplitude, change, centred"
    );
    assert_eq!(view.header.n_classes, 3);
    assert!(!view.header.dense);

    let png = dir.path().join("cm.png");
    let out = csipose()
        .args(["activity", "eval", "--json", "--manifest"])
        .arg(&manifest)
        .arg("--model")
        .arg(&model)
        .arg("--confusion-png")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "training-set accuracy {accuracy}");
    assert_eq!(report["sequences"], 24);
    assert_eq!(report["confusion"].as_array().unwrap().len(), 3);
    assert_eq!(report["per_class_accuracy"].as_object().unwrap().len(), 3);
    let image = std::fs::read(&png).unwrap();
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");

    let out = csipose()
        .args(["activity", "stream"])
        .arg(dir.path().join("s1_0.npy"))
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        25,
        "100 packets / stride 4 = 25 frames"
    );
    assert!(text.lines().last().unwrap().contains("class "));

    // A broken manifest names the file and the line.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "file,label\ns0_0.npy,zero\n").unwrap();
    let out = csipose()
        .args(["activity", "eval", "--manifest"])
        .arg(&bad)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:2"), "{err}");
}

/// Real Intel 5300 captures from WiAR go through the capture reader: a tiny model trains on
/// four files and streams one of them packet group by packet group.
#[test]
fn real_wiar_captures_train_and_stream() {
    let wiar = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/wiar/height90"
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::from("file,label\n");
    for (activity, rep) in [(1, 1), (1, 2), (12, 1), (12, 2)] {
        let file = wiar.join(format!("csi_a{activity}_{rep}.dat"));
        manifest.push_str(&format!("{},{activity}\n", file.display()));
    }
    let manifest_path = dir.path().join("wiar.csv");
    std::fs::write(&manifest_path, manifest).unwrap();
    let model = dir.path().join("wiar.rvne");
    let out = csipose()
        .args(["activity", "train", "--fp16", "--epochs", "2", "--manifest"])
        .arg(&manifest_path)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&model).unwrap();
    let view = csipose_temporal::rvne::RvneView::parse(&bytes).unwrap();
    assert!(view.header.fp16);
    assert_eq!(
        view.header.input_dim,
        270 + 180,
        "3 rx x 30 subcarriers: three amplitude blocks, three phase blocks per antenna pair"
    );
    assert_eq!(view.head.features, 1, "amplitude-phase");
    assert_eq!(
        view.header.n_classes, 13,
        "labels are class numbers up to 12"
    );
    let out = csipose()
        .args(["activity", "stream", "--every", "10"])
        .arg(wiar.join("csi_a1_1.dat"))
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("frame "), "{text}");
    let frames: usize = last.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((265 / 4..=324 / 4).contains(&frames), "{frames} frames");
}

fn run_ok(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = csipose().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "csipose {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Manifest rows that name sequences of a packed dataset (`DIR#S03/A12`, `DIR#E01/S03/A12`):
/// a tiny simulated dataset, amplitude features per dataset frame, and a pose model's pooled
/// encoder vectors (`--pose-features`), with the head config recording which.
#[test]
fn packed_dataset_sequences_and_pose_features() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let os = |s: &str| std::ffi::OsString::from(s);
    let p = |p: &Path| p.as_os_str().to_os_string();
    let args = |v: Vec<std::ffi::OsString>| v;
    let call = |v: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = v.iter().map(|s| s.as_os_str()).collect();
        run_ok(&refs)
    };
    // 5 subjects in E01 (S01..S05), 3 actions, 6 frames each.
    call(args(
        [
            "simulate",
            "--envs",
            "1",
            "--subjects",
            "5",
            "--actions",
            "3",
            "--frames-per-seq",
            "6",
            "--seed",
            "2",
            "--out",
        ]
        .map(os)
        .into_iter()
        .chain([p(&sim)])
        .collect(),
    ));
    // `activity manifest` lists every sequence, label = action - 1; a split keeps a subset.
    let all = dir.path().join("all.csv");
    call(
        ["activity", "manifest", "--data"]
            .map(os)
            .into_iter()
            .chain([p(&sim), os("--out"), p(&all)])
            .collect(),
    );
    let text = std::fs::read_to_string(&all).unwrap();
    assert_eq!(text.lines().count(), 1 + 15, "{text}");
    assert!(text.contains(&format!("{}#E01/S04/A02,1\n", sim.display())));
    let val = dir.path().join("val.csv");
    call(
        [
            "activity",
            "manifest",
            "--split",
            "cross-subject",
            "--subset",
            "val",
            "--data",
        ]
        .map(os)
        .into_iter()
        .chain([p(&sim), os("--out"), p(&val)])
        .collect(),
    );
    let text = std::fs::read_to_string(&val).unwrap();
    assert_eq!(text.lines().count(), 1 + 3, "only S05 validates: {text}");
    assert!(text.lines().skip(1).all(|l| l.contains("#E01/S05/")));

    // A hand-written manifest with relative paths and the short form.
    let manifest = dir.path().join("short.csv");
    std::fs::write(
        &manifest,
        "sim#S01/A01,0\nsim#s02/a03,2\nsim#E01/S03/A02,1\n",
    )
    .unwrap();
    let model = dir.path().join("amp.rvne");
    call(
        ["activity", "train", "--epochs", "2", "--manifest"]
            .map(os)
            .into_iter()
            .chain([p(&manifest), os("--out"), p(&model)])
            .collect(),
    );
    let bytes = std::fs::read(&model).unwrap();
    let view = csipose_temporal::rvne::RvneView::parse(&bytes).unwrap();
    assert_eq!(
        view.header.input_dim,
        3 * 3 * 114,
        "amplitude blocks of 3 x 114"
    );
    assert_eq!(view.head.features, 0, "no complex CSI: amplitude features");
    assert_eq!(view.head.stride, 10, "one feature frame per dataset frame");
    let out = call(
        ["activity", "stream"]
            .map(os)
            .into_iter()
            .chain([
                os(&format!("{}#S05/A03", sim.display())),
                os("--model"),
                p(&model),
            ])
            .collect(),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);

    // Pose-encoder features from a (briefly) trained pose model.
    let run = dir.path().join("run");
    call(
        [
            "train",
            "--model",
            "nano",
            "--epochs",
            "1",
            "--split",
            "cross-subject",
            "--data",
        ]
        .map(os)
        .into_iter()
        .chain([p(&sim), os("--out"), p(&run)])
        .collect(),
    );
    let pose_model = dir.path().join("pose.rvne");
    call(
        ["activity", "train", "--epochs", "3", "--manifest"]
            .map(os)
            .into_iter()
            .chain([
                p(&all),
                os("--pose-features"),
                p(&run),
                os("--out"),
                p(&pose_model),
            ])
            .collect(),
    );
    let bytes = std::fs::read(&pose_model).unwrap();
    let view = csipose_temporal::rvne::RvneView::parse(&bytes).unwrap();
    let d = csipose_model::ModelConfig::preset("nano").unwrap().d;
    assert_eq!(
        view.header.input_dim as usize,
        3 * d,
        "pooled vector, change, centred"
    );
    assert_eq!((view.head.features, view.head.stride), (2, 1));
    let out = call(
        ["activity", "eval", "--json", "--manifest"]
            .map(os)
            .into_iter()
            .chain([
                p(&val),
                os("--model"),
                p(&pose_model),
                os("--pose-features"),
                p(&run),
            ])
            .collect(),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sequences"], 3);
    assert_eq!(report["features"], "pose-encoder");

    // Errors: eval without the pose model, a malformed key (file and line), a missing sequence.
    let fail = |v: Vec<std::ffi::OsString>| {
        let out = csipose().args(&v).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fail(
        ["activity", "eval", "--manifest"]
            .map(os)
            .into_iter()
            .chain([p(&val), os("--model"), p(&pose_model)])
            .collect(),
    );
    assert!(err.contains("--pose-features"), "{err}");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "file,label\nsim#S01/A01,0\nsim#S01/X2,0\n").unwrap();
    let err = fail(
        ["activity", "train", "--manifest"]
            .map(os)
            .into_iter()
            .chain([p(&bad), os("--out"), p(&model)])
            .collect(),
    );
    assert!(err.contains("bad.csv:3") && err.contains("X2"), "{err}");
    std::fs::write(&bad, "sim#S09/A01,0\n").unwrap();
    let err = fail(
        ["activity", "train", "--manifest"]
            .map(os)
            .into_iter()
            .chain([p(&bad), os("--out"), p(&model)])
            .collect(),
    );
    assert!(
        err.contains("S09/A01") && err.contains("no frames"),
        "{err}"
    );
}

/// ESP32-HAR windows: `manifest --windows` writes the file pairs and the class line, and `cv
/// --search` nests the choice inside each outer fold (grouped by recording) and says so.
#[test]
fn esp32_windows_manifest_and_nested_cv() {
    let d2 = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/esp32-har/D2"
    ));
    if !d2.is_dir() {
        println!("SKIPPED: {} is absent", d2.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("d2.csv");
    run_ok(&[
        "activity".as_ref(),
        "manifest".as_ref(),
        "--windows".as_ref(),
        d2.as_os_str(),
        "--out".as_ref(),
        manifest.as_os_str(),
    ]);
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.starts_with("#classes,SEATED_RX,SEATED_TX,"), "{text}");
    assert_eq!(text.lines().filter(|l| l.ends_with("-y.npy")).count(), 4);
    let out = run_ok(
        &[
            "activity",
            "cv",
            "--folds",
            "2",
            "--grouped",
            "--search",
            "epochs=1,2",
            "--inner-folds",
            "2",
            "--stride",
            "10",
            "--head-dim",
            "4",
            "--q-heads",
            "2",
            "--json",
            "--manifest",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([manifest.as_os_str()])
        .collect::<Vec<_>>(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nested"], true);
    assert_eq!(v["grouped"], true);
    let run = &v["runs"][0];
    assert_eq!(run["chosen"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(run["inner_scores"][0].as_array().unwrap().len(), 2, "{v}");
    let acc = v["mean_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // Per-recording standardisation is not stored in a model file: writing one is refused,
    // before any training, whether it is asked for or searched over.
    let model = dir.path().join("m.rvne");
    for extra in [
        &["--recording-norm"][..],
        &["--search", "recording-norm=false,true"],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = ["activity", "train", "--epochs", "1", "--manifest"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
        args.push(manifest.as_os_str());
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend(["--out".as_ref(), model.as_os_str()]);
        let out = csipose().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("--recording-norm is not stored"), "{err}");
        assert!(!model.exists());
    }
}

/// The `.rvne` file stores the manifest's class names and `--context` / `--adapt-norm`; `eval`
/// and `stream` use them, and a flag that contradicts the file is refused.
#[test]
fn the_model_file_keeps_class_names_and_feature_settings() {
    let dir = tempfile::tempdir().unwrap();
    let plain_manifest = write_dataset(dir.path());
    let names = ["slow", "fast", "flat"];
    // Class numbers, named by the #classes line.
    let text = format!(
        "#classes,slow,fast,flat\n{}",
        std::fs::read_to_string(&plain_manifest).unwrap()
    );
    let manifest = dir.path().join("named.csv");
    std::fs::write(&manifest, text).unwrap();
    let small = ["--epochs", "3", "--q-heads", "2", "--head-dim", "4"];
    let run = |args: &[&std::ffi::OsStr]| csipose().args(args).output().unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);
    let train = |m: &Path, out: &Path, extra: &[&str]| {
        let mut a = vec![
            os("activity"),
            os("train"),
            os("--manifest"),
            m.into(),
            os("--out"),
            out.into(),
        ];
        a.extend(small.iter().chain(extra).map(|s| os(s)));
        let a: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        let o = run(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let named = dir.path().join("named.rvne");
    train(&manifest, &named, &["--adapt-norm", "--context", "2"]);
    let bytes = std::fs::read(&named).unwrap();
    let meta = csipose_temporal::rvne::RvneView::parse(&bytes)
        .unwrap()
        .meta()
        .expect("a META section");
    assert_eq!(meta.context, 2);
    assert!(meta.adapt_norm);
    assert_eq!(meta.classes.as_deref(), Some(&names.map(String::from)[..]));
    // A manifest without #classes: the settings, no names.
    let plain = dir.path().join("plain.rvne");
    train(&plain_manifest, &plain, &[]);
    let bytes = std::fs::read(&plain).unwrap();
    let meta = csipose_temporal::rvne::RvneView::parse(&bytes)
        .unwrap()
        .meta()
        .unwrap();
    assert_eq!(
        (meta.context, meta.adapt_norm, meta.classes),
        (0, false, None)
    );

    // eval uses the stored settings and reports them.
    let eval = |model: &Path, extra: &[&str]| {
        let mut a = vec![
            os("activity"),
            os("eval"),
            os("--json"),
            os("--manifest"),
            manifest.clone().into(),
            os("--model"),
            model.into(),
            os("--confusion-png"),
            dir.path().join("cm.png").into(),
        ];
        a.extend(extra.iter().map(|s| os(s)));
        let a: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        run(&a)
    };
    let o = eval(&named, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["adapt_norm"], true);
    assert_eq!(r["context"], 2);
    assert_eq!(r["classes"], serde_json::json!(names));
    assert!(eval(&named, &["--context", "2", "--adapt-norm"])
        .status
        .success());
    // Contradicting flags are refused, naming the flag, the file and its value.
    let o = eval(&named, &["--context", "0"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && e.contains("--context 0") && e.contains("--context 2"),
        "{e}"
    );
    let o = eval(&plain, &["--adapt-norm"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && e.contains("trained without --adapt-norm"),
        "{e}"
    );
    // An ensemble whose files store different settings is refused.
    let mut a = vec![
        os("activity"),
        os("eval"),
        os("--manifest"),
        manifest.clone().into(),
        os("--model"),
        named.clone().into(),
        os("--model"),
        plain.clone().into(),
        os("--confusion-png"),
        dir.path().join("cm2.png").into(),
    ];
    let args: Vec<&std::ffi::OsStr> = a.iter_mut().map(|s| s.as_os_str()).collect();
    let o = run(&args);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("an ensemble needs them equal"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // stream names the class and adapts the normalisation as the model was trained.
    let o = run(&[
        "activity".as_ref(),
        "stream".as_ref(),
        dir.path().join("s1_0.npy").as_os_str(),
        "--model".as_ref(),
        named.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last = String::from_utf8(o.stdout).unwrap();
    let last = last.lines().last().unwrap();
    assert!(
        names.iter().any(|n| last.contains(&format!("({n})"))),
        "{last}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("re-estimated"));
}

/// `stream` of a windows file uses the `--context` stored in the model: each window is streamed
/// after its stored number of earlier windows (seen in the frame count), its predictions agree
/// with `eval` of the same file, and a contradicting `--context` is refused.
#[test]
fn stream_of_windows_uses_the_stored_context() {
    let dir = tempfile::tempdir().unwrap();
    let train_csv = write_cycling_windows(dir.path(), 99, 0.3);
    let windows = 9usize;
    let model = dir.path().join("w.rvne");
    let s = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(|a| a.into()).collect() };
    let mut args = s(&[
        "activity",
        "train",
        "--epochs",
        "3",
        "--q-heads",
        "2",
        "--head-dim",
        "4",
        "--stride",
        "2",
        "--context",
        "2",
    ]);
    args.extend(["--manifest".into(), train_csv.clone().into()]);
    args.extend(["--out".into(), model.clone().into()]);
    run_ok(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let file = dir.path().join("r1-x.npy");
    let stream = |extra: &[&str]| {
        let mut a = s(&["activity", "stream"]);
        a.push(file.clone().into());
        a.extend(["--model".into(), model.clone().into()]);
        a.extend(s(extra));
        csipose().args(&a).output().unwrap()
    };
    let o = stream(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), windows, "{text}");
    // 20 samples at stride 2 = 10 frames per window; up to 2 earlier windows before each.
    for (w, line) in lines.iter().enumerate() {
        let frames = 10 * (w.min(2) + 1);
        assert!(
            line.contains(&format!("({frames} frames, context {})", w.min(2))),
            "{line}"
        );
    }
    assert_eq!(stream(&["--context", "2"]).stdout, text.as_bytes());
    let o = stream(&["--context", "0"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && e.contains("--context 0") && e.contains("--context 2"),
        "{e}"
    );
    // The same predictions as eval of that file (which reads the stored context too).
    let predicted_right = lines
        .iter()
        .filter(|l| {
            let class = l.split("class ").nth(1).unwrap().split(' ').next().unwrap();
            let label = l.split("(labelled ").nth(1).unwrap().trim_end_matches(')');
            class == label
        })
        .count();
    let one = dir.path().join("one.csv");
    std::fs::write(&one, "r1-x.npy,r1-y.npy\n").unwrap();
    let mut a = s(&["activity", "eval", "--json"]);
    a.extend([
        "--manifest".into(),
        one.into(),
        "--model".into(),
        model.clone().into(),
    ]);
    a.extend(["--confusion-png".into(), dir.path().join("c.png").into()]);
    let o = run_ok(&a.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["context"], 2);
    let acc = r["accuracy"].as_f64().unwrap();
    assert!(
        (acc - predicted_right as f64 / windows as f64).abs() < 1e-9,
        "eval {acc}, stream {predicted_right}/{windows}"
    );
}

/// `transfer --validate-on`: the choice is made on the named validation session alone (the
/// reported session's labels cannot change it), it may not be a test manifest, and
/// `--validate-each` gives the same choices and numbers as one `--validate-on` run per session.
#[test]
fn transfer_chooses_on_a_named_validation_session() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    // Recordings 0-3 train, 4-5 validate, 6-7 are reported.
    let part = |reps: std::ops::Range<usize>, poison: bool| {
        let mut t = String::from("file,label\n");
        for label in 0..3usize {
            for rep in reps.clone() {
                let l = if poison { (label + 1) % 3 } else { label };
                t.push_str(&format!("s{label}_{rep}.npy,{l}\n"));
            }
        }
        t
    };
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let train = write("tr.csv", part(0..4, false));
    let val = write("va.csv", part(4..6, false));
    let test = write("te.csv", part(6..8, false));
    let poisoned = write("tp.csv", part(6..8, true));
    let transfer = |extra: Vec<std::ffi::OsString>| {
        let mut a: Vec<std::ffi::OsString> = [
            "activity",
            "transfer",
            "--json",
            "--seeds",
            "2",
            "--q-heads",
            "2",
            "--head-dim",
            "4",
            "--search",
            "epochs=1,4",
            "--search",
            "lr=0.002,0.02",
        ]
        .iter()
        .map(|s| s.into())
        .collect();
        a.extend(["--train".into(), train.clone().into()]);
        a.extend(extra);
        csipose().args(&a).output().unwrap()
    };
    let json = |o: std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let on = |v: &Path, t: &Path| {
        json(transfer(vec![
            "--validate-on".into(),
            v.into(),
            "--test".into(),
            t.into(),
        ]))
    };
    let honest = on(&val, &test);
    let chosen = |r: &serde_json::Value| -> Vec<String> {
        r["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|run| run["chosen"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(chosen(&honest).len(), 2);
    // Every combination was scored on the validation session, per seed.
    assert_eq!(
        honest["runs"][0]["selection_scores"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // Poisoned labels of the reported session change its accuracy, never the choice.
    let poisoned_run = on(&val, &poisoned);
    assert_eq!(chosen(&poisoned_run), chosen(&honest));
    assert_eq!(
        poisoned_run["runs"][0]["selection_scores"],
        honest["runs"][0]["selection_scores"]
    );
    // The validation session may not be a test manifest.
    let o = transfer(vec![
        "--validate-on".into(),
        val.clone().into(),
        "--test".into(),
        val.clone().into(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither --train nor a --test"));
    // --validate-each: the same choice on va and the same accuracy on te, and te's turn as
    // the validation session equals a --validate-on te run.
    let each = json(transfer(vec![
        "--validate-each".into(),
        "--test".into(),
        val.clone().into(),
        "--test".into(),
        test.clone().into(),
    ]));
    let back = on(&test, &val);
    // Steps a model file cannot store are refused with --out, before any training.
    let model = dir.path().join("m.rvne");
    for (extra, key) in [
        (&["--tent", "5"][..], "--tent"),
        (&["--search", "self-train=0,1"], "--self-train"),
        (&["--ensemble", "2"], "--ensemble"),
    ] {
        let mut a: Vec<std::ffi::OsString> = vec![
            "activity".into(),
            "transfer".into(),
            "--train".into(),
            train.clone().into(),
            "--test".into(),
            test.clone().into(),
            "--out".into(),
            model.clone().into(),
        ];
        a.extend(extra.iter().map(|s| s.into()));
        let o = csipose().args(&a).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(1) && e.contains(&format!("{key} is not stored")),
            "{e}"
        );
        assert!(!model.exists());
    }
    for seed in 0..2 {
        let c = &each["runs"][seed]["choices"];
        assert_eq!(c[0]["chosen"], honest["runs"][seed]["chosen"]);
        assert_eq!(c[0]["accuracy"][1], honest["runs"][seed]["accuracy"][0]);
        assert_eq!(c[1]["chosen"], back["runs"][seed]["chosen"]);
        assert_eq!(c[1]["accuracy"][0], back["runs"][seed]["accuracy"][0]);
    }
}

/// Four ESP32-HAR style recordings `r0..r3` of 9 windows [4 channels, 20 samples] whose labels
/// cycle 0 → 1 → 2 in time order, with uniform noise of width `noise` (xorshift from `seed`);
/// returns the manifest of all four (`w.csv`).
fn write_cycling_windows(dir: &Path, seed: u64, noise_width: f32) -> std::path::PathBuf {
    let (windows, channels, samples) = (9usize, 4usize, 20usize);
    let mut manifest = String::from("file,label\n");
    let mut state = seed;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for rec in 0..4 {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for w in 0..windows {
            let label = (w + rec) % 3;
            for c in 0..channels {
                for t in 0..samples {
                    let t = t as f32;
                    let v = match label {
                        0 => 10.0 + 3.0 * (t * 0.1 + c as f32).sin(),
                        1 => 10.0 + 3.0 * (t * 0.9 + c as f32).sin(),
                        _ => 10.0,
                    };
                    x.push(v + noise_width * noise());
                }
            }
            y.push(label as i64);
        }
        let name = format!("r{rec}");
        csipose_npy::write(
            dir.join(format!("{name}-x.npy")),
            &[windows, channels, samples],
            &x,
        )
        .unwrap();
        csipose_npy::write(dir.join(format!("{name}-y.npy")), &[windows], &y).unwrap();
        manifest.push_str(&format!("{name}-x.npy,{name}-y.npy\n"));
    }
    let path = dir.join("w.csv");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// `train --decode forward` and `transfer --decode viterbi --out` store the mode and the
/// transition model of the training manifest; `eval` decodes each recording with it (the same
/// classes as the pipeline's `decode_recordings` on the same probabilities; `--decode`
/// overrides), `stream` runs the forward filter over the file's windows (a stored viterbi mode
/// streams with the forward filter and says so), and a file without the block refuses
/// `eval --decode forward`.
#[test]
fn a_stored_decoding_is_applied_by_eval_and_stream() {
    use csipose_pipeline::activity::{
        decode_recordings, load_examples, predict_probabilities, training_transitions, FeatureSpec,
    };
    use csipose_pipeline::manifest::read_manifest;
    use csipose_temporal::model::{argmax, ActivityModel};
    use csipose_temporal::sequence::Decode;

    let dir = tempfile::tempdir().unwrap();
    // Noisy enough that single windows are sometimes wrong.
    let train_csv = write_cycling_windows(dir.path(), 1234, 3.0);
    let one = dir.path().join("one.csv");
    std::fs::write(&one, "r1-x.npy,r1-y.npy\n").unwrap();
    let s = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(|a| a.into()).collect() };
    let common = [
        "--epochs",
        "3",
        "--q-heads",
        "2",
        "--head-dim",
        "4",
        "--stride",
        "2",
        "--context",
        "1",
    ];
    let forward = dir.path().join("f.rvne");
    let mut args = s(&["activity", "train", "--decode", "forward"]);
    args.extend(s(&common));
    args.extend(["--manifest".into(), train_csv.clone().into()]);
    args.extend(["--out".into(), forward.clone().into()]);
    let o = run_ok(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("decoding: forward") && e.contains("10 frames per window"),
        "{e}"
    );
    let viterbi = dir.path().join("v.rvne");
    let mut args = s(&[
        "activity", "transfer", "--seeds", "1", "--decode", "viterbi",
    ]);
    args.extend(s(&common));
    args.extend(["--train".into(), train_csv.clone().into()]);
    args.extend(["--test".into(), one.clone().into()]);
    args.extend(["--out".into(), viterbi.clone().into()]);
    run_ok(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let plain = dir.path().join("p.rvne");
    let mut args = s(&["activity", "train"]);
    args.extend(s(&common));
    args.extend(["--manifest".into(), train_csv.clone().into()]);
    args.extend(["--out".into(), plain.clone().into()]);
    run_ok(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());

    // The stored transition model is the one the pipeline learns from the training manifest.
    let read = |p: &Path| ActivityModel::from_rvne(&std::fs::read(p).unwrap()).unwrap();
    let (fm, vm) = (read(&forward), read(&viterbi));
    let fd = fm.meta.as_ref().unwrap().decode.clone().unwrap();
    let vd = vm.meta.as_ref().unwrap().decode.clone().unwrap();
    assert_eq!((fd.mode, fd.step_frames), (Decode::Forward, 10));
    assert_eq!((vd.mode, vd.step_frames), (Decode::Viterbi, 10));
    assert_eq!(read(&plain).meta.unwrap().decode, None);
    let spec = FeatureSpec {
        context: 1,
        ..FeatureSpec::from_model(&fm, None, &forward).unwrap()
    };
    let train = load_examples(&read_manifest(&train_csv).unwrap(), &spec, &|| {}).unwrap();
    let all: Vec<usize> = (0..train.examples.len()).collect();
    assert_eq!(fd.transitions, training_transitions(&train, &all).unwrap());
    assert_eq!(vd.transitions, fd.transitions);

    // What eval and stream must print: the pipeline's decoding of the model's probabilities.
    let test = load_examples(&read_manifest(&one).unwrap(), &spec, &|| {}).unwrap();
    let idx: Vec<usize> = (0..test.examples.len()).collect();
    let expect = |m: &ActivityModel, d: Decode| {
        let probs = predict_probabilities(std::slice::from_ref(m), &test, &idx, false).unwrap();
        match d {
            Decode::None => probs.iter().map(|p| argmax(p)).collect::<Vec<usize>>(),
            _ => decode_recordings(&fd.transitions, &probs, &test.groups, d).unwrap(),
        }
    };
    let eval = |model: &Path, extra: &[&str]| {
        let mut a = s(&["activity", "eval", "--json"]);
        a.extend(s(extra));
        a.extend(["--manifest".into(), one.clone().into()]);
        a.extend(["--model".into(), model.into()]);
        a.extend(["--confusion-png".into(), dir.path().join("c.png").into()]);
        csipose().args(&a).output().unwrap()
    };
    let predicted = |o: &std::process::Output| -> (String, Vec<usize>) {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let p = r["predicted"].as_array().unwrap();
        (
            r["decode"].as_str().unwrap().to_string(),
            p.iter().map(|v| v.as_u64().unwrap() as usize).collect(),
        )
    };
    for (model, m, extra, mode) in [
        (&forward, &fm, &[][..], Decode::Forward),
        (&forward, &fm, &["--decode", "viterbi"][..], Decode::Viterbi),
        (&forward, &fm, &["--decode", "none"][..], Decode::None),
        (&viterbi, &vm, &[][..], Decode::Viterbi),
    ] {
        let o = eval(model, extra);
        let (name, classes) = predicted(&o);
        assert_eq!(name, mode.name());
        assert_eq!(classes, expect(m, mode), "{} {extra:?}", model.display());
        if mode != Decode::None {
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(
                e.contains(&format!("decoding: {} per recording", mode.name())),
                "{e}"
            );
        }
    }
    let o = eval(&plain, &["--decode", "forward"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && e.contains("stores no transition model"),
        "{e}"
    );

    // stream: one line per window, its class the forward filter's, for either stored mode.
    let stream = |model: &Path| {
        let mut a = s(&["activity", "stream"]);
        a.push(dir.path().join("r1-x.npy").into());
        a.extend(["--model".into(), model.into()]);
        let o = csipose().args(&a).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8(o.stdout).unwrap();
        let classes: Vec<usize> = text
            .lines()
            .map(|l| {
                assert!(l.contains("[forward; window alone "), "{l}");
                l.split("class ")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        (classes, String::from_utf8(o.stderr).unwrap())
    };
    let (classes, _) = stream(&forward);
    assert_eq!(classes, expect(&fm, Decode::Forward));
    let (classes, e) = stream(&viterbi);
    assert_eq!(classes, expect(&vm, Decode::Forward));
    assert!(
        e.contains("stores viterbi decoding") && e.contains("forward filter"),
        "{e}"
    );
}

/// `stream` of a windows file with a model trained with `--adapt-norm --context 1 --decode
/// forward` runs what `serve` runs live: before each window (with its context) the input
/// normalisation is re-estimated on every frame streamed so far, the current window's included
/// (`set_normalisation` on them), then one forward-filter step; `--norm session` re-estimates
/// once on the whole file (as `eval`), and the two differ.
#[test]
fn stream_of_windows_uses_the_running_normalisation() {
    use csipose_pipeline::activity::{load_examples, FeatureSpec};
    use csipose_pipeline::manifest::read_manifest;
    use csipose_temporal::model::{argmax, softmax, ActivityModel};
    use csipose_temporal::sequence::ForwardFilter;

    let dir = tempfile::tempdir().unwrap();
    let train_csv = write_cycling_windows(dir.path(), 77, 3.0);
    let one = dir.path().join("one.csv");
    std::fs::write(&one, "r1-x.npy,r1-y.npy\n").unwrap();
    let s = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(|a| a.into()).collect() };
    let model_path = dir.path().join("a.rvne");
    let mut args = s(&[
        "activity",
        "train",
        "--epochs",
        "3",
        "--q-heads",
        "2",
        "--head-dim",
        "4",
        "--stride",
        "2",
        "--context",
        "1",
        "--adapt-norm",
        "--decode",
        "forward",
    ]);
    args.extend(["--manifest".into(), train_csv.into()]);
    args.extend(["--out".into(), model_path.clone().into()]);
    run_ok(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    let model = ActivityModel::from_rvne(&std::fs::read(&model_path).unwrap()).unwrap();
    let meta = model.meta.clone().unwrap();
    assert!(meta.adapt_norm && meta.context == 1);
    let decode = meta.decode.unwrap();
    let spec = FeatureSpec {
        context: 1,
        ..FeatureSpec::from_model(&model, None, &model_path).unwrap()
    };
    let test = load_examples(&read_manifest(&one).unwrap(), &spec, &|| {}).unwrap();
    // Each window's (filtered class, its filtered probability, class alone, its probability).
    let expect = |running: bool| {
        let all: Vec<f32> = test
            .examples
            .iter()
            .flat_map(|e| e.frames.iter().copied())
            .collect();
        let mut filter = ForwardFilter::new(&decode.transitions);
        let mut seen = Vec::new();
        let mut filtered = vec![0f32; model.shape.n_classes];
        test.examples
            .iter()
            .map(|e| {
                seen.extend_from_slice(&e.frames);
                let mut m = model.clone();
                m.set_normalisation(if running { &seen } else { &all });
                let probs = softmax(&m.logits(&e.frames).unwrap());
                let c = filter.step(&probs);
                filter.probabilities(&mut filtered);
                let alone = argmax(&probs);
                format!(
                    "class {c} p={:.3} [forward; window alone {alone} p={:.3}]",
                    filtered[c], probs[alone]
                )
            })
            .collect::<Vec<String>>()
    };
    let stream = |extra: &[&str]| {
        let mut a = s(&["activity", "stream"]);
        a.push(dir.path().join("r1-x.npy").into());
        a.extend(["--model".into(), model_path.clone().into()]);
        a.extend(s(extra));
        let o = csipose().args(&a).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8(o.stdout).unwrap();
        let got: Vec<String> = text
            .lines()
            .map(|l| {
                // "class N [(name)] p=X [forward; window alone M [(name)] p=Y]", names dropped.
                let rest = l.split_once("): class ").unwrap().1;
                let (c, rest) = rest.split_once(' ').unwrap();
                let p = rest.split_once("p=").unwrap().1;
                let (p, rest) = p.split_once(' ').unwrap();
                let alone = rest.split_once("window alone ").unwrap().1;
                let (a, rest) = alone.split_once(' ').unwrap();
                let ap = rest.split_once("p=").unwrap().1.split_once(']').unwrap().0;
                format!("class {c} p={p} [forward; window alone {a} p={ap}]")
            })
            .collect();
        (got, String::from_utf8(o.stderr).unwrap())
    };
    let (running, e) = stream(&[]);
    assert!(e.contains("streamed so far"), "{e}");
    assert_eq!(running, expect(true));
    assert_eq!(stream(&["--norm", "running"]).0, running);
    let (session, _) = stream(&["--norm", "session"]);
    assert_eq!(session, expect(false));
    assert_ne!(running, session, "the running estimate must matter here");
}
