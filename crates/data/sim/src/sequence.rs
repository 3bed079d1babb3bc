//! One simulated sequence (environment, subject, action): subject and placement, the motion
//! sampled at every packet time, the channel with receiver impairments, the MM-Fi
//! preprocessing, and the labels (3D joints in the camera frame, COCO-17 pixels).

use crate::body::{scatter_points, shadow_points, Anthropometry, Skeleton};
use crate::channel::StaticChannel;
use crate::geom::V3;
use crate::motion::Motion;
use crate::profile::{Profile, Radio};
use crate::rng::Rng;
use crate::room::Environment;
use csipose_dataset::preprocess::{preprocess_frame, Repair};

/// MM-Fi's frame rate.
pub const FRAME_RATE: f64 = 10.0;

/// Everything that shapes a simulated dataset apart from its size.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    pub profile: Profile,
    /// Signal-to-noise ratio of the receiver noise against the mean static channel power.
    pub snr_db: f64,
    /// Standard deviation of the per-packet automatic-gain-control error, dB.
    pub agc_jitter_db: f64,
    /// Probability that one (packet, antenna, subcarrier) value is lost (written as inf).
    pub subcarrier_dropout: f64,
    /// Probability that a whole packet is lost (all its values inf).
    pub packet_dropout: f64,
    /// Quantise I and Q to 8-bit integers (as commodity NICs report CSI).
    pub quantize: bool,
    /// Keep the raw amplitude and phase (for the MM-Fi-layout tree).
    pub keep_raw: bool,
    /// How far (metres, uniform ±) a subject's standing spot varies around the
    /// environment's marked spot, per sequence and axis.
    pub position_jitter_m: f64,
    /// How far (radians, uniform ±) the heading varies around facing the camera.
    pub heading_jitter_rad: f64,
    /// Scale of the body's radar cross-sections (1 = the values in `body`).
    pub body_rcs_scale: f64,
    /// Put the subject in the room; `false` simulates the empty room (labels are still
    /// those of the subject that would be there).
    pub body: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            profile: Profile::Mmfi,
            snr_db: 25.0,
            agc_jitter_db: 0.5,
            subcarrier_dropout: 0.002,
            packet_dropout: 0.005,
            quantize: true,
            keep_raw: false,
            position_jitter_m: 0.1,
            heading_jitter_rad: 0.3,
            body_rcs_scale: 1.0,
            body: true,
        }
    }
}

/// Which sequence to simulate; `subject` is MM-Fi's subject number (1..=40).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceSpec {
    pub env: u32,
    pub subject: u32,
    pub action: u32,
    pub frames: usize,
}

/// The result of one sequence, frames in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequence {
    /// Preprocessed amplitude, frames × [A, S, P].
    pub x: Vec<f32>,
    /// COCO-17 keypoints in pixels (640×480), frames × [17, 2].
    pub pixels: Vec<f64>,
    /// COCO-17 keypoints normalised by the image size, frames × [17, 2].
    pub y2d: Vec<f32>,
    /// Human3.6M-order 3D joints in the camera frame (metres), frames × [17, 3].
    pub y3d: Vec<f64>,
    /// Raw amplitude |H| with dropouts as inf, frames × [A, S, P] (only with `keep_raw`).
    pub raw_amp: Vec<f64>,
    /// Raw phase, frames × [A, S, P] (only with `keep_raw`).
    pub raw_phase: Vec<f64>,
    /// Frames whose preprocessing needed a repair (a fully dropped packet).
    pub repaired_frames: usize,
    /// The subject's height, for provenance and tests.
    pub height: f64,
}

/// Subject-level parameters shared by all of a subject's sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub body: Anthropometry,
    /// Tempo factor (repetitions per nominal repetition).
    pub speed: f64,
    /// Range-of-motion factor.
    pub style: f64,
}

impl Subject {
    pub fn new(seed: u64, subject: u32) -> Subject {
        let mut rng = Rng::stream(seed, "subject", &[subject as u64]);
        Subject {
            body: Anthropometry::sample(&mut rng),
            speed: rng.range(0.8, 1.25),
            style: rng.range(0.85, 1.1),
        }
    }
}

/// A simulator for one configuration: the four environments' static channels, precomputed.
pub struct Simulator {
    pub config: SimConfig,
    pub radio: Radio,
    envs: Vec<Environment>,
    channels: Vec<StaticChannel>,
    /// Per antenna, the receive chain's amplitude ripple over the subcarrier grid (±1–2 dB,
    /// three slow sinusoids). It belongs to the receiver, the same NIC in every room.
    ripple: Vec<Vec<f32>>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        let radio = config.profile.radio();
        let envs: Vec<Environment> = (1..=crate::room::ENVIRONMENTS)
            .map(Environment::get)
            .collect();
        let channels: Vec<StaticChannel> =
            envs.iter().map(|e| StaticChannel::new(e, &radio)).collect();
        let grid = channels[0].grid;
        let ripple = (0..radio.hardware.antennas)
            .map(|a| {
                let mut rng = Rng::stream(0xE0E0, "ripple", &[a as u64]);
                let waves: Vec<(f64, f64, f64)> = (0..3)
                    .map(|_| {
                        (
                            rng.range(0.3, 0.9),
                            rng.range(20.0, 120.0),
                            rng.range(0.0, std::f64::consts::TAU),
                        )
                    })
                    .collect();
                (0..grid)
                    .map(|k| {
                        let db: f64 = waves
                            .iter()
                            .map(|(amp, period, ph)| {
                                amp * (std::f64::consts::TAU * k as f64 / period + ph).sin()
                            })
                            .sum();
                        10f64.powf(db / 20.0) as f32
                    })
                    .collect()
            })
            .collect();
        Simulator {
            config,
            radio,
            envs,
            channels,
            ripple,
        }
    }

    pub fn environment(&self, env: u32) -> &Environment {
        &self.envs[env as usize - 1]
    }

    pub fn channel(&self, env: u32) -> &StaticChannel {
        &self.channels[env as usize - 1]
    }

    /// Simulates one sequence. Depends only on the configuration and `spec`.
    pub fn sequence(&self, spec: SequenceSpec) -> Sequence {
        let cfg = &self.config;
        let env = self.environment(spec.env);
        let ch = self.channel(spec.env);
        let ripple = &self.ripple;
        let subject = Subject::new(cfg.seed, spec.subject);
        let ids = [spec.env as u64, spec.subject as u64, spec.action as u64];
        let mut rng = Rng::stream(cfg.seed, "sequence", &ids);
        let (pj, hj) = (cfg.position_jitter_m, cfg.heading_jitter_rad);
        let base = V3::new(
            env.area_center.x + rng.range(-pj, pj),
            env.area_center.y + rng.range(-pj, pj),
            0.0,
        );
        let heading = env.facing + rng.range(-hj, hj);
        let duration = spec.frames as f64 / FRAME_RATE;
        let motion = Motion::sample(
            spec.action,
            duration + 1.0,
            subject.speed,
            subject.style,
            &mut rng,
        );
        let mut noise = Rng::stream(cfg.seed, "noise", &ids);

        let (na, ns, np) = (
            self.radio.hardware.antennas,
            self.radio.hardware.subcarriers,
            self.radio.hardware.packets,
        );
        let fl = na * ns * np;
        let grid_start = self.radio.grid_start();
        let sub_grid: Vec<usize> = self
            .radio
            .subcarrier_index
            .iter()
            .map(|&i| (i - grid_start) as usize)
            .collect();
        let dt = self.radio.packet_interval_s;
        let rms = ch.static_power.sqrt();
        let noise_sd = (rms * rms / 10f64.powf(cfg.snr_db / 10.0) / 2.0).sqrt() as f32;
        // 8-bit I/Q: the static channel's RMS amplitude maps to 40 counts.
        let q_scale = (40.0 / rms) as f32;

        let mut out = Sequence {
            x: Vec::with_capacity(spec.frames * fl),
            pixels: Vec::with_capacity(spec.frames * 34),
            y2d: Vec::with_capacity(spec.frames * 34),
            y3d: Vec::with_capacity(spec.frames * 51),
            height: subject.body.height,
            ..Sequence::default()
        };
        if cfg.keep_raw {
            out.raw_amp.reserve(spec.frames * fl);
            out.raw_phase.reserve(spec.frames * fl);
        }
        let mut scatter = Vec::new();
        let mut shadow = Vec::new();
        let mut att = Vec::new();
        let (mut re, mut im) = (vec![0f32; ch.grid], vec![0f32; ch.grid]);
        let (mut rot_re, mut rot_im) = (vec![0f32; ch.grid], vec![0f32; ch.grid]);
        let mut amp = vec![0f64; fl];
        let mut phase = vec![0f64; fl];
        for f in 0..spec.frames {
            let t_frame = f as f64 / FRAME_RATE;
            // Labels at the middle of the frame's packets.
            let t_label = t_frame + 0.5 * (np as f64 - 1.0) * dt;
            let sk = Skeleton::pose(&subject.body, &motion.angles(t_label), base, heading);
            for p in sk.coco17() {
                let (u, v) = env.camera.project(p);
                out.pixels.extend_from_slice(&[u, v]);
                out.y2d.extend_from_slice(&[
                    (u / env.camera.width) as f32,
                    (v / env.camera.height) as f32,
                ]);
            }
            for p in sk.joints {
                let c = env.camera.to_camera(p);
                out.y3d.extend_from_slice(&[c.x, c.y, c.z]);
            }
            let mut dropped_packets = 0;
            for pk in 0..np {
                let t = t_frame + pk as f64 * dt;
                let sk = Skeleton::pose(&subject.body, &motion.angles(t), base, heading);
                scatter_points(&sk, &subject.body, &mut scatter);
                if cfg.body_rcs_scale != 1.0 {
                    let k = cfg.body_rcs_scale.sqrt();
                    scatter.iter_mut().for_each(|p| p.1 *= k);
                }
                shadow_points(&sk, &subject.body, &mut shadow);
                if !cfg.body {
                    scatter.clear();
                    shadow.clear();
                }
                let agc = 10f64.powf(noise.normal() * cfg.agc_jitter_db / 20.0) as f32;
                // Carrier phase offset and timing offset (a phase slope) of this packet:
                // they leave the amplitude alone but make the raw phase look like a NIC's.
                let cpo = noise.range(0.0, std::f64::consts::TAU);
                let sto = noise.range(-0.15, 0.15);
                let lost = dropped_packets + 1 < np && noise.uniform() < cfg.packet_dropout;
                if lost {
                    dropped_packets += 1;
                }
                // exp(j(cpo + sto·k)) on the grid, by recurrence.
                let (s0, c0) = cpo.sin_cos();
                let (ss, cs) = sto.sin_cos();
                let (mut r, mut i) = (c0, s0);
                for k in 0..ch.grid {
                    rot_re[k] = r as f32;
                    rot_im[k] = i as f32;
                    (r, i) = (r * cs - i * ss, r * ss + i * cs);
                }
                for (a, rip) in ripple.iter().enumerate().take(na) {
                    ch.packet(a, &scatter, &shadow, &mut att, &mut re, &mut im);
                    for (s, &k) in sub_grid.iter().enumerate() {
                        let idx = (a * ns + s) * np + pk;
                        if lost || noise.uniform() < cfg.subcarrier_dropout {
                            amp[idx] = f64::INFINITY;
                            phase[idx] = 0.0;
                            // Keep the noise stream aligned whether or not a value is lost.
                            noise.next_u64();
                            noise.next_u64();
                            continue;
                        }
                        let g = agc * rip[k];
                        let mut hr = g * re[k] + noise_sd * noise.fast_normal_f32();
                        let mut hi = g * im[k] + noise_sd * noise.fast_normal_f32();
                        let (cs, sn) = (rot_re[k], rot_im[k]);
                        (hr, hi) = (hr * cs - hi * sn, hr * sn + hi * cs);
                        if cfg.quantize {
                            hr = (hr * q_scale).round().clamp(-128.0, 127.0);
                            hi = (hi * q_scale).round().clamp(-128.0, 127.0);
                        }
                        amp[idx] = (hr as f64).hypot(hi as f64);
                        if cfg.keep_raw {
                            phase[idx] = (hi as f64).atan2(hr as f64);
                        }
                    }
                }
            }
            if cfg.keep_raw {
                out.raw_amp.extend_from_slice(&amp);
                out.raw_phase.extend_from_slice(&phase);
            }
            match preprocess_frame(&mut amp, na, ns, np) {
                Ok(rep) => {
                    if rep.repairs.contains(&Repair::EmptyPacket) {
                        out.repaired_frames += 1;
                    }
                    out.x.extend(amp.iter().map(|&v| v as f32));
                }
                Err(e) => unreachable!("a frame always keeps one packet: {e}"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(cfg: SimConfig) -> Simulator {
        Simulator::new(cfg)
    }

    #[test]
    fn sequence_shapes_and_ranges() {
        let s = sim(SimConfig {
            keep_raw: true,
            ..SimConfig::default()
        });
        let spec = SequenceSpec {
            env: 2,
            subject: 12,
            action: 12,
            frames: 12,
        };
        let q = s.sequence(spec);
        let fl = 3 * 114 * 10;
        assert_eq!(q.x.len(), 12 * fl);
        assert_eq!(q.raw_amp.len(), 12 * fl);
        assert_eq!(q.y2d.len(), 12 * 34);
        assert_eq!(q.y3d.len(), 12 * 51);
        assert!(q.x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(
            q.y2d.iter().all(|v| (-0.05..=1.05).contains(v)),
            "keypoints in view"
        );
        // Camera-frame depth is positive and a few metres.
        assert!(q.y3d.chunks(3).all(|c| c[2] > 1.5 && c[2] < 6.0));
        let finite = q.raw_amp.iter().filter(|v| v.is_finite()).count();
        assert!(finite > q.raw_amp.len() * 9 / 10);
    }
}
