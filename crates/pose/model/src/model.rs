//! The pose model: per-sample standardisation, token embedding, post-norm Transformer
//! encoder, attention pooling, keypoint head and the optional skeleton-graph refinement,
//! with a batched forward that saves what the explicit backward needs in a reusable
//! [`Workspace`] (no allocation per step once the workspace has its size).

use crate::config::{Layout, ModelConfig, GRAPH_LAYERS, JOINTS, JOINT_EMBED};
use crate::layers::*;
use crate::rng::{splitmix64, Rng};
use rayon::prelude::*;

pub use csipose_spec::act::{GRAPH_SCALE, STANDARDISE_EPS};
pub use csipose_spec::config::OUTPUTS;

/// `Â`: row-normalised `I + A` over the graph bones ([`csipose_spec::coco::adjacency`]),
/// `[17, 17]` row-major.
pub fn skeleton_adjacency() -> Vec<f32> {
    csipose_spec::coco::adjacency().concat()
}

/// Offsets of one encoder layer's tensors in the flat parameter buffer.
#[derive(Clone, Debug)]
struct LayerOffsets {
    in_w: usize,
    in_b: usize,
    out_w: usize,
    out_b: usize,
    l1_w: usize,
    l1_b: usize,
    l2_w: usize,
    l2_b: usize,
    n1_w: usize,
    n1_b: usize,
    n2_w: usize,
    n2_b: usize,
}

/// A model: its configuration and where its tensors sit. Parameters live outside, in a flat
/// `Vec<f32>` laid out by [`ModelConfig::layout`], so optimiser, EMA and checkpoints treat
/// them as one buffer.
#[derive(Clone, Debug)]
pub struct Model {
    pub cfg: ModelConfig,
    pub layout: Layout,
    adj: Vec<f32>,
    emb_w: usize,
    emb_b: usize,
    pos: usize,
    layers: Vec<LayerOffsets>,
    pool_w: usize,
    pool_b: usize,
    h0_w: usize,
    h0_b: usize,
    h3_w: usize,
    h3_b: usize,
    graph: Option<GraphOffsets>,
}

#[derive(Clone, Debug)]
struct GraphOffsets {
    g: usize,
    embed: usize,
    in_w: usize,
    in_b: usize,
    layer_w: Vec<usize>,
    layer_b: Vec<usize>,
    out_w: usize,
    out_b: usize,
}

/// Saved activations of one encoder layer.
#[derive(Default)]
struct LayerCache {
    qkv: Vec<f32>,
    probs: Vec<f32>,
    ctx: Vec<f32>,
    attn_mask: Vec<f32>,
    r1: Vec<f32>,
    mean1: Vec<f32>,
    rstd1: Vec<f32>,
    h1: Vec<f32>,
    f1: Vec<f32>,
    g1: Vec<f32>,
    ff_mask1: Vec<f32>,
    ff: Vec<f32>,
    ff_mask2: Vec<f32>,
    r2: Vec<f32>,
    mean2: Vec<f32>,
    rstd2: Vec<f32>,
    out: Vec<f32>,
}

/// Activation and gradient buffers for a batch size; grown on demand, reused across steps.
#[derive(Default)]
pub struct Workspace {
    batch: usize,
    dropout_used: bool,
    tok: Vec<f32>,
    h0: Vec<f32>,
    layers: Vec<LayerCache>,
    pool_probs: Vec<f32>,
    z: Vec<f32>,
    u: Vec<f32>,
    ug: Vec<f32>,
    head_mask: Vec<f32>,
    kp0: Vec<f32>,
    gin: Vec<f32>,
    gf: Vec<Vec<f32>>,
    gm: Vec<Vec<f32>>,
    gt: Vec<f32>,
    /// The model output `[batch, 34]` of the last forward.
    pub out: Vec<f32>,
    // gradient scratch
    ga: Vec<f32>,
    gb: Vec<f32>,
    gc: Vec<f32>,
    gd: Vec<f32>,
    ge: Vec<f32>,
    gz: Vec<f32>,
    gk: Vec<f32>,
    gg1: Vec<f32>,
    gg2: Vec<f32>,
    gdt: Vec<f32>,
    ggin: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

impl Model {
    pub fn new(cfg: ModelConfig) -> Model {
        assert!(
            cfg.d.is_multiple_of(cfg.heads),
            "d must be a multiple of heads"
        );
        let layout = cfg.layout();
        let o = |n: &str| layout.offset(n);
        let layers = (0..cfg.layers)
            .map(|i| {
                let p = format!("encoder.layers.{i}");
                LayerOffsets {
                    in_w: o(&format!("{p}.self_attn.in_proj_weight")),
                    in_b: o(&format!("{p}.self_attn.in_proj_bias")),
                    out_w: o(&format!("{p}.self_attn.out_proj.weight")),
                    out_b: o(&format!("{p}.self_attn.out_proj.bias")),
                    l1_w: o(&format!("{p}.linear1.weight")),
                    l1_b: o(&format!("{p}.linear1.bias")),
                    l2_w: o(&format!("{p}.linear2.weight")),
                    l2_b: o(&format!("{p}.linear2.bias")),
                    n1_w: o(&format!("{p}.norm1.weight")),
                    n1_b: o(&format!("{p}.norm1.bias")),
                    n2_w: o(&format!("{p}.norm2.weight")),
                    n2_b: o(&format!("{p}.norm2.bias")),
                }
            })
            .collect();
        let graph = cfg.graph.map(|g| GraphOffsets {
            g,
            embed: o("graph.joint_embed"),
            in_w: o("graph.input.weight"),
            in_b: o("graph.input.bias"),
            layer_w: (0..GRAPH_LAYERS)
                .map(|i| o(&format!("graph.layers.{i}.weight")))
                .collect(),
            layer_b: (0..GRAPH_LAYERS)
                .map(|i| o(&format!("graph.layers.{i}.bias")))
                .collect(),
            out_w: o("graph.output.weight"),
            out_b: o("graph.output.bias"),
        });
        Model {
            emb_w: o("embed.weight"),
            emb_b: o("embed.bias"),
            pos: o("pos_embed"),
            pool_w: o("pool.score.weight"),
            pool_b: o("pool.score.bias"),
            h0_w: o("head.0.weight"),
            h0_b: o("head.0.bias"),
            h3_w: o("head.3.weight"),
            h3_b: o("head.3.bias"),
            layers,
            graph,
            adj: skeleton_adjacency(),
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

    fn prepare(&self, ws: &mut Workspace, batch: usize) {
        let c = &self.cfg;
        let (p, d, f) = (c.packets, c.d, c.token_len());
        let bp = batch * p;
        if ws.batch >= batch && !ws.out.is_empty() {
            return;
        }
        ws.batch = batch;
        grow(&mut ws.tok, bp * f);
        grow(&mut ws.h0, bp * d);
        ws.layers.resize_with(c.layers, LayerCache::default);
        for l in ws.layers.iter_mut() {
            grow(&mut l.qkv, bp * 3 * d);
            grow(&mut l.probs, batch * c.heads * p * p);
            for v in [
                &mut l.ctx,
                &mut l.attn_mask,
                &mut l.r1,
                &mut l.h1,
                &mut l.ff,
            ] {
                grow(v, bp * d);
            }
            for v in [&mut l.ff_mask2, &mut l.r2, &mut l.out] {
                grow(v, bp * d);
            }
            for v in [&mut l.mean1, &mut l.rstd1, &mut l.mean2, &mut l.rstd2] {
                grow(v, bp);
            }
            for v in [&mut l.f1, &mut l.g1, &mut l.ff_mask1] {
                grow(v, bp * c.ffn());
            }
        }
        grow(&mut ws.pool_probs, bp);
        for v in [
            &mut ws.z,
            &mut ws.u,
            &mut ws.ug,
            &mut ws.head_mask,
            &mut ws.gz,
        ] {
            grow(v, batch * d);
        }
        for v in [&mut ws.kp0, &mut ws.out, &mut ws.gk] {
            grow(v, batch * OUTPUTS);
        }
        for v in [&mut ws.ga, &mut ws.gb, &mut ws.gd] {
            grow(v, bp * d);
        }
        grow(&mut ws.gc, bp * c.ffn());
        grow(&mut ws.ge, bp * 3 * d);
        if let Some(g) = c.graph {
            let bj = batch * JOINTS;
            grow(&mut ws.gin, bj * (d + JOINT_EMBED + 2));
            grow(&mut ws.ggin, bj * (d + JOINT_EMBED + 2));
            ws.gf.resize_with(GRAPH_LAYERS + 1, Vec::new);
            ws.gm.resize_with(GRAPH_LAYERS, Vec::new);
            for v in ws.gf.iter_mut().chain(ws.gm.iter_mut()) {
                grow(v, bj * g);
            }
            grow(&mut ws.gg1, bj * g);
            grow(&mut ws.gg2, bj * g);
            grow(&mut ws.gt, bj * 2);
            grow(&mut ws.gdt, bj * 2);
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
        let (p, d, f, heads) = (c.packets, c.d, c.token_len(), c.heads);
        let bp = batch * p;
        assert_eq!(x.len(), batch * c.frame_len(), "input length");
        assert_eq!(params.len(), self.layout.total, "parameter count");
        self.prepare(ws, batch);
        let drop = dropout_key.filter(|_| c.dropout > 0.0);
        ws.dropout_used = drop.is_some();
        let mut site = 0u64;
        let mut next_key = |k: u64| {
            site += 1;
            let mut s = k ^ site.wrapping_mul(0xA076_1D64_78BD_642F);
            splitmix64(&mut s)
        };

        // Standardise each sample and transpose [A·S, P] -> tokens [P, A·S].
        let fl = c.frame_len();
        ws.tok[..bp * f]
            .par_chunks_mut(p * f)
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

        // Embedding + positional embedding.
        linear_forward(
            &ws.tok,
            &params[self.emb_w..],
            &params[self.emb_b..],
            &mut ws.h0,
            bp,
            f,
            d,
        );
        let pos = &params[self.pos..self.pos + p * d];
        ws.h0[..bp * d].par_chunks_mut(p * d).for_each(|hb| {
            for (h, e) in hb.iter_mut().zip(pos) {
                *h += e;
            }
        });

        for li in 0..c.layers {
            let o = &self.layers[li];
            let (prev, rest) = ws.layers.split_at_mut(li);
            let l = &mut rest[0];
            let hin: &[f32] = if li == 0 { &ws.h0 } else { &prev[li - 1].out };
            linear_forward(
                hin,
                &params[o.in_w..],
                &params[o.in_b..],
                &mut l.qkv,
                bp,
                d,
                3 * d,
            );
            attention_forward(&l.qkv, &mut l.ctx, &mut l.probs, batch, p, d, heads);
            // attention output projection (into r1), dropout, residual
            linear_forward(
                &l.ctx,
                &params[o.out_w..],
                &params[o.out_b..],
                &mut l.r1,
                bp,
                d,
                d,
            );
            if let Some(k) = drop {
                dropout_forward(
                    &mut l.r1[..bp * d],
                    &mut l.attn_mask[..bp * d],
                    c.dropout,
                    next_key(k),
                );
            }
            for (r, h) in l.r1[..bp * d].iter_mut().zip(hin) {
                *r += h;
            }
            layernorm_forward(
                &l.r1,
                &params[o.n1_w..],
                &params[o.n1_b..],
                &mut l.h1,
                &mut l.mean1,
                &mut l.rstd1,
                bp,
                d,
            );
            let dff = c.ffn();
            linear_forward(
                &l.h1,
                &params[o.l1_w..],
                &params[o.l1_b..],
                &mut l.f1,
                bp,
                d,
                dff,
            );
            gelu_forward(&l.f1[..bp * dff], &mut l.g1[..bp * dff]);
            if let Some(k) = drop {
                dropout_forward(
                    &mut l.g1[..bp * dff],
                    &mut l.ff_mask1[..bp * dff],
                    c.dropout,
                    next_key(k),
                );
            }
            linear_forward(
                &l.g1,
                &params[o.l2_w..],
                &params[o.l2_b..],
                &mut l.ff,
                bp,
                dff,
                d,
            );
            if let Some(k) = drop {
                dropout_forward(
                    &mut l.ff[..bp * d],
                    &mut l.ff_mask2[..bp * d],
                    c.dropout,
                    next_key(k),
                );
            }
            for ((r, a), b) in l.r2[..bp * d].iter_mut().zip(&l.h1).zip(&l.ff) {
                *r = a + b;
            }
            layernorm_forward(
                &l.r2,
                &params[o.n2_w..],
                &params[o.n2_b..],
                &mut l.out,
                &mut l.mean2,
                &mut l.rstd2,
                bp,
                d,
            );
        }
        let hl: &[f32] = if c.layers == 0 {
            &ws.h0
        } else {
            &ws.layers[c.layers - 1].out
        };

        pool_forward(
            hl,
            &params[self.pool_w..self.pool_w + d],
            params[self.pool_b],
            &mut ws.pool_probs,
            &mut ws.z,
            batch,
            p,
            d,
        );
        linear_forward(
            &ws.z,
            &params[self.h0_w..],
            &params[self.h0_b..],
            &mut ws.u,
            batch,
            d,
            d,
        );
        gelu_forward(&ws.u[..batch * d], &mut ws.ug[..batch * d]);
        if let Some(k) = drop {
            dropout_forward(
                &mut ws.ug[..batch * d],
                &mut ws.head_mask[..batch * d],
                c.dropout,
                next_key(k),
            );
        }
        linear_forward(
            &ws.ug,
            &params[self.h3_w..],
            &params[self.h3_b..],
            &mut ws.kp0,
            batch,
            d,
            OUTPUTS,
        );
        for v in ws.kp0[..batch * OUTPUTS].iter_mut() {
            *v = 1.0 / (1.0 + (-*v).exp());
        }

        if let Some(go) = &self.graph {
            let g = go.g;
            let bj = batch * JOINTS;
            let w_in = d + JOINT_EMBED + 2;
            let emb = &params[go.embed..go.embed + JOINTS * JOINT_EMBED];
            let (z, kp0) = (&ws.z, &ws.kp0);
            ws.gin[..bj * w_in]
                .par_chunks_mut(JOINTS * w_in)
                .enumerate()
                .for_each(|(b, gb)| {
                    for j in 0..JOINTS {
                        let row = &mut gb[j * w_in..(j + 1) * w_in];
                        row[..d].copy_from_slice(&z[b * d..(b + 1) * d]);
                        row[d..d + JOINT_EMBED]
                            .copy_from_slice(&emb[j * JOINT_EMBED..(j + 1) * JOINT_EMBED]);
                        row[d + JOINT_EMBED] = kp0[b * OUTPUTS + 2 * j];
                        row[d + JOINT_EMBED + 1] = kp0[b * OUTPUTS + 2 * j + 1];
                    }
                });
            linear_forward(
                &ws.gin,
                &params[go.in_w..],
                &params[go.in_b..],
                &mut ws.gf[0],
                bj,
                w_in,
                g,
            );
            relu(&mut ws.gf[0][..bj * g]);
            for li in 0..GRAPH_LAYERS {
                graph_mix(
                    &self.adj,
                    false,
                    &ws.gf[li],
                    &mut ws.gm[li],
                    batch,
                    JOINTS,
                    g,
                );
                let (lo, hi) = ws.gf.split_at_mut(li + 1);
                let _ = lo;
                linear_forward(
                    &ws.gm[li],
                    &params[go.layer_w[li]..],
                    &params[go.layer_b[li]..],
                    &mut hi[0],
                    bj,
                    g,
                    g,
                );
                relu(&mut hi[0][..bj * g]);
            }
            linear_forward(
                &ws.gf[GRAPH_LAYERS],
                &params[go.out_w..],
                &params[go.out_b..],
                &mut ws.gt,
                bj,
                g,
                2,
            );
            for ((o, t), k) in ws.out[..batch * OUTPUTS]
                .iter_mut()
                .zip(ws.gt.iter_mut())
                .zip(&ws.kp0)
            {
                *t = t.tanh();
                *o = k + GRAPH_SCALE * *t;
            }
        } else {
            let n = batch * OUTPUTS;
            ws.out[..n].copy_from_slice(&ws.kp0[..n]);
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
        &ws.z[..batch * self.cfg.d]
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
        let (p, d, f, heads, dff) = (c.packets, c.d, c.token_len(), c.heads, c.ffn());
        let bp = batch * p;
        let n_out = batch * OUTPUTS;
        assert_eq!(grads.len(), self.layout.total);
        let ws = &mut *ws;

        // dkp0 into gk, dz into gz.
        ws.gz[..batch * d].fill(0.0);
        ws.gk[..n_out].copy_from_slice(&dout[..n_out]);
        if let Some(go) = &self.graph {
            let g = go.g;
            let bj = batch * JOINTS;
            let w_in = d + JOINT_EMBED + 2;
            // d(out)/d(pre-tanh) into gg1 [bj, 2] (reuse the first 2·bj values)
            let dt = &mut ws.gdt[..bj * 2];
            for ((o, t), g0) in dt.iter_mut().zip(&ws.gt).zip(dout) {
                *o = g0 * GRAPH_SCALE * (1.0 - t * t);
            }
            let (ogw, ogb) = split2(grads, go.out_w, go.out_b);
            linear_backward(
                &ws.gf[GRAPH_LAYERS],
                &params[go.out_w..],
                &ws.gdt,
                Some(&mut ws.gg1[..bj * g]),
                ogw,
                &mut ogb[..2],
                bj,
                g,
                2,
            );
            for li in (0..GRAPH_LAYERS).rev() {
                relu_backward(&ws.gf[li + 1][..bj * g], &mut ws.gg1[..bj * g]);
                let (gw, gbias) = split2(grads, go.layer_w[li], go.layer_b[li]);
                linear_backward(
                    &ws.gm[li],
                    &params[go.layer_w[li]..],
                    &ws.gg1,
                    Some(&mut ws.gg2[..bj * g]),
                    gw,
                    gbias,
                    bj,
                    g,
                    g,
                );
                graph_mix(&self.adj, true, &ws.gg2, &mut ws.gg1, batch, JOINTS, g);
            }
            relu_backward(&ws.gf[0][..bj * g], &mut ws.gg1[..bj * g]);
            let (gw, gbias) = split2(grads, go.in_w, go.in_b);
            linear_backward(
                &ws.gin,
                &params[go.in_w..],
                &ws.gg1,
                Some(&mut ws.ggin[..bj * w_in]),
                gw,
                gbias,
                bj,
                w_in,
                g,
            );
            for b in 0..batch {
                for j in 0..JOINTS {
                    let row = &ws.ggin[(b * JOINTS + j) * w_in..(b * JOINTS + j + 1) * w_in];
                    for (a, v) in ws.gz[b * d..(b + 1) * d].iter_mut().zip(&row[..d]) {
                        *a += v;
                    }
                    let e =
                        &mut grads[go.embed + j * JOINT_EMBED..go.embed + (j + 1) * JOINT_EMBED];
                    for (a, v) in e.iter_mut().zip(&row[d..d + JOINT_EMBED]) {
                        *a += v;
                    }
                    ws.gk[b * OUTPUTS + 2 * j] += row[d + JOINT_EMBED];
                    ws.gk[b * OUTPUTS + 2 * j + 1] += row[d + JOINT_EMBED + 1];
                }
            }
        }
        // sigmoid
        for (gk, k) in ws.gk[..n_out].iter_mut().zip(&ws.kp0) {
            *gk *= k * (1.0 - k);
        }
        let (gw, gbias) = split2(grads, self.h3_w, self.h3_b);
        linear_backward(
            &ws.ug,
            &params[self.h3_w..],
            &ws.gk,
            Some(&mut ws.gb[..batch * d]),
            gw,
            gbias,
            batch,
            d,
            OUTPUTS,
        );
        if c.dropout > 0.0 && ws_dropout_on(ws) {
            dropout_backward(&ws.head_mask[..batch * d], &mut ws.gb[..batch * d]);
        }
        gelu_backward(&ws.u[..batch * d], &mut ws.gb[..batch * d]);
        let (gw, gbias) = split2(grads, self.h0_w, self.h0_b);
        linear_backward(
            &ws.z,
            &params[self.h0_w..],
            &ws.gb,
            Some(&mut ws.ga[..batch * d]),
            gw,
            gbias,
            batch,
            d,
            d,
        );
        for (a, v) in ws.gz[..batch * d].iter_mut().zip(&ws.ga) {
            *a += v;
        }
        // pooling: gradient w.r.t. the last encoder output into gd
        {
            let hl: &[f32] = if c.layers == 0 {
                &ws.h0
            } else {
                &ws.layers[c.layers - 1].out
            };
            let (pw, pb) = split2(grads, self.pool_w, self.pool_b);
            pool_backward(
                hl,
                &params[self.pool_w..self.pool_w + d],
                &ws.pool_probs,
                &ws.gz,
                &mut ws.gd,
                &mut pw[..d],
                &mut pb[0],
                batch,
                p,
                d,
            );
        }
        // encoder layers, last first; the running gradient w.r.t. the layer output is in gd.
        let drop_on = c.dropout > 0.0 && ws_dropout_on(ws);
        for li in (0..c.layers).rev() {
            let o = &self.layers[li];
            let (prev, rest) = ws.layers.split_at(li);
            let l = &rest[0];
            let hin: &[f32] = if li == 0 { &ws.h0 } else { &prev[li - 1].out };
            // LN2: gd -> ga (d r2)
            let (nw, nb) = split2(grads, o.n2_w, o.n2_b);
            layernorm_backward(
                &l.r2,
                &params[o.n2_w..],
                &l.mean2,
                &l.rstd2,
                &ws.gd,
                &mut ws.ga,
                nw,
                nb,
                bp,
                d,
            );
            // ff branch: gb = d ff (after dropout)
            ws.gb[..bp * d].copy_from_slice(&ws.ga[..bp * d]);
            if drop_on {
                dropout_backward(&l.ff_mask2[..bp * d], &mut ws.gb[..bp * d]);
            }
            let (w, b) = split2(grads, o.l2_w, o.l2_b);
            linear_backward(
                &l.g1,
                &params[o.l2_w..],
                &ws.gb,
                Some(&mut ws.gc[..bp * dff]),
                w,
                b,
                bp,
                dff,
                d,
            );
            if drop_on {
                dropout_backward(&l.ff_mask1[..bp * dff], &mut ws.gc[..bp * dff]);
            }
            gelu_backward(&l.f1[..bp * dff], &mut ws.gc[..bp * dff]);
            let (w, b) = split2(grads, o.l1_w, o.l1_b);
            linear_backward(
                &l.h1,
                &params[o.l1_w..],
                &ws.gc,
                Some(&mut ws.gd[..bp * d]),
                w,
                b,
                bp,
                d,
                dff,
            );
            for (a, v) in ws.gd[..bp * d].iter_mut().zip(&ws.ga) {
                *a += v;
            }
            // LN1: gd (d h1) -> ga (d r1)
            let (nw, nb) = split2(grads, o.n1_w, o.n1_b);
            layernorm_backward(
                &l.r1,
                &params[o.n1_w..],
                &l.mean1,
                &l.rstd1,
                &ws.gd,
                &mut ws.ga,
                nw,
                nb,
                bp,
                d,
            );
            ws.gb[..bp * d].copy_from_slice(&ws.ga[..bp * d]);
            if drop_on {
                dropout_backward(&l.attn_mask[..bp * d], &mut ws.gb[..bp * d]);
            }
            let (w, b) = split2(grads, o.out_w, o.out_b);
            linear_backward(
                &l.ctx,
                &params[o.out_w..],
                &ws.gb,
                Some(&mut ws.gd[..bp * d]),
                w,
                b,
                bp,
                d,
                d,
            );
            attention_backward(&l.qkv, &l.probs, &ws.gd, &mut ws.ge, batch, p, d, heads);
            let (w, b) = split2(grads, o.in_w, o.in_b);
            linear_backward(
                hin,
                &params[o.in_w..],
                &ws.ge,
                Some(&mut ws.gd[..bp * d]),
                w,
                b,
                bp,
                d,
                3 * d,
            );
            for (a, v) in ws.gd[..bp * d].iter_mut().zip(&ws.ga) {
                *a += v;
            }
        }
        // positional embedding and token embedding
        {
            let gp = &mut grads[self.pos..self.pos + p * d];
            for hb in ws.gd[..bp * d].chunks_exact(p * d) {
                for (a, v) in gp.iter_mut().zip(hb) {
                    *a += v;
                }
            }
        }
        let (w, b) = split2(grads, self.emb_w, self.emb_b);
        linear_backward(&ws.tok, &params[self.emb_w..], &ws.gd, None, w, b, bp, f, d);
    }
}

/// Whether the last forward ran with dropout: recorded in the workspace.
fn ws_dropout_on(ws: &Workspace) -> bool {
    ws.dropout_used
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

fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

fn relu_backward(y: &[f32], d: &mut [f32]) {
    for (g, &v) in d.iter_mut().zip(y) {
        if v <= 0.0 {
            *g = 0.0;
        }
    }
}

/// Two disjoint mutable views into `grads`: from `a` up to `b`, and from `b` on (a < b).
fn split2(grads: &mut [f32], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    assert!(a < b);
    let (lo, hi) = grads.split_at_mut(b);
    (&mut lo[a..], hi)
}
