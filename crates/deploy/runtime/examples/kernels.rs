//! Minimum time of one Linear per shape of micro (10 tokens) and the graph head (17 joints),
//! f32 / int8 / int4 / f32 in panels, on the best exact-f32 kernel (argument `avx2` forces AVX2+FMA):
//! `cargo run --release -p csipose-runtime --example kernels [-- avx2] [d=128] [g=58]`.
//! Minimum over many runs, so it stays meaningful on a busy machine.

use csipose_runtime::kernels::{
    linear, linear_panels, pack_panels, panels_len, Act, Input, Weights,
};
use csipose_runtime::{Kernel, TensorData};

fn min_ns(mut f: impl FnMut(), reps: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / 20.0);
    }
    best
}

/// f32 FMA peak of one core: 12 independent 8-lane FMA chains (AVX2), GFLOP/s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_peak() -> f64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let n = 2_000_000usize;
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        for _ in 0..n / 20 {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    // Every chain must stay live: keeping only one lets the compiler drop the other 11 and
    // time one latency-bound chain (which once read as a bogus 177 GFLOP/s).
    let mut s = [0.0f32; 8];
    for x in &acc {
        let mut v = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *x) };
        for (a, b) in s.iter_mut().zip(v) {
            *a += b;
        }
    }
    std::hint::black_box(s);
    (n / 20) as f64 * 12.0 * 16.0 / best / 1e9
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    if Kernel::avx2().is_some() {
        // SAFETY: AVX2+FMA detected.
        println!(
            "fma peak {:.1} GFLOP/s (12 chains x 8 lanes, best of 20)",
            unsafe { fma_peak() }
        );
    }
    // The exact-f32 kernels (the int16 path's Linears are timed by `examples/int16.rs`).
    let k = if std::env::args().any(|a| a == "avx2") {
        Kernel::avx2().expect("AVX2+FMA")
    } else {
        Kernel::best_exact()
    };
    println!("kernel {}", k.name());
    // `d=N` (default 64, micro; tiny 96, small 128, base 160, flagship 256) and `g=N` (graph
    // width, default 56) pick the shapes.
    let arg = |key: &str, def: usize| {
        std::env::args()
            .find_map(|a| a.strip_prefix(key).map(|v| v.parse().expect("a number")))
            .unwrap_or(def)
    };
    let (d, g) = (arg("d=", 64), arg("g=", 56));
    for (tokens, inp, out, name) in [
        (10, 342, d, "embed"),
        (10, d, 3 * d, "qkv"),
        (10, d, d, "out_proj"),
        (10, d, 2 * d, "ffn1"),
        (10, 2 * d, d, "ffn2"),
        (10, d, 2 * d, "ffn1gelu"),
        (1, d, d, "head0"),
        (17, g, g, "graph"),
    ] {
        let x: Vec<f32> = (0..tokens * inp)
            .map(|i| (i % 13) as f32 * 0.1 - 0.6)
            .collect();
        let wf: Vec<f32> = (0..inp * out).map(|i| (i % 7) as f32 * 0.01).collect();
        let wq: Vec<i8> = (0..inp * out).map(|i| (i % 15) as i8 - 7).collect();
        let wp: Vec<u8> = (0..inp * out / 2).map(|i| (i * 37) as u8).collect();
        let bias = vec![0.1f32; out];
        let sc = [0.01f32];
        let mut y = vec![0.0f32; tokens * out];
        let flops = 2.0 * (tokens * inp * out) as f64;
        let mut line = format!("{name:>9} {tokens:>2}x{inp:>3}x{out:>3}");
        for data in [
            TensorData::F32(&wf),
            TensorData::I8 {
                q: &wq,
                scales: &sc,
            },
            TensorData::I4 {
                packed: &wp,
                scales: &sc,
            },
        ] {
            let w = Weights {
                rows: inp,
                cols: out,
                data,
            };
            let ns = min_ns(
                || {
                    linear(
                        k,
                        Input::rows(&x, tokens, inp),
                        &w,
                        Some(&bias),
                        if name == "ffn1gelu" {
                            Act::Gelu
                        } else {
                            Act::None
                        },
                        None,
                        &mut y,
                    )
                },
                2000,
            );
            line += &format!("  {ns:7.0} ns {:5.1} GF/s", flops / ns);
        }
        // The f32 weights repacked into panels (what `Runtime::new` does on AVX-512).
        let w = Weights {
            rows: inp,
            cols: out,
            data: TensorData::F32(&wf),
        };
        let mut mem = vec![0.0f32; panels_len(inp, out) + 16];
        let off = mem.as_ptr().align_offset(64);
        let p = pack_panels(&w, &mut mem[off..]).expect("f32");
        let act = if name == "ffn1gelu" {
            Act::Gelu
        } else {
            Act::None
        };
        let ns = min_ns(
            || {
                let x = Input::rows(&x, tokens, inp);
                linear_panels(k, x, &w, &p, Some(&bias), act, None, &mut y)
            },
            2000,
        );
        line += &format!("  panels {ns:7.0} ns {:5.1} GF/s", flops / ns);
        println!("{line}");
    }
}
