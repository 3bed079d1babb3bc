//! The sparse backend: for each query, one online softmax over its pattern's tokens and block
//! landmarks (see `pattern.rs`), in prefill (parallel over query rows) and in decode. The
//! softmax's running state is the shared [`OnlineSoftmax`] (`csipose-attn-core`); the kernels
//! here supply the vectorised scores and value sums around it.

use rayon::prelude::*;

use crate::cache::KvCache;
use crate::pattern::{sparse_pattern, Pattern};
use csipose_attn_core::OnlineSoftmax;

use crate::simd::{axpy, dot, dot_fixed, exp, multiversion, scale, sum, AttnNumerics};
use crate::AttentionConfig;

/// Keys/values of visible tokens and the landmark means of completed blocks, all `[_, kv_heads, head_dim]`.
pub(crate) struct Source<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub key_means: &'a [f32],
    pub value_means: &'a [f32],
}

/// Mean key and value of each full block: `[n / block_size, kv_heads, head_dim]` each.
pub(crate) fn block_means(
    cfg: &AttentionConfig,
    n: usize,
    k: &[f32],
    v: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let nb = n / cfg.block_size;
    let mut mk = vec![0.0f32; nb * cfg.kv_row()];
    let mut mv = vec![0.0f32; nb * cfg.kv_row()];
    block_means_into(cfg, k, v, &mut mk, &mut mv);
    (mk, mv)
}

multiversion! {
    pub(crate) fn block_means_into(cfg: &AttentionConfig, k: &[f32], v: &[f32], mk: &mut [f32], mv: &mut [f32]) {
        let kr = cfg.kv_row();
        let bs = cfg.block_size;
        let inv = 1.0 / bs as f32;
        // Columns in chunks of 32 floats summed in registers over the block's rows (summing
        // whole rows into the output row reloaded and stored it once per token).
        const C: usize = 32;
        for (b, (dk, dv)) in mk.chunks_exact_mut(kr).zip(mv.chunks_exact_mut(kr)).enumerate() {
            let rows = b * bs..(b + 1) * bs;
            let mut c0 = 0;
            while c0 + C <= kr {
                let (mut ak, mut av) = ([0.0f32; C], [0.0f32; C]);
                for t in rows.clone() {
                    let (xk, xv) = (&k[t * kr + c0..][..C], &v[t * kr + c0..][..C]);
                    for i in 0..C {
                        ak[i] += xk[i];
                        av[i] += xv[i];
                    }
                }
                for i in 0..C {
                    dk[c0 + i] = ak[i] * inv;
                    dv[c0 + i] = av[i] * inv;
                }
                c0 += C;
            }
            if c0 < kr {
                for t in rows {
                    axpy(1.0, &k[t * kr + c0..][..kr - c0], &mut dk[c0..]);
                    axpy(1.0, &v[t * kr + c0..][..kr - c0], &mut dv[c0..]);
                }
                scale(inv, &mut dk[c0..]);
                scale(inv, &mut dv[c0..]);
            }
        }
    }
}

/// Items per softmax chunk: scores of a chunk are computed together, then the running softmax
/// state is rescaled once (an online softmax over chunks).
pub(crate) const CHUNK: usize = 32;

/// Online softmax of query `qv` over `total` items whose key and value rows `item(t)` returns,
/// for a compile-time head dimension `D` (multiple of 8) so the accumulator stays in registers.
#[inline(always)]
pub(crate) fn attend_items<'s, const D: usize>(
    qv: &[f32],
    scale_factor: f32,
    total: usize,
    item: impl Fn(usize) -> (&'s [f32], &'s [f32]),
    out: &mut [f32],
) {
    let mut q = [0.0f32; D];
    q.copy_from_slice(&qv[..D]);
    for x in q.iter_mut() {
        *x *= scale_factor;
    }
    let fixed = |x: &'s [f32]| -> &'s [f32; D] { x[..D].try_into().expect("row of D floats") };
    let mut scores = [0.0f32; CHUNK];
    let mut state = OnlineSoftmax::EMPTY;
    let mut acc = [0.0f32; D];
    let mut start = 0;
    while start < total {
        let count = CHUNK.min(total - start);
        for (c, s) in scores[..count].iter_mut().enumerate() {
            *s = dot_fixed(&q, fixed(item(start + c).0));
        }
        let chunk_max = scores[..count]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if let Some(f) = state.raise::<AttnNumerics>(chunk_max) {
            for a in acc.iter_mut() {
                *a *= f;
            }
        }
        for s in scores[..count].iter_mut() {
            *s = exp(*s - state.max);
        }
        state.add(sum(&scores[..count]));
        for (c, &p) in scores[..count].iter().enumerate() {
            let value = fixed(item(start + c).1);
            for (a, v) in acc.chunks_exact_mut(8).zip(value.chunks_exact(8)) {
                let a: &mut [f32; 8] = a.try_into().expect("8 lanes");
                for l in 0..8 {
                    a[l] += p * v[l];
                }
            }
        }
        start += count;
    }
    let inv = state.inverse();
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = a * inv;
    }
}

/// The key and value rows (`kv_heads * head_dim` floats each, both valid for the lifetime of the
/// `Source` they came from) of one visited item: a token or a block landmark.
#[derive(Clone, Copy)]
pub(crate) struct RowPair {
    key: *const f32,
    value: *const f32,
}

/// All query heads of one query over `pattern`: the kv rows of its items are looked up once
/// (into `rows`, reused) and shared by every head. Writes `out_row` (`[q_heads, head_dim]`).
/// Rows are kept as bare pointers (checked once here), so the per-item lookup in the kernels is
/// one load with no bounds checks.
#[inline(always)]
pub(crate) fn attend_query(
    cfg: &AttentionConfig,
    q_row: &[f32],
    pattern: &Pattern,
    src: &Source,
    rows: &mut Vec<RowPair>,
    out_row: &mut [f32],
) {
    let kr = cfg.kv_row();
    let d = cfg.head_dim;
    let tokens = src.keys.len().min(src.values.len()) / kr;
    let blocks = src.key_means.len().min(src.value_means.len()) / kr;
    rows.clear();
    for &j in &pattern.tokens {
        assert!(j < tokens, "token {j} outside the {tokens} visible");
        // SAFETY: j < tokens, so rows j*kr..(j+1)*kr lie inside keys and values.
        rows.push(unsafe {
            RowPair {
                key: src.keys.as_ptr().add(j * kr),
                value: src.values.as_ptr().add(j * kr),
            }
        });
    }
    for &b in &pattern.blocks {
        assert!(b < blocks, "block {b} outside the {blocks} completed");
        // SAFETY: b < blocks, so rows b*kr..(b+1)*kr lie inside the landmark means.
        rows.push(unsafe {
            RowPair {
                key: src.key_means.as_ptr().add(b * kr),
                value: src.value_means.as_ptr().add(b * kr),
            }
        });
    }
    let rows: &[RowPair] = rows;
    match d {
        8 => attend_heads::<8>(cfg, q_row, rows, out_row),
        16 => attend_heads::<16>(cfg, q_row, rows, out_row),
        32 => attend_heads::<32>(cfg, q_row, rows, out_row),
        _ => {
            let group = cfg.group();
            for h in 0..cfg.q_heads {
                let goff = (h / group) * d;
                let item = |t: usize| {
                    let row = rows[t];
                    // SAFETY: every row holds kr floats and goff + d <= kr.
                    unsafe {
                        (
                            std::slice::from_raw_parts(row.key.add(goff), d),
                            std::slice::from_raw_parts(row.value.add(goff), d),
                        )
                    }
                };
                dispatch(
                    d,
                    &q_row[h * d..(h + 1) * d],
                    cfg.scale(),
                    rows.len(),
                    item,
                    &mut out_row[h * d..(h + 1) * d],
                );
            }
        }
    }
}

/// `attend_query`'s heads for a compile-time head dimension `D`: each item lookup is one
/// unchecked load of the row pointers plus a constant offset.
#[inline(always)]
fn attend_heads<const D: usize>(
    cfg: &AttentionConfig,
    q_row: &[f32],
    rows: &[RowPair],
    out_row: &mut [f32],
) {
    assert_eq!(cfg.head_dim, D);
    let group = cfg.group();
    for h in 0..cfg.q_heads {
        let goff = (h / group) * D;
        let item = |t: usize| {
            assert!(t < rows.len());
            // SAFETY: t < rows.len() (usually folded by the kernels' loop bounds); every row
            // holds kv_row floats and goff + D <= kv_row.
            unsafe {
                let row = *rows.get_unchecked(t);
                (
                    std::slice::from_raw_parts(row.key.add(goff), D),
                    std::slice::from_raw_parts(row.value.add(goff), D),
                )
            }
        };
        dispatch(
            D,
            &q_row[h * D..(h + 1) * D],
            cfg.scale(),
            rows.len(),
            item,
            &mut out_row[h * D..(h + 1) * D],
        );
    }
}

/// Picks the kernel for head dimension `d`: AVX2 intrinsics or portable fixed-size code for
/// d in {8, 16, 32, 64}, the item-by-item loop otherwise.
#[inline(always)]
pub(crate) fn dispatch<'s>(
    d: usize,
    qv: &[f32],
    sc: f32,
    total: usize,
    item: impl Fn(usize) -> (&'s [f32], &'s [f32]),
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() {
        // SAFETY: AVX2 and FMA are available (checked at run time).
        unsafe {
            match d {
                8 => return crate::simd::avx2::attend_items::<8>(qv, sc, total, item, out),
                16 => return crate::simd::avx2::attend_items::<16>(qv, sc, total, item, out),
                32 => return crate::simd::avx2::attend_items::<32>(qv, sc, total, item, out),
                _ => {}
            }
        }
    }
    match d {
        8 => attend_items::<8>(qv, sc, total, item, out),
        16 => attend_items::<16>(qv, sc, total, item, out),
        32 => attend_items::<32>(qv, sc, total, item, out),
        64 => attend_items::<64>(qv, sc, total, item, out),
        _ => attend_any(sc, qv, total, item, out),
    }
}

/// The same online softmax for any head dimension (item by item).
#[inline(always)]
pub(crate) fn attend_any<'s>(
    sc: f32,
    qv: &[f32],
    total: usize,
    item: impl Fn(usize) -> (&'s [f32], &'s [f32]),
    out: &mut [f32],
) {
    let mut state = OnlineSoftmax::EMPTY;
    out.fill(0.0);
    for t in 0..total {
        let (key, value) = item(t);
        let s = dot(qv, key) * sc;
        if let Some(c) = state.raise::<AttnNumerics>(s) {
            scale(c, out);
        }
        let p = exp(s - state.max);
        state.add(p);
        axpy(p, value, out);
    }
    if state.sum > 0.0 {
        scale(state.inverse(), out);
    }
}

multiversion! {
    fn prefill_rows(
        cfg: &AttentionConfig,
        n: usize,
        first_row: usize,
        q: &[f32],
        src: &Source,
        out: &mut [f32],
        pattern: &mut Pattern,
    ) {
        let qr = cfg.q_row();
        let mut rows = Vec::new();
        for (r, out_row) in out.chunks_exact_mut(qr).enumerate() {
            let i = first_row + r;
            sparse_pattern(cfg, i, n, pattern);
            attend_query(cfg, &q[i * qr..(i + 1) * qr], pattern, src, &mut rows, out_row);
        }
    }
}

/// Rows of queries per parallel task.
const ROWS_PER_TASK: usize = 64;

/// Sparse prefill: the query-tile kernel (`tile.rs`) where it applies, else row by row.
pub(crate) fn prefill(
    cfg: &AttentionConfig,
    n: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) {
    if !crate::tile::prefill(cfg, n, q, k, v, out) {
        prefill_rowwise(cfg, n, q, k, v, out);
    }
}

/// Sparse prefill one query row at a time (each row's pattern built, its items gathered).
pub(crate) fn prefill_rowwise(
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
    let (key_means, value_means) = block_means(cfg, n, k, v);
    let src = Source {
        keys: k,
        values: v,
        key_means: &key_means,
        value_means: &value_means,
    };
    out.par_chunks_mut(ROWS_PER_TASK * cfg.q_row())
        .enumerate()
        .for_each_init(Pattern::default, |pattern, (task, chunk)| {
            prefill_rows(cfg, n, task * ROWS_PER_TASK, q, &src, chunk, pattern)
        });
}

multiversion! {
    fn decode_heads(cfg: &AttentionConfig, q1: &[f32], src: &Source, pattern: &Pattern, out: &mut [f32]) {
        let mut rows = Vec::with_capacity(pattern.tokens.len() + pattern.blocks.len());
        attend_query(cfg, q1, pattern, src, &mut rows, out);
    }
}

/// Attends from the newest token (already appended to `cache`).
pub(crate) fn decode(cfg: &AttentionConfig, q1: &[f32], cache: &mut KvCache, out: &mut [f32]) {
    let i = cache.len() - 1;
    let mut pattern = std::mem::take(&mut cache.scratch);
    sparse_pattern(cfg, i, i + 1, &mut pattern);
    decode_heads(cfg, q1, &cache.source(), &pattern, out);
    cache.scratch = pattern;
}
