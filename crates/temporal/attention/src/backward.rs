//! Backward passes of both backends. Per query and head, the forward probabilities are
//! recomputed from q and k (nothing is stored) and the gradients accumulated, both through the
//! shared attention math ([`csipose_attn_core::probabilities`],
//! [`csipose_attn_core::attend_backward`]) over the query's items (its tokens, then its block
//! landmarks); a landmark's key/value gradient is spread evenly over the tokens of its block (it
//! is their mean).

use csipose_attn_core::{attend_backward, probabilities, HeadGrads};

use crate::pattern::{sparse_pattern, Pattern};
use crate::simd::{axpy, AttnNumerics};
use crate::sparse::block_means;
use crate::{AttentionConfig, Backend};

/// Gradients with the shapes of q, k and v.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients {
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

/// Where item `t` of a query's pattern lives: token rows in k/v, then landmark rows in the
/// block means; `goff` picks the kv head.
#[derive(Clone, Copy)]
struct Items<'p> {
    pattern: &'p Pattern,
    kr: usize,
    goff: usize,
    d: usize,
}

impl Items<'_> {
    /// Item `t`'s offset, and whether it is a token (else a landmark).
    #[inline(always)]
    fn offset(&self, t: usize) -> (usize, bool) {
        let nt = self.pattern.tokens.len();
        if t < nt {
            (self.pattern.tokens[t] * self.kr + self.goff, true)
        } else {
            (self.pattern.blocks[t - nt] * self.kr + self.goff, false)
        }
    }

    /// Item `t`'s row of `tokens` or of `means`.
    #[inline(always)]
    fn pick<'a>(&self, t: usize, tokens: &'a [f32], means: &'a [f32]) -> &'a [f32] {
        let (off, token) = self.offset(t);
        &(if token { tokens } else { means })[off..off + self.d]
    }

    /// Item `t`'s row of `tokens` or of `means`, to accumulate into.
    #[inline(always)]
    fn pick_mut<'a>(&self, t: usize, tokens: &'a mut [f32], means: &'a mut [f32]) -> &'a mut [f32] {
        let (off, token) = self.offset(t);
        &mut (if token { tokens } else { means })[off..off + self.d]
    }
}

/// One query head's gradients: its q gradient, and its items' k/v gradients (tokens' in
/// `dk`/`dv`, landmarks' in the per-block buffers).
struct ItemGrads<'g, 'p> {
    rows: Items<'p>,
    dq: &'g mut [f32],
    dk: &'g mut [f32],
    dv: &'g mut [f32],
    dk_means: &'g mut [f32],
    dv_means: &'g mut [f32],
}

impl HeadGrads for ItemGrads<'_, '_> {
    fn dq(&mut self) -> &mut [f32] {
        self.dq
    }
    fn dk(&mut self, t: usize) -> &mut [f32] {
        self.rows.pick_mut(t, self.dk, self.dk_means)
    }
    fn dv(&mut self, t: usize) -> &mut [f32] {
        self.rows.pick_mut(t, self.dv, self.dv_means)
    }
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
    let mut ds: Vec<f32> = Vec::new();
    for i in 0..n {
        match backend {
            Backend::Sparse => sparse_pattern(cfg, i, n, &mut pattern),
            Backend::Dense => {
                pattern.tokens.clear();
                pattern.tokens.extend(0..if cfg.causal { i + 1 } else { n });
                pattern.blocks.clear();
            }
        }
        let items = pattern.tokens.len() + pattern.blocks.len();
        probs.resize(items, 0.0);
        ds.resize(items, 0.0);
        for h in 0..cfg.q_heads {
            let goff = (h / group) * d;
            let rows = Items {
                pattern: &pattern,
                kr,
                goff,
                d,
            };
            let key = |t: usize| rows.pick(t, k, &key_means);
            let value = |t: usize| rows.pick(t, v, &value_means);
            let qv = &q[i * qr + h * d..][..d];
            probabilities::<AttnNumerics>(qv, key, sc, &mut probs);
            let mut grads = ItemGrads {
                rows,
                dq: &mut dq[i * qr + h * d..][..d],
                dk: &mut dk,
                dv: &mut dv,
                dk_means: &mut dk_means,
                dv_means: &mut dv_means,
            };
            attend_backward::<AttnNumerics>(
                qv,
                key,
                value,
                &probs,
                &d_out[i * qr + h * d..][..d],
                sc,
                &mut ds,
                &mut grads,
            );
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
