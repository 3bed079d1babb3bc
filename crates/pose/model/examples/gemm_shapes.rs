//! GFLOP/s of the engine's matrix product on the training shapes of one trainer shard (32
//! samples × 10 tokens = 320 rows): per preset, Linear forward `x · wᵀ`, input gradient
//! `dy · w` and weight gradient `dyᵀ · x` for the QKV, FFN and embedding layers, one thread,
//! each family the CPU runs, against the `gemm` crate (the engine's previous product) in the
//! same process, with the fraction of the measured FMA peak.
//!
//! `cargo run --release -p csipose-model --example gemm_shapes [-- PRESET ...]`

use csipose_model::gemm::{self, Isa, Strided};
use std::time::Instant;

/// GFLOP/s of the fastest single call within 0.15 s (on a shared machine the fastest call
/// is the one that ran without being preempted, like the FMA-peak loop's best timing).
fn time(mut f: impl FnMut(), flops: f64) -> f64 {
    f();
    let mut best = f64::INFINITY;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < 0.15 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    flops / best / 1e9
}

fn gemm_crate(m: usize, n: usize, k: usize, c: &mut [f32], a: Strided, b: Strided) {
    // SAFETY: the shapes and strides stay inside the buffers (the engine's own product,
    // which checks them, ran on the same arguments first).
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            true,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        );
    }
}

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let peak = gemm::measure_fma_peak_gflops(0.3);
    println!(
        "f32 FMA peak per core: {} ; kernel {}",
        peak.map_or("unknown".into(), |p| format!("{p:.0} GFLOP/s")),
        gemm::chosen().name()
    );
    let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2, Isa::Portable]
        .into_iter()
        .filter(|i| i.available())
        .collect();
    for name in csipose_model::PRESETS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let cfg = csipose_model::ModelConfig::preset(name).unwrap();
        let (d, rows) = (cfg.d, 320);
        for (layer, inp, out) in [
            ("embed", cfg.token_len(), d),
            ("qkv", d, 3 * d),
            ("ffn1", d, cfg.ffn()),
            ("ffn2", cfg.ffn(), d),
        ] {
            let x: Vec<f32> = (0..rows * inp).map(|i| (i % 7) as f32 * 0.1).collect();
            let w: Vec<f32> = (0..out * inp).map(|i| (i % 5) as f32 * 0.1).collect();
            let dy: Vec<f32> = (0..rows * out).map(|i| (i % 3) as f32 * 0.1).collect();
            let products = [
                (
                    "fwd",
                    rows,
                    out,
                    inp,
                    Strided {
                        data: &x,
                        rs: inp,
                        cs: 1,
                    },
                    Strided {
                        data: &w,
                        rs: 1,
                        cs: inp,
                    },
                ),
                (
                    "dx",
                    rows,
                    inp,
                    out,
                    Strided {
                        data: &dy,
                        rs: out,
                        cs: 1,
                    },
                    Strided {
                        data: &w,
                        rs: inp,
                        cs: 1,
                    },
                ),
                (
                    "dw",
                    out,
                    inp,
                    rows,
                    Strided {
                        data: &dy,
                        rs: 1,
                        cs: out,
                    },
                    Strided {
                        data: &x,
                        rs: inp,
                        cs: 1,
                    },
                ),
            ];
            for (what, m, n, k, a, b) in products {
                let flops = 2.0 * (m * n * k) as f64;
                let mut c = vec![0.0f32; m * n];
                let mut line = format!("{name:<9} {layer:<5} {what:<3} {m:>4}x{n:>4}x{k:>4}");
                for &isa in &isas {
                    let g = time(
                        || gemm::matmul_isa(isa, m, n, k, &mut c, true, a, b, false),
                        flops,
                    );
                    let pct = peak.map_or(String::new(), |p| format!(" ({:.0}%)", 100.0 * g / p));
                    line += &format!("  {}: {g:>6.1}{pct}", isa.name());
                }
                let g = time(|| gemm_crate(m, n, k, &mut c, a, b), flops);
                let pct = peak.map_or(String::new(), |p| format!(" ({:.0}%)", 100.0 * g / p));
                line += &format!("  gemm-crate: {g:>6.1}{pct}");
                println!("{line}");
            }
        }
    }
}
