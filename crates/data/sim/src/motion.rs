//! The 27 actions (MM-Fi's list, A01–A27) as joint-angle trajectories, and a sequence's
//! motion: repetitions with their own speed and amplitude, pauses, and a slow idle sway.

use crate::body::Angles;
use crate::rng::Rng;
use std::f64::consts::{FRAC_PI_2, PI, TAU};

/// Number of actions (A01–A27).
pub const ACTIONS: u32 = 27;

/// MM-Fi's action names, A01 first.
pub const ACTION_NAMES: [&str; 27] = [
    "stretching and relaxing",
    "chest expanding horizontally",
    "chest expanding vertically",
    "twist left",
    "twist right",
    "mark time",
    "limb extension left",
    "limb extension right",
    "lunge toward left-front",
    "lunge toward right-front",
    "limb extension both",
    "squat",
    "raising left hand",
    "raising right hand",
    "lunge toward left side",
    "lunge toward right side",
    "waving left hand",
    "waving right hand",
    "picking up things",
    "throwing toward left side",
    "throwing toward right side",
    "kicking toward left with right leg",
    "kicking toward right with left leg",
    "body extension left",
    "body extension right",
    "jumping up",
    "bowing",
];

/// 0 → 1 → 0 over one repetition, smooth at both ends.
fn bump(p: f64) -> f64 {
    0.5 - 0.5 * (TAU * p).cos()
}

/// Rise, hold, fall: 0 at both ends, 1 over the middle 40 %.
fn hold(p: f64) -> f64 {
    let s = |x: f64| {
        let x = x.clamp(0.0, 1.0);
        x * x * (3.0 - 2.0 * x)
    };
    s(p / 0.3).min(s((1.0 - p) / 0.3))
}

/// Nominal repetition length of an action in seconds.
pub fn base_period(action: u32) -> f64 {
    match action {
        6 => 1.2,
        17 | 18 => 3.0,
        26 => 1.6,
        19 | 12 | 9 | 10 | 15 | 16 => 3.2,
        _ => 2.6,
    }
}

/// The offset from the rest pose of `action` (1..=27) at phase `p` ∈ [0, 1) of a repetition
/// with amplitude `amp` (1 = nominal).
pub fn action_offset(action: u32, p: f64, amp: f64) -> Angles {
    let mut a = Angles::default();
    let b = bump(p) * amp;
    let h = hold(p) * amp;
    match action {
        1 => {
            // Both arms up overhead, slight trunk extension, then relax.
            a.shoulder_flex = [2.7 * h; 2];
            a.elbow = [-0.15 * h; 2];
            a.trunk_flex = -0.12 * h;
            a.neck_flex = -0.2 * h;
        }
        2 => {
            // Arms forward at shoulder height, then opened horizontally.
            let open = (0.5 - 0.5 * (TAU * 2.0 * p).cos()) * amp;
            a.shoulder_flex = [FRAC_PI_2 * h; 2];
            a.shoulder_abd = [1.3 * open * h; 2];
            a.elbow = [0.5 * h * (1.0 - open); 2];
        }
        3 => {
            // Arms swing from the sides up to overhead and back, twice.
            let v = (0.5 - 0.5 * (TAU * 2.0 * p).cos()) * amp;
            a.shoulder_abd = [2.6 * v; 2];
            a.elbow = [0.4 * v; 2];
        }
        4 | 5 => {
            let mut m = a;
            m.trunk_twist = 0.85 * h;
            m.shoulder_abd = [0.9 * h; 2];
            m.shoulder_flex = [0.4 * h; 2];
            m.elbow = [1.2 * h; 2];
            m.neck_flex = 0.1 * h;
            return if action == 4 { m } else { m.mirror() };
        }
        6 => {
            // Marching on the spot: one left and one right step per repetition.
            let l = (TAU * p).sin().max(0.0) * amp;
            let r = (-(TAU * p).sin()).max(0.0) * amp;
            a.hip_flex = [1.0 * l, 1.0 * r];
            a.knee = [1.5 * l, 1.5 * r];
            a.shoulder_flex = [0.6 * r - 0.2 * l, 0.6 * l - 0.2 * r];
            a.elbow = [0.6 * r, 0.6 * l];
            a.lift = 0.0;
        }
        7 | 8 | 11 => {
            let mut m = a;
            m.shoulder_abd = [1.45 * h, 0.0];
            m.elbow = [-0.15 * h, 0.0];
            m.hip_abd = [0.45 * h, 0.0];
            m.trunk_side = -0.12 * h;
            m.left = 0.05 * h;
            if action == 11 {
                let r = m.mirror();
                m.shoulder_abd[1] = r.shoulder_abd[1];
                m.elbow[1] = r.elbow[1];
                m.trunk_side = 0.0;
                m.left = 0.0;
                m.hip_abd = [0.0; 2];
                m.shoulder_flex = [0.3 * h; 2];
            }
            return if action == 8 { m.mirror() } else { m };
        }
        9 | 10 => {
            let mut m = a;
            m.yaw = 0.5 * h;
            m.hip_flex = [1.0 * h, -0.35 * h];
            m.knee = [1.1 * h, 0.5 * h];
            m.forward = 0.35 * h;
            m.trunk_flex = 0.25 * h;
            m.shoulder_flex = [0.5 * h; 2];
            m.elbow = [0.8 * h; 2];
            return if action == 9 { m } else { m.mirror() };
        }
        12 => {
            a.hip_flex = [1.5 * h; 2];
            a.knee = [2.1 * h; 2];
            a.trunk_flex = 0.45 * h;
            a.shoulder_flex = [1.45 * h; 2];
            a.forward = -0.15 * h;
        }
        13 | 14 => {
            let mut m = a;
            m.shoulder_flex = [2.9 * h, 0.0];
            m.elbow = [-0.15 * h, 0.0];
            m.trunk_side = -0.05 * h;
            return if action == 13 { m } else { m.mirror() };
        }
        15 | 16 => {
            let mut m = a;
            m.hip_abd = [0.55 * h, 0.2 * h];
            m.hip_flex = [0.5 * h, 0.1 * h];
            m.knee = [1.0 * h, 0.0];
            m.left = 0.35 * h;
            m.trunk_side = -0.1 * h;
            m.shoulder_abd = [0.6 * h; 2];
            return if action == 15 { m } else { m.mirror() };
        }
        17 | 18 => {
            // Arm up to the side, forearm waving three times.
            let wave = (TAU * 3.0 * p).sin();
            let mut m = a;
            m.shoulder_abd = [1.7 * h, 0.0];
            m.shoulder_flex = [0.3 * h, 0.0];
            m.elbow = [(1.0 + 0.5 * wave) * h, 0.0];
            return if action == 17 { m } else { m.mirror() };
        }
        19 => {
            a.trunk_flex = 1.25 * h;
            a.hip_flex = [0.5 * h; 2];
            a.knee = [0.7 * h; 2];
            a.shoulder_flex = [0.9 * h, 1.1 * h];
            a.elbow = [0.1 * h; 2];
            a.neck_flex = 0.3 * h;
            a.forward = -0.1 * h;
        }
        20 | 21 => {
            // Wind up with the right arm, then throw across to the left.
            let wind = hold((p * 1.6).min(1.0)) * amp;
            let throw = bump(((p - 0.45) / 0.55).clamp(0.0, 1.0)) * amp;
            let mut m = a;
            m.shoulder_flex = [0.3 * b, 2.6 * wind - 1.4 * throw];
            m.shoulder_abd = [0.4 * b, 0.5 * wind];
            m.elbow = [0.5 * b, 1.6 * wind * (1.0 - throw)];
            m.trunk_twist = -0.5 * wind + 1.0 * throw;
            m.yaw = 0.3 * throw;
            m.hip_flex = [0.3 * throw, 0.0];
            return if action == 20 { m } else { m.mirror() };
        }
        22 | 23 => {
            // Right leg kicks forward and across to the left.
            let chamber = bump(p) * amp;
            let extend = bump(((p - 0.25) / 0.5).clamp(0.0, 1.0)) * amp;
            let mut m = a;
            m.hip_flex = [0.0, 1.2 * chamber];
            m.hip_abd = [0.0, -0.35 * chamber];
            m.knee = [0.15 * chamber, 1.4 * chamber * (1.0 - extend)];
            m.shoulder_abd = [0.5 * b; 2];
            m.trunk_flex = -0.1 * b;
            m.yaw = 0.2 * b;
            return if action == 22 { m } else { m.mirror() };
        }
        24 | 25 => {
            // Lean to the left with the right arm over the head.
            let mut m = a;
            m.trunk_side = 0.45 * h;
            m.shoulder_abd = [0.3 * h, 2.6 * h];
            m.elbow = [0.6 * h, 0.3 * h];
            return if action == 24 { m } else { m.mirror() };
        }
        26 => {
            // Crouch, take off, fly, land.
            let crouch =
                bump((p / 0.45).min(1.0)) * amp + bump(((p - 0.75) / 0.25).max(0.0)) * amp * 0.6;
            let flight = if (0.35..0.75).contains(&p) {
                (PI * (p - 0.35) / 0.4).sin() * amp
            } else {
                0.0
            };
            a.hip_flex = [0.9 * crouch; 2];
            a.knee = [1.4 * crouch; 2];
            a.trunk_flex = 0.35 * crouch;
            a.lift = 0.28 * flight;
            a.shoulder_flex = [-0.5 * crouch + 2.2 * flight; 2];
        }
        _ => {
            // 27: bowing.
            a.trunk_flex = 0.95 * h;
            a.neck_flex = 0.35 * h;
            a.shoulder_flex = [0.25 * h; 2];
            a.forward = -0.05 * h;
        }
    }
    a
}

/// One repetition inside a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Repetition {
    pub start_s: f64,
    pub duration_s: f64,
    pub amplitude: f64,
}

/// The motion of one sequence: an action's repetitions with per-repetition speed and
/// amplitude, and a subject-specific idle sway on top.
#[derive(Clone, Debug, PartialEq)]
pub struct Motion {
    pub action: u32,
    pub reps: Vec<Repetition>,
    /// Idle sway: (amplitude rad, frequency Hz, phase) for trunk side, trunk flex, arms.
    sway: [(f64, f64, f64); 4],
}

impl Motion {
    /// Random repetitions covering `duration_s` seconds. `speed` and `style` are the
    /// subject's tempo and range-of-motion factors.
    pub fn sample(action: u32, duration_s: f64, speed: f64, style: f64, rng: &mut Rng) -> Motion {
        let mut reps = Vec::new();
        let mut t = rng.range(0.0, 0.8);
        while t < duration_s {
            let d = base_period(action) / speed * rng.range(0.75, 1.3);
            let amp = style * rng.range(0.75, 1.15);
            reps.push(Repetition {
                start_s: t,
                duration_s: d,
                amplitude: amp,
            });
            t += d + rng.range(0.0, 0.7);
        }
        let mut sway = [(0.0, 0.0, 0.0); 4];
        for s in sway.iter_mut() {
            *s = (
                rng.range(0.01, 0.05),
                rng.range(0.1, 0.4),
                rng.range(0.0, TAU),
            );
        }
        Motion { action, reps, sway }
    }

    /// Joint angles at time `t` seconds.
    pub fn angles(&self, t: f64) -> Angles {
        let mut a = Angles::rest();
        // Repetitions are sorted and do not overlap: find the one covering t.
        let i = self.reps.partition_point(|r| r.start_s <= t);
        if i > 0 {
            let r = &self.reps[i - 1];
            let p = (t - r.start_s) / r.duration_s;
            if p < 1.0 {
                a = a.add_scaled(&action_offset(self.action, p, r.amplitude), 1.0);
            }
        }
        let w = |k: usize| {
            let (amp, f, ph) = self.sway[k];
            amp * (TAU * f * t + ph).sin()
        };
        a.trunk_side += w(0);
        a.trunk_flex += w(1);
        a.shoulder_flex[0] += w(2);
        a.shoulder_flex[1] += w(3);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{h36m, Anthropometry, Skeleton};
    use crate::geom::V3;

    #[test]
    fn every_action_moves_and_returns_to_rest() {
        let anth = Anthropometry::sample(&mut Rng::new(5));
        let rest = Skeleton::pose(&anth, &Angles::rest(), V3::ZERO, 0.0);
        let mut moved = Vec::new();
        for act in 1..=ACTIONS {
            let end = Angles::rest().add_scaled(&action_offset(act, 0.0, 1.0), 1.0);
            let s_end = Skeleton::pose(&anth, &end, V3::ZERO, 0.0);
            let mut max_move: f64 = 0.0;
            for k in 0..40 {
                let a = Angles::rest().add_scaled(&action_offset(act, k as f64 / 40.0, 1.0), 1.0);
                let s = Skeleton::pose(&anth, &a, V3::ZERO, 0.0);
                for j in 0..17 {
                    max_move = max_move.max(s.joints[j].dist(rest.joints[j]));
                }
            }
            let back: f64 = (0..17)
                .map(|j| s_end.joints[j].dist(rest.joints[j]))
                .fold(0.0, f64::max);
            assert!(max_move > 0.15, "A{act:02} moves only {max_move} m");
            assert!(back < 0.03, "A{act:02} starts {back} m away from rest");
            moved.push(max_move);
        }
        // Mirrored pairs move the opposite wrist.
        let l = Angles::rest().add_scaled(&action_offset(13, 0.5, 1.0), 1.0);
        let s = Skeleton::pose(&anth, &l, V3::ZERO, 0.0);
        assert!(s.joints[h36m::L_WRIST].z > s.joints[h36m::HEAD].z);
        assert!(s.joints[h36m::R_WRIST].z < s.joints[h36m::PELVIS].z);
    }

    #[test]
    fn repetitions_vary_and_cover_the_sequence() {
        let mut rng = Rng::new(9);
        let m = Motion::sample(12, 29.7, 1.0, 1.0, &mut rng);
        assert!(m.reps.len() >= 6, "{}", m.reps.len());
        let last = m.reps.last().unwrap();
        assert!(last.start_s + last.duration_s + 0.7 >= 29.7);
        let d: Vec<f64> = m.reps.iter().map(|r| r.duration_s).collect();
        assert!(d.iter().any(|&x| (x - d[0]).abs() > 0.05));
        let mid = m.reps[1].start_s + 0.5 * m.reps[1].duration_s;
        assert!(m.angles(mid).knee[0] > 1.0);
    }
}
