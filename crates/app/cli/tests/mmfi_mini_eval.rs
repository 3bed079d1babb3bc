//! `csipose eval --baseline` on the real MM-Fi sample (../shared/mmfi-mini/expected.npz packed
//! here with `PackedWriter`), through MM-Fi's default random split (protocol 3, seed 0, ratio 0.8):
//! it trains on S02/A01 and S11/A03 and validates on S01 (A01, A02).

use csipose_dataset::packed::FrameMeta;
use csipose_dataset::{DatasetInfo, HardwareProfile, KeypointLayout, PackedWriter};
use csipose_npy::Npz;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const NPZ: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../../shared/mmfi-mini/expected.npz"
);

fn pack(dir: &Path, layout: KeypointLayout) -> (PathBuf, Vec<FrameMeta>) {
    let mut npz = Npz::open(NPZ).unwrap();
    let x = npz.read::<f32>("csi").unwrap();
    let key = match layout {
        KeypointLayout::Coco17_2d => "rgb_keypoints",
        KeypointLayout::H36m17_3d => "ground_truth",
    };
    let y = npz.read::<f32>(key).unwrap();
    let meta = npz.read::<i64>("env_subject_action_frame").unwrap();
    let meta: Vec<FrameMeta> = meta
        .data
        .chunks_exact(4)
        .map(|m| FrameMeta {
            environment: m[0] as i32,
            subject: m[1] as i32,
            action: m[2] as i32,
            frame: m[3] as i32,
        })
        .collect();
    let dest = dir.join(layout.name());
    let info = DatasetInfo::new(HardwareProfile::mmfi(), layout, "test");
    let mut w = PackedWriter::create(&dest, info).unwrap();
    w.push(&x.data, &y.data, &meta).unwrap();
    w.finish().unwrap();
    (dest, meta)
}

fn eval(data: &Path, baseline: &str, out: &Path) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args([
            "eval",
            "--data",
            data.to_str().unwrap(),
            "--baseline",
            baseline,
        ])
        .args([
            "--split",
            "random",
            "--protocol",
            "3",
            "--seed",
            "0",
            "--ratio",
            "0.8",
        ])
        .args(["--json", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!("{stdout}");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn baselines_on_mmfi_mini() {
    let dir = tempfile::tempdir().unwrap();
    for layout in [KeypointLayout::Coco17_2d, KeypointLayout::H36m17_3d] {
        let (ds, meta) = pack(dir.path(), layout);
        let val = meta.iter().filter(|m| m.subject == 1).count();
        let train = meta.len() - val;
        assert!(val > 0 && train > 0);
        for b in ["mean", "ridge"] {
            let r = eval(&ds, b, &dir.path().join("m.json"));
            assert_eq!(r["frames"], val, "{b}");
            assert_eq!(r["source"]["train_frames"], train, "{b}");
            let pck = r["torso_pck"]["pck"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&pck), "{b}: {pck}");
            if layout == KeypointLayout::H36m17_3d {
                let (mp, pa) = (
                    r["mpjpe"].as_f64().unwrap(),
                    r["pa_mpjpe"].as_f64().unwrap(),
                );
                assert!(
                    mp.is_finite() && pa.is_finite() && pa <= mp + 1e-9,
                    "{b}: {mp} {pa}"
                );
            }
        }
    }
}
