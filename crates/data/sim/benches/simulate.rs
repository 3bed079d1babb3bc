//! Simulation speed: frames per second of `Simulator::sequence` for each profile, on one
//! thread and on all threads (rayon), and the projected time of the mmfi-full preset.
//! Run: `cargo bench -p csipose-sim --bench simulate [-- FRAMES_PER_SEQ SEQUENCES]`.

use csipose_sim::{Preset, Profile, SequenceSpec, SimConfig, Simulator};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let frames: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(297);
    let count: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
    let specs: Vec<SequenceSpec> = (0..count)
        .map(|i| SequenceSpec {
            env: 1 + i % 4,
            subject: 1 + (i % 4) * 10 + i / 4 % 10,
            action: 1 + i % 27,
            frames,
        })
        .collect();
    let full = Preset::MmfiFull.plan().frames() as f64;
    println!("threads available: {}", rayon::current_num_threads());
    for profile in Profile::ALL {
        let sim = Simulator::new(SimConfig {
            profile,
            ..SimConfig::default()
        });
        let t = Instant::now();
        let mut n1 = 0;
        for s in specs.iter().take(2) {
            std::hint::black_box(sim.sequence(*s));
            n1 += 1;
        }
        let one = t.elapsed().as_secs_f64() / (n1 * frames) as f64;
        let t = Instant::now();
        let n: usize = specs
            .par_iter()
            .map(|s| sim.sequence(*s).y2d.len() / 34)
            .sum();
        let all = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "{:8} 1 thread: {:8.0} frames/s | {} threads: {:8.0} frames/s | mmfi-full size projected: {:6.1} s",
            profile.name(),
            1.0 / one,
            rayon::current_num_threads(),
            1.0 / all,
            full * all
        );
    }
}
