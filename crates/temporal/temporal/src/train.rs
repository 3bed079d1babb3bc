//! Training and evaluation of the activity classifier: the project's AdamW and cosine schedule
//! ([`csipose_optim`], one schedule step per epoch) on mini-batches (gradients of a batch
//! computed in parallel and summed in a fixed order, so a seed gives one result), random
//! temporal crops and random smooth frequency responses ([`ResponseAugment`]) as augmentation,
//! stratified and grouped k-fold splits, accuracy and confusion matrices, and test-time
//! adaptation of the input normalisation by information maximisation ([`adapt_entropy`]).

use rayon::prelude::*;

use csipose_optim::{AdamW, Schedule};

use crate::model::{argmax, ActivityModel, ModelError, Rng};

/// One labelled sequence: `[frames, input_dim]` row-major, and its class.
#[derive(Clone, Debug)]
pub struct Example {
    pub frames: Vec<f32>,
    pub label: usize,
}

/// Optimiser settings.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    /// Decoupled weight decay (AdamW) per step, relative to the learning rate.
    pub weight_decay: f32,
    /// Each training sequence is cropped to a random contiguous span of at least this fraction
    /// of its frames (1.0 = no cropping).
    pub min_crop: f32,
    pub seed: u64,
    /// A random smooth frequency response added to each training crop's log amplitudes.
    pub response: Option<ResponseAugment>,
}

/// Train-time augmentation against a changed static channel, in feature space: a random smooth
/// frequency response `r_a(s)` in dB per receive antenna, the same for every frame of a crop, as
/// the pose trainer draws it (`csipose_train::augment::CsiAugment::response_db`):
/// `r_a(u) = σ (n₀ (2u − 1) + n₁ cos(2π f₁ u + φ₁) + n₂ cos(2π f₂ u + φ₂)) / √3`, `u = s/(S−1)`,
/// `n ~ N(0, 1)`, `f ~ U(0.3, 2)`, σ = `db`. Multiplying amplitudes by `10^(r/20)` adds
/// `r · ln 10 / 20` to their logarithm, which is what is added to the first `antennas ×
/// subcarriers` features of every frame (the log-amplitude block; for `ln(1 + a)` exact up to
/// `1/a`). The change and centred blocks do not see a static response. With `zero_mean` the
/// curve's mean over each antenna's subcarriers is removed first (for ratio features).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResponseAugment {
    pub db: f32,
    pub antennas: usize,
    pub subcarriers: usize,
    pub zero_mean: bool,
}

impl ResponseAugment {
    /// One random response `[antennas × subcarriers]` in log-amplitude units.
    pub fn draw(&self, rng: &mut Rng) -> Vec<f32> {
        let (a, s) = (self.antennas, self.subcarriers);
        let tau = std::f32::consts::TAU;
        let k = self.db / 3f32.sqrt() * std::f32::consts::LN_10 / 20.0;
        let mut out = Vec::with_capacity(a * s);
        for _ in 0..a {
            let n = [
                rng.normal() as f32,
                rng.normal() as f32,
                rng.normal() as f32,
            ];
            let f = [
                0.3 + 1.7 * rng.uniform() as f32,
                0.3 + 1.7 * rng.uniform() as f32,
            ];
            let ph = [tau * rng.uniform() as f32, tau * rng.uniform() as f32];
            let start = out.len();
            for si in 0..s {
                let u = if s > 1 {
                    si as f32 / (s - 1) as f32
                } else {
                    0.5
                };
                out.push(
                    k * (n[0] * (2.0 * u - 1.0)
                        + n[1] * (tau * f[0] * u + ph[0]).cos()
                        + n[2] * (tau * f[1] * u + ph[1]).cos()),
                );
            }
            if self.zero_mean {
                let m = out[start..].iter().sum::<f32>() / s.max(1) as f32;
                out[start..].iter_mut().for_each(|v| *v -= m);
            }
        }
        out
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 100,
            batch_size: 16,
            learning_rate: 2e-3,
            weight_decay: 1e-4,
            min_crop: 0.5,
            seed: 0,
            response: None,
        }
    }
}

/// Loss and training accuracy of one epoch.
#[derive(Clone, Copy, Debug)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f32,
    pub accuracy: f32,
}

/// Sets the model's input normalisation from `data` and trains it; `on_epoch` sees each epoch.
pub fn train(
    model: &mut ActivityModel,
    data: &[Example],
    opts: &TrainOptions,
    mut on_epoch: impl FnMut(EpochStats),
) -> Result<(), ModelError> {
    let input_dim = model.shape.input_dim;
    let all: Vec<f32> = data.iter().flat_map(|e| e.frames.iter().copied()).collect();
    model.set_normalisation(&all);
    let norm = model.shape.layout().normalisation()..model.shape.layout().embedding();
    let mut rng = Rng::new(opts.seed);
    // The input normalisation is set from the data above, not learned: it neither decays nor
    // gets a gradient (zeroed below), so AdamW leaves it exactly as it is. Every other weight
    // decays.
    let mut decay = vec![true; model.weights.len()];
    decay[norm.clone()].fill(false);
    let mut opt = AdamW::new(&decay, opts.weight_decay);
    // Cosine decay from the full rate to 5% of it, one step per epoch, no warmup.
    let schedule = Schedule {
        lr: opts.learning_rate,
        min_lr: 0.05 * opts.learning_rate,
        warmup: 0,
        total: opts.epochs as u64,
    };
    let mut order: Vec<usize> = (0..data.len()).collect();
    for epoch in 0..opts.epochs {
        rng.shuffle(&mut order);
        let lr = schedule.at(epoch as u64);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for batch in order.chunks(opts.batch_size.max(1)) {
            // Crops and responses drawn up front (sequentially) so results do not depend on
            // thread timing.
            let crops: Vec<(usize, usize, Option<Vec<f32>>)> = batch
                .iter()
                .map(|&i| {
                    let frames = data[i].frames.len() / input_dim;
                    let min = ((frames as f32 * opts.min_crop).ceil() as usize).clamp(1, frames);
                    let len = min + rng.below(frames - min + 1);
                    let start = rng.below(frames - len + 1);
                    (start, len, opts.response.map(|r| r.draw(&mut rng)))
                })
                .collect();
            let results = batch
                .par_iter()
                .zip(&crops)
                .map(|(&i, (start, len, response))| {
                    let x = &data[i].frames[start * input_dim..(start + len) * input_dim];
                    let shifted;
                    let x = match response {
                        Some(r) => {
                            let mut y = x.to_vec();
                            for frame in y.chunks_exact_mut(input_dim) {
                                frame.iter_mut().zip(r).for_each(|(v, d)| *v += d);
                            }
                            shifted = y;
                            &shifted[..]
                        }
                        None => x,
                    };
                    let (loss, grad) = model.loss_and_gradient(x, data[i].label)?;
                    let hit = model.predict(x)? == data[i].label;
                    Ok((loss, grad, hit))
                })
                .collect::<Result<Vec<_>, ModelError>>()?;
            let mut grad = vec![0.0f32; model.weights.len()];
            for (loss, g, hit) in &results {
                loss_sum += *loss as f64;
                correct += *hit as usize;
                for (a, b) in grad.iter_mut().zip(g) {
                    *a += b;
                }
            }
            let scale = 1.0 / batch.len() as f32;
            grad.iter_mut().for_each(|g| *g *= scale);
            grad[norm.clone()].fill(0.0);
            opt.step(&mut model.weights, &grad, lr);
        }
        on_epoch(EpochStats {
            epoch,
            loss: (loss_sum / data.len().max(1) as f64) as f32,
            accuracy: correct as f32 / data.len().max(1) as f32,
        });
    }
    Ok(())
}

/// Predicted class of every example (in parallel).
pub fn predict_all(model: &ActivityModel, data: &[Example]) -> Result<Vec<usize>, ModelError> {
    data.par_iter().map(|e| model.predict(&e.frames)).collect()
}

/// Mean softmax probabilities of every example over `models` (in parallel). The models must
/// share the class count.
pub fn ensemble_probabilities(
    models: &[ActivityModel],
    data: &[Example],
) -> Result<Vec<Vec<f32>>, ModelError> {
    data.par_iter()
        .map(|e| {
            let mut mean: Vec<f32> = Vec::new();
            for m in models {
                let p = crate::model::softmax(&m.logits(&e.frames)?);
                if mean.is_empty() {
                    mean = vec![0.0; p.len()];
                }
                for (a, b) in mean.iter_mut().zip(&p) {
                    *a += b / models.len() as f32;
                }
            }
            Ok(mean)
        })
        .collect()
}

/// Predicted class of every example by an ensemble: the class with the highest mean softmax
/// probability over `models` (one model gives the same as [`predict_all`]). The models must
/// share the class count.
pub fn predict_ensemble(
    models: &[ActivityModel],
    data: &[Example],
) -> Result<Vec<usize>, ModelError> {
    Ok(ensemble_probabilities(models, data)?
        .iter()
        .map(|p| argmax(p))
        .collect())
}

/// Test-time adaptation of the input normalisation by information maximisation on unlabelled
/// examples of one session: TENT's entropy minimisation (Wang et al., ICLR 2021) with SHOT's
/// diversity term (Liang et al., ICML 2020) against collapse onto one class. The objective is
/// `L = mean_i H(p_i) − diversity · H(mean_i p_i)`; each of `steps` full-batch Adam steps
/// (rate `learning_rate`) moves every feature's normalisation shift `a` and log-scale `b`
/// (`mean = mean₀ + sd₀·a`, `sd = sd₀·e^b`, both starting at 0) and nothing else.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntropyAdapt {
    pub steps: usize,
    pub learning_rate: f32,
    pub diversity: f32,
}

impl Default for EntropyAdapt {
    fn default() -> Self {
        EntropyAdapt {
            steps: 0,
            learning_rate: 0.01,
            diversity: 1.0,
        }
    }
}

/// [`EntropyAdapt`]'s objective over the logits of N examples and its gradient with respect to
/// each example's logits.
pub fn information_loss(logits: &[Vec<f32>], diversity: f32) -> (f64, Vec<Vec<f32>>) {
    let n = logits.len().max(1) as f64;
    let probs: Vec<Vec<f64>> = logits
        .iter()
        .map(|l| {
            let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = l.iter().map(|&v| (v as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|v| v / z).collect()
        })
        .collect();
    let c = probs.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f64; c];
    for p in &probs {
        for (m, v) in mean.iter_mut().zip(p) {
            *m += v / n;
        }
    }
    let ln = |v: f64| v.max(1e-30).ln();
    let h_mean: f64 = -mean.iter().map(|&v| v * ln(v)).sum::<f64>();
    let lambda = diversity as f64;
    let mut loss = -lambda * h_mean;
    let grads = probs
        .iter()
        .map(|p| {
            let h: f64 = -p.iter().map(|&v| v * ln(v)).sum::<f64>();
            loss += h / n;
            let cross: f64 = p.iter().zip(&mean).map(|(&v, &m)| v * ln(m)).sum();
            p.iter()
                .zip(&mean)
                .map(|(&v, &m)| ((-v * (ln(v) + h) + lambda * v * (ln(m) - cross)) / n) as f32)
                .collect()
        })
        .collect();
    (loss, grads)
}

/// Adapts `model`'s input normalisation to the unlabelled `data` of one session
/// ([`EntropyAdapt`]); returns the objective before and after.
pub fn adapt_entropy(
    model: &mut ActivityModel,
    data: &[Example],
    opts: &EntropyAdapt,
) -> Result<(f64, f64), ModelError> {
    let i = model.shape.input_dim;
    let norm = model.shape.layout().normalisation();
    let mean0 = model.weights[norm..norm + i].to_vec();
    let sd0 = model.weights[norm + i..norm + 2 * i].to_vec();
    let mut params = vec![0.0f32; 2 * i];
    let mut opt = AdamW::new(&vec![false; 2 * i][..], 0.0);
    let objective = |m: &ActivityModel| -> Result<(f64, Vec<Vec<f32>>), ModelError> {
        let logits: Vec<Vec<f32>> = data
            .par_iter()
            .map(|e| m.logits(&e.frames))
            .collect::<Result<_, _>>()?;
        Ok(information_loss(&logits, opts.diversity))
    };
    let first = objective(model)?.0;
    for _ in 0..opts.steps {
        let (_, dlogits) = objective(model)?;
        let grads = data
            .par_iter()
            .zip(&dlogits)
            .map(|(e, dl)| {
                let g = model.normalisation_gradient(&e.frames, |_| dl.clone())?;
                Ok((g.mean, g.sd))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let mut g = vec![0.0f32; 2 * i];
        for (dm, ds) in &grads {
            for k in 0..i {
                // d/da = dmean · sd₀, d/db = dsd · sd.
                g[k] += dm[k] * sd0[k];
                g[i + k] += ds[k] * model.weights[norm + i + k];
            }
        }
        opt.step(&mut params, &g, opts.learning_rate);
        for k in 0..i {
            model.weights[norm + k] = mean0[k] + sd0[k] * params[k];
            model.weights[norm + i + k] = (sd0[k] * params[i + k].exp()).max(1e-6);
        }
    }
    let last = objective(model)?.0;
    Ok((first, last))
}

/// `confusion[true][predicted]` counts.
pub fn confusion_matrix(
    labels: &[usize],
    predicted: &[usize],
    n_classes: usize,
) -> Vec<Vec<usize>> {
    let mut c = vec![vec![0usize; n_classes]; n_classes];
    for (&t, &p) in labels.iter().zip(predicted) {
        if t < n_classes && p < n_classes {
            c[t][p] += 1;
        }
    }
    c
}

/// Fraction correct overall, and per true class (`None` for a class without examples).
pub fn accuracies(confusion: &[Vec<usize>]) -> (f64, Vec<Option<f64>>) {
    let total: usize = confusion.iter().map(|r| r.iter().sum::<usize>()).sum();
    let correct: usize = (0..confusion.len()).map(|i| confusion[i][i]).sum();
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let n: usize = row.iter().sum();
            (n > 0).then(|| row[i] as f64 / n as f64)
        })
        .collect();
    (correct as f64 / total.max(1) as f64, per_class)
}

/// Stratified k-fold assignment: within each class, examples are shuffled with `seed` and dealt
/// to folds round-robin. Returns the fold (0..k) of each example.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut fold = vec![0usize; labels.len()];
    let n_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    for class in 0..n_classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        for (r, &i) in members.iter().enumerate() {
            fold[i] = r % k.max(1);
        }
    }
    fold
}

/// Grouped k-fold assignment: whole groups (e.g. the recordings examples were cut from) are
/// shuffled with `seed` and dealt to folds so the folds' example counts stay close (each group
/// goes to the fold with the fewest examples so far, ties to the lowest fold). Returns the fold
/// (0..k) of each example; no group is split between folds.
pub fn grouped_folds(groups: &[usize], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut rng = Rng::new(seed);
    let mut ids: Vec<usize> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    rng.shuffle(&mut ids);
    let mut size = vec![0usize; k];
    let mut fold_of = std::collections::HashMap::new();
    for g in ids {
        let n = groups.iter().filter(|&&x| x == g).count();
        let f = (0..k).min_by_key(|&f| (size[f], f)).unwrap_or(0);
        size[f] += n;
        fold_of.insert(g, f);
    }
    groups.iter().map(|g| fold_of[g]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelShape;
    use csipose_attention::Backend;

    #[test]
    fn information_loss_gradient_matches_finite_differences() {
        let mut rng = Rng::new(21);
        let logits: Vec<Vec<f32>> = (0..6)
            .map(|_| (0..4).map(|_| rng.range(-2.0, 2.0) as f32).collect())
            .collect();
        for diversity in [0.0f32, 1.0] {
            let (_, g) = information_loss(&logits, diversity);
            let eps = 1e-3f32;
            let (mut err2, mut ref2) = (0.0f64, 0.0f64);
            for i in 0..logits.len() {
                for j in 0..4 {
                    let mut plus = logits.clone();
                    plus[i][j] += eps;
                    let mut minus = logits.clone();
                    minus[i][j] -= eps;
                    let numeric = (information_loss(&plus, diversity).0
                        - information_loss(&minus, diversity).0)
                        / (2.0 * eps as f64);
                    err2 += (numeric - g[i][j] as f64).powi(2);
                    ref2 += numeric * numeric;
                }
            }
            let rel = (err2 / ref2).sqrt();
            assert!(
                ref2 > 0.0 && rel < 1e-3,
                "diversity {diversity}: relative error {rel}"
            );
        }
    }

    #[test]
    fn entropy_adaptation_lowers_its_objective_and_moves_only_the_normalisation() {
        let data = toy_data(6, 3);
        let shape = ModelShape {
            input_dim: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
            n_layers: 1,
            n_classes: 3,
        };
        let mut model = ActivityModel::new(shape, Backend::Sparse, 1).unwrap();
        let opts = TrainOptions {
            epochs: 5,
            ..TrainOptions::default()
        };
        train(&mut model, &data, &opts, |_| {}).unwrap();
        // A shifted session: every feature moved by a constant.
        let shifted: Vec<Example> = data
            .iter()
            .map(|e| Example {
                frames: e.frames.iter().map(|v| v + 0.7).collect(),
                label: e.label,
            })
            .collect();
        let before = model.clone();
        let opts = EntropyAdapt {
            steps: 20,
            ..EntropyAdapt::default()
        };
        let (first, last) = adapt_entropy(&mut model, &shifted, &opts).unwrap();
        assert!(last < first, "objective {first} -> {last}");
        let norm = model.shape.layout().normalisation()..model.shape.layout().embedding();
        for (k, (a, b)) in model.weights.iter().zip(&before.weights).enumerate() {
            if !norm.contains(&k) {
                assert_eq!(a, b, "weight {k} outside the normalisation moved");
            }
        }
        assert!(model.weights[norm.clone()] != before.weights[norm]);
    }

    /// Three classes that differ in how the signal moves over time: slow sine, fast sine,
    /// square wave.
    fn toy_data(n_per_class: usize, seed: u64) -> Vec<Example> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        for label in 0..3 {
            for _ in 0..n_per_class {
                let frames = 30 + rng.below(10);
                let phase = rng.range(-1.0, 1.0) as f32 * 3.0;
                let mut x = Vec::new();
                let mut previous = 0.0;
                for t in 0..frames {
                    let s = match label {
                        0 => ((t as f32) * 0.2 + phase).sin(),
                        1 => ((t as f32) * 0.9 + phase).sin(),
                        _ => {
                            if (t / 5) % 2 == 0 {
                                1.0
                            } else {
                                -1.0
                            }
                        }
                    } + 0.1 * rng.range(-1.0, 1.0) as f32;
                    // Features as the CSI pipeline makes them: value and frame-to-frame change.
                    x.push(s);
                    x.push(if t == 0 { 0.0 } else { s - previous });
                    previous = s;
                }
                out.push(Example { frames: x, label });
            }
        }
        out
    }

    #[test]
    fn learns_a_temporal_toy_task() {
        let shape = ModelShape {
            input_dim: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 8,
            n_layers: 1,
            n_classes: 3,
        };
        let train_set = toy_data(20, 1);
        let test_set = toy_data(10, 2);
        let mut model = ActivityModel::new(shape, Backend::Sparse, 0).unwrap();
        let labels: Vec<usize> = test_set.iter().map(|e| e.label).collect();
        let before = predict_all(&model, &test_set).unwrap();
        let opts = TrainOptions {
            epochs: 60,
            batch_size: 8,
            learning_rate: 3e-3,
            ..TrainOptions::default()
        };
        let mut losses = Vec::new();
        train(&mut model, &train_set, &opts, |s| losses.push(s.loss)).unwrap();
        let after = predict_all(&model, &test_set).unwrap();
        let (acc_before, _) = accuracies(&confusion_matrix(&labels, &before, 3));
        let (acc_after, per_class) = accuracies(&confusion_matrix(&labels, &after, 3));
        assert!(losses.last().unwrap() < &(losses[0] * 0.5), "{losses:?}");
        assert!(acc_after >= 0.9, "accuracy {acc_before} -> {acc_after}");
        assert_eq!(per_class.len(), 3);
        // The input normalisation is what `set_normalisation` made of the data, untouched by
        // the optimiser.
        let lay = model.shape.layout();
        let trained = model.weights[lay.normalisation()..lay.embedding()].to_vec();
        let all: Vec<f32> = train_set.iter().flat_map(|e| e.frames.clone()).collect();
        model.set_normalisation(&all);
        assert_eq!(trained, model.weights[lay.normalisation()..lay.embedding()]);
    }

    #[test]
    fn ensemble_averages_probabilities() {
        let shape = ModelShape {
            input_dim: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
            n_layers: 1,
            n_classes: 3,
        };
        let data = toy_data(4, 3);
        let models: Vec<ActivityModel> = (0..3)
            .map(|s| ActivityModel::new(shape, Backend::Dense, s).unwrap())
            .collect();
        // One model: the ensemble is that model.
        assert_eq!(
            predict_ensemble(&models[..1], &data).unwrap(),
            predict_all(&models[0], &data).unwrap()
        );
        // Three: the argmax of the mean of the three softmaxes, computed here directly.
        let got = predict_ensemble(&models, &data).unwrap();
        for (e, &g) in data.iter().zip(&got) {
            let mut mean = [0.0f32; 3];
            for m in &models {
                let l = m.logits(&e.frames).unwrap();
                let z: f32 = l.iter().map(|x| x.exp()).sum();
                for (a, x) in mean.iter_mut().zip(&l) {
                    *a += x.exp() / z;
                }
            }
            assert_eq!(g, argmax(&mean));
        }
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let labels: Vec<usize> = (0..48).map(|i| i % 16).collect();
        let folds = stratified_folds(&labels, 3, 0);
        for f in 0..3 {
            for c in 0..16 {
                let n = (0..48).filter(|&i| folds[i] == f && labels[i] == c).count();
                assert_eq!(n, 1, "fold {f} class {c}");
            }
        }
        assert_eq!(folds, stratified_folds(&labels, 3, 0));
        assert_ne!(folds, stratified_folds(&labels, 3, 1));
    }

    #[test]
    fn grouped_folds_keep_groups_whole() {
        let groups: Vec<usize> = (0..60).map(|i| i / 6).collect(); // 10 groups of 6
        let folds = grouped_folds(&groups, 5, 3);
        for g in 0..10 {
            let f: Vec<usize> = (0..60)
                .filter(|&i| groups[i] == g)
                .map(|i| folds[i])
                .collect();
            assert!(f.iter().all(|&x| x == f[0]), "group {g} split: {f:?}");
        }
        for f in 0..5 {
            assert_eq!(folds.iter().filter(|&&x| x == f).count(), 12, "fold {f}");
        }
        assert_eq!(folds, grouped_folds(&groups, 5, 3));
        assert_ne!(folds, grouped_folds(&groups, 5, 4));
    }

    #[test]
    fn response_augment_is_smooth_and_sized() {
        let aug = ResponseAugment {
            db: 6.0,
            antennas: 2,
            subcarriers: 56,
            zero_mean: true,
        };
        let mut rng = Rng::new(5);
        let mut sd = 0.0f64;
        for _ in 0..200 {
            let r = aug.draw(&mut rng);
            assert_eq!(r.len(), 112);
            for a in r.chunks(56) {
                let mean: f32 = a.iter().sum::<f32>() / 56.0;
                assert!(mean.abs() < 1e-4, "zero mean: {mean}");
                // Smooth: neighbouring subcarriers differ by far less than the spread.
                let step = a
                    .windows(2)
                    .map(|w| (w[1] - w[0]).abs())
                    .fold(0.0, f32::max);
                let spread = a.iter().cloned().fold(f32::MIN, f32::max)
                    - a.iter().cloned().fold(f32::MAX, f32::min);
                assert!(step <= spread / 4.0 + 1e-6, "{step} vs {spread}");
                sd += a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 56.0;
            }
        }
        // About σ = 6 dB = 0.69 in ln units (less the removed mean): within a factor of 2.
        let sd = (sd / 400.0).sqrt();
        assert!((0.25..1.0).contains(&sd), "sd {sd}");
    }

    #[test]
    fn confusion_and_accuracy() {
        let c = confusion_matrix(&[0, 0, 1, 2], &[0, 1, 1, 2], 4);
        assert_eq!(c[0], vec![1, 1, 0, 0]);
        let (acc, per) = accuracies(&c);
        assert!((acc - 0.75).abs() < 1e-12);
        assert_eq!(per, vec![Some(0.5), Some(1.0), Some(1.0), None]);
    }
}
