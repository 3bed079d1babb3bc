//! The architecture's hyper-parameters ([`PoseConfig`]), the bounds every configuration must
//! meet ([`PoseConfig::validate`]: whatever reads a configuration from a file or builds one from
//! options calls it before allocating anything), and the parameter and FLOP counts.

use core::fmt;

use crate::coco::JOINTS;

/// Width of the learned per-joint embedding fed to the skeleton-graph head.
pub const JOINT_EMBED: usize = 32;
/// Number of graph layers `f <- ReLU(Linear(Â f))` in the skeleton-graph head.
pub const GRAPH_LAYERS: usize = 2;
/// Outputs per sample: 17 joints × (x, y).
pub const OUTPUTS: usize = 2 * JOINTS;

/// Most values per token (antennas × subcarriers).
pub const MAX_TOKEN_LEN: usize = 65_535;
/// Most packets (tokens) per frame.
pub const MAX_PACKETS: usize = 4096;
/// Largest model width d.
pub const MAX_D: usize = 4096;
/// Most encoder layers (also what the runtime holds without allocating).
pub const MAX_LAYERS: usize = 16;
/// Largest graph-head width g.
pub const MAX_GRAPH: usize = 4096;
/// Most parameters (2^28: 1 GiB of f32, ~115× the largest preset).
pub const MAX_PARAMS: usize = 1 << 28;

/// The architecture: everything that decides the tensors and the computation. (Training
/// settings such as dropout and the preset's name live with the engine.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoseConfig {
    /// Receive antennas A.
    pub antennas: usize,
    /// Subcarriers S.
    pub subcarriers: usize,
    /// Packets per frame P: the number of tokens.
    pub packets: usize,
    /// Model width d.
    pub d: usize,
    /// Encoder layers L.
    pub layers: usize,
    /// Attention heads H (d must be a multiple).
    pub heads: usize,
    /// Graph-head width g; 0 when the model has no graph head.
    pub graph: usize,
}

/// A configuration outside the bounds: which field, its value, and the rule it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field's name (`antennas`, `subcarriers`, `packets`, `d`, `layers`, `heads`,
    /// `graph`; `parameters` for the total).
    pub field: &'static str,
    /// Its value.
    pub value: usize,
    /// What it must be.
    pub rule: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.rule)
    }
}

impl core::error::Error for ConfigError {}

impl PoseConfig {
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

    /// Width of one attention head (d / H).
    pub fn head_dim(&self) -> usize {
        self.d / self.heads
    }

    /// Checks every bound, in field order, before any size is computed from the fields (so
    /// nothing overflows and nothing huge is allocated for a hostile configuration).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, value, rule| Err(ConfigError { field, value, rule });
        for (field, value) in [
            ("antennas", self.antennas),
            ("subcarriers", self.subcarriers),
            ("packets", self.packets),
            ("d", self.d),
            ("layers", self.layers),
            ("heads", self.heads),
        ] {
            if value == 0 {
                return err(field, value, "must be at least 1");
            }
        }
        match self.antennas.checked_mul(self.subcarriers) {
            Some(t) if t <= MAX_TOKEN_LEN => {}
            _ => {
                return err(
                    "subcarriers",
                    self.subcarriers,
                    "antennas × subcarriers must be at most 65535",
                )
            }
        }
        if self.packets > MAX_PACKETS {
            return err("packets", self.packets, "must be at most 4096");
        }
        if self.d > MAX_D {
            return err("d", self.d, "must be at most 4096");
        }
        if self.layers > MAX_LAYERS {
            return err("layers", self.layers, "must be at most 16");
        }
        if !self.d.is_multiple_of(self.heads) {
            return err("heads", self.heads, "must divide d");
        }
        if self.graph > MAX_GRAPH {
            return err(
                "graph",
                self.graph,
                "must be at most 4096 (0: no graph head)",
            );
        }
        let params = self.param_count_u64();
        if params > MAX_PARAMS as u64 {
            return err(
                "parameters",
                usize::try_from(params).unwrap_or(usize::MAX),
                "the model must have at most 2^28 parameters",
            );
        }
        Ok(())
    }

    fn param_count_u64(&self) -> u64 {
        let (d, f, p, ff) = (
            self.d as u64,
            self.token_len() as u64,
            self.packets as u64,
            self.ffn() as u64,
        );
        let j = JOINTS as u64;
        let per_layer = 3 * d * d + 3 * d + d * d + d + ff * d + ff + d * ff + d + 4 * d;
        let mut n = d * f + d + p * d + self.layers as u64 * per_layer;
        n += d + 1 + d * d + d + 2 * j * d + 2 * j;
        if self.graph > 0 {
            let g = self.graph as u64;
            let e = JOINT_EMBED as u64;
            n += j * e + g * (d + e + 2) + g + GRAPH_LAYERS as u64 * (g * g + g) + 2 * g + 2;
        }
        n
    }

    /// Total number of parameters (equals the sum of [`crate::TensorSlot::len`]).
    pub fn param_count(&self) -> usize {
        self.param_count_u64() as usize
    }

    /// Floating-point operations of one forward pass for one sample, counting a multiply-add
    /// as 2 and only the matrix products (elementwise work is small); the graph head counted
    /// unfolded, with a dense `Â`.
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
        if self.graph > 0 {
            let (g, j) = (self.graph as u64, JOINTS as u64);
            fl += 2 * j * (d + JOINT_EMBED as u64 + 2) * g;
            fl += GRAPH_LAYERS as u64 * (2 * j * j * g + 2 * j * g * g);
            fl += 2 * j * g * 2;
        }
        fl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TensorSlot;

    fn micro() -> PoseConfig {
        PoseConfig {
            antennas: 3,
            subcarriers: 114,
            packets: 10,
            d: 64,
            layers: 1,
            heads: 2,
            graph: 56,
        }
    }

    #[test]
    fn param_count_is_the_sum_of_the_tensors() {
        for graph in [0, 1, 56, 96] {
            for layers in [1, 2, 4] {
                let c = PoseConfig {
                    graph,
                    layers,
                    ..micro()
                };
                let sum: usize = TensorSlot::all(&c).map(|s| s.len()).sum();
                assert_eq!(c.param_count(), sum, "graph {graph} layers {layers}");
            }
        }
        // flagship: the published 2,320,869 exactly.
        let flagship = PoseConfig {
            d: 256,
            layers: 4,
            heads: 8,
            graph: 96,
            ..micro()
        };
        assert_eq!(flagship.param_count(), 2_320_869);
    }

    /// nano at MM-Fi shape, by hand: embedding 2·10·342·48 = 328,320; one layer
    /// 2·10·48·144 + 4·10²·48 + 2·10·48² + 4·10·48·96 = 387,840; pooling 4·10·48 = 1,920;
    /// head 2·48² + 2·48·34 = 7,872.
    #[test]
    fn flops_of_nano_by_hand() {
        let nano = PoseConfig {
            d: 48,
            graph: 0,
            ..micro()
        };
        assert_eq!(nano.flops_per_forward(), 328_320 + 387_840 + 1_920 + 7_872);
    }

    #[test]
    fn validate_rejects_each_bad_field_by_name() {
        assert_eq!(micro().validate(), Ok(()));
        let cases: [(PoseConfig, &str); 9] = [
            (
                PoseConfig {
                    heads: 0,
                    ..micro()
                },
                "heads",
            ),
            (
                PoseConfig {
                    heads: 5,
                    ..micro()
                },
                "heads",
            ),
            (
                PoseConfig {
                    d: 65_536,
                    ..micro()
                },
                "d",
            ),
            (
                PoseConfig {
                    layers: 1_000_000,
                    ..micro()
                },
                "layers",
            ),
            (
                PoseConfig {
                    antennas: 0,
                    ..micro()
                },
                "antennas",
            ),
            (
                PoseConfig {
                    antennas: usize::MAX,
                    ..micro()
                },
                "subcarriers",
            ),
            (
                PoseConfig {
                    packets: 5000,
                    ..micro()
                },
                "packets",
            ),
            (
                PoseConfig {
                    graph: 5000,
                    ..micro()
                },
                "graph",
            ),
            (
                PoseConfig {
                    d: 4096,
                    heads: 1,
                    layers: 16,
                    ..micro()
                },
                "parameters",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{c:?}: {e}");
        }
    }
}
