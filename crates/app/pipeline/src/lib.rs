//! The library layer under the `csipose` binary: typed functions that commands (and the server)
//! call directly instead of re-parsing argv; the binary only parses and checks flags, builds
//! these option structs and prints what they return.
//!
//! Pose models: training a run ([`train`]), evaluating predictions, baselines, checkpoints and
//! `.csm` files ([`eval`]), quantizing a run into a `.csm` file ([`quantize`]), timing a file
//! through the runtime ([`bench`]), on an MM-Fi split ([`split`]); the datasets they train on
//! ([`simulate`], [`import`]).
//!
//! Activity: reading manifests ([`manifest`]), turning every kind of input into per-frame
//! features ([`sources`], [`activity::load_examples`]), training, evaluating, cross-validating
//! and the nested hyperparameter search that keeps reported numbers free of the choices
//! ([`activity`]).

pub mod activity;
pub mod bench;
pub mod eval;
pub mod import;
pub mod manifest;
pub mod quantize;
pub mod simulate;
pub mod sources;
pub mod split;
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
