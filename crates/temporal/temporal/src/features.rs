//! Per-frame features of a CSI capture for the activity classifier: amplitudes averaged over
//! groups of `stride` packets (to ~7.5 frames/s for a 30 packet/s capture) and mapped to
//! ln(1 + a), followed by the absolute change of each value from the previous frame (motion
//! energy) and by each value minus its running mean so far (causal, so streaming sees the same
//! features as whole-sequence classification). From complex CSI, [`csi_frame_features`] adds the
//! phase difference between neighbouring receive antennas (conjugate multiplication) and its
//! change per frame.

/// Feature blocks per channel: ln(1 + amplitude) (so a gain change shifts rather than scales
/// the features), its absolute change from the previous frame, and its deviation from the
/// running mean over the frames so far (causal).
pub const BLOCKS: usize = 3;

/// Frames averaged into one feature frame.
pub const DEFAULT_STRIDE: usize = 4;

/// `amplitudes`: `[packets, channels]` row-major (channels = antennas x subcarriers).
/// Returns `[packets / stride, BLOCKS * channels]` (a trailing partial group is dropped; a capture
/// shorter than `stride` packets gives one frame from what it has). The same computation as
/// [`FeatureStream`] fed one packet at a time.
pub fn frame_features(amplitudes: &[f32], channels: usize, stride: usize) -> Vec<f32> {
    if channels == 0 || amplitudes.len() < channels {
        return Vec::new();
    }
    let packets = amplitudes.len() / channels;
    let mut stream = FeatureStream::new(1, channels, stride.max(1).min(packets), false);
    let mut out = Vec::with_capacity(packets / stream.stride * stream.dim());
    for packet in amplitudes.chunks_exact(channels) {
        if let Some(f) = stream.push(packet, None) {
            out.extend_from_slice(&f);
        }
    }
    out
}

/// Per-frame features computed packet by packet, for live streams: the amplitude blocks of
/// [`frame_features`] and, when built with `phase`, the cross-antenna phase blocks of
/// [`csi_frame_features`]. Every `stride` packets [`FeatureStream::push`] returns one frame,
/// equal to what the whole-sequence functions give for that frame.
#[derive(Clone, Debug)]
pub struct FeatureStream {
    antennas: usize,
    subcarriers: usize,
    stride: usize,
    phase: bool,
    /// Packets in the current group.
    count: usize,
    /// Frames returned so far.
    frames: usize,
    mean: Vec<f32>,
    previous: Vec<f32>,
    running: Vec<f32>,
    phase_mean: Vec<[f32; 2]>,
    phase_previous: Vec<[f32; 2]>,
}

impl FeatureStream {
    /// A stream over `antennas x subcarriers` packets, `stride` packets per frame (at least 1).
    pub fn new(antennas: usize, subcarriers: usize, stride: usize, phase: bool) -> Self {
        let channels = antennas * subcarriers;
        let pairs = antennas.saturating_sub(1) * subcarriers;
        FeatureStream {
            antennas,
            subcarriers,
            stride: stride.max(1),
            phase,
            count: 0,
            frames: 0,
            mean: vec![0.0; channels],
            previous: vec![0.0; channels],
            running: vec![0.0; channels],
            phase_mean: vec![[0.0; 2]; if phase { pairs } else { 0 }],
            phase_previous: vec![[0.0; 2]; if phase { pairs } else { 0 }],
        }
    }

    /// Features per frame.
    pub fn dim(&self) -> usize {
        if self.phase {
            csi_feature_dim(self.antennas, self.subcarriers)
        } else {
            BLOCKS * self.antennas * self.subcarriers
        }
    }

    /// Frames returned so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Adds one packet: `amplitudes` (antennas x subcarriers) and, for a phase stream, its
    /// complex CSI `csi` (antennas x subcarriers x (re, im)). Returns a frame every `stride`
    /// packets. A packet of the wrong size is ignored (returns `None`, changes nothing).
    pub fn push(&mut self, amplitudes: &[f32], csi: Option<&[f32]>) -> Option<Vec<f32>> {
        let channels = self.antennas * self.subcarriers;
        if amplitudes.len() != channels {
            return None;
        }
        let csi = match (self.phase, csi) {
            (true, Some(c)) if c.len() == 2 * channels => Some(c),
            (true, _) => return None,
            (false, _) => None,
        };
        let stride = self.stride as f32;
        for (m, a) in self.mean.iter_mut().zip(amplitudes) {
            *m += a / stride;
        }
        if let Some(packet) = csi {
            let s_n = self.subcarriers;
            for a in 0..self.antennas.saturating_sub(1) {
                for s in 0..s_n {
                    let (i, j) = (2 * (a * s_n + s), 2 * ((a + 1) * s_n + s));
                    let (ar, ai, br, bi) = (packet[i], packet[i + 1], packet[j], packet[j + 1]);
                    // z_a conj(z_b)
                    let (re, im) = (ar * br + ai * bi, ai * br - ar * bi);
                    let len = re.hypot(im);
                    if len > 0.0 && len.is_finite() {
                        let m = &mut self.phase_mean[a * s_n + s];
                        m[0] += re / len / stride;
                        m[1] += im / len / stride;
                    }
                }
            }
        }
        self.count += 1;
        if self.count < self.stride {
            return None;
        }
        let f = self.frames;
        let mut out = Vec::with_capacity(self.dim());
        let mut mean = std::mem::replace(&mut self.mean, vec![0.0; channels]);
        mean.iter_mut().for_each(|m| *m = m.max(0.0).ln_1p());
        out.extend_from_slice(&mean);
        for (c, m) in mean.iter().enumerate() {
            out.push(if f == 0 {
                0.0
            } else {
                (m - self.previous[c]).abs()
            });
        }
        for (c, m) in mean.iter().enumerate() {
            self.running[c] += (m - self.running[c]) / (f + 1) as f32;
            out.push(m - self.running[c]);
        }
        self.previous = mean;
        if self.phase {
            let pairs = self.phase_mean.len();
            let mean = std::mem::replace(&mut self.phase_mean, vec![[0.0; 2]; pairs]);
            out.extend(mean.iter().map(|m| m[0]));
            out.extend(mean.iter().map(|m| m[1]));
            for (m, q) in mean.iter().zip(&self.phase_previous) {
                out.push(if f == 0 {
                    0.0
                } else {
                    (m[0] - q[0]).hypot(m[1] - q[1])
                });
            }
            self.phase_previous = mean;
        }
        self.count = 0;
        self.frames += 1;
        Some(out)
    }
}

/// Which per-frame features a model reads (stored in the `.rvne` head config, see
/// [`crate::rvne::HeadConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeatureKind {
    /// [`frame_features`]: `BLOCKS` amplitude blocks per channel.
    Amplitude,
    /// [`csi_frame_features`]: the amplitude blocks, then the cross-antenna phase blocks of
    /// complex CSI (needs at least two receive antennas).
    AmplitudePhase,
    /// [`encoder_frame_features`] of a trained pose model's pooled encoder vector for each
    /// frame of a packed dataset
    /// (the model itself is not in the `.rvne`; the caller names it).
    PoseEncoder,
}

impl FeatureKind {
    /// Code stored in the `.rvne` head config.
    pub fn code(self) -> u8 {
        match self {
            FeatureKind::Amplitude => 0,
            FeatureKind::AmplitudePhase => 1,
            FeatureKind::PoseEncoder => 2,
        }
    }
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(FeatureKind::Amplitude),
            1 => Some(FeatureKind::AmplitudePhase),
            2 => Some(FeatureKind::PoseEncoder),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Amplitude => "amplitude",
            FeatureKind::AmplitudePhase => "amplitude-phase",
            FeatureKind::PoseEncoder => "pose-encoder",
        }
    }
}

/// Features per frame of [`csi_frame_features`] for `antennas x subcarriers` CSI.
pub fn csi_feature_dim(antennas: usize, subcarriers: usize) -> usize {
    (BLOCKS * antennas + PHASE_BLOCKS * antennas.saturating_sub(1)) * subcarriers
}

/// Phase feature blocks per (adjacent antenna pair, subcarrier): cos, sin, change.
pub const PHASE_BLOCKS: usize = 3;

/// Features of complex CSI `csi [packets, antennas, subcarriers, 2]` (re, im):
/// the amplitude blocks of [`frame_features`] over |csi|, then for each adjacent receive-antenna
/// pair (a, a + 1) and subcarrier the conjugate product `z_a · conj(z_{a+1})` of every packet
/// normalised to unit length (the phase difference between the antennas, free of the carrier
/// and sampling offsets every antenna of one radio shares), averaged over the `stride` packets
/// of the frame: its real part, its imaginary part, and the length of its change from the
/// previous frame (0 for the first). Returns
/// `[frames, csi_feature_dim(antennas, subcarriers)]`.
pub fn csi_frame_features(
    csi: &[f32],
    antennas: usize,
    subcarriers: usize,
    stride: usize,
) -> Vec<f32> {
    let channels = antennas * subcarriers;
    if channels == 0 || csi.len() < 2 * channels {
        return Vec::new();
    }
    let packets = csi.len() / (2 * channels);
    let mut stream = FeatureStream::new(antennas, subcarriers, stride.max(1).min(packets), true);
    let mut out = Vec::with_capacity(packets / stream.stride * stream.dim());
    let mut amplitudes = vec![0.0f32; channels];
    for packet in csi.chunks_exact(2 * channels) {
        for (a, z) in amplitudes.iter_mut().zip(packet.chunks_exact(2)) {
            *a = z[0].hypot(z[1]);
        }
        if let Some(f) = stream.push(&amplitudes, Some(packet)) {
            out.extend_from_slice(&f);
        }
    }
    out
}

/// Applies the feature transforms of a head config ([`crate::rvne::TRANSFORM_WINDOW_NORM`],
/// [`crate::rvne::TRANSFORM_RATIO`]) in place to one sequence `[frames, dim]` of amplitude or
/// amplitude-phase features over `antennas x subcarriers` channels (the blocks of
/// [`frame_features`] come first: log amplitude, its change, its centred value):
/// - ratio: per frame and antenna, the log-amplitude and centred blocks minus their mean over
///   the subcarriers (log amplitude ratios to the antenna's geometric mean; a gain common to
///   the subcarriers cancels);
/// - window norm: the log-amplitude block minus its per-channel mean over the whole sequence
///   (a static frequency response cancels; not causal: it needs the whole window).
///
/// Ratio is applied first. Other features (the phase blocks) are left as they are.
pub fn apply_transforms(
    frames: &mut [f32],
    dim: usize,
    antennas: usize,
    subcarriers: usize,
    transforms: u16,
) {
    let c = antennas * subcarriers;
    if c == 0 || dim < BLOCKS * c || transforms == 0 {
        return;
    }
    if transforms & crate::rvne::TRANSFORM_RATIO != 0 {
        for frame in frames.chunks_exact_mut(dim) {
            for block in [0, 2] {
                for a in 0..antennas {
                    let row =
                        &mut frame[block * c + a * subcarriers..block * c + (a + 1) * subcarriers];
                    let m = row.iter().sum::<f32>() / subcarriers as f32;
                    row.iter_mut().for_each(|v| *v -= m);
                }
            }
        }
    }
    if transforms & crate::rvne::TRANSFORM_WINDOW_NORM != 0 {
        let n = frames.len() / dim;
        if n == 0 {
            return;
        }
        let mut mean = vec![0.0f32; c];
        for frame in frames.chunks_exact(dim) {
            mean.iter_mut()
                .zip(&frame[..c])
                .for_each(|(m, v)| *m += v / n as f32);
        }
        for frame in frames.chunks_exact_mut(dim) {
            frame[..c].iter_mut().zip(&mean).for_each(|(v, m)| *v -= m);
        }
    }
}

/// Feature blocks per value of [`encoder_frame_features`].
pub const ENCODER_BLOCKS: usize = 3;

/// Per-frame features from per-frame vectors `z [frames, dim]` (a pose model's pooled encoder
/// output): the vector, its change from the previous frame (0 for the first), and the vector
/// minus its running mean so far (causal). The last two carry the motion and take away what is
/// constant over a sequence (the person's build and place). Returns `[frames, 3 * dim]`.
pub fn encoder_frame_features(z: &[f32], dim: usize) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(z.len() * ENCODER_BLOCKS);
    let mut running = vec![0.0f32; dim];
    for (f, row) in z.chunks_exact(dim).enumerate() {
        out.extend_from_slice(row);
        for (c, v) in row.iter().enumerate() {
            out.push(if f == 0 {
                0.0
            } else {
                v - z[(f - 1) * dim + c]
            });
        }
        for (r, v) in running.iter_mut().zip(row) {
            *r += (v - *r) / (f + 1) as f32;
            out.push(v - *r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn averages_and_differences() {
        // 5 packets x 2 channels, stride 2 -> 2 frames (last packet dropped).
        let a = [1.0, 10.0, 3.0, 10.0, 6.0, 20.0, 6.0, 40.0, 99.0, 99.0];
        let f = super::frame_features(&a, 2, 2);
        let l = |x: f32| x.ln_1p();
        let (m0, m1) = ((l(2.0) + l(6.0)) / 2.0, (l(10.0) + l(30.0)) / 2.0);
        let want = [
            [l(2.0), l(10.0), 0.0, 0.0, 0.0, 0.0],
            [
                l(6.0),
                l(30.0),
                l(6.0) - l(2.0),
                l(30.0) - l(10.0),
                l(6.0) - m0,
                l(30.0) - m1,
            ],
        ]
        .concat();
        assert_eq!(f.len(), want.len());
        for (got, want) in f.iter().zip(&want) {
            assert!((got - want).abs() < 1e-6, "{f:?}");
        }
        assert_eq!(
            super::frame_features(&a[..2], 2, 4),
            vec![l(1.0), l(10.0), 0.0, 0.0, 0.0, 0.0]
        );
        assert!(super::frame_features(&[], 2, 4).is_empty());
    }

    #[test]
    fn transforms_cancel_gains_and_static_responses() {
        use crate::rvne::{TRANSFORM_RATIO, TRANSFORM_WINDOW_NORM};
        // 6 packets x (1 antenna x 3 subcarriers), stride 1.
        let a: Vec<f32> = (0..18).map(|i| 20.0 + ((i * 7) % 5) as f32).collect();
        let base = super::frame_features(&a, 3, 1);
        let dim = super::BLOCKS * 3;
        // Ratio: a gain common to the subcarriers (per frame) cancels (up to ln(1 + a) vs ln a).
        let gained: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i / 3) as f32 * 0.3))
            .collect();
        let (mut x, mut y) = (base.clone(), super::frame_features(&gained, 3, 1));
        super::apply_transforms(&mut x, dim, 1, 3, TRANSFORM_RATIO);
        super::apply_transforms(&mut y, dim, 1, 3, TRANSFORM_RATIO);
        for f in 0..6 {
            let row = &x[f * dim..f * dim + 3];
            assert!(row.iter().sum::<f32>().abs() < 1e-5);
            for k in 0..3 {
                assert!(
                    (x[f * dim + k] - y[f * dim + k]).abs() < 0.01,
                    "{x:?} {y:?}"
                );
            }
        }
        // Window norm: a static response per subcarrier cancels in the log-amplitude block.
        let shaped: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v * [0.5, 1.0, 2.0][i % 3])
            .collect();
        let (mut x, mut y) = (base.clone(), super::frame_features(&shaped, 3, 1));
        super::apply_transforms(&mut x, dim, 1, 3, TRANSFORM_WINDOW_NORM);
        super::apply_transforms(&mut y, dim, 1, 3, TRANSFORM_WINDOW_NORM);
        for k in 0..3 {
            let col: f32 = (0..6).map(|f| x[f * dim + k]).sum();
            assert!(col.abs() < 1e-4);
        }
        for (p, q) in x.iter().zip(&y).step_by(1).take(3) {
            assert!((p - q).abs() < 0.02, "{p} {q}");
        }
        // Without transforms nothing changes.
        let mut z = base.clone();
        super::apply_transforms(&mut z, dim, 1, 3, 0);
        assert_eq!(z, base);
    }

    #[test]
    fn encoder_blocks() {
        let z = [1.0, -2.0, 3.0, 0.0, 8.0, 1.0];
        let f = super::encoder_frame_features(&z, 2);
        let want = [
            [1.0, -2.0, 0.0, 0.0, 0.0, 0.0],
            [3.0, 0.0, 2.0, 2.0, 1.0, 1.0],
            // Running means after three frames: (1 + 3 + 8) / 3 = 4 and (-2 + 0 + 1) / 3.
            [8.0, 1.0, 5.0, 1.0, 4.0, 1.0 + 1.0 / 3.0],
        ]
        .concat();
        assert_eq!(f.len(), want.len());
        for (a, b) in f.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{f:?}");
        }
    }

    #[test]
    fn phase_difference_blocks() {
        // 2 antennas x 1 subcarrier, 4 packets, stride 2: antenna 1 lags antenna 0 by 90
        // degrees in the first frame and by 180 in the second; amplitudes differ.
        let c = |r: f32, deg: f32| [r * deg.to_radians().cos(), r * deg.to_radians().sin()];
        let packets = [
            [c(2.0, 10.0), c(1.0, -80.0)],
            [c(3.0, 50.0), c(4.0, -40.0)],
            [c(2.0, 0.0), c(5.0, 180.0)],
            [c(1.0, 30.0), c(1.0, 210.0)],
        ];
        let csi: Vec<f32> = packets.iter().flatten().flatten().copied().collect();
        let f = super::csi_frame_features(&csi, 2, 1, 2);
        let dim = super::csi_feature_dim(2, 1);
        assert_eq!(dim, 3 * 2 + 3);
        assert_eq!(f.len(), 2 * dim);
        // The amplitude blocks are those of |csi|.
        let amps = [2.0, 1.0, 3.0, 4.0, 2.0, 5.0, 1.0, 1.0];
        let a = super::frame_features(&amps, 2, 2);
        assert_eq!(&f[..6], &a[..6]);
        assert_eq!(&f[dim..dim + 6], &a[6..12]);
        // z0 conj(z1) has phase +90 degrees, then 180 (unit length, whatever the amplitudes).
        let close = |x: f32, y: f32| (x - y).abs() < 1e-5;
        assert!(close(f[6], 0.0) && close(f[7], 1.0) && f[8] == 0.0, "{f:?}");
        let g = &f[dim..];
        assert!(close(g[6], -1.0) && close(g[7], 0.0), "{g:?}");
        assert!(
            close(g[8], 2f32.sqrt()),
            "change from (0, 1) to (-1, 0): {g:?}"
        );
    }
}
