//! Minimum time of the int16 path's pieces per shape of micro (10 tokens) and the graph head
//! (17 joints): the activation quantizer alone, the VNNI Linear alone, both, and the exact-f32
//! AVX-512 Linear on the same int8 weights:
//! `cargo run --release -p csipose-runtime --example int16`. Minimum over many runs.

use csipose_runtime::int16::{pack, packed_len};
use csipose_runtime::kernels::{linear, linear_int16, quantize_rows, Act, Input, Weights};
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
    let Some(k16) = Kernel::avx512_vnni16() else {
        println!("no AVX-512 VNNI on this machine");
        return;
    };
    let exact = Kernel::best_exact();
    println!("int16 {} vs exact {}", k16.name(), exact.name());
    embed_input(k16);
    for (n, inp, out, name, act) in [
        (10, 64, 192, "qkv", Act::None),
        (10, 64, 64, "out_proj", Act::None),
        (10, 64, 128, "ffn1", Act::None),
        (10, 64, 128, "ffn1gelu", Act::Gelu),
        (10, 128, 64, "ffn2", Act::None),
        (1, 64, 64, "head0", Act::Gelu),
        (17, 56, 56, "graph", Act::Relu),
    ] {
        let x: Vec<f32> = (0..n * inp).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        let wq: Vec<i8> = (0..inp * out).map(|i| (i % 15) as i8 - 7).collect();
        let sc = [0.01f32];
        let w = Weights {
            rows: inp,
            cols: out,
            data: TensorData::I8 {
                q: &wq,
                scales: &sc,
            },
        };
        let mut mem = vec![0.0f32; packed_len(inp, out) + 16];
        let off = mem.as_ptr().align_offset(64);
        let pk = pack(&w, &mut mem[off..]);
        let bias = vec![0.1f32; out];
        let mut y = vec![0.0f32; n * out];
        let mut q = vec![0.0f32; n * inp.div_ceil(2)];
        let mut sx = vec![0.0f32; n];
        let tq = min_ns(
            || {
                quantize_rows(k16, &x, n, inp, inp, pk.qx, &mut q, &mut sx);
            },
            3000,
        );
        let (mut q2, mut sx2) = (q.clone(), sx.clone());
        let xq = quantize_rows(k16, &x, n, inp, inp, pk.qx, &mut q2, &mut sx2);
        let (qv, sv) = (xq.q.to_vec(), xq.sx.to_vec());
        let xq2 = csipose_runtime::int16::QInput {
            q: &qv,
            sx: &sv,
            ..xq
        };
        let tl = min_ns(
            || linear_int16(k16, &xq2, &pk, Some(&bias), act, None, &mut y),
            3000,
        );
        let tb = min_ns(
            || {
                let xq = quantize_rows(k16, &x, n, inp, inp, pk.qx, &mut q, &mut sx);
                linear_int16(k16, &xq, &pk, Some(&bias), act, None, &mut y)
            },
            3000,
        );
        let tf = min_ns(
            || {
                linear(
                    exact,
                    Input::rows(&x, n, inp),
                    &w,
                    Some(&bias),
                    act,
                    None,
                    &mut y,
                )
            },
            3000,
        );
        let macs = (n * inp * out) as f64;
        println!(
            "{name:>9} {n:>2}x{inp:>3}x{out:>3}  quantize {tq:6.0} ns  linear {tl:6.0} ns ({:4.1} MAC/cycle at 3.66 GHz)  both {tb:6.0} ns  exact f32 {tf:6.0} ns",
            macs / (tl * 3.66)
        );
    }
}

/// The embedding's input path on micro's frame (3 × 114 features × 10 packets): the
/// standardisation statistics and the fused standardise + quantize pass, separately.
fn embed_input(k16: Kernel) {
    let (k, p) = (342usize, 10usize);
    let x: Vec<f32> = (0..k * p)
        .map(|i| 3.0 + ((i * 37) % 101) as f32 * 0.02)
        .collect();
    let ts = min_ns(
        || {
            std::hint::black_box(csipose_runtime::math::standardise_stats(
                std::hint::black_box(&x),
            ));
        },
        3000,
    );
    let (mean, inv) = csipose_runtime::math::standardise_stats(&x);
    let mut q = vec![0.0f32; k.div_ceil(2) * p];
    let mut sx = vec![0.0f32; p];
    let tq = min_ns(
        || {
            csipose_runtime::kernels::quantize_standardised(
                k16,
                &x,
                k,
                p,
                (mean, inv),
                32767.0,
                &mut q,
                &mut sx,
            );
        },
        3000,
    );
    println!("embedding input 342x10: statistics {ts:.0} ns, standardise+quantize {tq:.0} ns");
}
