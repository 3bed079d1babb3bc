//! Quantization end to end on small models: the training layout agrees with the `.csm` slots,
//! fake quantisation equals quantize-then-dequantize and is idempotent, the straight-through
//! estimator passes gradients except where weights are clipped, error bounds hold, and
//! encode → parse → dequantise reproduces the dequantised parameters exactly.

use csipose_model::{Model, ModelConfig, Rng, PRESETS};
use csipose_quantize::*;
use csipose_runtime::format::{ModelFile, TensorData};

fn small(name: &str) -> (ModelConfig, Vec<f32>) {
    let cfg = ModelConfig::preset_for(name, 3, 16, 10).unwrap();
    let mut p = Model::new(cfg.clone()).init_params(3);
    // give the weights some structure: rows of very different magnitude, a few outliers
    let mut rng = Rng::new(5);
    for t in cfg.layout().tensors {
        if t.linear {
            let (out, inp) = (t.shape[0], t.shape[1]);
            for o in 0..out {
                let g = (0.2 + 3.0 * rng.uniform()) as f32;
                for i in 0..inp {
                    p[t.offset + o * inp + i] *= g;
                }
            }
            p[t.offset + (out * inp) / 2] *= 6.0;
        } else {
            for v in &mut p[t.offset..t.offset + t.len] {
                *v += 0.1 * rng.normal() as f32;
            }
        }
    }
    (cfg, p)
}

fn all_specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for bits in [Bits::I8, Bits::I4] {
        for per_channel in [false, true] {
            for scale in [ScaleRule::MaxAbs, ScaleRule::Mse] {
                v.push(Spec {
                    bits,
                    per_channel,
                    scale,
                    keep_f32: Vec::new(),
                });
            }
        }
    }
    v
}

#[test]
fn every_preset_maps_onto_the_csm_slots() {
    for name in PRESETS {
        let cfg = ModelConfig::preset(name).unwrap();
        runtime_config(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn fake_quant_equals_dequantize_and_is_idempotent() {
    let (cfg, p) = small("micro");
    for spec in all_specs() {
        let q = quantize(&cfg, &p, &spec).unwrap();
        let deq = q.dequantize();
        let fq = FakeQuant::new(&cfg, &spec);
        let (mut a, mut sa) = (Vec::new(), Vec::new());
        fq.apply(&p, &mut a, &mut sa);
        assert_eq!(a, deq, "{}", spec.label());
        let (mut b, mut sb) = (Vec::new(), Vec::new());
        fq.apply(&a, &mut b, &mut sb);
        assert_eq!(a, b, "{}: not idempotent", spec.label());
        assert_eq!(sa, sb, "{}", spec.label());
        // only Linear weights changed, and every one of them did somewhere
        for t in cfg.layout().tensors {
            let r = t.offset..t.offset + t.len;
            if t.linear {
                assert_ne!(&a[r.clone()], &p[r], "{} {}", spec.label(), t.name);
            } else {
                assert_eq!(&a[r.clone()], &p[r], "{} {}", spec.label(), t.name);
            }
        }
        // the codes are in range
        let lim = if spec.bits == Bits::I8 { 127 } else { 7 };
        for t in &q.tensors {
            assert!(t.codes.iter().all(|c| c.abs() <= lim));
            assert_eq!(t.scales.len(), if spec.per_channel { t.out } else { 1 });
        }
    }
}

#[test]
fn max_abs_error_is_at_most_half_a_step_and_per_channel_helps() {
    let (cfg, p) = small("micro");
    for bits in [Bits::I8, Bits::I4] {
        let mut sq = Vec::new();
        for per_channel in [false, true] {
            let q = quantize(&cfg, &p, &Spec::new(bits, per_channel)).unwrap();
            let d = q.dequantize();
            let layout = cfg.layout();
            let mut e2 = 0.0f64;
            for t in &q.tensors {
                let off = layout.tensors[t.index].offset;
                for o in 0..t.out {
                    let s = t.scales[if per_channel { o } else { 0 }];
                    for i in 0..t.inp {
                        let k = off + o * t.inp + i;
                        let e = (d[k] - p[k]).abs();
                        assert!(e <= 0.5 * s * (1.0 + 1e-5), "{e} > {s}/2");
                        e2 += (e * e) as f64;
                    }
                }
            }
            sq.push(e2);
        }
        assert!(
            sq[1] < sq[0],
            "{bits:?}: per-channel {} ≥ per-tensor {}",
            sq[1],
            sq[0]
        );
    }
}

#[test]
fn mse_scales_never_have_more_error_than_max_abs() {
    let (cfg, p) = small("tiny");
    for bits in [Bits::I8, Bits::I4] {
        for per_channel in [false, true] {
            let err = |scale| {
                let spec = Spec {
                    scale,
                    ..Spec::new(bits, per_channel)
                };
                let d = quantize(&cfg, &p, &spec).unwrap().dequantize();
                d.iter()
                    .zip(&p)
                    .map(|(a, b)| ((a - b) * (a - b)) as f64)
                    .sum::<f64>()
            };
            let (m, s) = (err(ScaleRule::MaxAbs), err(ScaleRule::Mse));
            assert!(s <= m, "{bits:?} {per_channel}: mse {s} > max-abs {m}");
        }
    }
}

#[test]
fn straight_through_passes_gradients_except_where_clipped() {
    let (cfg, p) = small("micro");
    let layout = cfg.layout();
    let g: Vec<f32> = (0..p.len()).map(|i| 1.0 + i as f32).collect();
    // max-abs clips nothing: every gradient passes unchanged
    let fq = FakeQuant::new(&cfg, &Spec::new(Bits::I4, true));
    let (mut q, mut s) = (Vec::new(), Vec::new());
    fq.apply(&p, &mut q, &mut s);
    let mut gm = g.clone();
    fq.straight_through(&p, &s, &mut gm);
    let changed = gm.iter().zip(&g).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 0, "max-abs scales clip nothing");
    // MSE clipping: the outliers planted in `small` are clipped and lose their gradient;
    // the weights inside the range and all non-quantized tensors keep theirs
    let spec = Spec {
        scale: ScaleRule::Mse,
        ..Spec::new(Bits::I4, false)
    };
    let fq = FakeQuant::new(&cfg, &spec);
    fq.apply(&p, &mut q, &mut s);
    let mut gm = g.clone();
    fq.straight_through(&p, &s, &mut gm);
    let (mut zeroed, mut kept) = (0, 0);
    let mut k = 0;
    for t in &layout.tensors {
        let r = t.offset..t.offset + t.len;
        if !t.linear {
            assert!(gm[r.clone()] == g[r], "{}", t.name);
            continue;
        }
        let sc = s[k];
        k += 1;
        for i in r {
            if p[i].abs() > 7.0 * sc + 0.5 * sc {
                assert_eq!(gm[i], 0.0);
                zeroed += 1;
            } else {
                assert_eq!(gm[i], g[i]);
                kept += 1;
            }
        }
    }
    assert_eq!(k, s.len());
    assert!(
        zeroed > 0 && kept > 100 * zeroed,
        "{zeroed} zeroed, {kept} kept"
    );
}

fn parse(bytes: &[u8]) -> csipose_files::AlignedBytes {
    csipose_files::AlignedBytes::copy_from(bytes)
}

#[test]
fn csm_round_trip_is_exact() {
    for name in ["nano", "micro"] {
        let (cfg, p) = small(name);
        let mut specs = all_specs();
        specs.push(Spec::new(Bits::F32, false));
        specs.push(Spec {
            keep_f32: vec!["pool.score.weight".into(), "head.3.weight".into()],
            ..Spec::new(Bits::I4, true)
        });
        let mut sizes = Vec::new();
        for spec in specs {
            let q = quantize(&cfg, &p, &spec).unwrap();
            let deq = q.dequantize();
            let bytes = q.to_csm().unwrap();
            let buf = parse(&bytes);
            let file = ModelFile::parse(buf.bytes()).unwrap();
            assert_eq!(file.name(), name);
            let (cfg2, back) = from_model_file(&file).unwrap();
            assert_eq!(cfg2.layout(), cfg.layout());
            assert_eq!(back, deq, "{name} {}", spec.label());
            if spec.bits == Bits::F32 {
                assert_eq!(back, p);
            }
            // stored orientation: Linear weights [in, out]
            let layout = cfg.layout();
            for (i, ts) in layout.tensors.iter().enumerate() {
                let t = file.tensor(i);
                if ts.linear {
                    let (out, inp) = (ts.shape[0], ts.shape[1]);
                    assert_eq!((t.slot.rows, t.slot.cols), (inp, out));
                    let (o, k) = (out - 1, inp / 2);
                    assert_eq!(t.get(k * out + o), deq[ts.offset + o * inp + k]);
                    let kept = spec.bits == Bits::F32 || spec.keep_f32.contains(&ts.name);
                    assert_eq!(matches!(t.data, TensorData::F32(_)), kept, "{}", ts.name);
                }
            }
            let b = breakdown(&file);
            assert_eq!(
                b.total,
                b.quantized_weights + b.scales + b.f32_tensors + b.header_table_crc + b.padding
            );
            assert_eq!(b.f32_values + b.quantized_values, cfg.param_count());
            assert!(b.padding < 64 * file.tensor_count());
            sizes.push((spec.label(), b.total));
        }
        // fp32 > int8 > int4
        let get = |l: &str| sizes.iter().find(|(s, _)| s == l).unwrap().1;
        assert!(
            get("fp32") > get("int8 per-tensor") && get("int8 per-tensor") > get("int4 per-tensor")
        );
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (cfg, mut p) = small("micro");
    let e = quantize(&cfg, &p[1..], &Spec::new(Bits::I8, false)).unwrap_err();
    assert!(e.to_string().contains("parameters"), "{e}");
    let bad = Spec {
        keep_f32: vec!["head.9.weight".into()],
        ..Spec::new(Bits::I8, false)
    };
    assert!(quantize(&cfg, &p, &bad)
        .unwrap_err()
        .to_string()
        .contains("head.9.weight"));
    let bias = Spec {
        keep_f32: vec!["head.0.bias".into()],
        ..Spec::new(Bits::I8, false)
    };
    assert!(quantize(&cfg, &p, &bias)
        .unwrap_err()
        .to_string()
        .contains("not a Linear weight"));
    let off = cfg.layout().offset("head.0.weight");
    p[off + 3] = f32::NAN;
    let e = quantize(&cfg, &p, &Spec::new(Bits::I4, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("head.0.weight element 3"), "{e}");
    let dir = std::env::temp_dir().join(format!("csipose-quantize-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.csm");
    std::fs::write(
        &f,
        b"CSPX and more bytes than a header needs, quite a few more bytes here..........",
    )
    .unwrap();
    let e = from_csm(&f).unwrap_err().to_string();
    assert!(e.contains("bad.csm") && e.contains("magic"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
