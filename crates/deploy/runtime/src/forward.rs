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
//! VNNI path the other stages (LayerNorm, attention, graph mixing and output) run in AVX-512
//! code that performs exactly the portable operations, so that path equals its portable
//! reference bit for bit.

use core::fmt;

use crate::format::{Config, ModelFile, TensorData, JOINTS, JOINT_EMBED};
use crate::int16::{pack, packed_len, Packed};
use crate::kernels::{
    layernorm, linear, linear_int16, quantize_rows, quantize_standardised, Act, Input, Kernel,
    Weights,
};
use crate::math;

pub use csipose_spec::act::GRAPH_SCALE;
use csipose_spec::coco::NEIGHBOURS;
/// Largest number of encoder layers (the tensor views live in the [`Runtime`] value, without
/// allocation); the architecture's bound, so every valid file fits.
pub use csipose_spec::config::MAX_LAYERS;
/// Outputs per frame: 17 joints × (x, y).
pub use csipose_spec::config::OUTPUTS;

/// Cycle counts per stage of the forward (feature `profile`, x86-64 only): a development aid
/// for finding where the time goes; off by default and compiled out.
#[cfg(all(feature = "profile", target_arch = "x86_64"))]
pub mod profile {
    use core::sync::atomic::{AtomicU64, Ordering};
    /// Stage names, in the order of [`CYCLES`].
    pub const STAGES: [&str; 14] = [
        "standardise",
        "embed",
        "qkv",
        "attention",
        "out_proj",
        "layernorm",
        "ffn1",
        "ffn2",
        "pool",
        "head",
        "graph_in",
        "graph_mix",
        "graph_linear",
        "graph_out",
    ];
    /// Accumulated time-stamp-counter ticks per stage.
    pub static CYCLES: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];
    static LAST: AtomicU64 = AtomicU64::new(0);
    #[inline(always)]
    pub(crate) fn start() {
        // SAFETY: rdtsc exists on every x86-64 CPU.
        LAST.store(unsafe { core::arch::x86_64::_rdtsc() }, Ordering::Relaxed);
    }
    #[inline(always)]
    pub(crate) fn mark(stage: usize) {
        let now = unsafe { core::arch::x86_64::_rdtsc() };
        let last = LAST.swap(now, Ordering::Relaxed);
        CYCLES[stage].fetch_add(now - last, Ordering::Relaxed);
    }
}

macro_rules! prof {
    (start) => {
        #[cfg(all(feature = "profile", target_arch = "x86_64"))]
        profile::start();
    };
    ($n:expr) => {
        #[cfg(all(feature = "profile", target_arch = "x86_64"))]
        profile::mark($n);
    };
}

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
    /// The int16 path's repacked Linears, in [`linear_shapes`] order (int16 kernels only).
    packed: [Option<Packed<'p>>; MAX_LINEARS],
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
    /// constants, plus for the int16 kernels ([`Kernel::int16`]) an int16 working copy of every
    /// Linear's weights ([`crate::int16`]; the file itself stays borrowed, untouched).
    pub fn consts_len_for(cfg: &Config, kernel: Kernel) -> usize {
        let base = cfg.d
            + if cfg.graph > 0 {
                (JOINTS + 4) * cfg.graph
            } else {
                0
            };
        if !kernel.int16() {
            return base;
        }
        // 16 floats of slack so the packed weights can start 64-byte aligned.
        base.div_ceil(16) * 16
            + 16
            + linear_shapes(cfg)
                .map(|(r, c)| packed_len(r, c))
                .sum::<usize>()
    }

    /// Floats of the constants buffer that any kernel needs (the largest
    /// [`Runtime::consts_len_for`], the int16 kernels').
    pub fn consts_len(cfg: &Config) -> usize {
        Self::consts_len_for(cfg, Kernel::portable_int16())
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
    /// (at least [`Runtime::consts_len_for`] floats for `kernel`), which the runtime then
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
        let need = Self::consts_len_for(&cfg, kernel);
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
        let consts: &'p [f32] = if kernel.int16() {
            let base = Self::consts_len_for(&cfg, Kernel::portable()).div_ceil(16) * 16;
            let (head, mut mem) = consts.split_at_mut(base);
            let skip = mem.as_ptr().align_offset(64).min(16);
            mem = &mut mem[skip..];
            let mut ws = [w(0); MAX_LINEARS];
            let mut n = 1;
            for l in layers.iter().flatten() {
                ws[n..n + 4].copy_from_slice(&[l.in_w, l.out_w, l.l1_w, l.l2_w]);
                n += 4;
            }
            ws[n] = w(t + 2);
            ws[n + 1] = w(t + 4);
            n += 2;
            if let Some(gr) = &graph {
                ws[n..n + 3].copy_from_slice(&[gr.wz, gr.layer_w[0], gr.layer_w[1]]);
                n += 3;
            }
            for (slot, wt) in packed.iter_mut().zip(&ws[..n]) {
                let (this, rest) = mem.split_at_mut(packed_len(wt.rows, wt.cols));
                // f32 weights stay on the exact f32 kernels: quantized to int16 they missed
                // the engine agreement (see BENCHMARKS.md).
                if !matches!(wt.data, TensorData::F32(_)) {
                    *slot = Some(pack(wt, this));
                }
                mem = rest;
            }
            head
        } else {
            consts
        };
        let run_kernel = if packed.iter().any(Option::is_some) {
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
        #[cfg(target_arch = "x86_64")]
        if self.kernel.is_avx2() {
            // SAFETY: the AVX2 kernel value exists only where AVX2+FMA were detected.
            return unsafe { self.forward_avx2(x, scratch, out) };
        }
        self.forward_impl(x, scratch, out)
    }

    /// The whole forward compiled for AVX2+FMA, so the elementwise loops and reductions
    /// (written lane-wise, without reassociation) vectorise 8 wide; no FMA contraction, so
    /// they compute the portable path's values.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(
        &self,
        x: &[f32],
        scratch: &mut [f32],
        out: &mut [f32; OUTPUTS],
    ) -> Result<(), RuntimeError> {
        self.forward_impl(x, scratch, out)
    }

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

        // Standardise (the input layout [A·S, P] is kept: token t, feature k at k·P + t).
        prof!(start);
        if let Some(pe) = &pk[0] {
            // int16: standardised and quantized in one pass, straight from x.
            let k = cfg.token_len();
            #[cfg(target_arch = "x86_64")]
            let fused = kern.is_vnni16() && p <= 16;
            #[cfg(not(target_arch = "x86_64"))]
            let fused = false;
            let xq = if fused {
                #[cfg(target_arch = "x86_64")]
                {
                    let np = k.div_ceil(2);
                    assert!(x.len() == k * p && qb.len() >= np * p && qs.len() >= p);
                    // SAFETY: Vnni16 exists only where AVX-512 was detected; lengths checked.
                    unsafe { crate::vnni::standardise_quantize(x, k, p, pe.qx, qb, qs) };
                    crate::int16::QInput {
                        q: &qb[..np * p],
                        sx: &qs[..p],
                        tokens: p,
                        ts: 1,
                        js: p,
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!()
            } else {
                let st = math::standardise_stats(x);
                quantize_standardised(kern, x, k, p, st, pe.qx, qb, qs)
            };
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
            let (mean, inv) = math::standardise_stats(x);
            for (t, &v) in tok.iter_mut().zip(x) {
                *t = (v - mean) * inv;
            }
            prof!(0);
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
        }
        prof!(1);

        for (li, l) in self.layers.iter().take(cfg.layers).flatten().enumerate() {
            let lp = &pk[1 + 4 * li..5 + 4 * li];
            lin(
                kern,
                Input::rows(h, p, d),
                &l.in_w,
                lp[0].as_ref(),
                Some(l.in_b),
                Act::None,
                None,
                qkv,
                (&mut *qb, &mut *qs),
            );
            prof!(2);
            let bufs = AttnBufs {
                kt: &mut *kt,
                s: &mut *scores,
                vh: &mut *vh,
                ch: &mut *ch,
            };
            attention(kern, qkv, ctx, bufs, p, d, cfg.heads);
            prof!(3);
            lin(
                kern,
                Input::rows(ctx, p, d),
                &l.out_w,
                lp[1].as_ref(),
                Some(l.out_b),
                Act::None,
                Some(h),
                r,
                (&mut *qb, &mut *qs),
            );
            prof!(4);
            norm(kern, r, l.n1_w, l.n1_b, h, p, d);
            prof!(5);
            lin(
                kern,
                Input::rows(h, p, d),
                &l.l1_w,
                lp[2].as_ref(),
                Some(l.l1_b),
                Act::Gelu,
                None,
                ff,
                (&mut *qb, &mut *qs),
            );
            prof!(6);
            lin(
                kern,
                Input::rows(ff, p, 2 * d),
                &l.l2_w,
                lp[3].as_ref(),
                Some(l.l2_b),
                Act::None,
                Some(h),
                r,
                (&mut *qb, &mut *qs),
            );
            prof!(7);
            norm(kern, r, l.n2_w, l.n2_b, h, p, d);
            prof!(5);
        }

        // Attention pooling.
        let pool_w = &self.consts[..d];
        #[cfg(target_arch = "x86_64")]
        let pooled = if kern.is_vnni16() && p <= 16 {
            assert!(h.len() >= p * d && scores.len() >= p && z.len() >= d);
            // SAFETY: Vnni16 exists only where AVX-512 was detected; lengths checked above.
            unsafe { crate::vnni::pool(h, pool_w, self.pool_b, p, d, scores, z) };
            true
        } else {
            false
        };
        #[cfg(not(target_arch = "x86_64"))]
        let pooled = false;
        let mut mx = f32::NEG_INFINITY;
        for t in 0..p * usize::from(!pooled) {
            let s = dot(&h[t * d..(t + 1) * d], pool_w) + self.pool_b;
            scores[t] = s;
            mx = mx.max(s);
        }
        if !pooled {
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
        }

        prof!(8);
        // Head.
        let hp = 1 + 4 * cfg.layers;
        lin(
            kern,
            Input::rows(z, 1, d),
            &self.h0_w,
            pk[hp].as_ref(),
            Some(self.h0_b),
            Act::Gelu,
            None,
            u,
            (&mut *qb, &mut *qs),
        );
        lin(
            kern,
            Input::rows(u, 1, d),
            &self.h3_w,
            pk[hp + 1].as_ref(),
            Some(self.h3_b),
            Act::None,
            None,
            kp0,
            (&mut *qb, &mut *qs),
        );
        for v in kp0.iter_mut() {
            *v = math::sigmoid(*v);
        }

        prof!(9);
        let Some(gr) = &self.graph else {
            out.copy_from_slice(kp0);
            return Ok(());
        };
        let g = gr.g;
        let (gu, rest) = rest.split_at_mut(g);
        let (fa, rest) = rest.split_at_mut(JOINTS * g);
        let (fb, rest) = rest.split_at_mut(JOINTS * g);
        let gt = &mut rest[..OUTPUTS];
        lin(
            kern,
            Input::rows(z, 1, d),
            &gr.wz,
            pk[hp + 2].as_ref(),
            None,
            Act::None,
            None,
            gu,
            (&mut *qb, &mut *qs),
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
            #[cfg(target_arch = "x86_64")]
            if kern.is_vnni16() {
                assert!(fa.len() >= JOINTS * g && fb.len() >= JOINTS * g);
                // SAFETY: Vnni16 exists only where AVX-512 was detected; neighbour indices are
                // joints (< 17) and the lengths are checked above.
                unsafe { crate::vnni::graph_mix(fa, fb, g, &NEIGHBOURS) };
            }
            for (i, (nb, cnt)) in NEIGHBOURS.iter().enumerate() {
                #[cfg(target_arch = "x86_64")]
                if kern.is_vnni16() {
                    break;
                }
                let a = 1.0 / *cnt as f32;
                let m = &mut fb[i * g..(i + 1) * g];
                let f0 = &fa[nb[0] * g..(nb[0] + 1) * g];
                for (o, v) in m.iter_mut().zip(f0) {
                    *o = a * v;
                }
                for &j in &nb[1..*cnt] {
                    let fj = &fa[j * g..(j + 1) * g];
                    for (o, v) in m.iter_mut().zip(fj) {
                        *o += a * v;
                    }
                }
            }
            prof!(11);
            lin(
                kern,
                Input::rows(fb, JOINTS, g),
                &gr.layer_w[li],
                pk[hp + 3 + li].as_ref(),
                Some(gr.layer_b[li]),
                Act::Relu,
                None,
                fa,
                (&mut *qb, &mut *qs),
            );
            prof!(12);
        }
        let wo = &self.consts[d + (JOINTS + 2) * g..d + (JOINTS + 4) * g];
        #[cfg(target_arch = "x86_64")]
        if kern.is_vnni16() {
            assert!(fa.len() >= JOINTS * g && gr.out_b.len() >= 2 && JOINTS <= 24);
            // SAFETY: Vnni16 exists only where AVX-512 was detected; lengths checked above
            // (wo is 2·g, kp0 and out 34).
            unsafe { crate::vnni::graph_out(fa, wo, g, gr.out_b, kp0, GRAPH_SCALE, out) };
            prof!(13);
            return Ok(());
        }
        for j in 0..JOINTS {
            let fj = &fa[j * g..(j + 1) * g];
            gt[2 * j] = dot(fj, &wo[..g]) + gr.out_b[0];
            gt[2 * j + 1] = dot(fj, &wo[g..]) + gr.out_b[1];
        }
        for ((o, t), k) in out.iter_mut().zip(gt.iter()).zip(kp0.iter()) {
            *o = k + GRAPH_SCALE * math::tanh(*t);
        }
        prof!(13);
        Ok(())
    }
}

/// LayerNorm of `rows` rows of `d` (the AVX-512 version on the int16 path, the same values).
#[inline(always)]
fn norm(kern: Kernel, x: &[f32], g: &[f32], b: &[f32], y: &mut [f32], rows: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    if kern.is_vnni16() {
        assert!(x.len() >= rows * d && y.len() >= rows * d && g.len() >= d && b.len() >= d);
        // SAFETY: Vnni16 exists only where AVX-512 was detected; lengths checked above.
        unsafe { crate::vnni::layernorm(x, g, b, y, rows, d) };
        return;
    }
    let _ = kern;
    layernorm(x, g, b, y, rows, d);
}

/// One model Linear: on its repacked int16 weights when the kernel packed them (inputs
/// quantized into `q` first), else the f32 kernels. `x` is row-major (`ks` = 1).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lin(
    kern: Kernel,
    x: Input,
    w: &Weights,
    pk: Option<&Packed>,
    bias: Option<&[f32]>,
    act: Act,
    residual: Option<&[f32]>,
    y: &mut [f32],
    q: (&mut [f32], &mut [f32]),
) {
    match pk {
        Some(pk) => {
            let xq = quantize_rows(kern, x.x, x.tokens, w.rows, x.ts, pk.qx, q.0, q.1);
            linear_int16(kern, &xq, pk, bias, act, residual, y);
        }
        None => linear(kern, x, w, bias, act, residual, y),
    }
}

/// Dot product in eight lanes (lane `l` sums elements `l, l+8, ...`), lanes added pairwise,
/// then the tail: the same order on every path, and vectorisable.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = lanes_sum(&acc);
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Sum of `xs` in eight lanes, as [`dot`].
#[inline(always)]
pub(crate) fn sum8(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let c = xs.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    let mut s = lanes_sum(&acc);
    for x in r {
        s += x;
    }
    s
}

#[inline(always)]
fn lanes_sum(a: &[f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Scratch of [`attention`].
struct AttnBufs<'a> {
    /// One head's keys, transposed and zero-padded: `[dh, pp]`.
    kt: &'a mut [f32],
    /// Scores / probabilities `[p, pp]`.
    s: &'a mut [f32],
    /// One head's values `[p, dh]`.
    vh: &'a mut [f32],
    /// One head's context `[p, dh]`.
    ch: &'a mut [f32],
}

/// Multi-head self-attention over the `p` tokens of `qkv [p, 3d]` into `ctx [p, d]`. Per
/// head, `S = Q·Kᵀ` and `C = softmax(S)·V` run on the Linear kernel (keys transposed and
/// padded to a multiple of 8 columns, values copied contiguous); the softmax is elementwise.
#[inline(always)]
fn attention(
    kern: Kernel,
    qkv: &[f32],
    ctx: &mut [f32],
    b: AttnBufs,
    p: usize,
    d: usize,
    heads: usize,
) {
    let dh = d / heads;
    let pp = p.div_ceil(8) * 8;
    let scale = 1.0 / math::sqrt(dh as f32);
    let (kt, s, vh, ch) = (
        &mut b.kt[..dh * pp],
        &mut b.s[..p * pp],
        &mut b.vh[..p * dh],
        &mut b.ch[..p * dh],
    );
    kt.fill(0.0);
    // The int16 path on AVX-512: both products in dedicated kernels (the same roundings as the
    // portable Linear, so still equal to `portable_int16`), reading Q and V in place.
    #[cfg(target_arch = "x86_64")]
    if kern.is_vnni16() && p <= 16 && dh <= 64 {
        for h in 0..heads {
            for j in 0..p {
                let k = &qkv[j * 3 * d + d + h * dh..j * 3 * d + d + (h + 1) * dh];
                for (t, &v) in k.iter().enumerate() {
                    kt[t * pp + j] = v;
                }
            }
            assert!(qkv.len() >= p * 3 * d && ctx.len() >= p * d);
            // SAFETY: Vnni16 exists only where AVX-512 was detected; q rows i < p at
            // i·3d + h·dh + t (t < dh), values at j·3d + 2d + h·dh + c (c < dh), ctx rows at
            // i·d + h·dh + c all lie inside the checked lengths; kt and s are [dh, pp], [p, pp].
            unsafe {
                crate::vnni::attn_scores(
                    qkv[h * dh..].as_ptr(),
                    3 * d,
                    kt.as_ptr(),
                    pp,
                    dh,
                    p,
                    s.as_mut_ptr(),
                );
            }
            // SAFETY: as above; s is [p, pp] with p ≤ 16.
            unsafe { crate::vnni::softmax_rows(s, p, pp, scale) };
            unsafe {
                crate::vnni::attn_context(
                    s.as_ptr(),
                    pp,
                    qkv[2 * d + h * dh..].as_ptr(),
                    3 * d,
                    dh,
                    p,
                    ctx[h * dh..].as_mut_ptr(),
                    d,
                );
            }
        }
        return;
    }
    for h in 0..heads {
        for j in 0..p {
            let k = &qkv[j * 3 * d + d + h * dh..j * 3 * d + d + (h + 1) * dh];
            for (t, &v) in k.iter().enumerate() {
                kt[t * pp + j] = v;
            }
            vh[j * dh..(j + 1) * dh].copy_from_slice(
                &qkv[j * 3 * d + 2 * d + h * dh..j * 3 * d + 2 * d + (h + 1) * dh],
            );
        }
        let q = Input {
            x: &qkv[h * dh..],
            tokens: p,
            ts: 3 * d,
            ks: 1,
        };
        let kw = Weights {
            rows: dh,
            cols: pp,
            data: TensorData::F32(kt),
        };
        linear(kern, q, &kw, None, Act::None, None, s);
        softmax_rows(s, p, pp, scale);
        let vw = Weights {
            rows: p,
            cols: dh,
            data: TensorData::F32(vh),
        };
        let a = Input {
            x: s,
            tokens: p,
            ts: pp,
            ks: 1,
        };
        linear(kern, a, &vw, None, Act::None, None, ch);
        for i in 0..p {
            ctx[i * d + h * dh..i * d + (h + 1) * dh].copy_from_slice(&ch[i * dh..(i + 1) * dh]);
        }
    }
}

/// Softmax of `scores · scale` over the first `p` columns of each row of `s [p, pp]`.
#[inline(always)]
fn softmax_rows(s: &mut [f32], p: usize, pp: usize, scale: f32) {
    for row in s.chunks_exact_mut(pp) {
        let row = &mut row[..p];
        let mx = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
        for v in row.iter_mut() {
            *v = math::exp(*v * scale - mx);
        }
        let inv = 1.0 / sum8(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Floating-point operations of one forward pass ([`Config::flops_per_forward`]: matrix
/// products only, a multiply-add is 2; the graph head counted unfolded, dense `Â`).
pub fn flops_per_forward(cfg: &Config) -> u64 {
    cfg.flops_per_forward()
}
