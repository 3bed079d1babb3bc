//! The little dense linear algebra ridge regression needs: Cholesky factorisation of a
//! symmetric positive-definite matrix and solves with many right-hand sides (row-major `f64`).

use rayon::prelude::*;

/// Below this many multiply-adds a column update runs on one thread.
const PARALLEL_WORK: usize = 1 << 15;

/// Dot product with four independent partial sums (so the compiler can vectorise it).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// The four dot products `a0.b0, a0.b1, a1.b0, a1.b1` in one pass (each load used twice).
fn dot2x2(a0: &[f64], a1: &[f64], b0: &[f64], b1: &[f64]) -> [f64; 4] {
    let n = a0.len();
    let (a1, b0, b1) = (&a1[..n], &b0[..n], &b1[..n]);
    let mut acc = [[0.0f64; 4]; 4];
    let full = n - n % 4;
    for k in (0..full).step_by(4) {
        for l in 0..4 {
            let (x0, x1, y0, y1) = (a0[k + l], a1[k + l], b0[k + l], b1[k + l]);
            acc[0][l] += x0 * y0;
            acc[1][l] += x0 * y1;
            acc[2][l] += x1 * y0;
            acc[3][l] += x1 * y1;
        }
    }
    let mut out = [0.0; 4];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = (a[0] + a[1]) + (a[2] + a[3]);
    }
    for k in full..n {
        out[0] += a0[k] * b0[k];
        out[1] += a0[k] * b1[k];
        out[2] += a1[k] * b0[k];
        out[3] += a1[k] * b1[k];
    }
    out
}

/// Rows of the output handled together (and the column tile width) in [`syrk_lower`].
const TILE: usize = 32;

/// Symmetric rank-k update of a lower triangle: for `0 <= j <= i < count`,
/// `c[(off + i) * ldc + off + j] += alpha * dot(v_i, v_j)`, where `v_i = v[i * len..(i + 1) * len]`.
/// Tiled for cache reuse and parallel over blocks of output rows.
pub fn syrk_lower(
    c: &mut [f64],
    ldc: usize,
    off: usize,
    v: &[f64],
    count: usize,
    len: usize,
    alpha: f64,
) {
    assert!(v.len() >= count * len && c.len() >= (off + count) * ldc && off + count <= ldc);
    let tail = &mut c[off * ldc..(off + count) * ldc];
    let vec = |i: usize| &v[i * len..(i + 1) * len];
    let work = |(bi, block): (usize, &mut [f64])| {
        let i0 = bi * TILE;
        let rows = block.len() / ldc;
        for j0 in (0..i0 + rows).step_by(TILE) {
            // Pairs of output rows share the loads of each column vector (a 2x2 kernel).
            let mut r = 0;
            while r < rows {
                let i = i0 + r;
                let end = (j0 + TILE).min(i + 1);
                if r + 1 < rows {
                    let (vi0, vi1) = (vec(i), vec(i + 1));
                    let mut j = j0;
                    while j + 1 < end {
                        let d = dot2x2(vi0, vi1, vec(j), vec(j + 1));
                        block[r * ldc + off + j] += alpha * d[0];
                        block[r * ldc + off + j + 1] += alpha * d[1];
                        block[(r + 1) * ldc + off + j] += alpha * d[2];
                        block[(r + 1) * ldc + off + j + 1] += alpha * d[3];
                        j += 2;
                    }
                    // Row i's remaining column (if any), then row i + 1's up to its diagonal.
                    for jj in j..end {
                        block[r * ldc + off + jj] += alpha * dot(vi0, vec(jj));
                    }
                    for jj in j..(j0 + TILE).min(i + 2) {
                        block[(r + 1) * ldc + off + jj] += alpha * dot(vi1, vec(jj));
                    }
                    r += 2;
                } else {
                    let vi = vec(i);
                    for jj in j0..end {
                        block[r * ldc + off + jj] += alpha * dot(vi, vec(jj));
                    }
                    r += 1;
                }
            }
        }
    };
    if count * count * len >= PARALLEL_WORK {
        tail.par_chunks_mut(TILE * ldc).enumerate().for_each(work);
    } else {
        tail.chunks_mut(TILE * ldc).enumerate().for_each(work);
    }
}

/// Columns factorised per step of the blocked [`cholesky`].
const BLOCK: usize = 64;

/// Factorises `a` (`n x n`, row-major, symmetric positive definite; only the lower triangle is
/// read) in place into `L` with `a = L L^T` (lower triangle; the upper is zeroed).
/// Right-looking and blocked: factor a diagonal block, solve the panel below it, update the
/// trailing matrix with [`syrk_lower`]. Errors name the first pivot that is not positive.
pub fn cholesky(a: &mut [f64], n: usize) -> Result<(), String> {
    assert_eq!(a.len(), n * n);
    let mut panel = Vec::new();
    for k0 in (0..n).step_by(BLOCK) {
        let k1 = (k0 + BLOCK).min(n);
        // 1. The diagonal block, unblocked, over columns k0..k1.
        for j in k0..k1 {
            let row_j = &mut a[j * n..(j + 1) * n];
            let d = row_j[j] - dot(&row_j[k0..j], &row_j[k0..j]);
            if !(d.is_finite() && d > 0.0) {
                return Err(format!(
                    "matrix is not positive definite (pivot {j} is {d})"
                ));
            }
            row_j[j] = d.sqrt();
            for i in j + 1..k1 {
                let (upto, from_i) = a.split_at_mut(i * n);
                let lj = &upto[j * n + k0..j * n + j + 1];
                let row_i = &mut from_i[..n];
                let s = dot(&row_i[k0..j], &lj[..j - k0]);
                row_i[j] = (row_i[j] - s) / lj[j - k0];
            }
        }
        if k1 == n {
            break;
        }
        // 2. The panel below: each row i >= k1 solves against the diagonal block.
        let (upto, below) = a.split_at_mut(k1 * n);
        let diag = &upto[k0 * n..];
        let solve_row = |row_i: &mut [f64]| {
            for j in k0..k1 {
                let lj = &diag[(j - k0) * n..(j - k0) * n + n];
                let s = dot(&row_i[k0..j], &lj[k0..j]);
                row_i[j] = (row_i[j] - s) / lj[j];
            }
        };
        if (n - k1) * BLOCK * BLOCK >= PARALLEL_WORK {
            below.par_chunks_exact_mut(n).for_each(solve_row);
        } else {
            below.chunks_exact_mut(n).for_each(solve_row);
        }
        // 3. Trailing update: A22 -= L21 L21^T (lower triangle).
        let w = k1 - k0;
        panel.clear();
        for row in below.chunks_exact(n) {
            panel.extend_from_slice(&row[k0..k1]);
        }
        syrk_lower(a, n, k1, &panel, n - k1, w, -1.0);
    }
    for i in 0..n {
        for v in &mut a[i * n + i + 1..(i + 1) * n] {
            *v = 0.0;
        }
    }
    Ok(())
}

/// Solves `L L^T X = B` for `X` (`n x m`, row-major) given the factor from [`cholesky`];
/// `b` is overwritten with `X`.
pub fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], m: usize) {
    assert_eq!(b.len(), n * m);
    // forward: L Z = B
    for i in 0..n {
        for k in 0..i {
            let lik = l[i * n + k];
            if lik != 0.0 {
                let (head, tail) = b.split_at_mut(i * m);
                let src = &head[k * m..(k + 1) * m];
                for (t, s) in tail[..m].iter_mut().zip(src) {
                    *t -= lik * s;
                }
            }
        }
        let d = l[i * n + i];
        for t in &mut b[i * m..(i + 1) * m] {
            *t /= d;
        }
    }
    // backward: L^T X = Z
    for i in (0..n).rev() {
        for k in i + 1..n {
            let lki = l[k * n + i];
            if lki != 0.0 {
                let (head, tail) = b.split_at_mut(k * m);
                let dst = &mut head[i * m..(i + 1) * m];
                for (t, s) in dst.iter_mut().zip(&tail[..m]) {
                    *t -= lki * s;
                }
            }
        }
        let d = l[i * n + i];
        for t in &mut b[i * m..(i + 1) * m] {
            *t /= d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_by_hand() {
        let a: Vec<f64> = (1..=7).map(f64::from).collect();
        assert_eq!(dot(&a, &a), 140.0);
        assert_eq!(dot(&a[..3], &[1.0, -1.0, 2.0]), 5.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn factor_and_solve_by_hand() {
        // A = [[4, 2], [2, 3]] = L L^T with L = [[2, 0], [1, sqrt 2]].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        cholesky(&mut a, 2).unwrap();
        assert_eq!(a[0], 2.0);
        assert_eq!(a[1], 0.0);
        assert_eq!(a[2], 1.0);
        assert!((a[3] - 2f64.sqrt()).abs() < 1e-15);
        // A x = [8, 7] => x = [1.25, 1.5]; second column A x = [2, 2] => x = [0.25, 0.5].
        let mut b = vec![8.0, 2.0, 7.0, 2.0];
        cholesky_solve(&a, 2, &mut b, 2);
        for (got, want) in b.iter().zip([1.25, 0.25, 1.5, 0.5]) {
            assert!((got - want).abs() < 1e-14, "{b:?}");
        }
    }

    #[test]
    fn larger_system_round_trips() {
        let n = 30;
        // A = M M^T + I is SPD.
        let m: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7919) % 23) as f64 / 11.0 - 1.0)
            .collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let x: Vec<f64> = (0..n).map(|i| i as f64 - 10.0).collect();
        let mut b: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|k| a[i * n + k] * x[k]).sum())
            .collect();
        let mut l = a.clone();
        cholesky(&mut l, n).unwrap();
        cholesky_solve(&l, n, &mut b, 1);
        for (got, want) in b.iter().zip(&x) {
            assert!((got - want).abs() < 1e-8, "{got} vs {want}");
        }
    }

    #[test]
    fn blocked_cholesky_matches_the_definition() {
        // n spans several blocks and a partial one; check L L^T = A.
        for n in [1usize, 63, 64, 65, 150] {
            let m: Vec<f64> = (0..n * n)
                .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
                .collect();
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = dot(&m[i * n..(i + 1) * n], &m[j * n..(j + 1) * n])
                        + if i == j { 0.5 } else { 0.0 };
                }
            }
            let mut l = a.clone();
            cholesky(&mut l, n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let v = dot(&l[i * n..(i + 1) * n], &l[j * n..(j + 1) * n]);
                    assert!(
                        (v - a[i * n + j]).abs() < 1e-9 * (1.0 + a[i * n + j].abs()),
                        "n {n} ({i},{j})"
                    );
                    if j > i {
                        assert_eq!(l[i * n + j], 0.0);
                    }
                }
            }
        }
    }

    #[test]
    fn syrk_lower_by_hand() {
        // vectors (1, 2), (3, 4), (5, 6) into the lower triangle of a 4x4 at offset 1.
        let mut c = vec![0.0; 16];
        syrk_lower(&mut c, 4, 1, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2, 2.0);
        assert_eq!(
            c,
            [
                0.0, 0.0, 0.0, 0.0, //
                0.0, 10.0, 0.0, 0.0, //
                0.0, 22.0, 50.0, 0.0, //
                0.0, 34.0, 78.0, 122.0,
            ]
        );
    }

    #[test]
    fn syrk_lower_matches_naive_on_odd_sizes() {
        for (count, len, off, ldc) in [(1, 3, 0, 1), (5, 7, 2, 9), (33, 5, 1, 40), (70, 9, 3, 75)] {
            let v: Vec<f64> = (0..count * len)
                .map(|i| ((i * 37) % 17) as f64 - 8.0)
                .collect();
            let mut c: Vec<f64> = (0..ldc * ldc).map(|i| (i % 5) as f64).collect();
            let mut want = c.clone();
            for i in 0..count {
                for j in 0..=i {
                    let d: f64 = (0..len).map(|k| v[i * len + k] * v[j * len + k]).sum();
                    want[(off + i) * ldc + off + j] += -0.5 * d;
                }
            }
            syrk_lower(&mut c, ldc, off, &v, count, len, -0.5);
            assert_eq!(c, want, "count {count} len {len}");
        }
    }

    #[test]
    fn not_positive_definite_is_an_error() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let e = cholesky(&mut a, 2).unwrap_err();
        assert!(e.contains("pivot 1"), "{e}");
    }
}
