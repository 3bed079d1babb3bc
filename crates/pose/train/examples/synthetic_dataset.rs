//! Writes a synthetic packed dataset (MM-Fi shape [3, 114, 10]) for trying `csipose train`:
//! `cargo run -p csipose-train --example synthetic_dataset -- OUT_DIR [FRAMES]`.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map(String::as_str).unwrap_or("synthetic-data");
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(4000);
    csipose_train::synthetic::write(std::path::Path::new(out), n, [3, 114, 10], 0.1, 1)?;
    println!("{out}: {n} frames");
    Ok(())
}
