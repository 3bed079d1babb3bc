//! Criterion benchmark (`cargo bench -p csipose-runtime`): batch-1 single-thread latency of
//! `Runtime::forward` for every preset × {fp32, int8, int4} (random weights, per-tensor
//! scales), on the best kernel path of this CPU (`CSIPOSE_KERNEL=portable` forces the
//! portable one).

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use csipose_model::{Model, ModelConfig, PRESETS};
use csipose_runtime::{Kernel, ModelFile, Runtime, OUTPUTS};
use std::hint::black_box;
use std::time::Duration;

fn kernel() -> Kernel {
    match std::env::var("CSIPOSE_KERNEL").as_deref() {
        Ok("portable") => Kernel::portable(),
        _ => Kernel::best(),
    }
}

fn forward(c: &mut Criterion) {
    let k = kernel();
    let mut group = c.benchmark_group(format!("forward/{}", k.name()));
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for name in PRESETS {
        let cfg = ModelConfig::preset(name).unwrap();
        let model = Model::new(cfg.clone());
        let params = support::random_params(&model, 1);
        let frame = support::random_frames(&cfg, 1, 2);
        for (bits, label) in [(32, "fp32"), (8, "int8"), (4, "int4")] {
            let (file, _) = support::build(&cfg, &params, bits, false);
            let mf = ModelFile::parse(file.bytes()).unwrap();
            let rc = mf.config;
            let mut consts = vec![0.0f32; Runtime::consts_len(&rc)];
            let rt = Runtime::new(&mf, k, &mut consts).unwrap();
            let mut scratch = vec![0.0f32; Runtime::scratch_len(&rc)];
            let mut out = [0.0f32; OUTPUTS];
            group.throughput(Throughput::Elements(1));
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    rt.forward(black_box(&frame), &mut scratch, &mut out)
                        .unwrap();
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
