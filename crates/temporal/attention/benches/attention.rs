//! Bench binary (`cargo bench -p csipose-attention`): prefill time sparse vs dense for
//! N = 64..4096 and decode-step latency for cache lengths up to 8192, for MHA (4 kv heads) and
//! the default GQA grouping (1 kv head). 4 query heads, head_dim 32, window 16, block 32.

use csipose_attention::bench::{
    bench_config, decode_timings, prefill_timings, sparse_kernel_timings, DECODE_LENGTHS,
    PREFILL_LENGTHS,
};

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!("threads: {}", rayon::current_num_threads());
    for kv_heads in [4usize, 1] {
        let cfg = bench_config(kv_heads);
        println!("\nq_heads 4, kv_heads {kv_heads}, head_dim 32, window 16, block 32, causal (prefill into a reused output buffer)");
        println!(
            "{:>6} {:>12} {:>12} {:>8}",
            "N", "sparse ms", "dense ms", "speedup"
        );
        for t in prefill_timings(&cfg, &PREFILL_LENGTHS, 0.5) {
            println!(
                "{:>6} {:>12.4} {:>12.4} {:>7.1}x",
                t.tokens,
                t.sparse_ms,
                t.dense_ms,
                t.dense_ms / t.sparse_ms
            );
        }
        println!(
            "sparse kernels, minimum of 200 interleaved runs:\n{:>6} {:>12} {:>12} {:>8}",
            "N", "row ms", "tile ms", "ratio"
        );
        for t in sparse_kernel_timings(&cfg, &PREFILL_LENGTHS, 200) {
            match t.tile_ms {
                Some(tile) => println!(
                    "{:>6} {:>12.4} {:>12.4} {:>7.2}x",
                    t.tokens,
                    t.rowwise_ms,
                    tile,
                    t.rowwise_ms / tile
                ),
                None => println!("{:>6} {:>12.4} {:>12}", t.tokens, t.rowwise_ms, "n/a"),
            }
        }
        println!("{:>6} {:>12} {:>12}", "cache", "sparse us", "dense us");
        for t in decode_timings(&cfg, &DECODE_LENGTHS, 256) {
            println!(
                "{:>6} {:>12.2} {:>12.2}",
                t.cache_len, t.sparse_us, t.dense_us
            );
        }
    }
}
