//! Checks of the attention kernel against an f64 reference written from the definition:
//! prefill vs reference, streaming vs prefill, sparse vs dense when the window covers everything,
//! finiteness at N = 4096, shape/cache errors, and backward passes vs finite differences.

use csipose_attention::{
    sparse_pattern, Attention, AttentionConfig, AttentionError, Backend, KvCache, Pattern,
};

/// Deterministic uniform numbers in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * amp).collect()
    }
}

fn config(
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: usize,
    block_size: usize,
    causal: bool,
) -> AttentionConfig {
    AttentionConfig {
        q_heads,
        kv_heads,
        head_dim,
        window,
        block_size,
        causal,
    }
}

fn inputs(cfg: &AttentionConfig, n: usize, seed: u64, amp: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng(seed);
    (
        rng.vec(n * cfg.q_row(), amp),
        rng.vec(n * cfg.kv_row(), amp),
        rng.vec(n * cfg.kv_row(), 1.0),
    )
}

/// Attention computed in f64 straight from the definition (items listed, then softmax).
fn reference(
    cfg: &AttentionConfig,
    backend: Backend,
    n: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Vec<f64> {
    let (d, kr, qr) = (cfg.head_dim, cfg.kv_row(), cfg.q_row());
    let bs = cfg.block_size;
    let mean = |x: &[f32], b: usize, g: usize, dd: usize| -> f64 {
        (b * bs..(b + 1) * bs)
            .map(|t| x[t * kr + g * d + dd] as f64)
            .sum::<f64>()
            / bs as f64
    };
    let mut out = vec![0.0f64; n * qr];
    let mut p = Pattern::default();
    for i in 0..n {
        match backend {
            Backend::Sparse => sparse_pattern(cfg, i, n, &mut p),
            Backend::Dense => {
                p.tokens = (0..if cfg.causal { i + 1 } else { n }).collect();
                p.blocks.clear();
            }
        }
        for h in 0..cfg.q_heads {
            let g = h / (cfg.q_heads / cfg.kv_heads);
            let mut keys: Vec<Vec<f64>> = Vec::new();
            let mut vals: Vec<Vec<f64>> = Vec::new();
            for &j in &p.tokens {
                keys.push((0..d).map(|dd| k[j * kr + g * d + dd] as f64).collect());
                vals.push((0..d).map(|dd| v[j * kr + g * d + dd] as f64).collect());
            }
            for &b in &p.blocks {
                keys.push((0..d).map(|dd| mean(k, b, g, dd)).collect());
                vals.push((0..d).map(|dd| mean(v, b, g, dd)).collect());
            }
            let s: Vec<f64> = keys
                .iter()
                .map(|key| {
                    (0..d)
                        .map(|dd| q[i * qr + h * d + dd] as f64 * key[dd])
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = w.iter().sum();
            for dd in 0..d {
                out[i * qr + h * d + dd] =
                    w.iter().zip(&vals).map(|(w, val)| w * val[dd]).sum::<f64>() / z;
            }
        }
    }
    out
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn configs() -> Vec<AttentionConfig> {
    vec![
        AttentionConfig::default(),
        config(4, 4, 16, 5, 8, true),   // MHA
        config(6, 2, 12, 3, 5, true),   // GQA, odd head_dim
        config(3, 1, 8, 0, 3, true),    // MQA, no window
        config(4, 2, 16, 4, 6, false),  // non-causal
        config(4, 4, 32, 16, 32, true), // the bench setting (query-tile kernel on x86-64)
        config(2, 1, 16, 7, 4, true),   // GQA, shortest window the tile kernel takes
    ]
}

#[test]
fn prefill_matches_reference() {
    for cfg in configs() {
        for backend in [Backend::Sparse, Backend::Dense] {
            for n in [1usize, 2, 17, 100, 203] {
                let (q, k, v) = inputs(&cfg, n, 7 + n as u64, 2.0);
                let out = Attention::new(cfg, backend)
                    .unwrap()
                    .forward(&q, &k, &v)
                    .unwrap();
                let diff = max_diff(&out, &reference(&cfg, backend, n, &q, &k, &v));
                assert!(diff <= 1e-5, "{cfg:?} {backend:?} n={n}: {diff}");
            }
        }
    }
}

#[test]
fn streaming_equals_prefill_at_every_position() {
    for cfg in configs().into_iter().filter(|c| c.causal) {
        for backend in [Backend::Sparse, Backend::Dense] {
            let n = 150;
            let (q, k, v) = inputs(&cfg, n, 3, 2.0);
            let att = Attention::new(cfg, backend).unwrap();
            let prefill = att.forward(&q, &k, &v).unwrap();
            let mut cache = KvCache::new(&cfg, n).unwrap();
            let (qr, kr) = (cfg.q_row(), cfg.kv_row());
            for i in 0..n {
                let out = att
                    .step(
                        &q[i * qr..(i + 1) * qr],
                        &k[i * kr..(i + 1) * kr],
                        &v[i * kr..(i + 1) * kr],
                        &mut cache,
                    )
                    .unwrap();
                for (a, b) in out.iter().zip(&prefill[i * qr..(i + 1) * qr]) {
                    assert!(
                        (a - b).abs() <= 1e-4,
                        "{cfg:?} {backend:?} position {i}: {a} vs {b}"
                    );
                }
            }
            assert_eq!(cache.len(), n);
        }
    }
}

#[test]
fn sparse_equals_dense_when_window_covers_everything() {
    for causal in [true, false] {
        let n = 130;
        let cfg = config(4, 2, 16, n, 16, causal);
        let (q, k, v) = inputs(&cfg, n, 11, 3.0);
        let sparse = Attention::new(cfg, Backend::Sparse)
            .unwrap()
            .forward(&q, &k, &v)
            .unwrap();
        let dense = Attention::new(cfg, Backend::Dense)
            .unwrap()
            .forward(&q, &k, &v)
            .unwrap();
        let diff = sparse
            .iter()
            .zip(&dense)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff <= 1e-4, "causal={causal}: {diff}");
    }
    // And the sparse pattern really differs from dense when the window is short.
    let cfg = config(4, 2, 16, 4, 16, true);
    let (q, k, v) = inputs(&cfg, 130, 11, 3.0);
    let sparse = Attention::new(cfg, Backend::Sparse)
        .unwrap()
        .forward(&q, &k, &v)
        .unwrap();
    let dense = Attention::new(cfg, Backend::Dense)
        .unwrap()
        .forward(&q, &k, &v)
        .unwrap();
    assert!(sparse.iter().zip(&dense).any(|(a, b)| (a - b).abs() > 1e-2));
}

#[test]
fn finite_output_at_4096_tokens() {
    let cfg = AttentionConfig::default();
    let n = 4096;
    let (q, k, v) = inputs(&cfg, n, 5, 8.0);
    for backend in [Backend::Sparse, Backend::Dense] {
        let out = Attention::new(cfg, backend)
            .unwrap()
            .forward(&q, &k, &v)
            .unwrap();
        assert_eq!(out.len(), n * cfg.q_row());
        assert!(
            out.iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-5),
            "{backend:?}"
        );
    }
}

#[test]
fn shape_and_cache_errors() {
    assert_eq!(
        Attention::new(config(4, 3, 8, 4, 4, true), Backend::Sparse).unwrap_err(),
        AttentionError::HeadRatio {
            q_heads: 4,
            kv_heads: 3
        }
    );
    assert_eq!(
        Attention::new(config(4, 1, 0, 4, 4, true), Backend::Dense).unwrap_err(),
        AttentionError::ZeroDimension("head_dim")
    );
    assert!(matches!(
        KvCache::new(&config(4, 3, 8, 4, 4, true), 8),
        Err(AttentionError::HeadRatio { .. })
    ));
    let cfg = config(4, 2, 8, 4, 4, true);
    let att = Attention::new(cfg, Backend::Sparse).unwrap();
    let (q, k, v) = inputs(&cfg, 3, 1, 1.0);
    assert!(matches!(
        att.forward(&q[1..], &k, &v),
        Err(AttentionError::RaggedTensor { tensor: "q", .. })
    ));
    assert_eq!(
        att.forward(&q, &k[..2 * 16], &v).unwrap_err(),
        AttentionError::TokenCountMismatch { q: 3, k: 2, v: 3 }
    );
    assert!(matches!(
        att.backward(&q, &k, &v, &q[..8]),
        Err(AttentionError::WrongLength { .. })
    ));
    let mut cache = KvCache::new(&cfg, 2).unwrap();
    assert_eq!(
        att.step(&q, &k[..16], &v[..16], &mut cache).unwrap_err(),
        AttentionError::StepTokens {
            tensor: "q",
            tokens: 3
        }
    );
    assert_eq!(
        att.step(&q[..32], &k[..32], &v[..16], &mut cache)
            .unwrap_err(),
        AttentionError::StepTokens {
            tensor: "k",
            tokens: 2
        }
    );
    assert!(cache.is_empty(), "a rejected step must not touch the cache");
    for _ in 0..2 {
        att.step(&q[..32], &k[..16], &v[..16], &mut cache).unwrap();
    }
    assert_eq!(
        att.step(&q[..32], &k[..16], &v[..16], &mut cache)
            .unwrap_err(),
        AttentionError::CacheFull { capacity: 2 }
    );
    let mut other = KvCache::new(&config(4, 4, 8, 4, 4, true), 4).unwrap();
    assert_eq!(
        att.step(&q[..32], &k[..16], &v[..16], &mut other)
            .unwrap_err(),
        AttentionError::CacheMismatch
    );
    let non_causal = Attention::new(config(4, 2, 8, 4, 4, false), Backend::Dense).unwrap();
    let mut cache = KvCache::new(&cfg, 2).unwrap();
    assert_eq!(
        non_causal
            .step(&q[..32], &k[..16], &v[..16], &mut cache)
            .unwrap_err(),
        AttentionError::NotCausal
    );
}

#[test]
fn block_means_are_kept_per_block() {
    let cfg = config(2, 1, 4, 2, 3, true);
    let (q, k, v) = inputs(&cfg, 7, 9, 1.0);
    let att = Attention::new(cfg, Backend::Sparse).unwrap();
    let mut cache = KvCache::new(&cfg, 7).unwrap();
    for i in 0..7 {
        att.step(
            &q[i * 8..(i + 1) * 8],
            &k[i * 4..(i + 1) * 4],
            &v[i * 4..(i + 1) * 4],
            &mut cache,
        )
        .unwrap();
    }
    for b in 0..2 {
        let mean = cache.block_key_mean(b).unwrap();
        for dd in 0..4 {
            let want = (0..3).map(|t| k[(b * 3 + t) * 4 + dd]).sum::<f32>() / 3.0;
            assert!((mean[dd] - want).abs() < 1e-6);
        }
    }
    assert!(
        cache.block_key_mean(2).is_none(),
        "block 2 holds one token only"
    );
}

/// Central finite differences of `sum(w * forward)` against the analytic gradients.
fn check_gradients(cfg: AttentionConfig, backend: Backend) {
    let n = 29;
    let (q, k, v) = inputs(&cfg, n, 21, 1.5);
    let w = Rng(99).vec(n * cfg.q_row(), 1.0);
    let att = Attention::new(cfg, backend).unwrap();
    let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
        let out = att.forward(q, k, v).unwrap();
        out.iter().zip(&w).map(|(o, w)| *o as f64 * *w as f64).sum()
    };
    let grads = att.backward(&q, &k, &v, &w).unwrap();
    let eps = 1e-2f32;
    let mut worst = 0.0f64;
    for (which, analytic) in [(0, &grads.dq), (1, &grads.dk), (2, &grads.dv)] {
        let base = [&q, &k, &v][which];
        for idx in 0..base.len() {
            let mut plus = [q.clone(), k.clone(), v.clone()];
            let mut minus = plus.clone();
            plus[which][idx] += eps;
            minus[which][idx] -= eps;
            let numeric = (loss(&plus[0], &plus[1], &plus[2])
                - loss(&minus[0], &minus[1], &minus[2]))
                / (2.0 * eps as f64);
            let err = (numeric - analytic[idx] as f64).abs() / (1.0 + numeric.abs());
            worst = worst.max(err);
        }
    }
    assert!(
        worst < 2e-3,
        "{cfg:?} {backend:?}: worst relative error {worst}"
    );
}

#[test]
fn backward_matches_finite_differences() {
    for causal in [true, false] {
        let cfg = config(4, 2, 8, 3, 4, causal);
        check_gradients(cfg, Backend::Sparse);
        check_gradients(cfg, Backend::Dense);
    }
    check_gradients(config(2, 2, 4, 1, 3, true), Backend::Sparse);
}

/// `forward_into` writes every output element (the buffer starts as NaN) exactly as `forward`
/// does, for both backends, causal and not, row and tile kernels; a wrong length is an error.
#[test]
fn forward_into_a_reused_buffer_equals_forward() {
    for (cfg, n) in [
        (config(4, 4, 32, 16, 32, true), 300), // the bench setting (tile kernel where available)
        (config(4, 1, 32, 32, 16, true), 77),  // the default grouping
        (config(3, 1, 12, 5, 4, true), 41),    // row kernel
        (config(2, 2, 16, 6, 8, false), 50),   // non-causal
    ] {
        let (q, k, v) = inputs(&cfg, n, 7, 1.0);
        for backend in [Backend::Sparse, Backend::Dense] {
            let att = Attention::new(cfg, backend).unwrap();
            let want = att.forward(&q, &k, &v).unwrap();
            let mut out = vec![f32::NAN; want.len()];
            for _ in 0..2 {
                att.forward_into(&q, &k, &v, &mut out).unwrap();
                assert_eq!(out, want, "{cfg:?} {backend:?}");
            }
            let mut short = vec![0.0; want.len() - 1];
            assert!(matches!(
                att.forward_into(&q, &k, &v, &mut short),
                Err(AttentionError::WrongLength { tensor: "out", .. })
            ));
        }
    }
}
