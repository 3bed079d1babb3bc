//! Whole-dataset behaviour: same seed → same bytes whatever the thread count, different
//! seeds → different subjects and trajectories, the packed layout and labels, and the
//! MM-Fi-layout tree holding exactly what the packed dataset was made from.

use csipose_dataset::preprocess::preprocess_frame;
use csipose_dataset::PackedDataset;
use csipose_sim::generate::{write_dataset, Plan};
use csipose_sim::{SimConfig, Simulator};
use std::path::Path;

fn plan() -> Plan {
    Plan {
        envs: 4,
        subjects: 4,
        actions: 2,
        frames_per_seq: 6,
    }
}

fn write(dir: &Path, name: &str, cfg: SimConfig, threads: usize, tree: bool) -> std::path::PathBuf {
    let out = dir.join(name);
    let sim = Simulator::new(cfg);
    let tree_dir = dir.join(format!("{name}-tree"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let summary = pool
        .install(|| {
            write_dataset(
                &sim,
                &plan(),
                &out,
                tree.then_some(tree_dir.as_path()),
                serde_json::Value::Null,
                &|_| {},
            )
        })
        .unwrap();
    assert_eq!(summary.frames, plan().frames());
    out
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn same_seed_same_bytes_for_any_thread_count_and_new_seed_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |seed| SimConfig {
        seed,
        ..SimConfig::default()
    };
    let a = write(dir.path(), "a", cfg(7), 1, false);
    let b = write(dir.path(), "b", cfg(7), 3, false);
    let c = write(dir.path(), "c", cfg(8), 2, false);
    for f in ["X.npy", "Y.npy", "Y3d.npy", "meta.npy", "dataset.json"] {
        assert_eq!(bytes(&a.join(f)), bytes(&b.join(f)), "{f} differs");
    }
    assert_ne!(bytes(&a.join("X.npy")), bytes(&c.join("X.npy")));
    let (da, dc) = (
        PackedDataset::open(&a).unwrap(),
        PackedDataset::open(&c).unwrap(),
    );
    // Different seeds: different subjects (body size shows in the 3D skeleton) and
    // trajectories (the labels of every frame differ).
    let y3 = |d: &Path| csipose_npy::read::<f64>(d.join("Y3d.npy")).unwrap().data;
    let (ya, yc) = (y3(&a), y3(&c));
    let head_to_ankle = |y: &[f64], i: usize| {
        let j = |k: usize| &y[i * 51 + 3 * k..i * 51 + 3 * k + 3];
        let (h, f) = (j(10), j(3));
        ((h[0] - f[0]).powi(2) + (h[1] - f[1]).powi(2) + (h[2] - f[2]).powi(2)).sqrt()
    };
    assert!((head_to_ankle(&ya, 0) - head_to_ankle(&yc, 0)).abs() > 1e-3);
    let same = (0..da.len()).filter(|&i| da.y(i) == dc.y(i)).count();
    assert_eq!(same, 0, "{same} frames have identical labels across seeds");
    assert_eq!(da.meta_all(), dc.meta_all(), "same layout of sequences");
}

#[test]
fn packed_layout_meta_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let out = write(dir.path(), "ds", SimConfig::default(), 2, false);
    let ds = PackedDataset::open(&out).unwrap();
    assert_eq!(ds.len(), 4 * 2 * 6);
    assert_eq!(ds.info.source, "simulator");
    assert_eq!(ds.info.hardware.name, "mmfi");
    assert_eq!(ds.info.provenance["simulator"]["seed"], 0);
    // Sorted by environment, subject, action, frame, with MM-Fi's subject numbers.
    let metas: Vec<[i32; 4]> = (0..ds.len()).map(|i| ds.meta(i).to_array()).collect();
    let mut sorted = metas.clone();
    sorted.sort();
    assert_eq!(metas, sorted);
    assert_eq!(metas[0], [1, 1, 1, 1]);
    assert_eq!(metas[6], [1, 1, 2, 1]);
    assert_eq!(metas[ds.len() - 1], [4, 31, 2, 6]);
    let subjects: std::collections::BTreeSet<i32> = metas.iter().map(|m| m[1]).collect();
    assert_eq!(
        subjects.into_iter().collect::<Vec<_>>(),
        vec![1, 11, 21, 31]
    );
    // Every frame is min-max normalised and its keypoints lie in the image.
    for i in 0..ds.len() {
        let x = ds.x(i);
        let (lo, hi) = x
            .iter()
            .fold((1f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
        assert_eq!((lo, hi), (0.0, 1.0), "frame {i}");
        assert!(ds.y(i).iter().all(|v| (0.0..=1.0).contains(v)), "frame {i}");
    }
    let y3 = csipose_npy::read::<f32>(out.join("Y3d.npy")).unwrap();
    assert_eq!(y3.shape, vec![ds.len(), 17, 3]);
}

/// Reads the real part of variable `name` from an uncompressed MAT v5 file written by the
/// simulator (a deliberately small reader for this test; the project's reader lives in
/// csipose_dataset::mat).
fn mat_var(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f64>) {
    let u = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
    let mut o = 128;
    while o < bytes.len() {
        assert_eq!(u(o), 14, "miMATRIX at byte {o}");
        let len = u(o + 4);
        let b = o + 8;
        let nd = u(b + 20) / 4;
        let dims: Vec<usize> = (0..nd).map(|i| u(b + 24 + 4 * i)).collect();
        let no = b + 24 + (4 * nd).div_ceil(8) * 8;
        let nl = u(no + 4);
        let vname = std::str::from_utf8(&bytes[no + 8..no + 8 + nl]).unwrap();
        let dof = no + 8 + nl.div_ceil(8) * 8;
        let nb = u(dof + 4);
        if vname == name {
            let data = bytes[dof + 8..dof + 8 + nb]
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            return (dims, data);
        }
        o += 8 + len;
    }
    panic!("{name} not found");
}

#[test]
fn mmfi_tree_holds_what_the_packed_dataset_was_made_from() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        keep_raw: true,
        seed: 3,
        ..SimConfig::default()
    };
    let out = write(dir.path(), "ds", cfg.clone(), 2, true);
    let tree = dir.path().join("ds-tree");
    // Nothing temporary is left beside the outputs.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ds", "ds-tree"]);
    // The same X without the tree: keeping the raw data does not change the dataset.
    let plain = write(
        dir.path(),
        "plain",
        SimConfig {
            keep_raw: false,
            ..cfg
        },
        1,
        false,
    );
    assert_eq!(bytes(&out.join("X.npy")), bytes(&plain.join("X.npy")));
    let ds = PackedDataset::open(&out).unwrap();
    let y3 = csipose_npy::read::<f32>(out.join("Y3d.npy")).unwrap().data;
    let mut seen_inf = false;
    for i in 0..ds.len() {
        let m = ds.meta(i);
        let seq = tree
            .join(format!("E{:02}", m.environment))
            .join(format!("S{:02}", m.subject))
            .join(format!("A{:02}", m.action));
        let mat = bytes(&seq.join(format!("wifi-csi/frame{:03}.mat", m.frame)));
        let (dims, amp_cm) = mat_var(&mat, "CSIamp");
        assert_eq!(dims, vec![3, 114, 10]);
        let (_, phase) = mat_var(&mat, "CSIphase");
        assert!(phase.iter().all(|p| p.abs() <= std::f64::consts::PI));
        seen_inf |= amp_cm.iter().any(|v| v.is_infinite());
        // Back to [A, S, P] row-major, then the official preprocessing gives X exactly.
        let mut amp = vec![0.0; 3420];
        for a in 0..3 {
            for s in 0..114 {
                for p in 0..10 {
                    amp[(a * 114 + s) * 10 + p] = amp_cm[a + 3 * s + 342 * p];
                }
            }
        }
        preprocess_frame(&mut amp, 3, 114, 10).unwrap();
        let x: Vec<f32> = amp.iter().map(|&v| v as f32).collect();
        assert_eq!(x.as_slice(), ds.x(i), "frame {i} CSI");
        let rgb =
            csipose_npy::read::<f64>(seq.join(format!("rgb/frame{:03}.npy", m.frame))).unwrap();
        assert_eq!(rgb.shape, vec![17, 2]);
        let y: Vec<f32> = rgb
            .data
            .chunks(2)
            .flat_map(|c| [(c[0] / 640.0) as f32, (c[1] / 480.0) as f32])
            .collect();
        assert_eq!(y.as_slice(), ds.y(i), "frame {i} keypoints");
        let gt = csipose_npy::read::<f64>(seq.join("ground_truth.npy")).unwrap();
        assert_eq!(gt.shape, vec![6, 17, 3]);
        let row = (m.frame as usize - 1) * 51;
        let gt_row: Vec<f32> = gt.data[row..row + 51].iter().map(|&v| v as f32).collect();
        assert_eq!(gt_row.as_slice(), &y3[i * 51..(i + 1) * 51]);
    }
    assert!(seen_inf, "dropouts appear as inf in CSIamp");
}

#[test]
fn invalid_settings_and_overlapping_outputs_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let keep = SimConfig {
        keep_raw: true,
        ..SimConfig::default()
    };
    let sim = Simulator::new(keep.clone());
    for (tree, want) in [
        (out.clone(), "must be separate folders"),
        (out.join("tree"), "must be separate folders"),
    ] {
        let e = write_dataset(
            &sim,
            &plan(),
            &out,
            Some(&tree),
            serde_json::Value::Null,
            &|_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(want), "{e}");
    }
    let bad = Simulator::new(SimConfig {
        snr_db: f64::NAN,
        ..keep
    });
    let e = write_dataset(&bad, &plan(), &out, None, serde_json::Value::Null, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--snr-db NaN"), "{e}");
    assert!(!out.exists());
}
