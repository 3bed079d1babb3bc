//! Soak bench of `csipose serve` on loopback (a bench, not a test): `--nodes` senders at
//! `--rate` live-frame packets/s each for `--seconds`, into an in-process server with a real
//! `.csm` model (`--model`, default: a `micro` model with random weights for the MM-Fi shape
//! 3 × 114 × 10, built here) and one WebSocket client reading everything. Reports datagrams
//! sent vs received (kernel drops), received = decoded + rejected, inference-queue drops,
//! receive-to-publish and receive-to-send latency p50/p99, and resident memory every 5 s.
//!
//! cargo run --release -p csipose-serve --example soak -- --nodes 8 --rate 100 --seconds 60

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use csipose_serve::{Config, Server};
use csipose_wire::{LiveFrame, Samples};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn random_micro(dir: &std::path::Path) -> PathBuf {
    let cfg = csipose_model::ModelConfig::preset("micro").expect("preset");
    let model = csipose_model::Model::new(cfg.clone());
    let mut params = model.init_params(1);
    let mut rng = csipose_model::Rng::new(2);
    for v in params.iter_mut() {
        *v += 0.05 * rng.normal() as f32;
    }
    let spec = csipose_quantize::Spec::new(csipose_quantize::Bits::I8, false);
    let q = csipose_quantize::quantize(&cfg, &params, &spec).expect("quantize");
    let path = dir.join("micro-random-int8.csm");
    std::fs::write(&path, q.to_csm().expect("csm")).expect("write");
    path
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: u32 = arg(&args, "--nodes", 8);
    let rate: f64 = arg(&args, "--rate", 100.0);
    let seconds: f64 = arg(&args, "--seconds", 60.0);
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = args
        .iter()
        .position(|a| a == "--model")
        .map(|i| PathBuf::from(&args[i + 1]))
        .unwrap_or_else(|| random_micro(tmp.path()));
    let mut cfg = Config::new(model.clone());
    cfg.udp = "127.0.0.1:0".parse().unwrap();
    cfg.http = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(cfg).expect("server");
    let (udp, http) = (server.udp_addr(), server.http_addr());
    println!(
        "soak: {nodes} nodes x {rate} packets/s for {seconds} s into {udp}; model {}",
        model.display()
    );

    // One WebSocket client reads everything (it measures receive-to-send).
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ws, _) = tungstenite::connect(format!("ws://{http}/ws")).expect("ws");
            if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
            }
            let mut poses = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(tungstenite::Message::Text(t)) = ws.read() {
                    if t.as_str().contains("\"type\":\"pose\"") {
                        poses += 1;
                    }
                }
            }
            poses
        })
    };
    // Amplitude frames of the MM-Fi shape (3 x 114), varied per packet.
    let (a, s) = (3u16, 114u16);
    let senders: Vec<_> = (0..nodes)
        .map(|node| {
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                let t0 = Instant::now();
                let total = (rate * seconds) as u32;
                for i in 0..total {
                    let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let amps = (0..a as usize * s as usize)
                        .map(|k| {
                            10.0 + ((k as f32) * 0.3 + i as f32 * 0.2 + node as f32).sin() * 4.0
                        })
                        .collect();
                    let d = LiveFrame {
                        node: node + 1,
                        session: 1,
                        seq: i,
                        device_time_ns: (i as f64 / rate * 1e9) as u64,
                        rssi_dbm: Some(-40),
                        antennas: a,
                        subcarriers: s,
                        samples: Samples::AmplitudeF32(amps),
                    }
                    .encode()
                    .unwrap();
                    sock.send_to(&d, udp).unwrap();
                }
                total as u64
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut rss = vec![(0.0, rss_kib())];
    while senders.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_secs(5).min(Duration::from_secs_f64(seconds + 1.0)));
        rss.push((t0.elapsed().as_secs_f64(), rss_kib()));
    }
    let sent: u64 = senders.into_iter().map(|h| h.join().unwrap()).sum();
    // Let the queue drain.
    let sh = server.shared().clone();
    let end = Instant::now() + Duration::from_secs(10);
    while !sh.queue.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let ws_poses = reader.join().unwrap();
    let c = sh.stats.with(|c| {
        (
            c.datagrams,
            c.decoded.values().sum::<u64>(),
            c.rejected.values().sum::<u64>(),
            c.queue_dropped,
            c.poses,
            c.skipped.clone(),
        )
    });
    let lat = |r| csipose_serve::stats::Stats::latency(r).unwrap_or((0, 0, 0));
    let (p50, p99, max) = lat(&sh.stats.publish_latency);
    let (s50, s99, smax) = lat(&sh.stats.send_latency);
    let (f50, f99, _) = lat(&sh.stats.inference_time);
    println!(
        "sent {sent}, received {} (kernel drops {})",
        c.0,
        sent.saturating_sub(c.0)
    );
    println!(
        "received = decoded + rejected: {} = {} + {} ({})",
        c.0,
        c.1,
        c.2,
        if c.0 == c.1 + c.2 {
            "holds"
        } else {
            "VIOLATED"
        }
    );
    println!(
        "inference queue drops {}; poses {} (WebSocket client got {ws_poses}); skipped {:?}",
        c.3, c.4, c.5
    );
    println!("receive->publish p50 {p50} us, p99 {p99} us, max {max} us");
    println!("receive->send    p50 {s50} us, p99 {s99} us, max {smax} us");
    println!("forward          p50 {f50} us, p99 {f99} us");
    let kib: Vec<String> = rss
        .iter()
        .map(|(t, k)| format!("{t:.0}s:{}MiB", k / 1024))
        .collect();
    println!("resident memory {}", kib.join(" "));
    server.shutdown();
}
