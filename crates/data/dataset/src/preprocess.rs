//! The official MM-Fi toolbox CSI preprocessing, shared by the MM-Fi import, the
//! simulator and the capture windowing stage so that all three feed the model alike.
//!
//! For one frame of amplitudes laid out `[A, S, P]` (antennas, subcarriers, packets):
//! 1. `inf` (either sign) becomes NaN;
//! 2. for each packet `p`, the NaNs of the slice `[:, :, p]` become the mean of that
//!    slice's finite values;
//! 3. the whole frame is min-max normalised: `(x - min) / (max - min)`.
//!
//! Where the toolbox would produce NaN, csipose repairs by a fixed rule and reports it:
//! - a packet slice with no finite value takes the mean of every finite value in the
//!   frame ([`Repair::EmptyPacket`]); a frame with no finite value at all is refused
//!   ([`Refusal::NoFiniteValue`]) and the caller skips it;
//! - a constant frame (max = min after filling) becomes all zeros ([`Repair::ConstantFrame`]).

/// A repair applied to a frame where the toolbox would have produced NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Repair {
    /// At least one packet had no finite value; it was filled with the frame's finite mean.
    EmptyPacket,
    /// Every value was equal, so min-max is 0/0; the frame was set to zeros.
    ConstantFrame,
}

/// Why a frame cannot be preprocessed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Not a single finite value in the frame.
    NoFiniteValue,
    /// The buffer is not `a * s * p` long.
    WrongLength,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoFiniteValue => write!(f, "no finite CSI value in the frame"),
            Refusal::WrongLength => write!(f, "frame length does not match its shape"),
        }
    }
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repair::EmptyPacket => {
                write!(f, "packet with no finite value filled with the frame mean")
            }
            Repair::ConstantFrame => write!(f, "constant frame set to zeros"),
        }
    }
}

/// What preprocessing did to one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Values that were NaN or inf and were filled.
    pub filled: usize,
    /// Repairs beyond the toolbox's own rule (empty at most once per kind).
    pub repairs: Vec<Repair>,
}

/// Preprocesses one `[a, s, p]` row-major frame in place, exactly as the MM-Fi toolbox does
/// (computed in f64), with the repairs documented in this module.
pub fn preprocess_frame(
    frame: &mut [f64],
    a: usize,
    s: usize,
    p: usize,
) -> Result<Report, Refusal> {
    if frame.len() != a * s * p || frame.is_empty() {
        return Err(Refusal::WrongLength);
    }
    let mut report = Report::default();
    let (mut all_sum, mut all_n) = (0.0f64, 0usize);
    for v in frame.iter_mut() {
        if v.is_infinite() {
            *v = f64::NAN;
        }
        if v.is_finite() {
            all_sum += *v;
            all_n += 1;
        }
    }
    if all_n == 0 {
        return Err(Refusal::NoFiniteValue);
    }
    let frame_mean = all_sum / all_n as f64;
    for pk in 0..p {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for i in (pk..frame.len()).step_by(p) {
            if frame[i].is_finite() {
                sum += frame[i];
                n += 1;
            }
        }
        let fill = if n == 0 {
            if !report.repairs.contains(&Repair::EmptyPacket) {
                report.repairs.push(Repair::EmptyPacket);
            }
            frame_mean
        } else {
            sum / n as f64
        };
        for i in (pk..frame.len()).step_by(p) {
            if frame[i].is_nan() {
                frame[i] = fill;
                report.filled += 1;
            }
        }
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in frame.iter() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let range = hi - lo;
    if range > 0.0 && range.is_finite() {
        for v in frame.iter_mut() {
            *v = (*v - lo) / range;
        }
    } else {
        frame.iter_mut().for_each(|v| *v = 0.0);
        report.repairs.push(Repair::ConstantFrame);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_frame() {
        // a=1, s=3, p=2: columns are packets.
        // packet 0: [1, inf, 3] -> NaN filled with mean(1, 3) = 2
        // packet 1: [4, 5, NaN] -> filled with 4.5
        let mut f = vec![1.0, 4.0, f64::INFINITY, 5.0, 3.0, f64::NAN];
        let r = preprocess_frame(&mut f, 1, 3, 2).unwrap();
        assert_eq!(r.filled, 2);
        assert!(r.repairs.is_empty());
        // values now [1,4,2,5,3,4.5], min 1, max 5
        let want = [0.0, 0.75, 0.25, 1.0, 0.5, 0.875];
        for (g, w) in f.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{f:?}");
        }
    }

    #[test]
    fn empty_packet_is_repaired_not_nan() {
        let mut f = vec![1.0, f64::NAN, 3.0, f64::NEG_INFINITY];
        let r = preprocess_frame(&mut f, 1, 2, 2).unwrap();
        assert_eq!(r.repairs, vec![Repair::EmptyPacket]);
        // packet 1 filled with frame mean 2 -> [1,2,3,2] -> [0, .5, 1, .5]
        assert_eq!(f, vec![0.0, 0.5, 1.0, 0.5]);
    }

    #[test]
    fn constant_and_hopeless_frames() {
        let mut f = vec![7.0; 6];
        let r = preprocess_frame(&mut f, 1, 3, 2).unwrap();
        assert_eq!(r.repairs, vec![Repair::ConstantFrame]);
        assert!(f.iter().all(|&v| v == 0.0));
        let mut g = vec![f64::NAN, f64::INFINITY];
        assert_eq!(
            preprocess_frame(&mut g, 1, 1, 2),
            Err(Refusal::NoFiniteValue)
        );
        assert_eq!(
            preprocess_frame(&mut [0.0; 5], 1, 3, 2),
            Err(Refusal::WrongLength)
        );
    }
}
