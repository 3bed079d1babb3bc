//! `csipose simulate` end to end: a small dataset, its MM-Fi tree, the preview PNG, and
//! clear errors for impossible sizes.

use std::process::Command;

fn csipose() -> Command {
    Command::new(env!("CARGO_BIN_EXE_csipose"))
}

#[test]
fn simulate_writes_dataset_tree_and_preview() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let png = dir.path().join("preview.png");
    let st = csipose()
        .args(["simulate", "--out"])
        .arg(&out)
        .args(["--envs", "2", "--subjects", "3", "--actions", "2"])
        .args([
            "--frames-per-seq",
            "5",
            "--seed",
            "4",
            "--mmfi-tree",
            "--preview",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let ds = csipose_dataset::PackedDataset::open(&out).unwrap();
    assert_eq!(ds.len(), 3 * 2 * 5);
    // 3 subjects over 2 environments: S01, S02 in E01 and S11 in E02.
    let subj: std::collections::BTreeSet<i32> = (0..ds.len()).map(|i| ds.meta(i).subject).collect();
    assert_eq!(subj.into_iter().collect::<Vec<_>>(), vec![1, 2, 11]);
    let tree = dir.path().join("sim-mmfi-tree");
    assert!(tree.join("E02/S11/A02/wifi-csi/frame005.mat").is_file());
    assert!(tree.join("E01/S02/A01/rgb/frame001.npy").is_file());
    let p = std::fs::read(&png).unwrap();
    assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    assert!(p.len() > 10_000, "a real picture, not an empty one");
}

#[test]
fn simulate_rejects_impossible_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, needle) in [
        ("--subjects", "41", "--subjects 41"),
        ("--envs", "5", "--envs 5"),
        ("--actions", "28", "--actions 28"),
    ] {
        let o = csipose()
            .args(["simulate", "--out"])
            .arg(dir.path().join("x"))
            .args([flag, value])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no output left"
    );
}

#[test]
fn import_mmfi_reads_the_simulated_tree_back_to_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let st = csipose()
        .args(["simulate", "--out"])
        .arg(&out)
        .args(["--envs", "4", "--subjects", "4", "--actions", "2"])
        .args(["--frames-per-seq", "8", "--seed", "11", "--mmfi-tree"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let tree = dir.path().join("sim-mmfi-tree");
    for (kp, back) in [("rgb", "back2d"), ("gt3d", "back3d")] {
        let o = csipose()
            .arg("import-mmfi")
            .arg(&tree)
            .arg("--out")
            .arg(dir.path().join(back))
            .args(["--keypoints", kp])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let read = |p: std::path::PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    let b2 = dir.path().join("back2d");
    assert_eq!(read(out.join("X.npy")), read(b2.join("X.npy")), "X differs");
    assert_eq!(read(out.join("Y.npy")), read(b2.join("Y.npy")), "Y differs");
    assert_eq!(
        read(out.join("meta.npy")),
        read(b2.join("meta.npy")),
        "meta differs"
    );
    // The 3D import equals the simulator's Y3d.npy.
    let y3 = csipose_npy::read::<f32>(out.join("Y3d.npy")).unwrap();
    let g3 = csipose_npy::read::<f32>(dir.path().join("back3d/Y.npy")).unwrap();
    assert_eq!(y3.shape, g3.shape);
    assert_eq!(y3.data, g3.data);
}

#[test]
fn simulate_refuses_to_replace_foreign_directories_but_replaces_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), b"precious").unwrap();
    let small = [
        "--envs",
        "1",
        "--subjects",
        "1",
        "--actions",
        "1",
        "--frames-per-seq",
        "2",
    ];
    let o = csipose()
        .args(["simulate", "--out"])
        .arg(&foreign)
        .args(small)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to replace"));
    let out = dir.path().join("ds");
    let o = csipose()
        .args(["simulate", "--out"])
        .arg(&out)
        .args(small)
        .arg("--mmfi-tree")
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to replace"));
    assert_eq!(
        std::fs::read(foreign.join("keep.txt")).unwrap(),
        b"precious"
    );
    // Its own outputs are replaced on a second run.
    let tree = dir.path().join("tree");
    for _ in 0..2 {
        let o = csipose()
            .args(["simulate", "--out"])
            .arg(&out)
            .args(small)
            .arg("--mmfi-tree")
            .arg(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(tree.join("csipose-simulated-tree.json").is_file());
}
