//! The narrowband multipath channel: H(f_k, antenna, t) = Σ_paths g_p · exp(−j2π f_k τ_p).
//!
//! Paths: the line of sight, the six first-order wall/floor/ceiling reflections (image
//! method) and the static clutter scatterers (furniture), all of which the body can shadow
//! where it stands in their Fresnel zone; and the body's scattering points with bistatic
//! free-space attenuation. Everything is evaluated on the
//! uniform subcarrier grid spanning the radio's reported subcarriers (padded to a multiple
//! of 8); callers gather the reported ones. Per path, exp(−j2π f_k τ) is advanced across
//! subcarriers by a complex recurrence (eight lanes stepped by exp(−j2π·8Δf·τ)), so a path
//! costs three sin/cos evaluations whatever the number of subcarriers.

use crate::geom::V3;
use crate::profile::{Radio, C, SUBCARRIER_SPACING};
use crate::room::{Environment, Scatterer};
use std::f64::consts::{PI, TAU};

/// Lanes of the subcarrier recurrence; the grid is padded to a multiple of this.
pub const LANES: usize = 8;

/// Adds the path `gain · exp(−j2π (f0 + n·df) τ)` for n = 0..re.len() to (re, im).
#[inline]
pub fn add_path(re: &mut [f32], im: &mut [f32], gain: f64, tau: f64, f0: f64, df: f64) {
    debug_assert_eq!(re.len() % LANES, 0);
    let th0 = (-TAU * f0 * tau).rem_euclid(TAU);
    let (s0, c0) = th0.sin_cos();
    let dth = -TAU * df * tau;
    let (ss, cs) = dth.sin_cos();
    let mut pr = [0f32; LANES];
    let mut pi = [0f32; LANES];
    let (mut r, mut i) = (gain * c0, gain * s0);
    for l in 0..LANES {
        pr[l] = r as f32;
        pi[l] = i as f32;
        (r, i) = (r * cs - i * ss, r * ss + i * cs);
    }
    let (s8, c8) = (LANES as f64 * dth).sin_cos();
    let (s8, c8) = (s8 as f32, c8 as f32);
    for (cr, ci) in re.chunks_exact_mut(LANES).zip(im.chunks_exact_mut(LANES)) {
        for l in 0..LANES {
            cr[l] += pr[l];
            ci[l] += pi[l];
            let t = pr[l] * c8 - pi[l] * s8;
            pi[l] = pr[l] * s8 + pi[l] * c8;
            pr[l] = t;
        }
    }
}

/// A path the body can block: its geometry as straight (start, end, length) legs, and its
/// precomputed per-subcarrier contribution.
#[derive(Clone, Debug)]
struct ShadowablePath {
    /// For the line of sight (tx, rx); for a reflection (tx, image of rx) and (image of tx,
    /// rx), each of which coincides with one real leg on the room side of the wall; for a
    /// clutter scatterer s, (tx, s) and (s, rx).
    legs: Vec<(V3, V3, f64)>,
    re: Vec<f32>,
    im: Vec<f32>,
}

/// The static channel seen by one receive antenna.
#[derive(Clone, Debug)]
struct AntennaChannel {
    rx: V3,
    paths: Vec<ShadowablePath>,
}

/// Which static paths a [`StaticChannel`] contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathSet {
    pub line_of_sight: bool,
    pub reflections: bool,
    pub clutter: bool,
}

impl PathSet {
    pub const ALL: PathSet = PathSet {
        line_of_sight: true,
        reflections: true,
        clutter: true,
    };
    pub const NONE: PathSet = PathSet {
        line_of_sight: false,
        reflections: false,
        clutter: false,
    };
}

/// The precomputed static channel of one environment for one radio, per receive antenna.
#[derive(Clone, Debug)]
pub struct StaticChannel {
    pub tx: V3,
    pub wavelength: f64,
    /// Frequency of grid point 0, Hz.
    pub f0: f64,
    /// Grid spacing, Hz.
    pub df: f64,
    /// Grid length (multiple of [`LANES`]).
    pub grid: usize,
    /// Excess path length (m) at which a shadowing point blocks half as much as on the path.
    pub shadow_width: f64,
    antennas: Vec<AntennaChannel>,
    /// Mean |H|² of the static channel over antennas and grid.
    pub static_power: f64,
}

/// Free-space amplitude of a direct or reflected path of `length` metres.
pub fn friis(wavelength: f64, length: f64) -> f64 {
    wavelength / (4.0 * PI * length)
}

/// Bistatic amplitude of a scatterer with amplitude factor `sqrt_rcs` (√m²).
pub fn bistatic(wavelength: f64, sqrt_rcs: f64, d_tx: f64, d_rx: f64) -> f64 {
    wavelength * sqrt_rcs / ((4.0 * PI).powf(1.5) * d_tx * d_rx)
}

impl StaticChannel {
    /// The static channel of `env` (all paths) for `radio`.
    pub fn new(env: &Environment, radio: &Radio) -> StaticChannel {
        let rx = env.rx_positions(radio.hardware.antennas, radio.wavelength());
        StaticChannel::build(radio, env.tx, &rx, Some(env), &env.clutter, PathSet::ALL)
    }

    /// A channel from explicit parts; `env` supplies the walls when `paths.reflections`.
    pub fn build(
        radio: &Radio,
        tx: V3,
        rx: &[V3],
        env: Option<&Environment>,
        clutter: &[Scatterer],
        paths: PathSet,
    ) -> StaticChannel {
        let grid = radio.grid_len().div_ceil(LANES) * LANES;
        let f0 = radio.center_hz + radio.grid_start() as f64 * SUBCARRIER_SPACING;
        let df = SUBCARRIER_SPACING;
        let lambda = radio.wavelength();
        let mut power = 0.0;
        let antennas: Vec<AntennaChannel> = rx
            .iter()
            .map(|&r| {
                let mut ch = AntennaChannel {
                    rx: r,
                    paths: Vec::new(),
                };
                let mut push = |legs: Vec<(V3, V3, f64)>, gain: f64, length: f64| {
                    let (mut re, mut im) = (vec![0.0; grid], vec![0.0; grid]);
                    add_path(&mut re, &mut im, gain, length / C, f0, df);
                    ch.paths.push(ShadowablePath { legs, re, im });
                };
                if paths.line_of_sight {
                    let d = tx.dist(r);
                    push(vec![(tx, r, d)], friis(lambda, d), d);
                }
                if let (true, Some(env)) = (paths.reflections, env) {
                    for w in 0..6 {
                        let ti = env.image(tx, w);
                        let ri = env.image(r, w);
                        let d = ti.dist(r);
                        let gain = env.wall_gamma[w] * friis(lambda, d);
                        // A reflection coefficient of a dielectric wall at these angles is
                        // negative (phase π): fold it into the sign of the gain.
                        push(vec![(tx, ri, d), (ti, r, d)], -gain, d);
                    }
                }
                if paths.clutter {
                    for s in clutter {
                        let (dt, dr) = (tx.dist(s.pos), s.pos.dist(r));
                        let g = bistatic(lambda, s.rcs.sqrt(), dt, dr);
                        push(vec![(tx, s.pos, dt), (s.pos, r, dr)], g, dt + dr);
                    }
                }
                ch
            })
            .collect();
        let n_valid = radio.grid_len();
        for ch in &antennas {
            let (mut re, mut im) = (vec![0f32; grid], vec![0f32; grid]);
            for p in &ch.paths {
                for k in 0..grid {
                    re[k] += p.re[k];
                    im[k] += p.im[k];
                }
            }
            power += (0..n_valid)
                .map(|k| (re[k] as f64).powi(2) + (im[k] as f64).powi(2))
                .sum::<f64>();
        }
        let static_power = power / (antennas.len().max(1) * n_valid) as f64;
        StaticChannel {
            tx,
            wavelength: lambda,
            f0,
            df,
            grid,
            shadow_width: 0.25 * lambda + 0.015,
            antennas,
            static_power,
        }
    }

    pub fn antennas(&self) -> usize {
        self.antennas.len()
    }

    /// Receive antenna positions.
    pub fn rx(&self, a: usize) -> V3 {
        self.antennas[a].rx
    }

    /// The attenuation factor of each shadowable path of antenna `a` given the body's
    /// shadowing points (position, weight): 1 / (1 + Σ w / (1 + (Δ/width)²)), Δ being the
    /// excess length of the path bent through the point (0 on the path, growing away from
    /// its Fresnel zone).
    pub fn shadowing(&self, a: usize, shadow: &[(V3, f64)], out: &mut Vec<f64>) {
        out.clear();
        let w2 = 1.0 / (self.shadow_width * self.shadow_width);
        for p in &self.antennas[a].paths {
            let mut block = 0.0;
            for &(x, w) in shadow {
                let mut excess = f64::INFINITY;
                for &(s, e, len) in &p.legs {
                    excess = excess.min(s.dist(x) + x.dist(e) - len);
                }
                block += w / (1.0 + excess * excess * w2);
            }
            out.push(1.0 / (1.0 + block));
        }
    }

    /// One packet's channel at antenna `a` on the grid: static paths (shadowed by `shadow`)
    /// plus the body `scatter` points (position, √RCS).
    pub fn packet(
        &self,
        a: usize,
        scatter: &[(V3, f64)],
        shadow: &[(V3, f64)],
        att: &mut Vec<f64>,
        re: &mut [f32],
        im: &mut [f32],
    ) {
        let ch = &self.antennas[a];
        re.fill(0.0);
        im.fill(0.0);
        self.shadowing(a, shadow, att);
        for (p, &g) in ch.paths.iter().zip(att.iter()) {
            let g = g as f32;
            for k in 0..self.grid {
                re[k] += g * p.re[k];
                im[k] += g * p.im[k];
            }
        }
        for &(x, sqrt_rcs) in scatter {
            let (dt, dr) = (self.tx.dist(x), x.dist(ch.rx));
            let g = bistatic(self.wavelength, sqrt_rcs, dt, dr);
            add_path(re, im, g, (dt + dr) / C, self.f0, self.df);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn recurrence_matches_direct_evaluation() {
        let radio = Profile::Mmfi.radio();
        let grid = radio.grid_len().div_ceil(LANES) * LANES;
        let (mut re, mut im) = (vec![0.0f32; grid], vec![0.0f32; grid]);
        let f0 = 5.29e9;
        let (g, tau) = (0.37, 41.3e-9);
        add_path(&mut re, &mut im, g, tau, f0, SUBCARRIER_SPACING);
        for k in 0..grid {
            let th = -TAU * (f0 + k as f64 * SUBCARRIER_SPACING) * tau;
            assert!((re[k] as f64 - g * th.cos()).abs() < 2e-6, "k {k}");
            assert!((im[k] as f64 - g * th.sin()).abs() < 2e-6, "k {k}");
        }
    }

    #[test]
    fn single_scatterer_phase_slope_matches_its_delay() {
        // No static paths, one point scatterer: the unwrapped phase across subcarriers must
        // fall by 2π·Δf·τ per subcarrier with τ = (|tx−p| + |p−rx|)/c.
        let radio = Profile::Mmfi.radio();
        let tx = V3::new(0.0, 0.0, 1.0);
        let rx = [V3::new(4.0, 0.0, 1.0)];
        let ch = StaticChannel::build(&radio, tx, &rx, None, &[], PathSet::NONE);
        let p = V3::new(2.0, 1.5, 1.2);
        let (mut re, mut im) = (vec![0.0; ch.grid], vec![0.0; ch.grid]);
        ch.packet(0, &[(p, 0.7)], &[], &mut Vec::new(), &mut re, &mut im);
        let tau = (tx.dist(p) + p.dist(rx[0])) / C;
        let n = radio.grid_len();
        let mut unwrapped = vec![(im[0] as f64).atan2(re[0] as f64)];
        for k in 1..n {
            let ph = (im[k] as f64).atan2(re[k] as f64);
            let prev = unwrapped[k - 1];
            unwrapped.push(prev + (ph - prev + PI).rem_euclid(TAU) - PI);
        }
        // Least-squares slope.
        let xm = (n - 1) as f64 / 2.0;
        let ym = unwrapped.iter().sum::<f64>() / n as f64;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (k, y) in unwrapped.iter().enumerate() {
            sxy += (k as f64 - xm) * (y - ym);
            sxx += (k as f64 - xm).powi(2);
        }
        let slope = sxy / sxx;
        let want = -TAU * SUBCARRIER_SPACING * tau;
        assert!(
            (slope - want).abs() < 1e-4 * want.abs(),
            "slope {slope} want {want}"
        );
        // And the magnitude is the bistatic free-space amplitude.
        let g = bistatic(ch.wavelength, 0.7, tx.dist(p), p.dist(rx[0]));
        let mag = (re[10] as f64).hypot(im[10] as f64);
        assert!((mag - g).abs() < 1e-5 * g, "{mag} {g}");
    }

    #[test]
    fn shadowing_blocks_the_path_a_body_stands_on() {
        let radio = Profile::Mmfi.radio();
        let tx = V3::new(0.0, 0.0, 1.0);
        let rx = [V3::new(4.0, 0.0, 1.0)];
        let los = PathSet {
            line_of_sight: true,
            ..PathSet::NONE
        };
        let ch = StaticChannel::build(&radio, tx, &rx, None, &[], los);
        let mut att = Vec::new();
        ch.shadowing(0, &[(V3::new(2.0, 0.0, 1.0), 1.0)], &mut att);
        assert!((att[0] - 0.5).abs() < 1e-12);
        ch.shadowing(0, &[(V3::new(2.0, 1.0, 1.0), 1.0)], &mut att);
        assert!(att[0] > 0.99, "{}", att[0]);
    }
}
