//! The causal sparse prefill with queries as vector lanes: eight consecutive queries form a tile
//! and every item of their sparse patterns (window key, global token, block landmark, lookback
//! token) is scored for all eight at once, masked per lane where the queries' patterns differ.
//! No per-query pattern lists, gathers or horizontal sums: window keys, token 0 and landmarks are
//! rows broadcast against the tile's transposed queries, and the lookback tokens `i - 2^k` of a
//! tile are eight consecutive tokens, read from K and V transposed once per call into panels of
//! eight tokens. x86-64 with AVX2 + FMA, causal, head_dim 8/16/32/64, window >= 7; `sparse.rs`
//! keeps the row-by-row kernel for everything else, and the tests check the two agree. Per lane
//! it is `csipose_attn_core::attend` (scores, softmax, weighted sum of values) on vectors. The
//! AVX-512 (F + VL) build for head_dim >= 16 differs in three places: window keys that fill whole
//! panels are scored with the keys as lanes (`window_scores`), values are accumulated in row
//! layout with 512-bit vectors from V's rows (`values_rows`, no V panels), and in a whole tile
//! the window items' masked (query, item) products and half the exponentials are skipped.

use crate::AttentionConfig;

/// Queries per tile (one 256-bit vector of f32), and tokens per transposed panel.
pub(crate) const LANES: usize = 8;
/// Tokens from which the block means and panels are built in parallel.
const PARALLEL_PREP_TOKENS: usize = 1024;
/// Query rows per parallel task (a multiple of `LANES`).
const ROWS_PER_TASK: usize = 64;
/// Query rows per step of the one-thread path (block means and panels built just before them).
const SERIAL_ROWS: usize = 32;

/// An item every lane reads from the same key/value row (`kv_row` floats each), scored for the
/// lanes whose bit is set in `mask`.
#[derive(Clone, Copy)]
struct Shared {
    key: *const f32,
    value: *const f32,
    mask: u8,
}

/// A lookback item: lane `l` reads token `LANES * panel + l` (from the transposed panels), for
/// the lanes in `mask`.
#[derive(Clone, Copy)]
struct Lookback {
    panel: usize,
    mask: u8,
}

/// The items of a task's tiles, shared by all heads (tile `t`'s items are
/// `shared[tiles[t].0 .. tiles[t + 1].0]` and likewise `lookback`), and the score scratch.
#[derive(Default)]
struct Scratch {
    shared: Vec<Shared>,
    lookback: Vec<Lookback>,
    tiles: Vec<(usize, usize)>,
    /// Per tile: the first key panel of its window and how many whole panels its leading window
    /// items fill (0 when the window does not start on a panel boundary).
    window_panels: Vec<(usize, usize)>,
    #[cfg(target_arch = "x86_64")]
    scores: Vec<std::arch::x86_64::__m256>,
}

// SAFETY: the row pointers in `shared` point into slices borrowed for one `prefill` call; a
// Scratch is only handed between that call's tasks, and each task clears the lists before use,
// so no pointer is dereferenced outside the call or by a task that did not write it.
unsafe impl Send for Scratch {}

/// True when [`prefill`] handles this configuration on this CPU. The window must reach back at
/// least 7 tokens so every lookback stride beyond it is a multiple of 8 (whole panels).
pub(crate) fn applies(cfg: &AttentionConfig) -> bool {
    cfg.causal
        && cfg.window >= LANES - 1
        && matches!(cfg.head_dim, 8 | 16 | 32 | 64)
        && crate::simd::has_avx2()
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the AVX2 build of the tile loop on an AVX-512 machine.
    static FORCE_AVX2: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True when the AVX-512 build of the tile loop (F + VL; detected with BW) can run here.
fn has_avx512() -> bool {
    #[cfg(test)]
    if FORCE_AVX2.with(|f| f.get()) {
        return false;
    }
    csipose_cpu::avx512()
}

/// Bits `first..=last` of a lane mask.
fn bits(first: usize, last: usize) -> u8 {
    debug_assert!(first <= last && last < LANES);
    ((0xFFu32 >> (LANES - 1 - last)) & (0xFFu32 << first)) as u8
}

/// Appends to `s` the items of the tile of queries `i0 .. i0 + nl` (`i0` a multiple of `LANES`,
/// `nl <= LANES`): exactly the tokens and landmarks `pattern::sparse_pattern` gives each query,
/// each (query, item) pair once:
/// - window keys `j` with `i - window <= j <= i`;
/// - token 0 for the queries whose window starts after it, unless the lookback reaches it
///   (`i` a power of two);
/// - the lookback `i - s` for powers of two `s` beyond the window (`window < s <= i`);
/// - the landmarks of `c - 1 - d`, `c = (i + 1) / block_size` completed blocks, `d` in
///   `0, 1, 2, 4, ...`, except those lying inside the query's window.
#[allow(clippy::too_many_arguments)]
fn tile_items(
    cfg: &AttentionConfig,
    i0: usize,
    nl: usize,
    k: &[f32],
    v: &[f32],
    mk: &[f32],
    mv: &[f32],
    s: &mut Scratch,
) {
    let kr = cfg.kv_row();
    let (w, bs) = (cfg.window, cfg.block_size);
    let row = |x: &[f32], t: usize| x[t * kr..(t + 1) * kr].as_ptr();
    let j0 = i0.saturating_sub(w);
    let whole = if j0.is_multiple_of(LANES) {
        (i0 + nl - j0) / LANES
    } else {
        0
    };
    s.window_panels.push((j0 / LANES, whole));
    for j in j0..i0 + nl {
        // Lanes l with i0 + l - w <= j <= i0 + l.
        let first = j.saturating_sub(i0);
        let last = (j + w - i0).min(nl - 1);
        s.shared.push(Shared {
            key: row(k, j),
            value: row(v, j),
            mask: bits(first, last),
        });
    }
    let mut global = 0u8;
    for l in 0..nl {
        let i = i0 + l;
        if i > w && !i.is_power_of_two() {
            global |= 1 << l;
        }
    }
    if global != 0 {
        s.shared.push(Shared {
            key: row(k, 0),
            value: row(v, 0),
            mask: global,
        });
    }
    // Strides beyond the window are powers of two >= 8 (window >= 7), so i0 - stride is a
    // multiple of 8 and, when some lane reaches back that far (stride <= i0 + 7), >= 0.
    let mut stride = (w + 1).next_power_of_two();
    while stride < i0 + nl {
        debug_assert!(stride.is_multiple_of(LANES) && stride <= i0);
        s.lookback.push(Lookback {
            panel: (i0 - stride) / LANES,
            mask: bits(0, nl - 1),
        });
        stride *= 2;
    }
    let landmarks = s.shared.len();
    let mut l = 0;
    while l < nl {
        // Lanes l .. e share the count of completed blocks.
        let completed = (i0 + l + 1) / bs;
        let mut e = l + 1;
        while e < nl && (i0 + e + 1) / bs == completed {
            e += 1;
        }
        for d in crate::pattern::power_offsets(completed) {
            let b = completed - 1 - d;
            let mut mask = 0u8;
            if w + 1 < bs {
                // A whole block never fits inside the window.
                mask = bits(l, e - 1);
            } else {
                for lane in l..e {
                    let i = i0 + lane;
                    let inside = b * bs >= i.saturating_sub(w) && (b + 1) * bs - 1 <= i;
                    if !inside {
                        mask |= 1 << lane;
                    }
                }
            }
            if mask == 0 {
                continue;
            }
            let key = row(mk, b);
            match s.shared[landmarks..].iter_mut().find(|it| it.key == key) {
                Some(it) => it.mask |= mask,
                None => s.shared.push(Shared {
                    key,
                    value: row(mv, b),
                    mask,
                }),
            }
        }
        l = e;
    }
}

/// Causal sparse prefill of `n` tokens into `out` (`[n, q_heads, head_dim]`). Returns false
/// (writing nothing) when [`applies`] is false.
pub(crate) fn prefill(
    cfg: &AttentionConfig,
    n: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) -> bool {
    if !applies(cfg) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        match cfg.head_dim {
            8 => x86::prefill::<8>(cfg, n, q, k, v, out),
            16 => x86::prefill::<16>(cfg, n, q, k, v, out),
            32 => x86::prefill::<32>(cfg, n, q, k, v, out),
            64 => x86::prefill::<64>(cfg, n, q, k, v, out),
            _ => return false,
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (n, q, k, v, out);
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // lane loops index several arrays at once
mod x86 {
    use std::arch::x86_64::*;

    use rayon::prelude::*;

    use super::{
        tile_items, Lookback, Scratch, Shared, LANES, PARALLEL_PREP_TOKENS, ROWS_PER_TASK,
        SERIAL_ROWS,
    };
    use crate::simd::avx2::{exp8, exp_poly};
    use crate::sparse::block_means_into;
    use crate::AttentionConfig;

    /// Transposes an 8 x 8 block held as eight row vectors.
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// All-ones lanes where `mask` has its bit set.
    #[inline(always)]
    unsafe fn lane_mask(mask: u8) -> __m256 {
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let m = _mm256_and_si256(_mm256_set1_epi32(mask as i32), bit);
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, bit))
    }

    /// `x` where `mask` has its bit set, -inf elsewhere (AVX-512 build: one masked move).
    #[inline(always)]
    unsafe fn masked<const WIDE: bool>(x: __m256, mask: u8) -> __m256 {
        let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
        if WIDE {
            _mm256_mask_mov_ps(neg_inf, mask, x)
        } else {
            _mm256_blendv_ps(neg_inf, x, lane_mask(mask))
        }
    }

    /// Floats from one panel to the next: `D * LANES` plus one 64-byte line, so panels a power
    /// of two apart (the lookback of one tile) do not all fall into the same L1 sets.
    const fn panel_floats<const D: usize>() -> usize {
        D * LANES + 16
    }

    /// Writes panels `first ..` (as many as `dst` holds, `panel_floats` each, the last line
    /// unused) of `src`
    /// (`[n, kv_heads, D]`): panel `p` is kv head `p / panels`, tokens `LANES * (p % panels)`
    /// onwards, stored `[D][LANES]` (tokens past `n` zero).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn transpose_panels<const D: usize>(
        n: usize,
        kr: usize,
        panels: usize,
        first: usize,
        src: &[f32],
        dst: &mut [f32],
    ) {
        assert!(
            src.len() >= n * kr && (first + dst.len() / panel_floats::<D>()) <= panels * (kr / D)
        );
        let zero = _mm256_setzero_ps();
        for (p, panel) in dst.chunks_exact_mut(panel_floats::<D>()).enumerate() {
            let (g, b) = ((first + p) / panels, (first + p) % panels);
            for c in 0..D / LANES {
                let mut rows = [zero; 8];
                for (r, row) in rows.iter_mut().enumerate() {
                    let j = b * LANES + r;
                    if j < n {
                        *row = _mm256_loadu_ps(src.as_ptr().add(j * kr + g * D + c * LANES));
                    }
                }
                for (r, t) in transpose8(rows).into_iter().enumerate() {
                    _mm256_storeu_ps(panel.as_mut_ptr().add((c * LANES + r) * LANES), t);
                }
            }
        }
    }

    /// Largest transposed buffer kept for the next call (16 MiB each).
    const KEEP_FLOATS: usize = 1 << 22;

    thread_local! {
        /// K and V panels, kept between calls on this thread (taken out while in use, so a
        /// nested call allocates its own): allocating and zeroing them per call cost about a
        /// fifth of the kernel at N = 1024.
        static BUFFERS: std::cell::Cell<(Vec<f32>, Vec<f32>)> =
            const { std::cell::Cell::new((Vec::new(), Vec::new())) };
    }

    pub(super) fn prefill<const D: usize>(
        cfg: &AttentionConfig,
        n: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
    ) {
        assert!(cfg.head_dim == D && D.is_multiple_of(LANES));
        assert!(q.len() >= n * cfg.q_row() && out.len() >= n * cfg.q_row());
        assert!(k.len() >= n * cfg.kv_row() && v.len() >= n * cfg.kv_row());
        if n == 0 {
            return;
        }
        let kr = cfg.kv_row();
        // With a one-thread pool everything runs here, with no hand-over to a worker and back.
        // Short sequences too: splitting the preparation (block means, panels) pays only from
        // about a thousand tokens, and the tiles only with several tasks.
        let one = rayon::current_num_threads() == 1;
        let serial = one || n < PARALLEL_PREP_TOKENS;
        let serial_tiles = one || n <= ROWS_PER_TASK;
        let (bs, blocks) = (cfg.block_size, n / cfg.block_size);
        let mut mk = vec![0.0f32; blocks * kr];
        let mut mv = vec![0.0f32; blocks * kr];
        // Panels of 8 tokens x D dimensions per kv head, 64-byte aligned.
        let panels = n.div_ceil(LANES);
        let len = cfg.kv_heads * panels * panel_floats::<D>();
        let avx512 = super::has_avx512();
        // The AVX-512 build (head_dim >= 16) reads values from the rows of V, not from panels.
        let vlen = if avx512 && D >= 16 { 0 } else { len };
        let (mut kt, mut vt) = BUFFERS.with(|b| b.take());
        // Old contents need no clearing: every panel is written whole.
        kt.resize(len + 16, 0.0);
        vt.resize(vlen + 16, 0.0);
        let (ka, va) = (kt.as_ptr().align_offset(64), vt.as_ptr().align_offset(64));
        let rows_per_task = ROWS_PER_TASK * cfg.q_row();
        let mut s = Scratch::default();
        // SAFETY (both task closures): applies() checked AVX2 + FMA (and avx512 AVX-512 F + VL).
        if serial && serial_tiles {
            // All on this thread: each task's block means and panels are built just before its
            // tiles, while the K/V rows it reads are still in cache from the transposition.
            let mut done = 0;
            for (task, chunk) in out[..n * cfg.q_row()]
                .chunks_mut(SERIAL_ROWS * cfg.q_row())
                .enumerate()
            {
                let first = task * SERIAL_ROWS;
                let end = (first + SERIAL_ROWS).min(n);
                // Blocks completed by the task's last query (the only ones its tiles read).
                let now = end / bs;
                if now > done {
                    let at = done * bs * kr;
                    block_means_into(
                        cfg,
                        &k[at..],
                        &v[at..],
                        &mut mk[done * kr..now * kr],
                        &mut mv[done * kr..now * kr],
                    );
                    done = now;
                }
                let (p0, p1) = (first / LANES, end.div_ceil(LANES));
                let pf = panel_floats::<D>();
                for g in 0..cfg.kv_heads {
                    let (a, b) = ((g * panels + p0) * pf, (g * panels + p1) * pf);
                    // SAFETY: `super::prefill` calls this only when `applies()` found AVX2 + FMA;
                    // `transpose_panels` asserts its bounds (`src` holds `n` rows, `dst` whole
                    // panels of this kv head) and its stores stay inside `dst`'s panels.
                    unsafe {
                        transpose_panels::<D>(
                            n,
                            kr,
                            panels,
                            g * panels + p0,
                            k,
                            &mut kt[ka..][a..b],
                        );
                        if vlen > 0 {
                            transpose_panels::<D>(
                                n,
                                kr,
                                panels,
                                g * panels + p0,
                                v,
                                &mut vt[va..][a..b],
                            );
                        }
                    }
                }
                let (kp, vp) = (&kt[ka..ka + len], &vt[va..va + vlen]);
                // SAFETY: AVX2 + FMA were checked by `applies()` and, when `avx512`, AVX-512 F +
                // VL by `has_avx512()`. The lengths of `q`, `k`, `v` and `out` were asserted
                // above, and `rows_body` asserts the rest it relies on (its queries lie below
                // `n`, `kp`/`vp` hold whole panels for every kv head, `v` holds `n` rows).
                unsafe {
                    if avx512 {
                        rows512::<D>(cfg, n, first, q, k, v, &mk, &mv, kp, vp, &mut s, chunk)
                    } else {
                        rows::<D>(cfg, n, first, q, k, v, &mk, &mv, kp, vp, &mut s, chunk)
                    }
                }
            }
            if kt.len() <= KEEP_FLOATS {
                BUFFERS.with(|b| b.set((kt, vt)));
            }
            return;
        }
        // Block means (landmarks), split over the pool in groups of blocks.
        const BLOCKS_PER_TASK: usize = 8;
        let means = |(t, (mk, mv)): (usize, (&mut [f32], &mut [f32]))| {
            let at = t * BLOCKS_PER_TASK * bs * kr;
            block_means_into(cfg, &k[at..], &v[at..], mk, mv);
        };
        let mchunk = BLOCKS_PER_TASK * kr;
        if serial {
            mk.chunks_mut(mchunk)
                .zip(mv.chunks_mut(mchunk))
                .enumerate()
                .for_each(means);
        } else {
            mk.par_chunks_mut(mchunk)
                .zip(mv.par_chunks_mut(mchunk))
                .enumerate()
                .for_each(means);
        }
        let (kp, vp) = (&mut kt[ka..ka + len], &mut vt[va..va + vlen]);
        const PANELS_PER_TASK: usize = 16;
        let chunk = PANELS_PER_TASK * panel_floats::<D>();
        let transpose = |(t, (kc, vc)): (usize, (&mut [f32], &mut [f32]))| {
            // SAFETY: applies() checked AVX2 + FMA; `transpose_panels` asserts its bounds.
            unsafe {
                let first = t * PANELS_PER_TASK;
                transpose_panels::<D>(n, kr, panels, first, k, kc);
                if !vc.is_empty() {
                    transpose_panels::<D>(n, kr, panels, first, v, vc);
                }
            }
        };
        if vlen == 0 {
            let transpose_k = |(t, kc): (usize, &mut [f32])| transpose((t, (kc, &mut [][..])));
            if serial {
                kp.chunks_mut(chunk).enumerate().for_each(transpose_k);
            } else {
                kp.par_chunks_mut(chunk).enumerate().for_each(transpose_k);
            }
        } else if serial {
            kp.chunks_mut(chunk)
                .zip(vp.chunks_mut(chunk))
                .enumerate()
                .for_each(transpose);
        } else {
            kp.par_chunks_mut(chunk)
                .zip(vp.par_chunks_mut(chunk))
                .enumerate()
                .for_each(transpose);
        }
        let (kp, vp) = (&kt[ka..ka + len], &vt[va..va + vlen]);
        let (mk, mv) = (&mk[..], &mv[..]);
        let scratch = std::sync::Mutex::new(vec![s]);
        let task = |(task, chunk): (usize, &mut [f32])| {
            let mut s = scratch
                .lock()
                .map(|mut v| v.pop())
                .ok()
                .flatten()
                .unwrap_or_default();
            let first = task * ROWS_PER_TASK;
            // SAFETY: as in the serial loop above: target features checked by `applies()` and
            // `has_avx512()`, bounds asserted here and in `rows_body`.
            unsafe {
                if avx512 {
                    rows512::<D>(cfg, n, first, q, k, v, mk, mv, kp, vp, &mut s, chunk)
                } else {
                    rows::<D>(cfg, n, first, q, k, v, mk, mv, kp, vp, &mut s, chunk)
                }
            }
            if let Ok(mut v) = scratch.lock() {
                v.push(s);
            }
        };
        if serial_tiles {
            out[..n * cfg.q_row()]
                .chunks_mut(rows_per_task)
                .enumerate()
                .for_each(task);
        } else {
            out[..n * cfg.q_row()]
                .par_chunks_mut(rows_per_task)
                .enumerate()
                .for_each(task);
        }
        if kt.len() <= KEEP_FLOATS {
            BUFFERS.with(|b| b.set((kt, vt)));
        }
    }

    /// [`rows_body`] compiled for AVX-512 (F + VL: 32 vector registers, broadcasts folded into
    /// the FMAs); 256-bit vectors except in [`values_rows`].
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows512<const D: usize>(
        cfg: &AttentionConfig,
        n: usize,
        first: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mk: &[f32],
        mv: &[f32],
        kp: &[f32],
        vp: &[f32],
        s: &mut Scratch,
        out: &mut [f32],
    ) {
        if D >= 16 {
            rows_body::<D, true>(cfg, n, first, q, k, v, mk, mv, kp, vp, s, out)
        } else {
            rows_body::<D, false>(cfg, n, first, q, k, v, mk, mv, kp, vp, s, out)
        }
    }

    /// [`rows_body`] compiled for AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const D: usize>(
        cfg: &AttentionConfig,
        n: usize,
        first: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mk: &[f32],
        mv: &[f32],
        kp: &[f32],
        vp: &[f32],
        s: &mut Scratch,
        out: &mut [f32],
    ) {
        rows_body::<D, false>(cfg, n, first, q, k, v, mk, mv, kp, vp, s, out)
    }

    /// The tiles of query rows `first ..` (as many as `out` holds).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows_body<const D: usize, const WIDE: bool>(
        cfg: &AttentionConfig,
        n: usize,
        first: usize,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mk: &[f32],
        mv: &[f32],
        kp: &[f32],
        vp: &[f32],
        s: &mut Scratch,
        out: &mut [f32],
    ) {
        let qr = cfg.q_row();
        let group = cfg.group();
        let count = out.len() / qr;
        let panels = n.div_ceil(LANES);
        let head_panels = panels * panel_floats::<D>();
        assert!(first + count <= n && first.is_multiple_of(LANES));
        assert!(kp.len() >= cfg.kv_heads * head_panels);
        assert!(WIDE || vp.len() >= cfg.kv_heads * head_panels);
        assert!(v.len() >= n * cfg.kv_row());
        s.shared.clear();
        s.lookback.clear();
        s.tiles.clear();
        s.window_panels.clear();
        s.tiles.push((0, 0));
        let mut most = 0;
        for t0 in (0..count).step_by(LANES) {
            tile_items(cfg, first + t0, LANES.min(count - t0), k, v, mk, mv, s);
            let (a, b) = *s.tiles.last().expect("starts with (0, 0)");
            most = most.max(s.shared.len() - a + s.lookback.len() - b);
            s.tiles.push((s.shared.len(), s.lookback.len()));
        }
        // Lookback panels precede the tile's own (checked once here, read unchecked below).
        assert!(s.lookback.iter().all(|it| it.panel < panels));
        s.scores.resize(most, _mm256_setzero_ps());
        // Head by head (all tiles of the task for one head, then the next), so the K/V rows and
        // panels a tile reads are still in L1 for the next tile.
        for h in 0..cfg.q_heads {
            let g = h / group;
            for (t, t0) in (0..count).step_by(LANES).enumerate() {
                let ((sa, la), (sb, lb)) = (s.tiles[t], s.tiles[t + 1]);
                tile_head::<D, WIDE>(
                    q.as_ptr().add((first + t0) * qr + h * D),
                    qr,
                    LANES.min(count - t0),
                    cfg.scale(),
                    g * D,
                    &s.shared[sa..sb],
                    &s.lookback[la..lb],
                    s.window_panels[t],
                    &mut s.scores[..sb - sa + lb - la],
                    kp.as_ptr().add(g * head_panels),
                    vp.as_ptr().wrapping_add(g * head_panels),
                    v.as_ptr(),
                    cfg.kv_row(),
                    out.as_mut_ptr().add(t0 * qr + h * D),
                );
            }
        }
    }

    /// One head of one tile: `q` points at the first query's head (rows `qr` apart, `nl` of
    /// them), `kp`/`vp` at the head's K/V panels, `out` like `q`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_head<const D: usize, const WIDE: bool>(
        q: *const f32,
        qr: usize,
        nl: usize,
        scale: f32,
        goff: usize,
        shared: &[Shared],
        lookback: &[Lookback],
        window_panels: (usize, usize),
        scores: &mut [__m256],
        kp: *const f32,
        vp: *const f32,
        v: *const f32,
        kr: usize,
        out: *mut f32,
    ) {
        let zero = _mm256_setzero_ps();
        let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
        let panel = panel_floats::<D>();
        // The tile's queries transposed (dimension d: one vector over the lanes), scaled.
        let mut qt = [zero; D];
        let sc = _mm256_set1_ps(scale);
        for c in 0..D / LANES {
            let mut rows = [zero; 8];
            for (l, row) in rows.iter_mut().enumerate().take(nl) {
                *row = _mm256_loadu_ps(q.add(l * qr + c * LANES));
            }
            for (r, t) in transpose8(rows).into_iter().enumerate() {
                qt[c * LANES + r] = _mm256_mul_ps(t, sc);
            }
        }
        let ns = shared.len();
        assert!(scores.len() == ns + lookback.len());
        // Scores, up to eight items at a time. With WIDE (32 vector registers) each item has
        // two accumulators, one per half of the dimensions, so up to 16 independent FMA chains
        // hide the FMA latency.
        let mut t = 0;
        if WIDE {
            t = window_scores::<D>(q, qr, nl, sc, window_panels, shared, scores, kp);
        }
        let mut sums = [zero; 8];
        while t < ns {
            let cnt = (ns - t).min(8);
            let kr: [*const f32; 8] =
                std::array::from_fn(|c| shared[t + c.min(cnt - 1)].key.add(goff));
            let load = |c: usize, dd: usize| _mm256_set1_ps(*kr[c].add(dd));
            score_group::<D, WIDE>(cnt, &qt, load, &mut sums);
            for c in 0..cnt {
                scores[t + c] = masked::<WIDE>(sums[c], shared[t + c].mask);
            }
            t += 8;
        }
        // Lookback items: one aligned load per dimension from the key panel.
        let mut t = 0;
        while t < lookback.len() {
            let cnt = (lookback.len() - t).min(8);
            let kc: [*const f32; 8] =
                std::array::from_fn(|c| kp.add(lookback[t + c.min(cnt - 1)].panel * panel));
            let load = |c: usize, dd: usize| _mm256_load_ps(kc[c].add(dd * LANES));
            score_group::<D, WIDE>(cnt, &qt, load, &mut sums);
            for c in 0..cnt {
                scores[ns + t + c] = masked::<WIDE>(sums[c], lookback[t + c].mask);
            }
            t += 8;
        }
        // Softmax over the items, per lane. Lanes past the sequence end have no items (max
        // -inf); their outputs are never stored.
        let mut m = neg_inf;
        for &x in scores.iter() {
            m = _mm256_max_ps(m, x);
        }
        let mx = m;
        let mut sum = zero;
        let window = window_panels.1 * LANES;
        let tri = WIDE && triangles(nl, window, shared);
        // With the triangles, window items `m` and `window - 7 + m` cover complementary lanes:
        // one exponential serves both.
        let (pairs, h) = if tri {
            (LANES - 1, window - (LANES - 1))
        } else {
            (0, 0)
        };
        for m in 0..pairs {
            let (a, b) = (scores[m], scores[h + m]);
            let e = exp8w::<WIDE>(_mm256_sub_ps(_mm256_max_ps(a, b), mx));
            scores[m] = _mm256_and_ps(e, _mm256_cmp_ps::<_CMP_NEQ_OQ>(a, neg_inf));
            scores[h + m] = _mm256_and_ps(e, _mm256_cmp_ps::<_CMP_NEQ_OQ>(b, neg_inf));
            sum = _mm256_add_ps(sum, e);
        }
        let rest = if tri { pairs..h } else { 0..0 };
        let rest = rest.chain(if tri {
            h + pairs..scores.len()
        } else {
            0..scores.len()
        });
        for i in rest {
            let x = scores[i];
            let live = _mm256_cmp_ps::<_CMP_NEQ_OQ>(x, neg_inf);
            let p = _mm256_and_ps(exp8w::<WIDE>(_mm256_sub_ps(x, m)), live);
            sum = _mm256_add_ps(sum, p);
            scores[i] = p;
        }
        let inv = _mm256_div_ps(_mm256_set1_ps(1.0), sum);
        let scores = &*scores;
        if WIDE {
            values_rows::<D>(
                nl, qr, goff, tri, window, shared, lookback, scores, inv, v, kr, out,
            );
            return;
        }
        // Values, eight (WIDE: sixteen) dimensions at a time, kept transposed (one vector over
        // the lanes per dimension), then transposed back into the query rows.
        let width = if WIDE { 16 } else { 8 };
        for c in 0..D / width {
            let mut acc = [zero; 16];
            for (it, &p) in shared.iter().zip(scores) {
                let vr = it.value.add(goff + c * width);
                for r in 0..width {
                    acc[r] = _mm256_fmadd_ps(p, _mm256_set1_ps(*vr.add(r)), acc[r]);
                }
            }
            for (it, &p) in lookback.iter().zip(&scores[ns..]) {
                let vc = vp.add(it.panel * panel + c * width * LANES);
                for r in 0..width {
                    acc[r] = _mm256_fmadd_ps(p, _mm256_load_ps(vc.add(r * LANES)), acc[r]);
                }
            }
            for b in 0..width / LANES {
                let block: [__m256; 8] =
                    std::array::from_fn(|r| _mm256_mul_ps(acc[b * LANES + r], inv));
                for (l, row) in transpose8(block).into_iter().enumerate().take(nl) {
                    _mm256_storeu_ps(out.add(l * qr + c * width + b * LANES), row);
                }
            }
        }
    }

    /// [`exp8`], with the AVX-512 build (`WIDE`) rounding by `vrndscaleps` and scaling by
    /// `vscalefps` (the same rounding to nearest even and the same exact power-of-two scaling of
    /// the same polynomial, so the same results, in fewer instructions).
    #[inline(always)]
    unsafe fn exp8w<const WIDE: bool>(x: __m256) -> __m256 {
        if !WIDE {
            return exp8(x);
        }
        // x <= 0 here (a score minus the maximum, or NaN in lanes without items): the upper
        // clamp of exp8 never acts.
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
        let n = _mm256_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        _mm256_scalef_ps(exp_poly(x, n), n)
    }

    /// Dot products of `cnt` (1 to 8) items with the tile's transposed queries into
    /// `sums[..cnt]`; `load(c, d)` gives item `c`'s dimension `d` for every lane. Compiled for
    /// each count, so a short group does no padding work.
    #[inline(always)]
    unsafe fn score_group<const D: usize, const WIDE: bool>(
        cnt: usize,
        qt: &[__m256; D],
        load: impl Fn(usize, usize) -> __m256,
        sums: &mut [__m256; 8],
    ) {
        match cnt {
            1 => score_n::<D, WIDE, 1>(qt, load, sums),
            2 => score_n::<D, WIDE, 2>(qt, load, sums),
            3 => score_n::<D, WIDE, 3>(qt, load, sums),
            4 => score_n::<D, WIDE, 4>(qt, load, sums),
            5 => score_n::<D, WIDE, 5>(qt, load, sums),
            6 => score_n::<D, WIDE, 6>(qt, load, sums),
            7 => score_n::<D, WIDE, 7>(qt, load, sums),
            _ => score_n::<D, WIDE, 8>(qt, load, sums),
        }
    }

    /// [`score_group`] for `N` items.
    #[inline(always)]
    unsafe fn score_n<const D: usize, const WIDE: bool, const N: usize>(
        qt: &[__m256; D],
        load: impl Fn(usize, usize) -> __m256,
        sums: &mut [__m256; 8],
    ) {
        let zero = _mm256_setzero_ps();
        let halves = if WIDE { 2 } else { 1 };
        let half = D / halves;
        let mut acc = [[zero; N]; 2];
        for d in 0..half {
            for h in 0..halves {
                let dd = h * half + d;
                for c in 0..N {
                    acc[h][c] = _mm256_fmadd_ps(qt[dd], load(c, dd), acc[h][c]);
                }
            }
        }
        for c in 0..N {
            sums[c] = if WIDE {
                _mm256_add_ps(acc[0][c], acc[1][c])
            } else {
                acc[0][c]
            };
        }
    }

    /// True for a whole tile (`nl` = 8 queries) whose leading `window` items are a full window
    /// (from `i0 - window + 8`): window item `m < 7` then reaches queries `0..=m` only and item
    /// `window - 7 + m` queries `m + 1..` only.
    #[inline(always)]
    fn triangles(nl: usize, window: usize, shared: &[Shared]) -> bool {
        let low = |m: usize| (0xFFu32 >> (LANES - 1 - m)) as u8;
        nl == LANES
            && window >= 2 * (LANES - 1)
            && window <= shared.len()
            && (0..LANES - 1).all(|m| {
                shared[m].mask == low(m) && shared[window - (LANES - 1) + m].mask == !low(m)
            })
    }

    /// `acc[q * dv + c] += w[q] * row[c]` for queries `lo .. hi` (`dv` = D / 16 vectors per
    /// row, `w` the item's weights of the pass's queries).
    #[inline(always)]
    unsafe fn value_item<const D: usize>(
        acc: &mut [__m512; 16],
        vr: *const f32,
        w: *const f32,
        lo: usize,
        hi: usize,
    ) {
        let dv = D / 16;
        let row: [__m512; 4] = std::array::from_fn(|c| {
            if c < dv {
                _mm512_loadu_ps(vr.add(c * 16))
            } else {
                _mm512_setzero_ps()
            }
        });
        for qq in lo..hi {
            let wq = _mm512_set1_ps(*w.add(qq));
            for c in 0..dv {
                acc[qq * dv + c] = _mm512_fmadd_ps(wq, row[c], acc[qq * dv + c]);
            }
        }
    }

    /// Scores of the window items that fill whole key panels (`window_panels`: first panel,
    /// count), with the keys as lanes: per dimension, each panel's vector is loaded once and
    /// multiplied by each query's element broadcast from its row, up to three panels (24
    /// accumulators) at a time; the sums are transposed back to one vector over the queries per
    /// key. Reads the transposed key panels instead of the strided key rows and needs about half
    /// the loads per FMA of the broadcast-key loop. Returns how many items it scored.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn window_scores<const D: usize>(
        q: *const f32,
        qr: usize,
        nl: usize,
        scale: __m256,
        (first, count): (usize, usize),
        shared: &[Shared],
        scores: &mut [__m256],
        kp: *const f32,
    ) -> usize {
        let zero = _mm256_setzero_ps();
        let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
        let panel = panel_floats::<D>();
        assert!(count * LANES <= shared.len() && scores.len() >= count * LANES);
        // Lanes past the tile repeat its last query (their items' masks exclude them).
        let rows: [*const f32; LANES] = std::array::from_fn(|l| q.add(l.min(nl - 1) * qr));
        let mut p0 = 0;
        while p0 < count {
            let np = (count - p0).min(3);
            let kc: [*const f32; 3] =
                std::array::from_fn(|c| kp.add((first + p0 + c.min(np - 1)) * panel));
            let mut acc = [[zero; LANES]; 3];
            for d in 0..D {
                let kv: [__m256; 3] = std::array::from_fn(|c| _mm256_load_ps(kc[c].add(d * LANES)));
                for l in 0..LANES {
                    let b = _mm256_set1_ps(*rows[l].add(d));
                    for c in 0..3 {
                        acc[c][l] = _mm256_fmadd_ps(b, kv[c], acc[c][l]);
                    }
                }
            }
            for c in 0..np {
                for (k, x) in transpose8(acc[c]).into_iter().enumerate() {
                    let i = (p0 + c) * LANES + k;
                    scores[i] = _mm256_mask_mul_ps(neg_inf, shared[i].mask, x, scale);
                }
            }
            p0 += np;
        }
        count * LANES
    }

    /// The values of one tile and head with the output rows as vectors (lanes: dimensions):
    /// each query's weight is broadcast against the item's value row, a few queries per pass so
    /// that one load of a row feeds several FMAs and one broadcast weight several more (about
    /// half the loads per FMA of the transposed accumulation, and no transpose back). Lookback
    /// items read each query's own row of V. Needs 32 vector registers (AVX-512 build).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn values_rows<const D: usize>(
        nl: usize,
        qr: usize,
        goff: usize,
        tri: bool,
        window: usize,
        shared: &[Shared],
        lookback: &[Lookback],
        scores: &[__m256],
        inv: __m256,
        v: *const f32,
        kr: usize,
        out: *mut f32,
    ) {
        const W: usize = 16;
        let zero = _mm512_setzero_ps();
        // 512-bit vectors per row, queries per pass (at most 16 accumulators).
        let dv = D / W;
        let qp = (16 / dv).min(LANES);
        let ns = shared.len();
        let p = scores.as_ptr() as *const f32;
        let mut inv_lanes = [0.0f32; LANES];
        _mm256_storeu_ps(inv_lanes.as_mut_ptr(), inv);
        // One item's row times the weights of queries `qb + lo .. qb + hi`.
        let item = |acc: &mut [__m512; 16], i: usize, qb: usize, lo: usize, hi: usize| {
            value_item::<D>(
                acc,
                shared[i].value.add(goff),
                p.add(i * LANES + qb),
                lo,
                hi,
            )
        };
        // A whole tile with all eight queries in one pass and a full window of `window` items
        // (from `i0 - window + 8`): window item `m < 7` reaches queries `0..=m` only, item
        // `window - 7 + m` queries `m + 1..` only; the other lanes' weights are zero, so those
        // products are skipped (56 of the 192 window products per tile).
        let tri = tri && qp == LANES;
        let mut qb = 0;
        while qb < nl {
            let mut acc = [zero; 16];
            if tri {
                let h = window - (LANES - 1);
                // Spelled out so that every query range is a constant (accumulators stay in
                // registers).
                item(&mut acc, 0, 0, 0, 1);
                item(&mut acc, h, 0, 1, 8);
                item(&mut acc, 1, 0, 0, 2);
                item(&mut acc, h + 1, 0, 2, 8);
                item(&mut acc, 2, 0, 0, 3);
                item(&mut acc, h + 2, 0, 3, 8);
                item(&mut acc, 3, 0, 0, 4);
                item(&mut acc, h + 3, 0, 4, 8);
                item(&mut acc, 4, 0, 0, 5);
                item(&mut acc, h + 4, 0, 5, 8);
                item(&mut acc, 5, 0, 0, 6);
                item(&mut acc, h + 5, 0, 6, 8);
                item(&mut acc, 6, 0, 0, 7);
                item(&mut acc, h + 6, 0, 7, 8);
                for i in LANES - 1..window - (LANES - 1) {
                    item(&mut acc, i, 0, 0, LANES);
                }
                for i in window..shared.len() {
                    item(&mut acc, i, 0, 0, LANES);
                }
            } else {
                for i in 0..shared.len() {
                    item(&mut acc, i, qb, 0, qp);
                }
            }
            for (i, it) in lookback.iter().enumerate() {
                for qq in 0..qp {
                    // Token LANES * panel + lane: before the tile, so inside V.
                    let vr = v.add((it.panel * LANES + qb + qq) * kr + goff);
                    let w = _mm512_set1_ps(*p.add((ns + i) * LANES + qb + qq));
                    for c in 0..dv {
                        acc[qq * dv + c] =
                            _mm512_fmadd_ps(w, _mm512_loadu_ps(vr.add(c * W)), acc[qq * dv + c]);
                    }
                }
            }
            for qq in 0..qp.min(nl - qb) {
                let s = _mm512_set1_ps(inv_lanes[qb + qq]);
                for c in 0..dv {
                    _mm512_storeu_ps(
                        out.add((qb + qq) * qr + c * W),
                        _mm512_mul_ps(acc[qq * dv + c], s),
                    );
                }
            }
            qb += qp;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bench::random_vec;
    use crate::AttentionConfig;

    fn cfg(
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
        window: usize,
        block_size: usize,
    ) -> AttentionConfig {
        AttentionConfig {
            q_heads,
            kv_heads,
            head_dim,
            window,
            block_size,
            causal: true,
        }
    }

    /// The tile kernel against the row-by-row kernel (pattern lists, one query at a time).
    fn check(c: AttentionConfig, lengths: impl IntoIterator<Item = usize>, amp: f32) {
        if !super::applies(&c) {
            eprintln!("tile kernel not available here ({c:?}); nothing to compare");
            return;
        }
        for n in lengths {
            let seed = n as u64 * 31 + c.window as u64;
            let scale = |x: Vec<f32>| x.into_iter().map(|y| y * amp).collect::<Vec<f32>>();
            let q = scale(random_vec(n * c.q_row(), seed));
            let k = scale(random_vec(n * c.kv_row(), seed + 1));
            let v = random_vec(n * c.kv_row(), seed + 2);
            let mut tile = vec![f32::NAN; n * c.q_row()];
            let mut rows = vec![f32::NAN; n * c.q_row()];
            assert!(super::prefill(&c, n, &q, &k, &v, &mut tile));
            crate::sparse::prefill_rowwise(&c, n, &q, &k, &v, &mut rows);
            let worst = tile
                .iter()
                .zip(&rows)
                .map(|(a, b)| (a - b).abs())
                .fold(
                    0.0f32,
                    |m, x| if x.is_nan() { f32::INFINITY } else { m.max(x) },
                );
            assert!(worst <= 1e-5, "{c:?} n={n}: worst difference {worst}");
        }
    }

    #[test]
    fn bench_setting_matches_row_kernel() {
        // MHA and the default grouping (4 q heads on 1 kv head), every N up to 100, then sizes
        // around tile, block and task edges.
        for kv_heads in [4, 1] {
            let c = cfg(4, kv_heads, 32, 16, 32);
            check(
                c,
                (1..=100).chain([127, 128, 129, 255, 300, 513, 1024]),
                1.0,
            );
        }
    }

    #[test]
    fn other_shapes_match_row_kernel() {
        let lengths = || (1..=70).chain([97, 200, 333]);
        check(AttentionConfig::default(), lengths(), 1.0); // window 32, block 16, MQA
        check(cfg(4, 2, 16, 7, 8), lengths(), 1.0); // GQA, shortest window handled
        check(cfg(3, 1, 8, 9, 3), lengths(), 1.0); // tiny blocks, stride 16 first lookback
        check(cfg(2, 2, 64, 8, 1), lengths(), 1.0); // every token a block
        check(cfg(2, 1, 32, 100, 7), lengths(), 1.0); // window wider than most sequences
        check(cfg(4, 4, 32, 16, 32), [50, 400], 8.0); // large scores: softmax far from uniform
    }

    /// The AVX2 build (what CPUs without AVX-512 run) on the same shapes, forced on this thread.
    #[test]
    fn avx2_build_matches_row_kernel() {
        super::FORCE_AVX2.with(|f| f.set(true));
        assert!(!super::has_avx512());
        for kv_heads in [4, 1] {
            check(
                cfg(4, kv_heads, 32, 16, 32),
                (1..=70).chain([129, 300, 1024]),
                1.0,
            );
        }
        check(cfg(4, 2, 16, 7, 8), (1..=40).chain([200]), 1.0);
        check(cfg(2, 2, 64, 8, 1), (1..=40).chain([97]), 1.0);
        check(cfg(4, 4, 32, 16, 32), [50, 400], 8.0);
        super::FORCE_AVX2.with(|f| f.set(false));
    }

    #[test]
    fn other_configurations_are_left_to_the_row_kernel() {
        assert!(!super::applies(&cfg(4, 2, 16, 6, 8))); // lookback strides 8 > window > 4
        assert!(!super::applies(&cfg(4, 2, 12, 16, 8))); // head_dim not a multiple of 8
        let non_causal = AttentionConfig {
            causal: false,
            ..AttentionConfig::default()
        };
        assert!(!super::applies(&non_causal));
    }
}
