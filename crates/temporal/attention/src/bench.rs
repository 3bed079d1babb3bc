//! Timing harness shared by the bench binary and `csipose temporal bench`: prefill time of both
//! backends against sequence length, and decode-step latency against cache length.

use std::time::Instant;

use crate::{Attention, AttentionConfig, Backend, KvCache};

/// Median seconds of `f` over repeated runs lasting about `budget_s` in total (at least 3 runs).
pub fn median_seconds(budget_s: f64, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 3 || (start.elapsed().as_secs_f64() < budget_s && times.len() < 10_000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Prefill time of both backends at one sequence length.
#[derive(Clone, Debug)]
pub struct PrefillTiming {
    pub tokens: usize,
    /// `forward_into` a reused output buffer (the kernel's time).
    pub sparse_ms: f64,
    pub dense_ms: f64,
    /// The allocating `forward` of the sparse backend (adds the fresh buffer's page faults).
    pub sparse_alloc_ms: f64,
}

/// Decode-step latency of both backends at one cache length.
#[derive(Clone, Debug)]
pub struct DecodeTiming {
    pub cache_len: usize,
    pub sparse_us: f64,
    pub dense_us: f64,
}

/// Times `forward_into` (one reused output buffer) of both backends for each length in
/// `lengths`, and the allocating `forward` of the sparse one.
pub fn prefill_timings(
    cfg: &AttentionConfig,
    lengths: &[usize],
    budget_s: f64,
) -> Vec<PrefillTiming> {
    lengths
        .iter()
        .map(|&n| {
            let q = random_vec(n * cfg.q_row(), 1);
            let k = random_vec(n * cfg.kv_row(), 2);
            let v = random_vec(n * cfg.kv_row(), 3);
            let mut out = vec![0.0f32; n * cfg.q_row()];
            let mut time = |backend| {
                let att = Attention::new(*cfg, backend).expect("valid config");
                median_seconds(budget_s, || {
                    att.forward_into(&q, &k, &v, &mut out).expect("shapes");
                    std::hint::black_box(&mut out);
                }) * 1e3
            };
            let (sparse_ms, dense_ms) = (time(Backend::Sparse), time(Backend::Dense));
            let att = Attention::new(*cfg, Backend::Sparse).expect("valid config");
            let sparse_alloc_ms = median_seconds(budget_s, || {
                std::hint::black_box(att.forward(&q, &k, &v).expect("shapes"));
            }) * 1e3;
            PrefillTiming {
                tokens: n,
                sparse_ms,
                dense_ms,
                sparse_alloc_ms,
            }
        })
        .collect()
}

/// Mean latency of `steps` decode steps starting from a cache already holding `cache_len` tokens.
pub fn decode_timings(
    cfg: &AttentionConfig,
    cache_lens: &[usize],
    steps: usize,
) -> Vec<DecodeTiming> {
    let max = cache_lens.iter().copied().max().unwrap_or(0) + steps;
    let keys = random_vec(max * cfg.kv_row(), 4);
    let values = random_vec(max * cfg.kv_row(), 5);
    let queries = random_vec(steps * cfg.q_row(), 6);
    let kr = cfg.kv_row();
    cache_lens
        .iter()
        .map(|&len| {
            let time = |backend| {
                let att = Attention::new(*cfg, backend).expect("valid config");
                let mut cache = KvCache::new(cfg, len + steps).expect("valid config");
                for t in 0..len {
                    cache
                        .push(&keys[t * kr..(t + 1) * kr], &values[t * kr..(t + 1) * kr])
                        .expect("room");
                }
                let mut out = vec![0.0f32; cfg.q_row()];
                let start = Instant::now();
                for s in 0..steps {
                    let t = len + s;
                    att.step_into(
                        &queries[s * cfg.q_row()..(s + 1) * cfg.q_row()],
                        &keys[t * kr..(t + 1) * kr],
                        &values[t * kr..(t + 1) * kr],
                        &mut cache,
                        &mut out,
                    )
                    .expect("room");
                    std::hint::black_box(&out);
                }
                start.elapsed().as_secs_f64() / steps as f64 * 1e6
            };
            DecodeTiming {
                cache_len: len,
                sparse_us: time(Backend::Sparse),
                dense_us: time(Backend::Dense),
            }
        })
        .collect()
}

/// Sparse prefill time of the row-by-row kernel and of the query-tile kernel at one length.
#[derive(Clone, Debug)]
pub struct KernelTiming {
    pub tokens: usize,
    pub rowwise_ms: f64,
    /// `None` where the tile kernel does not apply (CPU or configuration).
    pub tile_ms: Option<f64>,
}

/// Minimum over `rounds` of each sparse prefill kernel, the two interleaved run by run so a noisy
/// (shared) machine affects both alike. Each includes allocating the output.
pub fn sparse_kernel_timings(
    cfg: &AttentionConfig,
    lengths: &[usize],
    rounds: usize,
) -> Vec<KernelTiming> {
    lengths
        .iter()
        .map(|&n| {
            let q = random_vec(n * cfg.q_row(), 1);
            let k = random_vec(n * cfg.kv_row(), 2);
            let v = random_vec(n * cfg.kv_row(), 3);
            let tile = crate::tile::applies(cfg);
            let (mut best_rows, mut best_tile) = (f64::INFINITY, f64::INFINITY);
            for round in 0..rounds + 1 {
                let t = Instant::now();
                let mut out = vec![0.0f32; n * cfg.q_row()];
                crate::sparse::prefill_rowwise(cfg, n, &q, &k, &v, &mut out);
                std::hint::black_box(&out);
                let rows = t.elapsed().as_secs_f64();
                let t = Instant::now();
                if tile {
                    let mut out = vec![0.0f32; n * cfg.q_row()];
                    crate::tile::prefill(cfg, n, &q, &k, &v, &mut out);
                    std::hint::black_box(&out);
                }
                let tiled = t.elapsed().as_secs_f64();
                if round > 0 {
                    best_rows = best_rows.min(rows);
                    best_tile = best_tile.min(tiled);
                }
            }
            KernelTiming {
                tokens: n,
                rowwise_ms: best_rows * 1e3,
                tile_ms: tile.then_some(best_tile * 1e3),
            }
        })
        .collect()
}

/// The benchmark setting of the issue: 4 heads, head_dim 32, window 16, block 32, causal.
pub fn bench_config(kv_heads: usize) -> AttentionConfig {
    AttentionConfig {
        q_heads: 4,
        kv_heads,
        head_dim: 32,
        window: 16,
        block_size: 32,
        causal: true,
    }
}

/// Prefill lengths 64, 128, ..., 4096.
pub const PREFILL_LENGTHS: [usize; 7] = [64, 128, 256, 512, 1024, 2048, 4096];
/// Decode cache lengths 128 ... 8192.
pub const DECODE_LENGTHS: [usize; 7] = [128, 256, 512, 1024, 2048, 4096, 8192];
