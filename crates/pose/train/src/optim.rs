//! The optimiser the pose trainer uses — the project's one AdamW and cosine schedule
//! ([`csipose_optim`], with the pose model's decay rule [`decays`]) — plus what is the pose
//! trainer's own: the exponential moving average (EMA) of the weights that evaluation uses, and
//! the SmoothL1 loss.

pub use csipose_model::config::decays;
pub use csipose_optim::{AdamW, Schedule};
use rayon::prelude::*;

/// EMA update `e ← δ e + (1-δ) p` with `δ = min(decay, (1 + t) / (10 + t))` so the average
/// follows the weights closely early in training.
pub fn ema_update(ema: &mut [f32], params: &[f32], decay: f32, step: u64) {
    let warm = (1.0 + step as f32) / (10.0 + step as f32);
    let d = decay.min(warm);
    ema.par_chunks_mut(1 << 14)
        .zip(params.par_chunks(1 << 14))
        .for_each(|(es, ps)| {
            csipose_model::layers::wide(|| {
                for (e, p) in es.iter_mut().zip(ps) {
                    *e = d * *e + (1.0 - d) * p;
                }
            })
        });
}

/// SmoothL1 (Huber with `beta`), mean over all values; writes `∂loss/∂pred` into `grad`.
pub fn smooth_l1(pred: &[f32], target: &[f32], beta: f32, grad: &mut [f32]) -> f32 {
    (smooth_l1_sum(pred, target, beta, pred.len() as f32, grad) / pred.len() as f64) as f32
}

/// SmoothL1 summed over this part of a batch whose mean is over `n` values in all:
/// returns the sum and writes `∂(mean loss)/∂pred` into `grad`.
pub fn smooth_l1_sum(pred: &[f32], target: &[f32], beta: f32, n: f32, grad: &mut [f32]) -> f64 {
    let mut loss = 0.0f64;
    for ((p, t), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
        let d = p - t;
        if d.abs() < beta {
            loss += (0.5 * d * d / beta) as f64;
            *g = d / beta / n;
        } else {
            loss += (d.abs() - 0.5 * beta) as f64;
            *g = d.signum() / n;
        }
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use csipose_model::ModelConfig;

    #[test]
    fn adamw_first_step_moves_by_lr_and_decays_weights_only() {
        let cfg = ModelConfig::preset_for("nano", 1, 2, 2).unwrap();
        let layout = cfg.layout();
        let mut opt = AdamW::new(&layout, 0.1);
        let mut p = vec![1.0f32; layout.total];
        let g = vec![0.5f32; layout.total];
        opt.step(&mut p, &g, 0.01);
        let w = layout.get("embed.weight").unwrap();
        let b = layout.get("embed.bias").unwrap();
        // bias: 1 - lr·sign(g) ; weight additionally decays by lr·wd·p
        assert!((p[b.offset] - 0.99).abs() < 1e-6);
        assert!((p[w.offset] - (1.0 - 0.001 - 0.01)).abs() < 1e-6);
        assert!(!decays("pool.score.weight", &[1, 4]) && decays("head.0.weight", &[4, 4]));
    }

    #[test]
    fn smooth_l1_values_and_gradient() {
        let mut g = [0.0; 2];
        let l = smooth_l1(&[0.05, 1.0], &[0.0, 0.0], 0.1, &mut g);
        // 0.5·0.0025/0.1 = 0.0125 ; 1 - 0.05 = 0.95 ; mean 0.48125
        assert!((l - 0.48125).abs() < 1e-6);
        assert!((g[0] - 0.25).abs() < 1e-6 && (g[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn ema_tracks_early_and_smooths_late() {
        let mut e = vec![0.0f32];
        ema_update(&mut e, &[1.0], 0.999, 0);
        assert!((e[0] - 0.9).abs() < 1e-6); // δ = 0.1 at step 0
        let mut e = vec![0.0f32];
        ema_update(&mut e, &[1.0], 0.99, 1_000_000);
        assert!((e[0] - 0.01).abs() < 1e-6);
    }
}
