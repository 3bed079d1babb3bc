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
