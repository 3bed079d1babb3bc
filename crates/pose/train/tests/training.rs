//! Training end to end on a small synthetic packed dataset with a learnable signal:
//! the model learns, resume after an interruption reproduces an uninterrupted run bit for
//! bit, checkpoints round-trip and damaged checkpoints are clear errors.

use csipose_dataset::PackedDataset;
use csipose_model::Rng;
use csipose_train::augment::CsiAugment;
use csipose_train::checkpoint;
use csipose_train::{fit, Quiet, TrainOptions, Trainer};
use std::path::Path;

const A: usize = 3;
const S: usize = 16;
const P: usize = 10;

fn synthetic(dir: &Path, n: usize, seed: u64) -> PackedDataset {
    csipose_train::synthetic::write(dir, n, [A, S, P], 0.05, seed).unwrap();
    PackedDataset::open(dir).unwrap()
}

fn opts(model: &str, epochs: usize) -> TrainOptions {
    TrainOptions {
        model: model.into(),
        epochs,
        batch: 32,
        lr: 2e-3,
        seed: 7,
        ..TrainOptions::default()
    }
}

fn in_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn learns_the_synthetic_signal_better_than_the_mean_pose() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 640, 1);
    let train: Vec<usize> = (0..512).collect();
    let val: Vec<usize> = (512..640).collect();
    let mut t = Trainer::new(opts("nano", 12), [A, S, P], train.len()).unwrap();
    let s = in_pool(|| {
        fit(
            &mut t,
            &ds,
            &train,
            &val,
            &dir.path().join("run"),
            &mut Quiet,
            None,
        )
    })
    .unwrap();
    // mean-pose baseline on the same split
    let ys = csipose_train::trainer::gather_y(&ds, &train);
    let mut mean = vec![0.0f32; 34];
    for r in ys.chunks(34) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / train.len() as f32;
        }
    }
    let vy = csipose_train::trainer::gather_y(&ds, &val);
    let mean_pred: Vec<f32> = (0..val.len()).flat_map(|_| mean.clone()).collect();
    let base = csipose_train::torso_pck(&mean_pred, &vy, 0.2).unwrap();
    let ours = s.val_torso_pck20.unwrap();
    eprintln!("torso-PCK@20: model {ours:.3}, mean pose {base:.3}");
    assert!(ours > base + 0.2, "model {ours} vs mean pose {base}");
    let losses: Vec<f32> = t.state.history.iter().map(|r| r.train_loss).collect();
    assert!(losses.last().unwrap() < &(losses[0] * 0.7), "{losses:?}");
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 160, 2);
    let train: Vec<usize> = (0..128).collect();
    let val: Vec<usize> = (128..160).collect();
    // micro also with the graph head and train-time view and CSI augmentation
    let aug = CsiAugment {
        prob: 0.8,
        response_db: 6.0,
        noise: 0.05,
    };
    for (model, view_augment, augment) in
        [("nano", false, CsiAugment::default()), ("micro", true, aug)]
    {
        let full = dir.path().join(format!("full-{model}"));
        let part = dir.path().join(format!("part-{model}"));
        let o = TrainOptions {
            view_augment,
            augment,
            ..opts(model, 2)
        };
        let mut a = Trainer::new(o.clone(), [A, S, P], train.len()).unwrap();
        in_pool(|| fit(&mut a, &ds, &train, &val, &full, &mut Quiet, None)).unwrap();
        let mut b = Trainer::new(o, [A, S, P], train.len()).unwrap();
        in_pool(|| fit(&mut b, &ds, &train, &val, &part, &mut Quiet, Some(1))).unwrap();
        assert_eq!(b.state.epoch, 1);
        drop(b); // the process "dies"; only the checkpoint is left
                 // a half-written checkpoint of the killed process is cleaned up on resume
        std::fs::write(part.join(".checkpoint.safetensors.tmp-999999"), b"half").unwrap();
        let mut c = checkpoint::load(&part.join("checkpoint.safetensors")).unwrap();
        assert_eq!(c.state.epoch, 1);
        in_pool(|| fit(&mut c, &ds, &train, &val, &part, &mut Quiet, None)).unwrap();
        assert_eq!(c.state.epoch, 2);
        assert!(!part.join(".checkpoint.safetensors.tmp-999999").exists());
        assert_eq!(a.params, c.params, "{model}: weights differ after resume");
        assert_eq!(a.ema, c.ema);
        assert_eq!(a.opt.m, c.opt.m);
        assert_eq!((a.state.epoch, a.state.step), (c.state.epoch, c.state.step));
        assert_eq!(a.state.rng, c.state.rng);
        let losses = |t: &Trainer| -> Vec<(f32, Option<f64>)> {
            t.state
                .history
                .iter()
                .map(|r| (r.train_loss, r.val_torso_pck20))
                .collect()
        };
        assert_eq!(losses(&a), losses(&c));
        let (_, w) = checkpoint::load_model(&full.join("checkpoint.safetensors")).unwrap();
        assert_eq!(w, a.ema);
    }
}

#[test]
fn damaged_checkpoints_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 40, 3);
    let train: Vec<usize> = (0..32).collect();
    let mut t = Trainer::new(opts("nano", 1), [A, S, P], train.len()).unwrap();
    let run = dir.path().join("run");
    in_pool(|| fit(&mut t, &ds, &train, &[], &run, &mut Quiet, None)).unwrap();
    let good = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let bad = dir.path().join("bad.safetensors");
    let mut rng = Rng::new(4);
    let mut errors = 0;
    for trial in 0..60 {
        let mut b = good.clone();
        if trial % 3 == 0 {
            b.truncate(rng.below(b.len()));
        } else {
            for _ in 0..4 {
                let i = rng.below(b.len().min(4096));
                b[i] = rng.next_u64() as u8;
            }
        }
        std::fs::write(&bad, &b).unwrap();
        let r1 = checkpoint::load(&bad);
        let r2 = checkpoint::load_model(&bad);
        if let Err(e) = &r1 {
            assert!(format!("{e:#}").contains("bad.safetensors"), "{e:#}");
            errors += 1;
        }
        let _ = r2;
    }
    assert!(errors > 20);
    assert!(checkpoint::load(&dir.path().join("missing.safetensors")).is_err());
    assert!(!run.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
}
