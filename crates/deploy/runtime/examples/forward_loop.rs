//! A fixed amount of forward work for comparing builds: `ITERS` forwards of one preset with
//! random weights on one kernel path, timed in `REPS` rounds (prints the minimum and median
//! µs per forward). Deterministic, so `valgrind --tool=callgrind
//! --toggle-collect='*Runtime*forward*'` counts the same instructions on any machine:
//! `cargo run --release -p csipose-runtime --example forward_loop -- micro 8 exact 200 5`
//! (kernel: best, exact, avx2, avx512, vnni16, portable, portable-int16).

#[path = "../tests/support/mod.rs"]
mod support;

use csipose_model::{Model, ModelConfig};
use csipose_runtime::{Kernel, ModelFile, Runtime, OUTPUTS};
use std::hint::black_box;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let preset = a.get(1).map_or("micro", |s| s.as_str());
    let bits: u32 = a.get(2).map_or(8, |s| s.parse().expect("bits: 32, 8 or 4"));
    let kname = a.get(3).map_or("best", |s| s.as_str());
    let iters: usize = a.get(4).map_or(200, |s| s.parse().expect("iters"));
    let reps: usize = a.get(5).map_or(5, |s| s.parse().expect("reps"));
    let kernel = match kname {
        "best" => Some(Kernel::best()),
        "exact" => Some(Kernel::best_exact()),
        "avx2" => Kernel::avx2(),
        "avx512" => Kernel::avx512(),
        "vnni16" => Kernel::avx512_vnni16(),
        "portable" => Some(Kernel::portable()),
        "portable-int16" => Some(Kernel::portable_int16()),
        k => panic!("unknown kernel {k}"),
    };
    let Some(kernel) = kernel else {
        println!("SKIPPED: kernel {kname} not available on this CPU");
        return;
    };
    let cfg = ModelConfig::preset(preset).expect("preset");
    let model = Model::new(cfg.clone());
    let params = support::random_params(&model, 7);
    let (file, _) = support::build(&cfg, &params, bits, true);
    let mf = ModelFile::parse(file.bytes()).expect("parse");
    let rc = mf.config;
    let mut consts = vec![0.0f32; Runtime::consts_len_for(&rc, kernel)];
    let rt = Runtime::new(&mf, kernel, &mut consts).expect("runtime");
    let mut scratch = vec![0.0f32; Runtime::scratch_len(&rc)];
    let frames = support::random_frames(&cfg, 8, 3);
    let fl = rc.frame_len();
    let mut out = [0.0f32; OUTPUTS];
    let mut times = Vec::with_capacity(reps);
    let mut check = 0.0f64;
    for _ in 0..reps {
        let t = std::time::Instant::now();
        for i in 0..iters {
            let x = &frames[(i % 8) * fl..(i % 8 + 1) * fl];
            rt.forward(black_box(x), &mut scratch, &mut out)
                .expect("forward");
            check += out[0] as f64;
        }
        times.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{preset} {bits}-bit {}: min {:.2} µs, median {:.2} µs per forward ({iters} × {reps}; checksum {check:.6})",
        kernel.name(),
        times[0],
        times[reps / 2]
    );
}
