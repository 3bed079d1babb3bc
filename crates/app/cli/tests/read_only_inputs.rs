//! Every subcommand that reads files runs against a read-only input folder with its outputs
//! elsewhere, and afterwards no input byte has changed and no file was added there (hashes of
//! every file before and after). As root the permission bits do not stop a write, so the hashes
//! are the check that counts.
//!
//! Not run here: `demo` (minutes; it only chains import-mmfi, simulate, eval, train, quantize and
//! bench, each run here) and `temporal bench` / `models` (they read no files).

mod common;

use common::{copy_tree, hash_tree, mmfi_mini, ok, s, synthetic};
use std::path::Path;

fn shared(rel: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/")).join(rel)
}

/// Sets or clears the write permission of everything under `dir`.
fn set_read_only(dir: &Path, read_only: bool) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            set_read_only(&p, read_only);
        }
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        perm.set_readonly(read_only);
        std::fs::set_permissions(&p, perm).unwrap();
    }
    let mut perm = std::fs::metadata(dir).unwrap().permissions();
    perm.set_readonly(read_only);
    std::fs::set_permissions(dir, perm).unwrap();
}

/// Three classes of 4-channel amplitude sequences and their manifest.
fn activity_inputs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut manifest = String::from("file,label\n");
    for label in 0..3usize {
        for rep in 0..4 {
            let packets = 60 + rep * 5;
            let data: Vec<f32> = (0..packets * 4)
                .map(|i| {
                    let t = (i / 4) as f32;
                    10.0 + (i % 4) as f32 + 3.0 * (t * (0.05 + 0.3 * label as f32)).sin()
                })
                .collect();
            let name = format!("s{label}_{rep}.npy");
            csipose_npy::write(dir.join(&name), &[packets, 4], &data).unwrap();
            manifest.push_str(&format!("{name},{label}\n"));
        }
    }
    std::fs::write(dir.join("train.csv"), manifest).unwrap();
}

#[test]
fn no_subcommand_changes_a_byte_of_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    // Inputs: a packed dataset, a trained run, a .csm, predictions, the MM-Fi mini tree, a
    // capture, activity sequences with a manifest and a .rvne, and a manual split file.
    let data = inp.join("data");
    synthetic(&data, 200);
    let run = inp.join("run");
    ok(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "nano",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--out",
        s(&run),
    ]);
    let csm = inp.join("m.csm");
    ok(&[
        "quantize",
        "--checkpoint",
        s(&run),
        "--bits",
        "8",
        "--out",
        s(&csm),
    ]);
    let pred = inp.join("pred.npy");
    ok(&[
        "predict",
        "--checkpoint",
        s(&run),
        "--data",
        s(&data),
        "--out",
        s(&pred),
    ]);
    let mini = inp.join("mini");
    copy_tree(&mmfi_mini(), &mini);
    let cap = inp.join("example.dat");
    std::fs::copy(shared("captures/example.dat"), &cap).unwrap();
    let act = inp.join("act");
    activity_inputs(&act);
    let manifest = act.join("train.csv");
    let rvne = inp.join("act.rvne");
    ok(&[
        "activity",
        "train",
        "--manifest",
        s(&manifest),
        "--out",
        s(&rvne),
        "--epochs",
        "2",
        "--q-heads",
        "2",
        "--kv-heads",
        "1",
        "--head-dim",
        "8",
    ]);
    let split = inp.join("split.json");
    std::fs::write(
        &split,
        r#"{"train": {"subjects": ["S01", "S02"]}, "val": {"subjects": ["S03"]}}"#,
    )
    .unwrap();

    let before = hash_tree(&inp);
    set_read_only(&inp, true);
    let o = |name: &str| out.join(name).to_str().unwrap().to_string();
    let runs: Vec<Vec<String>> = vec![
        vec!["capture", "info", s(&cap), "--json"]
            .into_iter()
            .map(String::from)
            .collect(),
        ["capture", "export", s(&cap), "--out"]
            .iter()
            .map(|a| a.to_string())
            .chain([o("cap.npy")])
            .collect(),
        ["capture", "inspect", s(&cap), "--png"]
            .iter()
            .map(|a| a.to_string())
            .chain([o("cap.png")])
            .collect(),
        ["capture", "to-dataset", s(&cap), "--out"]
            .iter()
            .map(|a| a.to_string())
            .chain([o("cap-ds")])
            .collect(),
        [
            "import-mmfi",
            s(&mini),
            "--with-phase",
            "--keypoints",
            "gt3d",
            "--out",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("mm")])
        .collect(),
        [
            "split",
            "--protocol",
            "3",
            "--kind",
            "manual",
            "--config",
            s(&split),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        [
            "eval",
            "--data",
            s(&data),
            "--predictions",
            s(&pred),
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("e1.json")])
        .collect(),
        [
            "eval",
            "--data",
            s(&data),
            "--checkpoint",
            s(&run),
            "--tta",
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("e2.json")])
        .collect(),
        [
            "eval",
            "--data",
            s(&data),
            "--model",
            s(&csm),
            "--split",
            "manual",
            "--config",
            s(&split),
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("e3.json")])
        .collect(),
        [
            "eval",
            "--data",
            s(&data),
            "--baseline",
            "mean",
            "--split",
            "random",
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("e4.json")])
        .collect(),
        [
            "train",
            "--data",
            s(&data),
            "--model",
            "nano",
            "--epochs",
            "1",
            "--batch",
            "32",
            "--out",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("run2")])
        .collect(),
        [
            "predict",
            "--checkpoint",
            s(&run),
            "--data",
            s(&data),
            "--tta",
            "--out",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("p.npy")])
        .collect(),
        ["bench", "--model", s(&csm), "--iters", "20", "--json"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        [
            "quantize",
            "--checkpoint",
            s(&run),
            "--bits",
            "4",
            "--qat",
            "--epochs",
            "1",
            "--data",
            s(&data),
            "--json",
            &o("q.json"),
            "--out",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("q.csm")])
        .collect(),
        [
            "activity",
            "train",
            "--manifest",
            s(&manifest),
            "--epochs",
            "1",
            "--head-dim",
            "8",
            "--out",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("a.rvne")])
        .collect(),
        [
            "activity",
            "eval",
            "--manifest",
            s(&manifest),
            "--model",
            s(&rvne),
            "--confusion-png",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("c.png")])
        .collect(),
        [
            "activity",
            "cv",
            "--manifest",
            s(&manifest),
            "--folds",
            "2",
            "--epochs",
            "1",
            "--head-dim",
            "8",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        [
            "activity",
            "stream",
            s(&act.join("s0_0.npy")),
            "--every",
            "50",
            "--model",
            s(&rvne),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect(),
        ["activity", "manifest", "--data", s(&data), "--out"]
            .iter()
            .map(|a| a.to_string())
            .chain([o("m.csv")])
            .collect(),
        [
            "frontier",
            "--data",
            s(&data),
            "--configs",
            "nano",
            "--epochs",
            "1",
            "--qat-epochs",
            "1",
            "--iters",
            "20",
            "--out",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([o("frontier")])
        .collect(),
    ];
    let mut failures = Vec::new();
    for args in &runs {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = common::csipose(&argv);
        if !r.status.success() {
            failures.push(format!("{argv:?}: {}", String::from_utf8_lossy(&r.stderr)));
        }
    }
    set_read_only(&inp, false);
    assert!(
        failures.is_empty(),
        "failed with read-only inputs:\n{}",
        failures.join("\n")
    );
    let after = hash_tree(&inp);
    let changed: Vec<_> = before
        .iter()
        .filter(|b| !after.contains(b))
        .chain(after.iter().filter(|a| !before.contains(a)))
        .collect();
    assert!(changed.is_empty(), "inputs changed or added: {changed:?}");
    assert!(out.join("mm/dataset.json").is_file() && out.join("frontier/FRONTIER.md").is_file());
}
