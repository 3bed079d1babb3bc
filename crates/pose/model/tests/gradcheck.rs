//! Backward passes against central finite differences: every layer kernel, then the whole
//! model (nano without, micro with the skeleton-graph head), dropout on with a fixed key.

use csipose_model::layers::*;
use csipose_model::{Model, ModelConfig, Rng, Workspace, OUTPUTS};

fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| scale * rng.normal() as f32).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Compares `analytic` with central differences of `loss` at the given indices of `x`;
/// returns the worst relative error `|num - ana| / max(|num| + |ana|, floor)`.
fn check(
    loss: &mut dyn FnMut(&[f32]) -> f64,
    x: &[f32],
    analytic: &[f32],
    indices: &[usize],
    eps: f32,
    floor: f64,
) -> f64 {
    let mut worst: f64 = 0.0;
    let mut xp = x.to_vec();
    for &i in indices {
        let orig = xp[i];
        xp[i] = orig + eps;
        let lp = loss(&xp);
        xp[i] = orig - eps;
        let lm = loss(&xp);
        xp[i] = orig;
        let num = (lp - lm) / (2.0 * eps as f64);
        let ana = analytic[i] as f64;
        let err = (num - ana).abs() / (num.abs() + ana.abs()).max(floor);
        if err > worst {
            worst = err;
        }
    }
    worst
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut rng = Rng::new(1);
    let (rows, inp, out) = (5, 7, 4);
    let x = rand_vec(&mut rng, rows * inp, 1.0);
    let w = rand_vec(&mut rng, out * inp, 0.5);
    let b = rand_vec(&mut rng, out, 0.5);
    let r = rand_vec(&mut rng, rows * out, 1.0);
    let mut y = vec![0.0; rows * out];
    let (mut dx, mut dw, mut db) = (vec![0.0; rows * inp], vec![0.0; out * inp], vec![0.0; out]);
    linear_backward(&x, &w, &r, Some(&mut dx), &mut dw, &mut db, rows, inp, out);
    let mut fx = |xx: &[f32]| {
        linear_forward(xx, &w, &b, &mut y, rows, inp, out);
        dot(&y, &r)
    };
    assert!(check(&mut fx, &x, &dx, &all(x.len()), 1e-2, 1e-3) < 2e-3);
    let mut y = vec![0.0; rows * out];
    let mut fw = |ww: &[f32]| {
        linear_forward(&x, ww, &b, &mut y, rows, inp, out);
        dot(&y, &r)
    };
    assert!(check(&mut fw, &w, &dw, &all(w.len()), 1e-2, 1e-3) < 2e-3);
    let mut y = vec![0.0; rows * out];
    let mut fb = |bb: &[f32]| {
        linear_forward(&x, &w, bb, &mut y, rows, inp, out);
        dot(&y, &r)
    };
    assert!(check(&mut fb, &b, &db, &all(b.len()), 1e-2, 1e-3) < 2e-3);
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(2);
    let (rows, d) = (4, 8);
    let x = rand_vec(&mut rng, rows * d, 1.0);
    let g = rand_vec(&mut rng, d, 1.0);
    let be = rand_vec(&mut rng, d, 1.0);
    let r = rand_vec(&mut rng, rows * d, 1.0);
    let (mut y, mut m, mut s) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows]);
    layernorm_forward(&x, &g, &be, &mut y, &mut m, &mut s, rows, d);
    let (mut dx, mut dg, mut db) = (vec![0.0; rows * d], vec![0.0; d], vec![0.0; d]);
    layernorm_backward(&x, &g, &m, &s, &r, &mut dx, &mut dg, &mut db, rows, d);
    let mut fx = |xx: &[f32]| {
        layernorm_forward(xx, &g, &be, &mut y, &mut m, &mut s, rows, d);
        dot(&y, &r)
    };
    let e = check(&mut fx, &x, &dx, &all(x.len()), 1e-2, 1e-2);
    assert!(e < 1e-2, "dx {e}");
    let (mut y, mut m, mut s) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows]);
    let mut fg = |gg: &[f32]| {
        layernorm_forward(&x, gg, &be, &mut y, &mut m, &mut s, rows, d);
        dot(&y, &r)
    };
    assert!(check(&mut fg, &g, &dg, &all(d), 1e-2, 1e-3) < 2e-3);
    let (mut y, mut m, mut s) = (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows]);
    let mut fb = |bb: &[f32]| {
        layernorm_forward(&x, &g, bb, &mut y, &mut m, &mut s, rows, d);
        dot(&y, &r)
    };
    assert!(check(&mut fb, &be, &db, &all(d), 1e-2, 1e-3) < 2e-3);
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(3);
    let x = rand_vec(&mut rng, 64, 2.0);
    let r = rand_vec(&mut rng, 64, 1.0);
    let mut dx = r.clone();
    gelu_backward(&x, &mut dx);
    let mut y = vec![0.0; 64];
    let mut f = |xx: &[f32]| {
        gelu_forward(xx, &mut y);
        dot(&y, &r)
    };
    let e = check(&mut f, &x, &dx, &all(64), 1e-2, 1e-2);
    assert!(e < 5e-3, "{e}");
    // tanh approximation, PyTorch approximate="tanh" reference values
    assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
    assert!((gelu(-0.5) + 0.154_286).abs() < 1e-5);
}

#[test]
fn dropout_backward_is_the_mask_and_keeps_the_mean() {
    let n = 20_000;
    let mut x = vec![1.0f32; n];
    let mut mask = vec![0.0f32; n];
    dropout_forward(&mut x, &mut mask, 0.25, 99);
    let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / n as f64;
    assert!((kept - 0.75).abs() < 0.02, "{kept}");
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    assert!((mean - 1.0).abs() < 0.03);
    let mut d = vec![2.0f32; n];
    dropout_backward(&mask, &mut d);
    for (g, m) in d.iter().zip(&mask) {
        assert_eq!(*g, 2.0 * m);
    }
    // same key, same mask
    let mut x2 = vec![1.0f32; n];
    let mut mask2 = vec![0.0f32; n];
    dropout_forward(&mut x2, &mut mask2, 0.25, 99);
    assert_eq!(mask, mask2);
}

/// The fused elementwise passes equal the separate ones bit for bit (with and without a
/// dropout draw), over lengths of several chunks with a partial last one.
#[test]
fn fused_elementwise_passes_equal_the_separate_ones() {
    let mut rng = Rng::new(21);
    let n = 3 * 4096 + 1234;
    let x = rand_vec(&mut rng, n, 3.0);
    let r = rand_vec(&mut rng, n, 1.0);
    let g0 = rand_vec(&mut rng, n, 1.0);
    let dr = DropDraw { p: 0.3, key: 77 };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    // gelu then dropout
    let (mut y1, mut m1) = (vec![0.0; n], vec![0.0; n]);
    gelu_forward(&x, &mut y1);
    dropout_forward(&mut y1, &mut m1, dr.p, dr.key);
    let (mut y2, mut m2) = (vec![0.0; n], vec![0.0; n]);
    gelu_dropout_forward(&x, &mut y2, Some((dr, &mut m2)));
    assert_eq!(bits(&y1), bits(&y2));
    assert_eq!(bits(&m1), bits(&m2));
    let mut y3 = vec![0.0; n];
    gelu_dropout_forward(&x, &mut y3, None);
    let mut y4 = vec![0.0; n];
    gelu_forward(&x, &mut y4);
    assert_eq!(bits(&y3), bits(&y4));
    // dropout then residual add
    let (mut a1, mut am1) = (x.clone(), vec![0.0; n]);
    dropout_forward(&mut a1, &mut am1, dr.p, dr.key);
    for (v, w) in a1.iter_mut().zip(&r) {
        *v += w;
    }
    let (mut a2, mut am2) = (x.clone(), vec![0.0; n]);
    dropout_add_forward(&mut a2, &mut am2, Some(dr), &r);
    assert_eq!(bits(&a1), bits(&a2));
    assert_eq!(bits(&am1), bits(&am2));
    let mut a3 = x.clone();
    dropout_add_forward(&mut a3, &mut am2, None, &r);
    let a4: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
    assert_eq!(bits(&a3), bits(&a4));
    // backward: copy then mask; mask then GELU'
    let mut d1 = g0.clone();
    dropout_backward(&m1, &mut d1);
    let mut d2 = vec![0.0; n];
    dropout_backward_into(Some(&m1), &g0, &mut d2);
    assert_eq!(bits(&d1), bits(&d2));
    dropout_backward_into(None, &g0, &mut d2);
    assert_eq!(bits(&d2), bits(&g0));
    gelu_backward(&x, &mut d1);
    let mut d3 = g0.clone();
    gelu_dropout_backward(&x, Some(&m1), &mut d3);
    assert_eq!(bits(&d1), bits(&d3));
    let (mut d4, mut d5) = (g0.clone(), g0.clone());
    gelu_backward(&x, &mut d4);
    gelu_dropout_backward(&x, None, &mut d5);
    assert_eq!(bits(&d4), bits(&d5));
}

#[test]
fn attention_backward_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let (batch, p, d, heads) = (2, 5, 8, 2);
    let qkv = rand_vec(&mut rng, batch * p * 3 * d, 1.0);
    let r = rand_vec(&mut rng, batch * p * d, 1.0);
    let (mut ctx, mut probs) = (vec![0.0; batch * p * d], vec![0.0; batch * heads * p * p]);
    attention_forward(&qkv, &mut ctx, &mut probs, batch, p, d, heads);
    let mut dqkv = vec![0.0; qkv.len()];
    attention_backward(&qkv, &probs, &r, &mut dqkv, batch, p, d, heads);
    let mut f = |q: &[f32]| {
        attention_forward(q, &mut ctx, &mut probs, batch, p, d, heads);
        dot(&ctx, &r)
    };
    let e = check(&mut f, &qkv, &dqkv, &all(qkv.len()), 1e-2, 1e-2);
    assert!(e < 1e-2, "{e}");
}

#[test]
fn pool_backward_matches_finite_differences() {
    let mut rng = Rng::new(5);
    let (batch, p, d) = (3, 4, 6);
    let h = rand_vec(&mut rng, batch * p * d, 1.0);
    let mut wb = rand_vec(&mut rng, d + 1, 1.0); // w then bias
    let r = rand_vec(&mut rng, batch * d, 1.0);
    let (mut probs, mut z) = (vec![0.0; batch * p], vec![0.0; batch * d]);
    pool_forward(&h, &wb[..d], wb[d], &mut probs, &mut z, batch, p, d);
    let (mut dh, mut dw, mut db) = (vec![0.0; h.len()], vec![0.0; d], 0.0f32);
    pool_backward(
        &h,
        &wb[..d],
        &probs,
        &r,
        &mut dh,
        &mut dw,
        &mut db,
        batch,
        p,
        d,
    );
    let mut fh = |hh: &[f32]| {
        pool_forward(hh, &wb[..d], wb[d], &mut probs, &mut z, batch, p, d);
        dot(&z, &r)
    };
    let e = check(&mut fh, &h, &dh, &all(h.len()), 1e-2, 1e-2);
    assert!(e < 1e-2, "dh {e}");
    let mut dwb = dw.clone();
    dwb.push(db);
    let mut fw = |w: &[f32]| {
        pool_forward(&h, &w[..d], w[d], &mut probs, &mut z, batch, p, d);
        dot(&z, &r)
    };
    let e = check(&mut fw, &wb, &dwb, &all(d + 1), 1e-2, 1e-2);
    assert!(e < 1e-2, "dw {e}");
    wb[0] += 0.0;
}

#[test]
fn graph_mix_backward_is_the_transpose() {
    let mut rng = Rng::new(6);
    let (batch, n, g) = (2, 17, 3);
    let adj = csipose_model::model::skeleton_adjacency();
    for row in adj.chunks(n) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    let f = rand_vec(&mut rng, batch * n * g, 1.0);
    let r = rand_vec(&mut rng, batch * n * g, 1.0);
    let mut out = vec![0.0; f.len()];
    let mut df = vec![0.0; f.len()];
    graph_mix(&adj, true, &r, &mut df, batch, n, g);
    let mut fm = |ff: &[f32]| {
        graph_mix(&adj, false, ff, &mut out, batch, n, g);
        dot(&out, &r)
    };
    let e = check(&mut fm, &f, &df, &all(f.len()), 1e-2, 1e-3);
    assert!(e < 2e-3, "{e}");
}

/// Whole model: `loss = Σ r ⊙ model(x)`; checks `samples_per_tensor` entries of every tensor.
fn whole_model_check(cfg: ModelConfig, dropout: bool) -> f64 {
    let model = Model::new(cfg.clone());
    let mut rng = Rng::new(11);
    // Larger-than-default init so the signal reaches every tensor at f32 precision.
    let params: Vec<f32> = model.init_params(5);
    let batch = 2;
    let x = rand_vec(&mut rng, batch * cfg.frame_len(), 1.0);
    let r = rand_vec(&mut rng, batch * OUTPUTS, 1.0);
    let key = if dropout { Some(1234) } else { None };
    let mut ws = Workspace::default();
    model.forward(&params, &x, batch, key, &mut ws);
    let mut grads = vec![0.0; params.len()];
    model.backward(&params, batch, &r, &mut grads, &mut ws);
    let mut idx = Vec::new();
    for t in &model.layout.tensors {
        for k in 0..4 {
            idx.push(t.offset + (rng.below(t.len) + k) % t.len);
        }
    }
    let mut worst_tensor = String::new();
    let mut worst = 0.0;
    for t in &model.layout.tensors {
        let ids: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| i >= t.offset && i < t.offset + t.len)
            .collect();
        let mut f = |p: &[f32]| dot(model.forward(p, &x, batch, key, &mut ws), &r);
        let e = check(&mut f, &params, &grads, &ids, 2e-3, 2e-2);
        if e > worst {
            worst = e;
            worst_tensor = t.name.clone();
        }
    }
    eprintln!(
        "{}: worst relative error {worst:.2e} in {worst_tensor}",
        cfg.name
    );
    worst
}

fn small_input(name: &str) -> ModelConfig {
    // Full widths of the preset; a narrower input (3 × 16 subcarriers) keeps the check fast.
    ModelConfig::preset_for(name, 3, 16, 10).unwrap()
}

#[test]
fn nano_whole_model_gradient() {
    assert!(whole_model_check(small_input("nano"), false) < 3e-2);
    assert!(whole_model_check(small_input("nano"), true) < 3e-2);
}

#[test]
fn micro_with_graph_head_whole_model_gradient() {
    let c = small_input("micro");
    assert!(c.graph.is_some());
    assert!(whole_model_check(c, true) < 3e-2);
}

#[test]
fn forward_is_deterministic_across_thread_counts_for_eval() {
    let cfg = small_input("micro");
    let model = Model::new(cfg.clone());
    let params = model.init_params(3);
    let mut rng = Rng::new(2);
    let x = rand_vec(&mut rng, 4 * cfg.frame_len(), 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut ws = Workspace::default();
            model.forward(&params, &x, 4, Some(9), &mut ws).to_vec()
        })
    };
    let (a, b) = (run(2), run(2));
    assert_eq!(a, b);
    let c = run(1);
    for (u, v) in a.iter().zip(&c) {
        assert!((u - v).abs() < 1e-5);
    }
    assert!(a.iter().all(|v| v.is_finite() && *v > -0.3 && *v < 1.3));
}

#[test]
fn pooled_vectors_are_per_sample_and_feed_the_head() {
    let cfg = small_input("nano");
    let model = Model::new(cfg.clone());
    let params = model.init_params(4);
    let mut rng = Rng::new(6);
    let x = rand_vec(&mut rng, 3 * cfg.frame_len(), 1.0);
    let mut ws = Workspace::default();
    let out3 = model.forward(&params, &x, 3, None, &mut ws).to_vec();
    let z3 = model.pooled(&ws, 3).to_vec();
    assert_eq!(z3.len(), 3 * cfg.d);
    assert!(z3.iter().all(|v| v.is_finite()));
    // One sample alone gives the same pooled vector and output as inside the batch.
    let mut ws1 = Workspace::default();
    let fl = cfg.frame_len();
    let out1 = model
        .forward(&params, &x[fl..2 * fl], 1, None, &mut ws1)
        .to_vec();
    let z1 = model.pooled(&ws1, 1);
    for (a, b) in z1.iter().zip(&z3[cfg.d..2 * cfg.d]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    for (a, b) in out1.iter().zip(&out3[OUTPUTS..2 * OUTPUTS]) {
        assert!((a - b).abs() < 1e-5);
    }
    // Different inputs give different pooled vectors.
    assert!(z3[..cfg.d]
        .iter()
        .zip(&z3[cfg.d..2 * cfg.d])
        .any(|(a, b)| (a - b).abs() > 1e-4));
}

#[test]
fn fast_tanh_matches_libm() {
    let mut worst = 0.0f32;
    for i in -20_000..=20_000 {
        let x = i as f32 * 0.001;
        worst = worst.max((fast_tanh(x) - x.tanh()).abs());
    }
    assert!(worst < 1e-6, "{worst}");
    assert_eq!(fast_tanh(100.0), fast_tanh(7.905_311));
    assert!((fast_tanh(100.0) - 1.0).abs() < 1e-6);
}
