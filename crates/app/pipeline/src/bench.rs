//! Timing a `.csm` model file through the `no_std` runtime: reading it into aligned memory
//! ([`read_aligned`]), batch-1 single-thread latency of one runtime ([`time_forward`]) and a
//! file's size, FLOPs and latency with the best kernel ([`time_file`], what `demo` and
//! `frontier` report for each file they write).

use anyhow::{Context, Result};
use csipose_files::AlignedBytes;
use csipose_model::Rng;
use csipose_runtime::{flops_per_forward, Kernel, ModelFile, Runtime, OUTPUTS};
use std::path::Path;
use std::time::Instant;

/// Reads a whole model file into 4-byte aligned memory (what `ModelFile::parse` needs).
pub fn read_aligned(path: &Path) -> Result<AlignedBytes> {
    AlignedBytes::read(path).with_context(|| format!("cannot read model file {}", path.display()))
}

/// Latency statistics of one model, in microseconds.
pub struct Timing {
    pub median_us: f64,
    pub p90_us: f64,
    pub min_us: f64,
}

/// Times `iters` forwards of one fixed random frame after a warm-up.
pub fn time_forward(rt: &Runtime, iters: usize) -> Timing {
    let cfg = *rt.config();
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..cfg.frame_len())
        .map(|_| (3.0 + rng.normal()) as f32)
        .collect();
    let mut scratch = vec![0.0f32; Runtime::scratch_len(&cfg)];
    let mut out = [0.0f32; OUTPUTS];
    let iters = iters.max(10);
    for _ in 0..(iters / 10).max(100) {
        rt.forward(&x, &mut scratch, &mut out)
            .expect("sizes checked");
    }
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        let s = Instant::now();
        rt.forward(std::hint::black_box(&x), &mut scratch, &mut out)
            .expect("sizes checked");
        std::hint::black_box(&out);
        t.push(s.elapsed().as_secs_f64() * 1e6);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Timing {
        median_us: t[t.len() / 2],
        p90_us: t[t.len() * 9 / 10],
        min_us: t[0],
    }
}

/// A model file's size in bytes, its FLOPs per forward and its timing with the best kernel.
pub fn time_file(path: &Path, iters: usize) -> Result<(usize, u64, Timing)> {
    let bytes = read_aligned(path)?;
    let mf = ModelFile::parse(bytes.bytes())
        .with_context(|| format!("invalid model file {}", path.display()))?;
    let mut consts = vec![0.0f32; Runtime::consts_len_for_file(&mf, Kernel::best())];
    let rt = Runtime::new(&mf, Kernel::best(), &mut consts)
        .with_context(|| format!("model file {}", path.display()))?;
    Ok((
        mf.size(),
        flops_per_forward(&mf.config),
        time_forward(&rt, iters),
    ))
}
