//! The `.rvne` weight blob of the temporal head: a 24-byte little-endian header, the weights
//! (fp32 or fp16), and a CRC32 (IEEE) of everything before it. Parsing never panics: every
//! malformed input maps to its own [`RvneError`] naming the byte offset. [`RvneView`] borrows the
//! bytes (zero-copy); [`encode`] writes a blob.
//!
//! Layout (all little-endian):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | magic `0x52564E45` (bytes `45 4E 56 52`) |
//! | 4 | u16 | version = 1 |
//! | 6 | u8 | flags: bit 0 fp16 weights (else fp32); bit 1 dense attention backend (else sparse); other bits 0 |
//! | 7 | u8 | reserved, 0 |
//! | 8 | u16 | input_dim |
//! | 10 | u16 | n_q_heads |
//! | 12 | u16 | n_kv_heads (divides n_q_heads) |
//! | 14 | u16 | head_dim |
//! | 16 | u16 | n_layers |
//! | 18 | u16 | n_classes |
//! | 20 | u32 | weights_len: bytes of weights that follow |
//! | 24 | 16 bytes | the head config record, see [`HeadConfig`] (optional, see below) |
//! | 40 | 4 × floats (2 × for fp16) | the weights, see [`WeightLayout`] |
//! | after the weights | the rest of weights_len | the META section, see [`RvneMeta`] (optional) |
//! | 24 + weights_len | u32 | CRC32-IEEE of bytes `0 .. 24 + weights_len` |
//!
//! The head config record is the first part of the weight section (the issue fixes the 24-byte
//! header and leaves the section's contents to the head): the attention kernel configuration the
//! model was trained with (window, block size, causal) and the per-frame features it reads. A
//! file whose `weights_len` is exactly the float weights has no record; it reads as
//! [`HeadConfig::LEGACY`] (window 32, block 16, causal, amplitude features, stride 4).
//!
//! The META section (after the weights, inside `weights_len` and so under the file's CRC)
//! carries the class names and the feature settings the model was trained with (`--context`,
//! `--adapt-norm` of `csipose activity train`) and, optionally, the sequence decoding (`--decode
//! forward|viterbi`: the mode and the transition model learned from the training recordings,
//! [`RvneDecode`]). Files without it read with [`RvneView::meta`] `None`; it needs the head
//! config record.

use std::fmt;

use half::f16;
use thiserror::Error;

use crate::sequence::{is_log_distribution, Decode, Transitions};

/// First four bytes as a little-endian u32.
pub const MAGIC: u32 = 0x5256_4E45;
/// The only version this reader accepts.
pub const VERSION: u16 = 1;
/// Header bytes before the weights.
pub const HEADER_LEN: usize = 24;
/// Flag bit 0: weights are fp16.
pub const FLAG_FP16: u8 = 1;
/// Flag bit 1: the model was trained with (and must run) the dense attention backend.
pub const FLAG_DENSE: u8 = 2;
/// First four bytes of the head config record: `HCFG`.
pub const HEAD_TAG: [u8; 4] = *b"HCFG";
/// Bytes of the head config record.
pub const HEAD_LEN: usize = 16;
/// Transform bit 0: each sequence's log-amplitude block minus its per-channel mean over the
/// whole sequence (per-window normalisation; takes away a static frequency response).
pub const TRANSFORM_WINDOW_NORM: u16 = 1;
/// Transform bit 1: each frame's log amplitudes (and their centred block) minus their mean over
/// the antenna's subcarriers (amplitude ratios between subcarriers; takes away a common gain).
pub const TRANSFORM_RATIO: u16 = 2;
/// Every known transform bit.
pub const TRANSFORM_MASK: u16 = TRANSFORM_WINDOW_NORM | TRANSFORM_RATIO;
/// Highest per-frame feature code (0 amplitude, 1 amplitude + cross-antenna phase, 2 pose
/// encoder).
pub const MAX_FEATURE_CODE: u8 = 2;

/// First four bytes of the META section: `META`.
pub const META_TAG: [u8; 4] = *b"META";
/// Bytes of the META section before the class names.
pub const META_FIXED: usize = 14;
/// META flag bit 0: test-time adaptation of the input normalisation (`--adapt-norm`).
pub const META_ADAPT_NORM: u8 = 1;
/// META flag bit 1: a sequence-decoding block (decode mode and transition model) follows the
/// class names.
pub const META_DECODE: u8 = 2;
/// Bytes of the decoding block before its values.
pub const DECODE_FIXED: usize = 4;

/// What the META section records (little-endian, offsets from the section's start):
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | 4 bytes | tag `META` |
/// | 4 | u32 | section length in bytes (tag included) = the rest of weights_len |
/// | 8 | u16 | context: earlier windows of a recording before each one (window manifests) |
/// | 10 | u8 | flags: bit 0 adapt-norm; bit 1 a decoding block follows the names; other bits 0 |
/// | 11 | u8 | reserved, 0 |
/// | 12 | u16 | class names that follow: 0 (none stored) or n_classes |
/// | 14 | names | each a u8 length (1 ..= 255) and that many bytes of UTF-8, no control characters |
/// | after the names | decoding block | only with flag bit 1, see [`RvneDecode`] |
///
/// The section ends exactly at the end of weights_len. A reader from before the decoding
/// block refuses flag bit 1 ("unknown flag bits"); a file without it reads with `decode`
/// `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RvneMeta {
    pub context: u16,
    pub adapt_norm: bool,
    /// Class names in class-number order (`None`: not stored).
    pub classes: Option<Vec<String>>,
    /// How a recording's window probabilities become classes (`None`: each window by itself).
    pub decode: Option<RvneDecode>,
}

/// The decoding block of the META section (`csipose activity train --decode forward|viterbi`;
/// little-endian, offsets from the block's start, `n` = n_classes of the header):
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | u8 | decode mode: 1 forward (causal filter), 2 viterbi (whole recording, offline) |
/// | 1 | u8 | reserved, 0 |
/// | 2 | u16 | frames per step: feature frames of one training window (the hop between two decoded windows of a recording; what `serve` steps the filter by); 0 = not one fixed length |
/// | 4 | n × f32 | ln P(a recording starts in class i) |
/// | 4 + 4n | n² × f32 | ln P(next window's class j \| this window's class i), row i, column j |
///
/// The start values and every row are the natural logarithms of a distribution (finite, ≤ 0,
/// summing to 1 within 1e-3; [`Transitions::validate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RvneDecode {
    /// [`Decode::Forward`] or [`Decode::Viterbi`].
    pub mode: Decode,
    pub step_frames: u16,
    pub transitions: Transitions,
}

impl RvneMeta {
    /// The section's bytes; checks the names against `n_classes`.
    fn encode(&self, n_classes: u16) -> Result<Vec<u8>, RvneError> {
        let mut b = Vec::new();
        b.extend_from_slice(&META_TAG);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.context.to_le_bytes());
        b.push(
            (if self.adapt_norm { META_ADAPT_NORM } else { 0 })
                | (if self.decode.is_some() {
                    META_DECODE
                } else {
                    0
                }),
        );
        b.push(0);
        let names = self.classes.as_deref().unwrap_or(&[]);
        if self.classes.is_some() && names.len() != n_classes as usize {
            return Err(RvneError::Meta {
                offset: 12,
                what: format!("{} class names given for {n_classes} classes", names.len()),
            });
        }
        b.extend_from_slice(&(names.len() as u16).to_le_bytes());
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || n.len() > 255 || n.chars().any(char::is_control) {
                return Err(RvneError::Meta {
                    offset: b.len(),
                    what: format!(
                        "class name {i} {n:?} must be 1 to 255 bytes without control characters"
                    ),
                });
            }
            b.push(n.len() as u8);
            b.extend_from_slice(n.as_bytes());
        }
        if let Some(d) = &self.decode {
            let mode = match d.mode {
                Decode::Forward => 1,
                Decode::Viterbi => 2,
                Decode::None => {
                    return Err(RvneError::Meta {
                        offset: b.len(),
                        what: "decode mode none stores no decoding block".into(),
                    })
                }
            };
            let t = &d.transitions;
            if t.n_classes != n_classes as usize {
                return Err(RvneError::Meta {
                    offset: b.len(),
                    what: format!(
                        "a transition model of {} classes for {n_classes} classes",
                        t.n_classes
                    ),
                });
            }
            t.validate().map_err(|what| RvneError::Meta {
                offset: b.len() + DECODE_FIXED,
                what,
            })?;
            b.push(mode);
            b.push(0);
            b.extend_from_slice(&d.step_frames.to_le_bytes());
            for v in t.log_start.iter().chain(&t.log_next) {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        let len = b.len() as u32;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        Ok(b)
    }

    /// Parses the section `b` (exactly its bytes), which starts at byte `at` of the file.
    fn parse(b: &[u8], at: usize, n_classes: u16) -> Result<Self, RvneError> {
        let bad = |offset: usize, what: String| {
            Err(RvneError::Meta {
                offset: at + offset,
                what,
            })
        };
        if b.len() < META_FIXED {
            return bad(
                0,
                format!("{} bytes, less than the {META_FIXED} it needs", b.len()),
            );
        }
        if b[..4] != META_TAG {
            return bad(
                0,
                format!("expected the tag \"META\", found {:02X?}", &b[..4]),
            );
        }
        let len = u32_at(b, 4);
        if len as usize != b.len() {
            return bad(
                4,
                format!("section length {len}, but {} bytes remain", b.len()),
            );
        }
        if b[10] & !(META_ADAPT_NORM | META_DECODE) != 0 {
            return bad(10, format!("unknown flag bits {:#04x}", b[10]));
        }
        if b[11] != 0 {
            return bad(11, format!("reserved byte is {}, expected 0", b[11]));
        }
        let count = u16_at(b, 12);
        if count != 0 && count != n_classes {
            return bad(12, format!("{count} class names for {n_classes} classes"));
        }
        let mut names = Vec::with_capacity(count as usize);
        let mut pos = META_FIXED;
        for i in 0..count {
            let Some(&n) = b.get(pos) else {
                return bad(pos, format!("class name {i} is missing"));
            };
            let n = n as usize;
            let Some(bytes) = b.get(pos + 1..pos + 1 + n) else {
                return bad(pos, format!("class name {i} runs past the section"));
            };
            let name = match std::str::from_utf8(bytes) {
                Ok(t) if n > 0 && !t.chars().any(char::is_control) => t.to_string(),
                _ => {
                    return bad(
                        pos,
                        format!("class name {i} is empty, not UTF-8 or holds control characters"),
                    )
                }
            };
            names.push(name);
            pos += 1 + n;
        }
        let decode = if b[10] & META_DECODE != 0 {
            Some(RvneDecode::parse(&b[pos..], at + pos, n_classes)?)
        } else if pos != b.len() {
            return bad(
                pos,
                format!("{} bytes after the class names", b.len() - pos),
            );
        } else {
            None
        };
        Ok(RvneMeta {
            context: u16_at(b, 8),
            adapt_norm: b[10] & META_ADAPT_NORM != 0,
            classes: (count > 0).then_some(names),
            decode,
        })
    }
}

impl RvneDecode {
    /// Parses the decoding block `b` (exactly the rest of the section), which starts at byte
    /// `at` of the file.
    fn parse(b: &[u8], at: usize, n_classes: u16) -> Result<Self, RvneError> {
        let bad = |offset: usize, what: String| {
            Err(RvneError::Meta {
                offset: at + offset,
                what,
            })
        };
        let n = n_classes as usize;
        let need = DECODE_FIXED + 4 * n + 4 * n * n;
        if b.len() != need {
            return bad(
                0,
                format!(
                    "the decoding block is {} bytes, {n} classes need {need}",
                    b.len()
                ),
            );
        }
        let mode = match b[0] {
            1 => Decode::Forward,
            2 => Decode::Viterbi,
            m => {
                return bad(
                    0,
                    format!("decode mode {m} is not 1 (forward) or 2 (viterbi)"),
                )
            }
        };
        if b[1] != 0 {
            return bad(1, format!("reserved byte is {}, expected 0", b[1]));
        }
        let values: Vec<f32> = b[DECODE_FIXED..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(k) = values.iter().position(|v| !(v.is_finite() && *v <= 0.0)) {
            return bad(
                DECODE_FIXED + 4 * k,
                format!("{} is not a logarithm of a probability", values[k]),
            );
        }
        let (start, next) = values.split_at(n);
        if !is_log_distribution(start) {
            return bad(
                DECODE_FIXED,
                "the start probabilities do not sum to 1".into(),
            );
        }
        if let Some(i) = next.chunks_exact(n).position(|r| !is_log_distribution(r)) {
            return bad(
                DECODE_FIXED + 4 * n + 4 * n * i,
                format!("transition row {i} does not sum to 1"),
            );
        }
        let transitions = Transitions {
            n_classes: n,
            log_start: start.to_vec(),
            log_next: next.to_vec(),
        };
        if let Err(what) = transitions.validate() {
            return bad(DECODE_FIXED, what);
        }
        Ok(RvneDecode {
            mode,
            step_frames: u16_at(b, 2),
            transitions,
        })
    }
}

/// Largest model width `n_q_heads × head_dim` a header may give.
pub const MAX_MODEL_DIM: usize = 4096;
/// Most attention layers.
pub const MAX_LAYERS: usize = 64;
/// Most weights (2^28: 1 GiB as f32).
pub const MAX_WEIGHTS: usize = 1 << 28;

/// The head config record at the start of the weight section (16 bytes, little-endian):
///
/// | offset | type | field |
/// |---|---|---|
/// | 24 | 4 bytes | tag `HCFG` |
/// | 28 | u16 | record length = 16 |
/// | 30 | u16 | attention window (tokens before the query, and after it when not causal) |
/// | 32 | u16 | landmark block size (> 0) |
/// | 34 | u8 | causal: 1, or 0 for symmetric attention (such a model cannot stream) |
/// | 35 | u8 | per-frame features: 0 amplitude, 1 amplitude + cross-antenna phase, 2 pose encoder |
/// | 36 | u16 | packets averaged into one frame (> 0; 1 for pose-encoder features: one dataset frame each) |
/// | 38 | u16 | feature transforms, bit flags (see [`TRANSFORM_WINDOW_NORM`], [`TRANSFORM_RATIO`]); other bits 0 |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadConfig {
    pub window: u16,
    pub block_size: u16,
    pub causal: bool,
    pub features: u8,
    pub stride: u16,
    /// Feature transform bits ([`TRANSFORM_WINDOW_NORM`], [`TRANSFORM_RATIO`]); 0 = none.
    pub transforms: u16,
}

impl HeadConfig {
    /// What a file without the record was trained with: window 32, block 16, causal,
    /// amplitude features, 4 packets per frame.
    pub const LEGACY: HeadConfig = HeadConfig {
        window: 32,
        block_size: 16,
        causal: true,
        features: 0,
        stride: 4,
        transforms: 0,
    };

    fn encode(&self) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[..4].copy_from_slice(&HEAD_TAG);
        b[4..6].copy_from_slice(&(HEAD_LEN as u16).to_le_bytes());
        b[6..8].copy_from_slice(&self.window.to_le_bytes());
        b[8..10].copy_from_slice(&self.block_size.to_le_bytes());
        b[10] = self.causal as u8;
        b[11] = self.features;
        b[12..14].copy_from_slice(&self.stride.to_le_bytes());
        b[14..16].copy_from_slice(&self.transforms.to_le_bytes());
        b
    }

    /// Checks the fields; the error names the byte offset in the file.
    pub fn validate(&self) -> Result<(), RvneError> {
        let bad = |offset, what: String| Err(RvneError::HeadConfig { offset, what });
        if self.block_size == 0 {
            return bad(HEADER_LEN + 8, "block size is 0".into());
        }
        if self.features > MAX_FEATURE_CODE {
            return bad(
                HEADER_LEN + 11,
                format!("unknown feature code {}", self.features),
            );
        }
        if self.stride == 0 {
            return bad(HEADER_LEN + 12, "packets per frame is 0".into());
        }
        if self.transforms & !TRANSFORM_MASK != 0 {
            return bad(
                HEADER_LEN + 14,
                format!("unknown transform bits {:#06x}", self.transforms),
            );
        }
        Ok(())
    }

    /// Parses the record from the first bytes of the weight section.
    fn parse(b: &[u8]) -> Result<Self, RvneError> {
        let bad = |offset, what: String| Err(RvneError::HeadConfig { offset, what });
        if b[..4] != HEAD_TAG {
            return bad(
                HEADER_LEN,
                format!("expected the tag \"HCFG\", found {:02X?}", &b[..4]),
            );
        }
        let len = u16_at(b, 4);
        if len as usize != HEAD_LEN {
            return bad(
                HEADER_LEN + 4,
                format!("record length {len}, expected {HEAD_LEN}"),
            );
        }
        if b[10] > 1 {
            return bad(
                HEADER_LEN + 10,
                format!("causal byte is {}, not 0 or 1", b[10]),
            );
        }
        let head = HeadConfig {
            window: u16_at(b, 6),
            block_size: u16_at(b, 8),
            causal: b[10] == 1,
            features: b[11],
            stride: u16_at(b, 12),
            transforms: u16_at(b, 14),
        };
        head.validate()?;
        Ok(head)
    }
}

/// The header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RvneHeader {
    pub fp16: bool,
    pub dense: bool,
    pub input_dim: u16,
    pub n_q_heads: u16,
    pub n_kv_heads: u16,
    pub head_dim: u16,
    pub n_layers: u16,
    pub n_classes: u16,
}

/// Where each tensor sits in the weight array (in floats), in file order. Matrices are row-major
/// `[rows (input), cols (output)]`, applied as `y = x W` to a row vector `x`.
/// `D = n_q_heads * head_dim` (model width), `K = n_kv_heads * head_dim`.
///
/// 1. per layer `l = 0 .. n_layers`: `Wq [D, D]`, `Wk [D, K]`, `Wv [D, K]`, `Wo [D, D]`;
/// 2. the classifier: `Wc [D, n_classes]`, `bc [n_classes]`;
/// 3. the per-frame input normalisation: `mean [input_dim]`, `std [input_dim]`;
/// 4. the per-frame embedding: `We [input_dim, D]`, `be [D]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightLayout {
    pub model_dim: usize,
    pub kv_dim: usize,
    pub input_dim: usize,
    pub n_layers: usize,
    pub n_classes: usize,
}

impl WeightLayout {
    /// Floats in one layer (Wq, Wk, Wv, Wo).
    pub fn layer_len(&self) -> usize {
        2 * self.model_dim * self.model_dim + 2 * self.model_dim * self.kv_dim
    }
    /// Offset of layer `l`'s Wq; Wk, Wv, Wo follow.
    pub fn layer(&self, l: usize) -> usize {
        l * self.layer_len()
    }
    /// Offset of Wc (bc follows).
    pub fn classifier(&self) -> usize {
        self.n_layers * self.layer_len()
    }
    /// Offset of the input mean (std follows).
    pub fn normalisation(&self) -> usize {
        self.classifier() + self.model_dim * self.n_classes + self.n_classes
    }
    /// Offset of We (be follows).
    pub fn embedding(&self) -> usize {
        self.normalisation() + 2 * self.input_dim
    }
    /// Total floats.
    pub fn total(&self) -> usize {
        self.embedding() + self.input_dim * self.model_dim + self.model_dim
    }
}

impl RvneHeader {
    pub fn layout(&self) -> WeightLayout {
        WeightLayout {
            model_dim: self.n_q_heads as usize * self.head_dim as usize,
            kv_dim: self.n_kv_heads as usize * self.head_dim as usize,
            input_dim: self.input_dim as usize,
            n_layers: self.n_layers as usize,
            n_classes: self.n_classes as usize,
        }
    }

    /// Bytes per stored weight.
    pub fn weight_size(&self) -> usize {
        if self.fp16 {
            2
        } else {
            4
        }
    }

    /// Checks the dimensions before any size is computed from them: no zero, q heads a
    /// multiple of kv heads, the model width at most [`MAX_MODEL_DIM`], the layers at most
    /// [`MAX_LAYERS`], the weights at most [`MAX_WEIGHTS`]. Files and the CLI's options
    /// (through [`crate::model::ActivityModel::with_head`]) meet the same bounds.
    pub fn validate(&self) -> Result<(), RvneError> {
        for (field, offset, value) in [
            ("input_dim", 8, self.input_dim),
            ("n_q_heads", 10, self.n_q_heads),
            ("n_kv_heads", 12, self.n_kv_heads),
            ("head_dim", 14, self.head_dim),
            ("n_layers", 16, self.n_layers),
            ("n_classes", 18, self.n_classes),
        ] {
            if value == 0 {
                return Err(RvneError::ZeroDimension { field, offset });
            }
        }
        if !self.n_q_heads.is_multiple_of(self.n_kv_heads) {
            return Err(RvneError::GqaRatio {
                q_heads: self.n_q_heads,
                kv_heads: self.n_kv_heads,
            });
        }
        let too_large = |what, offset, value: u64, max: usize| {
            Err(RvneError::TooLarge {
                what,
                offset,
                value,
                max,
            })
        };
        let model_dim = self.n_q_heads as u64 * self.head_dim as u64;
        if model_dim > MAX_MODEL_DIM as u64 {
            return too_large("n_q_heads × head_dim", 10, model_dim, MAX_MODEL_DIM);
        }
        if self.n_layers as usize > MAX_LAYERS {
            return too_large("n_layers", 16, self.n_layers as u64, MAX_LAYERS);
        }
        // WeightLayout::total in u64 (every factor is now small enough).
        let (d, k) = (model_dim, self.n_kv_heads as u64 * self.head_dim as u64);
        let (i, l, c) = (
            self.input_dim as u64,
            self.n_layers as u64,
            self.n_classes as u64,
        );
        let total = l * (2 * d * d + 2 * d * k) + d * c + c + 2 * i + i * d + d;
        if total > MAX_WEIGHTS as u64 {
            return too_large("the number of weights", 8, total, MAX_WEIGHTS);
        }
        Ok(())
    }

    fn flags(&self) -> u8 {
        (if self.fp16 { FLAG_FP16 } else { 0 }) | (if self.dense { FLAG_DENSE } else { 0 })
    }
}

/// Everything that can be wrong with a blob, each with the byte offset it concerns.
#[derive(Debug, Error, PartialEq)]
pub enum RvneError {
    #[error("byte 0: file is {len} bytes, shorter than the {min}-byte minimum (header + CRC)")]
    Truncated { len: usize, min: usize },
    #[error("byte 0: bad magic 0x{found:08X} (expected 0x{MAGIC:08X}, \"ENVR\")")]
    BadMagic { found: u32 },
    #[error("byte 4: unsupported version {found} (expected {VERSION})")]
    BadVersion { found: u16 },
    #[error("byte 6: unknown flag bits 0x{flags:02X} (only bit 0 fp16 and bit 1 dense exist)")]
    UnknownFlags { flags: u8 },
    #[error("byte 7: reserved byte is {value}, expected 0")]
    ReservedNotZero { value: u8 },
    #[error("byte {offset}: {field} is 0")]
    ZeroDimension { field: &'static str, offset: usize },
    #[error("byte 10: n_q_heads {q_heads} is not a multiple of n_kv_heads {kv_heads}")]
    GqaRatio { q_heads: u16, kv_heads: u16 },
    #[error("byte {offset}: {what} is {value}, more than the {max} a head may have")]
    TooLarge {
        what: &'static str,
        offset: usize,
        value: u64,
        max: usize,
    },
    #[error("byte 20: weights_len is {found} bytes but the dimensions need {expected} (+ 16 for the head config record, + a META section)")]
    WeightsLen { found: u32, expected: u64 },
    #[error("byte {offset}: file is {len} bytes but the header says {expected}")]
    Size {
        len: usize,
        expected: usize,
        offset: usize,
    },
    #[error("byte {offset}: CRC32 mismatch: stored 0x{stored:08X}, computed 0x{computed:08X}")]
    Crc {
        stored: u32,
        computed: u32,
        offset: usize,
    },
    #[error("byte {offset}: head config record: {what}")]
    HeadConfig { offset: usize, what: String },
    #[error("byte {offset}: META section: {what}")]
    Meta { offset: usize, what: String },
    #[error("{given} weights given but the header's dimensions need {expected}")]
    WeightCount { given: usize, expected: usize },
    #[error("weight {index} is {value}, which {precision} cannot store as a finite number")]
    NonFinite {
        index: usize,
        value: f32,
        precision: &'static str,
    },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A parsed blob borrowing its bytes: the header, the head config and the raw weight bytes.
#[derive(Clone, Copy)]
pub struct RvneView<'a> {
    pub header: RvneHeader,
    /// The head config record, or [`HeadConfig::LEGACY`] for a file without one.
    pub head: HeadConfig,
    /// Whether the file has no head config record (its head is [`HeadConfig::LEGACY`]).
    pub legacy: bool,
    weights: &'a [u8],
    /// The META section's bytes, checked by `parse` (empty when there is none).
    meta: &'a [u8],
}

impl fmt::Debug for RvneView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RvneView")
            .field("header", &self.header)
            .field("head", &self.head)
            .field("legacy", &self.legacy)
            .field("weights", &self.len())
            .field("meta", &self.meta())
            .finish()
    }
}

impl<'a> RvneView<'a> {
    /// Validates `bytes` (header, sizes, CRC) without copying the weights.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RvneError> {
        let min = HEADER_LEN + 4;
        if bytes.len() < min {
            return Err(RvneError::Truncated {
                len: bytes.len(),
                min,
            });
        }
        let magic = u32_at(bytes, 0);
        if magic != MAGIC {
            return Err(RvneError::BadMagic { found: magic });
        }
        let version = u16_at(bytes, 4);
        if version != VERSION {
            return Err(RvneError::BadVersion { found: version });
        }
        let flags = bytes[6];
        if flags & !(FLAG_FP16 | FLAG_DENSE) != 0 {
            return Err(RvneError::UnknownFlags { flags });
        }
        if bytes[7] != 0 {
            return Err(RvneError::ReservedNotZero { value: bytes[7] });
        }
        let header = RvneHeader {
            fp16: flags & FLAG_FP16 != 0,
            dense: flags & FLAG_DENSE != 0,
            input_dim: u16_at(bytes, 8),
            n_q_heads: u16_at(bytes, 10),
            n_kv_heads: u16_at(bytes, 12),
            head_dim: u16_at(bytes, 14),
            n_layers: u16_at(bytes, 16),
            n_classes: u16_at(bytes, 18),
        };
        header.validate()?;
        let weights_len = u32_at(bytes, 20);
        let floats = header.layout().total() as u64 * header.weight_size() as u64;
        let expected = floats + HEAD_LEN as u64;
        let legacy = weights_len as u64 == floats;
        // More than the record and the weights: a META section follows them.
        let has_meta = weights_len as u64 >= expected + META_FIXED as u64;
        if weights_len as u64 != expected && !legacy && !has_meta {
            return Err(RvneError::WeightsLen {
                found: weights_len,
                expected,
            });
        }
        let body_end = HEADER_LEN + weights_len as usize;
        let expected_len = body_end + 4;
        if bytes.len() != expected_len {
            return Err(RvneError::Size {
                len: bytes.len(),
                expected: expected_len,
                offset: bytes.len().min(expected_len),
            });
        }
        let stored = u32_at(bytes, body_end);
        let computed = crc32fast::hash(&bytes[..body_end]);
        if stored != computed {
            return Err(RvneError::Crc {
                stored,
                computed,
                offset: body_end,
            });
        }
        let (head, start) = if legacy {
            (HeadConfig::LEGACY, HEADER_LEN)
        } else {
            (
                HeadConfig::parse(&bytes[HEADER_LEN..HEADER_LEN + HEAD_LEN])?,
                HEADER_LEN + HEAD_LEN,
            )
        };
        let weights_end = start + floats as usize;
        let meta = &bytes[weights_end..body_end];
        if has_meta {
            RvneMeta::parse(meta, weights_end, header.n_classes)?;
        }
        Ok(RvneView {
            header,
            head,
            legacy,
            weights: &bytes[start..weights_end],
            meta,
        })
    }

    /// The META section (class names, context, adapt-norm), or `None` for a file without one.
    pub fn meta(&self) -> Option<RvneMeta> {
        if self.meta.is_empty() {
            return None;
        }
        RvneMeta::parse(self.meta, 0, self.header.n_classes).ok()
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.weights.len() / self.header.weight_size()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The raw weight bytes (borrowed from the input).
    pub fn weight_bytes(&self) -> &'a [u8] {
        self.weights
    }

    /// Weight `i` as f32 (decoded on the fly). Panics if `i >= len()`.
    pub fn weight(&self, i: usize) -> f32 {
        if self.header.fp16 {
            f16::from_bits(u16_at(self.weights, 2 * i)).to_f32()
        } else {
            f32::from_le_bytes(self.weights[4 * i..4 * i + 4].try_into().expect("4 bytes"))
        }
    }

    /// The fp32 weights as a borrowed slice when no conversion is needed: fp32 storage, a
    /// little-endian machine, and 4-byte aligned bytes. `None` otherwise (use [`Self::to_f32`]).
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        let aligned = (self.weights.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>());
        if self.header.fp16 || !aligned || cfg!(target_endian = "big") {
            return None;
        }
        // SAFETY: the pointer is aligned for f32, the length is a whole number of f32s
        // (checked in `parse`), every bit pattern is a valid f32, the bytes are little-endian
        // like the machine, and the returned slice borrows `self.weights` for `'a`.
        Some(unsafe {
            std::slice::from_raw_parts(self.weights.as_ptr().cast::<f32>(), self.weights.len() / 4)
        })
    }

    /// All weights decoded to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        if self.header.fp16 {
            self.weights
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect()
        } else {
            self.weights
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
    }
}

/// Writes a blob: header (precision from `header.fp16`), head config record, weights, CRC.
pub fn encode(
    header: &RvneHeader,
    head: &HeadConfig,
    weights: &[f32],
) -> Result<Vec<u8>, RvneError> {
    encode_with_meta(header, head, weights, None)
}

/// [`encode`] with a META section after the weights when `meta` is given.
pub fn encode_with_meta(
    header: &RvneHeader,
    head: &HeadConfig,
    weights: &[f32],
    meta: Option<&RvneMeta>,
) -> Result<Vec<u8>, RvneError> {
    header.validate()?;
    head.validate()?;
    let expected = header.layout().total();
    if weights.len() != expected {
        return Err(RvneError::WeightCount {
            given: weights.len(),
            expected,
        });
    }
    let meta = match meta {
        Some(m) => m.encode(header.n_classes)?,
        None => Vec::new(),
    };
    let weights_len =
        expected as u64 * header.weight_size() as u64 + HEAD_LEN as u64 + meta.len() as u64;
    let weights_len = u32::try_from(weights_len).map_err(|_| RvneError::WeightsLen {
        found: u32::MAX,
        expected: weights_len,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + weights_len as usize + 4);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(header.flags());
    out.push(0);
    for v in [
        header.input_dim,
        header.n_q_heads,
        header.n_kv_heads,
        header.head_dim,
        header.n_layers,
        header.n_classes,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&weights_len.to_le_bytes());
    out.extend_from_slice(&head.encode());
    for (index, &w) in weights.iter().enumerate() {
        if header.fp16 {
            let h = f16::from_f32(w);
            if !h.is_finite() {
                return Err(RvneError::NonFinite {
                    index,
                    value: w,
                    precision: "fp16",
                });
            }
            out.extend_from_slice(&h.to_bits().to_le_bytes());
        } else {
            if !w.is_finite() {
                return Err(RvneError::NonFinite {
                    index,
                    value: w,
                    precision: "fp32",
                });
            }
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out.extend_from_slice(&meta);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fp16: bool) -> RvneHeader {
        RvneHeader {
            fp16,
            dense: false,
            input_dim: 5,
            n_q_heads: 4,
            n_kv_heads: 2,
            head_dim: 2,
            n_layers: 2,
            n_classes: 3,
        }
    }

    const HEAD: HeadConfig = HeadConfig {
        window: 7,
        block_size: 5,
        causal: false,
        features: 1,
        stride: 3,
        transforms: TRANSFORM_RATIO,
    };

    fn weights(h: &RvneHeader) -> Vec<f32> {
        (0..h.layout().total())
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect()
    }

    /// Re-encodes a blob after `edit` changed its header bytes, with a fresh CRC.
    fn with_header_edit(edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let h = header(false);
        let mut b = encode(&h, &HEAD, &weights(&h)).unwrap();
        b.truncate(b.len() - 4);
        edit(&mut b);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn layout_counts_every_tensor() {
        let l = header(false).layout();
        // D = 8, K = 4: layer 2*64 + 2*32 = 192; classifier 8*3+3; norm 10; embed 5*8+8.
        assert_eq!(l.layer_len(), 192);
        assert_eq!(l.total(), 2 * 192 + 27 + 10 + 48);
    }

    #[test]
    fn fp32_round_trip_is_exact_and_zero_copy() {
        let h = header(false);
        let w = weights(&h);
        let bytes = encode(&h, &HEAD, &w).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + HEAD_LEN + 4 * w.len() + 4);
        assert_eq!(&bytes[..4], b"ENVR");
        let view = RvneView::parse(&bytes).unwrap();
        assert_eq!(view.header, h);
        assert_eq!(view.head, HEAD);
        assert!(!view.legacy);
        assert_eq!(view.to_f32(), w);
        assert_eq!(view.weight(7), w[7]);
        // The view points into the input bytes.
        let start = HEADER_LEN + HEAD_LEN;
        assert_eq!(view.weight_bytes().as_ptr(), bytes[start..].as_ptr());
        if let Some(slice) = view.as_f32() {
            assert_eq!(slice, &w[..]);
            assert_eq!(slice.as_ptr().cast::<u8>(), bytes[start..].as_ptr());
        }
    }

    #[test]
    fn fp16_round_trip_within_half_precision() {
        let h = RvneHeader {
            dense: true,
            ..header(true)
        };
        let w = weights(&h);
        let bytes = encode(&h, &HEAD, &w).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + HEAD_LEN + 2 * w.len() + 4);
        assert_eq!(bytes[6], FLAG_FP16 | FLAG_DENSE);
        let view = RvneView::parse(&bytes).unwrap();
        assert_eq!(view.header, h);
        assert_eq!(view.head, HEAD);
        assert!(view.as_f32().is_none());
        let back = view.to_f32();
        for (a, b) in w.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() * 1e-3, "{a} vs {b}");
        }
        // Encoding the decoded values again gives the same bytes (fp16 values are exact).
        assert_eq!(encode(&h, &HEAD, &back).unwrap(), bytes);
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let h = header(false);
        let good = encode(&h, &HEAD, &weights(&h)).unwrap();
        assert!(matches!(
            RvneView::parse(&good[..20]),
            Err(RvneError::Truncated { len: 20, .. })
        ));
        let e = RvneView::parse(&with_header_edit(|b| b[0] = b'X')).unwrap_err();
        assert!(matches!(e, RvneError::BadMagic { .. }));
        let e = RvneView::parse(&with_header_edit(|b| b[4] = 2)).unwrap_err();
        assert_eq!(e, RvneError::BadVersion { found: 2 });
        let e = RvneView::parse(&with_header_edit(|b| b[6] = 4)).unwrap_err();
        assert_eq!(e, RvneError::UnknownFlags { flags: 4 });
        let e = RvneView::parse(&with_header_edit(|b| b[7] = 1)).unwrap_err();
        assert_eq!(e, RvneError::ReservedNotZero { value: 1 });
        let e = RvneView::parse(&with_header_edit(|b| b[14] = 0)).unwrap_err();
        assert_eq!(
            e,
            RvneError::ZeroDimension {
                field: "head_dim",
                offset: 14
            }
        );
        let e = RvneView::parse(&with_header_edit(|b| b[12] = 3)).unwrap_err();
        assert_eq!(
            e,
            RvneError::GqaRatio {
                q_heads: 4,
                kv_heads: 3
            }
        );
        let e = RvneView::parse(&with_header_edit(|b| b[20] ^= 4)).unwrap_err();
        assert!(matches!(e, RvneError::WeightsLen { .. }), "{e}");
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            RvneView::parse(&longer),
            Err(RvneError::Size { .. })
        ));
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 3] ^= 0x10;
        let e = RvneView::parse(&flipped).unwrap_err();
        assert!(matches!(e, RvneError::Crc { offset, .. } if offset == good.len() - 4));
        assert!(e
            .to_string()
            .starts_with(&format!("byte {}", good.len() - 4)));
        // Encoding checks too.
        assert!(matches!(
            encode(&h, &HEAD, &[1.0]),
            Err(RvneError::WeightCount { given: 1, .. })
        ));
        let mut w = weights(&header(true));
        w[3] = 1e6;
        assert!(matches!(
            encode(&header(true), &HEAD, &w),
            Err(RvneError::NonFinite { index: 3, .. })
        ));
    }

    /// Rewrites a blob's head config record with `edit` and a fresh CRC.
    fn with_head_edit(edit: impl Fn(&mut [u8])) -> Vec<u8> {
        with_header_edit(|b| edit(&mut b[HEADER_LEN..HEADER_LEN + HEAD_LEN]))
    }

    #[test]
    fn head_config_round_trips_and_old_files_still_read() {
        let h = header(false);
        let w = weights(&h);
        for head in [HEAD, HeadConfig::LEGACY] {
            let bytes = encode(&h, &head, &w).unwrap();
            assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 4], b"HCFG");
            assert_eq!(RvneView::parse(&bytes).unwrap().head, head);
        }
        // An older file: the weights right after the header, weights_len without the record.
        let mut old = encode(&h, &HEAD, &w).unwrap();
        old.drain(HEADER_LEN..HEADER_LEN + HEAD_LEN);
        old.truncate(old.len() - 4);
        old[20..24].copy_from_slice(&((4 * w.len()) as u32).to_le_bytes());
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        let view = RvneView::parse(&old).unwrap();
        assert!(view.legacy);
        assert_eq!(view.head, HeadConfig::LEGACY);
        assert_eq!(view.to_f32(), w);
        // Every broken field of the record has its own message and offset.
        for (edit, offset, text) in [
            (0usize, b'X', "tag"),
            (4, 15, "record length"),
            (8, 0, "block size"),
            (10, 2, "causal"),
            (11, 9, "feature code"),
            (12, 0, "packets per frame"),
            (14, 4, "transform bits"),
        ]
        .iter()
        .map(|&(at, v, t)| {
            let bytes = with_head_edit(|r| {
                r[at] = v;
                if at == 8 || at == 12 {
                    r[at + 1] = 0;
                }
            });
            (bytes, HEADER_LEN + at, t)
        }) {
            let e = RvneView::parse(&edit).unwrap_err();
            assert!(
                matches!(&e, RvneError::HeadConfig { offset: o, what } if *o == offset && what.contains(text)),
                "{text}: {e}"
            );
        }
        let bad = HeadConfig {
            block_size: 0,
            ..HEAD
        };
        assert!(matches!(
            encode(&h, &bad, &w),
            Err(RvneError::HeadConfig { .. })
        ));
    }

    /// Every truncation of `good` and every single-bit flip in it is an error.
    fn rejects_every_truncation_and_bit_flip(good: &[u8]) {
        for len in 0..good.len() {
            assert!(RvneView::parse(&good[..len]).is_err(), "truncated to {len}");
        }
        for at in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.to_vec();
                b[at] ^= 1 << bit;
                assert!(RvneView::parse(&b).is_err(), "bit {bit} of byte {at}");
            }
        }
    }

    #[test]
    fn never_panics_and_rejects_every_mutation() {
        let h = header(true);
        let good = encode(&h, &HEAD, &weights(&h)).unwrap();
        rejects_every_truncation_and_bit_flip(&good);
        // Random bytes and random multi-byte corruption: errors, no panics.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 6 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            let cut = (next() as usize) % (b.len() + 1);
            let _ = RvneView::parse(&b[..cut]);
            let _ = RvneView::parse(&b);
            let noise: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            assert!(RvneView::parse(&noise).is_err());
        }
    }

    fn meta() -> RvneMeta {
        RvneMeta {
            context: 3,
            adapt_norm: true,
            classes: Some(vec!["walk".into(), "sit down".into(), "wävë".into()]),
            decode: None,
        }
    }

    /// A transition model of 3 classes learned from two label sequences.
    fn transitions() -> Transitions {
        let seqs: [&[usize]; 2] = [&[0, 0, 1, 1, 2], &[2, 2, 0]];
        Transitions::fit(seqs, 3, 0.1).unwrap()
    }

    fn meta_with_decode(mode: Decode) -> RvneMeta {
        RvneMeta {
            decode: Some(RvneDecode {
                mode,
                step_frames: 25,
                transitions: transitions(),
            }),
            ..meta()
        }
    }

    #[test]
    fn the_decoding_block_round_trips_and_is_checked_when_written() {
        let h = header(false);
        let w = weights(&h);
        for mode in [Decode::Forward, Decode::Viterbi] {
            for classes in [meta().classes, None] {
                let m = RvneMeta {
                    classes,
                    ..meta_with_decode(mode)
                };
                let bytes = encode_with_meta(&h, &HEAD, &w, Some(&m)).unwrap();
                let view = RvneView::parse(&bytes).unwrap();
                assert_eq!(view.meta(), Some(m.clone()));
                assert_eq!(view.to_f32(), w);
                // The section: the fixed part, the names, the block (4 + 4·3 + 4·9 bytes).
                let names: usize = m.classes.iter().flatten().map(|n| 1 + n.len()).sum();
                let at = HEADER_LEN + HEAD_LEN + 4 * w.len();
                assert_eq!(bytes.len() - 4 - at, META_FIXED + names + 52);
                assert_eq!(bytes[at + 10], META_ADAPT_NORM | META_DECODE);
            }
        }
        // Without the block the flag bit is clear and the bytes are what they were.
        let plain = encode_with_meta(&h, &HEAD, &w, Some(&meta())).unwrap();
        let at = HEADER_LEN + HEAD_LEN + 4 * w.len();
        assert_eq!(plain[at + 10], META_ADAPT_NORM);
        // Refused when writing: mode none, a model of other classes, a broken model.
        let refuse = |d: RvneDecode| {
            let m = RvneMeta {
                decode: Some(d),
                ..meta()
            };
            encode_with_meta(&h, &HEAD, &w, Some(&m))
                .unwrap_err()
                .to_string()
        };
        let base = RvneDecode {
            mode: Decode::Forward,
            step_frames: 0,
            transitions: transitions(),
        };
        let e = refuse(RvneDecode {
            mode: Decode::None,
            ..base.clone()
        });
        assert!(e.contains("decode mode none"), "{e}");
        let two: [&[usize]; 1] = [&[0, 1]];
        let e = refuse(RvneDecode {
            transitions: Transitions::fit(two, 2, 0.1).unwrap(),
            ..base.clone()
        });
        assert!(e.contains("2 classes for 3 classes"), "{e}");
        let mut broken = base.clone();
        broken.transitions.log_next[4] = 0.0;
        let e = refuse(broken);
        assert!(e.contains("row 1"), "{e}");
    }

    /// Every broken field of the decoding block (with a fresh CRC) is an error naming its byte.
    #[test]
    fn a_bad_decoding_block_is_an_error_naming_the_byte() {
        let h = header(false);
        let w = weights(&h);
        let m = meta_with_decode(Decode::Viterbi);
        let good = encode_with_meta(&h, &HEAD, &w, Some(&m)).unwrap();
        let names: usize = m.classes.iter().flatten().map(|n| 1 + n.len()).sum();
        let at = HEADER_LEN + HEAD_LEN + 4 * w.len();
        let block = at + META_FIXED + names;
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good[..good.len() - 4].to_vec();
            f(&mut b);
            let len = (b.len() - at) as u32;
            b[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
            let weights_len = (b.len() - HEADER_LEN) as u32;
            b[20..24].copy_from_slice(&weights_len.to_le_bytes());
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            RvneView::parse(&b).unwrap_err().to_string()
        };
        let put = |b: &mut Vec<u8>, k: usize, v: f32| {
            let o = block + DECODE_FIXED + 4 * k;
            b[o..o + 4].copy_from_slice(&v.to_le_bytes());
        };
        for (e, offset, text) in [
            (edit(&|b| b[block] = 0), block, "decode mode 0"),
            (edit(&|b| b[block] = 3), block, "decode mode 3"),
            (edit(&|b| b[block + 1] = 1), block + 1, "reserved byte"),
            (edit(&|b| b.truncate(b.len() - 4)), block, "48 bytes"),
            (edit(&|b| b.extend_from_slice(&[0; 4])), block, "56 bytes"),
            (
                edit(&|b| put(b, 1, f32::NAN)),
                block + DECODE_FIXED + 4,
                "NaN is not a logarithm",
            ),
            (
                edit(&|b| put(b, 5, 0.5)),
                block + DECODE_FIXED + 20,
                "0.5 is not a logarithm",
            ),
            (
                edit(&|b| put(b, 0, -30.0)),
                block + DECODE_FIXED,
                "start probabilities",
            ),
            (
                edit(&|b| put(b, 3 + 7, -30.0)),
                block + DECODE_FIXED + 12 + 24,
                "transition row 2",
            ),
            // The flag bit without a block, and a block without the flag bit.
            (
                edit(&|b| b.truncate(block)),
                block,
                "the decoding block is 0 bytes",
            ),
            (
                edit(&|b| b[at + 10] = META_ADAPT_NORM),
                block,
                "52 bytes after the class names",
            ),
        ] {
            assert!(
                e.starts_with(&format!("byte {offset}: META section: ")) && e.contains(text),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn never_panics_and_rejects_every_mutation_of_a_file_with_a_decoding_block() {
        let h = header(false);
        let m = meta_with_decode(Decode::Forward);
        let good = encode_with_meta(&h, &HEAD, &weights(&h), Some(&m)).unwrap();
        rejects_every_truncation_and_bit_flip(&good);
        // Every single-bit flip of the section with a fresh CRC: an error, or a section that
        // still holds a valid model (a low mantissa bit of a value), never a panic.
        let at = HEADER_LEN + HEAD_LEN + 4 * weights(&h).len();
        let body = &good[..good.len() - 4];
        for i in at..body.len() {
            for bit in 0..8 {
                let mut b = body.to_vec();
                b[i] ^= 1 << bit;
                let crc = crc32fast::hash(&b);
                b.extend_from_slice(&crc.to_le_bytes());
                if let Ok(v) = RvneView::parse(&b) {
                    let d = v.meta().and_then(|m| m.decode);
                    if let Some(d) = d {
                        d.transitions.validate().unwrap();
                    }
                    // What the fuzz target checks: it re-encodes with the same META section.
                    let m = crate::model::ActivityModel::from_rvne(&b).unwrap();
                    let again = crate::model::ActivityModel::from_rvne(&m.to_rvne(false).unwrap());
                    assert_eq!(again.unwrap().meta, m.meta, "bit {bit} of byte {i}");
                }
            }
        }
        let mut state = 0x5DEE_CE66_D1CE_4E5Bu64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut b = body.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = at + (next() as usize) % (body.len() - at);
                b[i] = next() as u8;
            }
            let cut = at + (next() as usize) % (b.len() - at + 1);
            b.truncate(cut);
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            if let Ok(v) = RvneView::parse(&b) {
                let _ = v.meta();
            }
        }
    }

    #[test]
    fn meta_round_trips_and_files_without_it_read_none() {
        let h = header(false);
        let w = weights(&h);
        let old = encode(&h, &HEAD, &w).unwrap();
        assert_eq!(RvneView::parse(&old).unwrap().meta(), None);
        let bytes = encode_with_meta(&h, &HEAD, &w, Some(&meta())).unwrap();
        let view = RvneView::parse(&bytes).unwrap();
        assert_eq!(view.meta(), Some(meta()));
        assert_eq!(view.to_f32(), w);
        assert_eq!(view.head, HEAD);
        // The settings without names.
        let bare = RvneMeta {
            classes: None,
            ..meta()
        };
        let b = encode_with_meta(&h, &HEAD, &w, Some(&bare)).unwrap();
        assert_eq!(RvneView::parse(&b).unwrap().meta(), Some(bare));
        // Names that do not fit are refused when writing.
        for classes in [
            vec!["a".to_string(), "b".into()],
            vec!["a".into(), "".into(), "c".into()],
            vec!["a".into(), "b\nc".into(), "c".into()],
            vec!["a".into(), "x".repeat(256), "c".into()],
        ] {
            let m = RvneMeta {
                classes: Some(classes),
                ..meta()
            };
            assert!(matches!(
                encode_with_meta(&h, &HEAD, &w, Some(&m)),
                Err(RvneError::Meta { .. })
            ));
        }
    }

    /// A META section that is wrong inside (with a fresh CRC) is an error naming its byte.
    #[test]
    fn a_bad_meta_section_is_an_error_naming_the_byte() {
        let h = header(false);
        let w = weights(&h);
        let good = encode_with_meta(&h, &HEAD, &w, Some(&meta())).unwrap();
        let at = HEADER_LEN + HEAD_LEN + 4 * w.len();
        let edit = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good[..good.len() - 4].to_vec();
            f(&mut b);
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            RvneView::parse(&b).unwrap_err().to_string()
        };
        let e = edit(&|b| b[at] = b'X');
        assert!(
            e.starts_with(&format!("byte {at}: META section: expected the tag")),
            "{e}"
        );
        let e = edit(&|b| b[at + 10] = 4);
        assert!(
            e.contains(&format!("byte {}", at + 10)) && e.contains("flag"),
            "{e}"
        );
        let e = edit(&|b| b[at + 12] = 2);
        assert!(e.contains("2 class names for 3 classes"), "{e}");
        let e = edit(&|b| b[at + 15] = 0xFF);
        assert!(e.contains("not UTF-8"), "{e}");
        let e = edit(&|b| b[at + 14] = 200);
        assert!(e.contains("runs past the section"), "{e}");
    }

    #[test]
    fn never_panics_and_rejects_every_mutation_of_a_file_with_meta() {
        let h = header(true);
        let good = encode_with_meta(&h, &HEAD, &weights(&h), Some(&meta())).unwrap();
        rejects_every_truncation_and_bit_flip(&good);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let at = good.len() - 4 - 40;
        for _ in 0..3000 {
            // Corrupt the META section and fix the CRC: an error or a value, never a panic.
            let mut b = good[..good.len() - 4].to_vec();
            for _ in 0..1 + next() % 4 {
                let i = at + (next() as usize) % 40;
                b[i] = next() as u8;
            }
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            if let Ok(v) = RvneView::parse(&b) {
                let _ = v.meta();
            }
        }
    }

    /// Header dimensions are bounded before any size is computed from them: q heads 0 or
    /// not a multiple of kv heads, a width of 65535², 65535 layers are errors naming the
    /// byte, never an overflow, a panic or a huge allocation.
    #[test]
    fn out_of_bounds_dimensions_are_errors_naming_the_byte() {
        let set = |at: usize, v: u16| {
            with_header_edit(move |b| b[at..at + 2].copy_from_slice(&v.to_le_bytes()))
        };
        let e = RvneView::parse(&set(10, 0)).unwrap_err();
        assert_eq!(e.to_string(), "byte 10: n_q_heads is 0");
        let e = RvneView::parse(&set(10, 5)).unwrap_err();
        assert!(
            matches!(
                e,
                RvneError::GqaRatio {
                    q_heads: 5,
                    kv_heads: 2
                }
            ),
            "{e}"
        );
        let huge = with_header_edit(|b| {
            b[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
            b[12..14].copy_from_slice(&1u16.to_le_bytes());
            b[14..16].copy_from_slice(&u16::MAX.to_le_bytes());
        });
        let e = RvneView::parse(&huge).unwrap_err();
        assert!(matches!(e, RvneError::TooLarge { offset: 10, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("byte 10: n_q_heads × head_dim is 4294836225"),
            "{e}"
        );
        let e = RvneView::parse(&set(16, u16::MAX)).unwrap_err();
        assert!(
            matches!(
                e,
                RvneError::TooLarge {
                    offset: 16,
                    value: 65535,
                    ..
                }
            ),
            "{e}"
        );
        // Within the width and layer bounds but too many weights in all.
        let mut big = header(false);
        (big.n_q_heads, big.n_kv_heads, big.head_dim, big.n_layers) = (64, 64, 64, 64);
        let e = big.validate().unwrap_err();
        assert!(matches!(e, RvneError::TooLarge { offset: 8, .. }), "{e}");
        // The largest legal shape still validates.
        big.n_layers = 3;
        big.validate().unwrap();
    }
}
