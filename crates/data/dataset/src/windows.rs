//! The windowing stage from captures to model input: a stream of per-packet amplitudes
//! `[antennas_in, subcarriers_in]` becomes `[A, S, P]` windows for a [`HardwareProfile`],
//! with the same preprocessing as the MM-Fi import ([`preprocess_frame`]).
//!
//! - Antennas: the first `A` receive antennas are kept; a packet with fewer is skipped.
//! - Subcarriers: kept as they are when the counts agree, otherwise linearly interpolated
//!   at `S` evenly spaced positions over the input's subcarrier range (which selects every
//!   k-th subcarrier when `S_in - 1` is a multiple of `S - 1`).
//! - Packets: a window is `P` consecutive packets; windows start every `stride` packets.
//! - Live streams (`csipose serve`) resample packets by timestamp instead ([`window_at_times`]):
//!   each of the `P` window positions is linearly interpolated in time between the two packets
//!   around it, so an uneven or lossy packet rate still fills the window the model expects.
//! - Each window is preprocessed as one MM-Fi frame (non-finite values filled per packet,
//!   then min-max over the window) and stored as f32.

use crate::preprocess::{preprocess_frame, Refusal, Report};
use crate::HardwareProfile;
use std::collections::VecDeque;

/// Linearly interpolates `src` (one antenna's subcarriers) to `n` values; identity when the
/// lengths agree. Empty input gives NaNs (filled later by the preprocessing).
pub fn resample_subcarriers(src: &[f64], n: usize) -> Vec<f64> {
    if src.len() == n {
        return src.to_vec();
    }
    if src.is_empty() {
        return vec![f64::NAN; n];
    }
    if src.len() == 1 || n == 1 {
        return vec![src[0]; n];
    }
    let scale = (src.len() - 1) as f64 / (n - 1) as f64;
    (0..n)
        .map(|j| {
            let x = j as f64 * scale;
            let i = (x.floor() as usize).min(src.len() - 2);
            let t = x - i as f64;
            if t == 0.0 {
                src[i]
            } else {
                src[i] * (1.0 - t) + src[i + 1] * t
            }
        })
        .collect()
}

/// Builds one `[values, P]` row-major window (`values` = A·S, packet axis last, as the model's
/// `[A, S, P]` frame) from packets at increasing `times` (seconds; each packet `values` long, in
/// profile shape already, see [`resample_subcarriers`]) sampled at the `targets` times (`P`
/// increasing values): each target takes the linear interpolation between the packets just
/// before and just after it, the first or last packet outside their range. `None` when there
/// is no packet, the lengths disagree, or a time is not finite.
pub fn window_at_times(times: &[f64], packets: &[&[f64]], targets: &[f64]) -> Option<Vec<f64>> {
    let n = packets.len();
    if n == 0 || times.len() != n || targets.iter().chain(times).any(|t| !t.is_finite()) {
        return None;
    }
    let values = packets[0].len();
    if packets.iter().any(|p| p.len() != values) {
        return None;
    }
    let p = targets.len();
    let mut out = vec![0.0f64; values * p];
    let mut j = 0usize; // first packet with time >= target (targets ascend)
    for (k, &t) in targets.iter().enumerate() {
        while j < n && times[j] < t {
            j += 1;
        }
        let (lo, hi, w) = if j == 0 {
            (0, 0, 0.0)
        } else if j == n {
            (n - 1, n - 1, 0.0)
        } else {
            let (t0, t1) = (times[j - 1], times[j]);
            let w = if t1 > t0 { (t - t0) / (t1 - t0) } else { 1.0 };
            (j - 1, j, w)
        };
        for i in 0..values {
            let (a, b) = (packets[lo][i], packets[hi][i]);
            out[i * p + k] = if w == 0.0 { a } else { a * (1.0 - w) + b * w };
        }
    }
    Some(out)
}

/// One `[A, S, P]` window ready for a packed dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Row-major `[A, S, P]`, min-max normalised.
    pub x: Vec<f32>,
    /// Index (0-based) of the window's first packet among the accepted packets.
    pub first_packet: usize,
    /// What the preprocessing filled or repaired.
    pub report: Report,
}

/// Why a packet or window was left out.
#[derive(Clone, Debug, PartialEq)]
pub enum Skip {
    /// The packet has fewer receive antennas than the profile.
    TooFewAntennas { have: usize, need: usize },
    /// The amplitude buffer is not `antennas * subcarriers` long.
    WrongLength,
    /// The window could not be preprocessed.
    Refused(Refusal),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::TooFewAntennas { have, need } => {
                write!(
                    f,
                    "packet has {have} receive antennas, the profile needs {need}"
                )
            }
            Skip::WrongLength => write!(f, "amplitude buffer does not match its shape"),
            Skip::Refused(r) => write!(f, "window refused: {r}"),
        }
    }
}

/// Turns a packet stream into windows. Push packets; complete windows come out.
pub struct Windower {
    profile: HardwareProfile,
    stride: usize,
    /// Packets in profile shape `[A][S]`, oldest first.
    buffer: VecDeque<Vec<f64>>,
    accepted: usize,
    next_start: usize,
}

impl Windower {
    /// `stride` packets between window starts (`profile.packets` for disjoint windows).
    pub fn new(profile: HardwareProfile, stride: usize) -> Self {
        Windower {
            stride: stride.max(1),
            buffer: VecDeque::new(),
            accepted: 0,
            next_start: 0,
            profile,
        }
    }

    pub fn profile(&self) -> &HardwareProfile {
        &self.profile
    }

    /// Adds one packet of amplitudes laid out `[antennas][subcarriers]`. Returns the window
    /// this packet completes, if any; `Err` says why the packet or window was skipped.
    pub fn push(
        &mut self,
        antennas: usize,
        subcarriers: usize,
        amplitudes: &[f64],
    ) -> Result<Option<Window>, Skip> {
        let (a, s, p) = (
            self.profile.antennas,
            self.profile.subcarriers,
            self.profile.packets,
        );
        if amplitudes.len() != antennas * subcarriers {
            return Err(Skip::WrongLength);
        }
        if antennas < a {
            return Err(Skip::TooFewAntennas {
                have: antennas,
                need: a,
            });
        }
        let mut packet = Vec::with_capacity(a * s);
        for ant in 0..a {
            let row = &amplitudes[ant * subcarriers..(ant + 1) * subcarriers];
            packet.extend(resample_subcarriers(row, s));
        }
        self.buffer.push_back(packet);
        self.accepted += 1;
        // Drop packets that no future window needs.
        while self.buffer.len() > p {
            self.buffer.pop_front();
        }
        let first = self.accepted - self.buffer.len();
        if self.buffer.len() < p || first != self.next_start {
            return Ok(None);
        }
        self.next_start += self.stride;
        let mut frame = vec![0.0f64; a * s * p];
        for (pk, packet) in self.buffer.iter().enumerate() {
            for (i, v) in packet.iter().enumerate() {
                frame[i * p + pk] = *v;
            }
        }
        let report = preprocess_frame(&mut frame, a, s, p).map_err(Skip::Refused)?;
        Ok(Some(Window {
            x: frame.iter().map(|&v| v as f32).collect(),
            first_packet: first,
            report,
        }))
    }
}

/// A profile shaped like a capture: `antennas x subcarriers`, `packets` per window.
pub fn capture_profile(
    name: &str,
    antennas: usize,
    subcarriers: usize,
    packets: usize,
    band: &str,
    bandwidth_mhz: f64,
) -> HardwareProfile {
    HardwareProfile {
        name: name.into(),
        antennas,
        subcarriers,
        packets,
        band: band.into(),
        bandwidth_mhz,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_at_times_interpolates_between_packets() {
        let a = [0.0, 10.0];
        let b = [1.0, 20.0];
        let c = [3.0, 40.0];
        let times = [0.0, 0.1, 0.3];
        let w = window_at_times(&times, &[&a, &b, &c], &[-0.1, 0.05, 0.2, 0.3, 0.5]).unwrap();
        // [values=2, P=5], packet axis last.
        let want = [0.0, 0.5, 2.0, 3.0, 3.0, 10.0, 15.0, 30.0, 40.0, 40.0];
        assert_eq!(w.len(), want.len());
        for (g, e) in w.iter().zip(want) {
            assert!((g - e).abs() < 1e-12, "{w:?}");
        }
        assert!(window_at_times(&times, &[&a, &b], &[0.0]).is_none());
        assert!(window_at_times(&[], &[], &[0.0]).is_none());
        assert!(window_at_times(&[0.0], &[&a], &[f64::NAN]).is_none());
    }

    #[test]
    fn resampling_keeps_endpoints_and_interpolates() {
        assert_eq!(
            resample_subcarriers(&[1.0, 2.0, 3.0], 3),
            vec![1.0, 2.0, 3.0]
        );
        assert_eq!(
            resample_subcarriers(&[0.0, 10.0], 5),
            vec![0.0, 2.5, 5.0, 7.5, 10.0]
        );
        // 5 -> 3 selects every second subcarrier.
        assert_eq!(
            resample_subcarriers(&[1.0, 9.0, 2.0, 9.0, 3.0], 3),
            vec![1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn windows_are_disjoint_or_strided_and_normalised() {
        let profile = capture_profile("t", 2, 3, 4, "5GHz", 20.0);
        let mut w = Windower::new(profile.clone(), 4);
        let mut out = Vec::new();
        for k in 0..10 {
            // 3 antennas in, 2 kept; 3 subcarriers.
            let amp: Vec<f64> = (0..9).map(|i| (k * 9 + i) as f64).collect();
            if let Some(win) = w.push(3, 3, &amp).unwrap() {
                out.push(win);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].first_packet, 0);
        assert_eq!(out[1].first_packet, 4);
        let x = &out[0].x;
        assert_eq!(x.len(), 2 * 3 * 4);
        // [a=0, s=0, p] = packet p's value 9p -> min 0 at p=0; max is a=1,s=2,p=3 = 27+5 = 32.
        assert_eq!(x[0], 0.0);
        assert_eq!(x[2 * 3 * 4 - 1], 1.0);
        assert!((x[1] - 9.0 / 32.0).abs() < 1e-7);
        let mut w = Windower::new(profile, 2);
        let n = (0..10)
            .filter_map(|k| w.push(2, 3, &[k as f64; 6]).unwrap())
            .count();
        // starts 0, 2, 4, 6 (a window needs 4 packets: the last start is 6).
        assert_eq!(n, 4);
    }

    #[test]
    fn too_few_antennas_is_skipped_not_fatal() {
        let mut w = Windower::new(capture_profile("t", 3, 2, 1, "5GHz", 20.0), 1);
        assert_eq!(
            w.push(1, 2, &[1.0, 2.0]),
            Err(Skip::TooFewAntennas { have: 1, need: 3 })
        );
        assert!(w
            .push(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .unwrap()
            .is_some());
    }
}
