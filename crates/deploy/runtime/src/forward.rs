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
//!
//! On the int16 kernels ([`Kernel::int16`]) `Runtime::new` also repacks every int8/int4 Linear
//! ([`crate::int16`]) and the forward quantizes each Linear's input per token; on the AVX-512
//! paths it repacks every f32 Linear into the f32 kernel's panels ([`crate::kernels::Panels`]),
//! so no forward reads the file's row-major f32 weights through masks and strides.
//!
//! [`Runtime::forward`] is only the sequence of operations; how each runs on this CPU (which
//! micro-kernel, AVX-512 stages on the AVX-512 paths that equal their portable reference bit for
//! bit) is decided in `ops` and [`crate::kernels`], from the [`Kernel`] chosen at
//! [`Runtime::new`].

use core::fmt;

use crate::format::{Config, ModelFile, TensorData, JOINTS, JOINT_EMBED};
use crate::int16::{pack, packed_len};
use crate::kernels::{
    avx512_f32_cols, linear, linear_int16, linear_panels, pack_panels, panels_len, Act, Input,
    Kernel, Repacked, Weights,
};
use crate::math;
use crate::ops::{self, lin, AttnBufs};

pub use csipose_spec::act::GRAPH_SCALE;
use csipose_spec::coco::NEIGHBOURS;
/// Largest number of encoder layers (the tensor views live in the [`Runtime`] value, without
/// allocation); the architecture's bound, so every valid file fits.
pub use csipose_spec::config::MAX_LAYERS;
/// Outputs per frame: 17 joints × (x, y).
pub use csipose_spec::config::OUTPUTS;

/// Per-stage cycle counts of the forward (feature `profile`).
pub use crate::profile;
use crate::profile::prof;

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
    out_b: &'a [f32],
}

/// Most Linears a model has: embedding, 4 per encoder layer, 2 head, 3 graph.
const MAX_LINEARS: usize = 1 + 4 * MAX_LAYERS + 2 + 3;

/// The shapes `(rows = in, cols = out)` of the model's Linears in the order the int16 path
/// packs them: embedding, per layer (in_proj, out_proj, linear1, linear2), head.0, head.3,
/// then the graph head's `W_z` (the first d rows of its input weight) and its 2 layers.
fn linear_shapes(cfg: &Config) -> impl Iterator<Item = (usize, usize)> + '_ {
    let (d, g) = (cfg.d, cfg.graph);
    let layer = [(d, 3 * d), (d, d), (d, cfg.ffn()), (cfg.ffn(), d)];
    let graph = [(d, g), (g, g), (g, g)];
    core::iter::once((cfg.token_len(), d))
        .chain((0..cfg.layers).flat_map(move |_| layer))
        .chain([(d, d), (d, OUTPUTS)])
        .chain(graph.into_iter().take(if g > 0 { 3 } else { 0 }))
}

/// Floats of one Linear's slot in the constants buffer for `kernel`: int16 pairs on the int16
/// kernels, f32 panels on the AVX-512 paths, the larger where both apply (a multiple of 16).
fn slot_len(kernel: Kernel, rows: usize, cols: usize) -> usize {
    let int16 = if kernel.int16() {
        packed_len(rows, cols)
    } else {
        0
    };
    let panels = if kernel.f32_panels() && avx512_f32_cols(cols) {
        panels_len(rows, cols)
    } else {
        0
    };
    int16.max(panels)
}

/// Floats of one Linear's slot for the weights actually in the file: f32 panels for an f32
/// weight on the AVX-512 paths, int16 pairs for an int8/int4 weight on the int16 kernels,
/// nothing where the kernel reads the file in place. The same decision [`Runtime::new`] makes
/// when it packs.
fn weight_slot_len(kernel: Kernel, wt: &Weights) -> usize {
    match wt.data {
        TensorData::F32(_) if kernel.f32_panels() && avx512_f32_cols(wt.cols) => {
            panels_len(wt.rows, wt.cols)
        }
        TensorData::F32(_) => 0,
        _ if kernel.int16() => packed_len(wt.rows, wt.cols),
        _ => 0,
    }
}

/// The model's Linear weights in [`linear_shapes`] order (the graph head's `W_z` is the first
/// d rows of its input weight). `cfg.layers` must not exceed [`MAX_LAYERS`].
fn linear_weights<'a>(file: &ModelFile<'a>) -> ([Weights<'a>; MAX_LINEARS], usize) {
    let cfg = file.config;
    let w = |i: usize| Weights::from_view(file.tensor(i));
    let mut ws = [w(0); MAX_LINEARS];
    let mut n = 1;
    for l in 0..cfg.layers {
        let b = 3 + 12 * l;
        ws[n..n + 4].copy_from_slice(&[w(b), w(b + 2), w(b + 4), w(b + 6)]);
        n += 4;
    }
    let t = 3 + 12 * cfg.layers;
    ws[n] = w(t + 2);
    ws[n + 1] = w(t + 4);
    n += 2;
    if cfg.graph > 0 {
        let gt = t + 6;
        let mut wz = w(gt + 1);
        wz.rows = cfg.d;
        ws[n..n + 3].copy_from_slice(&[wz, w(gt + 3), w(gt + 5)]);
        n += 3;
    }
    (ws, n)
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
    /// `[pool weight (d)] [graph: per-joint constant (17·g), W_k rows (2·g), output weight
    /// transposed (2·g)]`.
    consts: &'p [f32],
    /// The repacked Linears, in [`linear_shapes`] order: int16 pairs of the int8/int4 ones on
    /// the int16 kernels, f32 panels of the f32 ones on the AVX-512 paths.
    packed: [Option<Repacked<'p>>; MAX_LINEARS],
    /// The kernel the forward runs: `kernel`, or its exact-f32 counterpart when no Linear was
    /// repacked (an fp32 file on an int16 kernel).
    run_kernel: Kernel,
}

/// f32 view of a tensor that the format guarantees is f32.
fn f32s<'a>(file: &ModelFile<'a>, i: usize) -> &'a [f32] {
    match file.tensor(i).data {
        TensorData::F32(v) => v,
        _ => unreachable!("format allows only f32 for non-Linear tensors"),
    }
}

impl<'m, 'p> Runtime<'m, 'p> {
    /// Floats of the constants buffer [`Runtime::new`] fills with `kernel`: the folded graph
    /// constants, plus a working copy of every Linear's weights repacked for the kernel: for
    /// the int16 kernels ([`Kernel::int16`]) int16 pairs of the int8/int4 weights
    /// ([`crate::int16`]), on the AVX-512 paths f32 panels of the f32 weights
    /// ([`crate::kernels::Panels`]); one slot per Linear, as large as either needs (the file
    /// itself stays borrowed, untouched).
    pub fn consts_len_for(cfg: &Config, kernel: Kernel) -> usize {
        let base = Self::folded_len(cfg);
        let slots = linear_shapes(cfg)
            .map(|(r, c)| slot_len(kernel, r, c))
            .sum::<usize>();
        if slots == 0 {
            return base;
        }
        // 16 floats of slack so the packed weights can start 64-byte aligned.
        base.div_ceil(16) * 16 + 16 + slots
    }

    /// Floats of the constants buffer [`Runtime::new`] needs for this `file` on `kernel`: like
    /// [`Runtime::consts_len_for`], but each Linear's slot sized for the precision the file
    /// stores it in (an int8 file on the int16 kernel needs no room for f32 panels), so never
    /// more than that bound.
    pub fn consts_len_for_file(file: &ModelFile, kernel: Kernel) -> usize {
        let cfg = file.config;
        let base = Self::folded_len(&cfg);
        if cfg.layers > MAX_LAYERS {
            return base;
        }
        let (ws, n) = linear_weights(file);
        let slots = ws[..n]
            .iter()
            .map(|wt| weight_slot_len(kernel, wt))
            .sum::<usize>();
        if slots == 0 {
            return base;
        }
        base.div_ceil(16) * 16 + 16 + slots
    }

    /// Floats of the folded constants (pool weight, graph constants).
    fn folded_len(cfg: &Config) -> usize {
        cfg.d
            + if cfg.graph > 0 {
                (JOINTS + 4) * cfg.graph
            } else {
                0
            }
    }

    /// Floats of the constants buffer that any kernel needs (the largest
    /// [`Runtime::consts_len_for`]: int16 pairs and f32 panels).
    pub fn consts_len(cfg: &Config) -> usize {
        Self::consts_len_for(cfg, Kernel::largest_consts())
    }

    /// Floats of the int16 activation buffer in the scratch: the most `tokens × ⌈in/2⌉` of
    /// any Linear, and one scale per token.
    fn qbuf_len(cfg: &Config) -> (usize, usize) {
        let tokens = cfg.packets.max(if cfg.graph > 0 { JOINTS } else { 1 });
        let words = linear_shapes(cfg)
            .map(|(r, _)| r.div_ceil(2))
            .max()
            .unwrap_or(0);
        (tokens * words, tokens)
    }

    /// Floats of scratch one [`Runtime::forward`] uses.
    pub fn scratch_len(cfg: &Config) -> usize {
        let (p, d) = (cfg.packets, cfg.d);
        let g = cfg.graph;
        let pp = p.div_ceil(8) * 8;
        cfg.frame_len()
            + p * d * 5 // h, ctx, r, one head's values and context
            + p * 3 * d
            + p * 2 * d
            + p * pp // attention scores
            + d * pp // one head's keys, transposed
            + 2 * d
            + OUTPUTS
            + if g > 0 { g + 2 * JOINTS * g + OUTPUTS } else { 0 }
            + {
                let (q, s) = Self::qbuf_len(cfg);
                q + s
            }
    }

    /// Resolves the tensors of `file` and folds the graph head's constants into `consts`
    /// (at least [`Runtime::consts_len_for_file`] floats for `kernel`), which the runtime then
    /// borrows; for the int16 kernels also repacks every Linear there.
    pub fn new(
        file: &ModelFile<'m>,
        kernel: Kernel,
        consts: &'p mut [f32],
    ) -> Result<Runtime<'m, 'p>, RuntimeError> {
        let cfg = file.config;
        if cfg.layers > MAX_LAYERS {
            return Err(RuntimeError::TooManyLayers(cfg.layers));
        }
        let need = Self::consts_len_for_file(file, kernel);
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
        let consts = &mut consts[..need];
        let graph = if cfg.graph > 0 {
            let g = cfg.graph;
            let gt = t + 6;
            let embed = v(gt);
            let win = w(gt + 1);
            let bin = v(gt + 2);
            let (cj, rest) = consts[d..d + (JOINTS + 4) * g].split_at_mut(JOINTS * g);
            let (wk, wo) = rest.split_at_mut(2 * g);
            // graph.output.weight [g, 2], dequantised and transposed to [2, g].
            let wout = w(gt + 7);
            for c in 0..2 {
                for k in 0..g {
                    wo[c * g + k] = wout.get(k, c);
                }
            }
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
                out_b: v(gt + 8),
            })
        } else {
            None
        };
        let mut packed = [None; MAX_LINEARS];
        let consts: &'p [f32] = if need > Self::folded_len(&cfg) {
            let base = Self::folded_len(&cfg).div_ceil(16) * 16;
            let (head, mut mem) = consts.split_at_mut(base);
            let skip = mem.as_ptr().align_offset(64).min(16);
            mem = &mut mem[skip..];
            let (ws, n) = linear_weights(file);
            for (slot, wt) in packed.iter_mut().zip(&ws[..n]) {
                let (this, rest) = mem.split_at_mut(weight_slot_len(kernel, wt));
                // f32 weights stay on the exact f32 kernels (quantized to int16 they missed
                // the engine agreement, see BENCHMARKS.md), in panels where AVX-512 runs them.
                *slot = match wt.data {
                    TensorData::F32(_) if kernel.f32_panels() && avx512_f32_cols(wt.cols) => {
                        pack_panels(wt, this).map(Repacked::Panels)
                    }
                    TensorData::F32(_) => None,
                    _ if kernel.int16() => Some(Repacked::Int16(pack(wt, this))),
                    _ => None,
                };
                mem = rest;
            }
            head
        } else {
            consts
        };
        let run_kernel = if packed.iter().any(|p| matches!(p, Some(Repacked::Int16(_)))) {
            kernel
        } else {
            kernel.without_int16()
        };
        Ok(Runtime {
            packed,
            run_kernel,
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

    /// The kernel path requested at [`Runtime::new`].
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The kernel path the forward actually runs: [`Runtime::kernel`], or its exact-f32
    /// counterpart when no Linear was repacked for int16 (an fp32 file on an int16 kernel,
    /// e.g. `avx512` for `avx512-vnni-int16`). What to report as "the kernel".
    pub fn run_kernel(&self) -> Kernel {
        self.run_kernel
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
        // Inlined into the kernel's vectorised context (not left a separate baseline
        // function).
        self.run_kernel.vectorised(
            #[inline(always)]
            || self.forward_impl(x, scratch, out),
        )
    }

    /// The forward's sequence of operations ([`crate::ops`] decides how each runs).
    #[inline(always)]
    fn forward_impl(
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
        let kern = self.run_kernel;
        let (qlen, slen) = Self::qbuf_len(cfg);
        let (scratch, qrest) = scratch[..need].split_at_mut(need - qlen - slen);
        let (qb, qs) = qrest.split_at_mut(qlen);
        let pk = &self.packed;
        let (tok, rest) = scratch.split_at_mut(cfg.frame_len());
        let (h, rest) = rest.split_at_mut(p * d);
        let (ctx, rest) = rest.split_at_mut(p * d);
        let (r, rest) = rest.split_at_mut(p * d);
        let pp = p.div_ceil(8) * 8;
        let (vh, rest) = rest.split_at_mut(p * d);
        let (ch, rest) = rest.split_at_mut(p * d);
        let (qkv, rest) = rest.split_at_mut(p * 3 * d);
        let (ff, rest) = rest.split_at_mut(p * 2 * d);
        let (scores, rest) = rest.split_at_mut(p * pp);
        let (kt, rest) = rest.split_at_mut(d * pp);
        let (z, rest) = rest.split_at_mut(d);
        let (u, rest) = rest.split_at_mut(d);
        let (kp0, rest) = rest.split_at_mut(OUTPUTS);

        // Standardisation and embedding + bias + positional embedding (the input layout
        // [A·S, P] is kept: token t, feature k at k·P + t).
        prof!(start);
        if let Some(Repacked::Int16(pe)) = &pk[0] {
            // int16: standardised and quantized in one pass, straight from x.
            let xq = ops::standardise_quantize(kern, x, cfg.token_len(), p, pe.qx, qb, qs);
            prof!(0);
            linear_int16(
                kern,
                &xq,
                pe,
                Some(self.emb_b),
                Act::None,
                Some(self.pos),
                h,
            );
        } else {
            ops::standardise(x, tok);
            prof!(0);
            let tok_in = Input {
                x: tok,
                tokens: p,
                ts: 1,
                ks: p,
            };
            let (b, pos) = (Some(self.emb_b), Some(self.pos));
            match &pk[0] {
                Some(Repacked::Panels(pw)) => {
                    linear_panels(kern, tok_in, &self.emb_w, pw, b, Act::None, pos, h)
                }
                _ => linear(kern, tok_in, &self.emb_w, b, Act::None, pos, h),
            }
        }
        prof!(1);

        // Post-norm encoder layers.
        for (li, l) in self.layers.iter().take(cfg.layers).flatten().enumerate() {
            let lp = &pk[1 + 4 * li..5 + 4 * li];
            let q = (&mut *qb, &mut *qs);
            let x_in = Input::rows(h, p, d);
            lin(
                kern,
                x_in,
                &l.in_w,
                lp[0].as_ref(),
                Some(l.in_b),
                Act::None,
                None,
                qkv,
                q,
            );
            prof!(2);
            let bufs = AttnBufs {
                kt: &mut *kt,
                s: &mut *scores,
                vh: &mut *vh,
                ch: &mut *ch,
            };
            ops::attention(kern, qkv, ctx, bufs, p, d, cfg.heads);
            prof!(3);
            let q = (&mut *qb, &mut *qs);
            let c_in = Input::rows(ctx, p, d);
            let (w, b) = (&l.out_w, Some(l.out_b));
            lin(kern, c_in, w, lp[1].as_ref(), b, Act::None, Some(h), r, q);
            prof!(4);
            ops::layernorm(kern, r, l.n1_w, l.n1_b, h, p, d);
            prof!(5);
            let q = (&mut *qb, &mut *qs);
            let x_in = Input::rows(h, p, d);
            lin(
                kern,
                x_in,
                &l.l1_w,
                lp[2].as_ref(),
                Some(l.l1_b),
                Act::Gelu,
                None,
                ff,
                q,
            );
            prof!(6);
            let q = (&mut *qb, &mut *qs);
            let f_in = Input::rows(ff, p, 2 * d);
            let (w, b) = (&l.l2_w, Some(l.l2_b));
            lin(kern, f_in, w, lp[3].as_ref(), b, Act::None, Some(h), r, q);
            prof!(7);
            ops::layernorm(kern, r, l.n2_w, l.n2_b, h, p, d);
            prof!(5);
        }

        // Attention pooling.
        ops::pool(kern, h, &self.consts[..d], self.pool_b, p, d, scores, z);
        prof!(8);

        // Head: kp0 = sigmoid(W3 · GELU(W0 · z + b0) + b3).
        let hp = 1 + 4 * cfg.layers;
        let q = (&mut *qb, &mut *qs);
        let z_in = Input::rows(z, 1, d);
        lin(
            kern,
            z_in,
            &self.h0_w,
            pk[hp].as_ref(),
            Some(self.h0_b),
            Act::Gelu,
            None,
            u,
            q,
        );
        let q = (&mut *qb, &mut *qs);
        let u_in = Input::rows(u, 1, d);
        let (w, b) = (&self.h3_w, Some(self.h3_b));
        lin(
            kern,
            u_in,
            w,
            pk[hp + 1].as_ref(),
            b,
            Act::None,
            None,
            kp0,
            q,
        );
        for v in kp0.iter_mut() {
            *v = math::sigmoid(*v);
        }
        prof!(9);

        // Skeleton-graph refinement (folded input layer, two graph layers, tanh output).
        let Some(gr) = &self.graph else {
            out.copy_from_slice(kp0);
            return Ok(());
        };
        let g = gr.g;
        let (gu, rest) = rest.split_at_mut(g);
        let (fa, rest) = rest.split_at_mut(JOINTS * g);
        let (fb, rest) = rest.split_at_mut(JOINTS * g);
        let gt = &mut rest[..OUTPUTS];
        let q = (&mut *qb, &mut *qs);
        let z_in = Input::rows(z, 1, d);
        lin(
            kern,
            z_in,
            &gr.wz,
            pk[hp + 2].as_ref(),
            None,
            Act::None,
            None,
            gu,
            q,
        );
        let cj = &self.consts[d..d + JOINTS * g];
        let (wk0, wk1) = self.consts[d + JOINTS * g..d + (JOINTS + 2) * g].split_at(g);
        for j in 0..JOINTS {
            let (kx, ky) = (kp0[2 * j], kp0[2 * j + 1]);
            let row = &mut fa[j * g..(j + 1) * g];
            let cjr = &cj[j * g..(j + 1) * g];
            // Zipped slices (no bounds checks), so the loop vectorises.
            for ((((o, &u), &c), &w0), &w1) in row.iter_mut().zip(&*gu).zip(cjr).zip(wk0).zip(wk1) {
                let v = u + c + kx * w0 + ky * w1;
                *o = v.max(0.0);
            }
        }
        prof!(10);
        for li in 0..2 {
            // m = Â f (into fb), then f = ReLU(m W + b) (into fa).
            ops::graph_mix(kern, fa, fb, g, &NEIGHBOURS);
            prof!(11);
            let q = (&mut *qb, &mut *qs);
            let m_in = Input::rows(fb, JOINTS, g);
            let (w, b) = (&gr.layer_w[li], Some(gr.layer_b[li]));
            lin(
                kern,
                m_in,
                w,
                pk[hp + 3 + li].as_ref(),
                b,
                Act::Relu,
                None,
                fa,
                q,
            );
            prof!(12);
        }
        let wo = &self.consts[d + (JOINTS + 2) * g..d + (JOINTS + 4) * g];
        ops::graph_out(kern, fa, wo, g, gr.out_b, kp0, GRAPH_SCALE, gt, out);
        prof!(13);
        Ok(())
    }
}

/// Floating-point operations of one forward pass ([`Config::flops_per_forward`]: matrix
/// products only, a multiply-add is 2; the graph head counted unfolded, dense `Â`).
pub fn flops_per_forward(cfg: &Config) -> u64 {
    cfg.flops_per_forward()
}
