//! Row-major matrix products for the classifier's forward and backward passes, with loop
//! orders whose inner loop runs over contiguous memory (so it vectorises).

/// `c[m, n] += a[m, k] * b[k, n]`.
pub fn matmul_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    debug_assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    for i in 0..m {
        let crow = &mut c[i * n..(i + 1) * n];
        for (p, &aip) in a[i * k..(i + 1) * k].iter().enumerate() {
            if aip == 0.0 {
                continue;
            }
            for (cj, bj) in crow.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cj += aip * bj;
            }
        }
    }
}

/// `a[m, k] * b[k, n]`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    matmul_acc(a, b, &mut c, m, k, n);
    c
}

/// `c[k, n] += a[m, k]^T * b[m, n]` (weight gradients: inputs^T * output gradients).
pub fn matmul_at_b_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    debug_assert!(a.len() >= m * k && b.len() >= m * n && c.len() >= k * n);
    for i in 0..m {
        let brow = &b[i * n..(i + 1) * n];
        for (p, &aip) in a[i * k..(i + 1) * k].iter().enumerate() {
            if aip == 0.0 {
                continue;
            }
            for (cj, bj) in c[p * n..(p + 1) * n].iter_mut().zip(brow) {
                *cj += aip * bj;
            }
        }
    }
}

/// `c[m, k] += a[m, n] * b[k, n]^T` (input gradients: output gradients * W^T).
pub fn matmul_a_bt_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    debug_assert!(a.len() >= m * n && b.len() >= k * n && c.len() >= m * k);
    for i in 0..m {
        let arow = &a[i * n..(i + 1) * n];
        for p in 0..k {
            let brow = &b[p * n..(p + 1) * n];
            let mut acc = [0.0f32; 8];
            let mut ca = arow.chunks_exact(8);
            let mut cb = brow.chunks_exact(8);
            for (x, y) in (&mut ca).zip(&mut cb) {
                for l in 0..8 {
                    acc[l] += x[l] * y[l];
                }
            }
            let tail: f32 = ca
                .remainder()
                .iter()
                .zip(cb.remainder())
                .map(|(x, y)| x * y)
                .sum();
            c[i * k + p] += acc.iter().sum::<f32>() + tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }

    #[test]
    fn products_match_naive() {
        let (m, k, n) = (5, 11, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.7).cos()).collect();
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4);
        assert!(close(&matmul(&a, &b, m, k, n), &naive(&a, &b, m, k, n)));
        // a^T b with a [m,k] -> [k, n] where b is [m, n].
        let bm: Vec<f32> = (0..m * n).map(|i| (i as f32 * 0.9).sin()).collect();
        let mut c = vec![0.0; k * n];
        matmul_at_b_acc(&a, &bm, &mut c, m, k, n);
        assert!(close(&c, &naive(&transpose(&a, m, k), &bm, k, m, n)));
        // a b^T with a [m, n], b [k, n] -> [m, k].
        let bk: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.4).cos()).collect();
        let an: Vec<f32> = (0..m * n).map(|i| (i as f32 * 0.2).sin()).collect();
        let mut c = vec![0.0; m * k];
        matmul_a_bt_acc(&an, &bk, &mut c, m, n, k);
        assert!(close(&c, &naive(&an, &transpose(&bk, k, n), m, n, k)));
    }
}
