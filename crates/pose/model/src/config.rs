//! Model configurations (nano … flagship): sizes, the parameter layout with PyTorch-style
//! tensor names, parameter counts and FLOPs per forward pass.

use serde::{Deserialize, Serialize};

/// Number of keypoints predicted (COCO-17).
pub const JOINTS: usize = 17;
/// Size of the learned per-joint embedding fed to the skeleton-graph head.
pub const JOINT_EMBED: usize = 32;
/// Number of graph layers `f <- ReLU(Linear(Â f))` in the skeleton-graph head.
pub const GRAPH_LAYERS: usize = 2;

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

    /// Every parameter tensor: name (PyTorch style), shape and offset into the flat buffer.
    pub fn layout(&self) -> Layout {
        let (d, f, p) = (self.d, self.token_len(), self.packets);
        let mut l = Layout::default();
        l.push("embed.weight", &[d, f]);
        l.push("embed.bias", &[d]);
        l.push("pos_embed", &[p, d]);
        for i in 0..self.layers {
            let pre = format!("encoder.layers.{i}");
            l.push(&format!("{pre}.self_attn.in_proj_weight"), &[3 * d, d]);
            l.push(&format!("{pre}.self_attn.in_proj_bias"), &[3 * d]);
            l.push(&format!("{pre}.self_attn.out_proj.weight"), &[d, d]);
            l.push(&format!("{pre}.self_attn.out_proj.bias"), &[d]);
            l.push(&format!("{pre}.linear1.weight"), &[self.ffn(), d]);
            l.push(&format!("{pre}.linear1.bias"), &[self.ffn()]);
            l.push(&format!("{pre}.linear2.weight"), &[d, self.ffn()]);
            l.push(&format!("{pre}.linear2.bias"), &[d]);
            l.push(&format!("{pre}.norm1.weight"), &[d]);
            l.push(&format!("{pre}.norm1.bias"), &[d]);
            l.push(&format!("{pre}.norm2.weight"), &[d]);
            l.push(&format!("{pre}.norm2.bias"), &[d]);
        }
        l.push("pool.score.weight", &[1, d]);
        l.push("pool.score.bias", &[1]);
        l.push("head.0.weight", &[d, d]);
        l.push("head.0.bias", &[d]);
        l.push("head.3.weight", &[2 * JOINTS, d]);
        l.push("head.3.bias", &[2 * JOINTS]);
        if let Some(g) = self.graph {
            l.push("graph.joint_embed", &[JOINTS, JOINT_EMBED]);
            l.push("graph.input.weight", &[g, d + JOINT_EMBED + 2]);
            l.push("graph.input.bias", &[g]);
            for i in 0..GRAPH_LAYERS {
                l.push(&format!("graph.layers.{i}.weight"), &[g, g]);
                l.push(&format!("graph.layers.{i}.bias"), &[g]);
            }
            l.push("graph.output.weight", &[2, g]);
            l.push("graph.output.bias", &[2]);
        }
        l
    }

    /// Total number of parameters.
    pub fn param_count(&self) -> usize {
        self.layout().total
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

    /// Floating-point operations of one forward pass for one sample, counting a
    /// multiply-add as 2 and only the matrix products (elementwise work is small).
    pub fn flops_per_forward(&self) -> u64 {
        let (d, f, p, dff) = (
            self.d as u64,
            self.token_len() as u64,
            self.packets as u64,
            self.ffn() as u64,
        );
        let mut fl = 2 * p * f * d;
        fl += self.layers as u64
            * (2 * p * d * 3 * d + 4 * p * p * d + 2 * p * d * d + 4 * p * d * dff);
        fl += 4 * p * d;
        fl += 2 * d * d + 2 * d * 2 * JOINTS as u64;
        if let Some(g) = self.graph {
            let (g, j) = (g as u64, JOINTS as u64);
            fl += 2 * j * (d + JOINT_EMBED as u64 + 2) * g;
            fl += GRAPH_LAYERS as u64 * (2 * j * j * g + 2 * j * g * g);
            fl += 2 * j * g * 2;
        }
        fl
    }
}

/// One named parameter tensor inside the flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Where each parameter tensor lives in the flat buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    pub tensors: Vec<TensorSpec>,
    pub total: usize,
}

impl Layout {
    fn push(&mut self, name: &str, shape: &[usize]) {
        let len = shape.iter().product();
        self.tensors.push(TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.total,
            len,
        });
        self.total += len;
    }

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
