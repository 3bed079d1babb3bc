//! Cost of fake quantisation (what QAT adds to every training step) and of PTQ + `.csm`
//! encoding, per model config: `cargo bench -p csipose-quantize --bench fake_quant`.
//! Single-threaded; median of repeated runs.

use csipose_model::{Model, ModelConfig, PRESETS};
use csipose_quantize::{quantize, Bits, FakeQuant, ScaleRule, Spec};
use std::time::Instant;

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[reps / 2]
}

fn main() {
    println!("config     params   fq int4/tensor  fq int4/channel  fq int4/channel mse  PTQ+encode int4/channel (ms)");
    for name in PRESETS {
        let cfg = ModelConfig::preset(name).unwrap();
        let p = Model::new(cfg.clone()).init_params(1);
        let reps = if cfg.param_count() > 1_000_000 { 5 } else { 21 };
        let (mut out, mut sc) = (Vec::new(), Vec::new());
        let mut fq = |spec: Spec| {
            let f = FakeQuant::new(&cfg, &spec);
            median_ms(|| f.apply(&p, &mut out, &mut sc), reps)
        };
        let a = fq(Spec::new(Bits::I4, false));
        let b = fq(Spec::new(Bits::I4, true));
        let c = fq(Spec {
            scale: ScaleRule::Mse,
            ..Spec::new(Bits::I4, true)
        });
        let e = median_ms(
            || {
                let q = quantize(&cfg, &p, &Spec::new(Bits::I4, true)).unwrap();
                std::hint::black_box(q.to_csm().unwrap());
            },
            reps,
        );
        println!(
            "{name:<9} {:>8}  {a:>14.3}  {b:>15.3}  {c:>19.3}  {e:>12.3}",
            cfg.param_count()
        );
    }
}
