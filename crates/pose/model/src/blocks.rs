//! The model's layers as named parts, each with its forward beside its backward: where its
//! parameter tensors sit in the flat buffer (`Linear`, `LayerNorm`, …), what its forward saves
//! for the backward (`EncoderActs`, `HeadActs`, …) and the gradient buffers its backward
//! uses (`EncoderGrads`, `GraphGrads`). The arithmetic is in [`crate::layers`]; these types
//! only name the tensors and fix the order of the calls.

use crate::config::{Layout, GRAPH_LAYERS, JOINTS, JOINT_EMBED};
use crate::layers::*;
use crate::rng::splitmix64;
use rayon::prelude::*;

use csipose_spec::act::GRAPH_SCALE;
use csipose_spec::config::OUTPUTS;

/// Grows `v` to at least `n` values (buffers are reused across steps and only grow).
pub(crate) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// `a += b` elementwise over the first `n` values.
fn add_into(a: &mut [f32], b: &[f32], n: usize) {
    for (x, y) in a[..n].iter_mut().zip(&b[..n]) {
        *x += y;
    }
}

/// Two disjoint mutable views into `grads`: from `a` up to `b`, and from `b` on (a < b).
fn split2(grads: &mut [f32], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    assert!(a < b);
    let (lo, hi) = grads.split_at_mut(b);
    (&mut lo[a..], hi)
}

/// The dropout sites of one forward pass: site `n` (counted from 1 in call order) draws its
/// mask from a key derived from the step's key and `n`, so masks are reproducible.
pub(crate) struct DropoutSites {
    key: Option<u64>,
    site: u64,
    p: f32,
}

impl DropoutSites {
    /// Dropout with probability `p` when `key` is `Some` (training), none otherwise.
    pub(crate) fn new(key: Option<u64>, p: f32) -> DropoutSites {
        DropoutSites {
            key: key.filter(|_| p > 0.0),
            site: 0,
            p,
        }
    }

    /// Whether this pass drops anything.
    pub(crate) fn on(&self) -> bool {
        self.key.is_some()
    }

    /// The next site's draw (`None` when this pass drops nothing).
    fn next(&mut self) -> Option<DropDraw> {
        let k = self.key?;
        self.site += 1;
        let mut s = k ^ self.site.wrapping_mul(0xA076_1D64_78BD_642F);
        Some(DropDraw {
            p: self.p,
            key: splitmix64(&mut s),
        })
    }
}

/// A Linear layer's `weight [out, inp]` and `bias [out]` in the flat parameter buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Linear {
    w: usize,
    b: usize,
    inp: usize,
    out: usize,
}

impl Linear {
    /// The Linear whose tensors are named `weight` and `bias` in `layout`.
    pub(crate) fn at(layout: &Layout, weight: &str, bias: &str) -> Linear {
        let w = layout.get(weight).unwrap_or_else(|| panic!("no {weight}"));
        Linear {
            w: w.offset,
            b: layout.offset(bias),
            inp: w.shape[1],
            out: w.shape[0],
        }
    }

    /// `PREFIX.weight` and `PREFIX.bias`.
    pub(crate) fn named(layout: &Layout, prefix: &str) -> Linear {
        Self::at(
            layout,
            &format!("{prefix}.weight"),
            &format!("{prefix}.bias"),
        )
    }

    /// `y[rows, out] = x[rows, inp] · wᵀ + b`.
    pub(crate) fn forward(&self, params: &[f32], x: &[f32], y: &mut [f32], rows: usize) {
        let (w, b) = (&params[self.w..], &params[self.b..]);
        linear_forward(x, w, b, y, rows, self.inp, self.out);
    }

    /// `dx = dy · w` (if asked; overwrites); weight and bias gradients accumulate.
    pub(crate) fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let (dw, db) = split2(grads, self.w, self.b);
        let w = &params[self.w..];
        linear_backward(x, w, dy, dx, dw, db, rows, self.inp, self.out);
    }
}

/// A LayerNorm's `weight [d]` and `bias [d]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerNorm {
    w: usize,
    b: usize,
    d: usize,
}

/// What a LayerNorm's forward saves: each row's mean and 1/std.
#[derive(Default)]
pub(crate) struct NormStats {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

impl NormStats {
    fn grow(&mut self, rows: usize) {
        grow(&mut self.mean, rows);
        grow(&mut self.rstd, rows);
    }
}

impl LayerNorm {
    pub(crate) fn named(layout: &Layout, prefix: &str) -> LayerNorm {
        let w = layout
            .get(&format!("{prefix}.weight"))
            .unwrap_or_else(|| panic!("no {prefix}.weight"));
        LayerNorm {
            w: w.offset,
            b: layout.offset(&format!("{prefix}.bias")),
            d: w.shape[0],
        }
    }

    fn forward(&self, params: &[f32], x: &[f32], y: &mut [f32], s: &mut NormStats, rows: usize) {
        let (g, b) = (&params[self.w..], &params[self.b..]);
        layernorm_forward(x, g, b, y, &mut s.mean, &mut s.rstd, rows, self.d);
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        s: &NormStats,
        dy: &[f32],
        dx: &mut [f32],
        rows: usize,
    ) {
        let (dg, db) = split2(grads, self.w, self.b);
        let g = &params[self.w..];
        layernorm_backward(x, g, &s.mean, &s.rstd, dy, dx, dg, db, rows, self.d);
    }
}

/// Token embedding `Linear(A·S → d)` plus the learned positional embedding `pos_embed [P, d]`.
#[derive(Clone, Debug)]
pub(crate) struct Embedding {
    pub(crate) linear: Linear,
    pos: usize,
    p: usize,
    d: usize,
}

impl Embedding {
    pub(crate) fn new(layout: &Layout, p: usize, d: usize) -> Embedding {
        Embedding {
            linear: Linear::named(layout, "embed"),
            pos: layout.offset("pos_embed"),
            p,
            d,
        }
    }

    /// `h[b, t] = embed(tokens[b, t]) + pos_embed[t]` for `batch` samples.
    pub(crate) fn forward(&self, params: &[f32], tokens: &[f32], h: &mut [f32], batch: usize) {
        let (p, d) = (self.p, self.d);
        self.linear.forward(params, tokens, h, batch * p);
        let pos = &params[self.pos..self.pos + p * d];
        h[..batch * p * d].par_chunks_mut(p * d).for_each(|hb| {
            for (h, e) in hb.iter_mut().zip(pos) {
                *h += e;
            }
        });
    }

    /// Accumulates the gradients of `pos_embed`, `embed.weight` and `embed.bias` from `dh`.
    pub(crate) fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        tokens: &[f32],
        dh: &[f32],
        batch: usize,
    ) {
        let (p, d) = (self.p, self.d);
        let gp = &mut grads[self.pos..self.pos + p * d];
        for hb in dh[..batch * p * d].chunks_exact(p * d) {
            add_into(gp, hb, p * d);
        }
        self.linear
            .backward(params, grads, tokens, dh, None, batch * p);
    }
}

/// One post-norm Transformer encoder layer (PyTorch `TransformerEncoderLayer`, GELU):
/// `r1 = x + drop(attn(x))`, `h1 = norm1(r1)`, `r2 = h1 + drop(linear2(drop(gelu(linear1(h1)))))`,
/// `out = norm2(r2)`.
#[derive(Clone, Debug)]
pub(crate) struct EncoderLayer {
    attn_in: Linear,
    attn_out: Linear,
    norm1: LayerNorm,
    linear1: Linear,
    linear2: Linear,
    norm2: LayerNorm,
    heads: usize,
    p: usize,
    d: usize,
    ffn: usize,
}

/// What one encoder layer's forward saves (rows = batch · tokens).
#[derive(Default)]
pub(crate) struct EncoderActs {
    /// `attn_in(x)`: q, k, v side by side `[rows, 3d]`.
    qkv: Vec<f32>,
    /// Attention probabilities `[batch, heads, p, p]`.
    probs: Vec<f32>,
    /// Attention context, heads concatenated `[rows, d]`.
    ctx: Vec<f32>,
    attn_drop: Vec<f32>,
    /// `x + drop(attn_out(ctx))`, the input of norm1.
    resid1: Vec<f32>,
    norm1: NormStats,
    /// `norm1(resid1)`.
    h1: Vec<f32>,
    /// `linear1(h1)`, before GELU `[rows, ffn]`.
    fc1: Vec<f32>,
    /// `drop(gelu(fc1))`.
    act: Vec<f32>,
    act_drop: Vec<f32>,
    fc2_drop: Vec<f32>,
    /// `h1 + drop(linear2(act))`, the input of norm2.
    resid2: Vec<f32>,
    norm2: NormStats,
    /// `norm2(resid2)`: the layer's output.
    pub(crate) out: Vec<f32>,
}

/// Gradient buffers of an encoder layer's backward, shared by all layers.
#[derive(Default)]
pub(crate) struct EncoderGrads {
    d_resid2: Vec<f32>,
    d_fc2: Vec<f32>,
    d_act: Vec<f32>,
    d_h1: Vec<f32>,
    d_resid1: Vec<f32>,
    d_attn: Vec<f32>,
    d_ctx: Vec<f32>,
    d_qkv: Vec<f32>,
}

impl EncoderActs {
    pub(crate) fn grow(&mut self, batch: usize, p: usize, d: usize, heads: usize, ffn: usize) {
        let rows = batch * p;
        grow(&mut self.qkv, rows * 3 * d);
        grow(&mut self.probs, batch * heads * p * p);
        for v in [
            &mut self.ctx,
            &mut self.attn_drop,
            &mut self.resid1,
            &mut self.h1,
            &mut self.fc2_drop,
            &mut self.resid2,
            &mut self.out,
        ] {
            grow(v, rows * d);
        }
        for v in [&mut self.fc1, &mut self.act, &mut self.act_drop] {
            grow(v, rows * ffn);
        }
        self.norm1.grow(rows);
        self.norm2.grow(rows);
    }
}

impl EncoderGrads {
    pub(crate) fn grow(&mut self, rows: usize, d: usize, ffn: usize) {
        for v in [
            &mut self.d_resid2,
            &mut self.d_fc2,
            &mut self.d_h1,
            &mut self.d_resid1,
            &mut self.d_attn,
            &mut self.d_ctx,
        ] {
            grow(v, rows * d);
        }
        grow(&mut self.d_act, rows * ffn);
        grow(&mut self.d_qkv, rows * 3 * d);
    }
}

impl EncoderLayer {
    pub(crate) fn new(layout: &Layout, i: usize, heads: usize, p: usize) -> EncoderLayer {
        let pre = format!("encoder.layers.{i}");
        let attn_in = Linear::at(
            layout,
            &format!("{pre}.self_attn.in_proj_weight"),
            &format!("{pre}.self_attn.in_proj_bias"),
        );
        let linear1 = Linear::named(layout, &format!("{pre}.linear1"));
        EncoderLayer {
            attn_in,
            attn_out: Linear::named(layout, &format!("{pre}.self_attn.out_proj")),
            norm1: LayerNorm::named(layout, &format!("{pre}.norm1")),
            linear1,
            linear2: Linear::named(layout, &format!("{pre}.linear2")),
            norm2: LayerNorm::named(layout, &format!("{pre}.norm2")),
            heads,
            p,
            d: attn_in.inp,
            ffn: linear1.out,
        }
    }

    /// Forward of `batch` samples `x [batch·p, d]`; the output is left in `a.out`.
    pub(crate) fn forward(
        &self,
        params: &[f32],
        x: &[f32],
        a: &mut EncoderActs,
        batch: usize,
        drop: &mut DropoutSites,
    ) {
        let (p, d, ffn) = (self.p, self.d, self.ffn);
        let rows = batch * p;
        // Self-attention block.
        self.attn_in.forward(params, x, &mut a.qkv, rows);
        attention_forward(&a.qkv, &mut a.ctx, &mut a.probs, batch, p, d, self.heads);
        self.attn_out.forward(params, &a.ctx, &mut a.resid1, rows);
        let n = rows * d;
        dropout_add_forward(&mut a.resid1[..n], &mut a.attn_drop, drop.next(), x);
        self.norm1
            .forward(params, &a.resid1, &mut a.h1, &mut a.norm1, rows);
        // Feed-forward block.
        self.linear1.forward(params, &a.h1, &mut a.fc1, rows);
        let nf = rows * ffn;
        let act_drop = drop.next().map(|dr| (dr, &mut a.act_drop[..]));
        gelu_dropout_forward(&a.fc1[..nf], &mut a.act[..nf], act_drop);
        // `resid2 = h1 + drop(linear2(act))`, the sum formed in place (float addition is
        // commutative, so `drop(f) + h` is `h + drop(f)` bit for bit).
        self.linear2.forward(params, &a.act, &mut a.resid2, rows);
        dropout_add_forward(&mut a.resid2[..n], &mut a.fc2_drop, drop.next(), &a.h1);
        self.norm2
            .forward(params, &a.resid2, &mut a.out, &mut a.norm2, rows);
    }

    /// Backward: `d_hidden` holds `∂loss/∂out` on entry and `∂loss/∂x` on return.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        a: &EncoderActs,
        d_hidden: &mut [f32],
        g: &mut EncoderGrads,
        batch: usize,
        dropped: bool,
    ) {
        let (p, d, ffn) = (self.p, self.d, self.ffn);
        let rows = batch * p;
        let n = rows * d;
        // Feed-forward block.
        self.norm2.backward(
            params,
            grads,
            &a.resid2,
            &a.norm2,
            d_hidden,
            &mut g.d_resid2,
            rows,
        );
        let d_fc2: &[f32] = if dropped {
            dropout_backward_into(Some(&a.fc2_drop), &g.d_resid2, &mut g.d_fc2[..n]);
            &g.d_fc2
        } else {
            &g.d_resid2
        };
        self.linear2.backward(
            params,
            grads,
            &a.act,
            d_fc2,
            Some(&mut g.d_act[..rows * ffn]),
            rows,
        );
        let act_mask = dropped.then_some(&a.act_drop[..]);
        gelu_dropout_backward(&a.fc1[..rows * ffn], act_mask, &mut g.d_act[..rows * ffn]);
        self.linear1
            .backward(params, grads, &a.h1, &g.d_act, Some(&mut g.d_h1[..n]), rows);
        add_into(&mut g.d_h1, &g.d_resid2, n);
        // Self-attention block.
        self.norm1.backward(
            params,
            grads,
            &a.resid1,
            &a.norm1,
            &g.d_h1,
            &mut g.d_resid1,
            rows,
        );
        let d_attn: &[f32] = if dropped {
            dropout_backward_into(Some(&a.attn_drop), &g.d_resid1, &mut g.d_attn[..n]);
            &g.d_attn
        } else {
            &g.d_resid1
        };
        self.attn_out
            .backward(params, grads, &a.ctx, d_attn, Some(&mut g.d_ctx[..n]), rows);
        attention_backward(
            &a.qkv,
            &a.probs,
            &g.d_ctx,
            &mut g.d_qkv,
            batch,
            p,
            d,
            self.heads,
        );
        self.attn_in
            .backward(params, grads, x, &g.d_qkv, Some(&mut d_hidden[..n]), rows);
        add_into(d_hidden, &g.d_resid1, n);
    }
}

/// Attention pooling over a sample's tokens: `pool.score` (`Linear(d → 1)`) scores each token,
/// `z = Σ_t softmax(score)_t h_t`.
#[derive(Clone, Debug)]
pub(crate) struct AttentionPool {
    w: usize,
    b: usize,
    p: usize,
    d: usize,
}

/// What attention pooling saves: the token weights and the pooled vectors.
#[derive(Default)]
pub(crate) struct PoolActs {
    probs: Vec<f32>,
    /// Pooled vectors `[batch, d]`.
    pub(crate) z: Vec<f32>,
}

impl PoolActs {
    pub(crate) fn grow(&mut self, batch: usize, p: usize, d: usize) {
        grow(&mut self.probs, batch * p);
        grow(&mut self.z, batch * d);
    }
}

impl AttentionPool {
    pub(crate) fn new(layout: &Layout, p: usize, d: usize) -> AttentionPool {
        AttentionPool {
            w: layout.offset("pool.score.weight"),
            b: layout.offset("pool.score.bias"),
            p,
            d,
        }
    }

    pub(crate) fn forward(&self, params: &[f32], h: &[f32], a: &mut PoolActs, batch: usize) {
        let (w, b) = (&params[self.w..self.w + self.d], params[self.b]);
        pool_forward(h, w, b, &mut a.probs, &mut a.z, batch, self.p, self.d);
    }

    /// `dh` (overwritten) from `dz`; the score's gradients accumulate.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        h: &[f32],
        a: &PoolActs,
        dz: &[f32],
        dh: &mut [f32],
        batch: usize,
    ) {
        let d = self.d;
        let w = &params[self.w..self.w + d];
        let (dw, db) = split2(grads, self.w, self.b);
        pool_backward(
            h,
            w,
            &a.probs,
            dz,
            dh,
            &mut dw[..d],
            &mut db[0],
            batch,
            self.p,
            d,
        );
    }
}

/// The keypoint head: `kp0 = sigmoid(head.3(drop(gelu(head.0(z)))))`.
#[derive(Clone, Debug)]
pub(crate) struct KeypointHead {
    fc: Linear,
    out: Linear,
    d: usize,
}

/// What the keypoint head saves.
#[derive(Default)]
pub(crate) struct HeadActs {
    /// `head.0(z)` before GELU `[batch, d]`.
    fc: Vec<f32>,
    /// `drop(gelu(fc))`.
    act: Vec<f32>,
    act_drop: Vec<f32>,
    /// The coarse keypoints `[batch, 34]` after the sigmoid.
    pub(crate) kp0: Vec<f32>,
}

/// Gradient buffers of the keypoint head's backward.
#[derive(Default)]
pub(crate) struct HeadGrads {
    d_act: Vec<f32>,
    d_z: Vec<f32>,
}

impl HeadActs {
    pub(crate) fn grow(&mut self, batch: usize, d: usize) {
        for v in [&mut self.fc, &mut self.act, &mut self.act_drop] {
            grow(v, batch * d);
        }
        grow(&mut self.kp0, batch * OUTPUTS);
    }
}

impl HeadGrads {
    pub(crate) fn grow(&mut self, batch: usize, d: usize) {
        grow(&mut self.d_act, batch * d);
        grow(&mut self.d_z, batch * d);
    }
}

impl KeypointHead {
    pub(crate) fn new(layout: &Layout, d: usize) -> KeypointHead {
        KeypointHead {
            fc: Linear::named(layout, "head.0"),
            out: Linear::named(layout, "head.3"),
            d,
        }
    }

    pub(crate) fn forward(
        &self,
        params: &[f32],
        z: &[f32],
        a: &mut HeadActs,
        batch: usize,
        drop: &mut DropoutSites,
    ) {
        let n = batch * self.d;
        self.fc.forward(params, z, &mut a.fc, batch);
        let act_drop = drop.next().map(|dr| (dr, &mut a.act_drop[..]));
        gelu_dropout_forward(&a.fc[..n], &mut a.act[..n], act_drop);
        self.out.forward(params, &a.act, &mut a.kp0, batch);
        for v in a.kp0[..batch * OUTPUTS].iter_mut() {
            *v = 1.0 / (1.0 + (-*v).exp());
        }
    }

    /// `d_kp0` (∂loss/∂kp0, turned into the pre-sigmoid gradient in place) to `d_z += ∂loss/∂z`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        z: &[f32],
        a: &HeadActs,
        d_kp0: &mut [f32],
        d_z: &mut [f32],
        g: &mut HeadGrads,
        batch: usize,
        dropped: bool,
    ) {
        let n = batch * self.d;
        for (gk, k) in d_kp0[..batch * OUTPUTS].iter_mut().zip(&a.kp0) {
            *gk *= k * (1.0 - k);
        }
        self.out
            .backward(params, grads, &a.act, d_kp0, Some(&mut g.d_act[..n]), batch);
        let act_mask = dropped.then_some(&a.act_drop[..]);
        gelu_dropout_backward(&a.fc[..n], act_mask, &mut g.d_act[..n]);
        self.fc
            .backward(params, grads, z, &g.d_act, Some(&mut g.d_z[..n]), batch);
        add_into(d_z, &g.d_z, n);
    }
}

/// The skeleton-graph refinement: per joint, `f0 = ReLU(graph.input([z, joint_embed_j, kp0_j]))`,
/// then `f ← ReLU(graph.layers.i(Â f))`, and `kp = kp0 + 0.3 · tanh(graph.output(f))`.
#[derive(Clone, Debug)]
pub(crate) struct GraphRefine {
    adj: Vec<f32>,
    joint_embed: usize,
    input: Linear,
    layers: Vec<Linear>,
    output: Linear,
    g: usize,
    d: usize,
}

/// What the graph refinement saves (rows = batch · 17 joints).
#[derive(Default)]
pub(crate) struct GraphActs {
    /// Per-joint inputs `[z, joint_embed_j, kp0_j]` `[rows, d + 34]`.
    input: Vec<f32>,
    /// Features after each ReLU: `f0`, then one per graph layer `[rows, g]`.
    feats: Vec<Vec<f32>>,
    /// `Â f` before each graph layer's Linear `[rows, g]`.
    mixed: Vec<Vec<f32>>,
    /// `tanh(graph.output(f))` `[rows, 2]`.
    tanh: Vec<f32>,
}

/// Gradient buffers of the graph refinement's backward.
#[derive(Default)]
pub(crate) struct GraphGrads {
    d_pre_tanh: Vec<f32>,
    d_feat: Vec<f32>,
    d_mixed: Vec<f32>,
    d_input: Vec<f32>,
}

impl GraphActs {
    pub(crate) fn grow(&mut self, batch: usize, d: usize, g: usize) {
        let rows = batch * JOINTS;
        grow(&mut self.input, rows * (d + JOINT_EMBED + 2));
        self.feats.resize_with(GRAPH_LAYERS + 1, Vec::new);
        self.mixed.resize_with(GRAPH_LAYERS, Vec::new);
        for v in self.feats.iter_mut().chain(self.mixed.iter_mut()) {
            grow(v, rows * g);
        }
        grow(&mut self.tanh, rows * 2);
    }
}

impl GraphGrads {
    pub(crate) fn grow(&mut self, batch: usize, d: usize, g: usize) {
        let rows = batch * JOINTS;
        grow(&mut self.d_pre_tanh, rows * 2);
        grow(&mut self.d_feat, rows * g);
        grow(&mut self.d_mixed, rows * g);
        grow(&mut self.d_input, rows * (d + JOINT_EMBED + 2));
    }
}

fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// `d = 0` where the ReLU's output `y ≤ 0` (a select, not a branch, so it vectorises).
fn relu_backward(y: &[f32], d: &mut [f32]) {
    wide(|| {
        for (g, &v) in d.iter_mut().zip(y) {
            *g = if v <= 0.0 { 0.0 } else { *g };
        }
    })
}

impl GraphRefine {
    pub(crate) fn new(layout: &Layout, adj: Vec<f32>, d: usize, g: usize) -> GraphRefine {
        GraphRefine {
            adj,
            joint_embed: layout.offset("graph.joint_embed"),
            input: Linear::named(layout, "graph.input"),
            layers: (0..GRAPH_LAYERS)
                .map(|i| Linear::named(layout, &format!("graph.layers.{i}")))
                .collect(),
            output: Linear::named(layout, "graph.output"),
            g,
            d,
        }
    }

    /// Refines `kp0` into `out [batch, 34]`.
    pub(crate) fn forward(
        &self,
        params: &[f32],
        z: &[f32],
        kp0: &[f32],
        a: &mut GraphActs,
        out: &mut [f32],
        batch: usize,
    ) {
        let (d, g) = (self.d, self.g);
        let rows = batch * JOINTS;
        let w_in = d + JOINT_EMBED + 2;
        let emb = &params[self.joint_embed..self.joint_embed + JOINTS * JOINT_EMBED];
        a.input[..rows * w_in]
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
        self.input.forward(params, &a.input, &mut a.feats[0], rows);
        relu(&mut a.feats[0][..rows * g]);
        for (li, layer) in self.layers.iter().enumerate() {
            graph_mix(
                &self.adj,
                false,
                &a.feats[li],
                &mut a.mixed[li],
                batch,
                JOINTS,
                g,
            );
            layer.forward(params, &a.mixed[li], &mut a.feats[li + 1], rows);
            relu(&mut a.feats[li + 1][..rows * g]);
        }
        self.output
            .forward(params, &a.feats[GRAPH_LAYERS], &mut a.tanh, rows);
        for ((o, t), k) in out[..batch * OUTPUTS]
            .iter_mut()
            .zip(a.tanh.iter_mut())
            .zip(kp0)
        {
            *t = t.tanh();
            *o = k + GRAPH_SCALE * *t;
        }
    }

    /// From `d_out = ∂loss/∂out`: `d_z` and `d_kp0` accumulate this head's contribution.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        a: &GraphActs,
        d_out: &[f32],
        d_z: &mut [f32],
        d_kp0: &mut [f32],
        gr: &mut GraphGrads,
        batch: usize,
    ) {
        let (d, g) = (self.d, self.g);
        let rows = batch * JOINTS;
        let w_in = d + JOINT_EMBED + 2;
        for ((o, t), g0) in gr.d_pre_tanh[..rows * 2].iter_mut().zip(&a.tanh).zip(d_out) {
            *o = g0 * GRAPH_SCALE * (1.0 - t * t);
        }
        self.output.backward(
            params,
            grads,
            &a.feats[GRAPH_LAYERS],
            &gr.d_pre_tanh,
            Some(&mut gr.d_feat[..rows * g]),
            rows,
        );
        for (li, layer) in self.layers.iter().enumerate().rev() {
            relu_backward(&a.feats[li + 1][..rows * g], &mut gr.d_feat[..rows * g]);
            layer.backward(
                params,
                grads,
                &a.mixed[li],
                &gr.d_feat,
                Some(&mut gr.d_mixed[..rows * g]),
                rows,
            );
            // The mixing's backward is the transposed mixing.
            graph_mix(
                &self.adj,
                true,
                &gr.d_mixed,
                &mut gr.d_feat,
                batch,
                JOINTS,
                g,
            );
        }
        relu_backward(&a.feats[0][..rows * g], &mut gr.d_feat[..rows * g]);
        self.input.backward(
            params,
            grads,
            &a.input,
            &gr.d_feat,
            Some(&mut gr.d_input[..rows * w_in]),
            rows,
        );
        let emb = self.joint_embed;
        for b in 0..batch {
            for j in 0..JOINTS {
                let r = b * JOINTS + j;
                let row = &gr.d_input[r * w_in..(r + 1) * w_in];
                add_into(&mut d_z[b * d..(b + 1) * d], &row[..d], d);
                let e = &mut grads[emb + j * JOINT_EMBED..emb + (j + 1) * JOINT_EMBED];
                add_into(e, &row[d..d + JOINT_EMBED], JOINT_EMBED);
                d_kp0[b * OUTPUTS + 2 * j] += row[d + JOINT_EMBED];
                d_kp0[b * OUTPUTS + 2 * j + 1] += row[d + JOINT_EMBED + 1];
            }
        }
    }
}
