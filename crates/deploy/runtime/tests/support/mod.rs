//! Test support: builds `.csm` files from the engine's flat parameters (f32, or quantized
//! with a trivial symmetric max-abs quantizer, per tensor or per output column) and returns
//! the dequantised parameters the engine's forward is compared with.
#![allow(dead_code)]

use csipose_model::{Model, ModelConfig, Rng};
use csipose_runtime::format::{encode, encoded_len, TensorIn, TensorSlot};

/// A model file in 4-byte aligned memory.
pub type File = csipose_files::AlignedBytes;

/// Random engine parameters: the engine's init plus noise on every tensor (so norms, biases
/// and embeddings are not at their trivial init values).
pub fn random_params(model: &Model, seed: u64) -> Vec<f32> {
    let mut p = model.init_params(seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    for v in p.iter_mut() {
        *v += 0.05 * rng.normal() as f32;
    }
    p
}

/// Encodes `params` at `bits` (32, 8 or 4; per output column or per tensor) and returns the
/// file and the parameters as the file holds them (dequantised, engine layout).
pub fn build(cfg: &ModelConfig, params: &[f32], bits: u32, per_col: bool) -> (File, Vec<f32>) {
    let rc = cfg.arch();
    let layout = cfg.layout();
    let mut deq = params.to_vec();
    let mut stored: Vec<Vec<f32>> = vec![];
    let mut codes: Vec<Vec<i8>> = vec![];
    let mut scales: Vec<Vec<f32>> = vec![];
    let slots: Vec<TensorSlot> = TensorSlot::all(&rc).collect();
    assert_eq!(slots.len(), layout.tensors.len());
    for (t, s) in layout.tensors.iter().zip(&slots) {
        let src = &params[t.offset..t.offset + t.len];
        assert_eq!(src.len(), s.len(), "{}", t.name);
        if !s.linear {
            stored.push(src.to_vec());
            codes.push(vec![]);
            scales.push(vec![]);
            continue;
        }
        // engine [out, in] -> stored [in, out]
        let (inp, out) = (s.rows, s.cols);
        let mut w = vec![0.0f32; inp * out];
        for o in 0..out {
            for i in 0..inp {
                w[i * out + o] = src[o * inp + i];
            }
        }
        if bits == 32 {
            stored.push(w);
            codes.push(vec![]);
            scales.push(vec![]);
            continue;
        }
        let qmax = if bits == 8 { 127.0 } else { 7.0 };
        let sc: Vec<f32> = if per_col {
            (0..out)
                .map(|c| {
                    (0..inp)
                        .map(|i| w[i * out + c].abs())
                        .fold(0.0f32, f32::max)
                        / qmax
                })
                .collect()
        } else {
            vec![w.iter().map(|v| v.abs()).fold(0.0f32, f32::max) / qmax]
        };
        let scale = |c: usize| if sc.len() == 1 { sc[0] } else { sc[c] };
        let mut q = vec![0i8; inp * out];
        for i in 0..inp {
            for c in 0..out {
                let s = scale(c);
                let v = if s > 0.0 {
                    (w[i * out + c] / s).round().clamp(-qmax, qmax)
                } else {
                    0.0
                };
                q[i * out + c] = v as i8;
                deq[t.offset + c * inp + i] = v * s;
            }
        }
        stored.push(vec![]);
        codes.push(q);
        scales.push(sc);
    }
    let ins: Vec<TensorIn> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if !s.linear || bits == 32 {
                TensorIn::F32(&stored[i])
            } else if bits == 8 {
                TensorIn::I8 {
                    q: &codes[i],
                    scales: &scales[i],
                }
            } else {
                TensorIn::I4 {
                    q: &codes[i],
                    scales: &scales[i],
                }
            }
        })
        .collect();
    let len = encoded_len(&rc, &ins).unwrap();
    let mut file = File::zeroed(len);
    encode(&rc, &cfg.name, &ins, file.bytes_mut()).unwrap();
    (file, deq)
}

/// `n` random raw frames `[A, S, P]` with a non-zero mean (so standardisation matters).
pub fn random_frames(cfg: &ModelConfig, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n * cfg.frame_len())
        .map(|_| (3.0 + 1.5 * rng.normal()) as f32)
        .collect()
}
