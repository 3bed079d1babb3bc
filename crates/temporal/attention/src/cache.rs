//! The caller-owned streaming KV cache: fixed capacity, keys and values per token, and the
//! landmark means of completed blocks, kept up to date in O(kv_heads * head_dim) per append.

use crate::pattern::Pattern;
use crate::simd::{axpy, scale};
use crate::sparse::Source;
use crate::{AttentionConfig, AttentionError};

/// Keys, values and block means of the tokens seen so far.
#[derive(Clone, Debug)]
pub struct KvCache {
    kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    capacity: usize,
    len: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
    key_means: Vec<f32>,
    value_means: Vec<f32>,
    /// Running sums of the block being filled.
    key_sum: Vec<f32>,
    value_sum: Vec<f32>,
    /// Reused pattern buffer so a decode step does not allocate.
    pub(crate) scratch: Pattern,
}

impl KvCache {
    /// An empty cache for `capacity` tokens of `config` (all memory allocated up front).
    pub fn new(config: &AttentionConfig, capacity: usize) -> Result<Self, AttentionError> {
        config.validate()?;
        let kr = config.kv_row();
        let blocks = capacity / config.block_size;
        Ok(KvCache {
            kv_heads: config.kv_heads,
            head_dim: config.head_dim,
            block_size: config.block_size,
            capacity,
            len: 0,
            keys: vec![0.0; capacity * kr],
            values: vec![0.0; capacity * kr],
            key_means: vec![0.0; blocks * kr],
            value_means: vec![0.0; blocks * kr],
            key_sum: vec![0.0; kr],
            value_sum: vec![0.0; kr],
            scratch: Pattern::default(),
        })
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every token (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
        self.key_sum.fill(0.0);
        self.value_sum.fill(0.0);
    }

    pub(crate) fn matches(&self, c: &AttentionConfig) -> bool {
        self.kv_heads == c.kv_heads
            && self.head_dim == c.head_dim
            && self.block_size == c.block_size
    }

    /// Mean key of completed block `b`, all kv heads (`[kv_heads, head_dim]`), if complete.
    pub fn block_key_mean(&self, b: usize) -> Option<&[f32]> {
        let kr = self.kv_heads * self.head_dim;
        (b < self.len / self.block_size).then(|| &self.key_means[b * kr..(b + 1) * kr])
    }

    /// Appends one token's keys and values (`[kv_heads, head_dim]` each) without attending,
    /// e.g. to fill the cache from a prompt; completes a block mean every `block_size` tokens.
    pub fn push(&mut self, k1: &[f32], v1: &[f32]) -> Result<(), AttentionError> {
        let kr = self.kv_heads * self.head_dim;
        for (tensor, len) in [("k", k1.len()), ("v", v1.len())] {
            if len != kr {
                return Err(if len % kr == 0 {
                    AttentionError::StepTokens {
                        tensor,
                        tokens: len / kr,
                    }
                } else {
                    AttentionError::RaggedTensor {
                        tensor,
                        len,
                        row: kr,
                    }
                });
            }
        }
        self.append(k1, v1)
    }

    /// Appends one token (lengths already checked).
    pub(crate) fn append(&mut self, k1: &[f32], v1: &[f32]) -> Result<(), AttentionError> {
        if self.len == self.capacity {
            return Err(AttentionError::CacheFull {
                capacity: self.capacity,
            });
        }
        let kr = self.kv_heads * self.head_dim;
        let t = self.len;
        self.keys[t * kr..(t + 1) * kr].copy_from_slice(k1);
        self.values[t * kr..(t + 1) * kr].copy_from_slice(v1);
        axpy(1.0, k1, &mut self.key_sum);
        axpy(1.0, v1, &mut self.value_sum);
        self.len += 1;
        if self.len.is_multiple_of(self.block_size) {
            let b = self.len / self.block_size - 1;
            let inv = 1.0 / self.block_size as f32;
            let km = &mut self.key_means[b * kr..(b + 1) * kr];
            km.copy_from_slice(&self.key_sum);
            scale(inv, km);
            let vm = &mut self.value_means[b * kr..(b + 1) * kr];
            vm.copy_from_slice(&self.value_sum);
            scale(inv, vm);
            self.key_sum.fill(0.0);
            self.value_sum.fill(0.0);
        }
        Ok(())
    }

    pub(crate) fn source(&self) -> Source<'_> {
        let kr = self.kv_heads * self.head_dim;
        let blocks = self.len / self.block_size;
        Source {
            keys: &self.keys[..self.len * kr],
            values: &self.values[..self.len * kr],
            key_means: &self.key_means[..blocks * kr],
            value_means: &self.value_means[..blocks * kr],
        }
    }
}
