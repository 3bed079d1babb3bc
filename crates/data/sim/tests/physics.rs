//! Physical behaviour of the simulator: an empty room is constant across packets but for
//! noise, a moving body changes the amplitude, and more at an antenna whose line of sight
//! it crosses than at one whose line of sight it stays clear of.

use csipose_sim::body::{scatter_points, shadow_points, Angles, Anthropometry, Skeleton};
use csipose_sim::channel::{PathSet, StaticChannel};
use csipose_sim::geom::V3;
use csipose_sim::rng::Rng;
use csipose_sim::{Profile, SequenceSpec, SimConfig, Simulator};

fn clean(cfg: SimConfig) -> SimConfig {
    SimConfig {
        agc_jitter_db: 0.0,
        subcarrier_dropout: 0.0,
        packet_dropout: 0.0,
        quantize: false,
        keep_raw: true,
        ..cfg
    }
}

/// Per (antenna, subcarrier): standard deviation of the raw amplitude over a frame's packets,
/// averaged over the frames and the rows, relative to the mean amplitude.
fn packet_spread(raw: &[f64], rows: usize, packets: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0);
    for row in raw.chunks_exact(packets) {
        let m = row.iter().sum::<f64>() / packets as f64;
        let v = row.iter().map(|x| (x - m).powi(2)).sum::<f64>() / packets as f64;
        sum += v.sqrt() / m;
        n += 1;
    }
    assert_eq!(n % rows, 0);
    sum / n as f64
}

#[test]
fn empty_room_is_constant_across_packets_but_for_noise() {
    let spec = SequenceSpec {
        env: 1,
        subject: 3,
        action: 6,
        frames: 5,
    };
    let rows = 3 * 114;
    let run = |snr_db: f64, body: bool| {
        let sim = Simulator::new(clean(SimConfig {
            snr_db,
            body,
            ..SimConfig::default()
        }));
        let seq = sim.sequence(spec);
        packet_spread(&seq.raw_amp, rows, 10)
    };
    // Without noise the empty room is exactly constant (the carrier and timing offsets
    // rotate the phase only).
    let silent = run(300.0, false);
    assert!(silent < 1e-5, "noise-free empty room varies by {silent}");
    // With noise at 30 dB the spread is of the noise's size: amplitude std ≈ σ/√2 per
    // component relative to |H|, i.e. about 10^(-30/20)/√2 ≈ 0.022 for |H| at the RMS level.
    let noisy = run(30.0, false);
    assert!(
        noisy > 0.005 && noisy < 0.08,
        "30 dB empty room spread {noisy}"
    );
    // A marching subject moves the amplitude far more than the noise does.
    let moving = run(30.0, true);
    assert!(moving > 2.0 * noisy, "moving {moving} vs noise {noisy}");
}

#[test]
fn body_crossing_a_line_of_sight_changes_that_antenna_most() {
    // Transmitter at the origin; antenna 0's line of sight runs along +x, antenna 1's towards
    // (4, 3). The subject walks across antenna 0's line at x = 2, staying ≥ 0.7 m from
    // antenna 1's. Only the two lines of sight exist, so the body's effect is its shadowing
    // and its own scattering.
    let radio = Profile::Mmfi.radio();
    let tx = V3::new(0.0, 0.0, 1.0);
    let rx = [V3::new(4.0, 0.0, 1.0), V3::new(4.0, 3.0, 1.0)];
    let los = PathSet {
        line_of_sight: true,
        ..PathSet::NONE
    };
    let ch = StaticChannel::build(&radio, tx, &rx, None, &[], los);
    let anth = Anthropometry::sample(&mut Rng::new(4));
    let (mut sc, mut sh, mut att) = (Vec::new(), Vec::new(), Vec::new());
    let (mut re, mut im) = (vec![0.0; ch.grid], vec![0.0; ch.grid]);
    let mut amp = [Vec::new(), Vec::new()];
    for step in 0..60 {
        let y = -0.6 + 1.2 * step as f64 / 59.0;
        let sk = Skeleton::pose(&anth, &Angles::rest(), V3::new(2.0, y, 0.0), 0.0);
        scatter_points(&sk, &anth, &mut sc);
        shadow_points(&sk, &anth, &mut sh);
        for (a, series) in amp.iter_mut().enumerate() {
            ch.packet(a, &sc, &sh, &mut att, &mut re, &mut im);
            let mean: f64 = (0..radio.grid_len())
                .map(|k| (re[k] as f64).hypot(im[k] as f64))
                .sum::<f64>()
                / radio.grid_len() as f64;
            series.push(mean);
        }
    }
    let rel_spread = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt() / m
    };
    let (s0, s1) = (rel_spread(&amp[0]), rel_spread(&amp[1]));
    assert!(
        s0 > 0.1,
        "crossing the line of sight changes antenna 0 by only {s0}"
    );
    assert!(s0 > 2.5 * s1, "antenna 0 spread {s0} vs antenna 1 {s1}");
    // The minimum of antenna 0 is where the body stands on its line of sight (y ≈ 0).
    let imin = (0..60)
        .min_by(|&i, &j| amp[0][i].total_cmp(&amp[0][j]))
        .unwrap();
    let y = -0.6 + 1.2 * imin as f64 / 59.0;
    assert!(y.abs() < 0.2, "deepest shadow at y = {y}");
}

#[test]
fn mmfi_profile_sequences_differ_by_action_and_subject() {
    let sim = Simulator::new(SimConfig::default());
    let a = sim.sequence(SequenceSpec {
        env: 1,
        subject: 1,
        action: 1,
        frames: 4,
    });
    let b = sim.sequence(SequenceSpec {
        env: 1,
        subject: 1,
        action: 12,
        frames: 4,
    });
    let c = sim.sequence(SequenceSpec {
        env: 1,
        subject: 2,
        action: 1,
        frames: 4,
    });
    assert_eq!(
        a.height, b.height,
        "a subject keeps its body across actions"
    );
    assert_ne!(a.height, c.height);
    assert_ne!(a.x, b.x);
    assert_ne!(a.y2d, c.y2d);
}

#[test]
fn body_changes_faded_subcarriers_most() {
    // In a real room the static channel has frequency-selective fades; the body adds a
    // path of similar strength on every subcarrier, so the relative change of |H| is
    // largest on the subcarriers where the static channel is weakest.
    let radio = Profile::Mmfi.radio();
    let env = csipose_sim::room::Environment::get(1);
    let ch = StaticChannel::new(&env, &radio);
    let n = radio.grid_len();
    let (mut re, mut im, mut att) = (vec![0.0; ch.grid], vec![0.0; ch.grid], Vec::new());
    ch.packet(0, &[], &[], &mut att, &mut re, &mut im);
    let empty: Vec<f64> = (0..n).map(|k| (re[k] as f64).hypot(im[k] as f64)).collect();
    let anth = Anthropometry::sample(&mut Rng::new(8));
    let (mut sc, mut sh) = (Vec::new(), Vec::new());
    let mut change = vec![0.0; n];
    for step in 0..20 {
        let mut ang = Angles::rest();
        ang.shoulder_flex = [0.15 * step as f64; 2];
        let base = env.area_center + V3::new(0.02 * step as f64, 0.0, 0.0);
        let sk = Skeleton::pose(&anth, &ang, base, env.facing);
        scatter_points(&sk, &anth, &mut sc);
        shadow_points(&sk, &anth, &mut sh);
        ch.packet(0, &sc, &sh, &mut att, &mut re, &mut im);
        for k in 0..n {
            change[k] += ((re[k] as f64).hypot(im[k] as f64) - empty[k]).abs() / empty[k];
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| empty[a].total_cmp(&empty[b]));
    let fifth = n / 5;
    let mean = |idx: &[usize]| idx.iter().map(|&k| change[k]).sum::<f64>() / idx.len() as f64;
    let (weak, strong) = (mean(&order[..fifth]), mean(&order[n - fifth..]));
    assert!(
        weak > 1.5 * strong,
        "weakest fifth {weak} vs strongest {strong}"
    );
}
