//! Per-frame features of a CSI capture for the activity classifier: amplitudes averaged over
//! groups of `stride` packets (to ~7.5 frames/s for a 30 packet/s capture) and mapped to
//! ln(1 + a), followed by the absolute change of each value from the previous frame (motion
//! energy) and by each value minus its running mean so far (causal, so streaming sees the same
//! features as whole-sequence classification).

/// Use ln(1 + amplitude) (so a gain change shifts rather than scales the features).
const LOG_AMPLITUDE: bool = true;
/// Also give each value minus its running mean over the frames so far (causal).
const CENTRED: bool = true;
/// Feature blocks per channel.
pub const BLOCKS: usize = if CENTRED { 3 } else { 2 };

/// Frames averaged into one feature frame.
pub const DEFAULT_STRIDE: usize = 4;

/// `amplitudes`: `[packets, channels]` row-major (channels = antennas x subcarriers).
/// Returns `[packets / stride, BLOCKS * channels]` (a trailing partial group is dropped; a capture
/// shorter than `stride` packets gives one frame from what it has).
pub fn frame_features(amplitudes: &[f32], channels: usize, stride: usize) -> Vec<f32> {
    if channels == 0 || amplitudes.len() < channels {
        return Vec::new();
    }
    let packets = amplitudes.len() / channels;
    let stride = stride.max(1).min(packets);
    let frames = packets / stride;
    let mut out = Vec::with_capacity(frames * 2 * channels);
    let mut previous = vec![0.0f32; channels];
    let mut running = vec![0.0f32; channels];
    for f in 0..frames {
        let mut mean = vec![0.0f32; channels];
        for p in f * stride..(f + 1) * stride {
            for (m, a) in mean
                .iter_mut()
                .zip(&amplitudes[p * channels..(p + 1) * channels])
            {
                *m += a / stride as f32;
            }
        }
        if LOG_AMPLITUDE {
            mean.iter_mut().for_each(|m| *m = m.max(0.0).ln_1p());
        }
        out.extend_from_slice(&mean);
        for (c, m) in mean.iter().enumerate() {
            out.push(if f == 0 { 0.0 } else { (m - previous[c]).abs() });
        }
        if CENTRED {
            for (c, m) in mean.iter().enumerate() {
                running[c] += (m - running[c]) / (f + 1) as f32;
                out.push(m - running[c]);
            }
        }
        previous = mean;
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
}
