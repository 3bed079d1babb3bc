//! The int16 fixed-point path Linear by Linear: the AVX-512 VNNI kernel and quantizers against
//! the portable reference (`Kernel::portable_int16`) on odd shapes (column counts not a
//! multiple of 16, odd input widths, int4 rows starting mid-byte, 1 token, 17 tokens), and the
//! repacked Linear against the exact f32 product of the dequantised weights.

use csipose_model::Rng;
use csipose_runtime::int16::{pack, packed_len};
use csipose_runtime::kernels::{
    linear, linear_int16, quantize_rows, quantize_standardised, Act, Input, Weights,
};
use csipose_runtime::{Kernel, TensorData};

/// 64-byte aligned f32 buffer of `n` floats.
fn aligned(n: usize) -> (Vec<f32>, usize) {
    let v = vec![0.0f32; n + 16];
    let off = v.as_ptr().align_offset(64);
    (v, off)
}

fn randn(rng: &mut Rng, n: usize, s: f64) -> Vec<f32> {
    (0..n).map(|_| (s * rng.normal()) as f32).collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn vnni_matches_portable_int16_and_f32() {
    // Without VNNI the portable reference is still held to the f32 product; the VNNI
    // comparison is reported skipped.
    let vnni = Kernel::avx512_vnni16();
    if vnni.is_none() {
        eprintln!(
            "SKIPPED: vnni_matches_portable_int16_and_f32: this CPU lacks AVX-512 VNNI \
             (the int16 VNNI Linear is not checked here; the portable reference is)"
        );
    }
    let portable = Kernel::portable_int16();
    let mut rng = Rng::new(5);
    // (tokens, in, out)
    let shapes = [
        (10, 342, 64),
        (10, 64, 192),
        (10, 128, 64),
        (1, 64, 64),
        (1, 64, 34),
        (17, 57, 57),
        (17, 56, 56),
        (3, 7, 5),
        (13, 33, 49),
        (12, 48, 144),
    ];
    for &(n, k, c) in &shapes {
        let x = randn(&mut rng, n * k, 1.0);
        let bias = randn(&mut rng, c, 0.1);
        let res = randn(&mut rng, n * c, 1.0);
        let codes: Vec<i8> = (0..k * c).map(|_| (rng.normal() * 40.0) as i8).collect();
        let nib: Vec<u8> = (0..(k * c).div_ceil(2))
            .map(|_| (rng.normal() * 1000.0) as i64 as u8)
            .collect();
        let sc: Vec<f32> = (0..c).map(|i| 0.01 + 0.001 * i as f32).collect();
        for data in [
            TensorData::I8 {
                q: &codes,
                scales: &sc,
            },
            TensorData::I4 {
                packed: &nib,
                scales: &sc[..1],
            },
        ] {
            let w = Weights {
                rows: k,
                cols: c,
                data,
            };
            let (mut mem, off) = aligned(packed_len(k, c));
            let pk = pack(&w, &mut mem[off..]);
            for act in [Act::None, Act::Gelu, Act::Relu] {
                let mut outs = vec![];
                for kern in vnni.into_iter().chain([portable]) {
                    let mut q = vec![0.0f32; n * k.div_ceil(2)];
                    let mut sx = vec![0.0f32; n];
                    let xq = quantize_rows(kern, &x, n, k, k, pk.qx, &mut q, &mut sx);
                    let mut y = vec![f32::NAN; n * c];
                    linear_int16(kern, &xq, &pk, Some(&bias), act, Some(&res), &mut y);
                    outs.push((q.clone(), y));
                }
                // Same int16 activations and outputs bit for bit.
                if outs.len() == 2 {
                    assert_eq!(
                        outs[0].0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        outs[1].0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{n}x{k}x{c}: quantized activations differ"
                    );
                    assert_eq!(
                        outs[0].1, outs[1].1,
                        "{n}x{k}x{c} {act:?}: not bit-identical"
                    );
                }
                // Against the exact f32 product of the dequantised weights: the activation
                // rounding is at most half a code of 32767 per token.
                let mut y32 = vec![0.0f32; n * c];
                linear(
                    Kernel::portable(),
                    Input::rows(&x, n, k),
                    &w,
                    Some(&bias),
                    act,
                    Some(&res),
                    &mut y32,
                );
                let scale = y32.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (_, y) in &outs {
                    let d = max_abs(y, &y32);
                    assert!(d <= 1e-4 * scale, "{n}x{k}x{c}: int16 vs f32 {d:e}");
                }
            }
        }
    }
}

#[test]
fn embedding_quantizer_matches_portable() {
    let Some(vnni) = Kernel::avx512_vnni16() else {
        eprintln!(
            "SKIPPED: embedding_quantizer_matches_portable: this CPU lacks AVX-512 VNNI \
             (the AVX-512 quantizer is not checked here)"
        );
        return;
    };
    let mut rng = Rng::new(9);
    for (k, p) in [(342, 10), (15, 3), (101, 17), (64, 33)] {
        let x: Vec<f32> = randn(&mut rng, k * p, 2.0)
            .iter()
            .map(|v| v + 3.0)
            .collect();
        let mut outs = vec![];
        for kern in [vnni, Kernel::portable_int16()] {
            let mut q = vec![0.0f32; k.div_ceil(2) * p];
            let mut sx = vec![0.0f32; p];
            quantize_standardised(kern, &x, k, p, (3.0, 0.5), 32767.0, &mut q, &mut sx);
            outs.push((
                q.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                sx.clone(),
            ));
        }
        assert_eq!(outs[0], outs[1], "k={k} p={p}");
    }
}
