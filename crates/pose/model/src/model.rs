//! The pose model: per-sample standardisation, token embedding, post-norm Transformer
//! encoder, attention pooling, keypoint head and the optional skeleton-graph refinement,
//! with a batched forward that saves what the explicit backward needs in a reusable
//! [`Workspace`] (no allocation per step once the workspace has its size).

use crate::blocks::*;
use crate::config::{Layout, ModelConfig};
use crate::rng::Rng;
use rayon::prelude::*;

pub use csipose_spec::act::{GRAPH_SCALE, STANDARDISE_EPS};
pub use csipose_spec::config::OUTPUTS;

/// `Â`: row-normalised `I + A` over the graph bones ([`csipose_spec::coco::adjacency`]),
/// `[17, 17]` row-major.
pub fn skeleton_adjacency() -> Vec<f32> {
    csipose_spec::coco::adjacency().concat()
}

/// A model: its configuration and its layers, each knowing where its tensors sit. Parameters
/// live outside, in a flat `Vec<f32>` laid out by [`ModelConfig::layout`], so optimiser, EMA
/// and checkpoints treat them as one buffer.
#[derive(Clone, Debug)]
pub struct Model {
    pub cfg: ModelConfig,
    pub layout: Layout,
    embed: Embedding,
    encoder: Vec<EncoderLayer>,
    pool: AttentionPool,
    head: KeypointHead,
    graph: Option<GraphRefine>,
}

/// Activations of a forward pass (what the backward needs) and the backward's gradient
/// buffers, for a batch size; grown on demand and reused across steps.
#[derive(Default)]
pub struct Workspace {
    batch: usize,
    dropout_used: bool,
    /// Standardised tokens `[batch·P, A·S]`.
    tokens: Vec<f32>,
    /// Embedded tokens plus positions `[batch·P, d]`: the first encoder layer's input.
    embedded: Vec<f32>,
    encoder: Vec<EncoderActs>,
    pool: PoolActs,
    head: HeadActs,
    graph: GraphActs,
    /// The model output `[batch, 34]` of the last forward.
    pub out: Vec<f32>,
    /// `∂loss/∂h` of the hidden states between encoder layers `[batch·P, d]`.
    d_hidden: Vec<f32>,
    d_encoder: EncoderGrads,
    /// `∂loss/∂z` of the pooled vectors `[batch, d]`.
    d_z: Vec<f32>,
    /// `∂loss/∂kp0` of the coarse keypoints `[batch, 34]`.
    d_kp0: Vec<f32>,
    d_head: HeadGrads,
    d_graph: GraphGrads,
}

impl Model {
    pub fn new(cfg: ModelConfig) -> Model {
        assert!(
            cfg.d.is_multiple_of(cfg.heads),
            "d must be a multiple of heads"
        );
        let layout = cfg.layout();
        let (p, d) = (cfg.packets, cfg.d);
        Model {
            embed: Embedding::new(&layout, p, d),
            encoder: (0..cfg.layers)
                .map(|i| EncoderLayer::new(&layout, i, cfg.heads, p))
                .collect(),
            pool: AttentionPool::new(&layout, p, d),
            head: KeypointHead::new(&layout, d),
            graph: cfg
                .graph
                .map(|g| GraphRefine::new(&layout, skeleton_adjacency(), d, g)),
            layout,
            cfg,
        }
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        self.layout.total
    }

    /// PyTorch-like initial parameters: Linear weights and biases uniform in ±1/√fan_in,
    /// attention in-projection Xavier-uniform with zero biases, LayerNorm (1, 0),
    /// positional and joint embeddings N(0, 0.02²).
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut p = vec![0.0f32; self.layout.total];
        for t in &self.layout.tensors {
            let dst = &mut p[t.offset..t.offset + t.len];
            let name = t.name.as_str();
            if name.ends_with("norm1.weight") || name.ends_with("norm2.weight") {
                dst.fill(1.0);
            } else if name.ends_with("norm1.bias")
                || name.ends_with("norm2.bias")
                || name.ends_with("in_proj_bias")
                || name.ends_with("out_proj.bias")
            {
                dst.fill(0.0);
            } else if name == "pos_embed" || name == "graph.joint_embed" {
                dst.iter_mut().for_each(|v| *v = 0.02 * rng.normal() as f32);
            } else if name.ends_with("in_proj_weight") {
                let bound = (6.0 / (t.shape[0] + t.shape[1]) as f64).sqrt();
                dst.iter_mut()
                    .for_each(|v| *v = ((2.0 * rng.uniform() - 1.0) * bound) as f32);
            } else {
                // weight [out, in] or bias [out] of a Linear: fan_in from the weight.
                let wname = name.replace(".bias", ".weight");
                let fan_in = self
                    .layout
                    .get(&wname)
                    .map(|w| w.shape[1])
                    .unwrap_or(t.shape[0]);
                let bound = 1.0 / (fan_in as f64).sqrt();
                dst.iter_mut()
                    .for_each(|v| *v = ((2.0 * rng.uniform() - 1.0) * bound) as f32);
            }
        }
        p
    }

    /// Sizes every buffer of `ws` for `batch` samples.
    fn prepare(&self, ws: &mut Workspace, batch: usize) {
        let c = &self.cfg;
        let (p, d, f, ffn) = (c.packets, c.d, c.token_len(), c.ffn());
        let rows = batch * p;
        if ws.batch >= batch && !ws.out.is_empty() {
            return;
        }
        ws.batch = batch;
        grow(&mut ws.tokens, rows * f);
        grow(&mut ws.embedded, rows * d);
        ws.encoder.resize_with(c.layers, EncoderActs::default);
        for a in ws.encoder.iter_mut() {
            a.grow(batch, p, d, c.heads, ffn);
        }
        ws.pool.grow(batch, p, d);
        ws.head.grow(batch, d);
        grow(&mut ws.out, batch * OUTPUTS);
        grow(&mut ws.d_hidden, rows * d);
        ws.d_encoder.grow(rows, d, ffn);
        grow(&mut ws.d_z, batch * d);
        grow(&mut ws.d_kp0, batch * OUTPUTS);
        ws.d_head.grow(batch, d);
        if let Some(g) = c.graph {
            ws.graph.grow(batch, d, g);
            ws.d_graph.grow(batch, d, g);
        }
    }

    /// Forward pass for `batch` samples `x [batch, A, S, P]` (raw, unstandardised).
    /// `dropout_key` is `Some(key)` in training (dropout on) and `None` in evaluation.
    /// Returns the keypoints `[batch, 34]` (also left in `ws.out`).
    pub fn forward<'w>(
        &self,
        params: &[f32],
        x: &[f32],
        batch: usize,
        dropout_key: Option<u64>,
        ws: &'w mut Workspace,
    ) -> &'w [f32] {
        let c = &self.cfg;
        assert_eq!(x.len(), batch * c.frame_len(), "input length");
        assert_eq!(params.len(), self.layout.total, "parameter count");
        self.prepare(ws, batch);
        let mut drop = DropoutSites::new(dropout_key, c.dropout);
        ws.dropout_used = drop.on();

        standardise_tokens(x, &mut ws.tokens, batch, c.token_len(), c.packets);
        self.embed
            .forward(params, &ws.tokens, &mut ws.embedded, batch);
        for (li, layer) in self.encoder.iter().enumerate() {
            let (done, rest) = ws.encoder.split_at_mut(li);
            let x: &[f32] = match li {
                0 => &ws.embedded,
                _ => &done[li - 1].out,
            };
            layer.forward(params, x, &mut rest[0], batch, &mut drop);
        }
        let encoded = match c.layers {
            0 => &ws.embedded,
            n => &ws.encoder[n - 1].out,
        };
        self.pool.forward(params, encoded, &mut ws.pool, batch);
        self.head
            .forward(params, &ws.pool.z, &mut ws.head, batch, &mut drop);
        match &self.graph {
            Some(graph) => graph.forward(
                params,
                &ws.pool.z,
                &ws.head.kp0,
                &mut ws.graph,
                &mut ws.out,
                batch,
            ),
            None => {
                let n = batch * OUTPUTS;
                ws.out[..n].copy_from_slice(&ws.head.kp0[..n]);
            }
        }
        &ws.out[..batch * OUTPUTS]
    }

    /// The attention-pooled encoder vectors `z [batch, d]` of the last [`Model::forward`] (the
    /// input of the keypoint head): the pose model's per-frame embedding, for downstream heads
    /// such as the activity classifier. `batch` must be the last forward's batch.
    pub fn pooled<'w>(&self, ws: &'w Workspace, batch: usize) -> &'w [f32] {
        assert!(
            batch <= ws.batch,
            "batch {batch} > last forward's {}",
            ws.batch
        );
        &ws.pool.z[..batch * self.cfg.d]
    }

    /// Backward pass after [`Model::forward`] with the same batch: accumulates the gradient of
    /// the loss into `grads` given `dout = ∂loss/∂output [batch, 34]`.
    pub fn backward(
        &self,
        params: &[f32],
        batch: usize,
        dout: &[f32],
        grads: &mut [f32],
        ws: &mut Workspace,
    ) {
        let c = &self.cfg;
        let n_out = batch * OUTPUTS;
        assert_eq!(grads.len(), self.layout.total);
        let dropped = c.dropout > 0.0 && ws.dropout_used;

        ws.d_z[..batch * c.d].fill(0.0);
        ws.d_kp0[..n_out].copy_from_slice(&dout[..n_out]);
        if let Some(graph) = &self.graph {
            graph.backward(
                params,
                grads,
                &ws.graph,
                dout,
                &mut ws.d_z,
                &mut ws.d_kp0,
                &mut ws.d_graph,
                batch,
            );
        }
        self.head.backward(
            params,
            grads,
            &ws.pool.z,
            &ws.head,
            &mut ws.d_kp0,
            &mut ws.d_z,
            &mut ws.d_head,
            batch,
            dropped,
        );
        let encoded = match c.layers {
            0 => &ws.embedded,
            n => &ws.encoder[n - 1].out,
        };
        self.pool.backward(
            params,
            grads,
            encoded,
            &ws.pool,
            &ws.d_z,
            &mut ws.d_hidden,
            batch,
        );
        for (li, layer) in self.encoder.iter().enumerate().rev() {
            let x: &[f32] = match li {
                0 => &ws.embedded,
                _ => &ws.encoder[li - 1].out,
            };
            layer.backward(
                params,
                grads,
                x,
                &ws.encoder[li],
                &mut ws.d_hidden,
                &mut ws.d_encoder,
                batch,
                dropped,
            );
        }
        self.embed
            .backward(params, grads, &ws.tokens, &ws.d_hidden, batch);
    }
}

/// Standardises each sample and transposes `[A·S, P]` to tokens `[P, A·S]`.
fn standardise_tokens(x: &[f32], tokens: &mut [f32], batch: usize, f: usize, p: usize) {
    let fl = f * p;
    tokens[..batch * fl]
        .par_chunks_mut(fl)
        .enumerate()
        .for_each(|(b, tb)| {
            let xs = &x[b * fl..(b + 1) * fl];
            let (mean, inv) = standardise_stats(xs);
            for (feat, row) in xs.chunks_exact(p).enumerate() {
                for (tokn, &v) in row.iter().enumerate() {
                    tb[tokn * f + feat] = (v - mean) * inv;
                }
            }
        });
}

/// Sum of `f(v)` over `xs`, in eight f32 lanes per block of 512 values, blocks added in f64.
#[inline]
fn sum_lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0.0f64;
    for block in xs.chunks(512) {
        let mut acc = [0.0f32; 8];
        let mut it = block.chunks_exact(8);
        for c in &mut it {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        let tail: f32 = it.remainder().iter().map(|&v| f(v)).sum();
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// Mean and `1 / (std + eps)` of one sample (population std).
pub fn standardise_stats(xs: &[f32]) -> (f32, f32) {
    let n = xs.len() as f64;
    let mean = (sum_lanes(xs, |v| v) / n) as f32;
    let var = sum_lanes(xs, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var.sqrt() as f32 + STANDARDISE_EPS))
}
