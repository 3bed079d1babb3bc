//! `csipose models`: the model family with parameter counts (ours vs published) and FLOPs.

use anyhow::Result;
use csipose_model::{ModelConfig, PRESETS};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Input shape A,S,P the counts are for (default MM-Fi 3,114,10).
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [3usize, 114, 10])]
    pub input: Vec<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let rows: Vec<serde_json::Value> = PRESETS
        .iter()
        .map(|name| {
            let c = ModelConfig::preset_for(name, args.input[0], args.input[1], args.input[2])
                .expect("preset");
            c.validate()
                .map_err(|e| anyhow::anyhow!("--input {:?}: model {name}: {e}", args.input))?;
            let params = c.param_count();
            let published = c.published_count();
            Ok(serde_json::json!({
                "name": c.name,
                "d": c.d,
                "layers": c.layers,
                "heads": c.heads,
                "ffn": c.ffn(),
                "graph_width": c.graph,
                "parameters": params,
                "published_parameters": published,
                "difference": published.map(|p| params as i64 - p as i64),
                "flops_per_forward": c.flops_per_forward(),
            }))
        })
        .collect::<Result<_>>()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<9} {:>4} {:>2} {:>2} {:>5} {:>11} {:>11} {:>6} {:>10}",
        "config", "d", "L", "H", "g", "parameters", "published", "diff", "MFLOP/fwd"
    );
    for r in rows {
        println!(
            "{:<9} {:>4} {:>2} {:>2} {:>5} {:>11} {:>11} {:>+6} {:>10.2}",
            r["name"].as_str().unwrap(),
            r["d"].to_string(),
            r["layers"].to_string(),
            r["heads"].to_string(),
            r["graph_width"]
                .as_u64()
                .map(|g| g.to_string())
                .unwrap_or("-".into()),
            r["parameters"].to_string(),
            r["published_parameters"].to_string(),
            r["difference"].as_i64().unwrap_or(0),
            r["flops_per_forward"].as_u64().unwrap() as f64 / 1e6
        );
    }
    Ok(())
}
