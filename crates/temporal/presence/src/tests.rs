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
    ];
    for (cfg, field) in bad.iter().zip([
        "window",
        "margin",
        "calib_packets",
        "calib_stability",
        "min_relative_amplitude",
        "lowpass",
        "lowpass",
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
        let smooth = |k: usize, i: usize| {
            let from = (k + 1).saturating_sub(l);
            (from..=k).map(|j| norm[j][i]).sum::<f64>() / (k + 1 - from) as f64
        };
        for i in 0..n {
            let xs: Vec<f64> = (t + 1 - w..=t).map(|k| smooth(k, i)).collect();
            let m = xs.iter().sum::<f64>() / w as f64;
            let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / w as f64;
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
