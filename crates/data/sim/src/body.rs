//! The human body: anthropometry of a subject, joint angles, forward kinematics to a 3D
//! skeleton (Human3.6M's 17 joints plus the face points COCO needs), and the body as radio
//! scatterers (points along the limb segments and torso) and as a shadowing obstacle.

use crate::geom::V3;
use crate::rng::Rng;

/// Human3.6M joint order (MM-Fi's ground_truth.npy).
pub mod h36m {
    pub const PELVIS: usize = 0;
    pub const R_HIP: usize = 1;
    pub const R_KNEE: usize = 2;
    pub const R_ANKLE: usize = 3;
    pub const L_HIP: usize = 4;
    pub const L_KNEE: usize = 5;
    pub const L_ANKLE: usize = 6;
    pub const SPINE: usize = 7;
    pub const THORAX: usize = 8;
    pub const NOSE: usize = 9;
    pub const HEAD: usize = 10;
    pub const L_SHOULDER: usize = 11;
    pub const L_ELBOW: usize = 12;
    pub const L_WRIST: usize = 13;
    pub const R_SHOULDER: usize = 14;
    pub const R_ELBOW: usize = 15;
    pub const R_WRIST: usize = 16;
}

/// Bones of the H36M skeleton, for drawing.
pub const H36M_BONES: [(usize, usize); 16] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (0, 4),
    (4, 5),
    (5, 6),
    (0, 7),
    (7, 8),
    (8, 9),
    (9, 10),
    (8, 11),
    (11, 12),
    (12, 13),
    (8, 14),
    (14, 15),
    (15, 16),
];

/// Body measurements of one subject, metres.
#[derive(Clone, Debug, PartialEq)]
pub struct Anthropometry {
    pub height: f64,
    pub thigh: f64,
    pub shin: f64,
    pub ankle_height: f64,
    pub hip_half_width: f64,
    /// Hip centre to thorax.
    pub spine: f64,
    /// Thorax to head centre.
    pub neck: f64,
    pub head_radius: f64,
    pub shoulder_half_width: f64,
    pub upper_arm: f64,
    pub forearm: f64,
    /// Girth factor (1 = average): scales widths and radar cross-sections.
    pub build: f64,
}

impl Anthropometry {
    /// A random subject: height 1.50–1.95 m, limb proportions ±5 %, build 0.8–1.3.
    pub fn sample(rng: &mut Rng) -> Anthropometry {
        let h = rng.range(1.50, 1.95);
        let leg = rng.range(0.95, 1.05);
        let arm = rng.range(0.95, 1.05);
        let build = rng.range(0.8, 1.3);
        let shoulders = rng.range(0.93, 1.07);
        let thigh = 0.245 * h * leg;
        let shin = 0.246 * h * leg;
        let ankle_height = 0.039 * h;
        let head_radius = 0.062 * h;
        let neck = 0.11 * h;
        // The trunk takes what the legs leave so that the total height stays `h`.
        let spine = h - (thigh + shin + ankle_height) - neck - head_radius;
        Anthropometry {
            height: h,
            thigh,
            shin,
            ankle_height,
            hip_half_width: 0.09 * h * (0.8 + 0.2 * build),
            spine,
            neck,
            head_radius,
            shoulder_half_width: 0.118 * h * shoulders * (0.85 + 0.15 * build),
            upper_arm: 0.186 * h * arm,
            forearm: 0.146 * h * arm,
            build,
        }
    }
}

/// Joint angles (radians) and root offsets (metres) of one instant. Index 0 = left, 1 = right.
/// Limb angles: `*_flex` swings the limb forward in the sagittal plane (0 = hanging down,
/// π/2 = pointing forward, π = overhead), `*_abd` swings it sideways away from the body.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Angles {
    /// Extra heading (turning left is positive).
    pub yaw: f64,
    /// Root displacement forward, to the left, and up (jumps), metres.
    pub forward: f64,
    pub left: f64,
    pub lift: f64,
    pub trunk_flex: f64,
    /// Lateral trunk bend, to the left positive.
    pub trunk_side: f64,
    /// Upper-body twist, to the left positive.
    pub trunk_twist: f64,
    pub neck_flex: f64,
    pub hip_flex: [f64; 2],
    pub hip_abd: [f64; 2],
    pub knee: [f64; 2],
    pub shoulder_flex: [f64; 2],
    pub shoulder_abd: [f64; 2],
    pub elbow: [f64; 2],
}

impl Angles {
    /// The relaxed standing pose.
    pub fn rest() -> Angles {
        Angles {
            knee: [0.05; 2],
            hip_flex: [0.02; 2],
            shoulder_abd: [0.12; 2],
            elbow: [0.2; 2],
            ..Angles::default()
        }
    }
    /// `self + k * o`, component-wise.
    pub fn add_scaled(&self, o: &Angles, k: f64) -> Angles {
        let a2 = |a: [f64; 2], b: [f64; 2]| [a[0] + k * b[0], a[1] + k * b[1]];
        Angles {
            yaw: self.yaw + k * o.yaw,
            forward: self.forward + k * o.forward,
            left: self.left + k * o.left,
            lift: self.lift + k * o.lift,
            trunk_flex: self.trunk_flex + k * o.trunk_flex,
            trunk_side: self.trunk_side + k * o.trunk_side,
            trunk_twist: self.trunk_twist + k * o.trunk_twist,
            neck_flex: self.neck_flex + k * o.neck_flex,
            hip_flex: a2(self.hip_flex, o.hip_flex),
            hip_abd: a2(self.hip_abd, o.hip_abd),
            knee: a2(self.knee, o.knee),
            shoulder_flex: a2(self.shoulder_flex, o.shoulder_flex),
            shoulder_abd: a2(self.shoulder_abd, o.shoulder_abd),
            elbow: a2(self.elbow, o.elbow),
        }
    }
    /// The left-right mirror image (a left-hand action becomes the right-hand one).
    pub fn mirror(&self) -> Angles {
        let sw = |a: [f64; 2]| [a[1], a[0]];
        Angles {
            yaw: -self.yaw,
            left: -self.left,
            trunk_side: -self.trunk_side,
            trunk_twist: -self.trunk_twist,
            hip_flex: sw(self.hip_flex),
            hip_abd: sw(self.hip_abd),
            knee: sw(self.knee),
            shoulder_flex: sw(self.shoulder_flex),
            shoulder_abd: sw(self.shoulder_abd),
            elbow: sw(self.elbow),
            ..*self
        }
    }
}

/// A posed body in room coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Skeleton {
    /// Human3.6M-order joints.
    pub joints: [V3; 17],
    pub head_center: V3,
    pub left_eye: V3,
    pub right_eye: V3,
    pub left_ear: V3,
    pub right_ear: V3,
}

/// Direction of a limb from its sagittal angle `flex`, sideways angle `abd`, side sign
/// (`+1` right, `-1` left) in a frame with `up`, `fwd`, `right`.
fn limb_dir(flex: f64, abd: f64, side: f64, up: V3, fwd: V3, right: V3) -> V3 {
    let (sf, cf) = flex.sin_cos();
    let (sa, ca) = abd.sin_cos();
    (up * (-cf) + fwd * sf) * ca + right * (side * sa)
}

impl Skeleton {
    /// Forward kinematics: the body of `anth` in pose `ang`, standing at floor point `base`
    /// with heading `heading` (radians about +z from +x).
    pub fn pose(anth: &Anthropometry, ang: &Angles, base: V3, heading: f64) -> Skeleton {
        use h36m::*;
        let yaw = heading + ang.yaw;
        let fwd = V3::new(yaw.cos(), yaw.sin(), 0.0);
        let right = fwd.cross(V3::UP);
        let up = V3::UP;
        let mut j = [V3::ZERO; 17];
        // Hip centre at the origin for now; lifted onto the floor below.
        let pelvis = fwd * ang.forward - right * ang.left;
        j[PELVIS] = pelvis;
        for (i, side) in [(0usize, -1.0f64), (1, 1.0)] {
            let hip = pelvis + right * (side * anth.hip_half_width);
            let thigh = limb_dir(ang.hip_flex[i], ang.hip_abd[i], side, up, fwd, right);
            let knee = hip + thigh * anth.thigh;
            let shin = limb_dir(
                ang.hip_flex[i] - ang.knee[i],
                ang.hip_abd[i],
                side,
                up,
                fwd,
                right,
            );
            let ankle = knee + shin * anth.shin;
            let (h, k, a) = if i == 0 {
                (L_HIP, L_KNEE, L_ANKLE)
            } else {
                (R_HIP, R_KNEE, R_ANKLE)
            };
            j[h] = hip;
            j[k] = knee;
            j[a] = ankle;
        }
        // Trunk.
        let (st, ct) = ang.trunk_flex.sin_cos();
        let (ss, cs) = ang.trunk_side.sin_cos();
        let up_t = (up * (ct * cs) + fwd * st - right * (ss * ct)).unit();
        let (sw, cw) = ang.trunk_twist.sin_cos();
        let f_tw = fwd * cw - right * sw;
        let f_t = (f_tw - up_t * f_tw.dot(up_t)).unit();
        let r_t = f_t.cross(up_t);
        j[THORAX] = pelvis + up_t * anth.spine;
        j[SPINE] = pelvis + up_t * (anth.spine * 0.5);
        let (sn, cn) = ang.neck_flex.sin_cos();
        let up_n = (up_t * cn + f_t * sn).unit();
        let head_center = j[THORAX] + up_n * anth.neck;
        j[HEAD] = head_center + up_n * anth.head_radius;
        j[NOSE] = head_center + f_t * (0.9 * anth.head_radius) - up_n * 0.015;
        for (i, side) in [(0usize, -1.0f64), (1, 1.0)] {
            let sh = j[THORAX] + r_t * (side * anth.shoulder_half_width) - up_t * 0.02;
            let ua = limb_dir(
                ang.shoulder_flex[i],
                ang.shoulder_abd[i],
                side,
                up_t,
                f_t,
                r_t,
            );
            let elbow = sh + ua * anth.upper_arm;
            let fa = limb_dir(
                ang.shoulder_flex[i] + ang.elbow[i],
                ang.shoulder_abd[i],
                side,
                up_t,
                f_t,
                r_t,
            );
            let wrist = elbow + fa * anth.forearm;
            let (s, e, w) = if i == 0 {
                (L_SHOULDER, L_ELBOW, L_WRIST)
            } else {
                (R_SHOULDER, R_ELBOW, R_WRIST)
            };
            j[s] = sh;
            j[e] = elbow;
            j[w] = wrist;
        }
        let r = anth.head_radius;
        let mut sk = Skeleton {
            joints: j,
            head_center,
            left_eye: head_center + f_t * (0.8 * r) - r_t * (0.4 * r) + up_n * (0.25 * r),
            right_eye: head_center + f_t * (0.8 * r) + r_t * (0.4 * r) + up_n * (0.25 * r),
            left_ear: head_center - r_t * (0.95 * r),
            right_ear: head_center + r_t * (0.95 * r),
        };
        // Stand on the floor: the lower ankle sits at ankle height (plus any jump lift).
        let lowest = sk.joints[L_ANKLE].z.min(sk.joints[R_ANKLE].z);
        let shift = V3::new(
            base.x,
            base.y,
            anth.ankle_height - lowest + ang.lift.max(0.0),
        );
        sk.translate(shift);
        sk
    }

    fn translate(&mut self, d: V3) {
        for p in self.joints.iter_mut() {
            *p += d;
        }
        for p in [
            &mut self.head_center,
            &mut self.left_eye,
            &mut self.right_eye,
            &mut self.left_ear,
            &mut self.right_ear,
        ] {
            *p += d;
        }
    }

    /// COCO-17 keypoints in room coordinates (nose, eyes, ears, shoulders, elbows, wrists,
    /// hips, knees, ankles; left before right).
    pub fn coco17(&self) -> [V3; 17] {
        use h36m::*;
        let j = &self.joints;
        [
            j[NOSE],
            self.left_eye,
            self.right_eye,
            self.left_ear,
            self.right_ear,
            j[L_SHOULDER],
            j[R_SHOULDER],
            j[L_ELBOW],
            j[R_ELBOW],
            j[L_WRIST],
            j[R_WRIST],
            j[L_HIP],
            j[R_HIP],
            j[L_KNEE],
            j[R_KNEE],
            j[L_ANKLE],
            j[R_ANKLE],
        ]
    }
}

/// Radar cross-sections (m², before the build factor) of the body segments: torso > thigh >
/// shin > upper arm > forearm.
pub const RCS_TORSO: f64 = 0.5;
pub const RCS_HEAD: f64 = 0.04;
pub const RCS_THIGH: f64 = 0.15;
pub const RCS_SHIN: f64 = 0.08;
pub const RCS_UPPER_ARM: f64 = 0.06;
pub const RCS_FOREARM: f64 = 0.035;

/// Number of scattering points [`scatter_points`] produces.
pub const SCATTER_POINTS: usize = 23;
/// Number of shadowing points [`shadow_points`] produces.
pub const SHADOW_POINTS: usize = 26;

/// The body as point scatterers: (position, amplitude = √(RCS share) in metres).
/// Six torso points (three heights × two sides), one head point and two points along each
/// upper arm, forearm, thigh and shin; a segment's RCS is shared equally by its points.
pub fn scatter_points(sk: &Skeleton, anth: &Anthropometry, out: &mut Vec<(V3, f64)>) {
    use h36m::*;
    out.clear();
    let j = &sk.joints;
    let b2 = anth.build * anth.build;
    let torso_amp = (RCS_TORSO * b2 / 6.0).sqrt();
    let side = (j[R_SHOULDER] - j[L_SHOULDER]).unit() * (0.55 * anth.shoulder_half_width);
    for c in [j[PELVIS], j[SPINE], j[THORAX].lerp(j[SPINE], 0.3)] {
        out.push((c - side, torso_amp));
        out.push((c + side, torso_amp));
    }
    out.push((sk.head_center, (RCS_HEAD * anth.build).sqrt()));
    let segs = [
        (L_SHOULDER, L_ELBOW, RCS_UPPER_ARM),
        (R_SHOULDER, R_ELBOW, RCS_UPPER_ARM),
        (L_ELBOW, L_WRIST, RCS_FOREARM),
        (R_ELBOW, R_WRIST, RCS_FOREARM),
        (L_HIP, L_KNEE, RCS_THIGH),
        (R_HIP, R_KNEE, RCS_THIGH),
        (L_KNEE, L_ANKLE, RCS_SHIN),
        (R_KNEE, R_ANKLE, RCS_SHIN),
    ];
    for (a, b, rcs) in segs {
        let amp = (rcs * b2 / 2.0).sqrt();
        out.push((j[a].lerp(j[b], 0.3), amp));
        out.push((j[a].lerp(j[b], 0.75), amp));
    }
    debug_assert_eq!(out.len(), SCATTER_POINTS);
}

/// The body as a shadowing obstacle: (position, blocking weight). A radio path that passes
/// through a point loses power by the point's weight (see `channel`).
///
/// The body is an extended obstacle, not a few points: the trunk is sampled at four heights
/// from the pelvis to the thorax, each with a left and a right point at the trunk's half
/// width, plus the neck, the head, and two points along each limb segment. A path that
/// crosses the trunk anywhere between the pelvis and the shoulders, or passes just beside
/// it, is therefore blocked as strongly as one through its axis, and how much of a link the
/// body covers follows its height, width and posture smoothly (a sparse point model leaves
/// gaps between its points where a path slips through unblocked). Weights: 0.85 × build per
/// trunk point (6.8 × build in all), 0.3 × build for the neck, 0.8 for the head, and per limb
/// segment 1.2 (thigh), 0.8 (shin), 0.6 (upper arm) or 0.4 (forearm) × build, split evenly
/// over its two points.
pub fn shadow_points(sk: &Skeleton, anth: &Anthropometry, out: &mut Vec<(V3, f64)>) {
    use h36m::*;
    out.clear();
    let j = &sk.joints;
    let b = anth.build;
    let side_dir = (j[R_SHOULDER] - j[L_SHOULDER]).unit();
    let top = j[THORAX].lerp(j[PELVIS], 0.05);
    for k in 0..4 {
        let t = k as f64 / 3.0;
        let c = j[PELVIS].lerp(top, t);
        let half = 0.5 * ((1.0 - t) * anth.hip_half_width + t * anth.shoulder_half_width * 0.8);
        out.push((c - side_dir * half, 0.85 * b));
        out.push((c + side_dir * half, 0.85 * b));
    }
    out.push((j[THORAX].lerp(sk.head_center, 0.5), 0.3 * b));
    out.push((sk.head_center, 0.8));
    for (a, c, w) in [
        (L_HIP, L_KNEE, 1.2),
        (R_HIP, R_KNEE, 1.2),
        (L_KNEE, L_ANKLE, 0.8),
        (R_KNEE, R_ANKLE, 0.8),
        (L_SHOULDER, L_ELBOW, 0.6),
        (R_SHOULDER, R_ELBOW, 0.6),
        (L_ELBOW, L_WRIST, 0.4),
        (R_ELBOW, R_WRIST, 0.4),
    ] {
        out.push((j[a].lerp(j[c], 0.25), 0.5 * w * b));
        out.push((j[a].lerp(j[c], 0.75), 0.5 * w * b));
    }
    debug_assert_eq!(out.len(), SHADOW_POINTS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Anthropometry {
        Anthropometry::sample(&mut Rng::new(11))
    }

    #[test]
    fn standing_skeleton_has_its_height_and_bone_lengths() {
        let a = subject();
        let sk = Skeleton::pose(&a, &Angles::default(), V3::new(2.0, 3.0, 0.0), 0.3);
        let top = sk.joints[h36m::HEAD].z;
        assert!(
            (top - a.height).abs() < 0.02,
            "top {top} height {}",
            a.height
        );
        let j = &sk.joints;
        assert!((j[h36m::L_HIP].dist(j[h36m::L_KNEE]) - a.thigh).abs() < 1e-9);
        assert!((j[h36m::R_ELBOW].dist(j[h36m::R_WRIST]) - a.forearm).abs() < 1e-9);
        // Right is to the right: facing +x (heading 0), the right hip has smaller y.
        let sk0 = Skeleton::pose(&a, &Angles::default(), V3::ZERO, 0.0);
        assert!(sk0.joints[h36m::R_HIP].y < sk0.joints[h36m::L_HIP].y);
        assert!(sk0.joints[h36m::NOSE].x > sk0.joints[h36m::HEAD].x - 0.01);
    }

    #[test]
    fn raising_an_arm_and_squatting_move_the_right_joints() {
        let a = subject();
        let rest = Angles::rest();
        let base = V3::ZERO;
        let s0 = Skeleton::pose(&a, &rest, base, 0.0);
        let mut up = rest;
        up.shoulder_flex[0] = std::f64::consts::PI;
        up.elbow[0] = 0.0;
        let s1 = Skeleton::pose(&a, &up, base, 0.0);
        assert!(s1.joints[h36m::L_WRIST].z > s0.joints[h36m::HEAD].z);
        assert_eq!(s1.joints[h36m::R_WRIST], s0.joints[h36m::R_WRIST]);
        let mut sq = rest;
        sq.hip_flex = [1.3; 2];
        sq.knee = [2.0; 2];
        let s2 = Skeleton::pose(&a, &sq, base, 0.0);
        assert!(s2.joints[h36m::PELVIS].z < s0.joints[h36m::PELVIS].z - 0.2);
        let feet = s2.joints[h36m::L_ANKLE].z.min(s2.joints[h36m::R_ANKLE].z);
        assert!(
            (feet - a.ankle_height).abs() < 1e-9,
            "feet stay on the floor"
        );
        let m = up.mirror();
        assert_eq!(
            m.shoulder_flex,
            [rest.shoulder_flex[1], std::f64::consts::PI]
        );
    }

    #[test]
    fn scatterers_follow_the_reflectivity_order() {
        let a = subject();
        let sk = Skeleton::pose(&a, &Angles::rest(), V3::ZERO, 0.0);
        let mut pts = Vec::new();
        scatter_points(&sk, &a, &mut pts);
        assert_eq!(pts.len(), SCATTER_POINTS);
        let torso: f64 = pts[..6].iter().map(|p| p.1 * p.1).sum();
        let thigh: f64 = pts[15..17].iter().map(|p| p.1 * p.1).sum();
        let arm: f64 = pts[7..9].iter().map(|p| p.1 * p.1).sum();
        assert!(torso > thigh && thigh > arm, "{torso} {thigh} {arm}");
        shadow_points(&sk, &a, &mut pts);
        assert_eq!(pts.len(), SHADOW_POINTS);
    }
}
