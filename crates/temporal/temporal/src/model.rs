//! The activity classifier: per-frame normalisation and embedding (tanh), residual attention
//! layers built on `csipose-attention` (causal, sparse or dense), mean pooling over time and a
//! linear classifier. Forward, backward (for training), whole-sequence prediction, and a
//! frame-by-frame streaming predictor that uses the KV cache. Weights live in one flat array in
//! the `.rvne` order (see [`crate::rvne::WeightLayout`]).

use csipose_attention::{Attention, AttentionConfig, Backend, KvCache};

use crate::linalg::{matmul, matmul_a_bt_acc, matmul_acc, matmul_at_b_acc};
use crate::rvne::{self, HeadConfig, RvneError, RvneHeader, RvneMeta, WeightLayout};

/// Model dimensions (everything in the `.rvne` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    pub input_dim: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub n_layers: usize,
    pub n_classes: usize,
}

/// A classifier: shape, backend, head config (attention window, block size, causal; the
/// per-frame features it reads) and weights.
#[derive(Clone, Debug)]
pub struct ActivityModel {
    pub shape: ModelShape,
    pub backend: Backend,
    pub head: HeadConfig,
    pub weights: Vec<f32>,
    /// The class names and feature settings it was trained with (the `.rvne` META section);
    /// `None` for a file written without them.
    pub meta: Option<RvneMeta>,
}

/// Errors building or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Rvne(#[from] RvneError),
    #[error(transparent)]
    Attention(#[from] csipose_attention::AttentionError),
    #[error("{what} is {value}, which does not fit the .rvne header's u16")]
    TooLarge { what: &'static str, value: usize },
    #[error("input has {len} floats, not a whole number of {input_dim}-float frames")]
    RaggedInput { len: usize, input_dim: usize },
    #[error("an empty sequence has no frames to classify")]
    EmptySequence,
}

/// [`ActivityModel::normalisation_gradient`]'s result.
#[derive(Clone, Debug)]
pub struct NormGradient {
    /// The sequence's logits.
    pub logits: Vec<f32>,
    /// Gradient with respect to the normalisation mean of each feature.
    pub mean: Vec<f32>,
    /// Gradient with respect to the normalisation standard deviation of each feature.
    pub sd: Vec<f32>,
}

/// Intermediate values of one forward pass, kept for the backward pass.
struct Trace {
    frames: usize,
    normalised: Vec<f32>,
    embedded: Vec<f32>,
    /// Input of each layer (`n_layers + 1` entries, the last is the output).
    hidden: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    attended: Vec<Vec<f32>>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
}

/// The project's one seeded generator (xoshiro256++), for initialisation, shuffling and
/// augmentation.
pub use csipose_rng::Rng;

/// Softmax probabilities of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|x| (x - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

impl ModelShape {
    pub fn model_dim(&self) -> usize {
        self.q_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    /// The attention configuration of every layer: these heads with the window, block size and
    /// causality of `head`.
    pub fn attention_config(&self, head: &HeadConfig) -> AttentionConfig {
        AttentionConfig {
            q_heads: self.q_heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            window: head.window as usize,
            block_size: head.block_size as usize,
            causal: head.causal,
        }
    }
    fn header(&self, fp16: bool, dense: bool) -> Result<RvneHeader, ModelError> {
        let u = |what, value: usize| {
            u16::try_from(value).map_err(|_| ModelError::TooLarge { what, value })
        };
        Ok(RvneHeader {
            fp16,
            dense,
            input_dim: u("input_dim", self.input_dim)?,
            n_q_heads: u("q_heads", self.q_heads)?,
            n_kv_heads: u("kv_heads", self.kv_heads)?,
            head_dim: u("head_dim", self.head_dim)?,
            n_layers: u("n_layers", self.n_layers)?,
            n_classes: u("n_classes", self.n_classes)?,
        })
    }
    pub fn layout(&self) -> WeightLayout {
        WeightLayout {
            model_dim: self.model_dim(),
            kv_dim: self.kv_dim(),
            input_dim: self.input_dim,
            n_layers: self.n_layers,
            n_classes: self.n_classes,
        }
    }
}

impl ActivityModel {
    /// Random initialisation with the default head config ([`HeadConfig::LEGACY`]: window 32,
    /// block 16, causal, amplitude features, 4 packets per frame); the input normalisation starts
    /// as identity (mean 0, std 1).
    pub fn new(shape: ModelShape, backend: Backend, seed: u64) -> Result<Self, ModelError> {
        Self::with_head(shape, backend, HeadConfig::LEGACY, seed)
    }

    /// Random initialisation with a given head config.
    pub fn with_head(
        shape: ModelShape,
        backend: Backend,
        head: HeadConfig,
        seed: u64,
    ) -> Result<Self, ModelError> {
        shape.header(false, false)?.validate()?;
        head.validate()?;
        shape.attention_config(&head).validate()?;
        let lay = shape.layout();
        let (d, kv, i, c) = (lay.model_dim, lay.kv_dim, lay.input_dim, lay.n_classes);
        let mut rng = Rng::new(seed);
        let mut w = vec![0.0f32; lay.total()];
        let mut fill = |w: &mut [f32], bound: f32| {
            w.iter_mut()
                .for_each(|x| *x = rng.range(-1.0, 1.0) as f32 * bound)
        };
        for l in 0..lay.n_layers {
            let o = lay.layer(l);
            fill(&mut w[o..o + d * d], (3.0 / d as f32).sqrt());
            fill(
                &mut w[o + d * d..o + d * d + 2 * d * kv],
                (3.0 / d as f32).sqrt(),
            );
            let wo = o + d * d + 2 * d * kv;
            fill(&mut w[wo..wo + d * d], 0.3 * (3.0 / d as f32).sqrt());
        }
        let wc = lay.classifier();
        fill(&mut w[wc..wc + d * c], (3.0 / d as f32).sqrt());
        let norm = lay.normalisation();
        w[norm + i..norm + 2 * i].fill(1.0);
        let we = lay.embedding();
        fill(&mut w[we..we + i * d], (6.0 / (i + d) as f32).sqrt());
        Ok(ActivityModel {
            shape,
            backend,
            head,
            weights: w,
            meta: None,
        })
    }

    /// Loads a `.rvne` blob.
    pub fn from_rvne(bytes: &[u8]) -> Result<Self, ModelError> {
        let view = rvne::RvneView::parse(bytes)?;
        let h = view.header;
        let shape = ModelShape {
            input_dim: h.input_dim as usize,
            q_heads: h.n_q_heads as usize,
            kv_heads: h.n_kv_heads as usize,
            head_dim: h.head_dim as usize,
            n_layers: h.n_layers as usize,
            n_classes: h.n_classes as usize,
        };
        Ok(ActivityModel {
            shape,
            backend: if h.dense {
                Backend::Dense
            } else {
                Backend::Sparse
            },
            head: view.head,
            weights: view.to_f32(),
            meta: view.meta(),
        })
    }

    /// Encodes the model as a `.rvne` blob (fp16 or fp32 weights; with the META section when
    /// `meta` is set).
    pub fn to_rvne(&self, fp16: bool) -> Result<Vec<u8>, ModelError> {
        let header = self.shape.header(fp16, self.backend == Backend::Dense)?;
        Ok(rvne::encode_with_meta(
            &header,
            &self.head,
            &self.weights,
            self.meta.as_ref(),
        )?)
    }

    /// Sets the stored input normalisation from training frames (`[frames, input_dim]`).
    pub fn set_normalisation(&mut self, frames: &[f32]) {
        let lay = self.shape.layout();
        let i = lay.input_dim;
        let n = (frames.len() / i).max(1) as f64;
        let mut mean = vec![0.0f64; i];
        let mut sq = vec![0.0f64; i];
        for row in frames.chunks_exact(i) {
            for (k, &x) in row.iter().enumerate() {
                mean[k] += x as f64;
                sq[k] += x as f64 * x as f64;
            }
        }
        let o = lay.normalisation();
        for k in 0..i {
            let m = mean[k] / n;
            let var = (sq[k] / n - m * m).max(0.0);
            self.weights[o + k] = m as f32;
            self.weights[o + i + k] = (var.sqrt() as f32).max(1e-6);
        }
    }

    fn attention(&self) -> Attention {
        Attention::new(self.shape.attention_config(&self.head), self.backend)
            .expect("validated in new")
    }

    fn frames(&self, x: &[f32]) -> Result<usize, ModelError> {
        let i = self.shape.input_dim;
        if !x.len().is_multiple_of(i) {
            return Err(ModelError::RaggedInput {
                len: x.len(),
                input_dim: i,
            });
        }
        if x.is_empty() {
            return Err(ModelError::EmptySequence);
        }
        Ok(x.len() / i)
    }

    /// Normalises and embeds one frame row-wise: returns (normalised, embedded).
    fn embed(&self, x: &[f32], frames: usize) -> (Vec<f32>, Vec<f32>) {
        let lay = self.shape.layout();
        let (i, d) = (lay.input_dim, lay.model_dim);
        let w = &self.weights;
        let norm = lay.normalisation();
        let mut xn = x.to_vec();
        for row in xn.chunks_exact_mut(i) {
            for k in 0..i {
                row[k] = (row[k] - w[norm + k]) / w[norm + i + k];
            }
        }
        let we = lay.embedding();
        let mut z = matmul(&xn, &w[we..we + i * d], frames, i, d);
        let be = &w[we + i * d..we + i * d + d];
        for row in z.chunks_exact_mut(d) {
            for (zk, b) in row.iter_mut().zip(be) {
                *zk = (*zk + b).tanh();
            }
        }
        (xn, z)
    }

    fn forward_trace(&self, x: &[f32]) -> Result<Trace, ModelError> {
        let frames = self.frames(x)?;
        let lay = self.shape.layout();
        let (d, kv) = (lay.model_dim, lay.kv_dim);
        let w = &self.weights;
        let att = self.attention();
        let (normalised, embedded) = self.embed(x, frames);
        let mut trace = Trace {
            frames,
            normalised,
            embedded: embedded.clone(),
            hidden: vec![embedded],
            queries: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            attended: Vec::new(),
            pooled: Vec::new(),
            logits: Vec::new(),
        };
        for l in 0..lay.n_layers {
            let o = lay.layer(l);
            let h = trace.hidden.last().expect("at least the embedding");
            let q = matmul(h, &w[o..o + d * d], frames, d, d);
            let k = matmul(h, &w[o + d * d..o + d * d + d * kv], frames, d, kv);
            let v = matmul(
                h,
                &w[o + d * d + d * kv..o + d * d + 2 * d * kv],
                frames,
                d,
                kv,
            );
            let a = att.forward(&q, &k, &v)?;
            let wo = o + d * d + 2 * d * kv;
            let mut next = h.clone();
            matmul_acc(&a, &w[wo..wo + d * d], &mut next, frames, d, d);
            trace.queries.push(q);
            trace.keys.push(k);
            trace.values.push(v);
            trace.attended.push(a);
            trace.hidden.push(next);
        }
        let last = trace.hidden.last().expect("at least the embedding");
        let mut pooled = vec![0.0f32; d];
        for row in last.chunks_exact(d) {
            for (p, x) in pooled.iter_mut().zip(row) {
                *p += x;
            }
        }
        pooled.iter_mut().for_each(|p| *p /= frames as f32);
        trace.logits = self.classify(&pooled);
        trace.pooled = pooled;
        Ok(trace)
    }

    fn classify(&self, pooled: &[f32]) -> Vec<f32> {
        let lay = self.shape.layout();
        let (d, c) = (lay.model_dim, lay.n_classes);
        let wc = lay.classifier();
        let mut logits = self.weights[wc + d * c..wc + d * c + c].to_vec();
        matmul_acc(pooled, &self.weights[wc..wc + d * c], &mut logits, 1, d, c);
        logits
    }

    /// Class logits of a whole sequence (`[frames, input_dim]`).
    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>, ModelError> {
        Ok(self.forward_trace(x)?.logits)
    }

    /// The most likely class.
    pub fn predict(&self, x: &[f32]) -> Result<usize, ModelError> {
        Ok(argmax(&self.logits(x)?))
    }

    /// Cross-entropy loss of one labelled sequence and its gradient with respect to every
    /// trainable weight (the normalisation entries get zero gradient).
    pub fn loss_and_gradient(
        &self,
        x: &[f32],
        label: usize,
    ) -> Result<(f32, Vec<f32>), ModelError> {
        let t = self.forward_trace(x)?;
        let probs = softmax(&t.logits);
        let loss = -(probs[label].max(1e-30)).ln();
        let mut dlogits = probs;
        dlogits[label] -= 1.0;
        let (g, _) = self.backward(&t, &dlogits, false)?;
        Ok((loss, g))
    }

    /// Logits of `x` and, for a loss whose gradient with respect to those logits is
    /// `dlogits(logits)`, the loss's gradient with respect to the stored input normalisation:
    /// mean and standard deviation, `input_dim` each (`x_n = (x − mean) / sd`).
    pub fn normalisation_gradient(
        &self,
        x: &[f32],
        dlogits: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<NormGradient, ModelError> {
        let t = self.forward_trace(x)?;
        let dl = dlogits(&t.logits);
        let (_, dxn) = self.backward(&t, &dl, true)?;
        let lay = self.shape.layout();
        let i = lay.input_dim;
        let norm = lay.normalisation();
        let sd = &self.weights[norm + i..norm + 2 * i];
        let (mut dmean, mut dsd) = (vec![0.0f32; i], vec![0.0f32; i]);
        for (dr, xr) in dxn.chunks_exact(i).zip(t.normalised.chunks_exact(i)) {
            for k in 0..i {
                dmean[k] -= dr[k] / sd[k];
                dsd[k] -= dr[k] * xr[k] / sd[k];
            }
        }
        Ok(NormGradient {
            logits: t.logits,
            mean: dmean,
            sd: dsd,
        })
    }

    /// Back-propagates `dlogits` through a forward trace: the gradient of every weight (zero
    /// on the normalisation entries) and, when `input` is set, of the normalised input
    /// `[frames, input_dim]` (else empty).
    fn backward(
        &self,
        t: &Trace,
        dlogits: &[f32],
        input: bool,
    ) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
        let lay = self.shape.layout();
        let (d, kv, i, c) = (lay.model_dim, lay.kv_dim, lay.input_dim, lay.n_classes);
        let n = t.frames;
        let w = &self.weights;
        let mut g = vec![0.0f32; w.len()];
        // Classifier.
        let wc = lay.classifier();
        matmul_at_b_acc(&t.pooled, dlogits, &mut g[wc..wc + d * c], 1, d, c);
        for (gb, dl) in g[wc + d * c..wc + d * c + c].iter_mut().zip(dlogits) {
            *gb += dl;
        }
        let mut dpooled = vec![0.0f32; d];
        matmul_a_bt_acc(dlogits, &w[wc..wc + d * c], &mut dpooled, 1, c, d);
        // Mean pooling.
        let mut dh: Vec<f32> = (0..n * d).map(|k| dpooled[k % d] / n as f32).collect();
        // Layers, last first.
        let att = self.attention();
        for l in (0..lay.n_layers).rev() {
            let o = lay.layer(l);
            let (wq, wk, wv, wo) = (o, o + d * d, o + d * d + d * kv, o + d * d + 2 * d * kv);
            let h = &t.hidden[l];
            // next = h + a Wo.
            let mut da = vec![0.0f32; n * d];
            matmul_a_bt_acc(&dh, &w[wo..wo + d * d], &mut da, n, d, d);
            matmul_at_b_acc(&t.attended[l], &dh, &mut g[wo..wo + d * d], n, d, d);
            let grads = att.backward(&t.queries[l], &t.keys[l], &t.values[l], &da)?;
            matmul_at_b_acc(h, &grads.dq, &mut g[wq..wq + d * d], n, d, d);
            matmul_at_b_acc(h, &grads.dk, &mut g[wk..wk + d * kv], n, d, kv);
            matmul_at_b_acc(h, &grads.dv, &mut g[wv..wv + d * kv], n, d, kv);
            matmul_a_bt_acc(&grads.dq, &w[wq..wq + d * d], &mut dh, n, d, d);
            matmul_a_bt_acc(&grads.dk, &w[wk..wk + d * kv], &mut dh, n, kv, d);
            matmul_a_bt_acc(&grads.dv, &w[wv..wv + d * kv], &mut dh, n, kv, d);
        }
        // Embedding: e = tanh(xn We + be).
        for (dz, e) in dh.iter_mut().zip(&t.embedded) {
            *dz *= 1.0 - e * e;
        }
        let we = lay.embedding();
        matmul_at_b_acc(&t.normalised, &dh, &mut g[we..we + i * d], n, i, d);
        for row in dh.chunks_exact(d) {
            for (gb, dz) in g[we + i * d..we + i * d + d].iter_mut().zip(row) {
                *gb += dz;
            }
        }
        let mut dxn = Vec::new();
        if input {
            dxn = vec![0.0f32; n * i];
            matmul_a_bt_acc(&dh, &w[we..we + i * d], &mut dxn, n, d, i);
        }
        Ok((g, dxn))
    }

    /// A frame-by-frame predictor with one KV cache per layer, for up to `capacity` frames.
    pub fn streamer(&self, capacity: usize) -> Result<Streamer<'_>, ModelError> {
        let cfg = self.shape.attention_config(&self.head);
        let caches = (0..self.shape.n_layers)
            .map(|_| KvCache::new(&cfg, capacity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Streamer {
            model: self,
            attention: Attention::new(cfg, self.backend)?,
            caches,
            pooled_sum: vec![0.0; self.shape.model_dim()],
            frames: 0,
        })
    }
}

/// The input normalisation of [`ActivityModel::set_normalisation`] estimated incrementally:
/// frames are added as they come (in any number of calls) and [`RunningNorm::apply`] writes
/// the mean and standard deviation of every frame added so far, the same numbers
/// `set_normalisation` gives on all of them at once (the same f64 sums in the same order).
/// The live analogue of `--adapt-norm`'s per-session estimate (`csipose serve`, `activity
/// stream` on windows files). Allocates once, in [`RunningNorm::new`].
#[derive(Clone, Debug)]
pub struct RunningNorm {
    frames: u64,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl RunningNorm {
    /// No frames yet, for `input_dim` features per frame.
    pub fn new(input_dim: usize) -> Self {
        RunningNorm {
            frames: 0,
            sum: vec![0.0; input_dim],
            sq: vec![0.0; input_dim],
        }
    }

    /// Adds the whole frames of `frames` (`[n, input_dim]`; a partial last frame is ignored).
    pub fn push(&mut self, frames: &[f32]) {
        let i = self.sum.len();
        if i == 0 {
            return;
        }
        for row in frames.chunks_exact(i) {
            for (k, &x) in row.iter().enumerate() {
                self.sum[k] += x as f64;
                self.sq[k] += x as f64 * x as f64;
            }
            self.frames += 1;
        }
    }

    /// Frames added so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the running mean and standard deviation into `model`'s stored normalisation.
    /// With no frames yet, or a model of another input width, the model is left as it is.
    pub fn apply(&self, model: &mut ActivityModel) {
        let lay = model.shape.layout();
        let i = lay.input_dim;
        if self.frames == 0 || i != self.sum.len() {
            return;
        }
        let n = self.frames as f64;
        let o = lay.normalisation();
        for k in 0..i {
            let m = self.sum[k] / n;
            let var = (self.sq[k] / n - m * m).max(0.0);
            model.weights[o + k] = m as f32;
            model.weights[o + i + k] = (var.sqrt() as f32).max(1e-6);
        }
    }
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Streaming inference: each frame passes the embedding and every layer once (one decode step
/// per layer); the running mean of the last layer gives the prediction so far. Because the
/// attention is causal, after the last frame the logits equal [`ActivityModel::logits`].
pub struct Streamer<'m> {
    model: &'m ActivityModel,
    attention: Attention,
    caches: Vec<KvCache>,
    pooled_sum: Vec<f32>,
    frames: usize,
}

impl Streamer<'_> {
    /// Feeds one frame (`input_dim` floats); returns the logits over all frames so far.
    pub fn push(&mut self, frame: &[f32]) -> Result<Vec<f32>, ModelError> {
        let m = self.model;
        if frame.len() != m.shape.input_dim {
            return Err(ModelError::RaggedInput {
                len: frame.len(),
                input_dim: m.shape.input_dim,
            });
        }
        let lay = m.shape.layout();
        let (d, kv) = (lay.model_dim, lay.kv_dim);
        let w = &m.weights;
        let (_, mut h) = m.embed(frame, 1);
        for (l, cache) in self.caches.iter_mut().enumerate() {
            let o = lay.layer(l);
            let q = matmul(&h, &w[o..o + d * d], 1, d, d);
            let k = matmul(&h, &w[o + d * d..o + d * d + d * kv], 1, d, kv);
            let v = matmul(&h, &w[o + d * d + d * kv..o + d * d + 2 * d * kv], 1, d, kv);
            let a = self.attention.step(&q, &k, &v, cache)?;
            let wo = o + d * d + 2 * d * kv;
            matmul_acc(&a, &w[wo..wo + d * d], &mut h, 1, d, d);
        }
        for (s, x) in self.pooled_sum.iter_mut().zip(&h) {
            *s += x;
        }
        self.frames += 1;
        let pooled: Vec<f32> = self
            .pooled_sum
            .iter()
            .map(|s| s / self.frames as f32)
            .collect();
        Ok(m.classify(&pooled))
    }

    /// Frames seen.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> ModelShape {
        ModelShape {
            input_dim: 5,
            q_heads: 4,
            kv_heads: 2,
            head_dim: 8,
            n_layers: 2,
            n_classes: 3,
        }
    }

    fn sequence(frames: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..frames * 5)
            .map(|_| rng.range(-1.0, 1.0) as f32 * 2.0 + 0.5)
            .collect()
    }

    #[test]
    fn running_norm_equals_set_normalisation_on_the_same_frames() {
        let model = ActivityModel::new(shape(), Backend::Dense, 3).unwrap();
        let x = sequence(37, 9);
        let mut running = RunningNorm::new(5);
        let mut live = model.clone();
        // Before any frame: the stored normalisation is left alone.
        running.apply(&mut live);
        assert_eq!(live.weights, model.weights);
        // Windows of uneven length, one at a time; after each, the same as the offline
        // estimate over every frame so far.
        let mut at = 0;
        for len in [1usize, 12, 7, 17] {
            running.push(&x[at * 5..(at + len) * 5]);
            at += len;
            running.apply(&mut live);
            let mut offline = model.clone();
            offline.set_normalisation(&x[..at * 5]);
            assert_eq!(running.frames(), at as u64);
            assert_eq!(live.weights, offline.weights, "after {at} frames");
        }
        assert_eq!(at, 37);
        // It is an estimate that moves: not the model's own normalisation.
        assert_ne!(live.weights, model.weights);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for backend in [Backend::Sparse, Backend::Dense] {
            let mut model = ActivityModel::new(shape(), backend, 3).unwrap();
            let x = sequence(40, 1);
            model.set_normalisation(&x);
            let (_, g) = model.loss_and_gradient(&x, 2).unwrap();
            let lay = model.shape.layout();
            let mut rng = Rng::new(5);
            // Every embedding weight (their gradient crosses every layer) and random others.
            let mut indices: Vec<usize> = (lay.embedding()..lay.total()).collect();
            while indices.len() < 400 {
                let idx = rng.below(lay.normalisation());
                indices.push(idx);
            }
            let eps = 1e-2f32;
            let loss = |m: &ActivityModel| -> f64 {
                let p = softmax(&m.logits(&x).unwrap());
                -(p[2] as f64).ln()
            };
            // Relative error (L2) per region: embedding, layers, classifier.
            let mut sums = [(0.0f64, 0.0f64); 3];
            for &idx in &indices {
                let mut plus = model.clone();
                plus.weights[idx] += eps;
                let mut minus = model.clone();
                minus.weights[idx] -= eps;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
                let region = if idx >= lay.embedding() {
                    0
                } else if idx < lay.classifier() {
                    1
                } else {
                    2
                };
                sums[region].0 += (numeric - g[idx] as f64).powi(2);
                sums[region].1 += numeric * numeric;
            }
            for (region, (err2, ref2)) in ["embedding", "layers", "classifier"].iter().zip(sums) {
                let rel = (err2 / ref2).sqrt();
                assert!(
                    ref2 > 0.0 && rel < 2e-3,
                    "{backend:?} {region}: relative error {rel}"
                );
            }
        }
    }

    #[test]
    fn normalisation_gradient_matches_finite_differences() {
        // A loss c · logits with fixed random c; its gradient with respect to every stored
        // normalisation mean and deviation against central differences.
        for backend in [Backend::Sparse, Backend::Dense] {
            let mut model = ActivityModel::new(shape(), backend, 4).unwrap();
            let x = sequence(30, 8);
            model.set_normalisation(&x);
            let mut rng = Rng::new(9);
            let c: Vec<f32> = (0..3).map(|_| rng.range(-1.0, 1.0) as f32).collect();
            let NormGradient {
                logits,
                mean: dmean,
                sd: dsd,
            } = model.normalisation_gradient(&x, |_| c.clone()).unwrap();
            assert_eq!(logits, model.logits(&x).unwrap());
            let loss = |m: &ActivityModel| -> f64 {
                let l = m.logits(&x).unwrap();
                l.iter()
                    .zip(&c)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum()
            };
            let norm = model.shape.layout().normalisation();
            let eps = 1e-2f32;
            let (mut err2, mut ref2) = (0.0f64, 0.0f64);
            for k in 0..10 {
                let mut plus = model.clone();
                plus.weights[norm + k] += eps;
                let mut minus = model.clone();
                minus.weights[norm + k] -= eps;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
                let analytic = if k < 5 { dmean[k] } else { dsd[k - 5] } as f64;
                err2 += (numeric - analytic).powi(2);
                ref2 += numeric * numeric;
            }
            let rel = (err2 / ref2).sqrt();
            assert!(
                ref2 > 0.0 && rel < 2e-3,
                "{backend:?}: relative error {rel}"
            );
        }
    }

    #[test]
    fn streaming_matches_whole_sequence_at_every_frame() {
        for backend in [Backend::Sparse, Backend::Dense] {
            let model = ActivityModel::new(shape(), backend, 7).unwrap();
            let x = sequence(70, 2);
            let mut stream = model.streamer(70).unwrap();
            for t in 0..70 {
                let live = stream.push(&x[t * 5..(t + 1) * 5]).unwrap();
                let whole = model.logits(&x[..(t + 1) * 5]).unwrap();
                for (a, b) in live.iter().zip(&whole) {
                    assert!((a - b).abs() < 1e-4, "{backend:?} frame {t}: {a} vs {b}");
                }
            }
            assert!(stream.push(&x[..5]).is_err(), "capacity 70 is full");
        }
    }

    #[test]
    fn head_config_is_stored_and_used() {
        // A window of 2 and blocks of 3 attend differently from the defaults on 40 frames, so
        // the stored config must come back for the logits to match.
        let head = HeadConfig {
            window: 2,
            block_size: 3,
            causal: true,
            features: 1,
            stride: 5,
            transforms: 0,
        };
        let mut model = ActivityModel::with_head(shape(), Backend::Sparse, head, 13).unwrap();
        let x = sequence(40, 6);
        model.set_normalisation(&x);
        let back = ActivityModel::from_rvne(&model.to_rvne(false).unwrap()).unwrap();
        assert_eq!(back.head, head);
        assert_eq!(back.logits(&x).unwrap(), model.logits(&x).unwrap());
        let default = ActivityModel {
            head: HeadConfig::LEGACY,
            ..model.clone()
        };
        let (a, b) = (default.logits(&x).unwrap(), model.logits(&x).unwrap());
        assert!(a.iter().zip(&b).any(|(p, q)| (p - q).abs() > 1e-4));
        // Streaming follows the stored config too; a symmetric model cannot stream.
        let mut stream = back.streamer(40).unwrap();
        let mut live = Vec::new();
        for t in 0..40 {
            live = stream.push(&x[t * 5..(t + 1) * 5]).unwrap();
        }
        for (p, q) in live.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4);
        }
        let symmetric = ActivityModel::with_head(
            shape(),
            Backend::Sparse,
            HeadConfig {
                causal: false,
                ..head
            },
            1,
        )
        .unwrap();
        assert!(symmetric.logits(&x).is_ok());
        let mut s = symmetric.streamer(4).unwrap();
        assert!(s.push(&x[..5]).is_err());
    }

    #[test]
    fn meta_round_trips_and_the_shipped_model_still_loads() {
        let mut model = ActivityModel::new(shape(), Backend::Sparse, 5).unwrap();
        let plain = ActivityModel::from_rvne(&model.to_rvne(false).unwrap()).unwrap();
        assert_eq!(plain.meta, None);
        let meta = RvneMeta {
            context: 2,
            adapt_norm: true,
            classes: Some((0..shape().n_classes).map(|c| format!("c{c}")).collect()),
            decode: None,
        };
        model.meta = Some(meta.clone());
        let back = ActivityModel::from_rvne(&model.to_rvne(true).unwrap()).unwrap();
        assert_eq!(back.meta, Some(meta));
        // The shipped default carries its class names and settings (files written before the
        // META section still read: `rvne::tests`).
        let shipped = include_bytes!("../../../../models/esp32-har-d1.rvne");
        let m = ActivityModel::from_rvne(shipped).unwrap();
        assert_eq!(m.shape.n_classes, 10);
        let meta = m.meta.expect("the shipped model has a META section");
        let classes = meta.classes.expect("class names");
        assert_eq!(classes.len(), 10);
        assert_eq!(
            (classes[0].as_str(), classes[9].as_str()),
            ("SEATED_RX", "WALKING_TX")
        );
        // ... and the forward decoding the live server runs: one step per 25-frame window,
        // no test-time adaptation (the live server could only estimate it as it goes).
        assert!(!meta.adapt_norm);
        let decode = meta.decode.expect("the shipped model stores its decoding");
        assert_eq!(decode.mode, crate::sequence::Decode::Forward);
        assert_eq!(decode.step_frames, 25);
        decode.transitions.validate().unwrap();
    }

    #[test]
    fn rvne_round_trip_keeps_predictions() {
        let mut model = ActivityModel::new(shape(), Backend::Dense, 11).unwrap();
        let x = sequence(30, 4);
        model.set_normalisation(&x);
        let back = ActivityModel::from_rvne(&model.to_rvne(false).unwrap()).unwrap();
        assert_eq!(back.backend, Backend::Dense);
        assert_eq!(back.shape, model.shape);
        assert_eq!(back.logits(&x).unwrap(), model.logits(&x).unwrap());
        let half = ActivityModel::from_rvne(&model.to_rvne(true).unwrap()).unwrap();
        let (a, b) = (half.logits(&x).unwrap(), model.logits(&x).unwrap());
        assert!(
            a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 0.05),
            "{a:?} vs {b:?}"
        );
        assert_eq!(back.head, HeadConfig::LEGACY);
        assert!(matches!(
            model.logits(&x[..7]),
            Err(ModelError::RaggedInput { .. })
        ));
        assert!(matches!(model.logits(&[]), Err(ModelError::EmptySequence)));
    }
}
