//! Quick comparison of the two sparse prefill kernels (row by row, query tiles) in the bench
//! setting: `cargo run --release -p csipose-attention --example tile_vs_rows [rounds] [N...]`
//! (`KV_HEADS=4` or `1` for one grouping only).

use csipose_attention::bench::{bench_config, sparse_kernel_timings, PREFILL_LENGTHS};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: rounds, then lengths"))
        .collect();
    let rounds = args.first().copied().unwrap_or(300);
    let lengths = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        PREFILL_LENGTHS.to_vec()
    };
    println!(
        "threads: {}, minimum of {rounds} interleaved runs",
        rayon::current_num_threads()
    );
    let kv: Vec<usize> = match std::env::var("KV_HEADS") {
        Ok(k) => vec![k.parse().expect("KV_HEADS: a number")],
        Err(_) => vec![4, 1],
    };
    for kv_heads in kv {
        println!(
            "kv_heads {kv_heads}\n{:>6} {:>10} {:>10} {:>7}",
            "N", "row ms", "tile ms", "ratio"
        );
        for t in sparse_kernel_timings(&bench_config(kv_heads), &lengths, rounds) {
            let tile = t.tile_ms.unwrap_or(f64::NAN);
            println!(
                "{:>6} {:>10.4} {:>10.4} {:>6.2}x",
                t.tokens,
                t.rowwise_ms,
                tile,
                t.rowwise_ms / tile
            );
        }
    }
}
