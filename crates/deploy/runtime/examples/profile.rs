//! Per-stage time of the forward for a preset at 32/8/4 bits (random weights):
//! `cargo run --release -p csipose-runtime --features profile --example profile -- micro 8`
//! (a third argument picks the kernel: avx512, avx2, vnni16, portable; default `Kernel::best()`).

#[path = "../tests/support/mod.rs"]
mod support;

use csipose_model::{Model, ModelConfig};
use csipose_runtime::{Kernel, ModelFile, Runtime, OUTPUTS};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("micro", |s| s.as_str());
    let bits: u32 = args.get(2).map_or(8, |s| s.parse().expect("bits"));
    let cfg = ModelConfig::preset(name).expect("preset");
    let model = Model::new(cfg.clone());
    let params = support::random_params(&model, 1);
    let (file, _) = support::build(&cfg, &params, bits, false);
    let mf = ModelFile::parse(file.bytes()).unwrap();
    let rc = mf.config;
    let kernel = match args.get(3).map(|s| s.as_str()) {
        None | Some("auto") => Kernel::best(),
        Some("avx512") => Kernel::avx512().expect("AVX-512"),
        Some("avx2") => Kernel::avx2().expect("AVX2"),
        Some("vnni16") => Kernel::avx512_vnni16().expect("AVX-512 VNNI"),
        Some("portable") => Kernel::portable(),
        Some(k) => panic!("unknown kernel {k}"),
    };
    let mut consts = vec![0.0f32; Runtime::consts_len_for(&rc, kernel)];
    let rt = Runtime::new(&mf, kernel, &mut consts).unwrap();
    let mut scratch = vec![0.0f32; Runtime::scratch_len(&rc)];
    let x = support::random_frames(&cfg, 1, 2);
    let mut out = [0.0f32; OUTPUTS];
    let n = 20000;
    let t = std::time::Instant::now();
    #[cfg(feature = "profile")]
    let mut best = [u64::MAX; 14];
    for _ in 0..n {
        #[cfg(feature = "profile")]
        for c in csipose_runtime::forward::profile::CYCLES.iter() {
            c.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        rt.forward(&x, &mut scratch, &mut out).unwrap();
        #[cfg(feature = "profile")]
        for (b, c) in best
            .iter_mut()
            .zip(csipose_runtime::forward::profile::CYCLES.iter())
        {
            *b = (*b).min(c.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "{name} {bits} bits, {}: {us:.2} us per forward (mean)",
        rt.run_kernel().name()
    );
    // Per stage: the minimum over the runs (robust to preemption on a busy machine), in
    // time-stamp-counter ticks converted with the TSC rate measured here.
    #[cfg(feature = "profile")]
    {
        use csipose_runtime::forward::profile::STAGES;
        let t0 = unsafe { core::arch::x86_64::_rdtsc() };
        let w = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let ghz =
            (unsafe { core::arch::x86_64::_rdtsc() } - t0) as f64 / w.elapsed().as_nanos() as f64;
        let total: u64 = best.iter().sum();
        for (s, v) in STAGES.iter().zip(&best) {
            println!("{s:>13} {:6.2} us", *v as f64 / ghz / 1e3);
        }
        println!(
            "{:>13} {:6.2} us (sum of stage minima)",
            "total",
            total as f64 / ghz / 1e3
        );
    }
}
