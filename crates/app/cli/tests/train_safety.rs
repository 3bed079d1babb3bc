//! `csipose train` and `csipose quantize` never lose a run or an input and never panic: output
//! folders are refused unless they are new or (with `--overwrite`) a run, float options are
//! validated, non-finite data stops training with the step and the cause, a resume refuses a
//! changed dataset and keeps the run's threads, a run folder is locked, and truncated
//! checkpoints are named with their size. Each test trains nano for at most two epochs on a
//! few hundred tiny frames.

mod common;

use common::{copy_tree, csipose, ok, refused, s, synthetic};
use std::path::Path;

/// Runs `csipose`, asserts it failed cleanly (exit 1, not a panic) and returns its stderr.
fn fails(args: &[&str]) -> String {
    refused(args, "")
}

/// Trains nano on `data` into `run` with the extra arguments.
fn train(data: &Path, run: &Path, extra: &[&str]) -> String {
    let mut a = vec![
        "train",
        "--data",
        s(data),
        "--model",
        "nano",
        "--batch",
        "32",
        "--out",
        s(run),
    ];
    a.extend_from_slice(extra);
    ok(&a)
}

/// Offset of the data in a version-1 `.npy` file.
fn npy_data_offset(b: &[u8]) -> usize {
    assert_eq!(&b[..6], b"\x93NUMPY");
    10 + u16::from_le_bytes([b[8], b[9]]) as usize
}

/// Sets float32 value `k` of `file` (an `.npy`) to `v`.
fn poke_f32(file: &Path, k: usize, v: f32) {
    let mut b = std::fs::read(file).unwrap();
    let o = npy_data_offset(&b) + 4 * k;
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    std::fs::write(file, b).unwrap();
}

fn weights(run: &Path) -> (Vec<f32>, Vec<f32>) {
    let t = csipose_train::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    (t.params, t.ema)
}

#[test]
fn out_refuses_a_finished_run_a_dataset_and_a_user_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 120);
    let run = dir.path().join("run");
    train(&data, &run, &["--epochs", "1"]);
    let ck = std::fs::read(run.join("checkpoint.safetensors")).unwrap();

    let args = |out: &Path| {
        vec![
            "train".to_string(),
            "--data".into(),
            s(&data).into(),
            "--model".into(),
            "nano".into(),
            "--epochs".into(),
            "1".into(),
            "--out".into(),
            s(out).into(),
        ]
    };
    let run_args = args(&run);
    let e = fails(&run_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        e.contains("a training run is already there (1 of 1 epochs done)")
            && e.contains("--resume")
            && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        ck,
        std::fs::read(run.join("checkpoint.safetensors")).unwrap()
    );

    // The dataset itself, a folder inside it, and a folder of the user's.
    let data_files = std::fs::read_dir(&data).unwrap().count();
    let e = fails(&args(&data).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("would overwrite the input"), "{e}");
    let inner = data.join("run");
    let e = fails(&args(&inner).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("inside the dataset"), "{e}");
    assert!(!inner.exists());
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), data_files);
    let user = dir.path().join("mine");
    std::fs::create_dir(&user).unwrap();
    std::fs::write(user.join("notes.txt"), b"keep").unwrap();
    let mut ua = args(&user);
    ua.push("--overwrite".into());
    let e = fails(&ua.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("not a csipose training run"), "{e}");
    assert_eq!(std::fs::read(user.join("notes.txt")).unwrap(), b"keep");

    // --overwrite replaces a run: the new config is the new run's.
    train(
        &data,
        &run,
        &["--epochs", "1", "--seed", "5", "--overwrite"],
    );
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["options"]["seed"], 5);
    assert_ne!(
        ck,
        std::fs::read(run.join("checkpoint.safetensors")).unwrap()
    );
}

#[test]
fn float_options_are_validated_with_the_flag_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 40);
    // A run folder below a folder that does not exist yet: nothing may create either.
    let new = dir.path().join("new");
    let run = new.join("run");
    for (flag, value, range) in [
        ("--lr", "nan", "(0, 1]"),
        ("--lr", "inf", "(0, 1]"),
        ("--lr", "1e30", "(0, 1]"),
        ("--lr", "0", "(0, 1]"),
        ("--lr", "-1", "(0, 1]"),
        ("--aug-prob", "1.5", "[0, 1]"),
        ("--aug-prob", "nan", "[0, 1]"),
        ("--aug-response-db", "-inf", "[0, 40]"),
        ("--aug-noise", "nan", "[0, 10]"),
    ] {
        let v = format!("{flag}={value}");
        let e = fails(&[
            "train",
            "--data",
            s(&data),
            "--model",
            "nano",
            "--out",
            s(&run),
            &v,
        ]);
        assert!(
            e.contains(&format!("{flag} must be a finite number in {range}")),
            "{v}: {e}"
        );
        assert!(!new.exists(), "{v}: a folder was created");
    }
    let e = fails(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "nano",
        "--out",
        s(&run),
        "--ratio=nan",
    ]);
    assert!(e.contains("--ratio"), "{e}");
    let e = fails(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "nano",
        "--out",
        s(&run),
        "--threads",
        "0",
    ]);
    assert!(e.contains("--threads must be at least 1"), "{e}");
    // The manual split names train's own flag.
    let e = fails(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "nano",
        "--out",
        s(&run),
        "--split",
        "manual",
    ]);
    assert!(
        e.contains("--split manual needs --config FILE") && !e.contains("--kind"),
        "{e}"
    );
    assert!(!new.exists());
}

#[test]
fn non_finite_data_stops_training_at_the_first_step_naming_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 120);
    // Every frame's first value NaN: the first batch meets one whatever the shuffle.
    for i in 0..120 {
        poke_f32(&data.join("X.npy"), i * 240, f32::NAN);
    }
    let run = dir.path().join("run");
    let e = fails(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "nano",
        "--epochs",
        "2",
        "--out",
        s(&run),
    ]);
    assert!(
        e.contains("training stopped at step 1 (epoch 1, step 1 of")
            && e.contains("loss NaN")
            && e.contains("X.npy holds NaN at [antenna 0, subcarrier 0, packet 0]")
            && e.contains("no checkpoint was written"),
        "{e}"
    );
    assert!(!run.join("checkpoint.safetensors").exists());
    assert!(!run.join("metrics.json").exists());

    // inf in a label of one frame only: the step that meets it (or validation) names it.
    let data2 = dir.path().join("data2");
    synthetic(&data2, 120);
    poke_f32(&data2.join("Y.npy"), 7 * 34 + 3, f32::INFINITY);
    let run2 = dir.path().join("run2");
    let e = fails(&[
        "train",
        "--data",
        s(&data2),
        "--model",
        "nano",
        "--epochs",
        "2",
        "--out",
        s(&run2),
    ]);
    assert!(
        e.contains("frame 7 (0-based)") && e.contains("Y.npy holds inf at value 3"),
        "{e}"
    );
}

#[test]
fn quantize_refuses_an_output_that_is_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 120);
    let run = dir.path().join("run");
    train(&data, &run, &["--epochs", "1"]);
    let ck = run.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).unwrap();
    let link = dir.path().join("link.csm");
    std::fs::hard_link(&ck, &link).unwrap();
    let dotted = run.join(".").join("checkpoint.safetensors");
    for out in [ck.clone(), dotted, link, run.join("config.json")] {
        let e = fails(&[
            "quantize",
            "--checkpoint",
            s(&run),
            "--bits",
            "8",
            "--out",
            s(&out),
        ]);
        assert!(e.contains("output would overwrite the input"), "{e}");
    }
    let e = fails(&[
        "quantize",
        "--checkpoint",
        s(&run),
        "--bits",
        "8",
        "--out",
        s(&dir.path().join("m.csm")),
        "--json",
        s(&ck),
    ]);
    assert!(e.contains("output would overwrite the input"), "{e}");
    let e = fails(&[
        "quantize",
        "--checkpoint",
        s(&run),
        "--bits",
        "8",
        "--qat",
        "--epochs",
        "1",
        "--qat-run",
        s(&run),
        "--out",
        s(&dir.path().join("m.csm")),
    ]);
    assert!(
        e.contains("contains the input") || e.contains("would overwrite the input"),
        "{e}"
    );
    assert_eq!(before, std::fs::read(&ck).unwrap());
    // A separate output works.
    ok(&[
        "quantize",
        "--checkpoint",
        s(&run),
        "--bits",
        "8",
        "--out",
        s(&dir.path().join("m.csm")),
    ]);
}

#[test]
fn resume_refuses_a_changed_dataset_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let run = dir.path().join("run");
    train(&data, &run, &["--epochs", "2", "--stop-after", "1"]);
    let saved = dir.path().join("saved");
    std::fs::rename(&data, &saved).unwrap();

    // Fewer frames (this was a slice panic).
    synthetic(&data, 200);
    let e = fails(&["train", "--resume", s(&run)]);
    assert!(
        e.contains("changed since the run started") && e.contains("300 frames, now 200"),
        "{e}"
    );
    // The same size, one label changed (this resumed silently on other data).
    std::fs::remove_dir_all(&data).unwrap();
    copy_tree(&saved, &data);
    poke_f32(&data.join("Y.npy"), 5, 0.123);
    let e = fails(&["train", "--resume", s(&run)]);
    assert!(e.contains("labels (Y.npy) hash"), "{e}");
    // A run recorded before fingerprints: the size check still refuses, without a panic.
    let cfg = run.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c.as_object_mut().unwrap().remove("dataset");
    std::fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    synthetic(&data, 100);
    let e = fails(&["train", "--resume", s(&run)]);
    assert!(e.contains("the dataset or split changed"), "{e}");
    // The original dataset resumes.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(&saved, &data).unwrap();
    ok(&["train", "--resume", s(&run)]);
}

#[test]
fn resume_refuses_a_training_flag_that_differs_from_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let run = dir.path().join("run");
    train(
        &data,
        &run,
        &["--epochs", "2", "--lr", "0.002", "--stop-after", "1"],
    );
    let ck = run.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).unwrap();
    let other = dir.path().join("other");
    synthetic(&other, 300);
    // Each flag with another value than the run's is refused (was silently ignored), naming
    // the flag, the value given and the run's.
    for (extra, want) in [
        (vec!["--epochs", "40"], "--epochs 40: the run"),
        (vec!["--lr", "0.001"], "started with --lr 0.002"),
        (vec!["--model", "micro"], "started with --model nano"),
        (vec!["--batch", "64"], "started with --batch 32"),
        (vec!["--seed", "3"], "started with --seed 0"),
        (
            vec!["--split", "cross-subject"],
            "started with --split random",
        ),
        (vec!["--view-augment"], "started with --view-augment false"),
        (vec!["--aug-prob", "0.5"], "started with --aug-prob 0"),
        (vec!["--data", s(&other)], "--data"),
    ] {
        let mut a = vec!["train", "--resume", s(&run)];
        a.extend(extra);
        let e = refused(&a, want);
        assert!(e.contains("a resumed run keeps its settings"), "{e}");
    }
    assert_eq!(std::fs::read(&ck).unwrap(), before);
    // The run's own values are accepted, and the run finishes its two epochs.
    ok(&[
        "train",
        "--resume",
        s(&run),
        "--epochs",
        "2",
        "--lr",
        "0.002",
        "--model",
        "nano",
        "--batch",
        "32",
        "--data",
        s(&data),
        "--split",
        "random",
        "--ratio",
        "0.8",
    ]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["finished"], true);
    assert_eq!(m["history"].as_array().unwrap().len(), 2);
}

#[test]
fn resume_keeps_the_runs_threads_restarts_an_empty_run_and_metrics_come_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let full = dir.path().join("full");
    train(&data, &full, &["--epochs", "2", "--threads", "1"]);
    let want = weights(&full);

    // Stopped after one epoch: metrics.json and curves.png are already there.
    let part = dir.path().join("part");
    train(
        &data,
        &part,
        &["--epochs", "2", "--threads", "1", "--stop-after", "1"],
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["finished"], false);
    assert_eq!(m["epochs"], 1);
    assert_eq!(m["epochs_planned"], 2);
    assert_eq!(m["history"].as_array().unwrap().len(), 1);
    assert!(part.join("curves.png").is_file());
    assert!(!part.join("pck.png").exists());
    // No --threads: the run's one thread, so the result is bit-identical.
    ok(&["train", "--resume", s(&part)]);
    assert_eq!(weights(&part), want);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["finished"], true);
    assert_eq!(m["history"].as_array().unwrap().len(), 2);

    // --threads still overrides (and then the last bits differ, which is why it is not the default).
    let other = dir.path().join("other");
    train(
        &data,
        &other,
        &["--epochs", "2", "--threads", "1", "--stop-after", "1"],
    );
    let out = csipose(&["train", "--resume", s(&other), "--threads", "2"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the run used 1 threads"));
    assert_ne!(weights(&other).0, want.0);

    // Stopped before the first checkpoint (only config.json): the resume starts it over.
    let empty = dir.path().join("empty");
    train(
        &data,
        &empty,
        &["--epochs", "2", "--threads", "1", "--stop-after", "0"],
    );
    assert!(!empty.join("checkpoint.safetensors").exists());
    let out = csipose(&["train", "--resume", s(&empty)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint yet"));
    assert_eq!(weights(&empty), want);
}

#[test]
fn a_run_in_use_is_refused_with_the_owners_pid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let run = dir.path().join("run");
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args([
            "train",
            "--data",
            s(&data),
            "--model",
            "nano",
            "--epochs",
            "100000",
        ])
        .args(["--out", s(&run)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".run.lock");
    let t0 = std::time::Instant::now();
    while !lock.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the first trainer never locked"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first trainer ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The lock file exists before the pid is written into it.
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = format!("in use by pid {}", first.id());
    let e1 = fails(&["train", "--resume", s(&run)]);
    let e2 = fails(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "nano",
        "--out",
        s(&run),
        "--overwrite",
    ]);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(still_running);
    assert!(e1.contains(&pid), "{e1}");
    assert!(e2.contains(&pid), "{e2}");
    // Killed: the kernel released the lock, and the run resumes (or restarts if it had no
    // checkpoint yet).
    ok(&["train", "--resume", s(&run), "--stop-after", "1"]);
}

#[test]
fn truncated_checkpoints_are_named_with_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 120);
    let run = dir.path().join("run");
    train(&data, &run, &["--epochs", "2", "--stop-after", "1"]);
    let ck = run.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).unwrap();
    for keep in [5, 1000, good.len() - 100] {
        std::fs::write(&ck, &good[..keep]).unwrap();
        for args in [
            vec!["train", "--resume", s(&run)],
            vec![
                "quantize",
                "--checkpoint",
                s(&run),
                "--bits",
                "8",
                "--out",
                "/dev/null/x",
            ],
        ] {
            let e = fails(&args);
            assert!(
                e.contains(&format!(
                    "checkpoint.safetensors: truncated or damaged checkpoint ({keep} bytes)"
                )) && !e.contains("InvalidHeaderLength"),
                "{args:?}: {e}"
            );
        }
    }
}
