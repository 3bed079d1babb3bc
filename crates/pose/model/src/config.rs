//! Model configurations (nano … flagship): the presets, the training settings that go with
//! the architecture (name, dropout), and the flat parameter buffer's layout with its weight-decay
//! rule. The architecture
//! itself (bounds, tensor names, shapes and order, parameter and FLOP counts) is
//! [`csipose_spec`]'s, reached through [`ModelConfig::arch`].

use csipose_spec::{PoseConfig, TensorSlot};
use serde::{Deserialize, Serialize};

pub use csipose_spec::coco::JOINTS;
pub use csipose_spec::config::{GRAPH_LAYERS, JOINT_EMBED};

/// One member of the model family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub name: String,
    /// Receive antennas (A).
    pub antennas: usize,
    /// Subcarriers (S).
    pub subcarriers: usize,
    /// Packets per frame (P): the number of tokens.
    pub packets: usize,
    /// Model width d.
    pub d: usize,
    /// Encoder layers L.
    pub layers: usize,
    /// Attention heads H.
    pub heads: usize,
    /// Width g of the skeleton-graph head; `None` for no graph head.
    pub graph: Option<usize>,
    /// Dropout probability (attention output, FFN, head).
    pub dropout: f32,
}

/// The published parameter counts the family is specified by (from the project's issue 4).
pub const PUBLISHED: [(&str, usize); 6] = [
    ("nano", 39_971),
    ("micro", 75_237),
    ("tiny", 210_949),
    ("small", 348_005),
    ("base", 726_437),
    ("flagship", 2_320_869),
];

/// Names of all presets, smallest first.
pub const PRESETS: [&str; 6] = ["nano", "micro", "tiny", "small", "base", "flagship"];

impl ModelConfig {
    /// A preset for MM-Fi-shaped input `[3, 114, 10]`.
    pub fn preset(name: &str) -> Option<ModelConfig> {
        Self::preset_for(name, 3, 114, 10)
    }

    /// A preset for input `[antennas, subcarriers, packets]`.
    ///
    /// The graph widths g of micro … base are the integers that bring the parameter count
    /// closest to the published count (see [`ModelConfig::closest_graph_width`]);
    /// nano (no graph head) and flagship (g = 96) match exactly.
    pub fn preset_for(name: &str, a: usize, s: usize, p: usize) -> Option<ModelConfig> {
        let (d, layers, heads, graph) = match name {
            "nano" => (48, 1, 2, None),
            "micro" => (64, 1, 2, Some(56)),
            "tiny" => (96, 2, 4, Some(57)),
            "small" => (128, 2, 4, Some(58)),
            "base" => (160, 3, 4, Some(58)),
            "flagship" => (256, 4, 8, Some(96)),
            _ => return None,
        };
        Some(ModelConfig {
            name: name.into(),
            antennas: a,
            subcarriers: s,
            packets: p,
            d,
            layers,
            heads,
            graph,
            dropout: 0.1,
        })
    }

    /// The architecture (what the `.csm` header stores).
    pub fn arch(&self) -> PoseConfig {
        PoseConfig {
            antennas: self.antennas,
            subcarriers: self.subcarriers,
            packets: self.packets,
            d: self.d,
            layers: self.layers,
            heads: self.heads,
            graph: self.graph.unwrap_or(0),
        }
    }

    /// A configuration named `name` with architecture `arch` (graph width 0: no graph head).
    pub fn from_arch(name: &str, arch: &PoseConfig, dropout: f32) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            antennas: arch.antennas,
            subcarriers: arch.subcarriers,
            packets: arch.packets,
            d: arch.d,
            layers: arch.layers,
            heads: arch.heads,
            graph: (arch.graph > 0).then_some(arch.graph),
            dropout,
        }
    }

    /// Checks the architecture's bounds ([`PoseConfig::validate`]), that a graph head has a
    /// width, and that the dropout is a probability; call it on any configuration read from a
    /// file before building a model from it. The message names the field, its value and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.graph == Some(0) {
            return Err("graph = 0: a graph head needs a width of at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout = {}: must be in [0, 1)", self.dropout));
        }
        self.arch().validate().map_err(|e| e.to_string())
    }

    /// Values per token (A·S).
    pub fn token_len(&self) -> usize {
        self.antennas * self.subcarriers
    }

    /// Values per input frame (A·S·P).
    pub fn frame_len(&self) -> usize {
        self.token_len() * self.packets
    }

    /// FFN width (2d).
    pub fn ffn(&self) -> usize {
        2 * self.d
    }

    /// Every parameter tensor in [`TensorSlot`] order: name (PyTorch style), shape (weights
    /// `[out, in]`) and offset into the flat buffer.
    pub fn layout(&self) -> Layout {
        let mut l = Layout::default();
        for slot in TensorSlot::all(&self.arch()) {
            let (shape, rank) = slot.training_shape();
            l.tensors.push(TensorSpec {
                name: slot.to_string(),
                shape: shape[..rank].to_vec(),
                offset: l.total,
                len: slot.len(),
                linear: slot.linear,
            });
            l.total += slot.len();
        }
        l
    }

    /// Total number of parameters.
    pub fn param_count(&self) -> usize {
        self.arch().param_count()
    }

    /// The published parameter count for this preset name, if any.
    pub fn published_count(&self) -> Option<usize> {
        PUBLISHED
            .iter()
            .find(|(n, _)| *n == self.name)
            .map(|&(_, c)| c)
    }

    /// The graph width g (1..=1024) whose parameter count is closest to `target`.
    pub fn closest_graph_width(&self, target: usize) -> usize {
        (1..=1024)
            .min_by_key(|&g| {
                let mut c = self.clone();
                c.graph = Some(g);
                (c.param_count() as i64 - target as i64).unsigned_abs()
            })
            .unwrap()
    }

    /// Floating-point operations of one forward pass for one sample
    /// ([`PoseConfig::flops_per_forward`]).
    pub fn flops_per_forward(&self) -> u64 {
        self.arch().flops_per_forward()
    }
}

/// One named parameter tensor inside the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
    /// Whether it is a Linear weight matrix (`[out, in]`; the only kind that may be quantized).
    pub linear: bool,
}

/// Where each parameter tensor lives in the flat buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    pub tensors: Vec<TensorSpec>,
    pub total: usize,
}

impl Layout {
    /// The tensor with this name.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Offset of a tensor that must exist (panics on a programming error).
    pub fn offset(&self, name: &str) -> usize {
        self.get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .offset
    }
}

/// Whether AdamW's weight decay applies to a tensor: only the 2-D weight matrices of Linear
/// layers (not biases, LayerNorm, embeddings or the attention-pooling score).
pub fn decays(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with("weight") && !name.starts_with("pool.")
}

/// The pose model's decay rule ([`decays`]) element by element, for
/// `csipose_optim::AdamW::new(&layout, weight_decay)`.
impl csipose_optim::DecayMask for Layout {
    fn decay_mask(&self) -> Vec<bool> {
        let mut decay = vec![false; self.total];
        for t in &self.tensors {
            if decays(&t.name, &t.shape) {
                decay[t.offset..t.offset + t.len].fill(true);
            }
        }
        decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_and_flagship_match_exactly() {
        assert_eq!(ModelConfig::preset("nano").unwrap().param_count(), 39_971);
        assert_eq!(
            ModelConfig::preset("flagship").unwrap().param_count(),
            2_320_869
        );
    }

    #[test]
    fn presets_use_the_closest_graph_width() {
        for (name, published) in PUBLISHED {
            let c = ModelConfig::preset(name).unwrap();
            if let Some(g) = c.graph {
                if name != "flagship" {
                    assert_eq!(g, c.closest_graph_width(published), "{name}");
                }
            }
        }
    }

    #[test]
    fn layout_is_contiguous() {
        let c = ModelConfig::preset("micro").unwrap();
        let l = c.layout();
        let mut off = 0;
        for t in &l.tensors {
            assert_eq!(t.offset, off);
            off += t.len;
        }
        assert_eq!(off, l.total);
    }
}
