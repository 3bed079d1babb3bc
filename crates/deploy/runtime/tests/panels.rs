//! f32 weights repacked into panels ([`csipose_runtime::kernels::Panels`], what
//! `Runtime::new` does on the AVX-512 paths): the panel kernel equals the unpacked AVX-512
//! kernel bit for bit on odd shapes (1, 5, 10, 17 tokens; column counts not a multiple of 16;
//! strided inputs; every epilogue), and every other path falls back to its own unpacked
//! kernel (so AVX2 and portable are checked on this host too).

use csipose_model::Rng;
use csipose_runtime::kernels::{
    linear, linear_panels, pack_panels, panels_len, Act, Input, Weights,
};
use csipose_runtime::{Kernel, TensorData};

fn randn(rng: &mut Rng, n: usize, s: f64) -> Vec<f32> {
    (0..n).map(|_| (s * rng.normal()) as f32).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn panels_equal_unpacked_bit_for_bit() {
    let mut kernels = vec![Kernel::portable()];
    kernels.extend(Kernel::avx2());
    match Kernel::avx512() {
        Some(k) => kernels.push(k),
        None => eprintln!(
            "SKIPPED: panels_equal_unpacked_bit_for_bit: this CPU lacks AVX-512 (the panel \
             kernel is not run here; the fallbacks are)"
        ),
    }
    kernels.extend(Kernel::avx512_vnni16());
    let mut rng = Rng::new(11);
    // (tokens, in, out)
    let shapes = [
        (10, 342, 128),
        (10, 128, 384),
        (10, 160, 480),
        (10, 320, 160),
        (1, 160, 160),
        (1, 128, 34),
        (17, 58, 58),
        (17, 56, 56),
        (5, 7, 5),
        (13, 33, 49),
        (12, 48, 144),
        (3, 1, 17),
        (10, 48, 48),
        (10, 40, 40),
        (1, 48, 40),
        (1, 160, 34),
        (2, 9, 100),
    ];
    for &(n, k, c) in &shapes {
        let wf = randn(&mut rng, k * c, 0.2);
        let w = Weights {
            rows: k,
            cols: c,
            data: TensorData::F32(&wf),
        };
        let mut mem = vec![f32::NAN; panels_len(k, c) + 3];
        // Deliberately not 64-byte aligned: the kernel must not rely on it.
        let p = pack_panels(&w, &mut mem[3..]).expect("f32 weights pack");
        let bias = randn(&mut rng, c, 0.1);
        let res = randn(&mut rng, n * c, 1.0);
        // Row-major input, and the embedding's feature-major layout (ts = 1, ks = n).
        let xr = randn(&mut rng, n * k, 1.0);
        for (ts, ks) in [(k, 1), (1, n)] {
            let x = Input {
                x: &xr,
                tokens: n,
                ts,
                ks,
            };
            for act in [Act::None, Act::Gelu, Act::Relu] {
                for resid in [None, Some(&res[..])] {
                    for &kern in &kernels {
                        let mut y0 = vec![f32::NAN; n * c];
                        let mut y1 = vec![f32::NAN; n * c];
                        linear(kern, x, &w, Some(&bias), act, resid, &mut y0);
                        linear_panels(kern, x, &w, &p, Some(&bias), act, resid, &mut y1);
                        assert_eq!(
                            bits(&y0),
                            bits(&y1),
                            "{} {n}x{k}x{c} ts={ts} {act:?} residual={}",
                            kern.name(),
                            resid.is_some()
                        );
                    }
                }
            }
        }
    }
    // Quantized weights are not packed.
    let q = [1i8; 6];
    let wq = Weights {
        rows: 2,
        cols: 3,
        data: TensorData::I8 {
            q: &q,
            scales: &[0.5],
        },
    };
    assert!(pack_panels(&wq, &mut [0.0; 32]).is_none());
}
