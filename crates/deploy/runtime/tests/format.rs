//! The `.csm` model file: round trips at every precision and a distinct error for each kind
//! of damage (magic, version, length, CRC, truncation, shapes, entries, alignment).

use csipose_files::AlignedBytes;
use csipose_runtime::format::*;

fn micro_like() -> Config {
    Config {
        antennas: 3,
        subcarriers: 6,
        packets: 4,
        d: 8,
        layers: 2,
        heads: 2,
        graph: 5,
    }
}

/// Deterministic test values for every slot, quantized per `bits` (32 = f32).
struct Owned {
    f: Vec<Vec<f32>>,
    q: Vec<Vec<i8>>,
    s: Vec<Vec<f32>>,
}

fn values(cfg: &Config, bits: u32, per_col: bool) -> (Owned, Vec<TensorSlot>) {
    let slots: Vec<TensorSlot> = TensorSlot::all(cfg).collect();
    let mut o = Owned {
        f: vec![],
        q: vec![],
        s: vec![],
    };
    for (i, s) in slots.iter().enumerate() {
        let v: Vec<f32> = (0..s.len())
            .map(|k| ((k * 7 + i * 13) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let qmax = if bits == 8 { 127 } else { 7 };
        let q: Vec<i8> = (0..s.len())
            .map(|k| (((k * 5 + i) % (2 * qmax + 1)) as i32 - qmax as i32) as i8)
            .collect();
        let sc: Vec<f32> = if per_col {
            (0..s.cols).map(|c| 0.01 * (c + 1) as f32).collect()
        } else {
            vec![0.02]
        };
        o.f.push(v);
        o.q.push(q);
        o.s.push(sc);
    }
    (o, slots)
}

fn inputs<'a>(o: &'a Owned, slots: &[TensorSlot], bits: u32) -> Vec<TensorIn<'a>> {
    slots
        .iter()
        .enumerate()
        .map(|(i, s)| match (bits, s.linear) {
            (8, true) => TensorIn::I8 {
                q: &o.q[i],
                scales: &o.s[i],
            },
            (4, true) => TensorIn::I4 {
                q: &o.q[i],
                scales: &o.s[i],
            },
            _ => TensorIn::F32(&o.f[i]),
        })
        .collect()
}

/// Encodes into 4-byte aligned memory.
fn file_bytes(cfg: &Config, t: &[TensorIn]) -> AlignedBytes {
    let n = encoded_len(cfg, t).unwrap();
    let mut buf = AlignedBytes::zeroed(n);
    assert_eq!(encode(cfg, "micro", t, buf.bytes_mut()).unwrap(), n);
    buf
}

#[test]
fn round_trips_f32_int8_int4_per_tensor_and_per_column() {
    for cfg in [
        micro_like(),
        Config {
            graph: 0,
            layers: 1,
            ..micro_like()
        },
    ] {
        for bits in [32, 8, 4] {
            for per_col in [false, true] {
                let (o, slots) = values(&cfg, bits, per_col);
                let t = inputs(&o, &slots, bits);
                let buf = file_bytes(&cfg, &t);
                let bytes = buf.bytes();
                let m = ModelFile::parse(bytes).unwrap();
                assert_eq!(m.config, cfg);
                assert_eq!(m.name(), "micro");
                assert_eq!(m.tensor_count(), slots.len());
                for (i, s) in slots.iter().enumerate() {
                    let v = m.tensor(i);
                    assert_eq!(v.slot, *s);
                    for k in 0..s.len() {
                        let want = match (bits, s.linear) {
                            (32, _) | (_, false) => o.f[i][k],
                            _ => {
                                o.q[i][k] as f32
                                    * if per_col {
                                        o.s[i][k % s.cols]
                                    } else {
                                        o.s[i][0]
                                    }
                            }
                        };
                        assert_eq!(v.get(k), want, "bits {bits} tensor {s} element {k}");
                    }
                }
                let expect = match bits {
                    32 => Dtype::F32,
                    8 => Dtype::I8,
                    _ => Dtype::I4,
                };
                assert_eq!(m.precision(), expect);
            }
        }
    }
}

#[test]
fn int4_is_half_the_bytes_of_int8() {
    let cfg = Config {
        antennas: 3,
        subcarriers: 114,
        packets: 10,
        d: 64,
        layers: 1,
        heads: 2,
        graph: 56,
    };
    let sizes: Vec<usize> = [32, 8, 4]
        .iter()
        .map(|&b| {
            let (o, slots) = values(&cfg, b, false);
            encoded_len(&cfg, &inputs(&o, &slots, b)).unwrap()
        })
        .collect();
    assert!(sizes[1] * 3 < sizes[0], "{sizes:?}");
    assert!(sizes[2] * 10 < sizes[1] * 7, "{sizes:?}");
}

fn corrupt(edit: impl Fn(&mut [u8]), refix_crc: bool) -> FormatError {
    let cfg = micro_like();
    let (o, slots) = values(&cfg, 8, true);
    let t = inputs(&o, &slots, 8);
    let mut buf = file_bytes(&cfg, &t);
    let n = buf.len();
    let b = buf.bytes_mut();
    edit(b);
    if refix_crc {
        let crc = crc32fast::hash(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }
    ModelFile::parse(buf.bytes()).map(|_| ()).unwrap_err()
}

#[test]
fn each_kind_of_damage_has_its_own_error() {
    assert!(matches!(
        corrupt(|b| b[0] = b'X', false),
        FormatError::BadMagic(_)
    ));
    assert!(matches!(
        corrupt(|b| b[4] = 2, true),
        FormatError::BadVersion(2)
    ));
    assert!(matches!(
        corrupt(|b| b[200] ^= 1, false),
        FormatError::BadCrc { .. }
    ));
    assert!(matches!(
        corrupt(|b| b[8] = 0, true),
        FormatError::BadConfig(_)
    ));
    assert!(matches!(
        corrupt(|b| b[20] = 3, true),
        FormatError::BadHeader { offset: 20, .. }
    ));
    assert!(matches!(
        corrupt(|b| b[24] = 18, true),
        FormatError::BadHeader { offset: 24, .. }
    ));
    // A table entry with a wrong shape names the tensor.
    let e = corrupt(|b| b[64 + 4] += 1, true);
    assert!(matches!(e, FormatError::Shape { index: 0, .. }), "{e}");
    assert!(e.to_string().contains("embed.weight"), "{e}");
    // An unknown dtype, a quantized bias, a misplaced payload.
    assert!(matches!(
        corrupt(|b| b[64] = 9, true),
        FormatError::BadEntry { index: 0, .. }
    ));
    let e = corrupt(|b| b[64 + 32] = 1, true);
    assert!(e.to_string().contains("only Linear weights"), "{e}");
    let e = corrupt(|b| b[64 + 12] = b[64 + 12].wrapping_add(4), true);
    assert!(e.to_string().contains("payload offset"), "{e}");
    // Fewer tensors than the config needs.
    assert!(matches!(
        corrupt(|b| b[30] -= 1, true),
        FormatError::TensorCount { .. }
    ));
}

#[test]
fn truncation_length_and_alignment_are_reported() {
    let cfg = micro_like();
    let (o, slots) = values(&cfg, 32, false);
    let t = inputs(&o, &slots, 32);
    let buf = file_bytes(&cfg, &t);
    let (bytes, n) = (buf.bytes(), buf.len());
    for cut in [0, 3, 10, 63, 100, n / 2, n - 1] {
        let e = ModelFile::parse(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(e, FormatError::Truncated { .. } | FormatError::BadMagic(_)),
            "{cut}: {e}"
        );
        if cut >= 4 {
            assert!(matches!(e, FormatError::Truncated { .. }), "{cut}: {e}");
        }
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    // (a Vec<u8> from the allocator is at least 4-aligned on every supported platform)
    assert!(matches!(
        ModelFile::parse(&longer),
        Err(FormatError::BadLength { .. })
    ));
    let mut shifted = vec![0u8; n + 1];
    shifted[1..].copy_from_slice(bytes);
    let off = if (shifted.as_ptr() as usize).is_multiple_of(4) {
        1
    } else {
        0
    };
    if off == 1 {
        assert_eq!(
            ModelFile::parse(&shifted[1..]).unwrap_err(),
            FormatError::Misaligned
        );
    }
}

#[test]
fn writer_refuses_bad_inputs() {
    let cfg = micro_like();
    let (o, slots) = values(&cfg, 8, false);
    let mut t = inputs(&o, &slots, 8);
    t.pop();
    assert!(matches!(
        encoded_len(&cfg, &t),
        Err(FormatError::TensorCount { .. })
    ));
    let mut t = inputs(&o, &slots, 8);
    let bad = vec![8i8; slots[0].len()];
    t[0] = TensorIn::I4 {
        q: &bad,
        scales: &o.s[0],
    };
    assert!(matches!(
        encoded_len(&cfg, &t),
        Err(FormatError::BadInput { index: 0, .. })
    ));
    let mut t = inputs(&o, &slots, 8);
    t[1] = TensorIn::I8 {
        q: &o.q[1],
        scales: &o.s[1],
    };
    assert!(matches!(
        encoded_len(&cfg, &t),
        Err(FormatError::BadInput { index: 1, .. })
    ));
    let t = inputs(&o, &slots, 8);
    let mut small = vec![0u8; 100];
    assert!(matches!(
        encode(&cfg, "x", &t, &mut small),
        Err(FormatError::BufferTooSmall { .. })
    ));
}

#[test]
fn slots_follow_the_training_layout_order_and_counts() {
    // micro: 75,085 parameters in the training layout.
    let cfg = Config {
        antennas: 3,
        subcarriers: 114,
        packets: 10,
        d: 64,
        layers: 1,
        heads: 2,
        graph: 56,
    };
    let total: usize = TensorSlot::all(&cfg).map(|s| s.len()).sum();
    assert_eq!(total, 75_085);
    let flagship = Config {
        d: 256,
        layers: 4,
        heads: 8,
        graph: 96,
        ..cfg
    };
    assert_eq!(
        TensorSlot::all(&flagship).map(|s| s.len()).sum::<usize>(),
        2_320_869
    );
    let nano = Config {
        d: 48,
        layers: 1,
        heads: 2,
        graph: 0,
        ..cfg
    };
    assert_eq!(
        TensorSlot::all(&nano).map(|s| s.len()).sum::<usize>(),
        39_971
    );
    let names: Vec<String> = TensorSlot::all(&cfg).map(|s| s.to_string()).collect();
    assert_eq!(names[3], "encoder.layers.0.self_attn.in_proj_weight");
    assert_eq!(names.last().unwrap(), "graph.output.bias");
}

#[test]
fn parser_never_panics_on_arbitrary_bytes() {
    let cfg = micro_like();
    let (o, slots) = values(&cfg, 4, true);
    let t = inputs(&o, &slots, 4);
    let buf = file_bytes(&cfg, &t);
    let (good, n) = (buf.bytes().to_vec(), buf.len());
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % n;
            b[i] = next() as u8;
        }
        // Re-seal some mutants so they pass the CRC and reach the structural checks.
        if next() % 2 == 0 {
            let crc = crc32fast::hash(&b[..n - 4]);
            b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        }
        let _ = ModelFile::parse(AlignedBytes::copy_from(&b).bytes());
    }
}

/// The header's configuration is checked against the architecture's bounds before any size
/// is derived from it: impossible heads, huge widths and layer counts are `BadConfig` naming
/// the field and its header offset, never a panic.
#[test]
fn out_of_bounds_header_configuration_is_bad_config() {
    let set =
        |at: usize, v: u16| move |b: &mut [u8]| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    for (at, v, field) in [
        (18, 0, "heads"),
        (18, 5, "heads"),
        (14, 65_535, "d"),
        (16, 65_535, "layers"),
        (16, 17, "layers"),
        (22, 5000, "graph"),
        (12, 0, "packets"),
    ] {
        let e = corrupt(set(at, v), true);
        match e {
            FormatError::BadConfig(c) => assert_eq!((c.field, c.value), (field, v as usize)),
            other => panic!("{field} = {v}: {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&format!("offset {at}")), "{msg}");
        assert!(msg.contains(&format!("{field} = {v}")), "{msg}");
    }
    // The writer refuses the same configurations.
    let bad = Config {
        heads: 3,
        ..micro_like()
    };
    assert!(matches!(
        encoded_len(&bad, &[]),
        Err(FormatError::BadConfig(ConfigError { field: "heads", .. }))
    ));
}
