//! Helpers of the server tests: tiny real models written to a temporary folder, a server on
//! loopback port 0, live-frame datagrams, and minimal HTTP and WebSocket clients.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csipose_serve::{Config, Server};
use csipose_wire::{LiveFrame, Samples};

/// The test model's input: antennas, subcarriers, packets.
pub const A: usize = 2;
pub const S: usize = 30;
pub const P: usize = 10;

/// Writes a `nano` pose model for `[A, S, P]` with random weights as an fp32 `.csm`.
pub fn write_pose_model(dir: &Path) -> PathBuf {
    let cfg = csipose_model::ModelConfig::preset_for("nano", A, S, P).expect("preset");
    let model = csipose_model::Model::new(cfg.clone());
    let mut params = model.init_params(1);
    let mut rng = csipose_model::Rng::new(2);
    for v in params.iter_mut() {
        *v += 0.05 * rng.normal() as f32;
    }
    let spec = csipose_quantize::Spec::new(csipose_quantize::Bits::F32, false);
    let q = csipose_quantize::quantize(&cfg, &params, &spec).expect("quantize");
    let path = dir.join("nano-test.csm");
    std::fs::write(&path, q.to_csm().expect("csm")).expect("write model");
    path
}

/// Writes a small amplitude-feature activity head for `A × S` packets (3 classes).
pub fn write_activity_model(dir: &Path) -> PathBuf {
    use csipose_temporal::model::{ActivityModel, ModelShape};
    let shape = ModelShape {
        input_dim: csipose_temporal::features::BLOCKS * A * S,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 8,
        n_layers: 1,
        n_classes: 3,
    };
    let m = ActivityModel::new(shape, csipose_attention::Backend::Dense, 7).expect("model");
    let path = dir.join("act-test.rvne");
    std::fs::write(&path, m.to_rvne(false).expect("rvne")).expect("write rvne");
    path
}

/// A server on loopback port 0 with the test models.
pub fn start(dir: &Path, with_activity: bool, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = Config::new(write_pose_model(dir));
    cfg.udp = "127.0.0.1:0".parse().unwrap();
    cfg.http = "127.0.0.1:0".parse().unwrap();
    if with_activity {
        cfg.activity = Some(write_activity_model(dir));
        cfg.activity_labels = vec!["walk".into(), "sit".into(), "wave".into()];
    }
    tweak(&mut cfg);
    Server::start(cfg).expect("server starts")
}

/// Amplitudes of packet `i` of node `node` (deterministic, varied).
pub fn amplitudes(node: u32, i: u32) -> Vec<f32> {
    (0..A * S)
        .map(|k| {
            let x = (k as f32 * 0.37 + i as f32 * 0.21 + node as f32).sin();
            10.0 + 5.0 * x + (k % 7) as f32
        })
        .collect()
}

/// A live frame datagram: packet `i` of `node`, 10 ms apart in device time.
pub fn live_datagram(node: u32, i: u32) -> Vec<u8> {
    LiveFrame {
        node,
        session: 1,
        seq: i,
        device_time_ns: i as u64 * 10_000_000,
        rssi_dbm: Some(-42),
        antennas: A as u16,
        subcarriers: S as u16,
        samples: Samples::AmplitudeF32(amplitudes(node, i)),
    }
    .encode()
    .expect("encode")
}

/// Sends packets `range` of `node` to `to` from `sock`, `gap` apart.
pub fn send(
    sock: &UdpSocket,
    to: SocketAddr,
    node: u32,
    range: std::ops::Range<u32>,
    gap: Duration,
) {
    for i in range {
        sock.send_to(&live_datagram(node, i), to).expect("send");
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
}

/// One HTTP request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
        addr.port()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Length: 2\r\n\r\n{}");
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (code, body) = http(addr, "GET", path, &[]);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

pub type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A WebSocket client on `/ws` (with `query`), reads time out after 5 s.
pub fn ws_connect(addr: SocketAddr, query: &str) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/ws{query}")).expect("ws connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    ws
}

/// The next JSON message of `ws`.
pub fn ws_next(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().expect("ws read") {
            tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("json")
            }
            tungstenite::Message::Close(_) => panic!("closed"),
            _ => continue,
        }
    }
}

/// Reads messages until `f` accepts one or `limit` passes.
pub fn ws_until(
    ws: &mut Ws,
    limit: Duration,
    mut f: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + limit;
    loop {
        assert!(Instant::now() < end, "no matching message within {limit:?}");
        let m = ws_next(ws);
        if f(&m) {
            return m;
        }
    }
}

/// Polls `/api/v1/status` until `f` holds (or panics after `limit`).
pub fn wait_status(
    addr: SocketAddr,
    limit: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + limit;
    loop {
        let v = get_json(addr, "/api/v1/status");
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < end, "status never matched: {v:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A packet of an empty, still room: a fixed profile with small deterministic noise.
pub fn still_datagram(node: u32, i: u32) -> Vec<u8> {
    let mut h = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ node as u64;
    let amps = (0..A * S)
        .map(|k| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            let noise = (h % 1000) as f32 / 1000.0 - 0.5;
            20.0 + (k % 5) as f32 + 0.05 * noise
        })
        .collect();
    LiveFrame {
        node,
        session: 1,
        seq: i,
        device_time_ns: i as u64 * 10_000_000,
        rssi_dbm: Some(-50),
        antennas: A as u16,
        subcarriers: S as u16,
        samples: Samples::AmplitudeF32(amps),
    }
    .encode()
    .expect("encode")
}
