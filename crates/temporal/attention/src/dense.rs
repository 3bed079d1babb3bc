//! The exact dense backend, blocked like flash attention: for a tile of query rows and a tile of
//! keys, scores are computed against a transposed key tile (vectorised across keys), the online
//! softmax state (the shared [`OnlineSoftmax`] of `csipose-attn-core`) is rescaled once per
//! tile, and values are accumulated with vector axpys.
//! Decode walks the cache in chunks of keys the same way.

use rayon::prelude::*;

use crate::cache::KvCache;
use csipose_attn_core::OnlineSoftmax;

use crate::simd::{accumulate, axpy, exp, multiversion, scale, sum, AttnNumerics};
use crate::sparse::dispatch;
use crate::AttentionConfig;

/// Query rows per parallel task.
const QUERY_TILE: usize = 32;
/// Keys per score tile.
const KEY_TILE: usize = 64;

/// Per-task scratch: one tile of scores and the softmax state of each row.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    rows: Vec<OnlineSoftmax>,
}

/// Scores `s[..] (already scaled)` for the keys of a tile; then one online-softmax update of
/// `(state, acc)` with those keys' values.
#[inline(always)]
fn softmax_update(
    scores: &mut [f32],
    values: impl Fn(usize) -> usize,
    v: &[f32],
    d: usize,
    state: &mut OnlineSoftmax,
    acc: &mut [f32],
) {
    let tile_max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if let Some(c) = state.raise::<AttnNumerics>(tile_max) {
        scale(c, acc);
    }
    let mm = state.max;
    for s in scores.iter_mut() {
        *s = exp(*s - mm);
    }
    state.add(sum(scores));
    accumulate(
        scores,
        |jj| {
            let off = values(jj);
            &v[off..off + d]
        },
        acc,
    );
}

multiversion! {
    fn prefill_rows(
        cfg: &AttentionConfig,
        n: usize,
        first_row: usize,
        q: &[f32],
        keys_t: &[f32],
        v: &[f32],
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let qr = cfg.q_row();
        let kr = cfg.kv_row();
        let d = cfg.head_dim;
        let group = cfg.group();
        let sc = cfg.scale();
        let rows = out.len() / qr;
        let last_row = first_row + rows - 1;
        let key_end = if cfg.causal { last_row + 1 } else { n };
        scratch.scores.resize(KEY_TILE, 0.0);
        scratch.rows.resize(rows, OnlineSoftmax::EMPTY);
        out.fill(0.0);
        for h in 0..cfg.q_heads {
            let g = h / group;
            let kt = &keys_t[g * d * n..(g + 1) * d * n];
            scratch.rows[..rows].fill(OnlineSoftmax::EMPTY);
            for j0 in (0..key_end).step_by(KEY_TILE) {
                let tile = KEY_TILE.min(key_end - j0);
                for r in 0..rows {
                    let i = first_row + r;
                    let count = if cfg.causal { tile.min((i + 1).saturating_sub(j0)) } else { tile };
                    if count == 0 {
                        continue;
                    }
                    let scores = &mut scratch.scores[..count];
                    scores.fill(0.0);
                    let qv = &q[i * qr + h * d..][..d];
                    for (dd, &qd) in qv.iter().enumerate() {
                        axpy(qd * sc, &kt[dd * n + j0..dd * n + j0 + count], scores);
                    }
                    let acc = &mut out[r * qr + h * d..r * qr + (h + 1) * d];
                    softmax_update(
                        scores,
                        |jj| (j0 + jj) * kr + g * d,
                        v,
                        d,
                        &mut scratch.rows[r],
                        acc,
                    );
                }
            }
            for r in 0..rows {
                let state = scratch.rows[r];
                if state.sum > 0.0 {
                    scale(state.inverse(), &mut out[r * qr + h * d..r * qr + (h + 1) * d]);
                }
            }
        }
    }
}

/// Keys transposed per kv head: `[kv_heads, head_dim, n]`.
fn transpose_keys(cfg: &AttentionConfig, n: usize, k: &[f32]) -> Vec<f32> {
    let (kvh, d) = (cfg.kv_heads, cfg.head_dim);
    let mut kt = vec![0.0f32; kvh * d * n];
    for j in 0..n {
        for g in 0..kvh {
            for dd in 0..d {
                kt[(g * d + dd) * n + j] = k[(j * kvh + g) * d + dd];
            }
        }
    }
    kt
}

pub(crate) fn prefill(
    cfg: &AttentionConfig,
    n: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) {
    if n == 0 {
        return;
    }
    let keys_t = transpose_keys(cfg, n, k);
    out.par_chunks_mut(QUERY_TILE * cfg.q_row())
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (task, chunk)| {
            prefill_rows(cfg, n, task * QUERY_TILE, q, &keys_t, v, chunk, scratch)
        });
}

multiversion! {
    fn decode_heads(cfg: &AttentionConfig, q1: &[f32], keys: &[f32], values: &[f32], out: &mut [f32]) {
        let kr = cfg.kv_row();
        let d = cfg.head_dim;
        let group = cfg.group();
        let sc = cfg.scale();
        let n = keys.len() / kr;
        for h in 0..cfg.q_heads {
            let g = h / group;
            let qv = &q1[h * d..(h + 1) * d];
            let item = |t: usize| {
                let off = t * kr + g * d;
                (&keys[off..off + d], &values[off..off + d])
            };
            let acc = &mut out[h * d..(h + 1) * d];
            dispatch(d, qv, sc, n, item, acc);
        }
    }
}

/// Attends from the newest token over every cached token.
pub(crate) fn decode(cfg: &AttentionConfig, q1: &[f32], cache: &mut KvCache, out: &mut [f32]) {
    let src = cache.source();
    decode_heads(cfg, q1, src.keys, src.values, out);
}
