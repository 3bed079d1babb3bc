//! The activity pipeline end to end: ESP32-HAR windows through a manifest (read in place from
//! `../shared`), and the nested search's promise that an outer test fold never influences the
//! settings chosen for it.

use std::path::{Path, PathBuf};

use csipose_pipeline::activity::{
    cross_validate, load_examples, nested_cv, standardise_by_group, FeatureCache, FeatureSpec,
    FoldOptions, Hyper, Loaded, SearchSpace, Settings,
};
use csipose_pipeline::manifest::{read_manifest, windows_manifest, Manifest};
use csipose_temporal::features::{FeatureKind, BLOCKS};
use csipose_temporal::sequence::Decode;
use csipose_temporal::train::Example;

fn esp32_har(session: &str) -> Option<PathBuf> {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/esp32-har"
    ))
    .join(session);
    if p.is_dir() {
        Some(p)
    } else {
        println!("SKIPPED: {} is absent", p.display());
        None
    }
}

#[test]
fn esp32_har_windows_load_through_a_manifest() {
    let Some(d2) = esp32_har("D2") else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = windows_manifest(&[(d2.clone(), d2.clone())], None).unwrap();
    let classes = "SEATED_RX,SEATED_TX,SITTING_DOWN_RX,SITTING_DOWN_TX,STANDING_UP_RX,\
                   STANDING_UP_TX,TURN_RX,TURN_TX,WALKING_RX,WALKING_TX";
    assert!(text.starts_with(&format!("#classes,{classes}\n")), "{text}");
    let path = dir.path().join("d2.csv");
    std::fs::write(&path, &text).unwrap();
    let m = read_manifest(&path).unwrap();
    assert_eq!(m.rows.len(), 4, "four executions");
    let spec = FeatureSpec {
        kind: Some(FeatureKind::Amplitude),
        stride: Some(2),
        ..FeatureSpec::default()
    };
    let l = load_examples(&m, &spec, &|| {}).unwrap();
    // numpy: 104 windows of [56, 50] in D2, every one of the 10 classes present.
    assert_eq!(l.examples.len(), 104);
    assert_eq!(l.n_classes, 10);
    assert_eq!(l.shape, (1, 56));
    assert_eq!(l.input_dim, BLOCKS * 56);
    assert!(l
        .examples
        .iter()
        .all(|e| e.frames.len() == 25 * l.input_dim));
    let mut seen = [0usize; 10];
    l.examples.iter().for_each(|e| seen[e.label] += 1);
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    let mut groups = l.groups.clone();
    groups.dedup();
    assert_eq!(groups, vec![0, 1, 2, 3], "windows keep their file as group");
    // The first window's first frame: ln(1 + mean of its first two samples) of subcarrier 0,
    // from the raw array (numpy: x[0, 0, :2] of e01_rx_tx-x.npy).
    let x = csipose_npy::read::<f64>(d2.join("e01_rx_tx-x.npy")).unwrap();
    assert_eq!(&x.shape[1..], &[56, 50]);
    let want = ((x.data[0] + x.data[1]) / 2.0).ln_1p() as f32;
    assert!((l.examples[0].frames[0] - want).abs() < 1e-5);
    // A label outside #classes is refused, naming the file and window.
    let bad = text.replacen("SEATED_RX,", "", 1);
    std::fs::write(&path, bad).unwrap();
    let err = format!(
        "{:#}",
        load_examples(&read_manifest(&path).unwrap(), &spec, &|| {}).unwrap_err()
    );
    assert!(err.contains("-y.npy") && err.contains("SEATED_RX"), "{err}");
}

/// Three classes whose signal moves differently over time.
fn toy(n_per_class: usize) -> Loaded {
    let mut examples = Vec::new();
    let mut state = 7u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for i in 0..n_per_class {
        for label in 0..3usize {
            let frames: Vec<f32> = (0..12)
                .flat_map(|t| {
                    let s = match label {
                        0 => (t as f32 * 0.3 + i as f32).sin(),
                        1 => (t as f32 * 1.7 + i as f32).sin(),
                        _ => 0.2,
                    };
                    [s + 0.1 * noise(), 0.5 * noise()]
                })
                .collect();
            examples.push(Example { frames, label });
        }
    }
    let groups = (0..examples.len()).collect();
    Loaded {
        examples,
        groups,
        input_dim: 2,
        kind: FeatureKind::Amplitude,
        stride: 1,
        transforms: 0,
        shape: (1, 2),
        n_classes: 3,
        warnings: Vec::new(),
    }
}

#[test]
fn nested_selection_never_looks_at_the_outer_test_fold() {
    let settings = Settings {
        features: FeatureSpec::default(),
        hyper: Hyper {
            epochs: 2,
            head_dim: 4,
            q_heads: 2,
            batch: 8,
            ..Hyper::default()
        },
        adapt_norm: false,
        tent: 0,
        self_train: 0,
        ensemble: 1,
        decode: Decode::None,
        linear: 0.0,
    };
    let space =
        SearchSpace::parse(&["epochs=1,3".into(), "lr=0.002,0.01".into()], &settings).unwrap();
    let manifest = Manifest {
        path: "toy".into(),
        rows: Vec::new(),
        classes: None,
    };
    let outer = FoldOptions {
        folds: 3,
        seed: 4,
        grouped: false,
    };
    let run = |data: Loaded| {
        let mut cache = FeatureCache::new(&manifest);
        cache.insert(&settings.features, data);
        nested_cv(&mut cache, &settings, &space, outer, 2, 1, |_| {}).unwrap()
    };
    let clean = run(toy(8));
    assert_eq!(clean.len(), 3);
    let n = 24;
    let mut all: Vec<usize> = clean.iter().flat_map(|f| f.test_idx.clone()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "outer folds partition");
    for f in &clean {
        assert_eq!(f.selection.scores.len(), 4);
        assert!(f
            .test_idx
            .iter()
            .all(|i| f.selection.seen.binary_search(i).is_err()));
        assert_eq!(f.selection.seen.len() + f.test_idx.len(), n);
    }
    // Poison fold 0's test examples (same labels, so the same folds): its selection must come
    // out bit for bit the same, while the other folds, which train on them, see the change.
    let mut poisoned = toy(8);
    for &i in &clean[0].test_idx {
        poisoned.examples[i]
            .frames
            .iter_mut()
            .enumerate()
            .for_each(|(k, v)| *v = -40.0 * *v + (k % 5) as f32 * 9.0);
    }
    let dirty = run(poisoned);
    assert_eq!(dirty[0].test_idx, clean[0].test_idx);
    assert_eq!(dirty[0].selection.scores, clean[0].selection.scores);
    assert_eq!(dirty[0].selection.name, clean[0].selection.name);
    assert!(
        (1..3).any(|f| dirty[f].selection.scores != clean[f].selection.scores),
        "the poison must be visible where it is training data"
    );
}

/// Per-recording standardisation: within each group every feature has mean 0 and standard
/// deviation 1 over all its frames (a feature constant in the group becomes 0), and groups are
/// standardised by their own statistics only (a shift of one group changes nothing).
#[test]
fn standardise_by_group_uses_each_groups_own_statistics() {
    let dim = 3;
    let mk = |seed: u32, shift: f32| -> Vec<f32> {
        (0..5 * dim)
            .map(|k| {
                let x = ((k as u32).wrapping_mul(2654435761u32) ^ seed) % 1000;
                if k % dim == 2 {
                    7.0
                } else {
                    x as f32 / 100.0 + shift
                }
            })
            .collect()
    };
    let build = |shift: f32| {
        let mut ex = vec![
            Example {
                frames: mk(1, 0.0),
                label: 0,
            },
            Example {
                frames: mk(2, 0.0),
                label: 1,
            },
            Example {
                frames: mk(3, shift),
                label: 0,
            },
        ];
        standardise_by_group(&mut ex, &[0, 0, 1], dim);
        ex
    };
    let ex = build(0.0);
    for (group, members) in [(0, &ex[..2]), (1, &ex[2..])] {
        for f in 0..dim {
            let v: Vec<f64> = members
                .iter()
                .flat_map(|e| e.frames.chunks_exact(dim).map(move |r| r[f] as f64))
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt();
            assert!(m.abs() < 1e-5, "group {group} feature {f}: mean {m}");
            if f == 2 {
                assert!(v.iter().all(|&x| x == 0.0), "constant feature -> 0");
            } else {
                assert!(
                    (sd - 1.0).abs() < 1e-4,
                    "group {group} feature {f}: sd {sd}"
                );
            }
        }
    }
    let shifted = build(50.0);
    for (a, b) in ex.iter().zip(&shifted) {
        for (x, y) in a.frames.iter().zip(&b.frames) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}

/// Test-time steps (normalisation statistics, information maximisation, self-training) read the
/// session's features only: other labels give the same predictions.
#[test]
fn session_predictions_never_read_the_session_labels() {
    use csipose_pipeline::activity::{fit_ensemble, predict_session};
    let data = toy(8);
    let settings = Settings {
        features: FeatureSpec::default(),
        hyper: Hyper {
            epochs: 4,
            head_dim: 4,
            q_heads: 2,
            batch: 8,
            ..Hyper::default()
        },
        adapt_norm: true,
        tent: 3,
        self_train: 1,
        ensemble: 2,
        decode: Decode::Viterbi,
        linear: 0.0,
    };
    let train_idx: Vec<usize> = (0..data.examples.len()).filter(|i| i % 2 == 0).collect();
    let models = fit_ensemble(&data, &train_idx, &[], &settings).unwrap();
    assert_eq!(models.len(), 2);
    let session: Vec<Example> = (0..data.examples.len())
        .filter(|i| i % 2 == 1)
        .map(|i| Example {
            frames: data.examples[i].frames.iter().map(|v| v + 0.5).collect(),
            label: data.examples[i].label,
        })
        .collect();
    let relabelled: Vec<Example> = session
        .iter()
        .map(|e| Example {
            frames: e.frames.clone(),
            label: (e.label + 1) % 3,
        })
        .collect();
    // Two recordings of the session, interleaved.
    let recordings: Vec<usize> = (0..session.len()).map(|k| k % 2).collect();
    let a = predict_session(&data, &train_idx, &models, &session, &recordings, &settings).unwrap();
    let b = predict_session(
        &data,
        &train_idx,
        &models,
        &relabelled,
        &recordings,
        &settings,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), session.len());
}

/// The transition model reads the training recordings' label order (a run of consecutive
/// examples of one manifest row), and decoding keeps the session's recordings apart.
#[test]
fn sequence_decoding_learns_the_training_order_per_recording() {
    use csipose_pipeline::activity::{decode_recordings, training_transitions};
    let mut data = toy(4);
    // Two training recordings, each 0 0 1 1 2 2 in time order.
    let order = [0usize, 0, 1, 1, 2, 2];
    for (k, e) in data.examples.iter_mut().enumerate() {
        e.label = order[k % 6];
    }
    data.groups = (0..data.examples.len()).map(|k| k / 6).collect();
    let t = training_transitions(&data, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).unwrap();
    let p = |i: usize, j: usize| t.log_next[i * 3 + j].exp();
    // 0 -> 0 and 0 -> 1 twice each, 0 -> 2 never; 2 -> 2 twice, 2 -> 0 never (a new recording
    // starts, not a transition).
    assert!(p(0, 1) > 0.45 && p(0, 2) < 0.05);
    assert!(p(2, 2) > 0.9);
    assert!(t.log_start[0].exp() > 0.9);
    // Two session recordings interleaved; each decodes as a whole: an isolated window reading
    // as class 2 at the start of a recording is repaired by Viterbi.
    let mut probs = Vec::new();
    let mut recordings = Vec::new();
    for k in 0..6 {
        for r in 0..2 {
            let mut q = vec![0.2f32; 3];
            q[order[k]] = 0.6;
            if r == 1 && k == 1 {
                q = vec![0.2, 0.2, 0.6];
            }
            probs.push(q);
            recordings.push(r);
        }
    }
    let none = decode_recordings(&t, &probs, &recordings, Decode::None).unwrap();
    let viterbi = decode_recordings(&t, &probs, &recordings, Decode::Viterbi).unwrap();
    let truth: Vec<usize> = (0..12).map(|k| order[k / 2]).collect();
    assert_ne!(none, truth);
    assert_eq!(viterbi, truth);
}

/// The linear classifier through cross-validation: whole-recording folds with decoding run, and
/// decoding with window-stratified folds (recordings split across folds) is refused.
#[test]
fn linear_classifier_cross_validates_and_decoding_needs_whole_recordings() {
    let mut data = toy(8);
    // 24 examples as 4 recordings of 6 windows, labels in a fixed order per recording.
    let order = [0usize, 0, 1, 1, 2, 2];
    for (k, e) in data.examples.iter_mut().enumerate() {
        e.label = order[k % 6];
    }
    data.groups = (0..24).map(|k| k / 6).collect();
    // The linear classifier reads amplitude blocks: 2 channels as BLOCKS blocks.
    data.input_dim = 2 * BLOCKS;
    for e in &mut data.examples {
        let frames = e.frames.len() / 2;
        e.frames = (0..frames)
            .flat_map(|t| {
                let (a, b) = (e.frames[2 * t], e.frames[2 * t + 1]);
                let mut f = vec![a, b];
                f.extend([a.abs(), b.abs(), 0.0, 0.0]);
                f
            })
            .collect();
    }
    let settings = Settings {
        features: FeatureSpec::default(),
        hyper: Hyper::default(),
        adapt_norm: false,
        tent: 0,
        self_train: 0,
        ensemble: 1,
        decode: Decode::Viterbi,
        linear: 0.1,
    };
    settings.validate().unwrap();
    let all: Vec<usize> = (0..24).collect();
    let grouped = FoldOptions {
        folds: 4,
        seed: 1,
        grouped: true,
    };
    let r = cross_validate(&data, &all, &settings, grouped, 1, |_, _| {}).unwrap();
    assert_eq!(
        r.fold_accuracy.len(),
        4,
        "one score per whole-recording fold"
    );
    assert_eq!(r.predicted.len(), 24);
    assert!(r.fold_accuracy.iter().all(|a| (0.0..=1.0).contains(a)));
    let stratified = FoldOptions {
        grouped: false,
        ..grouped
    };
    let err = cross_validate(&data, &all, &settings, stratified, 1, |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("--grouped"), "{err}");
    let attention_only = Settings {
        adapt_norm: true,
        ..settings
    };
    assert!(attention_only.validate().is_err());
}

/// What a model file stores of `--decode`: the training manifest's transition model and the
/// frames of one window (each recording's first example, which has no context before it);
/// 0 frames when the recordings disagree or hold one example each; nothing for `none`.
#[test]
fn the_stored_decoding_holds_the_training_transitions_and_the_window_length() {
    use csipose_pipeline::activity::{stored_decode, training_transitions, window_frames};
    let mut data = toy(4);
    data.groups = (0..data.examples.len()).map(|k| k / 6).collect();
    // With a context of one window: every example but a recording's first is twice as long.
    for (k, e) in data.examples.iter_mut().enumerate() {
        if k % 6 != 0 {
            let again = e.frames.clone();
            e.frames.extend(again);
        }
    }
    assert_eq!(window_frames(&data), 12);
    let all: Vec<usize> = (0..data.examples.len()).collect();
    let d = stored_decode(&data, &all, Decode::Forward)
        .unwrap()
        .unwrap();
    assert_eq!((d.mode, d.step_frames), (Decode::Forward, 12));
    assert_eq!(d.transitions, training_transitions(&data, &all).unwrap());
    assert!(stored_decode(&data, &all, Decode::None).unwrap().is_none());
    // A recording whose first window is another length: no fixed window length.
    data.examples[6].frames.truncate(2 * 5);
    assert_eq!(window_frames(&data), 0);
    // One example per recording: nothing to step between.
    let single = toy(2);
    assert_eq!(window_frames(&single), 0);
}

/// One value per row (the linear classifier's window statistics): two groups of two rows.
#[test]
fn standardise_by_group_of_single_frame_rows() {
    let mut rows: Vec<Example> = [1.0f32, 3.0, 10.0, 10.0]
        .iter()
        .map(|&v| Example {
            frames: vec![v],
            label: 0,
        })
        .collect();
    standardise_by_group(&mut rows, &[0, 0, 1, 1], 1);
    let got: Vec<f32> = rows.iter().map(|e| e.frames[0]).collect();
    assert_eq!(got, vec![-1.0, 1.0, 0.0, 0.0]);
}
