//! The pose pipeline through its typed functions alone (no argv, no reports read back): a run
//! trained, stopped and resumed; its checkpoint and its fp32 `.csm` file evaluated; the file's
//! PCK equal to the run's own validation score; an int8 file written and checked.

use csipose_dataset::split::Subset;
use csipose_pipeline::eval::{EvalOptions, Source};
use csipose_pipeline::quantize::{KeepF32, QuantizeOptions};
use csipose_pipeline::split::SplitOptions;
use csipose_pipeline::train::{Start, TrainOptions};
use csipose_quantize::{Bits, ScaleRule};
use indicatif::ProgressBar;
use std::path::Path;

fn quantize_options(run: &Path, out: &Path, bits: Bits) -> QuantizeOptions {
    QuantizeOptions {
        checkpoint: run.to_path_buf(),
        bits,
        per_channel: false,
        scale: ScaleRule::MaxAbs,
        keep_f32: KeepF32::Default,
        qat: None,
        data: None,
        threads: 1,
        out: out.to_path_buf(),
    }
}

#[test]
fn train_resume_quantize_and_evaluate_through_typed_calls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A small packed dataset (3 antennas × 8 subcarriers × 10 packets) with a learnable signal.
    csipose_train::synthetic::write(&data, 300, [3, 8, 10], 0.05, 0).unwrap();
    let run = dir.path().join("run");
    let hidden = ProgressBar::hidden();
    let new = TrainOptions {
        start: Start::New {
            data: data.clone(),
            split: SplitOptions::default(),
            options: csipose_train::TrainOptions {
                epochs: 2,
                ..csipose_train::TrainOptions::default()
            },
            out: run.clone(),
            overwrite: false,
        },
        threads: Some(1),
        stop_after: Some(1),
    };
    let stopped = csipose_pipeline::train::run(&new, &hidden).unwrap();
    assert_eq!((stopped.epochs_done, stopped.epochs_planned), (1, 2));
    // A second new run on the same folder is refused without `overwrite`.
    let e = csipose_pipeline::train::run(&new, &hidden).unwrap_err();
    assert!(
        e.to_string().contains("a training run is already there"),
        "{e}"
    );
    let resume = TrainOptions {
        start: Start::Resume(run.clone()),
        threads: None,
        stop_after: None,
    };
    let done = csipose_pipeline::train::run(&resume, &hidden).unwrap();
    assert_eq!((done.epochs_done, done.epochs_planned), (2, 2));
    let val = done.summary.val_torso_pck20.expect("validation frames");
    assert!(done.summary.val_samples > 0 && done.summary.train_samples > 0);

    let eval = |source: Source| {
        let opts = EvalOptions {
            data: data.clone(),
            source,
            split: Some(SplitOptions::default()),
            subset: Subset::Val,
            k: 0.2,
            threads: 1,
        };
        csipose_pipeline::eval::run(&opts, &hidden).unwrap()
    };
    let ck = eval(Source::Checkpoint {
        path: run.clone(),
        views: vec![csipose_train::View::Identity],
    });
    assert_eq!(ck.frames, done.summary.val_samples);
    assert!(
        (ck.torso_pck().unwrap() - val).abs() < 1e-9,
        "{ck:?} vs {val}"
    );
    let report = ck.report_json();
    assert_eq!(report["torso_pck"]["pck"].as_f64(), ck.torso_pck());
    assert_eq!(report["split"]["subset"], "val");

    let fp32 = dir.path().join("micro-fp32.csm");
    let q = csipose_pipeline::quantize::run(&quantize_options(&run, &fp32, Bits::F32), &hidden)
        .unwrap();
    let scores = q.scores.as_ref().expect("the run's dataset is found");
    assert_eq!(scores.val_frames, done.summary.val_samples);
    assert!((scores.fp32.unwrap() - val).abs() < 1e-9);
    let file = eval(Source::Model(fp32.clone()));
    assert!((file.torso_pck().unwrap() - val).abs() < 1e-9);
    let (size, flops, t) = csipose_pipeline::bench::time_file(&fp32, 20).unwrap();
    assert_eq!(size, q.bytes.total);
    assert!(flops > 0 && t.median_us > 0.0);

    let int8 = dir.path().join("micro-int8.csm");
    let q8 =
        csipose_pipeline::quantize::run(&quantize_options(&run, &int8, Bits::I8), &hidden).unwrap();
    assert!(q8.bytes.total * 3 < q.bytes.total, "{:?}", q8.bytes);
    assert_eq!(q8.report_json()["label"], q8.spec.label());
    // QAT needs bits below 32.
    let bad = QuantizeOptions {
        qat: Some(csipose_pipeline::quantize::Qat {
            epochs: 1,
            lr: 3e-4,
            run: dir.path().join("x.qat"),
        }),
        ..quantize_options(&run, &dir.path().join("x.csm"), Bits::F32)
    };
    assert!(csipose_pipeline::quantize::run(&bad, &hidden).is_err());
}
