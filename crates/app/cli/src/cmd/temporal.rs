//! `csipose temporal bench`: prefill time of the sparse and dense attention backends against
//! sequence length, and decode-step latency against KV-cache length.

use clap::Subcommand;
use csipose_attention::bench::{
    bench_config, decode_timings, prefill_timings, DECODE_LENGTHS, PREFILL_LENGTHS,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TemporalCommand,
}

#[derive(Subcommand)]
enum TemporalCommand {
    /// Time prefill (N = 64..4096) and decode steps (cache 128..8192), sparse vs dense.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Key/value heads (4 query heads, head_dim 32, window 16, block 32): 4 = MHA, 1 = MQA.
    #[arg(long, default_value_t = 4)]
    kv_heads: usize,
    /// Seconds spent per prefill measurement (the median run is reported).
    #[arg(long, default_value_t = 0.5)]
    budget: f64,
    /// Decode steps averaged per cache length.
    #[arg(long, default_value_t = 256)]
    steps: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        TemporalCommand::Bench(a) => bench(a),
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    crate::validate::above("--budget", args.budget, 0.0, 3600.0)?;
    let cfg = bench_config(args.kv_heads);
    cfg.validate()?;
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let bar = ProgressBar::new((PREFILL_LENGTHS.len() + DECODE_LENGTHS.len()) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{msg:>16} {wide_bar} {pos}/{len}",
    )?);
    let mut prefill = Vec::new();
    for &n in &PREFILL_LENGTHS {
        bar.set_message(format!("prefill N={n}"));
        prefill.extend(prefill_timings(&cfg, &[n], args.budget));
        bar.inc(1);
    }
    let mut decode = Vec::new();
    for &len in &DECODE_LENGTHS {
        bar.set_message(format!("decode {len}"));
        decode.extend(decode_timings(&cfg, &[len], args.steps));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let threads = rayon::current_num_threads();
    if args.json {
        let out = json!({
            "config": {
                "q_heads": cfg.q_heads, "kv_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
                "window": cfg.window, "block_size": cfg.block_size, "causal": cfg.causal,
            },
            "threads": threads,
            "prefill": prefill.iter().map(|t| json!({
                "tokens": t.tokens, "sparse_ms": t.sparse_ms, "dense_ms": t.dense_ms,
                "speedup": t.dense_ms / t.sparse_ms, "sparse_alloc_ms": t.sparse_alloc_ms,
            })).collect::<Vec<_>>(),
            "decode": decode.iter().map(|t| json!({
                "cache_len": t.cache_len, "sparse_us": t.sparse_us, "dense_us": t.dense_us,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "q_heads {} kv_heads {} head_dim {} window {} block {} causal, {threads} threads",
            cfg.q_heads, cfg.kv_heads, cfg.head_dim, cfg.window, cfg.block_size
        );
        println!(
            "prefill into a reused output buffer; last column: sparse `forward` allocating it"
        );
        println!(
            "{:>6} {:>11} {:>11} {:>8} {:>14}",
            "N", "sparse ms", "dense ms", "speedup", "sparse+alloc"
        );
        for t in &prefill {
            println!(
                "{:>6} {:>11.4} {:>11.4} {:>7.1}x {:>14.4}",
                t.tokens,
                t.sparse_ms,
                t.dense_ms,
                t.dense_ms / t.sparse_ms,
                t.sparse_alloc_ms
            );
        }
        println!("{:>6} {:>11} {:>11}", "cache", "sparse us", "dense us");
        for t in &decode {
            println!(
                "{:>6} {:>11.2} {:>11.2}",
                t.cache_len, t.sparse_us, t.dense_us
            );
        }
    }
    Ok(())
}
