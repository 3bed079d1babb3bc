//! Checkpoints in safetensors, written atomically (temporary name, fsync, rename).
//!
//! Tensor names (PyTorch style, weights `[out, in]`):
//! - `<name>`: the EMA weights, what evaluation and prediction use, e.g. `embed.weight`,
//!   `pos_embed`, `encoder.layers.0.self_attn.in_proj_weight`, `….out_proj.weight`,
//!   `….linear1.weight`, `….norm1.weight`, `pool.score.weight`, `head.0.weight`,
//!   `head.3.weight`, `graph.joint_embed`, `graph.input.weight`, `graph.layers.0.weight`,
//!   `graph.output.weight` (and the matching `.bias`);
//! - `train.weight.<name>`: the raw (non-EMA) weights;
//! - `train.exp_avg.<name>`, `train.exp_avg_sq.<name>`: AdamW moments.
//!
//! `__metadata__` holds JSON strings: `format` (`csipose-checkpoint-1`), `model`
//! (the [`ModelConfig`]), `options` ([`TrainOptions`]), `schedule`, `state` ([`TrainState`],
//! epoch, step, RNG, history) and `adam_step`.
//!
//! Loading never panics and stays possible whatever the numbers: JSON cannot hold NaN or ±inf
//! (serde_json writes them as `null`), so every float in the metadata reads `null` back as NaN
//! ([`nan_f32`], [`nan_f64`]); validation then refuses such options with a message. A file
//! that is cut short or damaged is an error naming the file, its size and what does not fit.

use crate::optim::{AdamW, Schedule};
use crate::trainer::{TrainOptions, TrainState, Trainer};
use anyhow::{bail, Context, Result};
use csipose_model::{Model, ModelConfig};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

const FORMAT: &str = "csipose-checkpoint-1";

pub use csipose_optim::{nan_f32, nan_f64};

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the trainer's full state to `path` atomically.
pub fn save(path: &Path, t: &Trainer) -> Result<()> {
    let layout = &t.model.layout;
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, buf) in [
        ("", &t.ema),
        ("train.weight.", &t.params),
        ("train.exp_avg.", &t.opt.m),
        ("train.exp_avg_sq.", &t.opt.v),
    ] {
        for ts in &layout.tensors {
            owned.push((
                format!("{prefix}{}", ts.name),
                ts.shape.clone(),
                bytes(&buf[ts.offset..ts.offset + ts.len]),
            ));
        }
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("model".to_string(), serde_json::to_string(&t.model.cfg)?);
    meta.insert("options".to_string(), serde_json::to_string(&t.opts)?);
    meta.insert("schedule".to_string(), serde_json::to_string(&t.schedule)?);
    meta.insert("state".to_string(), serde_json::to_string(&t.state)?);
    meta.insert("adam_step".to_string(), t.opt.t.to_string());
    let data = safetensors::tensor::serialize(views, &Some(meta))?;
    let mut f = csipose_npy::AtomicFile::create(path)?;
    f.write_all(&data)
        .with_context(|| format!("writing {}", path.display()))?;
    f.commit()?;
    Ok(())
}

fn read_tensor(
    st: &SafeTensors,
    path: &Path,
    name: &str,
    len: usize,
    out: &mut [f32],
) -> Result<()> {
    let t = st
        .tensor(name)
        .with_context(|| format!("{}: tensor {name} missing", path.display()))?;
    if t.dtype() != Dtype::F32 || t.data().len() != len * 4 {
        bail!(
            "{}: tensor {name} is {:?} {:?}, expected F32 with {len} values",
            path.display(),
            t.dtype(),
            t.shape()
        );
    }
    for (o, c) in out.iter_mut().zip(t.data().chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

fn meta_json<T: serde::de::DeserializeOwned>(
    m: &HashMap<String, String>,
    path: &Path,
    key: &str,
) -> Result<T> {
    let s = m
        .get(key)
        .with_context(|| format!("{}: metadata {key} missing", path.display()))?;
    serde_json::from_str(s)
        .with_context(|| format!("{}: metadata {key} is not valid", path.display()))
}

/// The `model` metadata, checked against the architecture's bounds before anything is sized
/// from it.
fn model_config(m: &HashMap<String, String>, path: &Path) -> Result<ModelConfig> {
    let cfg: ModelConfig = meta_json(m, path, "model")?;
    if let Err(e) = cfg.validate() {
        bail!("{}: metadata model: {e}", path.display());
    }
    Ok(cfg)
}

fn open(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Checks the file's framing before safetensors parses it, so that a truncated or damaged
/// file is reported with its size and what does not fit (safetensors' own errors are terse:
/// "InvalidHeaderLength", "MetadataIncompleteBuffer").
fn check_framing(path: &Path, raw: &[u8]) -> Result<()> {
    let len = raw.len();
    let damaged = |what: String| {
        anyhow::anyhow!(
            "{}: truncated or damaged checkpoint ({len} bytes): {what}",
            path.display()
        )
    };
    if len < 8 {
        return Err(damaged(
            "shorter than the 8-byte header length that starts a safetensors file".into(),
        ));
    }
    let n = u64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
    if n > (len - 8) as u64 {
        return Err(damaged(format!(
            "the header length says {n} bytes of header follow, but only {} do",
            len - 8
        )));
    }
    let header = &raw[8..8 + n as usize];
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(header) else {
        return Err(damaged(format!("the {n}-byte header is not valid JSON")));
    };
    let end = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "__metadata__")
                .filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let want = 8 + n + end;
    if want != len as u64 {
        return Err(damaged(format!(
            "the header describes {want} bytes ({} of tensor data), the file has {len}{}",
            end,
            if (len as u64) < want {
                " (cut short)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

fn metadata(path: &Path, st_bytes: &[u8]) -> Result<HashMap<String, String>> {
    check_framing(path, st_bytes)?;
    let (_, m) = SafeTensors::read_metadata(st_bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: damaged checkpoint ({} bytes): {e:?}",
            path.display(),
            st_bytes.len()
        )
    })?;
    let m = m
        .metadata()
        .clone()
        .with_context(|| format!("{}: no csipose metadata", path.display()))?;
    if m.get("format").map(String::as_str) != Some(FORMAT) {
        bail!("{}: not a {FORMAT} checkpoint", path.display());
    }
    Ok(m)
}

/// Loads a full trainer (for `--resume`).
pub fn load(path: &Path) -> Result<Trainer> {
    let raw = open(path)?;
    let m = metadata(path, &raw)?;
    let cfg = model_config(&m, path)?;
    let opts: TrainOptions = meta_json(&m, path, "options")?;
    let schedule: Schedule = meta_json(&m, path, "schedule")?;
    let state: TrainState = meta_json(&m, path, "state")?;
    let adam_step: u64 = meta_json(&m, path, "adam_step")?;
    let st = SafeTensors::deserialize(&raw)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let layout = cfg.layout();
    let n = layout.total;
    let (mut ema, mut params) = (vec![0.0; n], vec![0.0; n]);
    let mut opt = AdamW::new(&layout, opts.weight_decay);
    opt.t = adam_step;
    for ts in &layout.tensors {
        let r = ts.offset..ts.offset + ts.len;
        read_tensor(&st, path, &ts.name, ts.len, &mut ema[r.clone()])?;
        read_tensor(
            &st,
            path,
            &format!("train.weight.{}", ts.name),
            ts.len,
            &mut params[r.clone()],
        )?;
        read_tensor(
            &st,
            path,
            &format!("train.exp_avg.{}", ts.name),
            ts.len,
            &mut opt.m[r.clone()],
        )?;
        read_tensor(
            &st,
            path,
            &format!("train.exp_avg_sq.{}", ts.name),
            ts.len,
            &mut opt.v[r],
        )?;
    }
    Ok(Trainer::from_parts(
        opts, cfg, params, ema, opt, schedule, state,
    ))
}

/// Loads only the model and its EMA weights (for evaluation and prediction).
pub fn load_model(path: &Path) -> Result<(Model, Vec<f32>)> {
    let raw = open(path)?;
    let m = metadata(path, &raw)?;
    let cfg = model_config(&m, path)?;
    let st = SafeTensors::deserialize(&raw)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let model = Model::new(cfg);
    let mut w = vec![0.0; model.layout.total];
    for ts in &model.layout.tensors {
        read_tensor(
            &st,
            path,
            &ts.name,
            ts.len,
            &mut w[ts.offset..ts.offset + ts.len],
        )?;
    }
    Ok((model, w))
}
