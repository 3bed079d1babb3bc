//! Quantization-aware training on a small synthetic dataset: QAT is off by default and leaves
//! the saved options unchanged; a short QAT fine-tune lowers the int4 model's loss; QAT runs
//! checkpoint and resume like plain training; evaluation uses the fake-quantised EMA.

use csipose_dataset::PackedDataset;
use csipose_quantize::{quantize, Bits, Spec};
use csipose_train::optim::smooth_l1;
use csipose_train::trainer::gather_y;
use csipose_train::{checkpoint, fit, predict, Quiet, TrainOptions, Trainer};

const A: usize = 3;
const S: usize = 16;
const P: usize = 10;

fn in_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn qat_is_off_by_default_and_not_serialised() {
    let o = TrainOptions::default();
    assert!(o.qat.is_none());
    let j = serde_json::to_string(&o).unwrap();
    assert!(!j.contains("qat"), "{j}");
    let back: TrainOptions = serde_json::from_str(&j).unwrap();
    assert_eq!(back, o);
}

#[test]
fn a_short_qat_run_lowers_the_int4_loss() {
    let dir = tempfile::tempdir().unwrap();
    csipose_train::synthetic::write(&dir.path().join("data"), 640, [A, S, P], 0.05, 11).unwrap();
    let ds = PackedDataset::open(dir.path().join("data")).unwrap();
    let train: Vec<usize> = (0..512).collect();
    let val: Vec<usize> = (512..640).collect();
    let base = TrainOptions {
        model: "micro".into(),
        epochs: 6,
        batch: 32,
        lr: 2e-3,
        seed: 3,
        ..TrainOptions::default()
    };
    let mut t = Trainer::new(base.clone(), [A, S, P], train.len()).unwrap();
    in_pool(|| {
        fit(
            &mut t,
            &ds,
            &train,
            &val,
            &dir.path().join("fp32"),
            &mut Quiet,
            None,
        )
    })
    .unwrap();
    let spec = Spec::new(Bits::I4, false);
    let cfg = t.model.cfg.clone();
    let vy = gather_y(&ds, &val);
    let loss = |w: &[f32]| {
        let p = in_pool(|| predict(&t.model, w, &ds, &val, &[]));
        let mut g = vec![0.0; p.len()];
        smooth_l1(&p, &vy, 0.1, &mut g)
    };
    let fp32 = loss(&t.ema);
    let ptq = loss(&quantize(&cfg, &t.ema, &spec).unwrap().dequantize());
    // QAT fine-tune from the EMA weights, small learning rate
    let qopts = TrainOptions {
        epochs: 3,
        lr: 3e-4,
        min_lr: 1e-6,
        qat: Some(spec.clone()),
        ..base.clone()
    };
    let mut q = Trainer::fine_tune(qopts.clone(), &cfg, &t.ema, train.len()).unwrap();
    assert_eq!(q.params, t.ema);
    let qrun = dir.path().join("qat");
    in_pool(|| fit(&mut q, &ds, &train, &val, &qrun, &mut Quiet, None)).unwrap();
    let deq = quantize(&cfg, &q.ema, &spec).unwrap().dequantize();
    // evaluation inside the trainer uses exactly the quantized EMA
    assert!(*q.eval_weights() == deq[..]);
    let qat = loss(&deq);
    // control: the same fine-tune without QAT, then PTQ
    let mut f = Trainer::fine_tune(
        TrainOptions { qat: None, ..qopts },
        &cfg,
        &t.ema,
        train.len(),
    )
    .unwrap();
    in_pool(|| {
        fit(
            &mut f,
            &ds,
            &train,
            &val,
            &dir.path().join("ft"),
            &mut Quiet,
            None,
        )
    })
    .unwrap();
    let ft = loss(&quantize(&cfg, &f.ema, &spec).unwrap().dequantize());
    eprintln!(
        "val SmoothL1: fp32 {fp32:.5}, int4 PTQ {ptq:.5}, int4 QAT {qat:.5}, fp32 fine-tune + PTQ {ft:.5}"
    );
    assert!(
        ptq > fp32,
        "int4 PTQ {ptq} should cost loss over fp32 {fp32}"
    );
    assert!(qat < ptq, "QAT {qat} did not lower the int4 loss {ptq}");
    assert!(
        qat < ft,
        "QAT {qat} is no better than fine-tuning in fp32 then PTQ {ft}"
    );
    // the checkpoint keeps the QAT options, so a resumed run continues QAT
    let c = checkpoint::load(&qrun.join("checkpoint.safetensors")).unwrap();
    assert_eq!(c.opts.qat, Some(spec));
    assert_eq!(c.ema, q.ema);
}

#[test]
fn qat_resume_reproduces_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    csipose_train::synthetic::write(&dir.path().join("data"), 160, [A, S, P], 0.05, 2).unwrap();
    let ds = PackedDataset::open(dir.path().join("data")).unwrap();
    let train: Vec<usize> = (0..128).collect();
    let val: Vec<usize> = (128..160).collect();
    let o = TrainOptions {
        model: "micro".into(),
        epochs: 2,
        batch: 32,
        seed: 5,
        qat: Some(Spec {
            scale: csipose_quantize::ScaleRule::Mse,
            ..Spec::new(Bits::I4, true)
        }),
        ..TrainOptions::default()
    };
    let mut a = Trainer::new(o.clone(), [A, S, P], train.len()).unwrap();
    in_pool(|| {
        fit(
            &mut a,
            &ds,
            &train,
            &val,
            &dir.path().join("a"),
            &mut Quiet,
            None,
        )
    })
    .unwrap();
    let mut b = Trainer::new(o, [A, S, P], train.len()).unwrap();
    let part = dir.path().join("b");
    in_pool(|| fit(&mut b, &ds, &train, &val, &part, &mut Quiet, Some(1))).unwrap();
    let mut c = checkpoint::load(&part.join("checkpoint.safetensors")).unwrap();
    in_pool(|| fit(&mut c, &ds, &train, &val, &part, &mut Quiet, None)).unwrap();
    assert!(
        a.params == c.params && a.ema == c.ema,
        "QAT resume diverged"
    );
    let h = |t: &Trainer| -> Vec<(f32, Option<f64>)> {
        t.state
            .history
            .iter()
            .map(|r| (r.train_loss, r.val_torso_pck20))
            .collect()
    };
    assert_eq!(h(&a), h(&c));
}
