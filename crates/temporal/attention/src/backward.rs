//! Backward passes of both backends. The forward softmax of each query is recomputed from q, k
//! and v (nothing is stored), then the usual softmax-attention gradients are accumulated; a
//! landmark's key/value gradient is spread evenly over the tokens of its block (it is their mean).

use crate::pattern::{sparse_pattern, Pattern};
use crate::simd::{axpy, dot, exp};
use crate::sparse::block_means;
use crate::{AttentionConfig, Backend};

/// Gradients with the shapes of q, k and v.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

pub(crate) fn backward(
    cfg: &AttentionConfig,
    backend: Backend,
    n: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f32],
) -> Gradients {
    let (qr, kr, d) = (cfg.q_row(), cfg.kv_row(), cfg.head_dim);
    let group = cfg.group();
    let sc = cfg.scale();
    let (key_means, value_means) = match backend {
        Backend::Sparse => block_means(cfg, n, k, v),
        Backend::Dense => (Vec::new(), Vec::new()),
    };
    let mut dq = vec![0.0f32; n * qr];
    let mut dk = vec![0.0f32; n * kr];
    let mut dv = vec![0.0f32; n * kr];
    let mut dk_means = vec![0.0f32; key_means.len()];
    let mut dv_means = vec![0.0f32; value_means.len()];
    let mut pattern = Pattern::default();
    let mut probs: Vec<f32> = Vec::new();
    let mut dprobs: Vec<f32> = Vec::new();
    for i in 0..n {
        match backend {
            Backend::Sparse => sparse_pattern(cfg, i, n, &mut pattern),
            Backend::Dense => {
                pattern.tokens.clear();
                pattern.tokens.extend(0..if cfg.causal { i + 1 } else { n });
                pattern.blocks.clear();
            }
        }
        let nt = pattern.tokens.len();
        let items = nt + pattern.blocks.len();
        // Offset of item t's key/value row (token rows in k/v, landmark rows in the means).
        let offset = |t: usize, g: usize| {
            if t < nt {
                pattern.tokens[t] * kr + g * d
            } else {
                pattern.blocks[t - nt] * kr + g * d
            }
        };
        for h in 0..cfg.q_heads {
            let g = h / group;
            let qv = &q[i * qr + h * d..][..d];
            let dov = &d_out[i * qr + h * d..][..d];
            probs.clear();
            dprobs.clear();
            for t in 0..items {
                let off = offset(t, g);
                let (key, value) = if t < nt {
                    (&k[off..off + d], &v[off..off + d])
                } else {
                    (&key_means[off..off + d], &value_means[off..off + d])
                };
                probs.push(dot(qv, key) * sc);
                dprobs.push(dot(dov, value));
            }
            let m = probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut l = 0.0f32;
            for p in probs.iter_mut() {
                *p = exp(*p - m);
                l += *p;
            }
            let mut weighted = 0.0f32; // dO . O
            for (p, dp) in probs.iter_mut().zip(&dprobs) {
                *p /= l;
                weighted += *p * dp;
            }
            let dqv = &mut dq[i * qr + h * d..][..d];
            for t in 0..items {
                let off = offset(t, g);
                let ds = probs[t] * (dprobs[t] - weighted) * sc;
                let (key, dkey, dval) = if t < nt {
                    (
                        &k[off..off + d],
                        &mut dk[off..off + d],
                        &mut dv[off..off + d],
                    )
                } else {
                    (
                        &key_means[off..off + d],
                        &mut dk_means[off..off + d],
                        &mut dv_means[off..off + d],
                    )
                };
                axpy(ds, key, dqv);
                axpy(ds, qv, dkey);
                axpy(probs[t], dov, dval);
            }
        }
    }
    let bs = cfg.block_size;
    let inv = 1.0 / bs as f32;
    for b in 0..dk_means.len() / kr.max(1) {
        for t in b * bs..(b + 1) * bs {
            axpy(
                inv,
                &dk_means[b * kr..(b + 1) * kr],
                &mut dk[t * kr..(t + 1) * kr],
            );
            axpy(
                inv,
                &dv_means[b * kr..(b + 1) * kr],
                &mut dv[t * kr..(t + 1) * kr],
            );
        }
    }
    Gradients { dq, dk, dv }
}
