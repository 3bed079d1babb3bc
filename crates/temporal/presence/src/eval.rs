//! Scoring the detector on labelled recordings: per-packet precision, recall, F1 and
//! false-positive rate, with the calibration taken only from packets that are not scored.
//!
//! A *session* is an empty-room recording followed by a movement recording of the same chip
//! and place (ESPectre's `baseline_*` / `movement_*` pairs). The two are streamed through one
//! fresh detector in that order, as a live node would see them: the detector calibrates itself
//! on the first still stretch of the empty room (calibration is forbidden once the movement
//! recording starts, so a session whose empty room never holds still is reported as not
//! calibrated and scores nothing), and only the packets after its calibration window are
//! scored (empty-room packets as negatives, movement packets as positives).
//!
//! [`score_session_espectre`] is ESPectre's own protocol, kept only as a labelled comparison
//! (it scores the calibration packets and drops the start of the empty room; see its doc).
//!
//! [`session_folds`] chooses the detector's settings on some sessions and scores others, so
//! that no reported packet took part in a choice.

use crate::{Phase, PresenceConfig, PresenceDetector};

/// One session: the empty-room and movement packets of one chip, as int8 I/Q pairs.
#[derive(Clone, Debug)]
pub struct Session {
    /// Chip name (for grouping the table).
    pub chip: String,
    /// Which recording of that chip (0-based, in recording order).
    pub index: usize,
    pub subcarriers: usize,
    /// `[packets][2·subcarriers]` int8 I/Q of the empty room.
    pub empty: Vec<i8>,
    /// `[packets][2·subcarriers]` int8 I/Q with a person moving.
    pub movement: Vec<i8>,
}

/// Per-packet confusion counts (positive = motion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    /// Packets not scored (warm-up and calibration).
    pub unscored: u64,
    /// Of `fn_`: movement packets missed before the first detection of their recording (the
    /// detector's onset latency at the splice from the empty room to the movement recording).
    pub fn_onset: u64,
}

impl Counts {
    /// Counts one scored packet: `motion` detected, `label` true for a movement packet;
    /// `detected` tracks whether this recording's movement has been detected yet (for
    /// `fn_onset`).
    fn record(&mut self, motion: bool, label: bool, detected: &mut bool) {
        match (motion, label) {
            (true, true) => {
                self.tp += 1;
                *detected = true;
            }
            (true, false) => self.fp += 1,
            (false, true) => {
                self.fn_ += 1;
                self.fn_onset += !*detected as u64;
            }
            (false, false) => self.tn += 1,
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
        self.unscored += o.unscored;
        self.fn_onset += o.fn_onset;
    }
    /// Recall with the onset misses left out (movement packets after the first detection).
    pub fn recall_after_onset(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_ - self.fn_onset)
    }
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
    pub fn scored(&self) -> u64 {
        self.tp + self.fp + self.fn_ + self.tn
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The result of streaming one session.
#[derive(Clone, Debug)]
pub struct SessionResult {
    pub counts: Counts,
    /// Packet (from the start of the empty-room recording) at which calibration finished;
    /// `None` when the detector never found a still stretch.
    pub calibrated_at: Option<u64>,
    pub refusals: u64,
    /// Calibrated on the quietest refused stretch, not a still one.
    pub fallback: bool,
}

/// Streams one session through a fresh detector and counts the scored packets.
pub fn score_session(
    cfg: &PresenceConfig,
    s: &Session,
) -> Result<SessionResult, crate::PresenceError> {
    let mut det = PresenceDetector::new(s.subcarriers, cfg.clone())?;
    let w = 2 * s.subcarriers;
    let mut counts = Counts::default();
    let mut calibrated_at = None;
    let mut fallback = false;
    for (label, data) in [(false, &s.empty), (true, &s.movement)] {
        det.set_calibration_allowed(!label);
        let mut detected = false;
        for pkt in data.chunks_exact(w) {
            let r = det.push_iq_i8(pkt);
            if r.phase != Phase::Running {
                counts.unscored += 1;
                continue;
            }
            if calibrated_at.is_none() {
                // The packet that completed calibration was part of it: not scored.
                calibrated_at = Some(det.packets());
                fallback = det.calibrated_on_fallback();
                counts.unscored += 1;
                continue;
            }
            counts.record(r.motion, label, &mut detected);
        }
    }
    Ok(SessionResult {
        counts,
        calibrated_at,
        refusals: det.calibration_refusals(),
        fallback,
    })
}

/// The splice control: what [`score_session`]'s splice alone does. `first`'s empty room is
/// streamed with calibration allowed, then `second`'s empty room (another recording, nobody
/// moving) with calibration forbidden; every running packet of `second` is a negative.
/// Returns the counts over `second` (fp / tn / unscored) and how many of the false positives
/// fell in its first `window` packets, where the detector's window still spans the splice.
pub fn splice_control(
    cfg: &PresenceConfig,
    first: &Session,
    second: &Session,
) -> Result<(Counts, u64), crate::PresenceError> {
    if first.subcarriers != second.subcarriers {
        return Err(crate::PresenceError::Config(format!(
            "splice control: {} and {} subcarriers",
            first.subcarriers, second.subcarriers
        )));
    }
    let mut det = PresenceDetector::new(first.subcarriers, cfg.clone())?;
    let w = 2 * first.subcarriers;
    for pkt in first.empty.chunks_exact(w) {
        det.push_iq_i8(pkt);
    }
    det.set_calibration_allowed(false);
    let mut counts = Counts::default();
    let mut early = 0;
    for (k, pkt) in second.empty.chunks_exact(w).enumerate() {
        let r = det.push_iq_i8(pkt);
        if r.phase != Phase::Running {
            counts.unscored += 1;
        } else if r.motion {
            counts.fp += 1;
            early += (k < cfg.window) as u64;
        } else {
            counts.tn += 1;
        }
    }
    Ok((counts, early))
}

/// Empty-room packets ESPectre's validation drops before anything else (its `GAIN_LOCK_SKIP`).
pub const ESPECTRE_SKIP: usize = 300;

/// ESPectre's own validation protocol (micro-espectre/tests/test_validation_real_data.py,
/// `TestPerformanceMetrics`), with this detector in place of ESPectre's: the first
/// [`ESPECTRE_SKIP`] empty-room packets are dropped (counted here as unscored); the detector
/// calibrates on the rest of the empty room; then its windows are emptied
/// ([`PresenceDetector::restart_window`], the calibration kept, no calibration allowed) and
/// the same empty-room packets followed by the movement recording are streamed again without
/// a reset between them, **every** packet scored: the warm-up packets of the new window count
/// as "no motion" (true negatives on the empty room), and the calibration packets are scored
/// as negatives too. Weaker than [`score_session`]: the calibration data are scored and the
/// warm-up is free. A session whose empty room never calibrates scores nothing.
pub fn score_session_espectre(
    cfg: &PresenceConfig,
    s: &Session,
) -> Result<SessionResult, crate::PresenceError> {
    let mut det = PresenceDetector::new(s.subcarriers, cfg.clone())?;
    let w = 2 * s.subcarriers;
    let total = (s.empty.len() + s.movement.len()) / w;
    let skip = (ESPECTRE_SKIP * w).min(s.empty.len());
    let empty = &s.empty[skip..];
    let mut counts = Counts {
        unscored: (skip / w) as u64,
        ..Counts::default()
    };
    let mut calibrated_at = None;
    for (k, pkt) in empty.chunks_exact(w).enumerate() {
        if det.push_iq_i8(pkt).phase == Phase::Running {
            calibrated_at = Some((skip / w + k + 1) as u64);
            break;
        }
    }
    let Some(at) = calibrated_at else {
        counts.unscored = total as u64;
        return Ok(SessionResult {
            counts,
            calibrated_at: None,
            refusals: det.calibration_refusals(),
            fallback: false,
        });
    };
    let fallback = det.calibrated_on_fallback();
    det.restart_window();
    det.set_calibration_allowed(false);
    for (label, data) in [(false, empty), (true, &s.movement[..])] {
        let mut detected = false;
        for pkt in data.chunks_exact(w) {
            let r = det.push_iq_i8(pkt);
            let motion = r.phase == Phase::Running && r.motion;
            counts.record(motion, label, &mut detected);
        }
    }
    Ok(SessionResult {
        counts,
        calibrated_at: Some(at),
        refusals: det.calibration_refusals(),
        fallback,
    })
}

/// Which protocol scores a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// [`score_session`]: calibration only on unscored empty-room packets, one stream per
    /// session, every packet after calibration scored (the default everywhere).
    Strict,
    /// [`score_session_espectre`]: ESPectre's own validation protocol, for comparison only.
    Espectre,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Strict => "strict",
            Protocol::Espectre => "espectre",
        }
    }

    /// Scores one session under this protocol.
    pub fn score(
        self,
        cfg: &PresenceConfig,
        s: &Session,
    ) -> Result<SessionResult, crate::PresenceError> {
        match self {
            Protocol::Strict => score_session(cfg, s),
            Protocol::Espectre => score_session_espectre(cfg, s),
        }
    }
}

/// The axes of the settings [`session_folds`] chooses among; [`Grid::configs`] gives every
/// combination, other fields from the default.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub windows: Vec<usize>,
    pub margins: Vec<f32>,
    pub stabilities: Vec<f32>,
    pub median_filters: Vec<usize>,
    pub lowpasses: Vec<usize>,
    /// `short_window` values (0 = off).
    pub short_windows: Vec<usize>,
    /// (`level_window`, `level_median`, `level_quantile`) triples (level window 0 = off).
    pub levels: Vec<(usize, usize, f32)>,
}

impl Grid {
    /// Every combination (level triple innermost, then short window, low-pass, median filter,
    /// stillness, margin, window).
    pub fn configs(&self) -> Vec<PresenceConfig> {
        let mut out = Vec::new();
        for &window in &self.windows {
            for &margin in &self.margins {
                for &calib_stability in &self.stabilities {
                    for &median_filter in &self.median_filters {
                        for &lowpass in &self.lowpasses {
                            for &short_window in &self.short_windows {
                                for &(level_window, level_median, level_quantile) in &self.levels {
                                    out.push(PresenceConfig {
                                        window,
                                        margin,
                                        calib_stability,
                                        median_filter,
                                        lowpass,
                                        short_window,
                                        level_window,
                                        level_median,
                                        level_quantile,
                                        ..PresenceConfig::default()
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// The grid of the published evaluation (BENCHMARKS.md), without the level window.
pub fn default_grid() -> Vec<PresenceConfig> {
    published_grid().configs()
}

fn published_grid() -> Grid {
    Grid {
        windows: vec![100, 150, 200],
        margins: vec![1.25, 2.0, 3.0],
        stabilities: vec![1.5, 2.0],
        median_filters: vec![1, 7],
        lowpasses: vec![1, 5, 9],
        short_windows: vec![0, 10, 20],
        levels: vec![(0, 3, 0.0)],
    }
}

/// [`default_grid`] with the two level-window options of BENCHMARKS.md as a further axis
/// (off; window 1 on a 5-packet median, mean over subcarriers; window 2 on a 5-packet median,
/// median over subcarriers): three times as many settings.
pub fn grid_with_level() -> Vec<PresenceConfig> {
    Grid {
        levels: vec![(0, 3, 0.0), (1, 5, 0.0), (2, 5, 0.5)],
        ..published_grid()
    }
    .configs()
}

/// One fold of [`session_folds`]: the settings chosen on the `select` sessions and what they
/// score on the held-out sessions, per session.
#[derive(Clone, Debug)]
pub struct Fold {
    /// Recording index that was held out (scored).
    pub held_out: usize,
    pub chosen: PresenceConfig,
    /// The criterion's value for the chosen settings on the selection sessions.
    pub selection_f1: f64,
    /// (chip, result) for every held-out session.
    pub scored: Vec<(String, SessionResult)>,
}

/// How [`session_folds`] ranks settings on the selection sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criterion {
    /// F1 of all selection packets pooled (the larger chips weigh more).
    PooledF1,
    /// The lowest per-chip F1 (pooled over that chip's selection sessions): every chip must
    /// do well, none may be traded for another.
    WorstChipF1,
}

impl Criterion {
    pub fn name(self) -> &'static str {
        match self {
            Criterion::PooledF1 => "pooled-f1",
            Criterion::WorstChipF1 => "worst-chip-f1",
        }
    }
}

/// Chooses settings on all sessions with one recording index and scores them on the sessions
/// with another, for every index (both under `protocol`): the settings with the best
/// `criterion` on the selection sessions win (ties: the earlier grid entry); an index with no
/// other index to choose on has no fold. A session that never calibrates counts all its
/// packets as unscored.
pub fn session_folds(
    sessions: &[Session],
    grid: &[PresenceConfig],
    criterion: Criterion,
    protocol: Protocol,
) -> Result<Vec<Fold>, crate::PresenceError> {
    let mut indices: Vec<usize> = sessions.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    indices.dedup();
    let mut folds = Vec::new();
    for &held in &indices {
        if sessions.iter().all(|s| s.index == held) {
            // Nothing to choose on: no fold for this index.
            continue;
        }
        let mut best: Option<(f64, &PresenceConfig)> = None;
        for cfg in grid {
            let mut pooled = Counts::default();
            let mut per_chip: std::collections::BTreeMap<&str, Counts> = Default::default();
            for s in sessions.iter().filter(|s| s.index != held) {
                let c = protocol.score(cfg, s)?.counts;
                pooled.add(&c);
                per_chip.entry(s.chip.as_str()).or_default().add(&c);
            }
            let f1 = match criterion {
                Criterion::PooledF1 => pooled.f1(),
                Criterion::WorstChipF1 => per_chip
                    .values()
                    .map(Counts::f1)
                    .fold(f64::INFINITY, f64::min),
            };
            if best.is_none_or(|(b, _)| f1 > b) {
                best = Some((f1, cfg));
            }
        }
        let Some((selection_f1, chosen)) = best else {
            continue;
        };
        let mut scored = Vec::new();
        for s in sessions.iter().filter(|s| s.index == held) {
            scored.push((s.chip.clone(), protocol.score(chosen, s)?));
        }
        folds.push(Fold {
            held_out: held,
            chosen: chosen.clone(),
            selection_f1,
            scored,
        });
    }
    Ok(folds)
}
