//! Streaming presence and motion detection on raw CSI amplitudes: one packet in, one
//! [`Reading`] out, O(subcarriers) work per packet and no allocation after
//! [`PresenceDetector::new`].
//!
//! How it works:
//! 1. Each packet's amplitudes are divided by their mean, which removes the receiver's gain
//!    (ESP32 chips without AGC lock change it from packet to packet).
//! 2. Each subcarrier's normalised amplitude is median-filtered over its last few packets
//!    (`median_filter`), which removes single-packet glitches.
//! 3. Each subcarrier's value is then low-pass filtered by a moving average over its last
//!    `lowpass` packets (1 = off). Human movement changes the channel at 0.5–10 Hz while the
//!    per-packet noise of the receiver (quantisation, gain steps on chips without AGC lock) is
//!    broadband: averaging k packets divides the noise variance by about k and keeps most of
//!    the motion's (ESPectre's documentation reports the same for its low-pass filter).
//! 4. For every subcarrier the variance of that normalised amplitude over the last
//!    `window` packets is kept up to date (running sums over a ring buffer). Optionally
//!    (`short_window` > 0) a second variance over only the newest `short_window` of those
//!    packets is kept as well (running sums over the same ring, no extra buffer).
//! 5. Calibration: once the window is full, the detector watches `calib_packets` packets. The
//!    room counts as still when the medians of the per-packet mean variance over blocks of
//!    `calib_block` packets differ by at most `calib_stability` (max/min). A person moving
//!    makes them differ, and the detector refuses that stretch (counted in
//!    [`PresenceDetector::calibration_refusals`]) and tries the next one. On a still stretch
//!    it stores each subcarrier's median variance and the subcarriers strong enough to use.
//!    A room that never holds that still: after `calib_patience` refused stretches in a row
//!    the detector calibrates on the quietest one it saw (the one whose noisiest block median
//!    is lowest, as ESPectre picks its quietest baseline window), and says so
//!    ([`PresenceDetector::calibrated_on_fallback`]); 0 = keep refusing.
//! 6. Running: the motion score of a packet is the mean over usable subcarriers of (variance /
//!    its calibration median). The threshold is the largest score seen during calibration
//!    times `margin`; above it is motion. With a short window, its score (short-window
//!    variance over the same calibration medians) has its own threshold, its largest score
//!    during the same calibration stretch times `margin`, and a packet is motion when either
//!    score is above its threshold: a movement's onset shows in the short window after a few
//!    packets, while the long window still mostly holds the still room. Optionally
//!    (`level_window` > 0, off by default) a third path reads a less-delayed signal: per
//!    subcarrier the median of its newest `level_median` normalised amplitudes (no low-pass),
//!    the mean of the newest `level_window` of those minus the long window's mean, squared and
//!    divided by that subcarrier's calibration median of the same quantity; combined over the
//!    usable subcarriers by their mean or by their `level_quantile` (0.5 = at least half of them
//!    must see it, so a burst on a few subcarriers is not motion), with its own threshold (its
//!    largest calibration score × `margin`). A change of level shows there 1–3 packets after it
//!    happens. A person counts as
//!    present while motion was seen in the last `hold_packets` packets: the detector senses
//!    movement, so a person who stays perfectly still is reported absent after the hold time.
//!
//! The defaults and how they were chosen are in BENCHMARKS.md ("Presence and motion on
//! ESPectre"); [`eval`] holds the evaluation protocol on labelled recordings.

pub mod eval;

/// Settings of the detector. Counts are in packets.
#[derive(Clone, Debug, PartialEq)]
pub struct PresenceConfig {
    /// Packets in the moving-variance window.
    pub window: usize,
    /// Packets in a second, short moving-variance window over the same filtered values
    /// (0 = off; otherwise 2 to `window` − 1). It has its own threshold, taken from the same
    /// calibration stretch (its largest calibration score × `margin`), and a packet is motion
    /// when either window is above its threshold: the short window sees a movement's onset
    /// after a few packets, where the long one still mostly holds the still room.
    pub short_window: usize,
    /// Packets of still room needed to calibrate.
    pub calib_packets: usize,
    /// Block length for the stillness test (divides `calib_packets`).
    pub calib_block: usize,
    /// Largest allowed max/min ratio of the block medians during calibration (> 1).
    pub calib_stability: f32,
    /// Refused stretches in a row after which the quietest one seen is used (0 = never).
    pub calib_patience: usize,
    /// Threshold = largest calibration score × margin (≥ 1).
    pub margin: f32,
    /// Packets a person stays "present" after the last motion.
    pub hold_packets: usize,
    /// Each subcarrier's normalised amplitude is replaced by the median of its last
    /// `median_filter` values (odd, 1 = off) before the variance: single-packet glitches
    /// (gain steps, bad packets) then do not read as motion.
    pub median_filter: usize,
    /// Moving-average low-pass length per subcarrier after the median filter (1 = off, at
    /// most 255).
    pub lowpass: usize,
    /// Packets in the level window (0 = off; otherwise 1 to `window` − 1): a fast onset path
    /// that reads a less-delayed signal (the median of each subcarrier's newest
    /// `level_median` normalised amplitudes, no low-pass). Its score is the squared difference
    /// between the mean of the newest `level_window` of those values and the long window's
    /// mean, per subcarrier relative to that subcarrier's calibration median of the same
    /// quantity, averaged over the usable subcarriers; its threshold is its largest
    /// calibration score × `margin`, and a packet is motion when any window is above its
    /// threshold. A change of level (a person walking in) shows here one or two packets after
    /// it happens, where the filtered windows need several.
    pub level_window: usize,
    /// Median filter length (odd, 1 = off, at most 31) of the level window's signal.
    pub level_median: usize,
    /// How the level window's per-subcarrier values are combined: 0 = their mean; q in
    /// (0, 1) = their q-quantile over the used subcarriers (0.5 = the median: at least half
    /// of them must see the change, so a burst on a few subcarriers does not read as motion).
    pub level_quantile: f32,
    /// A subcarrier is used when its mean normalised amplitude during calibration is at least
    /// this fraction of the average (null and guard subcarriers are left out).
    pub min_relative_amplitude: f32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            window: 100,
            short_window: 10,
            calib_packets: 300,
            calib_block: 100,
            calib_stability: 1.5,
            calib_patience: 5,
            margin: 3.0,
            hold_packets: 300,
            median_filter: 7,
            lowpass: 5,
            level_window: 0,
            level_median: 3,
            level_quantile: 0.0,
            min_relative_amplitude: 0.1,
        }
    }
}

/// What is wrong with a configuration or an input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PresenceError {
    #[error("presence: {0}")]
    Config(String),
}

impl PresenceConfig {
    /// Checks every field's range; the message names the field and the range.
    pub fn validate(&self) -> Result<(), PresenceError> {
        let bad = |m: String| Err(PresenceError::Config(m));
        if !(2..=10_000).contains(&self.window) {
            return bad(format!("window {} outside 2..=10000 packets", self.window));
        }
        if self.short_window != 0 && !(2..self.window).contains(&self.short_window) {
            return bad(format!(
                "short_window {} must be 0 (off) or 2..{} (below window)",
                self.short_window, self.window
            ));
        }
        if !(1..=10_000).contains(&self.calib_block) {
            return bad(format!(
                "calib_block {} outside 1..=10000 packets",
                self.calib_block
            ));
        }
        if self.calib_packets < 2 * self.calib_block
            || self.calib_packets > 100_000
            || !self.calib_packets.is_multiple_of(self.calib_block)
        {
            return bad(format!(
                "calib_packets {} must be a multiple of calib_block {} with at least 2 blocks and at most 100000 packets",
                self.calib_packets, self.calib_block
            ));
        }
        if !(self.calib_stability.is_finite() && self.calib_stability > 1.0) {
            return bad(format!(
                "calib_stability {} must be finite and > 1",
                self.calib_stability
            ));
        }
        if !(self.margin.is_finite() && (1.0..=100.0).contains(&self.margin)) {
            return bad(format!("margin {} outside 1..=100", self.margin));
        }
        if self.hold_packets > 1_000_000 {
            return bad(format!("hold_packets {} above 1000000", self.hold_packets));
        }
        if self.median_filter.is_multiple_of(2) || self.median_filter > 31 {
            return bad(format!(
                "median_filter {} must be odd and at most 31",
                self.median_filter
            ));
        }
        if self.calib_patience > 1_000_000 {
            return bad(format!(
                "calib_patience {} above 1000000 stretches",
                self.calib_patience
            ));
        }
        if self.level_window >= self.window {
            return bad(format!(
                "level_window {} must be 0 (off) or 1..{} (below window)",
                self.level_window, self.window
            ));
        }
        if self.level_median.is_multiple_of(2) || self.level_median > 31 {
            return bad(format!(
                "level_median {} must be odd and at most 31",
                self.level_median
            ));
        }
        if !(self.level_quantile.is_finite() && (0.0..1.0).contains(&self.level_quantile)) {
            return bad(format!(
                "level_quantile {} outside [0, 1) (0 = mean)",
                self.level_quantile
            ));
        }
        if !(1..=255).contains(&self.lowpass) {
            return bad(format!("lowpass {} outside 1..=255 packets", self.lowpass));
        }
        if !(self.min_relative_amplitude.is_finite()
            && (0.0..1.0).contains(&self.min_relative_amplitude))
        {
            return bad(format!(
                "min_relative_amplitude {} outside [0, 1)",
                self.min_relative_amplitude
            ));
        }
        Ok(())
    }
}

/// Where the detector is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Filling the moving-variance window.
    WarmingUp,
    /// Looking for a still stretch to calibrate on.
    Calibrating,
    /// Calibrated: motion and presence are meaningful.
    Running,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::WarmingUp => "warming-up",
            Phase::Calibrating => "calibrating",
            Phase::Running => "running",
        }
    }
}

/// The detector's verdict on one packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub phase: Phase,
    /// Motion in the current window (false until calibrated).
    pub motion: bool,
    /// Motion within the last `hold_packets` packets (false until calibrated).
    pub present: bool,
    /// Motion score divided by the threshold (1.0 = on the threshold; 0 until calibrated);
    /// with a short window, the larger of the two windows' score/threshold.
    pub ratio: f32,
    /// How far the score is from the threshold, 0 (on it) to 1 (far from it):
    /// `tanh(2 |ln ratio|)`; 0 until calibrated.
    pub confidence: f32,
}

/// The streaming detector for one CSI stream of a fixed subcarrier count.
pub struct PresenceDetector {
    cfg: PresenceConfig,
    n: usize,
    // Ring buffer of normalised amplitudes [window][n] and running sums per subcarrier.
    ring: Vec<f32>,
    head: usize,
    filled: usize,
    sum: Vec<f64>,
    sum2: Vec<f64>,
    var: Vec<f32>,
    // Short window (`short_window` > 0): running sums over the newest `short_window` values
    // of the same ring, and their variance.
    ssum: Vec<f64>,
    ssum2: Vec<f64>,
    svar: Vec<f32>,
    // Calibration buffers: variances [calib_packets][n] and mean variance per packet; the
    // current packet's amplitudes.
    cal_var: Vec<f32>,
    cal_score: Vec<f32>,
    // Short-window variances of the calibration stretch [calib_packets][n] (empty when off).
    cal_svar: Vec<f32>,
    amp: Vec<f32>,
    unusable: u64,
    // Level window (`level_window` > 0): ring [level_window][n] of the level signal (median
    // of the newest `level_median` normalised amplitudes), its running sums, this packet's
    // squared level difference per subcarrier, and the calibration stretch's ones
    // [calib_packets][n] (empty when off).
    lv_ring: Vec<f32>,
    lv_sum: Vec<f64>,
    lv_head: usize,
    lv_filled: usize,
    lvl: Vec<f32>,
    cal_lvl: Vec<f32>,
    // Scratch for the level quantile over subcarriers [n].
    lv_sort: Vec<f32>,
    // Median filter: the last max(`median_filter`, `level_median`) normalised amplitudes per
    // subcarrier [k][n] (the level path reads its newest `level_median`).
    mf_ring: Vec<f32>,
    mf_len: usize,
    mf_head: usize,
    mf_filled: usize,
    mf_sort: Vec<f32>,
    // Low-pass: the last `lowpass` filtered values per subcarrier [k][n] and their sums.
    lp_ring: Vec<f32>,
    lp_sum: Vec<f64>,
    lp_head: usize,
    lp_filled: usize,
    cal_len: usize,
    scratch: Vec<f32>,
    // Calibration result.
    median: Vec<f32>,
    usable: Vec<bool>,
    n_usable: usize,
    threshold: f32,
    short_threshold: f32,
    // Level window: per-subcarrier calibration median of the squared level difference, the
    // subcarriers used (usable and that median > 0), and its threshold.
    lv_median: Vec<f32>,
    lv_usable: Vec<bool>,
    lv_n_usable: usize,
    level_threshold: f32,
    // A calibration is held (kept across `restart_window`).
    calibrated: bool,
    phase: Phase,
    refusals: u64,
    // Fallback: the quietest refused stretch (variances, scores, its noisiest block median),
    // refusals in a row, and whether the calibration in use came from it.
    best_var: Vec<f32>,
    best_score: Vec<f32>,
    best_svar: Vec<f32>,
    best_lvl: Vec<f32>,
    best_quiet: f32,
    in_a_row: usize,
    fallback: bool,
    since_motion: usize,
    packets: u64,
    calibration_allowed: bool,
}

impl PresenceDetector {
    /// A detector for packets of `n_subcarriers` amplitudes (all buffers allocated here).
    pub fn new(n_subcarriers: usize, cfg: PresenceConfig) -> Result<Self, PresenceError> {
        cfg.validate()?;
        if !(2..=4096).contains(&n_subcarriers) {
            return Err(PresenceError::Config(format!(
                "{n_subcarriers} subcarriers outside 2..=4096"
            )));
        }
        let n = n_subcarriers;
        let lw = cfg.level_window;
        let mf_len = if lw > 0 {
            cfg.median_filter.max(cfg.level_median)
        } else {
            cfg.median_filter
        };
        Ok(PresenceDetector {
            ring: vec![0.0; cfg.window * n],
            head: 0,
            filled: 0,
            sum: vec![0.0; n],
            sum2: vec![0.0; n],
            var: vec![0.0; n],
            ssum: vec![0.0; n],
            ssum2: vec![0.0; n],
            svar: vec![0.0; n],
            cal_var: vec![0.0; cfg.calib_packets * n],
            cal_score: vec![0.0; cfg.calib_packets],
            cal_svar: if cfg.short_window > 0 {
                vec![0.0; cfg.calib_packets * n]
            } else {
                Vec::new()
            },
            amp: vec![0.0; n],
            unusable: 0,
            lv_ring: vec![0.0; lw * n],
            lv_sum: vec![0.0; if lw > 0 { n } else { 0 }],
            lv_head: 0,
            lv_filled: 0,
            lvl: vec![0.0; if lw > 0 { n } else { 0 }],
            cal_lvl: vec![0.0; if lw > 0 { cfg.calib_packets * n } else { 0 }],
            lv_sort: vec![0.0; if lw > 0 { n } else { 0 }],
            mf_ring: vec![0.0; mf_len * n],
            mf_len,
            mf_head: 0,
            mf_filled: 0,
            mf_sort: vec![0.0; mf_len],
            lp_ring: vec![0.0; cfg.lowpass * n],
            lp_sum: vec![0.0; n],
            lp_head: 0,
            lp_filled: 0,
            cal_len: 0,
            scratch: vec![0.0; cfg.calib_packets.max(cfg.calib_block)],
            median: vec![0.0; n],
            usable: vec![false; n],
            n_usable: 0,
            threshold: 0.0,
            short_threshold: 0.0,
            lv_median: vec![0.0; if lw > 0 { n } else { 0 }],
            lv_usable: vec![false; if lw > 0 { n } else { 0 }],
            lv_n_usable: 0,
            level_threshold: 0.0,
            calibrated: false,
            phase: Phase::WarmingUp,
            refusals: 0,
            best_var: if cfg.calib_patience > 0 {
                vec![0.0; cfg.calib_packets * n]
            } else {
                Vec::new()
            },
            best_score: if cfg.calib_patience > 0 {
                vec![0.0; cfg.calib_packets]
            } else {
                Vec::new()
            },
            best_svar: if cfg.calib_patience > 0 && cfg.short_window > 0 {
                vec![0.0; cfg.calib_packets * n]
            } else {
                Vec::new()
            },
            best_lvl: if cfg.calib_patience > 0 && lw > 0 {
                vec![0.0; cfg.calib_packets * n]
            } else {
                Vec::new()
            },
            best_quiet: f32::INFINITY,
            in_a_row: 0,
            fallback: false,
            since_motion: usize::MAX,
            packets: 0,
            calibration_allowed: true,
            n,
            cfg,
        })
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.cfg
    }

    pub fn subcarriers(&self) -> usize {
        self.n
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Calibrated threshold on the relative motion score, once running.
    pub fn threshold(&self) -> Option<f32> {
        (self.phase == Phase::Running).then_some(self.threshold)
    }

    /// Calibrated threshold of the short window (`short_window` > 0), once running.
    pub fn short_threshold(&self) -> Option<f32> {
        (self.phase == Phase::Running && self.cfg.short_window > 0).then_some(self.short_threshold)
    }

    /// Calibrated threshold of the level window (`level_window` > 0), once running.
    pub fn level_threshold(&self) -> Option<f32> {
        (self.phase == Phase::Running && self.cfg.level_window > 0).then_some(self.level_threshold)
    }

    /// Calibration stretches refused because the room was not still.
    pub fn calibration_refusals(&self) -> u64 {
        self.refusals
    }

    /// Whether the calibration in use was taken on the quietest refused stretch (the room was
    /// never still enough for `calib_patience` stretches), not on a still one.
    pub fn calibrated_on_fallback(&self) -> bool {
        self.phase == Phase::Running && self.fallback
    }

    fn forget_candidates(&mut self) {
        self.cal_len = 0;
        self.in_a_row = 0;
        self.best_quiet = f32::INFINITY;
    }

    /// Packets seen so far (including ones skipped as unusable).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Allows or forbids calibrating (allowed by default). A caller that knows the room is
    /// occupied (or an evaluation that must calibrate only on empty-room data) forbids it;
    /// packets seen while forbidden are not kept as calibration candidates.
    pub fn set_calibration_allowed(&mut self, allowed: bool) {
        self.calibration_allowed = allowed;
        if !allowed && self.phase != Phase::Running {
            self.forget_candidates();
        }
    }

    /// Forgets the calibration (keeps the window): the next still stretch calibrates again.
    pub fn recalibrate(&mut self) {
        self.forget_candidates();
        self.calibrated = false;
        self.since_motion = usize::MAX;
        self.phase = if self.filled >= self.cfg.window {
            Phase::Calibrating
        } else {
            Phase::WarmingUp
        };
    }

    /// Empties the filters and the variance windows but keeps the calibration (if any): the
    /// detector warms up again over the next `window` packets (readings not running, so no
    /// motion) and then runs on the calibration it already has, without calibrating again.
    /// For a stream that restarts (a new recording, a gap); no allocation.
    pub fn restart_window(&mut self) {
        self.head = 0;
        self.filled = 0;
        self.mf_head = 0;
        self.mf_filled = 0;
        self.lp_head = 0;
        self.lp_filled = 0;
        self.lv_head = 0;
        self.lv_filled = 0;
        for v in [
            &mut self.lv_sum,
            &mut self.sum,
            &mut self.sum2,
            &mut self.lp_sum,
            &mut self.ssum,
            &mut self.ssum2,
        ] {
            v.fill(0.0);
        }
        self.forget_candidates();
        self.since_motion = usize::MAX;
        self.phase = Phase::WarmingUp;
    }

    /// One packet of raw ESP32-style I/Q pairs (two int8 per subcarrier; the order of the two
    /// does not matter for the amplitude).
    pub fn push_iq_i8(&mut self, iq: &[i8]) -> Reading {
        self.packets += 1;
        if iq.len() != 2 * self.n {
            return self.reading(false);
        }
        for (a, p) in self.amp.iter_mut().zip(iq.chunks_exact(2)) {
            let (x, y) = (p[0] as f32, p[1] as f32);
            *a = (x * x + y * y).sqrt();
        }
        self.ingest()
    }

    /// One packet of `n_subcarriers` amplitudes. A packet of the wrong length, with a
    /// non-finite value or with no energy at all is not used (the reading repeats the
    /// state without updating it).
    pub fn push_amplitudes(&mut self, amp: &[f32]) -> Reading {
        self.packets += 1;
        if amp.len() != self.n {
            return self.reading(false);
        }
        self.amp.copy_from_slice(amp);
        self.ingest()
    }

    /// Packets that were not used (wrong length, non-finite or all-zero amplitudes).
    pub fn unusable_packets(&self) -> u64 {
        self.unusable
    }

    fn ingest(&mut self) -> Reading {
        let mean = self.amp.iter().sum::<f32>() / self.n as f32;
        if !(mean.is_finite() && mean > 0.0) {
            self.unusable += 1;
            return self.reading(false);
        }
        // Normalise, then median-filter each subcarrier over its last k values.
        let k = self.cfg.median_filter;
        let kr = self.mf_len;
        let mslot = self.mf_head * self.n;
        for i in 0..self.n {
            self.mf_ring[mslot + i] = self.amp[i] / mean;
        }
        self.mf_head = (self.mf_head + 1) % kr;
        self.mf_filled = (self.mf_filled + 1).min(kr);
        let lw = self.cfg.level_window;
        if lw > 0 {
            // The level signal: median of the newest `level_median` values, into its ring.
            let m = self.cfg.level_median.min(self.mf_filled);
            let lslot = self.lv_head * self.n;
            let lfull = self.lv_filled >= lw;
            for i in 0..self.n {
                let v = self.newest_median(i, m) as f64;
                if lfull {
                    self.lv_sum[i] -= self.lv_ring[lslot + i] as f64;
                }
                self.lv_ring[lslot + i] = v as f32;
                self.lv_sum[i] += v;
            }
            self.lv_head = (self.lv_head + 1) % lw;
            self.lv_filled = (self.lv_filled + 1).min(lw);
        }
        if k > 1 {
            let m = k.min(self.mf_filled);
            for i in 0..self.n {
                self.amp[i] = self.newest_median(i, m);
            }
        } else {
            for i in 0..self.n {
                self.amp[i] = self.mf_ring[mslot + i];
            }
        }
        // Moving-average low-pass over the last `lowpass` values (partial until full).
        let l = self.cfg.lowpass;
        if l > 1 {
            let lslot = self.lp_head * self.n;
            let lfull = self.lp_filled >= l;
            for i in 0..self.n {
                if lfull {
                    self.lp_sum[i] -= self.lp_ring[lslot + i] as f64;
                }
                self.lp_ring[lslot + i] = self.amp[i];
                self.lp_sum[i] += self.amp[i] as f64;
            }
            self.lp_head = (self.lp_head + 1) % l;
            self.lp_filled = (self.lp_filled + 1).min(l);
            let inv = 1.0 / self.lp_filled as f64;
            for i in 0..self.n {
                self.amp[i] = (self.lp_sum[i] * inv) as f32;
            }
        }
        let w = self.cfg.window;
        let slot = self.head * self.n;
        let full = self.filled >= w;
        let s = self.cfg.short_window;
        if s > 0 {
            // The value leaving the short window is the one `s` packets back in the ring
            // (read before this packet overwrites the oldest slot; s < w).
            let sslot = ((self.head + w - s) % w) * self.n;
            let sfull = self.filled >= s;
            for i in 0..self.n {
                let v = self.amp[i] as f64;
                if sfull {
                    let old = self.ring[sslot + i] as f64;
                    self.ssum[i] -= old;
                    self.ssum2[i] -= old * old;
                }
                self.ssum[i] += v;
                self.ssum2[i] += v * v;
            }
        }
        for i in 0..self.n {
            let v = self.amp[i] as f64;
            if full {
                let old = self.ring[slot + i] as f64;
                self.sum[i] -= old;
                self.sum2[i] -= old * old;
            }
            self.ring[slot + i] = v as f32;
            self.sum[i] += v;
            self.sum2[i] += v * v;
        }
        self.head = (self.head + 1) % w;
        if !full {
            self.filled += 1;
            if self.filled < w {
                return self.reading(true);
            }
            self.phase = if self.calibrated {
                Phase::Running
            } else {
                Phase::Calibrating
            };
        }
        let inv = 1.0 / w as f64;
        for i in 0..self.n {
            let m = self.sum[i] * inv;
            self.var[i] = (self.sum2[i] * inv - m * m).max(0.0) as f32;
        }
        if s > 0 {
            let inv = 1.0 / s as f64;
            for i in 0..self.n {
                let m = self.ssum[i] * inv;
                self.svar[i] = (self.ssum2[i] * inv - m * m).max(0.0) as f32;
            }
        }
        if lw > 0 {
            // lw < window, so the level ring is full whenever the long window is.
            let (inv_l, inv_w) = (1.0 / self.lv_filled as f64, 1.0 / w as f64);
            for i in 0..self.n {
                let d = self.lv_sum[i] * inv_l - self.sum[i] * inv_w;
                self.lvl[i] = (d * d) as f32;
            }
        }
        if self.phase == Phase::Calibrating && self.calibration_allowed {
            self.calibrate_step();
        }
        self.reading(true)
    }

    fn calibrate_step(&mut self) {
        let n = self.n;
        let row = self.cal_len;
        self.cal_var[row * n..(row + 1) * n].copy_from_slice(&self.var);
        if self.cfg.short_window > 0 {
            self.cal_svar[row * n..(row + 1) * n].copy_from_slice(&self.svar);
        }
        if self.cfg.level_window > 0 {
            self.cal_lvl[row * n..(row + 1) * n].copy_from_slice(&self.lvl);
        }
        self.cal_score[row] = self.var.iter().sum::<f32>() / n as f32;
        self.cal_len += 1;
        let b = self.cfg.calib_block;
        if self.cal_len < self.cfg.calib_packets {
            return;
        }
        // Stillness test on block medians of the per-packet mean variance.
        let blocks = self.cfg.calib_packets / b;
        let (mut lo, mut hi) = (f32::INFINITY, 0.0f32);
        for k in 0..blocks {
            let s = &mut self.scratch[..b];
            s.copy_from_slice(&self.cal_score[k * b..(k + 1) * b]);
            let m = median(s);
            lo = lo.min(m);
            hi = hi.max(m);
        }
        self.fallback = false;
        if !(lo > 0.0 && hi <= self.cfg.calib_stability * lo) {
            self.refusals += 1;
            self.in_a_row += 1;
            let patience = self.cfg.calib_patience;
            if patience > 0 && hi.is_finite() && hi < self.best_quiet {
                self.best_quiet = hi;
                self.best_var.copy_from_slice(&self.cal_var);
                self.best_score.copy_from_slice(&self.cal_score);
                self.best_svar.copy_from_slice(&self.cal_svar);
                self.best_lvl.copy_from_slice(&self.cal_lvl);
            }
            if patience == 0 || self.in_a_row < patience || !self.best_quiet.is_finite() {
                // Not still: drop the first block and keep watching.
                self.cal_var.copy_within(b * n.., 0);
                self.cal_score.copy_within(b.., 0);
                if self.cfg.short_window > 0 {
                    self.cal_svar.copy_within(b * n.., 0);
                }
                if self.cfg.level_window > 0 {
                    self.cal_lvl.copy_within(b * n.., 0);
                }
                self.cal_len -= b;
                return;
            }
            // Never still for `patience` stretches: calibrate on the quietest one seen.
            std::mem::swap(&mut self.cal_var, &mut self.best_var);
            std::mem::swap(&mut self.cal_score, &mut self.best_score);
            std::mem::swap(&mut self.cal_svar, &mut self.best_svar);
            std::mem::swap(&mut self.cal_lvl, &mut self.best_lvl);
            self.fallback = true;
        }
        // Per-subcarrier median variance and usable subcarriers (mean normalised amplitude
        // over the current window, which lies inside the still stretch).
        let c = self.cfg.calib_packets;
        let inv = 1.0 / self.cfg.window as f64;
        self.n_usable = 0;
        for i in 0..n {
            let s = &mut self.scratch[..c];
            for (r, v) in s.iter_mut().enumerate() {
                *v = self.cal_var[r * n + i];
            }
            let m = median(s);
            let amp = (self.sum[i] * inv) as f32;
            self.median[i] = m;
            self.usable[i] = m > 0.0 && amp >= self.cfg.min_relative_amplitude;
            self.n_usable += self.usable[i] as usize;
        }
        if self.n_usable == 0 {
            self.refusals += 1;
            self.forget_candidates();
            return;
        }
        // Threshold: the largest relative score of the calibration stretch, times the margin.
        let mut top = 0.0f32;
        for r in 0..c {
            let row = &self.cal_var[r * n..(r + 1) * n];
            top = top.max(relative(row, &self.median, &self.usable, self.n_usable));
        }
        self.threshold = top * self.cfg.margin;
        // The short window's threshold, from the same stretch and relative to the same
        // per-subcarrier medians (of the long window's variance).
        let mut stop = 0.0f32;
        if self.cfg.short_window > 0 {
            for r in 0..c {
                let row = &self.cal_svar[r * n..(r + 1) * n];
                stop = stop.max(relative(row, &self.median, &self.usable, self.n_usable));
            }
        }
        self.short_threshold = stop * self.cfg.margin;
        let short_ok = self.cfg.short_window == 0
            || (self.short_threshold > 0.0 && self.short_threshold.is_finite());
        // The level window: its own per-subcarrier medians over the same stretch (the level
        // difference has another scale than the variance), on the usable subcarriers.
        let mut ltop = 0.0f32;
        if self.cfg.level_window > 0 {
            self.lv_n_usable = 0;
            for i in 0..n {
                let s = &mut self.scratch[..c];
                for (r, v) in s.iter_mut().enumerate() {
                    *v = self.cal_lvl[r * n + i];
                }
                let m = median(s);
                self.lv_median[i] = m;
                self.lv_usable[i] = self.usable[i] && m > 0.0;
                self.lv_n_usable += self.lv_usable[i] as usize;
            }
            if self.lv_n_usable > 0 {
                for r in 0..c {
                    ltop = ltop.max(self.level_score(r * n));
                }
            }
        }
        self.level_threshold = ltop * self.cfg.margin;
        let level_ok = self.cfg.level_window == 0
            || (self.level_threshold > 0.0 && self.level_threshold.is_finite());
        if !(self.threshold > 0.0 && self.threshold.is_finite() && short_ok && level_ok) {
            self.refusals += 1;
            self.forget_candidates();
            return;
        }
        self.calibrated = true;
        self.in_a_row = 0;
        self.best_quiet = f32::INFINITY;
        self.phase = Phase::Running;
    }

    /// The level window's score of this packet (`row` = `usize::MAX`) or of calibration
    /// packet `row / n`: the mean or the `level_quantile` over the used subcarriers of the
    /// squared level difference / its calibration median.
    fn level_score(&mut self, row: usize) -> f32 {
        let n = self.n;
        let v = if row == usize::MAX {
            &self.lvl[..]
        } else {
            &self.cal_lvl[row..row + n]
        };
        let q = self.cfg.level_quantile;
        if q == 0.0 {
            return relative(v, &self.lv_median, &self.lv_usable, self.lv_n_usable);
        }
        let mut k = 0;
        for ((x, m), &u) in v.iter().zip(&self.lv_median).zip(&self.lv_usable) {
            if u {
                self.lv_sort[k] = x / m;
                k += 1;
            }
        }
        let s = &mut self.lv_sort[..k];
        let at = ((q * k as f32) as usize).min(k - 1);
        s.select_nth_unstable_by(at, |a, b| a.total_cmp(b));
        s[at]
    }

    /// The median of subcarrier `i`'s newest `m` normalised amplitudes (m ≤ the values held).
    fn newest_median(&mut self, i: usize, m: usize) -> f32 {
        let kr = self.mf_len;
        for j in 0..m {
            let slot = (self.mf_head + kr - 1 - j) % kr;
            self.mf_sort[j] = self.mf_ring[slot * self.n + i];
        }
        median(&mut self.mf_sort[..m])
    }

    fn reading(&mut self, updated: bool) -> Reading {
        if self.phase != Phase::Running {
            return Reading {
                phase: self.phase,
                motion: false,
                present: false,
                ratio: 0.0,
                confidence: 0.0,
            };
        }
        let (med, us, nu) = (&self.median, &self.usable, self.n_usable);
        let mut ratio = relative(&self.var, med, us, nu) / self.threshold;
        if self.cfg.short_window > 0 {
            ratio = ratio.max(relative(&self.svar, med, us, nu) / self.short_threshold);
        }
        if self.cfg.level_window > 0 {
            let l = self.level_score(usize::MAX);
            ratio = ratio.max(l / self.level_threshold);
        }
        let motion = ratio > 1.0;
        if updated {
            if motion {
                self.since_motion = 0;
            } else {
                self.since_motion = self.since_motion.saturating_add(1);
            }
        }
        Reading {
            phase: Phase::Running,
            motion,
            present: self.since_motion <= self.cfg.hold_packets,
            ratio,
            confidence: (2.0 * ratio.max(1e-30).ln().abs()).tanh(),
        }
    }
}

/// Mean over the used subcarriers of `v` / its calibration median.
fn relative(v: &[f32], median: &[f32], used: &[bool], n_used: usize) -> f32 {
    let s: f32 = v
        .iter()
        .zip(median)
        .zip(used)
        .filter(|(_, &u)| u)
        .map(|((v, m), _)| v / m)
        .sum();
    s / n_used as f32
}

/// Median by selection (reorders `v`).
fn median(v: &mut [f32]) -> f32 {
    let k = v.len() / 2;
    v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    v[k]
}

#[cfg(test)]
mod tests;
