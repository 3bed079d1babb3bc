//! One module per subcommand.

pub mod activity;
pub mod bench;
pub mod capture;
pub mod demo;
pub mod eval;
pub mod frontier;
pub mod import_mmfi;
pub mod models;
pub mod predict;
pub mod presence;
pub mod quantize;
pub mod replay;
pub mod simulate;
pub mod split;
pub mod temporal;
pub mod train;

/// Writes `value` as pretty JSON (with a final newline) to `path` atomically: a temporary name,
/// then a rename, so an interrupted command leaves no half-written report.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut f = csipose_npy::AtomicFile::create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    serde_json::to_writer_pretty(&mut f, value)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(b"\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
