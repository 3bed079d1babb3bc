//! Grouped-query attention for the temporal head: a sparse backend (local window, global token,
//! log-stride lookback, block landmarks), an exact blocked dense backend, a fixed-capacity streaming
//! KV cache that both backends decode from, and backward passes for training. The attention math
//! itself (softmax, weighted sum of values, their backward, the online softmax state) is the
//! project's one description in `csipose-attn-core`; the kernels here (row, dense, AVX2 and the
//! query-tile kernel of `tile.rs`) are its vectorised forms, and the tests check them against
//! each other and against finite differences.
//!
//! Tensors are flat row-major `f32` slices: q is `[N, q_heads, head_dim]`, k and v are
//! `[N, kv_heads, head_dim]`, the output has q's shape. Query head `h` reads kv head
//! `h / (q_heads / kv_heads)` (MHA when the counts are equal, MQA when `kv_heads == 1`).

mod backward;
pub mod bench;
mod cache;
mod dense;
mod pattern;
mod simd;
mod sparse;
mod tile;

pub use backward::Gradients;
pub use cache::KvCache;
pub use pattern::{sparse_pattern, Pattern};

use thiserror::Error;

/// Which attention kernel computes the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Window + global token + log-stride lookback + block landmarks (see [`sparse_pattern`]).
    Sparse,
    /// Exact softmax attention over every visible token, computed in blocks.
    Dense,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sparse" => Ok(Backend::Sparse),
            "dense" => Ok(Backend::Dense),
            other => Err(format!(
                "unknown backend {other:?} (expected sparse or dense)"
            )),
        }
    }
}

/// Shapes and the sparse pattern's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionConfig {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Local window: tokens `i - window ..= i` (causal) or `i - window ..= i + window`.
    pub window: usize,
    /// Tokens per landmark block.
    pub block_size: usize,
    /// Causal attention (a query sees only itself and earlier tokens). Streaming needs it.
    pub causal: bool,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            q_heads: 4,
            kv_heads: 1,
            head_dim: 32,
            window: 32,
            block_size: 16,
            causal: true,
        }
    }
}

impl AttentionConfig {
    /// Checks for zero sizes and that `q_heads` is a multiple of `kv_heads`.
    pub fn validate(&self) -> Result<(), AttentionError> {
        for (name, value) in [
            ("q_heads", self.q_heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("block_size", self.block_size),
        ] {
            if value == 0 {
                return Err(AttentionError::ZeroDimension(name));
            }
        }
        if !self.q_heads.is_multiple_of(self.kv_heads) {
            return Err(AttentionError::HeadRatio {
                q_heads: self.q_heads,
                kv_heads: self.kv_heads,
            });
        }
        Ok(())
    }

    /// Query heads per kv head.
    pub fn group(&self) -> usize {
        self.q_heads / self.kv_heads
    }

    /// The softmax scale 1/sqrt(head_dim).
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    /// Floats per token in q (and in the output).
    pub fn q_row(&self) -> usize {
        self.q_heads * self.head_dim
    }

    /// Floats per token in k and v.
    pub fn kv_row(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// Everything that can go wrong when calling the kernel.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttentionError {
    #[error("{0} must be at least 1")]
    ZeroDimension(&'static str),
    #[error("q_heads ({q_heads}) is not a multiple of kv_heads ({kv_heads})")]
    HeadRatio { q_heads: usize, kv_heads: usize },
    #[error("{tensor} has {len} floats, not a multiple of its row of {row} (heads x head_dim)")]
    RaggedTensor {
        tensor: &'static str,
        len: usize,
        row: usize,
    },
    #[error("token counts differ: q has {q}, k has {k}, v has {v}")]
    TokenCountMismatch { q: usize, k: usize, v: usize },
    #[error("{tensor} has {len} floats but the gradient/output needs {expected}")]
    WrongLength {
        tensor: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("a streaming step takes exactly one token; {tensor} has {tokens}")]
    StepTokens { tensor: &'static str, tokens: usize },
    #[error("the KV cache is full ({capacity} tokens)")]
    CacheFull { capacity: usize },
    #[error("the KV cache was built for a different configuration")]
    CacheMismatch,
    #[error("streaming needs a causal configuration")]
    NotCausal,
}

/// A configured kernel: config + backend. Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    config: AttentionConfig,
    backend: Backend,
}

impl Attention {
    /// Validates the configuration.
    pub fn new(config: AttentionConfig, backend: Backend) -> Result<Self, AttentionError> {
        config.validate()?;
        Ok(Attention { config, backend })
    }

    pub fn config(&self) -> &AttentionConfig {
        &self.config
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks q/k/v shapes and returns the token count N.
    pub fn tokens(&self, q: &[f32], k: &[f32], v: &[f32]) -> Result<usize, AttentionError> {
        let c = &self.config;
        let count = |tensor, len: usize, row: usize| {
            if !len.is_multiple_of(row) {
                Err(AttentionError::RaggedTensor { tensor, len, row })
            } else {
                Ok(len / row)
            }
        };
        let nq = count("q", q.len(), c.q_row())?;
        let nk = count("k", k.len(), c.kv_row())?;
        let nv = count("v", v.len(), c.kv_row())?;
        if nq != nk || nq != nv {
            return Err(AttentionError::TokenCountMismatch {
                q: nq,
                k: nk,
                v: nv,
            });
        }
        Ok(nq)
    }

    /// Whole-sequence attention (prefill). Returns `[N, q_heads, head_dim]`.
    pub fn forward(&self, q: &[f32], k: &[f32], v: &[f32]) -> Result<Vec<f32>, AttentionError> {
        let n = self.tokens(q, k, v)?;
        let mut out = vec![0.0f32; n * self.config.q_row()];
        self.prefill(n, q, k, v, &mut out);
        Ok(out)
    }

    /// Whole-sequence attention into `out` (`[N, q_heads, head_dim]`, exactly that length;
    /// every element is written), for callers that reuse one output buffer (no allocation per
    /// call).
    pub fn forward_into(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
    ) -> Result<(), AttentionError> {
        let n = self.tokens(q, k, v)?;
        let expected = n * self.config.q_row();
        if out.len() != expected {
            return Err(AttentionError::WrongLength {
                tensor: "out",
                len: out.len(),
                expected,
            });
        }
        self.prefill(n, q, k, v, out);
        Ok(())
    }

    fn prefill(&self, n: usize, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32]) {
        match self.backend {
            Backend::Sparse => sparse::prefill(&self.config, n, q, k, v, out),
            Backend::Dense => dense::prefill(&self.config, n, q, k, v, out),
        }
    }

    /// Appends one token's k/v to the cache, then attends from its query over the cache.
    /// Returns `[q_heads, head_dim]`.
    pub fn step(
        &self,
        q1: &[f32],
        k1: &[f32],
        v1: &[f32],
        cache: &mut KvCache,
    ) -> Result<Vec<f32>, AttentionError> {
        let mut out = vec![0.0f32; self.config.q_row()];
        self.step_into(q1, k1, v1, cache, &mut out)?;
        Ok(out)
    }

    /// [`Attention::step`] writing into a caller buffer of `q_heads * head_dim` floats.
    pub fn step_into(
        &self,
        q1: &[f32],
        k1: &[f32],
        v1: &[f32],
        cache: &mut KvCache,
        out: &mut [f32],
    ) -> Result<(), AttentionError> {
        let c = &self.config;
        if !c.causal {
            return Err(AttentionError::NotCausal);
        }
        if !cache.matches(c) {
            return Err(AttentionError::CacheMismatch);
        }
        for (tensor, len, row) in [
            ("q", q1.len(), c.q_row()),
            ("k", k1.len(), c.kv_row()),
            ("v", v1.len(), c.kv_row()),
        ] {
            if len != row {
                return Err(if len % row == 0 {
                    AttentionError::StepTokens {
                        tensor,
                        tokens: len / row,
                    }
                } else {
                    AttentionError::RaggedTensor { tensor, len, row }
                });
            }
        }
        if out.len() != c.q_row() {
            return Err(AttentionError::WrongLength {
                tensor: "out",
                len: out.len(),
                expected: c.q_row(),
            });
        }
        cache.append(k1, v1)?;
        match self.backend {
            Backend::Sparse => sparse::decode(c, q1, cache, out),
            Backend::Dense => dense::decode(c, q1, cache, out),
        }
        Ok(())
    }

    /// Gradients of `sum(d_out * forward(q, k, v))` with respect to q, k and v.
    pub fn backward(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        d_out: &[f32],
    ) -> Result<Gradients, AttentionError> {
        let n = self.tokens(q, k, v)?;
        if d_out.len() != q.len() {
            return Err(AttentionError::WrongLength {
                tensor: "d_out",
                len: d_out.len(),
                expected: q.len(),
            });
        }
        Ok(backward::backward(
            &self.config,
            self.backend,
            n,
            q,
            k,
            v,
            d_out,
        ))
    }
}
