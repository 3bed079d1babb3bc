//! The batch-1 forward pass over a borrowed [`ModelFile`]: [`Runtime::new`] resolves the
//! tensors once and folds the constant parts of the graph head into caller-provided memory;
//! [`Runtime::forward`] runs one frame through caller-provided scratch and writes the 34
//! keypoint values, the same computation as `csipose_model::Model::forward` in evaluation
//! mode (standardisation, embedding + positions, post-norm encoder, attention pooling, head,
//! skeleton-graph refinement).
//!
//! Folding (exact up to float rounding): the graph head's input row for joint `j` is
//! `[z, e_j, kp0_j]`, so `W_in·row + b = W_z·z + (W_e·e_j + b) + W_k·kp0_j`; the middle term
//! is a per-joint constant computed in [`Runtime::new`], `W_z·z` is computed once and shared
//! by the 17 joints. `Â` (self + COCO bones, row-normalised) is applied as a sparse sum.

use core::fmt;

use crate::format::{Config, ModelFile, TensorData, JOINTS, JOINT_EMBED};
use crate::kernels::{layernorm, linear, Act, Input, Kernel, Weights};
use crate::math;

/// Outputs per frame: 17 joints × (x, y).
pub const OUTPUTS: usize = 2 * JOINTS;
/// Largest number of encoder layers the runtime runs (the tensor views live in the
/// [`Runtime`] value, without allocation).
pub const MAX_LAYERS: usize = 16;
/// Scale of the graph head's correction: `kp = kp0 + 0.3 · tanh(·)`.
pub const GRAPH_SCALE: f32 = 0.3;

/// The 16 COCO-17 bones of the skeleton graph (the engine's `COCO_BONES`).
pub const COCO_BONES: [(usize, usize); 16] = [
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 11),
    (6, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
];

/// `Â`'s sparsity: for each joint, its neighbours including itself, ascending (`usize::MAX`
/// pads), and their count.
const fn neighbours() -> [([usize; 4], usize); JOINTS] {
    let mut out = [([usize::MAX; 4], 0usize); JOINTS];
    let mut i = 0;
    while i < JOINTS {
        let mut n = 0;
        let mut j = 0;
        while j < JOINTS {
            let mut adj = i == j;
            let mut b = 0;
            while b < COCO_BONES.len() {
                let (u, v) = COCO_BONES[b];
                if (u == i && v == j) || (u == j && v == i) {
                    adj = true;
                }
                b += 1;
            }
            if adj {
                out[i].0[n] = j;
                n += 1;
            }
            j += 1;
        }
        out[i].1 = n;
        i += 1;
    }
    out
}
const NEIGHBOURS: [([usize; 4], usize); JOINTS] = neighbours();

/// What can go wrong when preparing or running (never a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeError {
    /// The input frame has `got` values, the model needs `expected` (A·S·P).
    InputLength { expected: usize, got: usize },
    /// The scratch buffer has `have` floats, the forward needs `need` ([`Runtime::scratch_len`]).
    Scratch { need: usize, have: usize },
    /// The constants buffer has `have` floats, [`Runtime::new`] needs `need`
    /// ([`Runtime::consts_len`]).
    Consts { need: usize, have: usize },
    /// The model has more encoder layers than [`MAX_LAYERS`].
    TooManyLayers(usize),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::InputLength { expected, got } => write!(
                f,
                "input frame has {got} values, the model needs {expected} (antennas x subcarriers x packets)"
            ),
            RuntimeError::Scratch { need, have } => {
                write!(f, "scratch buffer too small: needs {need} floats, has {have}")
            }
            RuntimeError::Consts { need, have } => {
                write!(f, "constants buffer too small: needs {need} floats, has {have}")
            }
            RuntimeError::TooManyLayers(n) => write!(
                f,
                "model has {n} encoder layers, the runtime supports at most {MAX_LAYERS}"
            ),
        }
    }
}

impl core::error::Error for RuntimeError {}

#[derive(Clone, Copy, Debug)]
struct Layer<'a> {
    in_w: Weights<'a>,
    in_b: &'a [f32],
    out_w: Weights<'a>,
    out_b: &'a [f32],
    l1_w: Weights<'a>,
    l1_b: &'a [f32],
    l2_w: Weights<'a>,
    l2_b: &'a [f32],
    n1_w: &'a [f32],
    n1_b: &'a [f32],
    n2_w: &'a [f32],
    n2_b: &'a [f32],
}

#[derive(Clone, Copy, Debug)]
struct Graph<'a> {
    g: usize,
    /// `W_z`: the first d rows of `graph.input.weight`.
    wz: Weights<'a>,
    layer_w: [Weights<'a>; 2],
    layer_b: [&'a [f32]; 2],
    out_w: Weights<'a>,
    out_b: &'a [f32],
}

/// A model ready to run: tensor views resolved, constants folded. Cheap to share (`&self`).
#[derive(Clone, Copy, Debug)]
pub struct Runtime<'m, 'p> {
    cfg: Config,
    kernel: Kernel,
    emb_w: Weights<'m>,
    emb_b: &'m [f32],
    pos: &'m [f32],
    layers: [Option<Layer<'m>>; MAX_LAYERS],
    pool_b: f32,
    h0_w: Weights<'m>,
    h0_b: &'m [f32],
    h3_w: Weights<'m>,
    h3_b: &'m [f32],
    graph: Option<Graph<'m>>,
    /// `[pool weight (d)] [graph: per-joint constant (17·g), W_k rows (2·g)]`.
    consts: &'p [f32],
}

/// f32 view of a tensor that the format guarantees is f32.
fn f32s<'a>(file: &ModelFile<'a>, i: usize) -> &'a [f32] {
    match file.tensor(i).data {
        TensorData::F32(v) => v,
        _ => unreachable!("format allows only f32 for non-Linear tensors"),
    }
}

impl<'m, 'p> Runtime<'m, 'p> {
    /// Floats of the constants buffer [`Runtime::new`] fills.
    pub fn consts_len(cfg: &Config) -> usize {
        cfg.d
            + if cfg.graph > 0 {
                (JOINTS + 2) * cfg.graph
            } else {
                0
            }
    }

    /// Floats of scratch one [`Runtime::forward`] uses.
    pub fn scratch_len(cfg: &Config) -> usize {
        let (p, d) = (cfg.packets, cfg.d);
        let g = cfg.graph;
        cfg.frame_len()
            + p * d * 4 // h, ctx, r, spare
            + p * 3 * d
            + p * 2 * d
            + p * p
            + 2 * d
            + OUTPUTS
            + if g > 0 { g + 2 * JOINTS * g + OUTPUTS } else { 0 }
    }

    /// Resolves the tensors of `file` and folds the graph head's constants into `consts`
    /// (at least [`Runtime::consts_len`] floats), which the runtime then borrows.
    pub fn new(
        file: &ModelFile<'m>,
        kernel: Kernel,
        consts: &'p mut [f32],
    ) -> Result<Runtime<'m, 'p>, RuntimeError> {
        let cfg = file.config;
        if cfg.layers > MAX_LAYERS {
            return Err(RuntimeError::TooManyLayers(cfg.layers));
        }
        let need = Self::consts_len(&cfg);
        if consts.len() < need {
            return Err(RuntimeError::Consts {
                need,
                have: consts.len(),
            });
        }
        let w = |i: usize| Weights::from_view(file.tensor(i));
        let v = |i: usize| f32s(file, i);
        let mut layers = [None; MAX_LAYERS];
        for (l, slot) in layers.iter_mut().enumerate().take(cfg.layers) {
            let b = 3 + 12 * l;
            *slot = Some(Layer {
                in_w: w(b),
                in_b: v(b + 1),
                out_w: w(b + 2),
                out_b: v(b + 3),
                l1_w: w(b + 4),
                l1_b: v(b + 5),
                l2_w: w(b + 6),
                l2_b: v(b + 7),
                n1_w: v(b + 8),
                n1_b: v(b + 9),
                n2_w: v(b + 10),
                n2_b: v(b + 11),
            });
        }
        let t = 3 + 12 * cfg.layers;
        let d = cfg.d;
        // pool.score.weight [d, 1]: dequantised once.
        let pool_w = w(t);
        for (k, c) in consts[..d].iter_mut().enumerate() {
            *c = pool_w.get(k, 0);
        }
        let graph = if cfg.graph > 0 {
            let g = cfg.graph;
            let gt = t + 6;
            let embed = v(gt);
            let win = w(gt + 1);
            let bin = v(gt + 2);
            let (cj, wk) = consts[d..d + (JOINTS + 2) * g].split_at_mut(JOINTS * g);
            // Per-joint constant: b + Σ_e W_e[e, :] · embed[j, e].
            for j in 0..JOINTS {
                let row = &mut cj[j * g..(j + 1) * g];
                for (c, r) in row.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for e in 0..JOINT_EMBED {
                        acc += embed[j * JOINT_EMBED + e] * win.get(d + e, c);
                    }
                    *r = acc + bin[c];
                }
            }
            for (k, row) in wk.chunks_exact_mut(g).enumerate() {
                for (c, r) in row.iter_mut().enumerate() {
                    *r = win.get(d + JOINT_EMBED + k, c);
                }
            }
            let mut wz = win;
            wz.rows = d;
            Some(Graph {
                g,
                wz,
                layer_w: [w(gt + 3), w(gt + 5)],
                layer_b: [v(gt + 4), v(gt + 6)],
                out_w: w(gt + 7),
                out_b: v(gt + 8),
            })
        } else {
            None
        };
        Ok(Runtime {
            cfg,
            kernel,
            emb_w: w(0),
            emb_b: v(1),
            pos: v(2),
            layers,
            pool_b: v(t + 1)[0],
            h0_w: w(t + 2),
            h0_b: v(t + 3),
            h3_w: w(t + 4),
            h3_b: v(t + 5),
            graph,
            consts,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The kernel path in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// One forward pass of one frame `x [A, S, P]` (raw, unstandardised, as the engine takes
    /// it) into `out` (17 joints × (x, y)), using `scratch` (at least
    /// [`Runtime::scratch_len`] floats).
    pub fn forward(
        &self,
        x: &[f32],
        scratch: &mut [f32],
        out: &mut [f32; OUTPUTS],
    ) -> Result<(), RuntimeError> {
        let cfg = &self.cfg;
        let (p, d) = (cfg.packets, cfg.d);
        if x.len() != cfg.frame_len() {
            return Err(RuntimeError::InputLength {
                expected: cfg.frame_len(),
                got: x.len(),
            });
        }
        let need = Self::scratch_len(cfg);
        if scratch.len() < need {
            return Err(RuntimeError::Scratch {
                need,
                have: scratch.len(),
            });
        }
        let kern = self.kernel;
        let (tok, rest) = scratch.split_at_mut(cfg.frame_len());
        let (h, rest) = rest.split_at_mut(p * d);
        let (ctx, rest) = rest.split_at_mut(p * d);
        let (r, rest) = rest.split_at_mut(p * d);
        let (_spare, rest) = rest.split_at_mut(p * d);
        let (qkv, rest) = rest.split_at_mut(p * 3 * d);
        let (ff, rest) = rest.split_at_mut(p * 2 * d);
        let (scores, rest) = rest.split_at_mut(p * p);
        let (z, rest) = rest.split_at_mut(d);
        let (u, rest) = rest.split_at_mut(d);
        let (kp0, rest) = rest.split_at_mut(OUTPUTS);

        // Standardise (the input layout [A·S, P] is kept: token t, feature k at k·P + t).
        let (mean, inv) = math::standardise_stats(x);
        for (t, &v) in tok.iter_mut().zip(x) {
            *t = (v - mean) * inv;
        }
        // Embedding + bias + positional embedding.
        let tok_in = Input {
            x: tok,
            tokens: p,
            ts: 1,
            ks: p,
        };
        linear(
            kern,
            tok_in,
            &self.emb_w,
            Some(self.emb_b),
            Act::None,
            Some(self.pos),
            h,
        );

        for l in self.layers.iter().take(cfg.layers).flatten() {
            linear(
                kern,
                Input::rows(h, p, d),
                &l.in_w,
                Some(l.in_b),
                Act::None,
                None,
                qkv,
            );
            attention(qkv, ctx, scores, p, d, cfg.heads);
            linear(
                kern,
                Input::rows(ctx, p, d),
                &l.out_w,
                Some(l.out_b),
                Act::None,
                Some(h),
                r,
            );
            layernorm(r, l.n1_w, l.n1_b, h, p, d);
            linear(
                kern,
                Input::rows(h, p, d),
                &l.l1_w,
                Some(l.l1_b),
                Act::Gelu,
                None,
                ff,
            );
            linear(
                kern,
                Input::rows(ff, p, 2 * d),
                &l.l2_w,
                Some(l.l2_b),
                Act::None,
                Some(h),
                r,
            );
            layernorm(r, l.n2_w, l.n2_b, h, p, d);
        }

        // Attention pooling.
        let pool_w = &self.consts[..d];
        let mut mx = f32::NEG_INFINITY;
        for t in 0..p {
            let s = dot(&h[t * d..(t + 1) * d], pool_w) + self.pool_b;
            scores[t] = s;
            mx = mx.max(s);
        }
        let mut sum = 0.0;
        for s in scores[..p].iter_mut() {
            *s = math::exp(*s - mx);
            sum += *s;
        }
        for s in scores[..p].iter_mut() {
            *s /= sum;
        }
        z.fill(0.0);
        for t in 0..p {
            let a = scores[t];
            for (o, v) in z.iter_mut().zip(&h[t * d..(t + 1) * d]) {
                *o += a * v;
            }
        }

        // Head.
        linear(
            kern,
            Input::rows(z, 1, d),
            &self.h0_w,
            Some(self.h0_b),
            Act::Gelu,
            None,
            u,
        );
        linear(
            kern,
            Input::rows(u, 1, d),
            &self.h3_w,
            Some(self.h3_b),
            Act::None,
            None,
            kp0,
        );
        for v in kp0.iter_mut() {
            *v = math::sigmoid(*v);
        }

        let Some(gr) = &self.graph else {
            out.copy_from_slice(kp0);
            return Ok(());
        };
        let g = gr.g;
        let (gu, rest) = rest.split_at_mut(g);
        let (fa, rest) = rest.split_at_mut(JOINTS * g);
        let (fb, rest) = rest.split_at_mut(JOINTS * g);
        let gt = &mut rest[..OUTPUTS];
        linear(
            kern,
            Input::rows(z, 1, d),
            &gr.wz,
            None,
            Act::None,
            None,
            gu,
        );
        let cj = &self.consts[d..d + JOINTS * g];
        let (wk0, wk1) = self.consts[d + JOINTS * g..d + (JOINTS + 2) * g].split_at(g);
        for j in 0..JOINTS {
            let (kx, ky) = (kp0[2 * j], kp0[2 * j + 1]);
            let row = &mut fa[j * g..(j + 1) * g];
            for c in 0..g {
                let v = gu[c] + cj[j * g + c] + kx * wk0[c] + ky * wk1[c];
                row[c] = v.max(0.0);
            }
        }
        for li in 0..2 {
            // m = Â f (into fb), then f = ReLU(m W + b) (into fa).
            for (i, (nb, cnt)) in NEIGHBOURS.iter().enumerate() {
                let a = 1.0 / *cnt as f32;
                let m = &mut fb[i * g..(i + 1) * g];
                m.fill(0.0);
                for &j in &nb[..*cnt] {
                    for (o, v) in m.iter_mut().zip(&fa[j * g..(j + 1) * g]) {
                        *o += a * v;
                    }
                }
            }
            linear(
                kern,
                Input::rows(fb, JOINTS, g),
                &gr.layer_w[li],
                Some(gr.layer_b[li]),
                Act::Relu,
                None,
                fa,
            );
        }
        linear(
            kern,
            Input::rows(fa, JOINTS, g),
            &gr.out_w,
            Some(gr.out_b),
            Act::None,
            None,
            gt,
        );
        for ((o, t), k) in out.iter_mut().zip(gt.iter()).zip(kp0.iter()) {
            *o = k + GRAPH_SCALE * math::tanh(*t);
        }
        Ok(())
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Multi-head self-attention over the `p` tokens of `qkv [p, 3d]` into `ctx [p, d]`, the
/// engine's order of operations.
fn attention(qkv: &[f32], ctx: &mut [f32], row: &mut [f32], p: usize, d: usize, heads: usize) {
    let dh = d / heads;
    let scale = 1.0 / math::sqrt(dh as f32);
    let row = &mut row[..p];
    for h in 0..heads {
        for i in 0..p {
            let q = &qkv[i * 3 * d + h * dh..i * 3 * d + (h + 1) * dh];
            let mut mx = f32::NEG_INFINITY;
            for (j, s) in row.iter_mut().enumerate() {
                let k = &qkv[j * 3 * d + d + h * dh..j * 3 * d + d + (h + 1) * dh];
                *s = dot(q, k) * scale;
                mx = mx.max(*s);
            }
            let mut sum = 0.0;
            for s in row.iter_mut() {
                *s = math::exp(*s - mx);
                sum += *s;
            }
            let inv = 1.0 / sum;
            let c = &mut ctx[i * d + h * dh..i * d + (h + 1) * dh];
            c.fill(0.0);
            for (j, &s) in row.iter().enumerate() {
                let a = s * inv;
                let v = &qkv[j * 3 * d + 2 * d + h * dh..j * 3 * d + 2 * d + (h + 1) * dh];
                for (o, vv) in c.iter_mut().zip(v) {
                    *o += a * vv;
                }
            }
        }
    }
}

/// Floating-point operations of one forward pass, counted as
/// `csipose_model::ModelConfig::flops_per_forward` does (matrix products only, a multiply-add
/// is 2; the graph head counted unfolded, dense `Â`).
pub fn flops_per_forward(cfg: &Config) -> u64 {
    let (d, f, p, dff) = (
        cfg.d as u64,
        cfg.token_len() as u64,
        cfg.packets as u64,
        cfg.ffn() as u64,
    );
    let mut fl = 2 * p * f * d;
    fl += cfg.layers as u64 * (2 * p * d * 3 * d + 4 * p * p * d + 2 * p * d * d + 4 * p * d * dff);
    fl += 4 * p * d;
    fl += 2 * d * d + 2 * d * 2 * JOINTS as u64;
    if cfg.graph > 0 {
        let (g, j) = (cfg.graph as u64, JOINTS as u64);
        fl += 2 * j * (d + JOINT_EMBED as u64 + 2) * g;
        fl += 2 * (2 * j * j * g + 2 * j * g * g);
        fl += 2 * j * g * 2;
    }
    fl
}
