//! The runtime against the training engine: `Runtime::forward` vs `csipose_model::Model::forward`
//! (evaluation mode) on the dequantised weights, for micro (graph head) and nano at f32, int8
//! and int4 over 1,000 random frames (max abs difference ≤ 1e-4, identical torso-PCK@20), and
//! every SIMD path against its portable reference (≤ 1e-5), also on odd shapes that exercise
//! the column tails and odd int4 rows. The int16-activation path (AVX-512 VNNI, and its
//! portable reference) is held to the same engine agreement.

mod support;

use csipose_metrics::{torso_pck, PoseLayout};
use csipose_model::{Model, ModelConfig, Rng, Workspace};
use csipose_runtime::{Kernel, ModelFile, Runtime, OUTPUTS};
use support::*;

/// Runs `n` frames through the runtime with `kernel`.
fn run_runtime(file: &ModelFile, kernel: Kernel, frames: &[f32], n: usize) -> Vec<f32> {
    let cfg = file.config;
    let mut consts = vec![0.0f32; Runtime::consts_len_for_file(file, kernel)];
    let rt = Runtime::new(file, kernel, &mut consts).unwrap();
    let mut scratch = vec![0.0f32; Runtime::scratch_len(&cfg)];
    let mut out = vec![0.0f32; n * OUTPUTS];
    let fl = cfg.frame_len();
    for (i, o) in out.chunks_exact_mut(OUTPUTS).enumerate() {
        let mut kp = [0.0f32; OUTPUTS];
        rt.forward(&frames[i * fl..(i + 1) * fl], &mut scratch, &mut kp)
            .unwrap();
        o.copy_from_slice(&kp);
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// The SIMD kernels this CPU has (empty on a machine without them).
fn simd_kernels() -> Vec<Kernel> {
    Kernel::avx2().into_iter().chain(Kernel::avx512()).collect()
}

/// The default kernel (int16 fixed point where AVX-512 VNNI is present) and the fastest
/// exact-f32 one.
fn engine_agreement(name: &str, bits: u32, per_col: bool) {
    engine_agreement_with(name, bits, per_col, Kernel::best());
    if Kernel::best_exact() != Kernel::best() {
        engine_agreement_with(name, bits, per_col, Kernel::best_exact());
    }
}

fn engine_agreement_with(name: &str, bits: u32, per_col: bool, kernel: Kernel) {
    engine_agreement_n(name, bits, per_col, kernel, 1000);
}

fn engine_agreement_n(name: &str, bits: u32, per_col: bool, kernel: Kernel, n: usize) {
    let cfg = ModelConfig::preset(name).unwrap();
    let model = Model::new(cfg.clone());
    let params = random_params(&model, 11 + bits as u64);
    let (file, deq) = build(&cfg, &params, bits, per_col);
    let mf = ModelFile::parse(file.bytes()).unwrap();
    let frames = random_frames(&cfg, n, 7);
    let mut ws = Workspace::default();
    let reference = model.forward(&deq, &frames, n, None, &mut ws).to_vec();
    let ours = run_runtime(&mf, kernel, &frames, n);
    let diff = max_abs_diff(&reference, &ours);
    assert!(
        diff <= 1e-4,
        "{name} at {bits} bits, {}: max |runtime - engine| = {diff:e}",
        kernel.name()
    );
    // torso-PCK@20 of both against fixed targets near the outputs (so it is neither 0 nor 1).
    let mut rng = Rng::new(99);
    let targets: Vec<f32> = reference
        .iter()
        .map(|&v| v + (0.06 * rng.normal()) as f32)
        .collect();
    let l = PoseLayout::COCO17_2D;
    let a = torso_pck(&reference, &targets, &l, 0.2).pck.unwrap();
    let b = torso_pck(&ours, &targets, &l, 0.2).pck.unwrap();
    assert!(a > 0.02 && a < 0.98, "{name}: PCK {a} is not informative");
    assert_eq!(
        a, b,
        "{name} at {bits} bits: torso-PCK@20 engine {a} vs runtime {b}"
    );
    eprintln!(
        "{name} {bits} bits, {}: max diff {diff:.2e}, torso-PCK@20 {a:.4} both",
        kernel.name()
    );
}

#[test]
fn micro_f32_matches_engine() {
    engine_agreement("micro", 32, false);
}
#[test]
fn micro_int8_matches_engine() {
    engine_agreement("micro", 8, false);
}
#[test]
fn micro_int4_matches_engine() {
    engine_agreement("micro", 4, true);
}
#[test]
fn nano_f32_matches_engine() {
    engine_agreement("nano", 32, false);
}
#[test]
fn nano_int8_matches_engine() {
    engine_agreement("nano", 8, true);
}
#[test]
fn nano_int4_matches_engine() {
    engine_agreement("nano", 4, false);
}

/// The int16-activation path (VNNI where available, else its portable reference).
fn int16_kernel() -> Kernel {
    Kernel::avx512_vnni16().unwrap_or(Kernel::portable_int16())
}

#[test]
fn micro_f32_int16_matches_engine() {
    engine_agreement_with("micro", 32, false, int16_kernel());
}
#[test]
fn nano_f32_int16_matches_engine() {
    engine_agreement_with("nano", 32, false, int16_kernel());
}
/// The flagship at fp32 on the default kernel and the int16 path (which leaves f32 weights
/// on the f32 kernels); 50 frames (the engine's forward of the flagship is slow in debug
/// builds).
#[test]
fn flagship_f32_matches_engine() {
    engine_agreement_n("flagship", 32, false, Kernel::best(), 50);
    engine_agreement_n("flagship", 32, false, Kernel::best_exact(), 50);
    engine_agreement_n("flagship", 32, false, int16_kernel(), 50);
}

#[test]
fn micro_int8_int16_activations_match_engine() {
    engine_agreement_with("micro", 8, false, int16_kernel());
}
#[test]
fn micro_int4_int16_activations_match_engine() {
    engine_agreement_with("micro", 4, true, int16_kernel());
}
#[test]
fn nano_int8_int16_activations_match_engine() {
    engine_agreement_with("nano", 8, true, int16_kernel());
}
#[test]
fn nano_int4_int16_activations_match_engine() {
    engine_agreement_with("nano", 4, false, int16_kernel());
}

/// (fast path, its reference) pairs available on this CPU; prints `SKIPPED` for each path
/// this CPU lacks (its comparison does not run here).
fn pairs(test: &str) -> Vec<(Kernel, Kernel)> {
    let mut v: Vec<(Kernel, Kernel)> = simd_kernels()
        .into_iter()
        .map(|k| (k, Kernel::portable()))
        .collect();
    if let Some(k) = Kernel::avx512_vnni16() {
        v.push((k, Kernel::portable_int16()));
    }
    for (path, have) in [
        ("avx2+fma vs portable", Kernel::avx2().is_some()),
        ("avx512 vs portable", Kernel::avx512().is_some()),
        (
            "avx512-vnni-int16 vs portable-int16",
            Kernel::avx512_vnni16().is_some(),
        ),
    ] {
        if !have {
            eprintln!("SKIPPED: {test}: {path} (this CPU lacks the instruction set)");
        }
    }
    v
}

/// Odd shapes: column counts that are not multiples of 8 or 16, an odd graph width (int4 rows
/// that start mid-byte), 3 heads, few tokens; and the tiny preset (g = 57).
fn odd_configs() -> Vec<ModelConfig> {
    let mut a = ModelConfig::preset_for("micro", 2, 7, 5).unwrap();
    a.d = 24;
    a.heads = 3;
    a.graph = Some(13);
    a.layers = 2;
    let mut b = ModelConfig::preset_for("nano", 1, 5, 3).unwrap();
    b.d = 10;
    b.heads = 2;
    let tiny = ModelConfig::preset_for("tiny", 3, 30, 10).unwrap();
    vec![a, b, tiny]
}

#[test]
fn odd_shapes_match_engine_and_portable() {
    let fast = pairs("odd_shapes_match_engine_and_portable");
    for cfg in odd_configs() {
        let model = Model::new(cfg.clone());
        let params = random_params(&model, 5);
        for (bits, per_col) in [(32, false), (8, true), (4, false), (4, true)] {
            let (file, deq) = build(&cfg, &params, bits, per_col);
            let mf = ModelFile::parse(file.bytes()).unwrap();
            let n = 50;
            let frames = random_frames(&cfg, n, 3);
            let mut ws = Workspace::default();
            let reference = model.forward(&deq, &frames, n, None, &mut ws).to_vec();
            for reference_kernel in [Kernel::portable(), Kernel::portable_int16()] {
                let portable = run_runtime(&mf, reference_kernel, &frames, n);
                let diff = max_abs_diff(&reference, &portable);
                assert!(
                    diff <= 1e-4,
                    "d={} bits={bits}: {} vs engine {diff:e}",
                    cfg.d,
                    reference_kernel.name()
                );
            }
            for &(k, r) in &fast {
                let simd = run_runtime(&mf, k, &frames, n);
                let portable = run_runtime(&mf, r, &frames, n);
                let diff = max_abs_diff(&simd, &portable);
                assert!(
                    diff <= 1e-5,
                    "d={} bits={bits}: {} vs {} {diff:e}",
                    cfg.d,
                    k.name(),
                    r.name()
                );
            }
        }
    }
}

#[test]
fn simd_paths_match_portable() {
    let fast = pairs("simd_paths_match_portable");
    for name in ["nano", "micro"] {
        let cfg = ModelConfig::preset(name).unwrap();
        let model = Model::new(cfg.clone());
        let params = random_params(&model, 21);
        for (bits, per_col) in [(32, false), (8, false), (8, true), (4, false), (4, true)] {
            let (file, _) = build(&cfg, &params, bits, per_col);
            let mf = ModelFile::parse(file.bytes()).unwrap();
            let n = 200;
            let frames = random_frames(&cfg, n, 17);
            for &(k, r) in &fast {
                let simd = run_runtime(&mf, k, &frames, n);
                let portable = run_runtime(&mf, r, &frames, n);
                let diff = max_abs_diff(&simd, &portable);
                assert!(
                    diff <= 1e-5,
                    "{name} {bits} bits: {} vs {} {diff:e}",
                    k.name(),
                    r.name()
                );
            }
        }
    }
}

/// The VNNI int16 path computes exactly its portable reference's values (same int16 codes,
/// exact int32 sums, the same f32 operations in the same order elsewhere), on the presets and
/// the odd shapes.
#[test]
fn vnni16_equals_portable_int16_bit_for_bit() {
    let Some(vnni) = Kernel::avx512_vnni16() else {
        eprintln!(
            "SKIPPED: vnni16_equals_portable_int16_bit_for_bit: this CPU lacks AVX-512 VNNI \
             (the int16 VNNI path is not checked here)"
        );
        return;
    };
    let mut cfgs = odd_configs();
    cfgs.push(ModelConfig::preset("micro").unwrap());
    cfgs.push(ModelConfig::preset("nano").unwrap());
    // 1 packet, and more than 16 (the generic attention and pooling, two embedding blocks).
    cfgs.push(ModelConfig::preset_for("micro", 1, 9, 1).unwrap());
    cfgs.push(ModelConfig::preset_for("nano", 2, 5, 20).unwrap());
    // The AVX-512 attention's softmax sums across key vectors in `sum8`'s order: exactly one
    // and two chunks of 8 keys, and a tail after one chunk.
    cfgs.push(ModelConfig::preset_for("nano", 1, 6, 8).unwrap());
    cfgs.push(ModelConfig::preset_for("nano", 2, 5, 16).unwrap());
    cfgs.push(ModelConfig::preset_for("micro", 1, 9, 13).unwrap());
    for cfg in cfgs {
        let model = Model::new(cfg.clone());
        let params = random_params(&model, 23);
        for (bits, per_col) in [(8, false), (8, true), (4, true)] {
            let (file, _) = build(&cfg, &params, bits, per_col);
            let mf = ModelFile::parse(file.bytes()).unwrap();
            let frames = random_frames(&cfg, 30, 4);
            let a = run_runtime(&mf, vnni, &frames, 30);
            let b = run_runtime(&mf, Kernel::portable_int16(), &frames, 30);
            let same = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.to_bits() == y.to_bits())
                .count();
            assert_eq!(
                same,
                a.len(),
                "d={} {bits} bits: {} of {} outputs differ, max {:e}",
                cfg.d,
                a.len() - same,
                a.len(),
                max_abs_diff(&a, &b)
            );
        }
    }
}

#[test]
fn bad_input_and_buffers_are_errors() {
    use csipose_runtime::RuntimeError;
    let cfg = ModelConfig::preset("micro").unwrap();
    let model = Model::new(cfg.clone());
    let params = random_params(&model, 1);
    let (file, _) = build(&cfg, &params, 8, false);
    let mf = ModelFile::parse(file.bytes()).unwrap();
    let rc = mf.config;
    for k in [Kernel::portable(), Kernel::portable_int16(), Kernel::best()] {
        let mut small = vec![0.0f32; Runtime::consts_len_for_file(&mf, k) - 1];
        assert!(matches!(
            Runtime::new(&mf, k, &mut small),
            Err(RuntimeError::Consts { .. })
        ));
    }
    assert!(Runtime::consts_len(&rc) >= Runtime::consts_len_for(&rc, Kernel::portable_int16()));
    let mut consts = vec![0.0f32; Runtime::consts_len(&rc)];
    let rt = Runtime::new(&mf, Kernel::best(), &mut consts).unwrap();
    let mut out = [0.0f32; OUTPUTS];
    let mut scratch = vec![0.0f32; Runtime::scratch_len(&rc)];
    let x = vec![1.0f32; rc.frame_len()];
    assert_eq!(
        rt.forward(&x[1..], &mut scratch, &mut out),
        Err(RuntimeError::InputLength {
            expected: rc.frame_len(),
            got: rc.frame_len() - 1
        })
    );
    let n = scratch.len();
    assert!(matches!(
        rt.forward(&x, &mut scratch[..n - 1], &mut out),
        Err(RuntimeError::Scratch { .. })
    ));
    rt.forward(&x, &mut scratch, &mut out).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

/// The constants buffer sized for the file (`consts_len_for_file`) is never larger than the
/// config's bound, is enough (one float less is refused), and gives bit for bit the outputs
/// of the bound-sized buffer, at every precision on every kernel this CPU has.
#[test]
fn consts_sized_for_the_file() {
    use csipose_runtime::RuntimeError;
    for name in ["nano", "micro"] {
        let cfg = ModelConfig::preset(name).unwrap();
        let model = Model::new(cfg.clone());
        let params = random_params(&model, 3);
        let mut rng = Rng::new(11);
        for bits in [32, 8, 4] {
            let (file, _) = build(&cfg, &params, bits, false);
            let mf = ModelFile::parse(file.bytes()).unwrap();
            let rc = mf.config;
            let frames: Vec<f32> = (0..3 * rc.frame_len())
                .map(|_| rng.normal() as f32)
                .collect();
            let kernels = [Kernel::portable(), Kernel::portable_int16(), Kernel::best()];
            for k in kernels.into_iter().chain(simd_kernels()) {
                let exact = Runtime::consts_len_for_file(&mf, k);
                let bound = Runtime::consts_len_for(&rc, k);
                assert!(
                    exact <= bound,
                    "{name} {bits} bits {k:?}: {exact} > {bound}"
                );
                let mut small = vec![0.0f32; exact - 1];
                assert!(
                    matches!(
                        Runtime::new(&mf, k, &mut small),
                        Err(RuntimeError::Consts { .. })
                    ),
                    "{name} {bits} bits {k:?}"
                );
                let got = run_runtime(&mf, k, &frames, 3);
                let mut consts = vec![0.0f32; bound];
                let rt = Runtime::new(&mf, k, &mut consts).unwrap();
                let mut scratch = vec![0.0f32; Runtime::scratch_len(&rc)];
                for (i, want) in got.chunks_exact(OUTPUTS).enumerate() {
                    let mut kp = [0.0f32; OUTPUTS];
                    rt.forward(
                        &frames[i * rc.frame_len()..(i + 1) * rc.frame_len()],
                        &mut scratch,
                        &mut kp,
                    )
                    .unwrap();
                    assert_eq!(
                        kp.map(f32::to_bits),
                        <[f32; OUTPUTS]>::try_from(want).unwrap().map(f32::to_bits)
                    );
                }
            }
        }
    }
}
