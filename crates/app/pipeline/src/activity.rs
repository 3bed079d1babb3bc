//! The activity classifier's pipeline as typed functions: a manifest's rows become examples
//! ([`load_examples`], with the feature kind, packets per frame and feature transforms of a
//! [`FeatureSpec`]), a [`Settings`] (features, model shape, optimiser, augmentation, test-time
//! adaptation) is trained ([`fit`]) and scored ([`predict`], [`score`]), stratified or grouped
//! k-fold cross-validation ([`cross_validate`]), and the honest protocol: a [`SearchSpace`] of
//! settings chosen by inner cross-validation on training data only ([`select`]), nested inside
//! an outer cross-validation ([`nested_cv`]) or before a train → test transfer ([`transfer`]).
//! Test-time adaptation re-estimates the model's input normalisation on the unlabelled test
//! examples of one session before predicting them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use csipose_attention::Backend;
use csipose_temporal::features::{
    apply_transforms, csi_feature_dim, encoder_frame_features, FeatureKind, BLOCKS, DEFAULT_STRIDE,
    ENCODER_BLOCKS,
};
use csipose_temporal::linear::{window_stats, LinearClassifier, STATS_PER_CHANNEL};
use csipose_temporal::model::{argmax, ActivityModel, ModelShape};
use csipose_temporal::rvne::{HeadConfig, RvneDecode, TRANSFORM_RATIO, TRANSFORM_WINDOW_NORM};
use csipose_temporal::sequence::{Decode, Transitions, DEFAULT_PSEUDO_COUNT};
use csipose_temporal::train::{
    accuracies, adapt_entropy, confusion_matrix, ensemble_probabilities, grouped_folds,
    predict_ensemble, stratified_folds, train, EntropyAdapt, EpochStats, Example, ResponseAugment,
    TrainOptions,
};

use crate::manifest::{Manifest, Source};
use crate::sources::{packed_raw, read_sequence, read_windows, PackedSets, PoseEncoder};

/// How manifest rows become per-frame features.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureSpec {
    /// `None`: auto (amplitude-phase where every row has complex CSI from at least 2 receive
    /// antennas, else amplitude).
    pub kind: Option<FeatureKind>,
    /// Packets per frame; `None`: the packed datasets' own, else [`DEFAULT_STRIDE`].
    pub stride: Option<usize>,
    /// A pose model whose pooled encoder vector is each packed-dataset frame's feature.
    pub pose: Option<PathBuf>,
    /// Feature transform bits ([`TRANSFORM_WINDOW_NORM`], [`TRANSFORM_RATIO`]).
    pub transforms: u16,
    /// Window rows: each window is preceded by this many earlier windows of its file.
    pub context: usize,
    /// Per-recording standardisation: every feature of every frame is standardised by its mean
    /// and standard deviation over all frames of the same manifest row (one recording), in
    /// training and test alike. Uses no labels; at test time it is computed on the unlabelled
    /// target recording, so a static change of the channel between sessions cancels out.
    pub recording_norm: bool,
}

impl FeatureSpec {
    /// What `model` was trained with; `pose` must name the pose model when it read pose-encoder
    /// features (`what` names the model in messages).
    pub fn from_model(
        model: &ActivityModel,
        pose: Option<&Path>,
        what: &Path,
    ) -> anyhow::Result<Self> {
        let kind = FeatureKind::from_code(model.head.features)
            .with_context(|| format!("{}: unknown feature code", what.display()))?;
        match (kind, pose) {
            (FeatureKind::PoseEncoder, None) => bail!(
                "{}: the model reads pose-encoder features; name the pose model with --pose-features RUN",
                what.display()
            ),
            (k, Some(_)) if k != FeatureKind::PoseEncoder => bail!(
                "{}: the model reads {} features, not a pose encoder's; drop --pose-features",
                what.display(),
                k.name()
            ),
            _ => {}
        }
        Ok(FeatureSpec {
            kind: Some(kind),
            stride: Some(model.head.stride as usize),
            pose: pose.map(Path::to_path_buf),
            transforms: model.head.transforms,
            context: 0,
            recording_norm: false,
        })
    }
}

/// Names of transform bits as the command line writes them (`none`, `ratio`, `window-norm`,
/// `ratio+window-norm`).
pub fn transforms_name(t: u16) -> String {
    let mut parts = Vec::new();
    if t & TRANSFORM_RATIO != 0 {
        parts.push("ratio");
    }
    if t & TRANSFORM_WINDOW_NORM != 0 {
        parts.push("window-norm");
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("+")
    }
}

/// Parses [`transforms_name`]'s form (`+` or `,` between names).
pub fn parse_transforms(s: &str) -> Result<u16, String> {
    let mut t = 0;
    for part in s.split(['+', ',']).map(str::trim) {
        t |= match part {
            "none" | "" => 0,
            "ratio" => TRANSFORM_RATIO,
            "window-norm" => TRANSFORM_WINDOW_NORM,
            other => {
                return Err(format!(
                    "unknown transform {other:?} (none, ratio, window-norm)"
                ))
            }
        };
    }
    Ok(t)
}

/// Classifier input of every manifest row and how it was made.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub examples: Vec<Example>,
    /// The manifest row each example came from (windows of one file share it).
    pub groups: Vec<usize>,
    pub input_dim: usize,
    pub kind: FeatureKind,
    pub stride: usize,
    pub transforms: u16,
    /// Channels per packet (antennas, subcarriers); (encoder dim, 1) for pose-encoder features.
    pub shape: (usize, usize),
    /// Classes: the `#classes` count, else the largest label + 1.
    pub n_classes: usize,
    /// Things left out or repaired while reading (counted, one line each).
    pub warnings: Vec<String>,
}

impl Loaded {
    pub fn labels(&self) -> Vec<usize> {
        self.examples.iter().map(|e| e.label).collect()
    }
}

/// Loads every manifest row as classifier input, in parallel; `progress` is called once per row.
pub fn load_examples(
    manifest: &Manifest,
    spec: &FeatureSpec,
    progress: &(dyn Fn() + Sync),
) -> anyhow::Result<Loaded> {
    use rayon::prelude::*;
    let rows = &manifest.rows;
    let packed = PackedSets::open(rows)?;
    let is_packed = |s: &Source| matches!(s, Source::Packed { .. });
    let encoder = match &spec.pose {
        Some(p) => {
            if let Some(r) = rows.iter().find(|r| !is_packed(&r.source)) {
                bail!(
                    "{}: --pose-features needs packed-dataset sequences (DIR#S03/A12)",
                    r.source.display()
                );
            }
            Some(PoseEncoder::load(p)?)
        }
        None => None,
    };
    if encoder.is_some() && spec.transforms != 0 {
        bail!("feature transforms apply to CSI amplitudes, not to pose-encoder features");
    }
    // Packets per frame: as given, else the datasets' own (packed rows) or 4 (files).
    let stride = match (spec.stride, &encoder) {
        (_, Some(_)) => 1,
        (Some(s), None) => s.max(1),
        (None, None) => {
            let mut packets: Vec<usize> = packed
                .sets
                .iter()
                .map(|(_, ds, _)| ds.info.hardware.packets)
                .collect();
            packets.dedup();
            let files = rows.iter().any(|r| !is_packed(&r.source));
            match (packets.as_slice(), files) {
                ([], _) => DEFAULT_STRIDE,
                ([p], false) => *p,
                _ => bail!(
                    "the manifest mixes inputs with different packets per frame; give --stride"
                ),
            }
        }
    };
    // Per example: (amplitude-or-given-kind features, amplitude-phase features where auto
    // allows them, channel shape, label, row).
    type ExampleFeatures = (Vec<f32>, Option<Vec<f32>>, (usize, usize), usize, usize);
    let classes = manifest.classes.as_deref();
    let loaded = rows
        .par_iter()
        .enumerate()
        .map(
            |(r, row)| -> anyhow::Result<(Vec<ExampleFeatures>, Vec<String>)> {
                let name = row.source.display();
                let mut warnings = Vec::new();
                let mut out = Vec::new();
                if let Some(enc) = &encoder {
                    let (ds, frames) = packed.sequence(&row.source)?;
                    let d = enc.model.cfg.d;
                    let z = enc.features(ds, frames, &name)?;
                    let label = row.label.expect("packed rows carry a class");
                    out.push((encoder_frame_features(&z, d), None, (d, 1), label, r));
                } else {
                    let raws = match &row.source {
                        Source::File(path) => vec![(
                            read_sequence(path, &mut warnings)?,
                            row.label.expect("file rows carry a class"),
                        )],
                        Source::Packed { .. } => {
                            let (ds, frames) = packed.sequence(&row.source)?;
                            vec![(
                                packed_raw(ds, frames),
                                row.label.expect("packed rows carry a class"),
                            )]
                        }
                        Source::Windows { x, y } => read_windows(x, y, classes, spec.context)?,
                    };
                    for (raw, label) in raws {
                        let shape = (raw.antennas, raw.subcarriers);
                        let feats = match spec.kind {
                            Some(kind) => (raw.features(kind, stride, &name)?, None),
                            None => {
                                let phase = (raw.csi.is_some() && raw.antennas >= 2)
                                    .then(|| {
                                        raw.features(FeatureKind::AmplitudePhase, stride, &name)
                                    })
                                    .transpose()?;
                                (raw.features(FeatureKind::Amplitude, stride, &name)?, phase)
                            }
                        };
                        out.push((feats.0, feats.1, shape, label, r));
                    }
                }
                progress();
                Ok((out, warnings))
            },
        )
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut warnings = Vec::new();
    let mut all = Vec::new();
    for (examples, w) in loaded {
        all.extend(examples);
        warnings.extend(w);
    }
    let kind = match (&encoder, spec.kind) {
        (Some(_), _) => FeatureKind::PoseEncoder,
        (None, Some(k)) => k,
        (None, None) if all.iter().all(|l| l.1.is_some()) => FeatureKind::AmplitudePhase,
        (None, None) => FeatureKind::Amplitude,
    };
    let Some(first) = all.first() else {
        bail!("{}: no examples", manifest.path.display());
    };
    let (shape, first_row) = (first.2, first.4);
    let input_dim = match kind {
        FeatureKind::Amplitude => BLOCKS * shape.0 * shape.1,
        FeatureKind::AmplitudePhase => csi_feature_dim(shape.0, shape.1),
        FeatureKind::PoseEncoder => ENCODER_BLOCKS * shape.0,
    };
    let mut examples = Vec::with_capacity(all.len());
    let mut groups = Vec::with_capacity(all.len());
    for (amp, phase, s, label, r) in all {
        let source = &rows[r].source;
        if s != shape {
            bail!(
                "{}: {}x{} channels per packet, but {} has {}x{}",
                source.display(),
                s.0,
                s.1,
                rows[first_row].source.display(),
                shape.0,
                shape.1
            );
        }
        let mut frames = match (kind, phase) {
            (FeatureKind::AmplitudePhase, Some(p)) if spec.kind.is_none() => p,
            _ => amp,
        };
        if frames.is_empty() {
            bail!("{}: no packets", source.display());
        }
        apply_transforms(&mut frames, input_dim, shape.0, shape.1, spec.transforms);
        examples.push(Example { frames, label });
        groups.push(r);
    }
    if spec.recording_norm {
        standardise_by_group(&mut examples, &groups, input_dim);
    }
    let most = examples.iter().map(|e| e.label).max().unwrap_or(0) + 1;
    let n_classes = match &manifest.classes {
        Some(c) if c.len() >= most => c.len(),
        Some(c) => bail!(
            "{}: a label is {} but #classes names {} classes",
            manifest.path.display(),
            most - 1,
            c.len()
        ),
        None => most,
    };
    Ok(Loaded {
        examples,
        groups,
        input_dim,
        kind,
        stride,
        transforms: spec.transforms,
        shape,
        n_classes,
        warnings,
    })
}

/// Standardises every feature of the examples of each group (manifest row) by that group's
/// mean and standard deviation over all its frames (floor 1e-6 on the deviation; a feature
/// constant within the group becomes 0).
pub fn standardise_by_group(examples: &mut [Example], groups: &[usize], dim: usize) {
    let mut ids: Vec<usize> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for g in ids {
        let mut sum = vec![0f64; dim];
        let mut sum2 = vec![0f64; dim];
        let mut n = 0usize;
        for (e, _) in examples.iter().zip(groups).filter(|(_, &h)| h == g) {
            for f in e.frames.chunks_exact(dim) {
                for ((s, s2), &v) in sum.iter_mut().zip(sum2.iter_mut()).zip(f) {
                    *s += v as f64;
                    *s2 += v as f64 * v as f64;
                }
                n += 1;
            }
        }
        if n == 0 {
            continue;
        }
        let inv = 1.0 / n as f64;
        let (mean, scale): (Vec<f32>, Vec<f32>) = sum
            .iter()
            .zip(&sum2)
            .map(|(&s, &s2)| {
                let m = s * inv;
                let sd = (s2 * inv - m * m).max(0.0).sqrt();
                (m as f32, (1.0 / sd.max(1e-6)) as f32)
            })
            .unzip();
        for (e, _) in examples.iter_mut().zip(groups).filter(|(_, &h)| h == g) {
            for f in e.frames.chunks_exact_mut(dim) {
                for ((v, m), k) in f.iter_mut().zip(&mean).zip(&scale) {
                    *v = (*v - m) * k;
                }
            }
        }
    }
}

/// Model shape, optimiser and augmentation of one training run.
#[derive(Clone, Debug, PartialEq)]
pub struct Hyper {
    pub epochs: usize,
    pub backend: Backend,
    pub layers: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub lr: f32,
    pub batch: usize,
    /// Each training sequence is cropped to a random span of at least this fraction.
    pub min_crop: f32,
    pub seed: u64,
    pub window: u16,
    pub block_size: u16,
    /// Random smooth frequency responses of this size (dB) added in training (0 = off).
    pub response_db: f32,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            epochs: 100,
            backend: Backend::Sparse,
            layers: 1,
            q_heads: 4,
            kv_heads: 1,
            head_dim: 16,
            lr: 2e-3,
            batch: 16,
            min_crop: 0.5,
            seed: 0,
            window: 32,
            block_size: 16,
            response_db: 0.0,
        }
    }
}

/// Everything one configuration fixes: features, training, and whether predictions adapt the
/// input normalisation to the test examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub features: FeatureSpec,
    pub hyper: Hyper,
    /// Test-time adaptation: before predicting a set of examples (one session), the model's
    /// input normalisation is re-estimated on them (no labels used).
    pub adapt_norm: bool,
    /// Test-time adaptation by information maximisation: this many full-batch steps on the
    /// session's unlabelled examples move the input normalisation (after `adapt_norm`;
    /// [`csipose_temporal::train::adapt_entropy`]). 0 = off.
    pub tent: usize,
    /// Pseudo-label self-training: this many rounds, each labels the session's most confident
    /// half by the current prediction and retrains every model from scratch on the training
    /// examples plus those ([`predict_session`]). 0 = off.
    pub self_train: usize,
    /// Models per prediction, trained with seeds seed, seed + 1, ... (mean softmax); 0 or 1 =
    /// one model.
    pub ensemble: usize,
    /// How each test recording's window probabilities become classes: by themselves, or
    /// decoded with a transition model learned from the training recordings' label order
    /// ([`csipose_temporal::sequence`]).
    pub decode: Decode,
    /// The linear window-statistics classifier with this penalty C instead of the attention
    /// model ([`csipose_temporal::linear`]); 0 = the attention model.
    pub linear: f64,
}

impl Settings {
    /// Sets one searchable key from its command-line form (`epochs=150`, `min-crop=0.5`, ...).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{key}: {v:?} is not a valid value"))
        }
        let h = &mut self.hyper;
        match key {
            "epochs" => h.epochs = num(key, value)?,
            "lr" => h.lr = num(key, value)?,
            "batch" => h.batch = num(key, value)?,
            "min-crop" => h.min_crop = num(key, value)?,
            "layers" => h.layers = num(key, value)?,
            "q-heads" => h.q_heads = num(key, value)?,
            "kv-heads" => h.kv_heads = num(key, value)?,
            "head-dim" => h.head_dim = num(key, value)?,
            "window" => h.window = num(key, value)?,
            "block-size" => h.block_size = num(key, value)?,
            "response-db" => h.response_db = num(key, value)?,
            "stride" => self.features.stride = Some(num(key, value)?),
            "context" => self.features.context = num(key, value)?,
            "recording-norm" => self.features.recording_norm = num(key, value)?,
            "transforms" => self.features.transforms = parse_transforms(value)?,
            "adapt-norm" => self.adapt_norm = num(key, value)?,
            "tent" => self.tent = num(key, value)?,
            "self-train" => self.self_train = num(key, value)?,
            "ensemble" => self.ensemble = num(key, value)?,
            "decode" => self.decode = value.parse()?,
            "linear" => self.linear = num(key, value)?,
            "features" => {
                self.features.kind = match value {
                    "auto" => None,
                    "amplitude" => Some(FeatureKind::Amplitude),
                    "amplitude-phase" => Some(FeatureKind::AmplitudePhase),
                    _ => return Err(format!("features: {value:?} is not auto, amplitude or amplitude-phase")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown search key {key:?} (epochs, lr, batch, min-crop, layers, q-heads, kv-heads, head-dim, window, block-size, response-db, stride, context, recording-norm, transforms, adapt-norm, tent, self-train, ensemble, decode, linear, features)"
                ))
            }
        }
        Ok(())
    }

    /// Checks the values before any work starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        let h = &self.hyper;
        anyhow::ensure!(h.epochs >= 1, "epochs must be at least 1");
        anyhow::ensure!(h.batch >= 1, "batch must be at least 1");
        anyhow::ensure!(h.lr > 0.0 && h.lr.is_finite(), "lr must be positive");
        anyhow::ensure!(
            h.min_crop > 0.0 && h.min_crop <= 1.0,
            "min-crop must be in (0, 1]"
        );
        anyhow::ensure!(
            h.response_db >= 0.0 && h.response_db.is_finite(),
            "response-db must be >= 0"
        );
        anyhow::ensure!(self.features.stride != Some(0), "stride must be at least 1");
        anyhow::ensure!(
            self.linear >= 0.0 && self.linear.is_finite(),
            "linear: C must be >= 0 (0 = the attention model)"
        );
        if self.linear > 0.0 {
            for (on, what) in [
                (self.adapt_norm, "adapt-norm"),
                (self.tent > 0, "tent"),
                (self.self_train > 0, "self-train"),
                (self.ensemble > 1, "ensemble"),
                (self.features.recording_norm, "recording-norm"),
                (self.hyper.response_db > 0.0, "response-db"),
            ] {
                anyhow::ensure!(
                    !on,
                    "{what} applies to the attention model, not to the linear classifier (which standardises its window statistics per recording itself)"
                );
            }
        }
        Ok(())
    }
}

/// Trains a model on `loaded.examples[train_idx]`; `on_epoch` sees each epoch.
pub fn fit(
    loaded: &Loaded,
    train_idx: &[usize],
    hyper: &Hyper,
    on_epoch: impl FnMut(EpochStats),
) -> anyhow::Result<ActivityModel> {
    fit_with(loaded, train_idx, &[], hyper, on_epoch)
}

/// [`fit`] on `loaded.examples[train_idx]` followed by `extra` (examples of the same features,
/// e.g. pseudo-labelled ones).
pub fn fit_with(
    loaded: &Loaded,
    train_idx: &[usize],
    extra: &[Example],
    hyper: &Hyper,
    on_epoch: impl FnMut(EpochStats),
) -> anyhow::Result<ActivityModel> {
    let examples: Vec<Example> = train_idx
        .iter()
        .map(|&i| loaded.examples[i].clone())
        .chain(extra.iter().cloned())
        .collect();
    let shape = ModelShape {
        input_dim: loaded.input_dim,
        q_heads: hyper.q_heads,
        kv_heads: hyper.kv_heads,
        head_dim: hyper.head_dim,
        n_layers: hyper.layers,
        n_classes: loaded.n_classes,
    };
    let head = HeadConfig {
        window: hyper.window,
        block_size: hyper.block_size,
        causal: true,
        features: loaded.kind.code(),
        stride: u16::try_from(loaded.stride).context("--stride does not fit in u16")?,
        transforms: loaded.transforms,
    };
    let mut model = ActivityModel::with_head(shape, hyper.backend, head, hyper.seed)?;
    let response =
        (hyper.response_db > 0.0 && loaded.kind != FeatureKind::PoseEncoder).then_some({
            ResponseAugment {
                db: hyper.response_db,
                antennas: loaded.shape.0,
                subcarriers: loaded.shape.1,
                zero_mean: loaded.transforms & TRANSFORM_RATIO != 0,
            }
        });
    let opts = TrainOptions {
        epochs: hyper.epochs,
        batch_size: hyper.batch,
        learning_rate: hyper.lr,
        seed: hyper.seed,
        min_crop: hyper.min_crop.clamp(0.05, 1.0),
        response,
        ..TrainOptions::default()
    };
    train(&mut model, &examples, &opts, on_epoch)?;
    Ok(model)
}

/// Predicted classes of `loaded.examples[idx]` by the mean softmax of `models`; with
/// `adapt_norm` each model's input normalisation is first re-estimated on those examples.
pub fn predict(
    models: &[ActivityModel],
    loaded: &Loaded,
    idx: &[usize],
    adapt_norm: bool,
) -> anyhow::Result<Vec<usize>> {
    let examples: Vec<Example> = idx.iter().map(|&i| loaded.examples[i].clone()).collect();
    if !adapt_norm {
        return Ok(predict_ensemble(models, &examples)?);
    }
    Ok(predict_ensemble(&adapted_to(models, &examples), &examples)?)
}

/// [`predict`]'s mean softmax probabilities of each of `loaded.examples[idx]` instead of
/// their classes (what sequence decoding reads).
pub fn predict_probabilities(
    models: &[ActivityModel],
    loaded: &Loaded,
    idx: &[usize],
    adapt_norm: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let examples: Vec<Example> = idx.iter().map(|&i| loaded.examples[i].clone()).collect();
    if !adapt_norm {
        return Ok(ensemble_probabilities(models, &examples)?);
    }
    Ok(ensemble_probabilities(
        &adapted_to(models, &examples),
        &examples,
    )?)
}

/// `models` with their input normalisation re-estimated on the frames of `examples`.
fn adapted_to(models: &[ActivityModel], examples: &[Example]) -> Vec<ActivityModel> {
    let frames: Vec<f32> = examples
        .iter()
        .flat_map(|e| e.frames.iter().copied())
        .collect();
    models
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.set_normalisation(&frames);
            m
        })
        .collect()
}

/// The `settings.ensemble` models (at least one) of `settings` trained on
/// `loaded.examples[train_idx]` plus `extra`, seeds seed, seed + 1, ...
pub fn fit_ensemble(
    loaded: &Loaded,
    train_idx: &[usize],
    extra: &[Example],
    settings: &Settings,
) -> anyhow::Result<Vec<ActivityModel>> {
    if settings.linear > 0.0 {
        // The linear classifier is fitted where it predicts (predict_session): cheap and
        // convex, no attention model is needed.
        return Ok(Vec::new());
    }
    (0..settings.ensemble.max(1))
        .map(|k| {
            let hyper = Hyper {
                seed: settings.hyper.seed + k as u64,
                ..settings.hyper.clone()
            };
            fit_with(loaded, train_idx, extra, &hyper, |_| {})
        })
        .collect()
}

/// `models` adapted to one session's unlabelled `session` examples as `settings` asks
/// (normalisation statistics, then information maximisation), and their mean softmax
/// probabilities of each example.
fn adapt_models(
    models: &[ActivityModel],
    session: &[Example],
    settings: &Settings,
) -> anyhow::Result<(Vec<ActivityModel>, Vec<Vec<f32>>)> {
    let frames: Vec<f32> = if settings.adapt_norm {
        session
            .iter()
            .flat_map(|e| e.frames.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    let adapted = models
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if settings.adapt_norm {
                m.set_normalisation(&frames);
            }
            if settings.tent > 0 {
                let opts = EntropyAdapt {
                    steps: settings.tent,
                    ..EntropyAdapt::default()
                };
                adapt_entropy(&mut m, session, &opts)?;
            }
            Ok(m)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let probs = ensemble_probabilities(&adapted, session)?;
    Ok((adapted, probs))
}

/// One cross-validation fold: fits the ensemble on `train_idx`, predicts the `test_idx`
/// examples as an unlabelled session, and returns their labels and the predictions.
fn fit_and_predict_fold(
    loaded: &Loaded,
    train_idx: &[usize],
    test_idx: &[usize],
    settings: &Settings,
) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let models = fit_ensemble(loaded, train_idx, &[], settings)?;
    let session: Vec<Example> = test_idx
        .iter()
        .map(|&i| loaded.examples[i].clone())
        .collect();
    let recordings: Vec<usize> = test_idx.iter().map(|&i| loaded.groups[i]).collect();
    let pred = predict_session(loaded, train_idx, &models, &session, &recordings, settings)?;
    let labels = test_idx.iter().map(|&i| loaded.examples[i].label).collect();
    Ok((labels, pred))
}

/// Predicted classes of one session's `session` examples (their labels are never read) by
/// `models`, trained on `loaded.examples[train_idx]`, with every test-time step of `settings`:
/// `self_train` rounds of pseudo-labelling (each round: the current prediction's most confident
/// half of the session, ties to the earlier example, joins the training examples with its
/// predicted classes and every model is retrained from scratch with its own seed), each
/// prediction made by models adapted to the session ([`Settings::adapt_norm`],
/// [`Settings::tent`]), and the final probabilities decoded per recording
/// ([`Settings::decode`]): `recordings[k]` names the recording of `session[k]` (examples of one
/// recording in time order), and the transition model is learned from the label order of the
/// training recordings (`loaded.groups` of `train_idx`).
pub fn predict_session(
    loaded: &Loaded,
    train_idx: &[usize],
    models: &[ActivityModel],
    session: &[Example],
    recordings: &[usize],
    settings: &Settings,
) -> anyhow::Result<Vec<usize>> {
    anyhow::ensure!(
        recordings.len() == session.len(),
        "{} recording ids for {} examples",
        recordings.len(),
        session.len()
    );
    // The session as it is seen: features only.
    let unlabelled: Vec<Example> = session
        .iter()
        .map(|e| Example {
            frames: e.frames.clone(),
            label: 0,
        })
        .collect();
    let mut probs = if settings.linear > 0.0 {
        linear_probabilities(loaded, train_idx, session, recordings, settings.linear)?
    } else {
        adapt_models(models, &unlabelled, settings)?.1
    };
    for _ in 0..settings.self_train {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        let conf = |i: usize| probs[i].iter().copied().fold(0.0f32, f32::max);
        order.sort_by(|&a, &b| conf(b).total_cmp(&conf(a)).then(a.cmp(&b)));
        let pseudo: Vec<Example> = order[..probs.len().div_ceil(2)]
            .iter()
            .map(|&i| Example {
                frames: unlabelled[i].frames.clone(),
                label: argmax(&probs[i]),
            })
            .collect();
        let retrained = fit_ensemble(loaded, train_idx, &pseudo, settings)?;
        probs = adapt_models(&retrained, &unlabelled, settings)?.1;
    }
    if settings.decode == Decode::None {
        return Ok(probs.iter().map(|p| argmax(p)).collect());
    }
    let transitions = training_transitions(loaded, train_idx)?;
    decode_recordings(&transitions, &probs, recordings, settings.decode)
}

/// Class probabilities of the `session` examples by the linear window-statistics classifier
/// with penalty `c`, fitted on `loaded.examples[train_idx]`; statistics are standardised per
/// training recording (`loaded.groups`) and per session recording (`recordings`).
fn linear_probabilities(
    loaded: &Loaded,
    train_idx: &[usize],
    session: &[Example],
    recordings: &[usize],
    c: f64,
) -> anyhow::Result<Vec<Vec<f32>>> {
    anyhow::ensure!(
        loaded.kind == FeatureKind::Amplitude && loaded.input_dim.is_multiple_of(BLOCKS),
        "the linear classifier reads amplitude features (--features amplitude), not {}",
        loaded.kind.name()
    );
    let channels = loaded.input_dim / BLOCKS;
    // Each window's statistics as a one-frame example, standardised per recording.
    let stats = |examples: Vec<&Example>, groups: &[usize]| -> Vec<Example> {
        let mut rows: Vec<Example> = examples
            .into_iter()
            .map(|e| Example {
                frames: window_stats(&e.frames, channels),
                label: e.label,
            })
            .collect();
        standardise_by_group(&mut rows, groups, STATS_PER_CHANNEL * channels);
        rows
    };
    let groups: Vec<usize> = train_idx.iter().map(|&i| loaded.groups[i]).collect();
    let train = stats(
        train_idx.iter().map(|&i| &loaded.examples[i]).collect(),
        &groups,
    );
    let (rows, labels): (Vec<Vec<f32>>, Vec<usize>) =
        train.into_iter().map(|e| (e.frames, e.label)).unzip();
    let model =
        LinearClassifier::fit(&rows, &labels, loaded.n_classes, c).map_err(anyhow::Error::msg)?;
    let test = stats(session.iter().collect(), recordings);
    Ok(test
        .iter()
        .map(|e| model.probabilities(&e.frames))
        .collect())
}

/// The transition model of the label order of `loaded.examples[train_idx]`: each run of
/// consecutive indices from one manifest row is one recording in time order.
pub fn training_transitions(loaded: &Loaded, train_idx: &[usize]) -> anyhow::Result<Transitions> {
    let mut sequences: Vec<Vec<usize>> = Vec::new();
    let mut last: Option<(usize, usize)> = None;
    for &i in train_idx {
        let g = loaded.groups[i];
        match last {
            Some((h, j)) if h == g && j + 1 == i => {}
            _ => sequences.push(Vec::new()),
        }
        sequences
            .last_mut()
            .expect("pushed above")
            .push(loaded.examples[i].label);
        last = Some((g, i));
    }
    Transitions::fit(
        sequences.iter().map(Vec::as_slice),
        loaded.n_classes,
        DEFAULT_PSEUDO_COUNT,
    )
    .map_err(anyhow::Error::msg)
}

/// Feature frames of one window of the recordings of `loaded` (what one decoding step spans):
/// the frames of each recording's first example (it has no earlier windows before it, whatever
/// the `--context`) when every recording of two or more examples agrees on it; 0 when there
/// is no such recording, they disagree, or it does not fit a u16.
pub fn window_frames(loaded: &Loaded) -> u16 {
    let mut seen: Option<usize> = None;
    let dim = loaded.input_dim.max(1);
    for (k, e) in loaded.examples.iter().enumerate() {
        let first = k == 0 || loaded.groups[k - 1] != loaded.groups[k];
        let more = loaded.groups.get(k + 1) == Some(&loaded.groups[k]);
        if !(first && more) {
            continue;
        }
        let frames = e.frames.len() / dim;
        match seen {
            Some(f) if f != frames => return 0,
            _ => seen = Some(frames),
        }
    }
    seen.and_then(|f| u16::try_from(f).ok()).unwrap_or(0)
}

/// What a model file stores of `decode` after training on `loaded.examples[train_idx]`: the
/// mode, [`window_frames`] and [`training_transitions`]; `None` for [`Decode::None`].
pub fn stored_decode(
    loaded: &Loaded,
    train_idx: &[usize],
    decode: Decode,
) -> anyhow::Result<Option<RvneDecode>> {
    if decode == Decode::None {
        return Ok(None);
    }
    Ok(Some(RvneDecode {
        mode: decode,
        step_frames: window_frames(loaded),
        transitions: training_transitions(loaded, train_idx)?,
    }))
}

/// Decodes each recording's examples (those sharing a `recordings` id, in their order) with
/// `transitions`.
pub fn decode_recordings(
    transitions: &Transitions,
    probs: &[Vec<f32>],
    recordings: &[usize],
    decode: Decode,
) -> anyhow::Result<Vec<usize>> {
    let mut out = vec![0usize; probs.len()];
    let mut ids: Vec<usize> = recordings.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let at: Vec<usize> = (0..probs.len()).filter(|&k| recordings[k] == id).collect();
        let seq: Vec<Vec<f32>> = at.iter().map(|&k| probs[k].clone()).collect();
        for (&k, c) in at.iter().zip(transitions.decode(&seq, decode)) {
            out[k] = c;
        }
    }
    Ok(out)
}

/// Accuracy of `predicted` against `labels`.
pub fn score(labels: &[usize], predicted: &[usize], n_classes: usize) -> f64 {
    accuracies(&confusion_matrix(labels, predicted, n_classes)).0
}

/// How folds are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldOptions {
    pub folds: usize,
    pub seed: u64,
    /// Whole manifest rows (e.g. one recording's windows) stay in one fold.
    pub grouped: bool,
}

/// Fold of each of the examples `idx` (labels and groups taken from `loaded`).
pub fn assign_folds(loaded: &Loaded, idx: &[usize], opts: FoldOptions) -> Vec<usize> {
    if opts.grouped {
        let g: Vec<usize> = idx.iter().map(|&i| loaded.groups[i]).collect();
        grouped_folds(&g, opts.folds, opts.seed)
    } else {
        let l: Vec<usize> = idx.iter().map(|&i| loaded.examples[i].label).collect();
        stratified_folds(&l, opts.folds, opts.seed)
    }
}

/// Result of a cross-validation over some examples.
#[derive(Clone, Debug)]
pub struct CvResult {
    /// Accuracy on each fold's held-out examples.
    pub fold_accuracy: Vec<f64>,
    pub mean: f64,
    /// Predicted class of each example of `idx`, in `idx` order.
    pub predicted: Vec<usize>,
}

/// k-fold cross-validation of `settings` over the examples `idx` of `loaded` (which must have
/// been loaded with `settings.features`); `ensemble` models per fold (seeds seed, seed + 1, ...).
/// `on_fold(fold, accuracy)` sees each fold. Every example `idx` names is trained on or tested
/// on, no other.
pub fn cross_validate(
    loaded: &Loaded,
    idx: &[usize],
    settings: &Settings,
    folds: FoldOptions,
    ensemble: usize,
    mut on_fold: impl FnMut(usize, f64),
) -> anyhow::Result<CvResult> {
    anyhow::ensure!(folds.folds >= 2, "folds must be at least 2");
    decode_needs_whole_recordings(settings, folds)?;
    let fold = assign_folds(loaded, idx, folds);
    let mut fold_accuracy = Vec::new();
    let mut predicted = vec![0usize; idx.len()];
    for f in 0..folds.folds {
        let train_idx: Vec<usize> = (0..idx.len())
            .filter(|&k| fold[k] != f)
            .map(|k| idx[k])
            .collect();
        let test_pos: Vec<usize> = (0..idx.len()).filter(|&k| fold[k] == f).collect();
        if test_pos.is_empty() || train_idx.is_empty() {
            continue;
        }
        let test_idx: Vec<usize> = test_pos.iter().map(|&k| idx[k]).collect();
        let s = Settings {
            ensemble: ensemble.max(settings.ensemble),
            ..settings.clone()
        };
        let (labels, pred) = fit_and_predict_fold(loaded, &train_idx, &test_idx, &s)?;
        let acc = score(&labels, &pred, loaded.n_classes);
        for (&k, &p) in test_pos.iter().zip(&pred) {
            predicted[k] = p;
        }
        on_fold(f, acc);
        fold_accuracy.push(acc);
    }
    let mean = fold_accuracy.iter().sum::<f64>() / fold_accuracy.len().max(1) as f64;
    Ok(CvResult {
        fold_accuracy,
        mean,
        predicted,
    })
}

/// A search space: for each key, the values to try (`--search epochs=50,150`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchSpace {
    pub axes: Vec<(String, Vec<String>)>,
}

impl SearchSpace {
    /// Parses `key=v1,v2,...` entries; each key must be settable ([`Settings::set`]) with each
    /// value, checked here before any work.
    pub fn parse(entries: &[String], base: &Settings) -> anyhow::Result<Self> {
        let mut axes: Vec<(String, Vec<String>)> = Vec::new();
        for e in entries {
            let (k, v) = e
                .split_once('=')
                .with_context(|| format!("--search {e:?}: expected key=value,value,..."))?;
            let values: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if values.is_empty() {
                bail!("--search {e:?}: no values");
            }
            let key = k.trim().to_string();
            if axes.iter().any(|(a, _)| *a == key) {
                bail!("--search: key {key:?} given twice");
            }
            for v in &values {
                let mut s = base.clone();
                s.set(&key, v)
                    .map_err(|m| anyhow::anyhow!("--search {e:?}: {m}"))?;
                s.validate().with_context(|| format!("--search {e:?}"))?;
            }
            axes.push((key, values));
        }
        Ok(SearchSpace { axes })
    }

    pub fn is_empty(&self) -> bool {
        self.axes.is_empty()
    }

    /// Every combination, as `(key, value)` lists in axis order.
    pub fn combinations(&self) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (k, values) in &self.axes {
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((k.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        out
    }
}

/// `key=value key=value` (or `defaults`).
pub fn combination_name(c: &[(String, String)]) -> String {
    if c.is_empty() {
        return "defaults".into();
    }
    c.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Examples of one manifest under every feature spec a search asks for, loaded once each.
pub struct FeatureCache<'m> {
    manifest: &'m Manifest,
    cache: BTreeMap<String, Loaded>,
}

impl<'m> FeatureCache<'m> {
    pub fn new(manifest: &'m Manifest) -> Self {
        FeatureCache {
            manifest,
            cache: BTreeMap::new(),
        }
    }

    /// Stores examples loaded elsewhere (e.g. with a progress bar) under `spec`.
    pub fn insert(&mut self, spec: &FeatureSpec, loaded: Loaded) {
        self.cache.insert(format!("{spec:?}"), loaded);
    }

    /// The examples under `spec` (loaded on first use).
    pub fn get(&mut self, spec: &FeatureSpec) -> anyhow::Result<&Loaded> {
        let key = format!("{spec:?}");
        if !self.cache.contains_key(&key) {
            let loaded = load_examples(self.manifest, spec, &|| {})?;
            if let Some(first) = self.cache.values().next() {
                anyhow::ensure!(
                    first.examples.len() == loaded.examples.len()
                        && first.labels() == loaded.labels(),
                    "{}: feature settings changed the examples",
                    self.manifest.path.display()
                );
            }
            self.cache.insert(key.clone(), loaded);
        }
        Ok(&self.cache[&key])
    }
}

/// What [`select`] found.
#[derive(Clone, Debug)]
pub struct Selection {
    pub settings: Settings,
    pub name: String,
    /// Each combination's mean inner-fold accuracy, in [`SearchSpace::combinations`] order.
    pub scores: Vec<(String, f64)>,
    /// Every example index the inner folds trained or scored on (sorted).
    pub seen: Vec<usize>,
}

/// Chooses settings by `inner`-fold cross-validation on the examples `idx` only: each
/// combination of `space` applied to `base`, the highest mean inner accuracy wins (the earlier
/// combination on a tie). No example outside `idx` is looked at.
pub fn select(
    cache: &mut FeatureCache,
    idx: &[usize],
    base: &Settings,
    space: &SearchSpace,
    inner: FoldOptions,
    mut on_score: impl FnMut(&str, f64),
) -> anyhow::Result<Selection> {
    let mut best: Option<(f64, Settings, String)> = None;
    let mut scores = Vec::new();
    for combo in space.combinations() {
        let mut s = base.clone();
        for (k, v) in &combo {
            s.set(k, v).map_err(anyhow::Error::msg)?;
        }
        let loaded = cache.get(&s.features)?;
        let r = cross_validate(loaded, idx, &s, inner, 1, |_, _| {})?;
        let name = combination_name(&combo);
        on_score(&name, r.mean);
        scores.push((name.clone(), r.mean));
        if best.as_ref().is_none_or(|(b, _, _)| r.mean > *b) {
            best = Some((r.mean, s, name));
        }
    }
    let (_, settings, name) = best.context("empty search space")?;
    let mut seen = idx.to_vec();
    seen.sort_unstable();
    Ok(Selection {
        settings,
        name,
        scores,
        seen,
    })
}

/// One outer fold of [`nested_cv`].
#[derive(Clone, Debug)]
pub struct NestedFold {
    pub test_idx: Vec<usize>,
    pub selection: Selection,
    pub accuracy: f64,
}

/// Nested cross-validation: for each `outer` fold, [`select`] chooses settings by `inner`-fold
/// CV on the other folds only, a model (or `ensemble`) with those settings is trained on the
/// other folds, and the held-out fold is scored. The reported accuracy comes from folds no
/// choice looked at.
pub fn nested_cv(
    cache: &mut FeatureCache,
    base: &Settings,
    space: &SearchSpace,
    outer: FoldOptions,
    inner_folds: usize,
    ensemble: usize,
    mut on_fold: impl FnMut(&NestedFold),
) -> anyhow::Result<Vec<NestedFold>> {
    anyhow::ensure!(outer.folds >= 2, "folds must be at least 2");
    anyhow::ensure!(inner_folds >= 2, "inner folds must be at least 2");
    let (all, n_classes) = {
        let l = cache.get(&base.features)?;
        ((0..l.examples.len()).collect::<Vec<usize>>(), l.n_classes)
    };
    let fold = assign_folds(cache.get(&base.features)?, &all, outer);
    let mut out = Vec::new();
    for f in 0..outer.folds {
        let train_idx: Vec<usize> = all.iter().copied().filter(|&i| fold[i] != f).collect();
        let test_idx: Vec<usize> = all.iter().copied().filter(|&i| fold[i] == f).collect();
        if test_idx.is_empty() {
            continue;
        }
        let inner = FoldOptions {
            folds: inner_folds,
            seed: outer.seed.wrapping_add(1 + f as u64),
            grouped: outer.grouped,
        };
        let selection = select(cache, &train_idx, base, space, inner, |_, _| {})?;
        let s = &selection.settings;
        decode_needs_whole_recordings(s, outer)?;
        let loaded = cache.get(&s.features)?;
        let s = Settings {
            ensemble: ensemble.max(s.ensemble),
            ..s.clone()
        };
        let (labels, pred) = fit_and_predict_fold(loaded, &train_idx, &test_idx, &s)?;
        let fold = NestedFold {
            accuracy: score(&labels, &pred, n_classes),
            test_idx,
            selection,
        };
        on_fold(&fold);
        out.push(fold);
    }
    Ok(out)
}

/// Sequence decoding reads a test recording's windows in order, so a fold must hold whole
/// recordings: refuses `decode` with window-stratified folds.
fn decode_needs_whole_recordings(settings: &Settings, folds: FoldOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.decode == Decode::None || folds.grouped,
        "--decode {} reads each test recording's windows in order: cross-validation needs whole recordings per fold (--grouped)",
        settings.decode.name()
    );
    Ok(())
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Models already trained in one search, by the settings that shape training: combinations that
/// differ only in test-time steps ([`Settings::adapt_norm`], [`Settings::tent`],
/// [`Settings::self_train`] — its retraining happens in [`predict_session`] — and
/// [`Settings::decode`]) share them, so each is trained once. Training is deterministic given
/// the settings, so sharing changes no result.
#[derive(Default)]
struct TrainedOnce {
    done: Vec<(Settings, Vec<ActivityModel>)>,
}

impl TrainedOnce {
    fn get(
        &mut self,
        loaded: &Loaded,
        all: &[usize],
        settings: &Settings,
    ) -> anyhow::Result<&Vec<ActivityModel>> {
        let key = Settings {
            adapt_norm: false,
            tent: 0,
            self_train: 0,
            decode: Decode::None,
            ..settings.clone()
        };
        let at = match self.done.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                let models = fit_ensemble(loaded, all, &[], settings)?;
                self.done.push((key, models));
                self.done.len() - 1
            }
        };
        Ok(&self.done[at].1)
    }
}

/// Result of [`transfer`] for one seed.
#[derive(Clone, Debug)]
pub struct Transfer {
    pub selection: Option<Selection>,
    /// Accuracy on each test manifest, in order.
    pub accuracy: Vec<f64>,
    /// The trained models (one per ensemble member; the first is `model`; none for the linear
    /// classifier, which is fitted per prediction).
    pub models: Vec<ActivityModel>,
    pub model: Option<ActivityModel>,
}

/// How [`transfer`] chooses among a search space.
#[derive(Clone, Copy, Debug)]
pub enum Choice<'a> {
    /// Inner cross-validation on the training manifest alone.
    Inner(FoldOptions),
    /// A named validation session (a later recording than the training data): each
    /// combination is trained on the whole training manifest and scored on it (its labels
    /// score, never train); the best is kept. The test manifests play no part.
    Validation(&'a Manifest),
}

/// Loads one session manifest with the features of `loaded` (which it must match).
fn load_session(
    manifest: &Manifest,
    loaded: &Loaded,
    spec: &FeatureSpec,
) -> anyhow::Result<Loaded> {
    let spec = FeatureSpec {
        stride: Some(loaded.stride),
        kind: Some(loaded.kind),
        ..spec.clone()
    };
    let test = load_examples(manifest, &spec, &|| {})?;
    if test.input_dim != loaded.input_dim {
        bail!(
            "{}: {} features per frame, the training manifest gives {}",
            manifest.path.display(),
            test.input_dim,
            loaded.input_dim
        );
    }
    if test.n_classes > loaded.n_classes {
        bail!(
            "{}: {} classes, the training manifest has {}",
            manifest.path.display(),
            test.n_classes,
            loaded.n_classes
        );
    }
    Ok(test)
}

/// Accuracy on one session of `models` trained on all of `loaded` with `settings`.
fn score_session(
    loaded: &Loaded,
    models: &[ActivityModel],
    settings: &Settings,
    manifest: &Manifest,
) -> anyhow::Result<f64> {
    let test = load_session(manifest, loaded, &settings.features)?;
    let all: Vec<usize> = (0..loaded.examples.len()).collect();
    let pred = predict_session(loaded, &all, models, &test.examples, &test.groups, settings)?;
    Ok(score(&test.labels(), &pred, loaded.n_classes))
}

/// Train on one manifest, test on others (later sessions): settings come from `base`, or, with a
/// non-empty `space`, from [`select`] by inner CV on the training manifest alone
/// ([`Choice::Inner`]) or from a named validation session ([`Choice::Validation`]); the models
/// are trained on all of the training manifest and each test manifest is scored as one session
/// (with the chosen test-time steps, per test manifest; [`predict_session`]).
pub fn transfer(
    train_cache: &mut FeatureCache,
    tests: &[Manifest],
    base: &Settings,
    space: &SearchSpace,
    choice: Choice,
    mut on_score: impl FnMut(&str, f64),
) -> anyhow::Result<Transfer> {
    let n = train_cache.get(&base.features)?.examples.len();
    let all: Vec<usize> = (0..n).collect();
    let (settings, selection, models) = match choice {
        _ if space.is_empty() => (base.clone(), None, None),
        Choice::Inner(inner) => {
            let sel = select(train_cache, &all, base, space, inner, &mut on_score)?;
            (sel.settings.clone(), Some(sel), None)
        }
        Choice::Validation(validation) => {
            let mut best: Option<(f64, Settings, String, Vec<ActivityModel>)> = None;
            let mut scores = Vec::new();
            let mut trained = TrainedOnce::default();
            for combo in space.combinations() {
                let mut s = base.clone();
                for (k, v) in &combo {
                    s.set(k, v).map_err(anyhow::Error::msg)?;
                }
                let loaded = train_cache.get(&s.features)?;
                let models = trained.get(loaded, &all, &s)?.clone();
                let acc = score_session(loaded, &models, &s, validation)?;
                let name = combination_name(&combo);
                on_score(&name, acc);
                scores.push((name.clone(), acc));
                if best.as_ref().is_none_or(|(b, ..)| acc > *b) {
                    best = Some((acc, s, name, models));
                }
            }
            let (_, settings, name, models) = best.context("empty search space")?;
            let sel = Selection {
                settings: settings.clone(),
                name,
                scores,
                seen: all.clone(),
            };
            (settings, Some(sel), Some(models))
        }
    };
    let loaded = train_cache.get(&settings.features)?;
    let models = match models {
        Some(m) => m,
        None => fit_ensemble(loaded, &all, &[], &settings)?,
    };
    let accuracy = tests
        .iter()
        .map(|t| score_session(loaded, &models, &settings, t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Transfer {
        selection,
        accuracy,
        model: models.first().cloned(),
        models,
    })
}

/// One validation session's choice in [`validate_each`].
#[derive(Clone, Debug)]
pub struct SessionChoice {
    /// Index of the validation session.
    pub validation: usize,
    /// The chosen combination and its validation accuracy.
    pub chosen: String,
    pub validation_accuracy: f64,
    /// Accuracy of the chosen combination on every session (the validation one included, for
    /// reference; the others are the reported numbers).
    pub accuracy: Vec<f64>,
}

/// Every session in turn as the named validation part: each combination of `space` is trained
/// once on the whole training manifest (it does not depend on the session) and scored on every
/// session; for validation session v the combination with the best accuracy on v wins (the
/// earlier on a tie) and is reported on the others. The same choices and numbers as
/// [`transfer`] with [`Choice::Validation`] of v and the other sessions as tests, for the cost
/// of one. `on_score(combination, session, accuracy)` sees every score.
pub fn validate_each(
    train_cache: &mut FeatureCache,
    sessions: &[Manifest],
    base: &Settings,
    space: &SearchSpace,
    mut on_score: impl FnMut(&str, usize, f64),
) -> anyhow::Result<Vec<SessionChoice>> {
    anyhow::ensure!(
        sessions.len() >= 2,
        "validating on each session needs at least two"
    );
    anyhow::ensure!(
        !space.is_empty(),
        "validating on each session needs a search space"
    );
    let n = train_cache.get(&base.features)?.examples.len();
    let all: Vec<usize> = (0..n).collect();
    let mut table: Vec<(String, Vec<f64>)> = Vec::new();
    let mut trained = TrainedOnce::default();
    for combo in space.combinations() {
        let mut s = base.clone();
        for (k, v) in &combo {
            s.set(k, v).map_err(anyhow::Error::msg)?;
        }
        let loaded = train_cache.get(&s.features)?;
        let models = trained.get(loaded, &all, &s)?;
        let name = combination_name(&combo);
        let mut row = Vec::new();
        for (i, m) in sessions.iter().enumerate() {
            let acc = score_session(loaded, models, &s, m)?;
            on_score(&name, i, acc);
            row.push(acc);
        }
        table.push((name, row));
    }
    Ok((0..sessions.len())
        .map(|v| {
            let mut best = 0;
            for (c, (_, row)) in table.iter().enumerate() {
                if row[v] > table[best].1[v] {
                    best = c;
                }
            }
            SessionChoice {
                validation: v,
                chosen: table[best].0.clone(),
                validation_accuracy: table[best].1[v],
                accuracy: table[best].1.clone(),
            }
        })
        .collect())
}
