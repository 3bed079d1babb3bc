//! Detector tests on synthetic streams with known motion.

use super::*;

/// A deterministic xorshift for test noise.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// A static multipath profile with receiver noise; `motion` adds a slowly moving
/// perturbation (a body changing the multipath), `gain` scales the whole packet.
fn packet(rng: &mut Rng, n: usize, t: usize, motion: f32, gain: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let base = 20.0 + 10.0 * ((i as f32) * 0.3).sin();
            let m = motion * 8.0 * ((i as f32) * 0.21 + t as f32 * 0.15).sin();
            gain * (base + m + rng.next())
        })
        .collect()
}

/// The definition the detector's moving variance must match: subcarrier `i`'s gain-normalised
/// values `norm[k][i]`, low-passed by the mean of the newest `lowpass` of them (fewer at the
/// start), and the population variance of the newest `span` of those ending at packet `t`.
fn brute_variance(norm: &[Vec<f64>], lowpass: usize, t: usize, span: usize, i: usize) -> f64 {
    let smooth = |k: usize| {
        let from = (k + 1).saturating_sub(lowpass);
        (from..=k).map(|j| norm[j][i]).sum::<f64>() / (k + 1 - from) as f64
    };
    let xs: Vec<f64> = (t + 1 - span..=t).map(smooth).collect();
    let m = xs.iter().sum::<f64>() / span as f64;
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / span as f64
}

#[test]
fn calibrates_on_still_room_then_detects_motion_and_holds_presence() {
    let n = 52;
    let mut d = PresenceDetector::new(n, PresenceConfig::default()).unwrap();
    let mut rng = Rng(7);
    let mut t = 0;
    let mut last = None;
    for _ in 0..600 {
        last = Some(d.push_amplitudes(&packet(&mut rng, n, t, 0.0, 1.0)));
        t += 1;
    }
    let r = last.unwrap();
    assert_eq!(r.phase, Phase::Running);
    assert!(!r.motion && !r.present, "{r:?}");
    assert_eq!(d.calibration_refusals(), 0);
    // Gain changes alone (ESP32 AGC) are not motion.
    for k in 0..300 {
        let g = if k % 2 == 0 { 1.0 } else { 1.7 };
        let r = d.push_amplitudes(&packet(&mut rng, n, t, 0.0, g));
        assert!(!r.motion, "gain step read as motion at {k}: {r:?}");
        t += 1;
    }
    let mut detected = 0;
    for _ in 0..400 {
        detected += d.push_amplitudes(&packet(&mut rng, n, t, 1.0, 1.0)).motion as usize;
        t += 1;
    }
    assert!(
        detected > 300,
        "motion detected in only {detected}/400 packets"
    );
    // After motion stops, presence holds for hold_packets then clears.
    let hold = d.config().hold_packets;
    let mut cleared_at = None;
    for k in 0..(hold + 400) {
        let r = d.push_amplitudes(&packet(&mut rng, n, t, 0.0, 1.0));
        t += 1;
        if !r.present && cleared_at.is_none() {
            cleared_at = Some(k);
        }
    }
    let c = cleared_at.expect("presence never cleared");
    assert!(
        c >= hold,
        "presence cleared after {c} packets, hold is {hold}"
    );
}

#[test]
fn refuses_to_calibrate_while_motion_is_present() {
    let n = 32;
    let cfg = PresenceConfig {
        calib_patience: 0,
        ..Default::default()
    };
    let mut d = PresenceDetector::new(n, cfg).unwrap();
    let mut rng = Rng(11);
    // Motion that starts and stops in bursts: block medians differ, calibration refused.
    for t in 0..1200 {
        let m = if (t / 120) % 2 == 0 { 1.0 } else { 0.0 };
        let r = d.push_amplitudes(&packet(&mut rng, n, t, m, 1.0));
        assert_ne!(r.phase, Phase::Running, "calibrated during motion at {t}");
    }
    assert!(d.calibration_refusals() > 0);
    // Then the room goes still and calibration succeeds.
    for t in 1200..1900 {
        d.push_amplitudes(&packet(&mut rng, n, t, 0.0, 1.0));
    }
    assert_eq!(d.phase(), Phase::Running);
    assert!(!d.calibrated_on_fallback());
}

/// A room that is never still: after `calib_patience` refused stretches in a row the detector
/// calibrates on the quietest of them (and says so); stronger motion later still reads as
/// motion. Forbidding calibration forgets the candidates, so the count starts again.
#[test]
fn never_still_room_calibrates_on_the_quietest_stretch_after_patience() {
    let n = 32;
    let cfg = PresenceConfig {
        calib_patience: 4,
        ..Default::default()
    };
    let w = cfg.window;
    let mut d = PresenceDetector::new(n, cfg.clone()).unwrap();
    let mut rng = Rng(5);
    // Weak motion in bursts (never still); each stretch is refused until the fourth refusal.
    let burst = |t: usize| {
        if (t / 120).is_multiple_of(2) {
            0.3
        } else {
            0.0
        }
    };
    let mut t = 0;
    while d.phase() != Phase::Running {
        assert!(t < 5000, "never calibrated");
        d.push_amplitudes(&packet(&mut rng, n, t, burst(t), 1.0));
        t += 1;
    }
    assert_eq!(d.calibration_refusals(), 4);
    assert!(d.calibrated_on_fallback());
    // Calibrated after warm-up + one stretch + three slides of one block.
    assert!(
        t <= w + cfg.calib_packets + 3 * cfg.calib_block + 1,
        "at {t}"
    );
    let mut detected = 0;
    for k in 0..300 {
        detected += d
            .push_amplitudes(&packet(&mut rng, n, t + k, 3.0, 1.0))
            .motion as usize;
    }
    assert!(detected > 200, "strong motion detected in {detected}/300");
    // Forbidding calibration mid-search forgets the refused stretches.
    let mut d = PresenceDetector::new(n, cfg).unwrap();
    for t in 0..600 {
        d.push_amplitudes(&packet(&mut rng, n, t, burst(t), 1.0));
    }
    let before = d.calibration_refusals();
    assert!((1..4).contains(&before), "{before} refusals");
    d.set_calibration_allowed(false);
    d.set_calibration_allowed(true);
    for t in 600..1000 {
        d.push_amplitudes(&packet(&mut rng, n, t, burst(t), 1.0));
    }
    assert_ne!(d.phase(), Phase::Running, "the count did not start again");
}

#[test]
fn bad_packets_are_counted_and_do_not_change_state() {
    let n = 16;
    let mut d = PresenceDetector::new(n, PresenceConfig::default()).unwrap();
    let r = d.push_amplitudes(&[1.0; 3]);
    assert_eq!(r.phase, Phase::WarmingUp);
    d.push_amplitudes(&[f32::NAN; 16]);
    d.push_amplitudes(&[0.0; 16]);
    d.push_iq_i8(&[0; 5]);
    assert_eq!(d.unusable_packets(), 2);
    assert_eq!(d.packets(), 4);
    let iq: Vec<i8> = (0..32).map(|i| (i % 7) as i8 + 1).collect();
    assert_eq!(d.push_iq_i8(&iq).phase, Phase::WarmingUp);
}

#[test]
fn config_validation_names_the_field() {
    let bad = [
        PresenceConfig {
            window: 1,
            ..Default::default()
        },
        PresenceConfig {
            margin: f32::NAN,
            ..Default::default()
        },
        PresenceConfig {
            calib_packets: 250,
            ..Default::default()
        },
        PresenceConfig {
            calib_stability: 1.0,
            ..Default::default()
        },
        PresenceConfig {
            min_relative_amplitude: 1.0,
            ..Default::default()
        },
        PresenceConfig {
            lowpass: 0,
            ..Default::default()
        },
        PresenceConfig {
            lowpass: 256,
            ..Default::default()
        },
        PresenceConfig {
            level_window: 100,
            ..Default::default()
        },
        PresenceConfig {
            level_window: 2,
            level_median: 4,
            ..Default::default()
        },
        PresenceConfig {
            level_quantile: 1.0,
            ..Default::default()
        },
        PresenceConfig {
            level_quantile: f32::NAN,
            ..Default::default()
        },
    ];
    for (cfg, field) in bad.iter().zip([
        "window",
        "margin",
        "calib_packets",
        "calib_stability",
        "min_relative_amplitude",
        "lowpass",
        "lowpass",
        "level_window",
        "level_median",
        "level_quantile",
        "level_quantile",
    ]) {
        let e = PresenceDetector::new(8, cfg.clone())
            .err()
            .expect("accepted");
        assert!(e.to_string().contains(field), "{e}");
    }
    assert!(PresenceDetector::new(1, PresenceConfig::default()).is_err());
}

#[test]
fn session_scoring_counts_every_packet_once() {
    let n = 20;
    let mut rng = Rng(3);
    let mk = |rng: &mut Rng, m: f32, len: usize, t0: usize| -> Vec<i8> {
        (0..len)
            .flat_map(|t| packet(rng, n, t0 + t, m, 1.0))
            .flat_map(|a| {
                [
                    (a * 0.7).round().clamp(-127.0, 127.0) as i8,
                    (a * 0.7).round().clamp(-127.0, 127.0) as i8,
                ]
            })
            .collect()
    };
    let s = eval::Session {
        chip: "x".into(),
        index: 0,
        subcarriers: n,
        empty: mk(&mut rng, 0.0, 900, 0),
        movement: mk(&mut rng, 1.0, 600, 900),
    };
    let r = eval::score_session(&PresenceConfig::default(), &s).unwrap();
    assert_eq!(r.counts.scored() + r.counts.unscored, 1500);
    assert!(r.calibrated_at.is_some());
    assert!(r.counts.recall() > 0.8, "{:?}", r.counts);
    assert!(r.counts.false_positive_rate() < 0.05, "{:?}", r.counts);
}

/// The per-subcarrier variance the detector keeps equals a brute-force one: each packet divided
/// by its mean, a moving average over the last `lowpass` packets (fewer at the start), then the
/// population variance over the last `window` of those.
#[test]
fn lowpass_then_moving_variance_matches_brute_force() {
    let (n, w, l) = (6, 20, 4);
    let cfg = PresenceConfig {
        window: w,
        lowpass: l,
        median_filter: 1,
        calib_packets: 200,
        calib_block: 100,
        ..Default::default()
    };
    let mut d = PresenceDetector::new(n, cfg).unwrap();
    let mut rng = Rng(3);
    let mut norm: Vec<Vec<f64>> = Vec::new();
    for t in 0..90 {
        let g = if t % 3 == 0 { 2.0 } else { 1.0 };
        let p = packet(&mut rng, n, t, (t / 40) as f32, g);
        d.push_amplitudes(&p);
        let mean = p.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        norm.push(p.iter().map(|&v| v as f64 / mean).collect());
        if t + 1 < w {
            continue;
        }
        for i in 0..n {
            let v = brute_variance(&norm, l, t, w, i);
            let got = d.var[i] as f64;
            assert!(
                (got - v).abs() <= 1e-4 * v.max(1e-6),
                "packet {t} subcarrier {i}: {got} vs {v}"
            );
        }
    }
}

/// Broadband per-packet noise is what the low-pass removes: on a noisy still room followed by
/// slow motion, the motion's score relative to the calibrated threshold is higher with a
/// 5-packet low-pass than without, at the same margin.
#[test]
fn lowpass_separates_slow_motion_from_packet_noise() {
    let n = 32;
    let run = |lowpass: usize| {
        let cfg = PresenceConfig {
            lowpass,
            margin: 1.0,
            median_filter: 1,
            short_window: 0,
            ..Default::default()
        };
        let mut d = PresenceDetector::new(n, cfg).unwrap();
        let mut rng = Rng(11);
        for t in 0..600 {
            let p: Vec<f32> = packet(&mut rng, n, t, 0.0, 1.0)
                .iter()
                .map(|v| v + 6.0 * rng.next())
                .collect();
            d.push_amplitudes(&p);
        }
        assert_eq!(d.phase(), Phase::Running);
        let mut ratios = Vec::new();
        for t in 600..800 {
            let p: Vec<f32> = packet(&mut rng, n, t, 0.3, 1.0)
                .iter()
                .map(|v| v + 6.0 * rng.next())
                .collect();
            ratios.push(d.push_amplitudes(&p).ratio);
        }
        ratios.sort_by(f32::total_cmp);
        ratios[ratios.len() / 2]
    };
    let (plain, smoothed) = (run(1), run(5));
    assert!(
        smoothed > 2.0 * plain,
        "median ratio {plain} without, {smoothed} with low-pass"
    );
}

/// A still room with receiver noise, then from packet `t0` on a slow movement that starts
/// from zero (no step in any subcarrier at the onset): subcarrier `i` at packet `t` is
/// `20 + 10 sin(0.3 i) + a sin(2π (t − t0) / 40) cos(0.21 i)` plus noise.
fn onset_packet(rng: &mut Rng, n: usize, t: usize, t0: usize, a: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let base = 20.0 + 10.0 * ((i as f32) * 0.3).sin();
            let m = if t >= t0 {
                a * (std::f32::consts::TAU * (t - t0) as f32 / 40.0).sin()
                    * ((i as f32) * 0.21).cos()
            } else {
                0.0
            };
            base + m + rng.next()
        })
        .collect()
}

/// A test stream's packet `t` of `n` subcarriers, changing at `t0` with size `a`.
type Packet = fn(&mut Rng, usize, usize, usize, f32) -> Vec<f32>;

/// Packets from `t0` to the first motion reading of `cfg` on `packet` (None: never within 60
/// packets); no motion before `t0`.
fn latency(cfg: &PresenceConfig, packet: Packet, a: f32, seed: u64) -> Option<usize> {
    let n = 32;
    let mut d = PresenceDetector::new(n, cfg.clone()).unwrap();
    let mut rng = Rng(seed);
    let t0 = 800;
    for t in 0..t0 {
        let r = d.push_amplitudes(&packet(&mut rng, n, t, t0, a));
        if r.phase == Phase::Running {
            assert!(!r.motion, "false motion at {t} before the change");
        }
    }
    assert_eq!(d.phase(), Phase::Running);
    (0..60).find(|&k| {
        d.push_amplitudes(&packet(&mut rng, n, t0 + k, t0, a))
            .motion
    })
}

/// Packets from the onset of [`onset_packet`] to the first motion reading with this short
/// window and the other defaults.
fn onset_latency(short_window: usize, a: f32, seed: u64) -> Option<usize> {
    let cfg = PresenceConfig {
        short_window,
        ..Default::default()
    };
    latency(&cfg, onset_packet, a, seed)
}

/// The short window sees a movement's onset sooner: a slow movement (period 40 packets,
/// starting from zero, no step) of peak amplitude 1 (noise ±0.5) is detected in at most half
/// the packets the long window alone needs and within 14 packets; one of amplitude 2 within 9
/// packets and at least 3 packets sooner. Several noise seeds.
#[test]
fn short_window_detects_a_slow_onset_sooner() {
    for seed in [3, 17, 101] {
        for (a, most, faster) in [(1.0f32, 14, None), (2.0, 9, Some(3))] {
            let long = onset_latency(0, a, seed).expect("long window never detected it");
            let short = onset_latency(10, a, seed).expect("short window never detected it");
            let msg = format!(
                "seed {seed}, amplitude {a}: {short} packets with the short window, {long} without"
            );
            assert!(short <= most, "{msg}");
            match faster {
                None => assert!(2 * short <= long, "{msg}"),
                Some(k) => assert!(short + k <= long, "{msg}"),
            }
        }
    }
}

/// No false positives on stationary noise: after calibrating on a still room, 20,000 more
/// packets of the same room (uniform noise and, separately, heavier-tailed noise: the sum
/// of three uniforms times 2) never read as motion with the short window on.
#[test]
fn short_window_raises_no_false_positive_on_stationary_noise() {
    let n = 32;
    for (seed, heavy) in [(9u64, false), (23, true)] {
        let mut d = PresenceDetector::new(n, PresenceConfig::default()).unwrap();
        assert_eq!(d.config().short_window, 10);
        let mut rng = Rng(seed);
        let noisy = |rng: &mut Rng| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    let base = 20.0 + 10.0 * ((i as f32) * 0.3).sin();
                    let e = if heavy {
                        2.0 * (rng.next() + rng.next() + rng.next())
                    } else {
                        rng.next()
                    };
                    base + e
                })
                .collect()
        };
        let mut false_motion = 0;
        let mut running = 0;
        for _ in 0..20_400 {
            let r = d.push_amplitudes(&noisy(&mut rng));
            if r.phase == Phase::Running {
                running += 1;
                false_motion += r.motion as usize;
            }
        }
        assert!(running > 19_000, "running for only {running} packets");
        assert_eq!(
            false_motion, 0,
            "seed {seed}: {false_motion} false motion packets"
        );
        assert!(d.short_threshold().unwrap() > 0.0);
    }
}

/// The short window's per-subcarrier variance equals a brute-force population variance over
/// the newest `short_window` filtered values (median filter and low-pass as configured).
#[test]
fn short_window_variance_matches_brute_force() {
    let (n, w, s, l) = (5, 20, 6, 3);
    let cfg = PresenceConfig {
        window: w,
        short_window: s,
        lowpass: l,
        median_filter: 1,
        calib_packets: 200,
        calib_block: 100,
        ..Default::default()
    };
    let mut d = PresenceDetector::new(n, cfg).unwrap();
    let mut rng = Rng(41);
    let mut norm: Vec<Vec<f64>> = Vec::new();
    for t in 0..120 {
        let p = packet(&mut rng, n, t, (t / 50) as f32, 1.0 + (t % 4) as f32);
        d.push_amplitudes(&p);
        let mean = p.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        norm.push(p.iter().map(|&v| v as f64 / mean).collect());
        if t + 1 < w {
            continue;
        }
        for i in 0..n {
            let v = brute_variance(&norm, l, t, s, i);
            let got = d.svar[i] as f64;
            assert!(
                (got - v).abs() <= 1e-4 * v.max(1e-6),
                "packet {t} subcarrier {i}: {got} vs {v}"
            );
        }
    }
}

/// `restart_window` keeps the calibration: the detector warms up again for `window` packets
/// (no motion read), then runs with the same thresholds without calibrating again, and reads
/// motion when there is some. Without a calibration it calibrates as usual.
#[test]
fn restart_window_keeps_the_calibration() {
    let n = 24;
    let mut d = PresenceDetector::new(n, PresenceConfig::default()).unwrap();
    let w = d.config().window;
    let mut rng = Rng(13);
    for t in 0..700 {
        d.push_amplitudes(&packet(&mut rng, n, t, 0.0, 1.0));
    }
    let (thr, sthr) = (d.threshold().unwrap(), d.short_threshold().unwrap());
    d.restart_window();
    d.set_calibration_allowed(false);
    for k in 0..w {
        let r = d.push_amplitudes(&packet(&mut rng, n, 700 + k, 3.0, 1.0));
        let expect = if k + 1 < w {
            Phase::WarmingUp
        } else {
            Phase::Running
        };
        assert_eq!(r.phase, expect, "packet {k} after the restart");
        assert!(!r.motion || r.phase == Phase::Running);
    }
    assert_eq!(d.threshold(), Some(thr));
    assert_eq!(d.short_threshold(), Some(sthr));
    let r = d.push_amplitudes(&packet(&mut rng, n, 700 + w, 3.0, 1.0));
    assert!(r.motion, "{r:?}");
    // A detector that never calibrated goes back to calibrating after the restart.
    let mut d = PresenceDetector::new(n, PresenceConfig::default()).unwrap();
    for t in 0..150 {
        d.push_amplitudes(&packet(&mut rng, n, t, 0.0, 1.0));
    }
    assert_eq!(d.phase(), Phase::Calibrating);
    d.restart_window();
    assert_eq!(d.phase(), Phase::WarmingUp);
    for t in 150..800 {
        d.push_amplitudes(&packet(&mut rng, n, t, 0.0, 1.0));
    }
    assert_eq!(d.phase(), Phase::Running);
}

/// ESPectre's protocol counts every packet: the dropped start of the empty room as unscored,
/// every later packet (calibration and warm-up included) as scored.
#[test]
fn espectre_protocol_counts_every_packet_once() {
    let n = 20;
    let mut rng = Rng(3);
    let mk = |rng: &mut Rng, m: f32, len: usize, t0: usize| -> Vec<i8> {
        (0..len)
            .flat_map(|t| packet(rng, n, t0 + t, m, 1.0))
            .flat_map(|a| {
                let q = (a * 0.7).round().clamp(-127.0, 127.0) as i8;
                [q, q]
            })
            .collect()
    };
    let s = eval::Session {
        chip: "x".into(),
        index: 0,
        subcarriers: n,
        empty: mk(&mut rng, 0.0, 1100, 0),
        movement: mk(&mut rng, 1.0, 600, 1100),
    };
    let cfg = PresenceConfig::default();
    let r = eval::score_session_espectre(&cfg, &s).unwrap();
    assert_eq!(r.counts.unscored, eval::ESPECTRE_SKIP as u64);
    assert_eq!(r.counts.scored(), 1700 - eval::ESPECTRE_SKIP as u64);
    assert_eq!(r.counts.fp + r.counts.tn, 800);
    assert!(r.calibrated_at.is_some());
    assert!(r.counts.recall() > 0.8, "{:?}", r.counts);
    // The strict protocol on the same session scores fewer packets (no calibration packet).
    let strict = eval::score_session(&cfg, &s).unwrap();
    assert_eq!(strict.counts.scored() + strict.counts.unscored, 1700);
    assert!(strict.counts.scored() < r.counts.scored());
}

/// The splice control counts the second empty room as negatives only: a second recording of
/// the same still room raises no false positive; one whose level differs (half the band 30%
/// stronger, as a recording of a changed room would be) does, until the step has left the
/// window (first window plus the filters' lengths).
#[test]
fn splice_control_counts_the_second_empty_room() {
    let n = 20;
    let mut rng = Rng(5);
    let mk = |rng: &mut Rng, len: usize, t0: usize, tilt: f32| -> Vec<i8> {
        (0..len)
            .flat_map(|t| packet(rng, n, t0 + t, 0.0, 1.0))
            .enumerate()
            .flat_map(|(j, a)| {
                let a = if j % n < n / 2 { a * tilt } else { a };
                let q = (a * 2.0).round().clamp(-127.0, 127.0) as i8;
                [q, 0]
            })
            .collect()
    };
    let session = |empty: Vec<i8>| eval::Session {
        chip: "x".into(),
        index: 0,
        subcarriers: n,
        empty,
        movement: Vec::new(),
    };
    let a = session(mk(&mut rng, 900, 0, 1.0));
    let same = session(mk(&mut rng, 700, 900, 1.0));
    let cfg = PresenceConfig::default();
    let (c, early) = eval::splice_control(&cfg, &a, &same).unwrap();
    assert_eq!(c.fp + c.tn + c.unscored, 700);
    assert_eq!(c.unscored, 0);
    assert_eq!((c.fp, early), (0, 0), "{c:?}");
    let tilted = session(mk(&mut rng, 700, 900, 1.3));
    let (c, early) = eval::splice_control(&cfg, &a, &tilted).unwrap();
    assert!(c.fp > 10, "{c:?}");
    // The step reaches the window through the median filter and the low-pass, so it leaves
    // it at most their lengths after the first window.
    assert!(
        c.fp - early <= (cfg.median_filter + cfg.lowpass) as u64,
        "{} false positives after the first window: {c:?}",
        c.fp - early
    );
}

/// The level window's settings used by the tests below (the evaluated option of
/// BENCHMARKS.md: level window 2 on a 5-packet median, median over subcarriers, no short
/// window).
fn level_cfg(level_quantile: f32) -> PresenceConfig {
    PresenceConfig {
        short_window: 0,
        level_window: 2,
        level_median: 5,
        level_quantile,
        ..Default::default()
    }
}

/// The level window's per-subcarrier value equals a brute-force (mean of the newest
/// `level_window` medians of the newest `level_median` normalised amplitudes − the long
/// window's mean of the median-filtered, low-passed values)², also across a
/// `restart_window`; and the level path leaves the other windows as they are (same variances
/// as a detector without it), both when its median is longer than the main one and shorter.
#[test]
fn level_window_matches_brute_force() {
    for (mf, lm) in [(1, 5), (5, 3)] {
        let (n, w, lw, l) = (5, 20, 3, 3);
        let cfg = PresenceConfig {
            window: w,
            short_window: 6,
            level_window: lw,
            level_median: lm,
            lowpass: l,
            median_filter: mf,
            calib_packets: 200,
            calib_block: 100,
            ..Default::default()
        };
        let mut d = PresenceDetector::new(n, cfg.clone()).unwrap();
        let mut plain = PresenceDetector::new(
            n,
            PresenceConfig {
                level_window: 0,
                ..cfg
            },
        )
        .unwrap();
        let mut rng = Rng(43);
        let mut norm: Vec<Vec<f64>> = Vec::new();
        for t in 0..160 {
            if t == 90 {
                d.restart_window();
                plain.restart_window();
                norm.clear();
            }
            let p = packet(&mut rng, n, t, (t / 50) as f32, 1.0 + (t % 4) as f32);
            d.push_amplitudes(&p);
            plain.push_amplitudes(&p);
            let mean = p.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            norm.push(p.iter().map(|&v| v as f64 / mean).collect());
            let k = norm.len();
            if k < w {
                continue;
            }
            assert_eq!(d.var, plain.var, "packet {t}");
            assert_eq!(d.svar, plain.svar, "packet {t}");
            let med = |j: usize, i: usize, len: usize| {
                let from = (j + 1).saturating_sub(len);
                let mut v: Vec<f64> = (from..=j).map(|q| norm[q][i]).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                v[v.len() / 2]
            };
            let smooth = |j: usize, i: usize| {
                let from = (j + 1).saturating_sub(l);
                (from..=j).map(|q| med(q, i, mf)).sum::<f64>() / (j + 1 - from) as f64
            };
            for i in 0..n {
                let level = (k - lw..k).map(|j| med(j, i, lm)).sum::<f64>() / lw as f64;
                let long = (k - w..k).map(|j| smooth(j, i)).sum::<f64>() / w as f64;
                let want = (level - long) * (level - long);
                let got = d.lvl[i] as f64;
                assert!(
                    (got - want).abs() <= 1e-4 * want.max(1e-4),
                    "median {mf}/{lm}, packet {t}, subcarrier {i}: {got} vs {want}"
                );
            }
        }
    }
}

/// Still room with noise ±0.5, then from packet `t0` on a step of every subcarrier's level
/// (by `a` cos(0.37 i), a person entering changes the multipath at once) that then stays.
fn step_packet(rng: &mut Rng, n: usize, t: usize, t0: usize, a: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let base = 20.0 + 10.0 * ((i as f32) * 0.3).sin();
            let m = if t >= t0 {
                a * ((i as f32) * 0.37).cos()
            } else {
                0.0
            };
            base + m + rng.next()
        })
        .collect()
}

/// Packets from the step of [`step_packet`] to the first motion reading of `cfg`.
fn step_latency(cfg: &PresenceConfig, a: f32, seed: u64) -> Option<usize> {
    latency(cfg, step_packet, a, seed)
}

/// The level window sees a change of level within 3 packets (the 5-packet median needs 3 of
/// its values changed), at least 2 packets sooner than the default detector (7-packet median,
/// 5-packet low-pass, short window 10), with the mean and with the median over subcarriers.
#[test]
fn level_window_detects_a_level_step_sooner() {
    for seed in [5, 29, 77] {
        for a in [1.0f32, 2.0] {
            let plain = step_latency(&PresenceConfig::default(), a, seed).expect("never detected");
            for q in [0.0, 0.5] {
                let fast = step_latency(&level_cfg(q), a, seed).expect("level never detected");
                let msg = format!(
                    "seed {seed}, step {a}, quantile {q}: {fast} packets with the level window, {plain} with the defaults"
                );
                assert!(fast <= 3, "{msg}");
                assert!(fast + 2 <= plain, "{msg}");
            }
        }
    }
}

/// With the median over subcarriers (`level_quantile` 0.5) a 3-packet burst on 2 of 32
/// subcarriers (±3, about ten times the noise's standard deviation; it survives the 5-packet
/// median) is not motion, while the mean over
/// subcarriers reads it as motion; a step on every subcarrier is motion under both.
#[test]
fn level_quantile_ignores_a_burst_on_a_few_subcarriers() {
    let n = 32;
    for (q, burst_is_motion) in [(0.0f32, true), (0.5, false)] {
        let mut d = PresenceDetector::new(n, level_cfg(q)).unwrap();
        let mut rng = Rng(61);
        for t in 0..800 {
            d.push_amplitudes(&step_packet(&mut rng, n, t, usize::MAX, 0.0));
        }
        assert_eq!(d.phase(), Phase::Running);
        let mut seen = false;
        for k in 0..40 {
            let mut p = step_packet(&mut rng, n, 800 + k, usize::MAX, 0.0);
            if (10..13).contains(&k) {
                // Up on one, down on the other: the packet's mean (the gain) is unchanged.
                p[7] += 3.0;
                p[19] -= 3.0;
            }
            seen |= d.push_amplitudes(&p).motion;
        }
        assert_eq!(seen, burst_is_motion, "quantile {q}");
        let mut stepped = false;
        for k in 0..10 {
            stepped |= d
                .push_amplitudes(&step_packet(&mut rng, n, 840 + k, 840, 2.0))
                .motion;
        }
        assert!(stepped, "quantile {q}: step not detected");
    }
}

/// No false positives on stationary noise with the level window (uniform and heavier-tailed
/// noise as in the short window's test), mean and median over subcarriers, 20,000 packets.
#[test]
fn level_window_raises_no_false_positive_on_stationary_noise() {
    let n = 32;
    for q in [0.0f32, 0.5] {
        for (seed, heavy) in [(9u64, false), (23, true)] {
            let mut d = PresenceDetector::new(n, level_cfg(q)).unwrap();
            let mut rng = Rng(seed);
            let mut false_motion = 0;
            let mut running = 0;
            for _ in 0..20_400 {
                let p: Vec<f32> = (0..n)
                    .map(|i| {
                        let base = 20.0 + 10.0 * ((i as f32) * 0.3).sin();
                        let e = if heavy {
                            2.0 * (rng.next() + rng.next() + rng.next())
                        } else {
                            rng.next()
                        };
                        base + e
                    })
                    .collect();
                let r = d.push_amplitudes(&p);
                if r.phase == Phase::Running {
                    running += 1;
                    false_motion += r.motion as usize;
                }
            }
            assert!(running > 19_000, "running for only {running} packets");
            assert_eq!(false_motion, 0, "quantile {q}, seed {seed}");
            assert!(d.level_threshold().unwrap() > 0.0);
        }
    }
}

/// A room that is never still calibrates the level window on the quietest stretch too.
#[test]
fn level_window_calibrates_on_the_fallback_stretch() {
    let n = 32;
    let cfg = PresenceConfig {
        calib_patience: 2,
        ..level_cfg(0.5)
    };
    let mut d = PresenceDetector::new(n, cfg).unwrap();
    let mut rng = Rng(5);
    let mut t: usize = 0;
    while d.phase() != Phase::Running {
        assert!(t < 5000, "never calibrated");
        let m = if (t / 120).is_multiple_of(2) {
            0.3
        } else {
            0.0
        };
        d.push_amplitudes(&packet(&mut rng, n, t, m, 1.0));
        t += 1;
    }
    assert!(d.calibrated_on_fallback());
    let lt = d.level_threshold().unwrap();
    assert!(lt > 0.0 && lt.is_finite(), "{lt}");
    let r = d.push_amplitudes(&step_packet(&mut rng, n, t, 0, 0.0));
    assert!(r.ratio.is_finite(), "{r:?}");
}

/// The published fold grid has no level window (its numbers do not move); the grid with the
/// level axis is the published one three times, once per level option, each valid.
#[test]
fn fold_grid_with_level_adds_one_axis() {
    let base = eval::default_grid();
    let with = eval::grid_with_level();
    assert_eq!(base.len(), 324);
    assert!(base.iter().all(|c| c.level_window == 0));
    assert_eq!(with.len(), 3 * base.len());
    for (k, c) in with.iter().enumerate() {
        c.validate().unwrap();
        let plain = PresenceConfig {
            level_window: 0,
            level_median: 3,
            level_quantile: 0.0,
            ..c.clone()
        };
        assert_eq!(plain, base[k / 3], "setting {k}");
    }
    let levels: Vec<(usize, usize, f32)> = with[..3]
        .iter()
        .map(|c| (c.level_window, c.level_median, c.level_quantile))
        .collect();
    assert_eq!(levels, [(0, 3, 0.0), (1, 5, 0.0), (2, 5, 0.5)]);
}
