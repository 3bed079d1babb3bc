//! Ridge baseline timings at MM-Fi's feature size (3 x 114 x 10 = 3420 CSI values per frame,
//! 34 outputs): the primal fit (Gram accumulation + Cholesky), the dual fit, a bare Cholesky,
//! and prediction. Run with `cargo bench -p csipose-baseline --bench ridge`.

use csipose_baseline::linalg::cholesky;
use csipose_baseline::{Lambda, Ridge, Table};
use std::time::Instant;

/// CPU seconds used by this process so far (utime + stime from /proc/self/stat; 0 elsewhere),
/// reported next to wall time because the dev box is shared.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of the stat line are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f`, printing wall and CPU seconds.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, f64) {
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let out = f();
    let wall = t0.elapsed().as_secs_f64();
    println!("{what}: {wall:.2} s wall, {:.2} s CPU", cpu_seconds() - c0);
    (out, wall)
}

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
    let (r, fit) = timed(
        &format!("primal fit, {n} rows x {d} features, fixed alpha"),
        || Ridge::fit(&t, &rows, &Lambda::Fixed(1.0)).unwrap(),
    );
    let (chosen, _) = timed(
        &format!("primal fit, {n} rows x {d} features, alpha chosen on held-out rows"),
        || Ridge::fit(&t, &rows, &Lambda::default()).unwrap(),
    );
    println!("  ({} candidates)", chosen.holdout.len());
    let (p, pt) = timed(&format!("predict {n} rows"), || r.predict(&t, &rows));
    assert_eq!(p.len(), n * m);
    println!("  {:.0} rows/s", n as f64 / pt);

    let mut a: Vec<f64> = (0..d * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            1.0 / (1.0 + i.abs_diff(j) as f64) + if i == j { d as f64 } else { 0.0 }
        })
        .collect();
    let (_, ct) = timed(&format!("cholesky {d} x {d}"), || {
        cholesky(&mut a, d).unwrap()
    });
    println!(
        "  => Gram accumulation ~{:.2} s wall for {n} rows ({:.0} rows/s)",
        fit - ct,
        n as f64 / (fit - ct)
    );

    let n = 1500;
    let t = table(n, d, m);
    let rows: Vec<usize> = (0..n).collect();
    timed(
        &format!("dual fit, {n} rows x {d} features, fixed alpha"),
        || Ridge::fit(&t, &rows, &Lambda::Fixed(1.0)).unwrap(),
    );
}
