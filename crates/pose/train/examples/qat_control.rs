//! The control experiment for QAT: fine-tune a run's EMA weights in fp32 with exactly the
//! schedule `csipose quantize --qat` uses (no fake quantisation), then quantize post-training.
//! If this matches QAT, the gain came from more training, not from QAT.
//!
//! `cargo run --release -p csipose-train --example qat_control -- RUN/checkpoint.safetensors DATA [EPOCHS]`
//! (MM-Fi random split, protocol 3, seed 0, ratio 0.8; 2 threads).

use csipose_dataset::split::{Split, SplitKind};
use csipose_dataset::PackedDataset;
use csipose_quantize::{quantize, Bits, Spec};
use csipose_train::trainer::gather_y;
use csipose_train::{checkpoint, fit, predict, torso_pck, Quiet, TrainOptions, Trainer};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        anyhow::bail!("usage: qat_control CHECKPOINT DATA [EPOCHS]");
    }
    let epochs: usize = a.get(3).map_or(Ok(5), |e| e.parse())?;
    let full = checkpoint::load(&PathBuf::from(&a[1]))?;
    let ds = PackedDataset::open(&a[2])?;
    let sel = Split::new(
        SplitKind::Random {
            seed: 0,
            ratio: 0.8,
        },
        3,
    )?
    .select(&ds);
    let cfg = full.model.cfg.clone();
    let opts = TrainOptions {
        epochs,
        lr: 3e-4,
        min_lr: 3e-6,
        qat: None,
        ..full.opts.clone()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let vy = gather_y(&ds, &sel.val);
    let score = |w: &[f32]| {
        let p = pool.install(|| predict(&full.model, w, &ds, &sel.val, &[]));
        100.0 * torso_pck(&p, &vy, 0.2).unwrap_or(f64::NAN)
    };
    let mut t = Trainer::fine_tune(opts, &cfg, &full.ema, sel.train.len())?;
    let dir = tempfile_dir()?;
    let start = Instant::now();
    pool.install(|| fit(&mut t, &ds, &sel.train, &sel.val, &dir, &mut Quiet, None))?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fp32 fine-tune, {epochs} epochs ({secs:.0} s), then PTQ; torso-PCK@20 on {} val frames:",
        sel.val.len()
    );
    println!("  {:<46} {:.2}", "fp32 (original EMA)", score(&full.ema));
    println!("  {:<46} {:.2}", "fp32 (fine-tuned EMA)", score(&t.ema));
    let none = Spec::new(Bits::I4, false);
    let pc = Spec {
        keep_f32: csipose_quantize::default_keep_f32(&cfg),
        ..Spec::new(Bits::I4, true)
    };
    for spec in [none, pc] {
        let d = quantize(&cfg, &t.ema, &spec)?.dequantize();
        println!(
            "  {:<46} {:.2}",
            format!("{} PTQ of the fine-tuned", spec.label()),
            score(&d)
        );
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("csipose-qat-control-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
