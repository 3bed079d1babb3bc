//! Ridge baseline timings at MM-Fi's feature size (3 x 114 x 10 = 3420 CSI values per frame,
//! 34 outputs): the primal fit (Gram accumulation + Cholesky), the dual fit, a bare Cholesky,
//! and prediction. Run with `cargo bench -p csipose-baseline --bench ridge`.

use csipose_baseline::linalg::cholesky;
use csipose_baseline::{Lambda, Ridge, Table};
use std::time::Instant;

fn table(n: usize, d: usize, m: usize) -> Table {
    let mut s = 7u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let x: Vec<f32> = (0..n * d).map(|_| rnd()).collect();
    let y: Vec<f32> = (0..n * m).map(|_| rnd()).collect();
    Table {
        x,
        y,
        x_len: d,
        y_len: m,
        groups: vec![],
    }
}

fn main() {
    let (d, m) = (3420, 34);
    println!("rayon threads: {}", rayon::current_num_threads());

    let n = 4000;
    let t = table(n, d, m);
    let rows: Vec<usize> = (0..n).collect();
    let start = Instant::now();
    let r = Ridge::fit(&t, &rows, &Lambda::Fixed(1.0)).unwrap();
    let fit = start.elapsed().as_secs_f64();
    println!("primal fit, {n} rows x {d} features, fixed alpha: {fit:.2} s");

    let start = Instant::now();
    let chosen = Ridge::fit(&t, &rows, &Lambda::default()).unwrap();
    println!(
        "primal fit, {n} rows x {d} features, alpha chosen among {} on held-out rows: {:.2} s",
        chosen.holdout.len(),
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let p = r.predict(&t, &rows);
    let pt = start.elapsed().as_secs_f64();
    assert_eq!(p.len(), n * m);
    println!("predict {n} rows: {pt:.3} s ({:.0} rows/s)", n as f64 / pt);

    let mut a: Vec<f64> = (0..d * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            1.0 / (1.0 + i.abs_diff(j) as f64) + if i == j { d as f64 } else { 0.0 }
        })
        .collect();
    let start = Instant::now();
    cholesky(&mut a, d).unwrap();
    let ct = start.elapsed().as_secs_f64();
    println!("cholesky {d} x {d}: {ct:.2} s");
    println!(
        "=> Gram accumulation ~{:.2} s for {n} rows ({:.0} rows/s)",
        fit - ct,
        n as f64 / (fit - ct)
    );

    let n = 1500;
    let t = table(n, d, m);
    let rows: Vec<usize> = (0..n).collect();
    let start = Instant::now();
    Ridge::fit(&t, &rows, &Lambda::Fixed(1.0)).unwrap();
    println!(
        "dual fit, {n} rows x {d} features, fixed alpha: {:.2} s",
        start.elapsed().as_secs_f64()
    );
}
