//! The attention pooling on the shared attention math (`csipose_attn_core::pool` and
//! `attend_backward`) computes what the model's own loops computed before, operation for
//! operation: the written-out loops below are those loops, and the values must be equal
//! (`==`, so only the sign of a zero may differ). Its finite-difference check is in
//! `gradcheck.rs`.

use csipose_model::layers::{pool_backward, pool_forward};
use csipose_model::Rng;

fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| scale * rng.normal() as f32).collect()
}

/// The model's pooling forward before it moved onto `csipose-attn-core`.
fn reference_forward(h: &[f32], w: &[f32], bias: f32, p: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let batch = h.len() / (p * d);
    let (mut probs, mut z) = (vec![0.0f32; batch * p], vec![0.0f32; batch * d]);
    for b in 0..batch {
        let hb = &h[b * p * d..(b + 1) * p * d];
        let (pb, zb) = (&mut probs[b * p..(b + 1) * p], &mut z[b * d..(b + 1) * d]);
        let mut mx = f32::NEG_INFINITY;
        for t in 0..p {
            pb[t] = hb[t * d..(t + 1) * d]
                .iter()
                .zip(w)
                .map(|(a, c)| a * c)
                .sum::<f32>()
                + bias;
            mx = mx.max(pb[t]);
        }
        let mut sum = 0.0;
        for v in pb.iter_mut() {
            *v = (*v - mx).exp();
            sum += *v;
        }
        for v in pb.iter_mut() {
            *v /= sum;
        }
        for t in 0..p {
            for (o, x) in zb.iter_mut().zip(&hb[t * d..(t + 1) * d]) {
                *o += pb[t] * x;
            }
        }
    }
    (probs, z)
}

/// The model's pooling backward before: `(dh, dw, db)`.
fn reference_backward(
    h: &[f32],
    w: &[f32],
    probs: &[f32],
    dz: &[f32],
    p: usize,
    d: usize,
) -> (Vec<f32>, Vec<f32>, f32) {
    let batch = h.len() / (p * d);
    let mut ds = vec![0.0f32; batch * p];
    let mut dh = vec![0.0f32; h.len()];
    for b in 0..batch {
        let hb = &h[b * p * d..(b + 1) * p * d];
        let pb = &probs[b * p..(b + 1) * p];
        let dzb = &dz[b * d..(b + 1) * d];
        let dsb = &mut ds[b * p..(b + 1) * p];
        let dhb = &mut dh[b * p * d..(b + 1) * p * d];
        let mut dot = 0.0;
        for t in 0..p {
            let da: f32 = hb[t * d..(t + 1) * d]
                .iter()
                .zip(dzb)
                .map(|(a, c)| a * c)
                .sum();
            dsb[t] = da;
            dot += pb[t] * da;
        }
        for t in 0..p {
            dsb[t] = pb[t] * (dsb[t] - dot);
            for i in 0..d {
                dhb[t * d + i] = pb[t] * dzb[i] + dsb[t] * w[i];
            }
        }
    }
    let (mut dw, mut db) = (vec![0.0f32; d], 0.0f32);
    for (r, &s) in ds.iter().enumerate() {
        db += s;
        for (g, x) in dw.iter_mut().zip(&h[r * d..(r + 1) * d]) {
            *g += s * x;
        }
    }
    (dh, dw, db)
}

#[test]
fn pool_on_attn_core_equals_the_old_loops() {
    let mut rng = Rng::new(17);
    for &(batch, p, d) in &[(1, 10, 64), (5, 10, 128), (3, 7, 33), (2, 1, 5)] {
        let h = rand_vec(&mut rng, batch * p * d, 1.0);
        let w = rand_vec(&mut rng, d, 0.5);
        let bias = 0.37f32;
        let dz = rand_vec(&mut rng, batch * d, 1.0);
        let (mut probs, mut z) = (vec![0.0; batch * p], vec![0.0; batch * d]);
        pool_forward(&h, &w, bias, &mut probs, &mut z, batch, p, d);
        let (rp, rz) = reference_forward(&h, &w, bias, p, d);
        assert_eq!(probs, rp, "{batch}x{p}x{d} probabilities");
        assert_eq!(z, rz, "{batch}x{p}x{d} pooled");
        let (mut dh, mut dw, mut db) = (vec![f32::NAN; h.len()], vec![0.0; d], 0.0f32);
        pool_backward(&h, &w, &probs, &dz, &mut dh, &mut dw, &mut db, batch, p, d);
        let (rdh, rdw, rdb) = reference_backward(&h, &w, &probs, &dz, p, d);
        assert_eq!(dh, rdh, "{batch}x{p}x{d} dh");
        assert_eq!(dw, rdw, "{batch}x{p}x{d} dw");
        assert_eq!(db, rdb, "{batch}x{p}x{d} db");
    }
}
