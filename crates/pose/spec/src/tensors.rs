//! Every parameter tensor of a [`PoseConfig`], in the one order training layouts, checkpoints
//! and `.csm` files share, with its PyTorch-style name, shape and orientation.
//!
//! A slot's shape is given as stored in a `.csm` file: a Linear weight is `rows = in`,
//! `cols = out` (`[in, out]`, so a token-major product streams it row by row); the training
//! layout and checkpoints hold the same weight as PyTorch does, `[out, in]`
//! ([`TensorSlot::training_shape`]).

use core::fmt;

use crate::coco::JOINTS;
use crate::config::{PoseConfig, GRAPH_LAYERS, JOINT_EMBED};

/// Tensors per encoder layer.
pub const PER_LAYER: usize = 12;
/// Tensors after the encoder and before the graph head (pooling score, head.0, head.3).
const HEAD_TENSORS: usize = 6;
/// Tensors of the graph head (joint embedding, input, layers, output).
const GRAPH_TENSORS: usize = 3 + 2 * GRAPH_LAYERS + 2;

/// One parameter tensor: what it is, its stored shape and whether it may be quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// PyTorch-style name; `*` stands for [`TensorSlot::layer`].
    pub name: &'static str,
    /// Encoder or graph layer index substituted for `*` in the name.
    pub layer: Option<usize>,
    /// Stored rows (for a Linear weight: its input width).
    pub rows: usize,
    /// Stored columns (for a Linear weight: its output width); 1 for a vector.
    pub cols: usize,
    /// Whether this is a Linear weight matrix (stored `[in, out]`, may be int8/int4).
    pub linear: bool,
}

impl fmt::Display for TensorSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.layer, self.name.split_once('*')) {
            (Some(l), Some((a, b))) => write!(f, "{a}{l}{b}"),
            _ => f.write_str(self.name),
        }
    }
}

impl PoseConfig {
    /// Number of parameter tensors.
    pub fn tensor_count(&self) -> usize {
        3 + PER_LAYER * self.layers + HEAD_TENSORS + if self.graph > 0 { GRAPH_TENSORS } else { 0 }
    }
}

impl TensorSlot {
    const fn new(
        name: &'static str,
        layer: Option<usize>,
        rows: usize,
        cols: usize,
        linear: bool,
    ) -> Self {
        TensorSlot {
            name,
            layer,
            rows,
            cols,
            linear,
        }
    }

    /// The `i`-th tensor of `cfg`, in order; `None` past the last.
    pub fn nth(cfg: &PoseConfig, i: usize) -> Option<TensorSlot> {
        let (d, f, p, ff) = (cfg.d, cfg.token_len(), cfg.packets, cfg.ffn());
        let w = |n, r, c| Some(TensorSlot::new(n, None, r, c, true));
        let v = |n, r, c| Some(TensorSlot::new(n, None, r, c, false));
        match i {
            0 => return w("embed.weight", f, d),
            1 => return v("embed.bias", d, 1),
            2 => return v("pos_embed", p, d),
            _ => {}
        }
        let mut i = i - 3;
        if i < PER_LAYER * cfg.layers {
            let l = Some(i / PER_LAYER);
            let (name, r, c, lin) = match i % PER_LAYER {
                0 => ("encoder.layers.*.self_attn.in_proj_weight", d, 3 * d, true),
                1 => ("encoder.layers.*.self_attn.in_proj_bias", 3 * d, 1, false),
                2 => ("encoder.layers.*.self_attn.out_proj.weight", d, d, true),
                3 => ("encoder.layers.*.self_attn.out_proj.bias", d, 1, false),
                4 => ("encoder.layers.*.linear1.weight", d, ff, true),
                5 => ("encoder.layers.*.linear1.bias", ff, 1, false),
                6 => ("encoder.layers.*.linear2.weight", ff, d, true),
                7 => ("encoder.layers.*.linear2.bias", d, 1, false),
                8 => ("encoder.layers.*.norm1.weight", d, 1, false),
                9 => ("encoder.layers.*.norm1.bias", d, 1, false),
                10 => ("encoder.layers.*.norm2.weight", d, 1, false),
                _ => ("encoder.layers.*.norm2.bias", d, 1, false),
            };
            return Some(TensorSlot::new(name, l, r, c, lin));
        }
        i -= PER_LAYER * cfg.layers;
        match i {
            0 => return w("pool.score.weight", d, 1),
            1 => return v("pool.score.bias", 1, 1),
            2 => return w("head.0.weight", d, d),
            3 => return v("head.0.bias", d, 1),
            4 => return w("head.3.weight", d, 2 * JOINTS),
            5 => return v("head.3.bias", 2 * JOINTS, 1),
            _ => {}
        }
        let g = cfg.graph;
        if g == 0 {
            return None;
        }
        i -= HEAD_TENSORS;
        match i {
            0 => v("graph.joint_embed", JOINTS, JOINT_EMBED),
            1 => w("graph.input.weight", d + JOINT_EMBED + 2, g),
            2 => v("graph.input.bias", g, 1),
            _ if i < 3 + 2 * GRAPH_LAYERS => {
                let l = Some((i - 3) / 2);
                Some(if (i - 3).is_multiple_of(2) {
                    TensorSlot::new("graph.layers.*.weight", l, g, g, true)
                } else {
                    TensorSlot::new("graph.layers.*.bias", l, g, 1, false)
                })
            }
            _ if i == 3 + 2 * GRAPH_LAYERS => w("graph.output.weight", g, 2),
            _ if i == 4 + 2 * GRAPH_LAYERS => v("graph.output.bias", 2, 1),
            _ => None,
        }
    }

    /// Every tensor of `cfg`, in order.
    pub fn all(cfg: &PoseConfig) -> impl Iterator<Item = TensorSlot> + '_ {
        (0..cfg.tensor_count()).map_while(move |i| TensorSlot::nth(cfg, i))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the tensor has no elements (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimensions as stored in a `.csm` file: 1 for a vector, else 2.
    pub fn stored_rank(&self) -> usize {
        if self.cols == 1 && !self.linear {
            1
        } else {
            2
        }
    }

    /// The shape in the training layout and checkpoints (PyTorch's): `[out, in]` for a Linear
    /// weight, `[n]` for a vector, else `[rows, cols]`; the first `rank` entries are used.
    pub fn training_shape(&self) -> ([usize; 2], usize) {
        if self.linear {
            ([self.cols, self.rows], 2)
        } else if self.cols == 1 {
            ([self.rows, 0], 1)
        } else {
            ([self.rows, self.cols], 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_orientation_and_count() {
        let c = PoseConfig {
            antennas: 3,
            subcarriers: 114,
            packets: 10,
            d: 48,
            layers: 2,
            heads: 2,
            graph: 0,
        };
        assert_eq!(TensorSlot::all(&c).count(), c.tensor_count());
        assert_eq!(TensorSlot::nth(&c, c.tensor_count()), None);
        let s = TensorSlot::nth(&c, 3 + PER_LAYER + 4).unwrap();
        let mut name = [0u8; 64];
        let mut w = Buf(&mut name, 0);
        fmt::write(&mut w, format_args!("{s}")).unwrap();
        let n = w.1;
        assert_eq!(&name[..n], b"encoder.layers.1.linear1.weight");
        assert_eq!((s.rows, s.cols, s.linear), (48, 96, true));
        assert_eq!(s.training_shape(), ([96, 48], 2));
        let pool = TensorSlot::nth(&c, 3 + 2 * PER_LAYER).unwrap();
        assert_eq!(pool.training_shape(), ([1, 48], 2));
        let pos = TensorSlot::nth(&c, 2).unwrap();
        assert_eq!(
            (pos.training_shape(), pos.stored_rank()),
            (([10, 48], 2), 2)
        );
        let bias = TensorSlot::nth(&c, 1).unwrap();
        assert_eq!(
            (bias.training_shape(), bias.stored_rank()),
            (([48, 0], 1), 1)
        );
    }

    struct Buf<'a>(&'a mut [u8], usize);
    impl fmt::Write for Buf<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let b = s.as_bytes();
            self.0[self.1..self.1 + b.len()].copy_from_slice(b);
            self.1 += b.len();
            Ok(())
        }
    }
}
