//! Weight-only symmetric quantization of the pose models: the Linear weight matrices become
//! int8 (codes −127…127) or int4 (codes −7…7) with one scale per tensor or per output channel,
//! chosen by max-abs or by an MSE search over clipping ratios; everything else stays f32.
//! Also the exact dequantisation back to the training layout, fake quantisation with the
//! straight-through-estimator mask that quantization-aware training uses, and the `.csm`
//! model file (written through [`csipose_runtime::format::encode`], read back by
//! [`from_csm`]).
//!
//! Arithmetic contract: a dequantised weight is `q as f32 * scale` (one f32 multiply), the
//! same expression as [`csipose_runtime::TensorView::get`], so the training engine's forward on
//! [`Quantized::dequantize`] is what the runtime must reproduce.

use anyhow::{bail, Context, Result};
use csipose_model::config::Layout;
use csipose_model::ModelConfig;
use csipose_runtime::format::{self, Config, ModelFile, TensorData, TensorIn};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Storage precision of the Linear weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bits {
    /// No quantization (the fp32 `.csm` variant).
    F32,
    /// int8, symmetric codes −127…127.
    I8,
    /// int4, symmetric codes −7…7.
    I4,
}

impl Bits {
    /// From a bit count (32, 8 or 4).
    pub fn from_count(bits: u32) -> Option<Bits> {
        match bits {
            32 => Some(Bits::F32),
            8 => Some(Bits::I8),
            4 => Some(Bits::I4),
            _ => None,
        }
    }

    /// Largest code magnitude; `None` for f32.
    pub fn qmax(self) -> Option<f32> {
        match self {
            Bits::F32 => None,
            Bits::I8 => Some(127.0),
            Bits::I4 => Some(7.0),
        }
    }

    /// `fp32`, `int8` or `int4`.
    pub fn name(self) -> &'static str {
        match self {
            Bits::F32 => "fp32",
            Bits::I8 => "int8",
            Bits::I4 => "int4",
        }
    }
}

/// How a scale is chosen for a group of weights (a tensor or one output channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScaleRule {
    /// `scale = max|w| / qmax`: nothing is clipped.
    MaxAbs,
    /// The clipping ratio α ∈ {1.00, 0.98, …, 0.40} whose `scale = α·max|w| / qmax` gives the
    /// smallest squared rounding-plus-clipping error (α = 1 wins ties).
    Mse,
}

/// Clipping ratios tried by [`ScaleRule::Mse`], largest first.
pub const MSE_RATIOS: usize = 31;

fn mse_ratio(k: usize) -> f32 {
    1.0 - 0.02 * k as f32
}

/// Linear weights kept f32 by default: the graph head's output layer (`[2, g]`, 112 values
/// in micro). Quantizing it alone costs micro 2.8 torso-PCK@20 points at int4 per channel
/// (BENCHMARKS.md); keeping it costs 392 bytes. Applies only to models that have it.
pub const DEFAULT_KEEP_F32: [&str; 1] = ["graph.output.weight"];

/// [`DEFAULT_KEEP_F32`] restricted to the tensors `cfg` has.
pub fn default_keep_f32(cfg: &ModelConfig) -> Vec<String> {
    let layout = cfg.layout();
    DEFAULT_KEEP_F32
        .iter()
        .filter(|n| layout.get(n).is_some())
        .map(|n| n.to_string())
        .collect()
}

/// What to quantize and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub bits: Bits,
    /// One scale per output channel instead of one per tensor.
    pub per_channel: bool,
    pub scale: ScaleRule,
    /// Linear weights (by name) kept f32 in addition to the tensors the format keeps f32
    /// (biases, LayerNorms, `pos_embed`, `graph.joint_embed`).
    #[serde(default)]
    pub keep_f32: Vec<String>,
}

impl Spec {
    /// Max-abs scales, nothing extra kept f32.
    pub fn new(bits: Bits, per_channel: bool) -> Spec {
        Spec {
            bits,
            per_channel,
            scale: ScaleRule::MaxAbs,
            keep_f32: Vec::new(),
        }
    }

    /// A short label such as `int4 per-channel mse`.
    pub fn label(&self) -> String {
        if self.bits == Bits::F32 {
            return "fp32".into();
        }
        let mut s = format!(
            "{} {}{}",
            self.bits.name(),
            if self.per_channel {
                "per-channel"
            } else {
                "per-tensor"
            },
            if self.scale == ScaleRule::Mse {
                " mse"
            } else {
                ""
            }
        );
        if !self.keep_f32.is_empty() {
            s.push_str(&format!(" (f32: {})", self.keep_f32.join(", ")));
        }
        s
    }

    /// Checks that every name in `keep_f32` is a Linear weight of `cfg`.
    pub fn check(&self, cfg: &ModelConfig) -> Result<()> {
        let layout = cfg.layout();
        for n in &self.keep_f32 {
            match layout.get(n) {
                Some(t) if t.linear => {}
                Some(_) => bail!("{n} is not a Linear weight (it is f32 anyway)"),
                None => bail!(
                    "{n} is not a tensor of {} (Linear weights: {})",
                    cfg.name,
                    layout
                        .tensors
                        .iter()
                        .filter(|t| t.linear)
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        Ok(())
    }
}

/// One Linear weight in the training layout: `out` rows of `inp` values at `offset`.
#[derive(Clone, Debug, PartialEq)]
struct Linear {
    offset: usize,
    out: usize,
    inp: usize,
}

fn quantized_linears(layout: &Layout, spec: &Spec) -> Vec<Linear> {
    if spec.bits == Bits::F32 {
        return Vec::new();
    }
    layout
        .tensors
        .iter()
        .filter(|t| t.linear && !spec.keep_f32.contains(&t.name))
        .map(|t| Linear {
            offset: t.offset,
            out: t.shape[0],
            inp: t.shape[1],
        })
        .collect()
}

/// `s` moved (by at most a few ulps) to a fixed point of `s ↦ (qmax·s)/qmax` in f32, so that
/// quantizing already-quantized weights finds the same scale again (fake quantization is
/// idempotent bit for bit).
fn canonical(mut s: f32, qmax: f32) -> f32 {
    for _ in 0..8 {
        let n = (qmax * s) / qmax;
        if n == s {
            break;
        }
        s = n;
    }
    s
}

/// The code of `w` at scale `s` (round half away from zero, clamped to ±qmax).
#[inline]
fn code(w: f32, s: f32, qmax: f32) -> i8 {
    if s == 0.0 {
        0
    } else {
        (w / s).round().clamp(-qmax, qmax) as i8
    }
}

/// Whether the clamp to ±qmax (not just rounding) decides the code of `w` at scale `s > 0`.
#[inline]
pub fn clipped(w: f32, s: f32, qmax: f32) -> bool {
    (w / s).abs() >= qmax + 0.5
}

fn max_abs(w: &[f32]) -> f32 {
    w.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Squared quantization error of `w` at scale `s`, for the scale search only: it rounds half
/// to even with the 1.5·2²³ trick (no libm call, vectorisable), so it may differ from [`code`]
/// on exact ties, which moves the error by a negligible amount and never the codes written.
fn sq_error(w: &[f32], s: f32, qmax: f32) -> f64 {
    const MAGIC: f32 = 12_582_912.0;
    let inv = 1.0 / s;
    let mut acc = [0.0f32; 8];
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let q = ((v * inv).clamp(-qmax, qmax) + MAGIC) - MAGIC;
            let e = v - q * s;
            *a += e * e;
        }
    }
    let mut total: f64 = acc.iter().map(|&a| a as f64).sum();
    for &v in chunks.remainder() {
        let q = ((v * inv).clamp(-qmax, qmax) + MAGIC) - MAGIC;
        let e = v - q * s;
        total += (e * e) as f64;
    }
    total
}

/// The scale of one group of weights under `rule`.
pub fn choose_scale(w: &[f32], qmax: f32, rule: ScaleRule) -> f32 {
    let m = max_abs(w);
    if m == 0.0 || !m.is_finite() {
        return 0.0;
    }
    let base = canonical(m / qmax, qmax);
    match rule {
        ScaleRule::MaxAbs => base,
        ScaleRule::Mse => {
            let mut best = (sq_error(w, base, qmax), base);
            for k in 1..MSE_RATIOS {
                let s = canonical((mse_ratio(k) * m) / qmax, qmax);
                let e = sq_error(w, s, qmax);
                if e < best.0 {
                    best = (e, s);
                }
            }
            best.1
        }
    }
}

/// Codes and scales of one `[out, inp]` weight (training layout, codes in the same order).
fn quantize_linear(w: &[f32], out: usize, inp: usize, spec: &Spec) -> (Vec<i8>, Vec<f32>) {
    let qmax = spec.bits.qmax().expect("quantized");
    let scales: Vec<f32> = if spec.per_channel {
        w.chunks_exact(inp)
            .map(|r| choose_scale(r, qmax, spec.scale))
            .collect()
    } else {
        vec![choose_scale(w, qmax, spec.scale)]
    };
    let mut codes = vec![0i8; out * inp];
    for (o, (cr, wr)) in codes
        .chunks_exact_mut(inp)
        .zip(w.chunks_exact(inp))
        .enumerate()
    {
        let s = scales[if spec.per_channel { o } else { 0 }];
        for (c, &v) in cr.iter_mut().zip(wr) {
            *c = code(v, s, qmax);
        }
    }
    (codes, scales)
}

/// One quantized Linear weight (training layout `[out, inp]`).
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    /// Index into the layout's tensor list.
    pub index: usize,
    pub out: usize,
    pub inp: usize,
    /// Codes, row-major `[out, inp]`.
    pub codes: Vec<i8>,
    /// One scale, or one per output channel.
    pub scales: Vec<f32>,
}

impl QTensor {
    fn scale(&self, o: usize) -> f32 {
        if self.scales.len() == 1 {
            self.scales[0]
        } else {
            self.scales[o]
        }
    }
}

/// A quantized model: the original parameters (for the tensors that stay f32) and the codes
/// and scales of the quantized Linear weights.
#[derive(Clone, Debug)]
pub struct Quantized {
    pub cfg: ModelConfig,
    pub spec: Spec,
    params: Vec<f32>,
    pub tensors: Vec<QTensor>,
}

/// Quantizes the flat training-layout parameters `params` of `cfg` as `spec` says.
pub fn quantize(cfg: &ModelConfig, params: &[f32], spec: &Spec) -> Result<Quantized> {
    let layout = cfg.layout();
    if params.len() != layout.total {
        bail!(
            "{} has {} parameters, got {}",
            cfg.name,
            layout.total,
            params.len()
        );
    }
    spec.check(cfg)?;
    if let Some(i) = params.iter().position(|v| !v.is_finite()) {
        let t = layout
            .tensors
            .iter()
            .find(|t| (t.offset..t.offset + t.len).contains(&i))
            .expect("in range");
        bail!(
            "parameter {i} ({} element {}) is {}, cannot quantize",
            t.name,
            i - t.offset,
            params[i]
        );
    }
    let lin = quantized_linears(&layout, spec);
    let tensors = lin
        .iter()
        .map(|l| {
            let index = layout
                .tensors
                .iter()
                .position(|t| t.offset == l.offset)
                .expect("from layout");
            let (codes, scales) = quantize_linear(
                &params[l.offset..l.offset + l.out * l.inp],
                l.out,
                l.inp,
                spec,
            );
            QTensor {
                index,
                out: l.out,
                inp: l.inp,
                codes,
                scales,
            }
        })
        .collect();
    Ok(Quantized {
        cfg: cfg.clone(),
        spec: spec.clone(),
        params: params.to_vec(),
        tensors,
    })
}

impl Quantized {
    /// The flat f32 parameters the quantized model computes with, in the training layout:
    /// `q · scale` for quantized weights, the original values elsewhere.
    pub fn dequantize(&self) -> Vec<f32> {
        let layout = self.cfg.layout();
        let mut p = self.params.clone();
        for t in &self.tensors {
            let off = layout.tensors[t.index].offset;
            for o in 0..t.out {
                let s = t.scale(o);
                for i in 0..t.inp {
                    p[off + o * t.inp + i] = t.codes[o * t.inp + i] as f32 * s;
                }
            }
        }
        p
    }

    /// The `.csm` file bytes (Linear weights transposed to `[in, out]`).
    pub fn to_csm(&self) -> Result<Vec<u8>> {
        let layout = self.cfg.layout();
        let rc = runtime_config(&self.cfg)?;
        // Stored (transposed) values of every Linear weight, quantized or not.
        let mut f32_t: Vec<Option<Vec<f32>>> = vec![None; layout.tensors.len()];
        let mut q_t: Vec<Option<(Vec<i8>, &[f32])>> = vec![None; layout.tensors.len()];
        for (i, ts) in layout.tensors.iter().enumerate() {
            if ts.linear {
                let (out, inp) = (ts.shape[0], ts.shape[1]);
                let w = &self.params[ts.offset..ts.offset + ts.len];
                f32_t[i] = Some(transpose(w, out, inp));
            }
        }
        for t in &self.tensors {
            q_t[t.index] = Some((transpose(&t.codes, t.out, t.inp), &t.scales));
        }
        let ins: Vec<TensorIn> = layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, ts)| match (&q_t[i], &f32_t[i]) {
                (Some((q, scales)), _) => match self.spec.bits {
                    Bits::I8 => TensorIn::I8 { q, scales },
                    _ => TensorIn::I4 { q, scales },
                },
                (None, Some(w)) => TensorIn::F32(w),
                (None, None) => TensorIn::F32(&self.params[ts.offset..ts.offset + ts.len]),
            })
            .collect();
        let len = format::encoded_len(&rc, &ins).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out = vec![0u8; len];
        let name = &self.cfg.name[..self.cfg.name.len().min(16)];
        format::encode(&rc, name, &ins, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(out)
    }
}

fn transpose<T: Copy + Default>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::default(); w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// The `.csm` header configuration of a model configuration (its architecture), after
/// checking the architecture's bounds.
pub fn runtime_config(cfg: &ModelConfig) -> Result<Config> {
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("model {}: {e}", cfg.name))?;
    Ok(cfg.arch())
}

/// Fake quantisation for quantization-aware training: `Q(w) = code(w)·scale` on the quantized
/// Linear weights with the scales of the current weights, identity elsewhere.
#[derive(Clone, Debug)]
pub struct FakeQuant {
    spec: Spec,
    linears: Vec<Linear>,
}

impl FakeQuant {
    /// For the layout of `cfg`. Names in `spec.keep_f32` that are not Linear weights match
    /// nothing (check them with [`Spec::check`]).
    pub fn new(cfg: &ModelConfig, spec: &Spec) -> FakeQuant {
        FakeQuant {
            spec: spec.clone(),
            linears: quantized_linears(&cfg.layout(), spec),
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Writes `Q(params)` into `out` and the scales used into `scales` (per quantized tensor,
    /// one or `out` each, in layout order). Equal bit for bit to
    /// `quantize(..).dequantize()` of the same parameters.
    pub fn apply(&self, params: &[f32], out: &mut Vec<f32>, scales: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(params);
        scales.clear();
        let Some(qmax) = self.spec.bits.qmax() else {
            return;
        };
        for l in &self.linears {
            let w = &params[l.offset..l.offset + l.out * l.inp];
            let first = scales.len();
            if self.spec.per_channel {
                scales.extend(
                    w.chunks_exact(l.inp)
                        .map(|r| choose_scale(r, qmax, self.spec.scale)),
                );
            } else {
                scales.push(choose_scale(w, qmax, self.spec.scale));
            }
            let dst = &mut out[l.offset..l.offset + l.out * l.inp];
            for (o, (dr, wr)) in dst
                .chunks_exact_mut(l.inp)
                .zip(w.chunks_exact(l.inp))
                .enumerate()
            {
                let s = scales[first + if self.spec.per_channel { o } else { 0 }];
                for (d, &v) in dr.iter_mut().zip(wr) {
                    *d = code(v, s, qmax) as f32 * s;
                }
            }
        }
    }

    /// Straight-through estimator: the gradient taken at `Q(params)` passes unchanged to the
    /// f32 master weights, except for quantized weights that the clamp to ±qmax changed
    /// (`|w/scale| ≥ qmax + ½`, only possible with [`ScaleRule::Mse`]): their gradient is 0.
    /// `scales` are those [`FakeQuant::apply`] returned for the same `params`.
    pub fn straight_through(&self, params: &[f32], scales: &[f32], grads: &mut [f32]) {
        let Some(qmax) = self.spec.bits.qmax() else {
            return;
        };
        let mut k = 0;
        for l in &self.linears {
            for o in 0..l.out {
                let s = scales[k + if self.spec.per_channel { o } else { 0 }];
                if s == 0.0 {
                    continue;
                }
                let r = l.offset + o * l.inp..l.offset + (o + 1) * l.inp;
                for (g, w) in grads[r.clone()].iter_mut().zip(&params[r]) {
                    if clipped(*w, s, qmax) {
                        *g = 0.0;
                    }
                }
            }
            k += if self.spec.per_channel { l.out } else { 1 };
        }
    }
}

/// Bytes of a `.csm` file by what they hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    pub total: usize,
    /// int8/int4 payloads of the quantized Linear weights.
    pub quantized_weights: usize,
    /// Their f32 scales.
    pub scales: usize,
    /// Payloads of the f32 tensors (biases, norms, embeddings, unquantized weights).
    pub f32_tensors: usize,
    /// Header (64), tensor table (32 per tensor), CRC footer (4).
    pub header_table_crc: usize,
    /// Zero padding that aligns payloads to 64 bytes.
    pub padding: usize,
    /// Elements stored f32 / quantized.
    pub f32_values: usize,
    pub quantized_values: usize,
}

/// Where the bytes of a parsed model file go.
pub fn breakdown(file: &ModelFile) -> Breakdown {
    let mut b = Breakdown {
        total: file.size(),
        header_table_crc: format::HEADER_LEN + format::ENTRY_LEN * file.tensor_count() + 4,
        ..Breakdown::default()
    };
    for i in 0..file.tensor_count() {
        let t = file.tensor(i);
        match t.data {
            TensorData::F32(v) => {
                b.f32_tensors += 4 * v.len();
                b.f32_values += v.len();
            }
            TensorData::I8 { q, scales } => {
                b.quantized_weights += q.len();
                b.scales += 4 * scales.len();
                b.quantized_values += t.slot.len();
            }
            TensorData::I4 { packed, scales } => {
                b.quantized_weights += packed.len();
                b.scales += 4 * scales.len();
                b.quantized_values += t.slot.len();
            }
        }
    }
    b.padding = b.total - b.quantized_weights - b.scales - b.f32_tensors - b.header_table_crc;
    b
}

/// Reads a parsed `.csm` back into a model configuration (dropout 0) and its dequantised
/// parameters in the training layout (`[out, in]` weights), value for value `TensorView::get`.
pub fn from_model_file(file: &ModelFile) -> Result<(ModelConfig, Vec<f32>)> {
    let cfg = ModelConfig::from_arch(file.name(), &file.config, 0.0);
    runtime_config(&cfg)?;
    let layout = cfg.layout();
    let mut p = vec![0.0f32; layout.total];
    for (i, ts) in layout.tensors.iter().enumerate() {
        let t = file.tensor(i);
        let dst = &mut p[ts.offset..ts.offset + ts.len];
        if t.slot.linear {
            // stored [in, out] = [rows, cols]; training [out, in]
            let (rows, cols) = (t.slot.rows, t.slot.cols);
            for r in 0..rows {
                for c in 0..cols {
                    dst[c * rows + r] = t.get(r * cols + c);
                }
            }
        } else {
            for (k, d) in dst.iter_mut().enumerate() {
                *d = t.get(k);
            }
        }
    }
    Ok((cfg, p))
}

/// Reads and validates a `.csm` file: configuration and dequantised training-layout parameters.
pub fn from_csm(path: &Path) -> Result<(ModelConfig, Vec<f32>)> {
    let buf = csipose_files::AlignedBytes::read(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let file =
        ModelFile::parse(buf.bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    from_model_file(&file)
}

/// Writes `bytes` to `path` atomically (temporary name, then rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = csipose_npy::AtomicFile::create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.commit()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_scales_are_fixed_points() {
        let mut x = 0x1234_5678u32;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let s = (x as f32 / u32::MAX as f32) * 3.0 + 1e-6;
            for q in [7.0f32, 127.0] {
                let c = canonical(s, q);
                assert_eq!((q * c) / q, c);
                assert!((c - s).abs() <= 4.0 * f32::EPSILON * s);
            }
        }
    }

    #[test]
    fn codes_round_and_clamp() {
        assert_eq!(code(0.26, 0.1, 7.0), 3);
        assert_eq!(code(-0.25, 0.1, 7.0), -3); // -2.5 rounds away from zero
        assert_eq!(code(5.0, 0.1, 7.0), 7);
        assert_eq!(code(-5.0, 0.1, 127.0), -50);
        assert_eq!(code(-50.0, 0.1, 127.0), -127);
        assert_eq!(code(1.0, 0.0, 7.0), 0);
    }

    #[test]
    fn mse_clips_an_outlier_and_is_never_worse_than_max_abs() {
        let mut w: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
            .collect();
        w[3] = 0.3; // one outlier, 3× the rest
        let (a, b) = (
            choose_scale(&w, 7.0, ScaleRule::MaxAbs),
            choose_scale(&w, 7.0, ScaleRule::Mse),
        );
        assert!(b < a, "mse {b} should clip below max-abs {a}");
        assert!(sq_error(&w, b, 7.0) < sq_error(&w, a, 7.0));
    }
}
