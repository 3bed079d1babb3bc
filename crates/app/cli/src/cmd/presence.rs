//! `csipose presence`: the streaming presence/motion detector over capture files and ESPectre
//! `.npz` recordings, and its evaluation on a labelled ESPectre tree (`--evaluate DIR`). An
//! ESPectre recording's chip is its archive's `chip` text field; the file name
//! (`{label}_{chip}_...npz`) is used only for archives without that field. The evaluation
//! scores sessions under the strict protocol by default; `--protocol espectre` re-creates
//! ESPectre's own (weaker) validation protocol for comparison and says so in its output;
//! `--fold-grid with-level` lets the held-out-session folds choose the level window too.

use anyhow::{bail, Context, Result};
use csipose_capture::any;
use csipose_presence::eval::{self, Counts, Session};
use csipose_presence::{Phase, PresenceConfig, PresenceDetector, Reading};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Capture files (any format `capture` reads) or `.npz` recordings with int8 `csi_data`.
    #[arg(required_unless_present = "evaluate", conflicts_with = "evaluate")]
    pub files: Vec<PathBuf>,
    /// Evaluate on a labelled ESPectre tree (`baseline/*.npz`, `movement/*.npz`): per chip,
    /// with the defaults and with settings chosen on the other recording session.
    #[arg(long, value_name = "DIR")]
    pub evaluate: Option<PathBuf>,
    /// One JSON object per file (or the evaluation) on standard output.
    #[arg(long)]
    pub json: bool,
    /// How the evaluation's session folds rank settings on the selection sessions: pooled F1,
    /// or the worst chip's F1.
    #[arg(long, default_value = "pooled-f1", value_parser = ["pooled-f1", "worst-chip-f1"])]
    pub select_by: String,
    /// How the evaluation scores a session: `strict` (calibration only on unscored empty-room
    /// packets, one stream per session, every later packet scored) or `espectre` (ESPectre's
    /// own validation protocol, for comparison only: the first 300 empty-room packets dropped,
    /// the calibration packets scored again after a window restart, warm-up counted as no
    /// motion).
    #[arg(long, default_value = "strict", value_parser = ["strict", "espectre"])]
    pub protocol: String,
    /// The settings the evaluation's session folds choose among: `published` (the grid of
    /// BENCHMARKS.md) or `with-level` (the same with the level-window options as a further
    /// axis; three times slower).
    #[arg(long, default_value = "published", value_parser = ["published", "with-level"])]
    pub fold_grid: String,
    /// Packets in the moving-variance window.
    #[arg(long, default_value_t = PresenceConfig::default().window)]
    pub window: usize,
    /// Packets in the short moving-variance window OR-ed with the long one (0 = off).
    #[arg(long, default_value_t = PresenceConfig::default().short_window)]
    pub short_window: usize,
    /// Packets of still room needed to calibrate.
    #[arg(long, default_value_t = PresenceConfig::default().calib_packets)]
    pub calib_packets: usize,
    /// Threshold = largest calibration score × margin.
    #[arg(long, default_value_t = PresenceConfig::default().margin)]
    pub margin: f32,
    /// Refused stretches in a row after which the quietest one seen calibrates (0 = never).
    #[arg(long, default_value_t = PresenceConfig::default().calib_patience)]
    pub calib_patience: usize,
    /// Largest max/min ratio of block medians for the room to count as still.
    #[arg(long, default_value_t = PresenceConfig::default().calib_stability)]
    pub calib_stability: f32,
    /// Median filter length per subcarrier (odd; 1 = off).
    #[arg(long, default_value_t = PresenceConfig::default().median_filter)]
    pub median_filter: usize,
    /// Moving-average low-pass length per subcarrier (1 = off).
    #[arg(long, default_value_t = PresenceConfig::default().lowpass)]
    pub lowpass: usize,
    /// Packets in the level window, the fast onset path on the less-filtered signal (0 = off).
    #[arg(long, default_value_t = PresenceConfig::default().level_window)]
    pub level_window: usize,
    /// Median filter length of the level window's signal (odd; 1 = off).
    #[arg(long, default_value_t = PresenceConfig::default().level_median)]
    pub level_median: usize,
    /// How the level window combines its subcarriers: 0 = mean; q in (0, 1) = their
    /// q-quantile (0.5 = median, half of them must agree).
    #[arg(long, default_value_t = PresenceConfig::default().level_quantile)]
    pub level_quantile: f32,
    /// Packets a person stays present after the last motion.
    #[arg(long, default_value_t = PresenceConfig::default().hold_packets)]
    pub hold: usize,
}

impl Args {
    fn config(&self) -> Result<PresenceConfig> {
        let cfg = PresenceConfig {
            window: self.window,
            short_window: self.short_window,
            calib_packets: self.calib_packets,
            margin: self.margin,
            calib_stability: self.calib_stability,
            hold_packets: self.hold,
            median_filter: self.median_filter,
            lowpass: self.lowpass,
            calib_patience: self.calib_patience,
            level_window: self.level_window,
            level_median: self.level_median,
            level_quantile: self.level_quantile,
            ..PresenceConfig::default()
        };
        cfg.validate().map_err(|e| {
            anyhow::anyhow!(
                "{e} (flags --window, --short-window, --calib-packets, --margin, --calib-stability, --calib-patience, --median-filter, --lowpass, --level-window, --level-median, --level-quantile, --hold)"
            )
        })?;
        Ok(cfg)
    }
}

pub fn run(a: Args) -> Result<()> {
    let cfg = a.config()?;
    if let Some(dir) = &a.evaluate {
        let criterion = if a.select_by == "pooled-f1" {
            eval::Criterion::PooledF1
        } else {
            eval::Criterion::WorstChipF1
        };
        let protocol = if a.protocol == "strict" {
            eval::Protocol::Strict
        } else {
            eval::Protocol::Espectre
        };
        let grid = if a.fold_grid == "published" {
            eval::default_grid()
        } else {
            eval::grid_with_level()
        };
        return evaluate(dir, &cfg, criterion, protocol, &grid, a.json);
    }
    for f in &a.files {
        let summary = detect_file(f, &cfg)?;
        if a.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print_summary(f, &summary);
        }
    }
    Ok(())
}

/// Packets of one file as amplitude rows (`rows × width`).
struct Packets {
    width: usize,
    amps: Vec<f32>,
    /// Records the reader could not decode.
    undecodable: u64,
}

fn read_npz(path: &Path) -> Result<Packets> {
    let (width, iq) = read_iq(path)?;
    let amps = iq
        .chunks_exact(2)
        .map(|p| {
            let (x, y) = (p[0] as f32, p[1] as f32);
            (x * x + y * y).sqrt()
        })
        .collect();
    Ok(Packets {
        width,
        amps,
        undecodable: 0,
    })
}

fn read_capture(path: &Path) -> Result<Packets> {
    let reader = any::open(path, None, Default::default()).map_err(|m| anyhow::anyhow!(m))?;
    let mut width = 0;
    let mut amps = Vec::new();
    let mut undecodable = 0;
    let mut other_width = 0u64;
    for fr in reader {
        let fr = match fr {
            Ok(f) => f,
            Err(e) if e.is_truncation() => {
                eprintln!(
                    "warning: {}: {e} (the frames before it are used)",
                    path.display()
                );
                undecodable += 1;
                break;
            }
            Err(e) => bail!("{}: {e}", path.display()),
        };
        let (ant, sc, a) = fr.rx_amplitudes();
        let w = ant * sc;
        if width == 0 {
            width = w;
        }
        if w != width {
            other_width += 1;
            continue;
        }
        amps.extend(a.iter().map(|&v| v as f32));
    }
    if other_width > 0 {
        eprintln!(
            "warning: {}: {other_width} frames with a different antenna×subcarrier count than the first ({width}) were not used",
            path.display()
        );
    }
    if width == 0 {
        bail!("{}: no CSI frame decoded", path.display());
    }
    Ok(Packets {
        width,
        amps,
        undecodable: undecodable + other_width,
    })
}

fn detect_file(path: &Path, cfg: &PresenceConfig) -> Result<serde_json::Value> {
    let p = if path.extension().is_some_and(|e| e == "npz") {
        read_npz(path)?
    } else {
        read_capture(path)?
    };
    let mut det = PresenceDetector::new(p.width, cfg.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut calibrated_at = None;
    let (mut motion, mut present, mut running) = (0u64, 0u64, 0u64);
    // Segments of presence as [first, last] packet indices (0-based).
    let mut segments: Vec<[u64; 2]> = Vec::new();
    let mut last: Option<Reading> = None;
    for (i, row) in p.amps.chunks_exact(p.width).enumerate() {
        let r = det.push_amplitudes(row);
        if r.phase == Phase::Running {
            calibrated_at.get_or_insert(i as u64);
            running += 1;
            motion += r.motion as u64;
            if r.present {
                present += 1;
                match segments.last_mut() {
                    Some(s) if s[1] + 1 == i as u64 => s[1] = i as u64,
                    _ => segments.push([i as u64, i as u64]),
                }
            }
        }
        last = Some(r);
    }
    let n = (p.amps.len() / p.width) as u64;
    let chip = if path.extension().is_some_and(|e| e == "npz") {
        recording_chip(path, None)?
    } else {
        None
    };
    Ok(json!({
        "file": path.display().to_string(),
        "chip": chip.as_ref().map(|c| c.0.clone()),
        "chip_from": chip.map(|c| c.1.name()),
        "packets": n,
        "subcarriers": p.width,
        "undecodable_records": p.undecodable,
        "unusable_packets": det.unusable_packets(),
        "calibrated_at_packet": calibrated_at,
        "calibration_refusals": det.calibration_refusals(),
        "calibrated_on_quietest_stretch": det.calibrated_on_fallback(),
        "threshold": det.threshold(),
        "scored_packets": running,
        "motion_packets": motion,
        "present_packets": present,
        "presence_segments": segments,
        "final": last.map(|r| json!({
            "phase": r.phase.name(), "motion": r.motion, "present": r.present,
            "ratio": r.ratio, "confidence": r.confidence,
        })),
    }))
}

fn print_summary(path: &Path, s: &serde_json::Value) {
    println!("{}", path.display());
    if let (Some(c), Some(from)) = (s["chip"].as_str(), s["chip_from"].as_str()) {
        println!("  chip {c} (from the {from})");
    }
    println!(
        "  packets {} ({} subcarriers), undecodable {}, unusable {}",
        s["packets"], s["subcarriers"], s["undecodable_records"], s["unusable_packets"]
    );
    match s["calibrated_at_packet"].as_u64() {
        None => println!(
            "  never calibrated: no still stretch of {} packets ({} stretches refused as moving)",
            s["scored_packets"], s["calibration_refusals"]
        ),
        Some(c) => {
            let scored = s["scored_packets"].as_u64().unwrap_or(0).max(1) as f64;
            println!(
                "  calibrated at packet {c} ({} stretches refused{}); threshold {:.3}",
                s["calibration_refusals"],
                if s["calibrated_on_quietest_stretch"] == true {
                    ", never still: on the quietest one"
                } else {
                    ""
                },
                s["threshold"].as_f64().unwrap_or(0.0)
            );
            println!(
                "  motion in {:.1}% and presence in {:.1}% of {} scored packets; {} presence segment(s)",
                100.0 * s["motion_packets"].as_u64().unwrap_or(0) as f64 / scored,
                100.0 * s["present_packets"].as_u64().unwrap_or(0) as f64 / scored,
                s["scored_packets"],
                s["presence_segments"].as_array().map_or(0, |v| v.len())
            );
        }
    }
}

/// Where a recording's chip name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChipSource {
    /// The `.npz` text field `chip`.
    Field,
    /// The file name (`{label}_{chip}_...npz`): only when the archive has no `chip` field.
    FileName,
}

impl ChipSource {
    fn name(self) -> &'static str {
        match self {
            ChipSource::Field => "npz field chip",
            ChipSource::FileName => "file name",
        }
    }
}

/// A text field of an `.npz` archive (a 0-d or one-element `<U...` array): `None` when the
/// archive has no such member; an error naming the file when it is there but not one string.
fn npz_text(z: &mut csipose_npy::Npz, path: &Path, name: &str) -> Result<Option<String>> {
    if !z.names().iter().any(|n| n == name) {
        return Ok(None);
    }
    let a = z
        .read_strings(name)
        .with_context(|| format!("{}: member {name}", path.display()))?;
    match a.data.as_slice() {
        [one] => Ok(Some(one.trim().to_string())),
        _ => bail!(
            "{}: member {name} holds {} strings (shape {:?}), expected one",
            path.display(),
            a.data.len(),
            a.shape
        ),
    }
}

/// The chip in an ESPectre file name `{label}_{chip}_...npz` (lower-cased); `label` = `None`
/// takes whatever comes before the first `_`.
fn chip_from_name(path: &Path, label: Option<&str>) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let rest = match label {
        Some(l) => name.strip_prefix(l)?.strip_prefix('_')?,
        None => name.split_once('_')?.1,
    };
    let chip = rest.split('_').next()?;
    (!chip.is_empty() && !chip.ends_with(".npz")).then(|| chip.to_lowercase())
}

/// The chip of an ESPectre recording: the archive's `chip` field, else (archives without the
/// field) the file name ([`chip_from_name`]); lower-cased. `Ok(None)`: neither says.
fn recording_chip(path: &Path, label: Option<&str>) -> Result<Option<(String, ChipSource)>> {
    let mut z = csipose_npy::Npz::open(path)?;
    if let Some(c) = npz_text(&mut z, path, "chip")? {
        if c.is_empty() {
            bail!("{}: member chip is an empty string", path.display());
        }
        return Ok(Some((c.to_lowercase(), ChipSource::Field)));
    }
    Ok(chip_from_name(path, label).map(|c| (c, ChipSource::FileName)))
}

/// The ESPectre recordings of `dir` (`baseline/*.npz` empty room, `movement/*.npz` a person
/// moving) as sessions: per chip, the empty-room and movement recordings paired in recording
/// order (the `collected_at` field where every recording of the chip has it, else the name).
/// The chip comes from each archive's `chip` field ([`recording_chip`]).
fn espectre_sessions(dir: &Path) -> Result<Vec<Session>> {
    // Per chip: [empty-room, movement] recordings as (collected_at, (file name, path)).
    type Rec = (Option<String>, (String, PathBuf));
    let mut by_chip: std::collections::BTreeMap<String, [Vec<Rec>; 2]> = Default::default();
    for (k, sub) in ["baseline", "movement"].iter().enumerate() {
        let d = dir.join(sub);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .with_context(|| {
                format!(
                    "{}: not an ESPectre tree (needs baseline/ and movement/)",
                    d.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "npz"))
            .collect();
        files.sort();
        for f in files {
            let (chip, _) = recording_chip(&f, Some(sub))?.with_context(|| {
                format!(
                    "{}: no chip field in the archive and the name is not {sub}_CHIP_..._.npz",
                    f.display()
                )
            })?;
            let mut z = csipose_npy::Npz::open(&f)?;
            let when = npz_text(&mut z, &f, "collected_at")?;
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            by_chip.entry(chip).or_default()[k].push((when, (name, f)));
        }
    }
    let mut sessions = Vec::new();
    for (chip, [mut empty, mut moving]) in by_chip {
        if empty.len() != moving.len() {
            bail!(
                "{}: chip {chip} has {} baseline and {} movement recordings; sessions pair them in recording order",
                dir.display(),
                empty.len(),
                moving.len()
            );
        }
        let all_dated = empty.iter().chain(&moving).all(|r| r.0.is_some());
        for list in [&mut empty, &mut moving] {
            if all_dated {
                list.sort_by(|a, b| (&a.0, &a.1 .0).cmp(&(&b.0, &b.1 .0)));
            } else {
                list.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
            }
        }
        for (index, ((_, (_, e)), (_, (_, m)))) in empty.iter().zip(&moving).enumerate() {
            let (pe, pm) = (read_iq(e)?, read_iq(m)?);
            if pe.0 != pm.0 {
                bail!(
                    "{} and {}: different subcarrier counts",
                    e.display(),
                    m.display()
                );
            }
            sessions.push(Session {
                chip: chip.clone(),
                index,
                subcarriers: pe.0,
                empty: pe.1,
                movement: pm.1,
            });
        }
    }
    if sessions.is_empty() {
        bail!("{}: no recordings found", dir.display());
    }
    Ok(sessions)
}

fn read_iq(path: &Path) -> Result<(usize, Vec<i8>)> {
    let mut z = csipose_npy::Npz::open(path)?;
    let a = z
        .read::<i64>("csi_data")
        .with_context(|| format!("{}: member csi_data", path.display()))?;
    if a.shape.len() != 2 || a.shape[1] % 2 != 0 || a.shape[1] == 0 {
        bail!(
            "{}: csi_data has shape {:?}, expected [packets, 2·subcarriers]",
            path.display(),
            a.shape
        );
    }
    let mut out = Vec::with_capacity(a.data.len());
    for (i, &v) in a.data.iter().enumerate() {
        let b = i8::try_from(v).with_context(|| {
            format!("{}: csi_data element {i} = {v} is not int8", path.display())
        })?;
        out.push(b);
    }
    Ok((a.shape[1] / 2, out))
}

fn row(c: &Counts) -> serde_json::Value {
    json!({
        "precision": c.precision(), "recall": c.recall(), "f1": c.f1(),
        "false_positive_rate": c.false_positive_rate(),
        "tp": c.tp, "fp": c.fp, "fn": c.fn_, "tn": c.tn, "unscored": c.unscored,
        "fn_before_first_detection": c.fn_onset, "recall_after_onset": c.recall_after_onset(),
    })
}

fn evaluate(
    dir: &Path,
    cfg: &PresenceConfig,
    criterion: eval::Criterion,
    protocol: eval::Protocol,
    grid: &[PresenceConfig],
    as_json: bool,
) -> Result<()> {
    let sessions = espectre_sessions(dir)?;
    let mut chips: Vec<String> = sessions.iter().map(|s| s.chip.clone()).collect();
    chips.dedup();
    // (a) the given (default) settings on every session.
    let mut fixed: std::collections::BTreeMap<String, Counts> = Default::default();
    let mut uncalibrated = Vec::new();
    let mut on_fallback = Vec::new();
    for s in &sessions {
        let r = protocol.score(cfg, s).map_err(|e| anyhow::anyhow!("{e}"))?;
        if r.calibrated_at.is_none() {
            uncalibrated.push(format!("{} #{}", s.chip, s.index));
        }
        if r.fallback {
            on_fallback.push(format!("{} #{}", s.chip, s.index));
        }
        fixed.entry(s.chip.clone()).or_default().add(&r.counts);
    }
    // Splice control: each chip's first empty room followed by its second one (no movement).
    let mut splice: Vec<(String, Counts, u64)> = Vec::new();
    for chip in &chips {
        let mine: Vec<&Session> = sessions.iter().filter(|s| &s.chip == chip).collect();
        if let [a, b, ..] = mine.as_slice() {
            let (c, early) =
                eval::splice_control(cfg, a, b).map_err(|e| anyhow::anyhow!("{chip}: {e}"))?;
            splice.push((chip.clone(), c, early));
        }
    }
    // (b) settings chosen on the other session(s), scored on the held-out one.
    let folds = eval::session_folds(&sessions, grid, criterion, protocol)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut held: std::collections::BTreeMap<String, Counts> = Default::default();
    for f in &folds {
        for (chip, r) in &f.scored {
            held.entry(chip.clone()).or_default().add(&r.counts);
        }
    }
    // (c) the same, but settings chosen per chip (on that chip's other session only).
    let mut per_chip: std::collections::BTreeMap<String, Counts> = Default::default();
    let mut per_chip_choice = Vec::new();
    for chip in &chips {
        let mine: Vec<Session> = sessions
            .iter()
            .filter(|s| &s.chip == chip)
            .cloned()
            .collect();
        for f in eval::session_folds(&mine, grid, criterion, protocol)
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            per_chip_choice.push(json!({
                "chip": chip, "held_out_recording": f.held_out,
                "chosen": {"window": f.chosen.window, "margin": f.chosen.margin,
                           "calib_stability": f.chosen.calib_stability, "median_filter": f.chosen.median_filter,
                           "lowpass": f.chosen.lowpass, "short_window": f.chosen.short_window,
                           "level_window": f.chosen.level_window, "level_median": f.chosen.level_median,
                           "level_quantile": f.chosen.level_quantile},
            }));
            for (c, r) in &f.scored {
                per_chip.entry(c.clone()).or_default().add(&r.counts);
            }
        }
    }
    let total = |m: &std::collections::BTreeMap<String, Counts>| {
        let mut t = Counts::default();
        m.values().for_each(|c| t.add(c));
        t
    };
    if as_json {
        let out = json!({
            "dir": dir.display().to_string(),
            "sessions": sessions.len(),
            "protocol": protocol.name(),
            "given_settings": {
                "window": cfg.window, "short_window": cfg.short_window, "margin": cfg.margin, "calib_packets": cfg.calib_packets,
                "median_filter": cfg.median_filter, "lowpass": cfg.lowpass,
                "calib_stability": cfg.calib_stability,
                "level_window": cfg.level_window, "level_median": cfg.level_median,
                "level_quantile": cfg.level_quantile,
                "per_chip": fixed.iter().map(|(k, c)| (k.clone(), row(c))).collect::<serde_json::Map<_, _>>(),
                "all": row(&total(&fixed)),
                "uncalibrated_sessions": uncalibrated,
                "calibrated_on_quietest_stretch": on_fallback,
            },
            "splice_control": splice.iter().map(|(chip, c, early)| (chip.clone(), json!({
                "false_positives": c.fp, "true_negatives": c.tn, "unscored": c.unscored,
                "false_positives_in_first_window": early,
                "false_positive_rate": c.false_positive_rate(),
            }))).collect::<serde_json::Map<_, _>>(),
            "select_by": criterion.name(),
            "fold_grid_settings": grid.len(),
            "session_folds": {
                "folds": folds.iter().map(|f| json!({
                    "held_out_recording": f.held_out,
                    "chosen": {"window": f.chosen.window, "margin": f.chosen.margin,
                               "calib_stability": f.chosen.calib_stability, "median_filter": f.chosen.median_filter,
                           "lowpass": f.chosen.lowpass, "short_window": f.chosen.short_window,
                           "level_window": f.chosen.level_window, "level_median": f.chosen.level_median,
                           "level_quantile": f.chosen.level_quantile},
                    "selection_f1": f.selection_f1,
                })).collect::<Vec<_>>(),
                "per_chip": held.iter().map(|(k, c)| (k.clone(), row(c))).collect::<serde_json::Map<_, _>>(),
                "all": row(&total(&held)),
            },
            "per_chip_session_folds": {
                "choices": per_chip_choice,
                "per_chip": per_chip.iter().map(|(k, c)| (k.clone(), row(c))).collect::<serde_json::Map<_, _>>(),
                "all": row(&total(&per_chip)),
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let table = |title: &str, m: &std::collections::BTreeMap<String, Counts>| {
        println!("{title}");
        println!("| chip | precision | recall | F1 | false-positive rate | scored packets | misses before first detection | recall after it |");
        println!("|---|---|---|---|---|---|---|---|");
        let t = total(m);
        for (chip, c) in m.iter().map(|(k, c)| (k.as_str(), c)).chain([("all", &t)]) {
            println!(
                "| {chip} | {:.1}% | {:.1}% | {:.1}% | {:.2}% | {} | {} | {:.1}% |",
                100.0 * c.precision(),
                100.0 * c.recall(),
                100.0 * c.f1(),
                100.0 * c.false_positive_rate(),
                c.scored(),
                c.fn_onset,
                100.0 * c.recall_after_onset()
            );
        }
        println!();
    };
    println!(
        "{} sessions ({} chips) from {}, protocol {}{}",
        sessions.len(),
        chips.len(),
        dir.display(),
        protocol.name(),
        if protocol == eval::Protocol::Espectre {
            " (ESPectre's own validation protocol, for comparison only: first 300 empty-room packets dropped, calibration packets scored, warm-up counted as no motion)"
        } else {
            ""
        }
    );
    table(
        &format!(
            "Given settings (window {}, short window {}, level window {} (median {}, quantile {}), margin {}, stillness {}, median filter {}, low-pass {}), every session:",
            cfg.window, cfg.short_window, cfg.level_window, cfg.level_median, cfg.level_quantile, cfg.margin, cfg.calib_stability, cfg.median_filter, cfg.lowpass
        ),
        &fixed,
    );
    if !uncalibrated.is_empty() {
        println!(
            "never calibrated (all packets unscored): {}",
            uncalibrated.join(", ")
        );
    }
    if !on_fallback.is_empty() {
        println!(
            "never still, calibrated on the quietest stretch: {}",
            on_fallback.join(", ")
        );
    }
    if !splice.is_empty() {
        println!("Splice control, given settings: each chip's first empty room followed by its second empty-room recording (nobody moving, every packet of the second a negative):");
        println!(
            "| chip | false positives | of them in its first {} packets | false-positive rate |",
            cfg.window
        );
        println!("|---|---|---|---|");
        for (chip, c, early) in &splice {
            println!(
                "| {chip} | {} | {early} | {:.2}% |",
                c.fp,
                100.0 * c.false_positive_rate()
            );
        }
        println!();
    }
    for f in &folds {
        println!(
            "recording {} held out: chose window {}, short window {}, level window {} (median {}), margin {}, stillness {}, median filter {}, low-pass {} ({} {:.1}% on the other recordings)",
            f.held_out,
            f.chosen.window,
            f.chosen.short_window,
            f.chosen.level_window,
            f.chosen.level_median,
            f.chosen.margin,
            f.chosen.calib_stability,
            f.chosen.median_filter,
            f.chosen.lowpass,
            criterion.name(),
            100.0 * f.selection_f1
        );
    }
    table(
        "Settings chosen on the other recording session, scored on the held-out one:",
        &held,
    );
    table(
        "Per-chip tuning: settings chosen on the same chip's other session, scored on the held-out one:",
        &per_chip,
    );
    Ok(())
}
