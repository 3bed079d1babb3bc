//! The one tiling loop of every Linear kernel and the [`MicroKernel`] trait it drives: a
//! micro-kernel (portable f32, AVX2+FMA, AVX-512, portable int16, AVX-512 VNNI int16)
//! computes one register tile — up to [`MicroKernel::MR`] tokens × a few column vectors of
//! [`MicroKernel::LANES`] columns, summing over every input and applying the fused epilogue
//! (scale, bias, activation, residual) — and [`run`] walks the output with it: the tokens in
//! balanced blocks of at most `MR` (10 → 5 + 5, 17 → 6 + 6 + 5), columns outermost so a strip
//! of the weights stays in L1 across the token blocks, a single token (the head's products)
//! in wide row tiles. Adding an instruction set is one `impl MicroKernel`.

/// A register-tile kernel for one instruction set (and weight kind): its tile shapes and the
/// tile itself. The tile width is chosen per step by [`MicroKernel::vectors`] from
/// [`MicroKernel::WIDTHS`] / [`MicroKernel::WIDTHS_ONE`].
pub(crate) trait MicroKernel {
    /// Everything a tile reads and writes (raw pointers and strides; bounds checked by the
    /// dispatcher that built it).
    type Ctx;
    /// Most tokens (rows of the output) in one tile.
    const MR: usize;
    /// Output columns per vector register (1 for the portable kernels, whose one "vector"
    /// is a column).
    const LANES: usize;
    /// Column vectors a tile of several tokens may span, widest first.
    const WIDTHS: &'static [usize];
    /// Column vectors a tile of a single token may span, widest first.
    const WIDTHS_ONE: &'static [usize];

    /// Column vectors of the next tile when `left` columns of the range remain: the widest
    /// width whose columns all fit, else the narrowest (its vectors masked or partial past
    /// the end, as the kernel handles them).
    #[inline(always)]
    fn vectors(left: usize, one_token: bool) -> usize {
        let ws = if one_token {
            Self::WIDTHS_ONE
        } else {
            Self::WIDTHS
        };
        for &w in ws {
            if w * Self::LANES <= left {
                return w;
            }
        }
        ws[ws.len() - 1]
    }

    /// The tile of tokens `t0..t0 + r` (`1 ≤ r ≤ MR`) × `v` column vectors from column `col`
    /// (`v` one of the widths [`MicroKernel::vectors`] returns).
    ///
    /// # Safety
    /// The CPU supports the kernel's instruction set, and `ctx` covers those tokens and
    /// columns (what the dispatcher in [`crate::kernels`] checks before building it).
    unsafe fn tile(ctx: &Self::Ctx, t0: usize, r: usize, col: usize, v: usize);
}

/// Runs `M`'s tiles over `tokens` tokens × columns `c0..c1`.
///
/// # Safety
/// As [`MicroKernel::tile`] for every tile of that range.
#[inline]
pub(crate) unsafe fn run<M: MicroKernel>(ctx: &M::Ctx, tokens: usize, c0: usize, c1: usize) {
    if tokens == 0 {
        return;
    }
    if tokens == 1 {
        let mut col = c0;
        while col < c1 {
            let v = M::vectors(c1 - col, true);
            // SAFETY: the tile (token 0, columns from `col < c1`) is one of the range's tiles,
            // which the caller's contract covers (features present, in bounds or masked).
            unsafe { M::tile(ctx, 0, 1, col, v) };
            col += v * M::LANES;
        }
        return;
    }
    let nb = tokens.div_ceil(M::MR);
    let (base, extra) = (tokens / nb, tokens % nb);
    let mut col = c0;
    while col < c1 {
        let v = M::vectors(c1 - col, false);
        let mut t0 = 0;
        for b in 0..nb {
            let r = base + usize::from(b < extra);
            // SAFETY: as above: the blocks partition `0..tokens` (`r ≤ MR`, `t0 + r ≤
            // tokens`) and `col < c1`, so this is one of the range's tiles.
            unsafe { M::tile(ctx, t0, r, col, v) };
            t0 += r;
        }
        col += v * M::LANES;
    }
}

/// Expands to a `match` of the run-time row count `$r` (1..=6) onto the const-generic tile
/// `$f::<R, ..>` (the micro-kernels' dispatch from [`MicroKernel::tile`] to their register
/// tiles, whose accumulators are arrays sized at compile time).
macro_rules! by_rows {
    ($r:expr, |$R:ident| $call:expr) => {
        match $r {
            1 => {
                const $R: usize = 1;
                $call
            }
            2 => {
                const $R: usize = 2;
                $call
            }
            3 => {
                const $R: usize = 3;
                $call
            }
            4 => {
                const $R: usize = 4;
                $call
            }
            5 => {
                const $R: usize = 5;
                $call
            }
            _ => {
                const $R: usize = 6;
                $call
            }
        }
    };
}
pub(crate) use by_rows;

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    //! The generic loop walks exactly the tiles each ISA's own loop walked before it became
    //! a [`MicroKernel`] (the reference loops below, as they were), for every token count and
    //! column count the presets and odd shapes reach, so the kernels do the same work; and
    //! every output is covered once. This runs on any x86-64 CPU (it records tiles, it does
    //! not execute AVX-512).
    extern crate std;
    use super::{run, MicroKernel};
    use core::cell::RefCell;
    use core::marker::PhantomData;
    use std::vec::Vec;

    type Tiles = Vec<(usize, usize, usize, usize)>;

    /// `M`'s tile shapes, recording the tiles instead of computing them.
    struct Rec<M>(PhantomData<M>);
    impl<M: MicroKernel> MicroKernel for Rec<M> {
        type Ctx = RefCell<Tiles>;
        const MR: usize = M::MR;
        const LANES: usize = M::LANES;
        const WIDTHS: &'static [usize] = M::WIDTHS;
        const WIDTHS_ONE: &'static [usize] = M::WIDTHS_ONE;
        fn vectors(left: usize, one_token: bool) -> usize {
            M::vectors(left, one_token)
        }
        /// # Safety
        /// None needed: records the tile, touches no other memory.
        unsafe fn tile(c: &RefCell<Tiles>, t0: usize, r: usize, col: usize, v: usize) {
            c.borrow_mut().push((t0, r, col, v));
        }
    }

    fn walk<M: MicroKernel>(n: usize, c0: usize, c1: usize) -> Tiles {
        let rec = RefCell::new(Vec::new());
        // SAFETY: the recording tile touches no memory but the list.
        unsafe { run::<Rec<M>>(&rec, n, c0, c1) };
        rec.into_inner()
    }

    /// Balanced token blocks of at most 6, as every old loop formed them.
    fn blocks(n: usize) -> Vec<(usize, usize)> {
        let nb = n.div_ceil(6);
        let (base, extra) = (n / nb, n % nb);
        let mut t0 = 0;
        (0..nb)
            .map(|b| {
                let r = base + usize::from(b < extra);
                t0 += r;
                (t0 - r, r)
            })
            .collect()
    }

    /// The AVX2 kernel's loop over `0..vec_cols`.
    fn old_avx2(n: usize, vc: usize) -> Tiles {
        let mut out = Vec::new();
        let mut col = 0;
        if n == 1 {
            for (w, step) in [(8, 64), (4, 32), (2, 16)] {
                while col + step <= vc {
                    out.push((0, 1, col, w));
                    col += step;
                }
            }
            if col < vc {
                out.push((0, 1, col, 1));
            }
            return out;
        }
        while col < vc {
            let two = col + 16 <= vc;
            for (t0, r) in blocks(n) {
                out.push((t0, r, col, if two { 2 } else { 1 }));
            }
            col += if two { 16 } else { 8 };
        }
        out
    }

    /// The AVX-512 kernel's loop over `0..cols`.
    fn old_avx512(n: usize, cols: usize) -> Tiles {
        let mut out = Vec::new();
        let mut col = 0;
        if n == 1 {
            while col < cols {
                if col + 64 <= cols {
                    out.push((0, 1, col, 4));
                    col += 64;
                } else {
                    out.push((0, 1, col, 1));
                    col += 16;
                }
            }
            return out;
        }
        while col < cols {
            let left = cols - col;
            let cv = if left > 32 {
                4
            } else if left > 16 {
                2
            } else {
                1
            };
            for (t0, r) in blocks(n) {
                out.push((t0, r, col, cv));
            }
            col += 16 * cv;
        }
        out
    }

    /// The VNNI kernel's loop over the padded columns `0..cp`.
    fn old_vnni(n: usize, cp: usize) -> Tiles {
        let mut out = Vec::new();
        let nb = n.div_ceil(6);
        let rmax = n.div_ceil(nb);
        let cmax = (24 / rmax).clamp(1, 4);
        let nv = cp / 16;
        let mut v0 = 0;
        while v0 < nv {
            let cv = cmax.min(nv - v0);
            for (t0, r) in blocks(n) {
                out.push((t0, r, v0 * 16, cv));
            }
            v0 += cv;
        }
        out
    }

    /// Every (token, column) of `0..n × c0..c1` covered exactly once.
    fn covers_once(t: &Tiles, lanes: usize, n: usize, c0: usize, c1: usize) {
        let mut seen = std::vec![0u8; n * c1];
        for &(t0, r, col, v) in t {
            for tok in t0..t0 + r {
                for c in col..(col + v * lanes).min(c1) {
                    seen[tok * c1 + c] += 1;
                }
            }
        }
        for tok in 0..n {
            assert!(seen[tok * c1 + c0..tok * c1 + c1].iter().all(|&s| s == 1));
        }
    }

    #[test]
    fn generic_loop_walks_the_old_tiles() {
        use crate::avx2::Avx2;
        use crate::avx512::Avx512;
        use crate::vnni::Vnni;
        for n in 1..=40 {
            for cols in 1..=200 {
                let vc = cols / 8 * 8;
                let a = walk::<Avx2<0>>(n, 0, vc);
                assert_eq!(a, old_avx2(n, vc), "avx2 {n}x{cols}");
                covers_once(&a, 8, n, 0, vc);
                let b = walk::<Avx512<1>>(n, 0, cols);
                assert_eq!(b, old_avx512(n, cols), "avx512 {n}x{cols}");
                covers_once(&b, 16, n, 0, cols);
                // The panel kernel (its own widths): every column once, no vector wholly
                // past the columns (it would read past the last panel).
                let pv = walk::<Avx512<{ crate::avx512::P32 }>>(n, 0, cols);
                covers_once(&pv, 16, n, 0, cols);
                assert!(
                    pv.iter()
                        .all(|&(_, r, col, v)| r <= 12 && col + 16 * (v - 1) < cols),
                    "panels {n}x{cols}"
                );
                let cp = cols.div_ceil(16) * 16;
                let v = walk::<Vnni>(n, 0, cp);
                assert_eq!(v, old_vnni(n, cp), "vnni {n}x{cols}");
                covers_once(&v, 16, n, 0, cp);
                // The portable kernels: one row per token, in token order.
                let c0 = vc.min(cols);
                let p = walk::<crate::kernels::Portable>(n, c0, cols);
                let rows: Tiles = if c0 < cols {
                    (0..n).map(|t| (t, 1, c0, cols - c0)).collect()
                } else {
                    Vec::new()
                };
                assert_eq!(p, rows, "portable {n}x{cols}");
                covers_once(&p, 1, n, c0, cols);
            }
        }
    }
}
