//! Replay over loopback UDP: exact fault counts checked from what a receiver gets,
//! record → replay → record bit-exactness, datasets, native and ADR-018 sending, and
//! `--to` validation. Every socket is on 127.0.0.1; every wait is bounded.

use csipose_wire::record::{RecordOptions, RecordReader, RecordWriter};
use csipose_wire::replay::{
    check_target, parse_target, replay, Faults, ReplayOptions, SendAs, Speed,
};
use csipose_wire::{decode_datagram, Format, Reject, Samples};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn shared(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures"
    ))
    .join(name)
}

/// A receiver on 127.0.0.1 collecting datagrams until `stop` says how many to expect (or
/// 5 s of silence pass).
struct Receiver {
    addr: SocketAddr,
    stop: mpsc::Sender<u64>,
    done: std::thread::JoinHandle<Vec<(SocketAddr, Vec<u8>)>>,
}

fn receiver() -> Receiver {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let (stop, rx) = mpsc::channel::<u64>();
    let done = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        let mut expect: Option<u64> = None;
        let mut last = Instant::now();
        loop {
            if expect.is_none() {
                expect = rx.try_recv().ok();
            }
            if expect.is_some_and(|n| got.len() as u64 >= n)
                || last.elapsed() > Duration::from_secs(5)
            {
                return got;
            }
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                got.push((from, buf[..n].to_vec()));
                last = Instant::now();
            }
        }
    });
    Receiver { addr, stop, done }
}

impl Receiver {
    fn finish(self, expect: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        self.stop.send(expect).unwrap();
        self.done.join().unwrap()
    }
}

#[test]
fn faults_are_counted_exactly() {
    let rx = receiver();
    let opts = ReplayOptions {
        to: rx.addr,
        nodes: 2,
        // The capture spans 29.9 s: 40x gives about 0.75 s (paced, so a loaded machine's
        // receiver keeps up with its socket buffer).
        speed: Speed::Factor(40.0),
        faults: Faults {
            loss: 0.1,
            reorder: 0.1,
            duplicate: 0.1,
            junk: 0.05,
            reset_at: Some(100),
        },
        seed: 7,
        ..Default::default()
    };
    let input = vec![shared("example_4366c0.pcap")];
    let stats = replay(&input, &opts).unwrap();
    let got = rx.finish(stats.sent);
    eprintln!("{stats}");
    assert_eq!(stats.datagrams, 2 * 293);
    assert_eq!(stats.nodes, 2);
    assert_eq!(stats.resets, 2);
    assert!(stats.dropped > 20 && stats.reordered > 10 && stats.duplicated > 20 && stats.junk > 5);
    assert_eq!(
        stats.sent,
        stats.datagrams - stats.dropped + stats.duplicated + stats.junk
    );
    assert_eq!(
        got.len() as u64,
        stats.sent,
        "every datagram sent arrives on loopback"
    );

    // Recover every count from what arrived.
    let mut junk = 0;
    // per source: (session, seq) seen, max seq per session, sessions in order
    let mut seen: HashMap<SocketAddr, BTreeSet<(u32, u64)>> = HashMap::new();
    let mut max_seq: HashMap<(SocketAddr, u32), u64> = HashMap::new();
    let mut sessions: HashMap<SocketAddr, BTreeSet<u32>> = HashMap::new();
    let mut nodes_by_port: BTreeMap<SocketAddr, BTreeSet<u32>> = BTreeMap::new();
    let (mut dups, mut reorders) = (0u64, 0u64);
    for (from, d) in &got {
        match decode_datagram(d) {
            Err(r) => {
                assert_eq!(r.reason, Reject::UnknownFormat, "{r}");
                junk += 1;
            }
            Ok(f) => {
                assert_eq!(f.format, Format::Live);
                assert_eq!((f.antennas, f.subcarriers), (1, 256));
                let (session, seq) = (f.session.unwrap(), f.seq.unwrap());
                nodes_by_port
                    .entry(*from)
                    .or_default()
                    .insert(f.node_id.unwrap());
                sessions.entry(*from).or_default().insert(session);
                if !seen.entry(*from).or_default().insert((session, seq)) {
                    dups += 1;
                    continue;
                }
                let m = max_seq.entry((*from, session)).or_insert(seq);
                if seq < *m {
                    reorders += 1;
                }
                *m = (*m).max(seq);
            }
        }
    }
    assert_eq!(nodes_by_port.len(), 2, "one source port per node");
    let ids: BTreeSet<u32> = nodes_by_port.values().flatten().copied().collect();
    assert_eq!(ids, BTreeSet::from([1, 2]));
    assert!(nodes_by_port.values().all(|s| s.len() == 1));
    let distinct: u64 = seen.values().map(|s| s.len() as u64).sum();
    assert_eq!(junk, stats.junk);
    assert_eq!(dups, stats.duplicated);
    assert_eq!(reorders, stats.reordered);
    assert_eq!(stats.datagrams - distinct, stats.dropped);
    let resets: u64 = sessions.values().map(|s| s.len() as u64 - 1).sum();
    assert_eq!(resets, stats.resets);

    // The same seed gives the same faults (here sent as fast as possible to an idle socket).
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let again = ReplayOptions {
        to: sink.local_addr().unwrap(),
        speed: Speed::Max,
        ..opts.clone()
    };
    let stats2 = replay(&input, &again).unwrap();
    assert_eq!(stats2, stats);
    let other = ReplayOptions { seed: 8, ..again };
    assert_ne!(replay(&input, &other).unwrap(), stats);
}

#[test]
fn record_replay_record_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    // A recording from three sources with mixed content (junk included), 1 ms apart.
    let sources: Vec<SocketAddr> = ["10.0.0.5:5500", "10.0.0.6:5500", "10.0.0.5:6000"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let esp = std::fs::read(shared("example_csi.csv")).unwrap();
    let row = esp.split(|&c| c == b'\n').next().unwrap().to_vec();
    let mut original = Vec::new();
    let mut w = RecordWriter::create(
        dir.path().join("in"),
        RecordOptions {
            max_part_bytes: 4000,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..60u64 {
        let src = sources[(i % 3) as usize];
        let data = match i % 4 {
            0 => row.clone(),
            1 => vec![0xFF, i as u8, 1, 2, 3],
            2 => csipose_wire::adr018::encode(&Default::default(), 1, 2, &[[i as i8, 1], [2, 3]])
                .unwrap(),
            _ => (0..i as u8).collect(),
        };
        w.append(1_000_000_000 + i * 1_000_000, src, &data).unwrap();
        original.push((src, data));
    }
    let parts = w.finish().unwrap();
    assert!(parts.len() > 1, "rotation exercised");

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let to = sock.local_addr().unwrap();
    let out_prefix = dir.path().join("out");
    let recorder = std::thread::spawn(move || {
        let mut w = RecordWriter::create(&out_prefix, RecordOptions::default()).unwrap();
        let mut buf = vec![0u8; 65_536];
        let start = Instant::now();
        while w.records() < 60 && start.elapsed() < Duration::from_secs(10) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                w.append(csipose_wire::record::now_ns(), from, &buf[..n])
                    .unwrap();
            }
        }
        w.finish().unwrap()
    });
    let t0 = Instant::now();
    let stats = replay(
        &parts,
        &ReplayOptions {
            to,
            ..Default::default()
        },
    )
    .unwrap();
    let took = t0.elapsed();
    let out_parts = recorder.join().unwrap();
    assert_eq!((stats.sent, stats.nodes), (60, 3));
    // Paced by the recorded receive times: 59 ms from first to last.
    assert!(took >= Duration::from_millis(55), "{took:?}");
    let mut replayed = Vec::new();
    for p in &out_parts {
        let mut r = RecordReader::open(p).unwrap();
        replayed.extend(r.by_ref().map(|x| x.unwrap()));
        assert!(r.truncation().is_none());
    }
    assert_eq!(replayed.len(), 60);
    // Same bytes in the same order; recorded sources map one-to-one onto sending sockets.
    let mut map: HashMap<SocketAddr, SocketAddr> = HashMap::new();
    for ((src, data), rec) in original.iter().zip(&replayed) {
        assert_eq!(&rec.data, data);
        assert_eq!(*map.entry(*src).or_insert(rec.source), rec.source);
        assert!(rec.source.ip().is_loopback());
    }
    let ports: BTreeSet<_> = map.values().collect();
    assert_eq!(ports.len(), 3);
}

#[test]
fn dataset_packets_become_amplitude_frames() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    std::fs::create_dir(&ds).unwrap();
    let (n, a, s, p) = (2, 3, 4, 5);
    let x: Vec<f32> = (0..n * a * s * p).map(|i| i as f32 * 0.5).collect();
    csipose_npy::write(ds.join("X.npy"), &[n, a, s, p], &x).unwrap();
    let rx = receiver();
    let opts = ReplayOptions {
        to: rx.addr,
        speed: Speed::Factor(1.0),
        rate_hz: 1000.0,
        ..Default::default()
    };
    let t0 = Instant::now();
    let stats = replay(std::slice::from_ref(&ds), &opts).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(8),
        "10 packets at 1 kHz"
    );
    let got = rx.finish(stats.sent);
    assert_eq!(got.len(), n * p);
    for (k, (_, d)) in got.iter().enumerate() {
        let f = decode_datagram(d).unwrap();
        assert_eq!((f.antennas as usize, f.subcarriers as usize), (a, s));
        assert_eq!(f.seq, Some(k as u64));
        assert_eq!(f.device_time_ns, Some(k as u64 * 1_000_000));
        let (fr, pk) = (k / p, k % p);
        let want: Vec<f32> = (0..a * s).map(|i| x[((fr * a * s) + i) * p + pk]).collect();
        assert_eq!(f.samples, Samples::AmplitudeF32(want));
    }
    // Datasets hold amplitudes: ADR-018 cannot carry them.
    let bad = ReplayOptions {
        send_as: SendAs::Adr018,
        ..opts
    };
    assert!(replay(&[ds], &bad).unwrap_err().contains("amplitudes"));
}

#[test]
fn native_and_adr018_sending() {
    // Nexmon pcap as its own UDP payloads.
    let rx = receiver();
    let opts = ReplayOptions {
        to: rx.addr,
        speed: Speed::Max,
        send_as: SendAs::Native,
        ..Default::default()
    };
    let stats = replay(&[shared("example_4358.pcap")], &opts).unwrap();
    let got = rx.finish(stats.sent);
    assert_eq!(got.len(), 4);
    let want = csipose_npy::read::<f64>(shared("example_4358.pcap.csi.npy")).unwrap();
    let sc = want.shape[1];
    for (i, (_, d)) in got.iter().enumerate() {
        let f = decode_datagram(d).unwrap();
        assert_eq!(f.format, Format::Nexmon);
        let c = f.samples.complex_f64().unwrap();
        assert_eq!(
            c[7],
            [want.data[(i * sc + 7) * 2], want.data[(i * sc + 7) * 2 + 1]]
        );
    }
    // ESP32 CSV rows as their own lines, and as ADR-018 frames.
    let want = csipose_npy::read::<f64>(shared("example_csi.csv.csi.npy")).unwrap();
    for (send_as, format) in [
        (SendAs::Native, Format::Esp32CsiTool),
        (SendAs::Adr018, Format::Adr018),
    ] {
        let rx = receiver();
        let opts = ReplayOptions {
            to: rx.addr,
            speed: Speed::Max,
            send_as,
            nodes: 3,
            ..Default::default()
        };
        let stats = replay(&[shared("example_csi.csv")], &opts).unwrap();
        let got = rx.finish(stats.sent);
        assert_eq!(got.len(), 13 * 3);
        let mut per_port: HashMap<SocketAddr, usize> = HashMap::new();
        for (from, d) in &got {
            let f = decode_datagram(d).unwrap();
            assert_eq!(f.format, format);
            let i = *per_port.entry(*from).and_modify(|k| *k += 1).or_insert(0);
            let c = f.samples.complex_f64().unwrap();
            assert_eq!(c.len(), 64);
            let row = &want.data[i * 128..(i + 1) * 128];
            let want_row: Vec<[f64; 2]> = row.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
            assert_eq!(c, want_row);
            if format == Format::Adr018 {
                assert!((1..=3).contains(&f.node_id.unwrap()));
                assert_eq!(f.seq, Some(i as u64));
            }
        }
        assert_eq!(per_port.len(), 3);
    }
    // Intel 5300 has no native datagram; Nexmon's packed floats do not fit ADR-018.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    let e = replay(
        &[shared("example.dat")],
        &ReplayOptions {
            to,
            send_as: SendAs::Native,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.contains("native"), "{e}");
    let e = replay(
        &[shared("example_4366c0.pcap")],
        &ReplayOptions {
            to,
            send_as: SendAs::Adr018,
            speed: Speed::Max,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.contains("int8"), "{e}");
}

#[test]
fn targets_and_options_are_validated() {
    assert!(parse_target("127.0.0.1:5500", false).is_ok());
    assert!(parse_target("[::1]:5500", false).is_ok());
    let e = parse_target("192.0.2.7:5500", false).unwrap_err();
    assert!(e.contains("--allow-remote"), "{e}");
    assert!(parse_target("192.0.2.7:5500", true).is_ok());
    assert!(parse_target("127.0.0.1:0", false)
        .unwrap_err()
        .contains("port 0"));
    assert!(parse_target("127.0.0.1", false).is_err());
    assert!(parse_target("no such host:5500", false).is_err());
    assert!(check_target("0.0.0.0:5500".parse().unwrap(), true).is_err());
    assert!(check_target("224.0.0.1:5500".parse().unwrap(), true).is_err());
    assert_eq!(Speed::parse("max"), Ok(Speed::Max));
    assert_eq!(Speed::parse("2.5"), Ok(Speed::Factor(2.5)));
    assert!(Speed::parse("0").is_err() && Speed::parse("fast").is_err());
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap();
    let input = [shared("example_csi.csv")];
    let bad = |o: ReplayOptions| replay(&input, &o).unwrap_err();
    let base = ReplayOptions {
        to,
        speed: Speed::Max,
        ..Default::default()
    };
    assert!(bad(ReplayOptions {
        nodes: 0,
        ..base.clone()
    })
    .contains("--nodes"));
    assert!(bad(ReplayOptions {
        nodes: 256,
        ..base.clone()
    })
    .contains("--nodes"));
    let f = Faults {
        loss: 1.5,
        ..Default::default()
    };
    assert!(bad(ReplayOptions {
        faults: f,
        ..base.clone()
    })
    .contains("--loss"));
    let f = Faults {
        reset_at: Some(0),
        ..Default::default()
    };
    assert!(bad(ReplayOptions {
        faults: f,
        ..base.clone()
    })
    .contains("--reset-at"));
    let f = Faults {
        junk: -0.1,
        ..Default::default()
    };
    assert!(bad(ReplayOptions {
        faults: f,
        ..base.clone()
    })
    .contains("--junk"));
    assert!(bad(ReplayOptions {
        rate_hz: 0.0,
        ..base.clone()
    })
    .contains("--rate"));
    let remote = ReplayOptions {
        to: "192.0.2.7:5500".parse().unwrap(),
        ..base.clone()
    };
    assert!(bad(remote).contains("--allow-remote"));
    assert!(replay(&[PathBuf::from("/nonexistent/x.pcap")], &base)
        .unwrap_err()
        .contains("/nonexistent/x.pcap"));
    // Full loss: everything counted as dropped, nothing sent.
    let f = Faults {
        loss: 1.0,
        ..Default::default()
    };
    let s = replay(&input, &ReplayOptions { faults: f, ..base }).unwrap();
    assert_eq!((s.datagrams, s.sent, s.dropped), (13, 0, 13));
}
