//! Forward and backward passes of a preset on random data, single-threaded, for profilers:
//! `valgrind --tool=callgrind target/release/examples/train_step flagship 32 2` counts the
//! instructions of 2 passes at batch 32 (one trainer shard's share of a batch-64 step on two
//! threads), and prints the matrix-product FLOPs they did.

use csipose_model::layers::with_single_threaded;
use csipose_model::{Model, ModelConfig, Rng, Workspace, OUTPUTS};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "flagship".into());
    let batch: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    let passes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let Some(cfg) = ModelConfig::preset(&name) else {
        eprintln!("unknown preset {name}");
        std::process::exit(2);
    };
    let m = Model::new(cfg.clone());
    let params = m.init_params(1);
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..batch * cfg.frame_len())
        .map(|_| rng.normal() as f32)
        .collect();
    let dout: Vec<f32> = (0..batch * OUTPUTS).map(|_| rng.normal() as f32).collect();
    let mut ws = Workspace::default();
    let mut grads = vec![0.0f32; params.len()];
    with_single_threaded(|| {
        for i in 0..passes {
            m.forward(&params, &x, batch, Some(i as u64), &mut ws);
            m.backward(&params, batch, &dout, &mut grads, &mut ws);
        }
    });
    let flops = 3 * cfg.flops_per_forward() * (batch * passes) as u64;
    println!(
        "{name}: {passes} passes at batch {batch}, {flops} matrix-product FLOPs (3 x forward)"
    );
}
