//! The training engine's own matrix product `c[m, n] (+)= a · b`, with `a` and `b` given by
//! row and column strides (so the three products of a Linear layer — forward `x · wᵀ`,
//! input gradient `dy · w`, weight gradient `dyᵀ · x` — are all one call): one packing and
//! tiling loop over per-ISA register-tile micro-kernels ([`MicroKernel`]: AVX-512 12 × 32,
//! AVX2+FMA 6 × 16, portable 4 × 8), chosen once from the shared detector `csipose-cpu`.
//!
//! The loop (BLIS order): the inner dimension in blocks of [`KC`]; per block, `b` packed once
//! into `NR`-column panels (`kc × NR`, contiguous, zero-padded past `n`; a row-major `b`'s
//! full panels are read in place at its row stride instead), then the rows in
//! blocks of `MC` (a multiple of `MR`), each packed into `MR`-row panels (`kc × MR`,
//! zero-padded past `m`); for every `NR` panel of `b` (kept in L1) the kernel runs down the
//! row block's `MR` panels (in L2). Full tiles are written in place; tiles at the edges are
//! computed into a scratch tile and the valid part copied. Every output element sums its `k`
//! products in the same order whatever the thread count or block split, so results do not
//! depend on scheduling. Large products split their row blocks over rayon unless the caller
//! runs with [`crate::layers::with_single_threaded`].

use rayon::prelude::*;

/// Inner-dimension block: one packed `b` panel of `KC × NR` floats stays in L1.
pub const KC: usize = 256;

/// An instruction set's register tile: `MR` rows × `NR` columns of `c` held in registers,
/// summing `kc` rank-1 updates from packed panels.
pub trait MicroKernel {
    /// Rows of the register tile.
    const MR: usize;
    /// Columns of the register tile.
    const NR: usize;
    /// Row block (a multiple of `MR`) packed at once and walked per `b` panel.
    const MC: usize;

    /// `c[i * ldc + j] (+)= Σ_p a[i * lda + p * acs] · b[p * ldb + j]` for `i < MR`,
    /// `j < NR` (adds to `c` when `accumulate`, else overwrites). `a` is either a packed
    /// panel (`lda = 1`, `acs = MR`) or `MR` rows of a row-major matrix read in place
    /// (`lda` its row stride, `acs = 1`); `b` a packed panel (`ldb = NR`) or `NR` columns of
    /// a row-major matrix read in place (`ldb` its row stride).
    ///
    /// # Safety
    /// The CPU supports the kernel's instruction set; `a` covers every `(i, p)` above, `b`
    /// every `(p, j)`, and `c` covers `MR` rows of `NR` columns at stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        kc: usize,
        a: *const f32,
        lda: usize,
        acs: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    );
}

/// The micro-kernel families; [`Isa::detect`] picks the widest the CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F: 12 × 32 tile (24 zmm accumulators).
    Avx512,
    /// AVX2 + FMA: 6 × 16 tile (12 ymm accumulators).
    Avx2,
    /// Plain Rust, 4 × 8 tile (auto-vectorised; any CPU).
    Portable,
}

impl Isa {
    /// The widest family this CPU supports (decided once per call of `csipose-cpu`, which
    /// caches its answer).
    pub fn detect() -> Isa {
        if csipose_cpu::avx512() {
            Isa::Avx512
        } else if csipose_cpu::avx2_fma() {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    /// Whether this CPU can run the family.
    pub fn available(self) -> bool {
        match self {
            Isa::Avx512 => csipose_cpu::avx512(),
            Isa::Avx2 => csipose_cpu::avx2_fma(),
            Isa::Portable => true,
        }
    }

    /// Short name (`avx512`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();

/// The family [`matmul`] uses: [`Isa::detect`], decided on first use.
pub fn chosen() -> Isa {
    *CHOSEN.get_or_init(Isa::detect)
}

thread_local! {
    static PACK_A: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    static PACK_B: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes this thread's packing buffer out (so a nested call on the same thread — rayon may
/// run another task while this one waits — gets its own), sized to at least `len`.
fn take(buf: &'static std::thread::LocalKey<std::cell::Cell<Vec<f32>>>, len: usize) -> Vec<f32> {
    let mut v = buf.with(|c| c.take());
    if v.len() < len {
        v.resize(len, 0.0);
    }
    v
}

fn give(buf: &'static std::thread::LocalKey<std::cell::Cell<Vec<f32>>>, v: Vec<f32>) {
    buf.with(|c| c.set(v));
}

/// A strided read-only matrix: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// `c[m, n] (+)= a · b` with the family [`chosen`]; `c` row-major with row stride `n`.
/// `par`: split the row blocks over rayon's threads. Panics as [`matmul_isa`] does.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
    a: Strided,
    b: Strided,
    par: bool,
) {
    matmul_isa(chosen(), m, n, k, c, accumulate, a, b, par)
}

/// [`matmul`] with a given family (tests force each one the CPU runs).
///
/// # Panics
/// If the CPU lacks `isa`, or a stride walks out of a slice, or `c` is shorter than `m × n`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_isa(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
    a: Strided,
    b: Strided,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "gemm: output too short");
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        (m - 1) * a.rs + (k - 1) * a.cs < a.data.len(),
        "gemm: lhs too short"
    );
    assert!(
        (k - 1) * b.rs + (n - 1) * b.cs < b.data.len(),
        "gemm: rhs too short"
    );
    assert!(
        isa.available(),
        "gemm: this CPU cannot run the {} kernel",
        isa.name()
    );
    match isa {
        Isa::Avx512 => run::<Avx512>(m, n, k, c, accumulate, a, b, par),
        Isa::Avx2 => run::<Avx2>(m, n, k, c, accumulate, a, b, par),
        Isa::Portable => run::<Portable>(m, n, k, c, accumulate, a, b, par),
    }
}

/// The packing and tiling loop for one micro-kernel (bounds already checked).
#[allow(clippy::too_many_arguments)]
fn run<K: MicroKernel>(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
    a: Strided,
    b: Strided,
    par: bool,
) {
    let (mr, nr) = (K::MR, K::NR);
    let npanels = n.div_ceil(nr);
    let kc_max = k.min(KC);
    // A row-major `b` (unit column stride) is read in place by full panels (NR columns of
    // its rows, at its row stride); other layouts, and a partial last panel, are packed.
    let packed_b_from = if b.cs == 1 { n / nr } else { 0 };
    let bpanels = npanels - packed_b_from;
    let mut bp = take(&PACK_B, bpanels * nr * kc_max);
    let c = &mut c[..m * n];
    let mut p0 = 0;
    while p0 < k {
        let kc = (k - p0).min(KC);
        let acc = accumulate || p0 > 0;
        // The packed panels: columns from `j_packed` on.
        let j_packed = packed_b_from * nr;
        if bpanels > 0 {
            let rest = Strided {
                data: &b.data[j_packed * b.cs..],
                ..b
            };
            pack_b(&mut bp[..bpanels * nr * kc], rest, p0, kc, n - j_packed, nr);
        }
        let bp = &bp[..bpanels * nr * kc];
        let block = |(ib, cb): (usize, &mut [f32])| {
            let i0 = ib * K::MC;
            let rows = cb.len() / n;
            let mpanels = rows.div_ceil(mr);
            // A row-major `a` (unit column stride) is read in place by full panels (its MR
            // rows are MR streams the kernel broadcasts from); other layouts, and a partial
            // last panel, are packed.
            let direct = a.cs == 1;
            let packed_from = if direct { rows / mr } else { 0 };
            let mut ap = take(&PACK_A, (mpanels - packed_from) * mr * kc);
            pack_a(
                &mut ap[..(mpanels - packed_from) * mr * kc],
                a,
                i0 + packed_from * mr,
                rows - packed_from * mr,
                p0,
                kc,
                mr,
            );
            for jp in 0..npanels {
                let j0 = jp * nr;
                let cols = (n - j0).min(nr);
                let (bpan, ldb) = if jp < packed_b_from {
                    // SAFETY: rows p0 .. p0 + kc, columns j0 .. j0 + NR of `b` lie inside its
                    // slice (the caller checked the last element).
                    (unsafe { b.data.as_ptr().add(p0 * b.rs + j0) }, b.rs)
                } else {
                    let q = jp - packed_b_from;
                    (bp[q * nr * kc..(q + 1) * nr * kc].as_ptr(), nr)
                };
                for ip in 0..mpanels {
                    let r0 = ip * mr;
                    let r = (rows - r0).min(mr);
                    let (apan, lda, acs) = if ip < packed_from {
                        // SAFETY: rows i0 + r0 .. + MR, columns p0 .. p0 + kc of `a` lie
                        // inside its slice (the caller checked the last element).
                        (
                            unsafe { a.data.as_ptr().add((i0 + r0) * a.rs + p0) },
                            a.rs,
                            1,
                        )
                    } else {
                        let q = ip - packed_from;
                        (ap[q * mr * kc..(q + 1) * mr * kc].as_ptr(), 1, mr)
                    };
                    if r == mr && cols == nr {
                        // SAFETY: the CPU runs K (checked by the caller); `apan` covers MR
                        // rows × kc at (lda, acs), the b panel kc × NR floats; the tile's
                        // MR rows × NR columns lie inside this row block of c.
                        unsafe {
                            K::tile(
                                kc,
                                apan,
                                lda,
                                acs,
                                bpan,
                                ldb,
                                cb.as_mut_ptr().add(r0 * n + j0),
                                n,
                                acc,
                            )
                        };
                    } else {
                        let mut t = [0.0f32; 12 * 32];
                        debug_assert!(mr * nr <= t.len());
                        // SAFETY: as above, into the scratch tile of MR × NR ≤ 12 × 32.
                        unsafe {
                            K::tile(kc, apan, lda, acs, bpan, ldb, t.as_mut_ptr(), nr, false)
                        };
                        for i in 0..r {
                            let dst = &mut cb[(r0 + i) * n + j0..(r0 + i) * n + j0 + cols];
                            let src = &t[i * nr..i * nr + cols];
                            if acc {
                                for (d, s) in dst.iter_mut().zip(src) {
                                    *d += s;
                                }
                            } else {
                                dst.copy_from_slice(src);
                            }
                        }
                    }
                }
            }
            give(&PACK_A, ap);
        };
        if par && m > K::MC && rayon::current_num_threads() > 1 {
            c.par_chunks_mut(K::MC * n).enumerate().for_each(block);
        } else {
            c.chunks_mut(K::MC * n).enumerate().for_each(block);
        }
        p0 += kc;
    }
    give(&PACK_B, bp);
}

/// Packs `b[p0..p0 + kc, 0..n]` into `NR`-column panels: panel `jp`, row `p` at
/// `out[(jp * kc + p) * nr ..][..nr]`, zero past column `n`.
fn pack_b(out: &mut [f32], b: Strided, p0: usize, kc: usize, n: usize, nr: usize) {
    let npanels = n.div_ceil(nr);
    for jp in 0..npanels {
        let j0 = jp * nr;
        let cols = (n - j0).min(nr);
        let pan = &mut out[jp * kc * nr..(jp + 1) * kc * nr];
        if b.cs == 1 {
            for p in 0..kc {
                let s = (p0 + p) * b.rs + j0;
                pan[p * nr..p * nr + cols].copy_from_slice(&b.data[s..s + cols]);
                pan[p * nr + cols..(p + 1) * nr].fill(0.0);
            }
        } else {
            if cols < nr {
                pan.fill(0.0);
            }
            #[cfg(target_arch = "x86_64")]
            if b.rs == 1 && csipose_cpu::avx2_fma() {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { pack_transposed_avx2(pan, b.data, j0 * b.cs + p0, b.cs, cols, kc, nr) };
                continue;
            }
            pack_strided(pan, b, j0, p0, cols, kc, nr);
        }
    }
}

/// `pan[p * nr + j] = b[p0 + p, j0 + j]` for `j < cols`, `p < kc`, column by column: each
/// column of `b` is contiguous when `rs == 1` (a transposed weight), so the reads stream.
fn pack_strided(
    pan: &mut [f32],
    b: Strided,
    j0: usize,
    p0: usize,
    cols: usize,
    kc: usize,
    nr: usize,
) {
    for j in 0..cols {
        let base = (j0 + j) * b.cs + p0 * b.rs;
        for p in 0..kc {
            pan[p * nr + j] = b.data[base + p * b.rs];
        }
    }
}

/// [`pack_strided`] for a transposed `b` (`rs == 1`, column `j` contiguous at `base + j · cs`)
/// in 8 × 8 blocks transposed in registers; the columns and rows past the last whole block
/// one at a time.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_transposed_avx2(
    pan: &mut [f32],
    data: &[f32],
    base: usize,
    cs: usize,
    cols: usize,
    kc: usize,
    nr: usize,
) {
    use std::arch::x86_64::*;
    let (jfull, pfull) = (cols / 8 * 8, kc / 8 * 8);
    for jb in (0..jfull).step_by(8) {
        for pb in (0..pfull).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|i| {
                let s = &data[base + (jb + i) * cs + pb..][..8];
                // SAFETY: `s` holds 8 floats.
                unsafe { _mm256_loadu_ps(s.as_ptr()) }
            });
            // The classic 8 × 8 transpose: pairs, then quads, then 128-bit halves.
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
            let rows = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (q, v) in rows.into_iter().enumerate() {
                let d = &mut pan[(pb + q) * nr + jb..][..8];
                // SAFETY: `d` holds 8 floats.
                unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) };
            }
        }
        for p in pfull..kc {
            for i in 0..8 {
                pan[p * nr + jb + i] = data[base + (jb + i) * cs + p];
            }
        }
    }
    for j in jfull..cols {
        for p in 0..kc {
            pan[p * nr + j] = data[base + j * cs + p];
        }
    }
}

/// Copies `N` floats from `src` at each offset of `starts` to consecutive `N`-float rows of
/// `dst` (a fixed length, so the copies are inline moves rather than `memcpy` calls).
#[inline(always)]
fn copy_rows<const N: usize>(dst: &mut [f32], src: &[f32], starts: impl Iterator<Item = usize>) {
    for (d, s) in dst.chunks_exact_mut(N).zip(starts) {
        let d: &mut [f32; N] = d.try_into().unwrap();
        *d = src[s..s + N].try_into().unwrap();
    }
}

/// Packs `a[i0..i0 + rows, p0..p0 + kc]` into `MR`-row panels: panel `ip`, column `p` at
/// `out[(ip * kc + p) * mr ..][..mr]`, zero past row `rows`.
fn pack_a(out: &mut [f32], a: Strided, i0: usize, rows: usize, p0: usize, kc: usize, mr: usize) {
    let mpanels = rows.div_ceil(mr);
    for ip in 0..mpanels {
        let r0 = ip * mr;
        let r = (rows - r0).min(mr);
        let pan = &mut out[ip * kc * mr..(ip + 1) * kc * mr];
        if r < mr {
            pan.fill(0.0);
        }
        if a.rs == 1 {
            // a transposed (dyᵀ in the weight gradient): a row of the panel is contiguous.
            let rows = (0..kc).map(|p| (p0 + p) * a.cs + i0 + r0);
            match (r == mr, mr) {
                (true, 12) => copy_rows::<12>(pan, a.data, rows),
                (true, 6) => copy_rows::<6>(pan, a.data, rows),
                (true, 4) => copy_rows::<4>(pan, a.data, rows),
                _ => {
                    for (p, s) in rows.enumerate() {
                        pan[p * mr..p * mr + r].copy_from_slice(&a.data[s..s + r]);
                    }
                }
            }
        } else {
            for i in 0..r {
                let base = (i0 + r0 + i) * a.rs + p0 * a.cs;
                for p in 0..kc {
                    pan[p * mr + i] = a.data[base + p * a.cs];
                }
            }
        }
    }
}

/// Plain Rust 4 × 8 tile (separate multiply and add: without FMA hardware `mul_add` would
/// be a library call); the compiler vectorises the 8 columns.
pub struct Portable;

impl MicroKernel for Portable {
    const MR: usize = 4;
    const NR: usize = 8;
    const MC: usize = 64;

    #[inline]
    unsafe fn tile(
        kc: usize,
        a: *const f32,
        lda: usize,
        acs: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[0.0f32; 8]; 4];
        for p in 0..kc {
            // SAFETY: the trait's contract covers a's (i, p) and b's kc × 8 floats.
            let (av, bp) = unsafe {
                (
                    [0, 1, 2, 3].map(|i| *a.add(i * lda + p * acs)),
                    std::slice::from_raw_parts(b.add(p * ldb), 8),
                )
            };
            for i in 0..4 {
                for j in 0..8 {
                    acc[i][j] += av[i] * bp[j];
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: c covers 4 rows of 8 columns at stride ldc.
            let cr = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), 8) };
            for (d, s) in cr.iter_mut().zip(row) {
                *d = if accumulate { *d + s } else { *s };
            }
        }
    }
}

/// Generates an x86-64 micro-kernel: `$mr` broadcast rows × `$nv` vectors of `$lanes`
/// columns, the `a` operand packed (`lda = 1`, `acs = MR`, monomorphised separately so
/// the packed loop's offsets are constants) or in place (`acs = 1`).
macro_rules! x86_kernel {
    ($name:ident, $fn:ident, $feat:literal, $mr:literal, $nv:literal, $lanes:literal, $mc:literal,
     $vec:ty, $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident, $add:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $name;

        impl MicroKernel for $name {
            const MR: usize = $mr;
            const NR: usize = $nv * $lanes;
            const MC: usize = $mc;

            #[inline]
            unsafe fn tile(
                kc: usize,
                a: *const f32,
                lda: usize,
                acs: usize,
                b: *const f32,
                ldb: usize,
                c: *mut f32,
                ldc: usize,
                accumulate: bool,
            ) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: forwarded contract; the caller checked the instruction set.
                unsafe {
                    if acs == 1 {
                        $fn::<false>(kc, a, lda, b, ldb, c, ldc, accumulate)
                    } else {
                        debug_assert!(lda == 1 && acs == $mr);
                        $fn::<true>(kc, a, lda, b, ldb, c, ldc, accumulate)
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                // SAFETY: never selected off x86-64 (`Isa::available` is false there).
                unsafe {
                    Portable::tile(kc, a, lda, acs, b, ldb, c, ldc, accumulate)
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fn<const PACKED: bool>(
            kc: usize,
            a: *const f32,
            lda: usize,
            b: *const f32,
            ldb: usize,
            c: *mut f32,
            ldc: usize,
            accumulate: bool,
        ) {
            use std::arch::x86_64::*;
            // SAFETY (whole body): the trait's contract covers every pointer offset used.
            unsafe {
                let mut acc = [[$zero(); $nv]; $mr];
                for p in 0..kc {
                    let mut bv = [$zero(); $nv];
                    for (v, x) in bv.iter_mut().enumerate() {
                        *x = $load(b.add(p * ldb + v * $lanes));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let off = if PACKED { p * $mr + i } else { i * lda + p };
                        let ai = $set1(*a.add(off));
                        for (r, x) in row.iter_mut().zip(&bv) {
                            *r = $fmadd(ai, *x, *r);
                        }
                    }
                }
                for (i, row) in acc.iter().enumerate() {
                    for (v, r) in row.iter().enumerate() {
                        let dst = c.add(i * ldc + v * $lanes);
                        let x = if accumulate { $add($load(dst), *r) } else { *r };
                        $store(dst, x);
                    }
                }
            }
        }
    };
}

x86_kernel!(
    Avx2,
    avx2_tile,
    "avx2,fma",
    6,
    2,
    8,
    96,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    "AVX2 + FMA 6 × 16 tile: two ymm columns × six broadcast rows, 12 accumulators."
);
x86_kernel!(
    Avx512,
    avx512_tile,
    "avx512f",
    12,
    2,
    16,
    96,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    "AVX-512 F 12 × 32 tile: two zmm columns × twelve broadcast rows, 24 accumulators."
);

/// Measures this core's f32 multiply-add peak in GFLOP/s (2 FLOPs per lane per FMA) with
/// independent FMA chains on the widest vectors [`chosen`] uses, for about `seconds`.
/// Returns `None` on the portable family (no FMA kernel to time).
pub fn measure_fma_peak_gflops(seconds: f64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = chosen();
        if isa == Isa::Portable {
            return None;
        }
        let iters = 1u64 << 20;
        let flops_per_iter = match isa {
            Isa::Avx512 => 16.0 * 16.0 * 2.0,
            _ => 16.0 * 8.0 * 2.0,
        };
        let t0 = std::time::Instant::now();
        let mut best = 0.0f64;
        let mut sink = 0.0f32;
        while t0.elapsed().as_secs_f64() < seconds || best == 0.0 {
            let t = std::time::Instant::now();
            // SAFETY: the chosen family's instruction set is present.
            sink += unsafe {
                match isa {
                    Isa::Avx512 => fma_loop_avx512(iters),
                    _ => fma_loop_avx2(iters),
                }
            };
            let dt = t.elapsed().as_secs_f64();
            best = best.max(iters as f64 * flops_per_iter / dt / 1e9);
        }
        std::hint::black_box(sink);
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = seconds;
        None
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(1.0); 16];
    let x = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let y = _mm512_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, x, y);
        }
    }
    let mut s = _mm512_setzero_ps();
    for r in acc {
        s = _mm512_add_ps(s, r);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(1.0); 16];
    let x = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let y = _mm256_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for r in acc {
        s = _mm256_add_ps(s, r);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// Naive reference in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        c0: &[f32],
        accumulate: bool,
        a: Strided,
        b: Strided,
    ) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = if accumulate {
                    c0[i * n + j] as f64
                } else {
                    0.0
                };
                for p in 0..k {
                    s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    fn isas() -> Vec<Isa> {
        let all = [Isa::Portable, Isa::Avx2, Isa::Avx512];
        let v: Vec<Isa> = all.into_iter().filter(|i| i.available()).collect();
        assert!(v.contains(&Isa::detect()));
        v
    }

    /// Every family against the naive product: odd shapes (edges in rows, columns and the
    /// inner dimension, inner dimension over one KC block), both orientations of each
    /// operand, overwrite and accumulate, serial and split over threads.
    #[test]
    fn every_kernel_matches_naive_on_odd_shapes() {
        let shapes = [
            (1, 1, 1),
            (1, 33, 7),
            (13, 1, 5),
            (5, 17, 3),
            (12, 32, 256),
            (25, 47, 257),
            (97, 65, 300),
            (320, 96, 48),
            (200, 130, 530),
            (7, 342, 31),
        ];
        let mut seed = 7u64;
        for isa in isas() {
            for &(m, n, k) in &shapes {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    for accumulate in [false, true] {
                        for par in [false, true] {
                            let av: Vec<f32> = (0..m * k + 3).map(|_| lcg(&mut seed)).collect();
                            let bv: Vec<f32> = (0..k * n + 5).map(|_| lcg(&mut seed)).collect();
                            let a = if ta {
                                Strided {
                                    data: &av,
                                    rs: 1,
                                    cs: m,
                                }
                            } else {
                                Strided {
                                    data: &av,
                                    rs: k,
                                    cs: 1,
                                }
                            };
                            let b = if tb {
                                Strided {
                                    data: &bv,
                                    rs: 1,
                                    cs: k,
                                }
                            } else {
                                Strided {
                                    data: &bv,
                                    rs: n,
                                    cs: 1,
                                }
                            };
                            let c0: Vec<f32> = (0..m * n).map(|_| lcg(&mut seed)).collect();
                            let mut c = c0.clone();
                            c.push(123.0); // past the end: must stay untouched
                            matmul_isa(isa, m, n, k, &mut c, accumulate, a, b, par);
                            assert_eq!(c[m * n], 123.0, "{isa:?} wrote past the output");
                            let want = naive(m, n, k, &c0, accumulate, a, b);
                            for (idx, (&g, &w)) in c.iter().zip(&want).enumerate() {
                                let tol = 1e-5 * (k as f64).sqrt() + 1e-6;
                                assert!(
                                    (g as f64 - w).abs() <= tol,
                                    "{isa:?} m{m} n{n} k{k} ta{ta} tb{tb} acc{accumulate} par{par} \
                                     at {idx}: got {g}, want {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The serial and thread-split products agree bit for bit (the sum order per element
    /// does not depend on the split), and so do repeated calls.
    /// The AVX2 packing of a transposed `b` equals the portable one, for panels with and
    /// without partial column groups and row blocks.
    #[test]
    fn transposed_packing_paths_agree() {
        if !csipose_cpu::avx2_fma() {
            return;
        }
        let mut seed = 3u64;
        for &(n, k, p0, kc, nr) in &[
            (32, 96, 0, 96, 32),
            (57, 342, 256, 86, 32),
            (13, 20, 3, 17, 16),
            (8, 8, 0, 8, 8),
            (96, 300, 0, 256, 32),
        ] {
            let data: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
            let b = Strided {
                data: &data,
                rs: 1,
                cs: k,
            };
            for j0 in (0..n).step_by(nr) {
                let cols = (n - j0).min(nr);
                let mut want = vec![f32::NAN; kc * nr];
                pack_strided(&mut want, b, j0, p0, cols, kc, nr);
                let mut got = vec![f32::NAN; kc * nr];
                // SAFETY: the CPU supports AVX2 (checked at the top).
                unsafe { pack_transposed_avx2(&mut got, &data, j0 * k + p0, k, cols, kc, nr) };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "n{n} k{k} j0 {j0} at {i}");
                }
            }
        }
    }

    #[test]
    fn split_over_threads_is_bit_identical() {
        let (m, n, k) = (333, 70, 300);
        let mut seed = 3u64;
        let av: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        let bv: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
        let a = Strided {
            data: &av,
            rs: k,
            cs: 1,
        };
        let b = Strided {
            data: &bv,
            rs: 1,
            cs: k,
        };
        for isa in isas() {
            let mut c1 = vec![0.0; m * n];
            let mut c2 = vec![0.0; m * n];
            matmul_isa(isa, m, n, k, &mut c1, false, a, b, false);
            matmul_isa(isa, m, n, k, &mut c2, false, a, b, true);
            assert_eq!(c1, c2, "{isa:?}");
        }
    }

    /// k = 0 overwrites with zeros or leaves `c` alone; empty outputs do nothing.
    #[test]
    fn empty_inner_dimension() {
        for isa in isas() {
            let mut c = vec![1.0f32; 6];
            let e = Strided {
                data: &[],
                rs: 0,
                cs: 0,
            };
            matmul_isa(isa, 2, 3, 0, &mut c, true, e, e, false);
            assert_eq!(c, vec![1.0; 6]);
            matmul_isa(isa, 2, 3, 0, &mut c, false, e, e, false);
            assert_eq!(c, vec![0.0; 6]);
            matmul_isa(isa, 0, 3, 4, &mut c, false, e, e, false);
        }
    }

    #[test]
    #[should_panic(expected = "lhs too short")]
    fn short_lhs_panics() {
        let mut c = vec![0.0f32; 4];
        let a = [0.0f32; 3];
        let b = [0.0f32; 4];
        matmul(
            2,
            2,
            2,
            &mut c,
            false,
            Strided {
                data: &a,
                rs: 2,
                cs: 1,
            },
            Strided {
                data: &b,
                rs: 2,
                cs: 1,
            },
            false,
        );
    }
}
