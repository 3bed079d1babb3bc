//! The training engine refuses to train on garbage and never loses what it saved: options are
//! validated, a non-finite step is an error that changes nothing, a resumed trainer refuses a
//! training subset of another size, non-finite numbers in a checkpoint's metadata read back,
//! a live writer's temporary is never removed, and the dataset fingerprint sees a change.

use csipose_dataset::PackedDataset;
use csipose_model::Rng;
use csipose_train::checkpoint;
use csipose_train::trainer::dataset_fingerprint;
use csipose_train::{fit, Quiet, TrainOptions, Trainer};
use std::path::Path;

const SHAPE: [usize; 3] = [3, 8, 10];

fn synthetic(dir: &Path, n: usize, seed: u64) -> PackedDataset {
    csipose_train::synthetic::write(dir, n, SHAPE, 0.05, seed).unwrap();
    PackedDataset::open(dir).unwrap()
}

fn opts() -> TrainOptions {
    TrainOptions {
        model: "nano".into(),
        epochs: 2,
        batch: 16,
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
fn every_float_option_is_checked_with_its_name_and_range() {
    assert!(opts().validate().is_ok());
    type Edit = fn(&mut TrainOptions);
    let cases: [(Edit, &str); 16] = [
        (
            |o| o.lr = f32::NAN,
            "--lr must be a finite number in (0, 1], got NaN",
        ),
        (
            |o| o.lr = 1e30,
            "--lr must be a finite number in (0, 1], got 1e30",
        ),
        (
            |o| o.lr = f32::INFINITY,
            "--lr must be a finite number in (0, 1], got inf",
        ),
        (|o| o.min_lr = 0.5, "min_lr"),
        (|o| o.min_lr = f32::NAN, "min_lr"),
        (
            |o| o.weight_decay = -0.1,
            "weight_decay must be a finite number in [0, 1]",
        ),
        (|o| o.weight_decay = f32::NAN, "weight_decay"),
        (|o| o.warmup_fraction = 2.0, "warmup_fraction"),
        (
            |o| o.ema_decay = f32::NAN,
            "ema_decay must be a finite number in [0, 1]",
        ),
        (
            |o| o.mixup_alpha = f64::INFINITY,
            "mixup_alpha must be a finite number in [0, 100]",
        ),
        (
            |o| o.dropout = 1.0,
            "dropout must be a finite number in [0, 1)",
        ),
        (
            |o| o.huber_beta = 0.0,
            "huber_beta must be a finite number in (0, 10]",
        ),
        (|o| o.augment.prob = f32::NAN, "--aug-prob"),
        (|o| o.augment.response_db = -1.0, "--aug-response-db"),
        (|o| o.augment.noise = f32::INFINITY, "--aug-noise"),
        (|o| o.epochs = 0, "--epochs must be at least 1"),
    ];
    for (edit, want) in cases {
        let mut o = opts();
        edit(&mut o);
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{e} (wanted {want})");
        // The engine refuses them too, not only the command line.
        assert!(Trainer::new(o, SHAPE, 64).is_err());
    }
}

#[test]
fn a_non_finite_step_is_an_error_naming_the_step_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 64, 1);
    let idx: Vec<usize> = (0..16).collect();
    let mut t = Trainer::new(opts(), SHAPE, 64).unwrap();
    // Weights that are no longer finite (what a too-high learning rate ends in).
    t.params[0] = f32::NAN;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (p, e, m) = (bits(&t.params), bits(&t.ema), bits(&t.opt.m));
    let err = in_pool(|| t.step(&ds, &idx, &mut Rng::new(1)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("training stopped at step 1 (epoch 1, step 1 of 4) on loss NaN")
            && err.contains("the weights are no longer finite")
            && err.contains("learning rate"),
        "{err}"
    );
    assert_eq!(bits(&t.params), p);
    assert_eq!(bits(&t.ema), e);
    assert_eq!(bits(&t.opt.m), m);
    assert_eq!(t.state.step, 0);
    assert_eq!(t.opt.t, 0);
}

#[test]
fn a_training_subset_of_another_size_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 64, 1);
    let mut t = Trainer::new(opts(), SHAPE, 64).unwrap();
    let fewer: Vec<usize> = (0..40).collect();
    let e = in_pool(|| t.train_epoch(&ds, &fewer, &mut |_, _| {}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the dataset or split changed"), "{e}");
    assert!(in_pool(|| t.train_epoch(&ds, &[], &mut |_, _| {})).is_err());
}

#[test]
fn non_finite_numbers_in_a_checkpoint_read_back_and_are_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 48, 2);
    let train: Vec<usize> = (0..32).collect();
    let mut t = Trainer::new(
        TrainOptions {
            epochs: 1,
            ..opts()
        },
        SHAPE,
        32,
    )
    .unwrap();
    let run = dir.path().join("run");
    in_pool(|| fit(&mut t, &ds, &train, &[], &run, &mut Quiet, None)).unwrap();
    // What a run of the past wrote: "train_loss": null, "lr": null.
    t.state.history[0].train_loss = f32::NAN;
    t.opts.lr = f32::NAN;
    t.schedule.lr = f32::INFINITY;
    t.opts.augment.noise = f32::NAN;
    let ck = run.join("checkpoint.safetensors");
    checkpoint::save(&ck, &t).unwrap();
    let raw = String::from_utf8_lossy(&std::fs::read(&ck).unwrap()).into_owned();
    assert!(
        raw.contains(r#"\"train_loss\":null"#),
        "the metadata holds null"
    );
    let back = checkpoint::load(&ck).unwrap();
    assert!(back.state.history[0].train_loss.is_nan());
    assert!(back.opts.lr.is_nan() && back.schedule.lr.is_nan());
    assert_eq!(back.params, t.params);
    let e = back.opts.validate().unwrap_err().to_string();
    assert!(e.contains("--lr"), "{e}");
    assert!(checkpoint::load_model(&ck).is_ok());
}

#[test]
fn truncated_checkpoints_name_the_file_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 48, 2);
    let train: Vec<usize> = (0..32).collect();
    let mut t = Trainer::new(
        TrainOptions {
            epochs: 1,
            ..opts()
        },
        SHAPE,
        32,
    )
    .unwrap();
    let run = dir.path().join("run");
    in_pool(|| fit(&mut t, &ds, &train, &[], &run, &mut Quiet, None)).unwrap();
    let good = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let bad = dir.path().join("cut.safetensors");
    let mut extended = good.clone();
    extended.extend_from_slice(b"junk");
    for b in [
        good[..0].to_vec(),
        good[..7].to_vec(),
        good[..9].to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 1].to_vec(),
        extended,
    ] {
        std::fs::write(&bad, &b).unwrap();
        for e in [
            checkpoint::load(&bad).err().unwrap(),
            checkpoint::load_model(&bad).err().unwrap(),
        ] {
            let e = format!("{e:#}");
            assert!(
                e.contains(&format!(
                    "cut.safetensors: truncated or damaged checkpoint ({} bytes)",
                    b.len()
                )),
                "{e}"
            );
        }
    }
}

#[test]
fn a_live_writers_temporary_is_kept_a_dead_ones_removed() {
    if !Path::new("/proc/self").exists() {
        eprintln!("SKIPPED: no /proc to tell live processes from dead ones");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic(&dir.path().join("data"), 48, 2);
    let train: Vec<usize> = (0..32).collect();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let mine = run.join(format!(".checkpoint.safetensors.tmp-{}", live.id()));
    let dead = run.join(".metrics.json.tmp-999999");
    std::fs::write(&mine, b"being written").unwrap();
    std::fs::write(&dead, b"left by a killed writer").unwrap();
    let mut t = Trainer::new(
        TrainOptions {
            epochs: 1,
            ..opts()
        },
        SHAPE,
        32,
    )
    .unwrap();
    let r = in_pool(|| fit(&mut t, &ds, &train, &[], &run, &mut Quiet, None));
    live.kill().unwrap();
    live.wait().unwrap();
    r.unwrap();
    assert!(mine.exists(), "a live writer's temporary was removed");
    assert!(!dead.exists());
}

#[test]
fn the_dataset_fingerprint_sees_labels_meta_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let a = synthetic(&dir.path().join("a"), 40, 3);
    let b = synthetic(&dir.path().join("b"), 40, 3);
    let fa = dataset_fingerprint(&a);
    assert_eq!(
        fa,
        dataset_fingerprint(&b),
        "same content, same fingerprint"
    );
    assert!(fa.differences(&dataset_fingerprint(&b)).is_none());
    let c = synthetic(&dir.path().join("c"), 39, 3);
    let d = fa.differences(&dataset_fingerprint(&c)).unwrap();
    assert!(d.contains("40 frames, now 39"), "{d}");
    // One label and one meta value changed in place.
    drop(b);
    let poke = |file: &Path, k: usize, v: [u8; 4]| {
        let mut x = std::fs::read(file).unwrap();
        let o = 10 + u16::from_le_bytes([x[8], x[9]]) as usize + 4 * k;
        x[o..o + 4].copy_from_slice(&v);
        std::fs::write(file, x).unwrap();
    };
    poke(&dir.path().join("b/Y.npy"), 33, 0.5f32.to_le_bytes());
    let d = fa
        .differences(&dataset_fingerprint(
            &PackedDataset::open(dir.path().join("b")).unwrap(),
        ))
        .unwrap();
    assert!(d.contains("labels") && !d.contains("meta"), "{d}");
    let e = synthetic(&dir.path().join("e"), 40, 3);
    drop(e);
    poke(&dir.path().join("e/meta.npy"), 1, 7i32.to_le_bytes());
    let d = fa
        .differences(&dataset_fingerprint(
            &PackedDataset::open(dir.path().join("e")).unwrap(),
        ))
        .unwrap();
    assert!(d.contains("meta.npy") && !d.contains("labels"), "{d}");
}
