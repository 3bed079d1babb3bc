//! Helpers shared by the CLI integration tests (each test file uses a subset, hence the
//! `dead_code` allowance).
#![allow(dead_code)]

use csipose_dataset::packed::FrameMeta;
use csipose_dataset::{DatasetInfo, HardwareProfile, KeypointLayout, PackedWriter};
use std::path::Path;
use std::process::{Command, Output};

/// A small packed dataset (`n` frames of [3, 8, 10] CSI, COCO-17 2D keypoints, 10 subjects,
/// 3 actions, one room) whose keypoints follow the CSI, so a model can learn something.
pub fn synthetic(dir: &Path, n: usize) {
    let mut hw = HardwareProfile::mmfi();
    hw.subcarriers = 8;
    let info = DatasetInfo::new(hw, KeypointLayout::Coco17_2d, "test");
    let mut w = PackedWriter::create(dir, info).unwrap();
    for i in 0..n {
        let u = (i % 17) as f32 / 17.0;
        let y: Vec<f32> = (0..34).map(|k| 0.2 + 0.5 * u + 0.01 * k as f32).collect();
        let x: Vec<f32> = (0..3 * 8 * 10)
            .map(|k| 1.0 + u * ((k / 10) as f32).sin() + 0.01 * ((i * 7 + k) % 13) as f32)
            .collect();
        let meta = FrameMeta {
            environment: 1,
            subject: 1 + (i % 10) as i32,
            action: 1 + (i % 3) as i32,
            frame: i as i32,
        };
        w.push(&x, &y, &[meta]).unwrap();
    }
    w.finish().unwrap();
}

/// A path as the `&str` argument the runner takes (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the `csipose` binary built for these tests.
pub fn csipose(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args(args)
        .output()
        .expect("run csipose")
}

/// Runs `csipose`, asserts it succeeded (showing its stderr otherwise) and returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = csipose(args);
    assert!(
        out.status.success(),
        "csipose {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `csipose` with arguments that need not be UTF-8.
pub fn csipose_os(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args(args)
        .output()
        .expect("run csipose")
}

/// Runs `csipose`, asserts it failed cleanly (exit status 1, no panic) with `want` in its
/// stderr, and returns the stderr.
pub fn refused(args: &[&str], want: &str) -> String {
    let out = csipose(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "csipose {args:?} should fail with status 1: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "csipose {args:?} panicked: {err}"
    );
    assert!(
        err.contains(want),
        "csipose {args:?}: {want:?} not in {err}"
    );
    err
}

/// The MM-Fi mini tree in `../shared`.
pub fn mmfi_mini() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/mmfi-mini"
    ))
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every file under `dir` with a hash of its bytes (sorted by path).
pub fn hash_tree(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, u64)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                out.push((p, h.finish()));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, &mut v);
    v.sort();
    v
}
