//! A small synthetic packed dataset with a learnable signal, for tests, benchmarks and
//! trying `csipose train` without the simulator: poses come from three latent factors
//! (body position x, y and an arm raise); each CSI amplitude is a fixed random mixture of the
//! latents per antenna and subcarrier, the same for every packet, plus Gaussian noise.

use csipose_dataset::packed::FrameMeta;
use csipose_dataset::{DatasetInfo, HardwareProfile, KeypointLayout, PackedWriter};
use csipose_model::Rng;
use std::path::Path;

/// Writes `n` frames of shape `[a, s, p]` to `dir` (a new packed dataset). Subjects cycle
/// 1..=10, actions 1..=3, environment 1.
pub fn write(
    dir: &Path,
    n: usize,
    [a, s, p]: [usize; 3],
    noise: f32,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let mix: Vec<f32> = (0..a * s * 3).map(|_| rng.normal() as f32).collect();
    let mut hw = HardwareProfile::mmfi();
    hw.name = "synthetic".into();
    (hw.antennas, hw.subcarriers, hw.packets) = (a, s, p);
    let info = DatasetInfo::new(hw, KeypointLayout::Coco17_2d, "synthetic");
    let mut w = PackedWriter::create(dir, info)?;
    let mut base = Rng::new(99);
    let template: Vec<f32> = (0..34)
        .map(|_| 0.3 * base.uniform() as f32 - 0.15)
        .collect();
    let mut x = vec![0.0f32; a * s * p];
    for i in 0..n {
        let u = [
            rng.uniform() as f32,
            rng.uniform() as f32,
            rng.uniform() as f32,
        ];
        let mut y = vec![0.0f32; 34];
        for j in 0..17 {
            y[2 * j] = 0.3 + 0.4 * u[0] + template[2 * j];
            y[2 * j + 1] = 0.3 + 0.4 * u[1] + template[2 * j + 1];
            if (5..=10).contains(&j) {
                y[2 * j + 1] -= 0.2 * u[2];
            }
        }
        for (k, m) in mix.chunks_exact(3).enumerate() {
            let v = 2.0 + m[0] * u[0] + m[1] * u[1] + m[2] * u[2];
            for t in 0..p {
                x[k * p + t] = v + noise * rng.normal() as f32;
            }
        }
        let meta = FrameMeta {
            environment: 1,
            subject: 1 + (i % 10) as i32,
            action: 1 + (i / 10 % 3) as i32,
            frame: i as i32 + 1,
        };
        w.push(&x, &y, &[meta])?;
    }
    w.finish()?;
    Ok(())
}
