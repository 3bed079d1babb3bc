//! Minimum time of one Linear per shape of micro (10 tokens) and the graph head (17 joints),
//! f32 / int8 / int4, on the best kernel: `cargo run --release -p csipose-runtime --example kernels`.
//! Minimum over many runs, so it stays meaningful on a busy machine.

use csipose_runtime::kernels::{linear, Act, Input, Weights};
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

fn main() {
    let k = if std::env::args().any(|a| a == "vnni16") {
        Kernel::avx512_vnni16().expect("AVX-512 VNNI")
    } else {
        Kernel::best()
    };
    println!("kernel {}", k.name());
    for (tokens, inp, out, name) in [
        (10, 342, 64, "embed"),
        (10, 64, 192, "qkv"),
        (10, 64, 64, "out_proj"),
        (10, 64, 128, "ffn1"),
        (10, 128, 64, "ffn2"),
        (10, 64, 128, "ffn1gelu"),
        (1, 64, 64, "head0"),
        (17, 56, 56, "graph"),
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
        println!("{line}");
    }
}
