//! The server on loopback with real models: pose messages equal the runtime's output on the
//! window the packets make, REST endpoints and counters, the token, junk datagrams, a client
//! that disconnects mid-request and a client that never reads.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use csipose_dataset::preprocess::preprocess_frame;
use csipose_dataset::windows::window_at_times;
use csipose_runtime::{Kernel, ModelFile, Runtime, OUTPUTS};

/// What the pose model gives for the window ending at packet `q` of `node` (10 ms packets,
/// a 100 ms window of 10 positions: exactly the last 10 packets).
fn expected_pose(model: &[u8], node: u32, q: u32) -> [f32; OUTPUTS] {
    let times: Vec<f64> = (q - 9..=q)
        .map(|i| (i as u64 * 10_000_000) as f64 / 1e9)
        .collect();
    let rows: Vec<Vec<f64>> = (q - 9..=q)
        .map(|i| amplitudes(node, i).iter().map(|&v| v as f64).collect())
        .collect();
    let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
    let t = times[9];
    let targets: Vec<f64> = (0..P)
        .map(|k| (t - 0.01 * (P - 1) as f64) + 0.01 * k as f64)
        .collect();
    let mut frame = window_at_times(&times, &refs, &targets).unwrap();
    preprocess_frame(&mut frame, A, S, P).unwrap();
    let x: Vec<f32> = frame.iter().map(|&v| v as f32).collect();
    // The file bytes need 4-byte alignment.
    let words: Vec<u32> = model
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_ne_bytes(b)
        })
        .collect();
    // SAFETY: viewing the u32 buffer as its first model.len() bytes.
    let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, model.len()) };
    let mf = ModelFile::parse(bytes).unwrap();
    let mut consts = vec![0.0f32; Runtime::consts_len_for(&mf.config, Kernel::best())];
    let rt = Runtime::new(&mf, Kernel::best(), &mut consts).unwrap();
    let mut scratch = vec![0.0f32; Runtime::scratch_len(&mf.config)];
    let mut out = [0.0f32; OUTPUTS];
    rt.forward(&x, &mut scratch, &mut out).unwrap();
    out
}

#[test]
fn pose_messages_are_the_models_output_and_rest_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true, |_| {});
    let (udp, http_addr) = (server.udp_addr(), server.http_addr());
    let model_bytes = std::fs::read(dir.path().join("nano-test.csm")).unwrap();
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&model_bytes);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };

    let mut ws = ws_connect(http_addr, "?csi=1");
    let hello = ws_next(&mut ws);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["v"], 1);
    assert_eq!(hello["model"]["file"], "nano-test.csm");
    assert_eq!(hello["model"]["sha256"], sha.as_str());
    assert_eq!(hello["activity_model"]["file"], "act-test.rvne");

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    send(&sock, udp, 3, 0..60, Duration::from_millis(2));
    let mut csi = None;
    let pose = ws_until(&mut ws, Duration::from_secs(10), |m| {
        if m["type"] == "csi" {
            csi = Some(m.clone());
        }
        m["type"] == "pose" && m["seq"] == 59
    });
    assert_eq!(pose["node"], 3);
    assert_eq!(pose["model"]["sha256"], sha.as_str());
    assert_eq!(pose["activity_model"]["file"], "act-test.rvne");
    assert!(
        pose["presence"].is_null(),
        "no presence detector: not measured"
    );
    let kp = pose["keypoints"].as_array().unwrap();
    assert_eq!(kp.len(), 17);
    let want = expected_pose(&model_bytes, 3, 59);
    for (j, k) in kp.iter().enumerate() {
        for c in 0..2 {
            let got = k[c].as_f64().unwrap();
            let exp = want[2 * j + c] as f64;
            assert!(
                (got - exp).abs() < 1e-4,
                "joint {j} coord {c}: {got} vs {exp}"
            );
        }
        assert!(k[2].is_null(), "the model gives no confidence");
    }
    // Activity: 60 packets at 4 per frame = 15 frames through the streamer.
    let act = &pose["activity"];
    assert_eq!(act["frames"], 15, "{act}");
    let probs: Vec<f64> = act["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 3);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    assert_eq!(
        act["labels"][act["index"].as_u64().unwrap() as usize],
        act["label"]
    );
    assert!(pose["latency_us"].as_u64().is_some());
    // The CSI preview (asked for with ?csi=1) and the 1 Hz nodes message.
    let csi = csi.expect("a csi preview message");
    assert_eq!(csi["node"], 3);
    assert_eq!(csi["amplitudes"].as_array().unwrap().len(), S);
    let nodes = ws_until(&mut ws, Duration::from_secs(5), |m| {
        m["type"] == "nodes" && m["nodes"][0]["packets"] == 60
    });
    let n = &nodes["nodes"][0];
    assert_eq!(n["node"], 3);
    assert_eq!(n["lost"], 0);
    assert_eq!(n["rssi"], -42);
    assert_eq!(n["layout"]["subcarriers"], S);
    assert_eq!(n["format"], "live");

    // REST.
    let (code, body) = http(http_addr, "GET", "/healthz", &[]);
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let st = get_json(http_addr, "/api/v1/status");
    let c = &st["counters"];
    assert_eq!(c["datagrams"], 60);
    assert_eq!(c["decoded"]["live"], 60);
    assert_eq!(c["rejected_total"], 0);
    assert!(c["poses"].as_u64().unwrap() >= 10, "{st}");
    assert_eq!(st["model"]["sha256"], sha.as_str());
    assert!(st["latency_us"]["receive_to_publish"]["p99"]
        .as_u64()
        .is_some());
    let latest = get_json(http_addr, "/api/v1/pose/latest");
    assert_eq!(latest["poses"][0]["seq"], 59);
    assert_eq!(latest["poses"][0]["keypoints"], pose["keypoints"]);
    let nodes = get_json(http_addr, "/api/v1/nodes");
    assert_eq!(nodes["nodes"][0]["node"], 3);
    let (code, metrics) = http(http_addr, "GET", "/metrics", &[]);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("csipose_decoded_total{format=\"live\"} 60"),
        "{metrics}"
    );
    assert!(
        metrics.contains("csipose_node_packets_total{node=\"3\"} 60"),
        "{metrics}"
    );
    assert!(metrics.contains("csipose_receive_to_publish_seconds{quantile=\"0.99\"}"));
    assert_eq!(http(http_addr, "GET", "/nope", &[]).0, 404);
    assert_eq!(http(http_addr, "DELETE", "/api/v1/status", &[]).0, 405);
    // Recording without --record-dir is refused, and a POST must be JSON.
    let json = [("Content-Type", "application/json")];
    assert_eq!(
        http(http_addr, "POST", "/api/v1/record/start", &json).0,
        409
    );
    assert_eq!(http(http_addr, "POST", "/api/v1/record/start", &[]).0, 415);
    // A foreign Host (DNS rebinding) is refused without a token.
    let mut s = TcpStream::connect(http_addr).unwrap();
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: evil.example:80\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    drop(ws);
    server.shutdown();
}

#[test]
fn token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false, |c| c.token = Some("s3cret-token".into()));
    let a = server.http_addr();
    assert_eq!(http(a, "GET", "/api/v1/status", &[]).0, 401);
    assert_eq!(http(a, "GET", "/metrics", &[]).0, 401);
    assert_eq!(
        http(a, "GET", "/api/v1/status?token=wrong-token", &[]).0,
        401
    );
    assert_eq!(
        http(a, "GET", "/api/v1/status?token=s3cret-token", &[]).0,
        200
    );
    assert_eq!(
        http(
            a,
            "GET",
            "/api/v1/nodes",
            &[("Authorization", "Bearer s3cret-token")]
        )
        .0,
        200
    );
    assert!(tungstenite::connect(format!("ws://{a}/ws")).is_err());
    let mut ws = ws_connect(a, "?token=s3cret-token");
    assert_eq!(ws_next(&mut ws)["type"], "hello");
    // The page and the health check stay open.
    assert_eq!(http(a, "GET", "/", &[]).0, 200);
    assert_eq!(http(a, "GET", "/healthz", &[]).0, 200);
    // A non-loopback HTTP address without a token is refused before anything is bound.
    let mut cfg = csipose_serve::Config::new(dir.path().join("nano-test.csm"));
    cfg.http = "0.0.0.0:0".parse().unwrap();
    let e = csipose_serve::Server::start(cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("--token"), "{e}");
    drop(ws);
    server.shutdown();
}

#[test]
fn junk_datagrams_are_counted_and_never_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false, |_| {});
    let (udp, a) = (server.udp_addr(), server.http_addr());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let good = live_datagram(1, 0);
    let mut junk = 0u64;
    for i in 0..400u32 {
        let d: Vec<u8> = match i % 5 {
            0 => (0..next() % 1500).map(|_| next() as u8).collect(),
            1 => good[..(next() as usize % good.len())].to_vec(),
            2 => {
                let mut g = good.clone();
                let k = next() as usize % g.len();
                g[k] ^= 1 + (next() % 255) as u8;
                g
            }
            3 => vec![0u8; 10_000],
            _ => b"CSI_DATA,1,2,3,[1 2 3]\n".to_vec(),
        };
        sock.send_to(&d, udp).unwrap();
        junk += 1;
        // Paced so that the kernel's receive buffer never overflows on a busy machine.
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    send(&sock, udp, 1, 0..30, Duration::from_millis(1));
    let st = wait_status(a, Duration::from_secs(10), |v| {
        v["counters"]["datagrams"].as_u64() == Some(junk + 30)
    });
    let c = &st["counters"];
    let (dec, rej) = (
        c["decoded_total"].as_u64().unwrap(),
        c["rejected_total"].as_u64().unwrap(),
    );
    assert_eq!(dec + rej, junk + 30, "received = decoded + rejected: {c}");
    assert!(c["rejected"]["too_large"].as_u64().unwrap() >= 80, "{c}");
    assert!(dec >= 30, "{c}");
    // Still serving.
    assert_eq!(http(a, "GET", "/healthz", &[]).0, 200);
    server.shutdown();
}

#[test]
fn a_client_leaving_mid_request_or_never_reading_does_not_stall_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false, |c| c.stride = 1);
    let (udp, a) = (server.udp_addr(), server.http_addr());
    // Half a request, then gone.
    let mut half = TcpStream::connect(a).unwrap();
    half.write_all(b"GET /api/v1/sta").unwrap();
    drop(half);
    // A WebSocket client that leaves in the middle of its handshake.
    let mut h = TcpStream::connect(a).unwrap();
    h.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    drop(h);
    // A WebSocket client that never reads.
    let slow = ws_connect(a, "?csi=1");
    let mut ws = ws_connect(a, "");
    assert_eq!(ws_next(&mut ws)["type"], "hello");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    for k in 0..40 {
        send(&sock, udp, 5, k * 50..(k + 1) * 50, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent_in = t0.elapsed();
    let last = ws_until(&mut ws, Duration::from_secs(20), |m| {
        m["type"] == "pose" && m["seq"] == 1999
    });
    assert_eq!(last["node"], 5);
    let st = wait_status(a, Duration::from_secs(10), |v| {
        v["counters"]["datagrams"] == 2000
    });
    let c = &st["counters"];
    // Every datagram was received and decoded: ingest never waited for a client.
    assert_eq!(c["decoded"]["live"], 2000, "{c}");
    assert_eq!(c["rejected_total"], 0);
    assert!(st["clients"].as_u64().unwrap() >= 2, "{st}");
    eprintln!(
        "2000 datagrams sent in {sent_in:?}; queue dropped {}",
        c["queue_dropped"]
    );
    drop(slow);
    drop(ws);
    server.shutdown();
}

#[test]
fn an_empty_room_gives_presence_false_and_no_keypoints_or_activity() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true, |_| {});
    let (udp, a) = (server.udp_addr(), server.http_addr());
    let mut ws = ws_connect(a, "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..800u32 {
        sock.send_to(&still_datagram(9, i), udp).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let pose = ws_until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "pose" && m["seq"] == 799
    });
    assert_eq!(pose["presence_detector"]["phase"], "running", "{pose}");
    assert_eq!(pose["presence"], false, "{pose}");
    assert!(
        pose["keypoints"].is_null(),
        "no person, no skeleton: {pose}"
    );
    assert!(pose["activity"].is_null(), "no person, no activity: {pose}");
    // Movement: the amplitudes change strongly from packet to packet.
    for i in 800..1000u32 {
        sock.send_to(&live_datagram(9, i), udp).unwrap();
    }
    let pose = ws_until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "pose" && m["seq"] == 999
    });
    assert_eq!(pose["presence"], true, "{pose}");
    assert_eq!(pose["keypoints"].as_array().map(Vec::len), Some(17));
    assert_eq!(
        pose["activity"]["labels"].as_array().map(Vec::len),
        Some(3),
        "{pose}"
    );
    drop(ws);
    server.shutdown();
}

/// Pose messages of `node` until `last` arrives: seq -> keypoints.
fn collect_poses(
    ws: &mut Ws,
    node: u32,
    last: u64,
) -> std::collections::BTreeMap<u64, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    ws_until(ws, Duration::from_secs(20), |m| {
        if m["type"] == "pose" && m["node"] == node {
            out.insert(m["seq"].as_u64().unwrap(), m["keypoints"].clone());
        }
        m["type"] == "pose" && m["seq"] == last
    });
    out
}

#[test]
fn a_recording_replayed_gives_the_same_pose_stream() {
    let dir = tempfile::tempdir().unwrap();
    let rec_dir = tempfile::tempdir().unwrap();
    let rd = rec_dir.path().to_path_buf();
    let server = start(dir.path(), false, move |c| c.record_dir = Some(rd));
    let (udp, a) = (server.udp_addr(), server.http_addr());
    let json = [("Content-Type", "application/json")];
    let (code, body) = http(a, "POST", "/api/v1/record/start", &json);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http(a, "POST", "/api/v1/record/start", &json).0,
        409,
        "already recording"
    );
    let mut ws = ws_connect(a, "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"junk is recorded too", udp).unwrap();
    send(&sock, udp, 4, 0..100, Duration::from_millis(3));
    let first = collect_poses(&mut ws, 4, 99);
    let st = wait_status(a, Duration::from_secs(5), |v| {
        v["recording"]["datagrams"] == 101
    });
    assert_eq!(st["counters"]["rejected_total"], 1);
    let (code, body) = http(a, "POST", "/api/v1/record/stop", &json);
    assert_eq!(code, 200, "{body}");
    let stopped: serde_json::Value = serde_json::from_str(&body).unwrap();
    let file = rec_dir.path().join(stopped["parts"][0].as_str().unwrap());
    assert_eq!(http(a, "POST", "/api/v1/record/stop", &json).0, 409);
    drop(ws);
    server.shutdown();

    // A second server gets the recording through `replay`.
    let dir2 = tempfile::tempdir().unwrap();
    let server = start(dir2.path(), false, |_| {});
    let mut ws = ws_connect(server.http_addr(), "");
    let opts = csipose_wire::replay::ReplayOptions {
        to: server.udp_addr(),
        speed: csipose_wire::replay::Speed::Factor(1.0),
        ..Default::default()
    };
    let stats = csipose_wire::replay::replay(&[file], &opts).expect("replay");
    assert_eq!(stats.sent, 101, "{stats:?}");
    let second = collect_poses(&mut ws, 4, 99);
    let common: Vec<&u64> = first.keys().filter(|k| second.contains_key(k)).collect();
    assert!(
        common.len() * 10 >= first.len() * 8,
        "{} of {} poses in both",
        common.len(),
        first.len()
    );
    for k in common {
        assert_eq!(
            first[k], second[k],
            "pose {k} differs after record and replay"
        );
    }
    let st = get_json(server.http_addr(), "/api/v1/status");
    assert_eq!(st["counters"]["datagrams"], 101);
    assert_eq!(st["counters"]["rejected_total"], 1);
    drop(ws);
    server.shutdown();
}

#[test]
fn esp32_text_lines_from_a_stream_are_decoded_and_counted() {
    // Real ESP32-CSI-Tool output (../shared/captures), as stdin or a serial device gives it,
    // with console noise and an over-long line mixed in.
    let csv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures/example_csi.csv"
    ))
    .expect("shared capture");
    let rows = csv.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
    let mut input = b"I (123) wifi: boot noise\n".to_vec();
    input.extend_from_slice(&csv);
    input.extend(std::iter::repeat_n(b'x', csipose_serve::MAX_LINE + 10));
    input.push(b'\n');
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false, |_| {});
    csipose_serve::ingest::line_loop(server.shared(), std::io::Cursor::new(input), "test");
    let st = get_json(server.http_addr(), "/api/v1/status");
    let c = &st["counters"];
    assert_eq!(c["lines"], rows + 2, "{c}");
    assert_eq!(c["decoded"]["esp32_csi_tool"], rows, "{c}");
    assert_eq!(c["rejected_total"], 2, "{c}");
    assert_eq!(c["rejected"]["too_large"], 1, "{c}");
    let nodes = get_json(server.http_addr(), "/api/v1/nodes");
    let n = &nodes["nodes"][0];
    assert_eq!(n["node"], 1000, "no node id in ESP32 lines: one per stream");
    assert_eq!(n["format"], "esp32_csi_tool");
    assert_eq!(n["rssi"], -73);
    assert_eq!(n["packets"], rows);
    server.shutdown();
}

#[test]
fn adr018_frames_make_poses_with_arrival_times() {
    // RuView ADR-018 raw CSI: magic, node 7, 2 antennas, 30 subcarriers, (imag, real) i8 pairs.
    let frame = |seq: u32| {
        let mut d = Vec::new();
        d.extend_from_slice(&0xC511_0001u32.to_le_bytes());
        d.push(7);
        d.push(A as u8);
        d.extend_from_slice(&(S as u16).to_le_bytes());
        d.extend_from_slice(&2437u32.to_le_bytes());
        d.extend_from_slice(&seq.to_le_bytes());
        d.push((-55i8) as u8);
        d.push((-92i8) as u8);
        d.extend_from_slice(&[0, 0]);
        for k in 0..A * S {
            let re = (20.0 + 10.0 * ((k as f32) * 0.4 + seq as f32 * 0.3).sin()) as i8;
            let im = (5.0 * ((k as f32) * 0.2).cos()) as i8;
            d.extend_from_slice(&[im as u8, re as u8]);
        }
        d
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), false, |_| {});
    let mut ws = ws_connect(server.http_addr(), "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..60u32 {
        sock.send_to(&frame(seq), server.udp_addr()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let pose = ws_until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "pose" && m["node"] == 7
    });
    assert!(
        pose["device_time_ns"].is_null(),
        "ADR-018 has no timestamp: arrival times"
    );
    assert_eq!(pose["keypoints"].as_array().map(Vec::len), Some(17));
    let nodes = get_json(server.http_addr(), "/api/v1/nodes");
    let n = &nodes["nodes"][0];
    assert_eq!(n["format"], "adr018");
    assert_eq!(n["rssi"], -55);
    let rate = n["rate_hz"].as_f64().unwrap();
    assert!(
        rate > 20.0 && rate < 120.0,
        "measured from arrivals ~10 ms apart: {rate}"
    );
    drop(ws);
    server.shutdown();
}

/// The probabilities of each window of `packets` as `activity eval` / `stream` compute them for
/// a head with a stored window length: each window of `per_window` packets with up to
/// `context` windows before it is one sequence (fresh features, whole-sequence forward), the
/// input normalisation re-estimated (`set_normalisation`) on every frame classified so far.
fn offline_windows(
    model: &csipose_temporal::model::ActivityModel,
    packets: &[Vec<f32>],
    per_window: usize,
    context: usize,
) -> Vec<Vec<f32>> {
    use csipose_temporal::features::FeatureStream;
    use csipose_temporal::model::softmax;
    let stride = model.head.stride as usize;
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for w in 0..packets.len() / per_window {
        let first = w.saturating_sub(context) * per_window;
        let mut features = FeatureStream::new(A, S, stride, false);
        let frames: Vec<f32> = packets[first..(w + 1) * per_window]
            .iter()
            .filter_map(|p| features.push(p, None))
            .flatten()
            .collect();
        seen.extend_from_slice(&frames);
        let mut adapted = model.clone();
        adapted.set_normalisation(&seen);
        out.push(softmax(&adapted.logits(&frames).unwrap()));
    }
    out
}

/// A head that stores a window length (5 frames of 4 packets), one window of context and
/// adapt-norm: the served activity is computed window by window as offline (fresh features
/// over the window and the one before it, normalisation re-estimated on every classified
/// frame so far), then forward filtered; between window ends the last result stays. The start
/// probabilities favour a class the last window by itself does not pick, so the served class
/// differs from `window_index` and the message says `forward`. A node restart starts the
/// filter, the context and the normalisation estimate over.
#[test]
fn a_stored_decoding_serves_the_forward_filtered_activity() {
    use csipose_temporal::model::{argmax, ActivityModel};
    use csipose_temporal::rvne::{RvneDecode, RvneMeta};
    use csipose_temporal::sequence::{ForwardFilter, Transitions};

    let dir = tempfile::tempdir().unwrap();
    let plain = write_activity_model(dir.path());
    let mut model = ActivityModel::from_rvne(&std::fs::read(&plain).unwrap()).unwrap();
    let stride = model.head.stride as usize;
    let per_window = 5 * stride;
    assert_eq!(per_window, 20);
    let packets: Vec<Vec<f32>> = (0..60).map(|i| amplitudes(3, i)).collect();
    let probs = offline_windows(&model, &packets, per_window, 1);
    assert_eq!(probs.len(), 3);
    // The running estimate matters: with the stored normalisation the last window differs.
    let stored = csipose_temporal::model::softmax(
        &model
            .logits(&{
                let mut f = csipose_temporal::features::FeatureStream::new(A, S, stride, false);
                packets[20..60]
                    .iter()
                    .filter_map(|p| f.push(p, None))
                    .flatten()
                    .collect::<Vec<f32>>()
            })
            .unwrap(),
    );
    assert!(
        stored
            .iter()
            .zip(&probs[2])
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "{stored:?} vs {:?}",
        probs[2]
    );
    let window = argmax(&probs[2]);
    // Sticky transitions and a start that strongly favours another class.
    let favoured = (window + 1) % 3;
    let mut first = [0.001f32; 3];
    first[favoured] = 0.998;
    let mut next = [0.001f32; 9];
    for c in 0..3 {
        next[c * 3 + c] = 0.998;
    }
    let t = Transitions {
        n_classes: 3,
        log_start: first.iter().map(|p| p.ln()).collect(),
        log_next: next.iter().map(|p| p.ln()).collect(),
    };
    t.validate().unwrap();
    let mut filter = ForwardFilter::new(&t);
    let mut after = Vec::new();
    for p in &probs {
        let class = filter.step(p);
        let mut filtered = vec![0f32; 3];
        filter.probabilities(&mut filtered);
        after.push((class, filtered));
    }
    assert_ne!(
        after[2].0, window,
        "the crafted prior must change the class"
    );
    model.meta = Some(RvneMeta {
        context: 1,
        adapt_norm: true,
        decode: Some(RvneDecode {
            mode: csipose_temporal::sequence::Decode::Forward,
            step_frames: 5,
            transitions: t.clone(),
        }),
        ..RvneMeta::default()
    });
    let decoded = dir.path().join("act-decode.rvne");
    std::fs::write(&decoded, model.to_rvne(false).unwrap()).unwrap();

    let server = start(dir.path(), true, |cfg| {
        cfg.activity = Some(decoded.clone());
        cfg.presence = false;
    });
    let mut ws = ws_connect(server.http_addr(), "");
    let hello = ws_next(&mut ws);
    assert!(
        hello["activity_model"]["name"]
            .as_str()
            .is_some_and(|n| n.contains("forward decoding every 5 frames")),
        "{hello}"
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    send(&sock, server.udp_addr(), 3, 0..60, Duration::from_millis(2));
    // Packet 39 ends window 1 (10 frames with its context), 44 is inside window 2 (window 1's
    // result stays), 59 ends window 2.
    for (seq, w) in [(39u64, 1usize), (44, 1), (59, 2)] {
        let pose = ws_until(&mut ws, Duration::from_secs(10), |m| {
            m["type"] == "pose" && m["seq"] == seq
        });
        let act = &pose["activity"];
        assert_eq!(act["frames"], 10, "{act}");
        assert_eq!(act["decode"], "forward", "{act}");
        assert_eq!(act["index"], after[w].0 as u64, "seq {seq}: {act}");
        assert_eq!(act["window_index"], argmax(&probs[w]) as u64, "{act}");
        assert_probabilities(act, &after[w].1);
    }

    // The node restarts (a new session): the filter, the context and the normalisation start
    // over, so after its first window the served probabilities are a fresh filter's first
    // step on that window alone, normalised on its own frames.
    let fresh_packets: Vec<Vec<f32>> = (0..20).map(|i| amplitudes(3, 100 + i)).collect();
    for (i, amps) in fresh_packets.iter().enumerate() {
        let datagram = csipose_wire::LiveFrame {
            node: 3,
            session: 2,
            seq: i as u32,
            device_time_ns: i as u64 * 10_000_000,
            rssi_dbm: Some(-42),
            antennas: A as u16,
            subcarriers: S as u16,
            samples: csipose_wire::Samples::AmplitudeF32(amps.clone()),
        }
        .encode()
        .unwrap();
        sock.send_to(&datagram, server.udp_addr()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let fresh = offline_windows(&model, &fresh_packets, per_window, 1);
    let mut restarted = ForwardFilter::new(&t);
    let class = restarted.step(&fresh[0]);
    let mut filtered = vec![0f32; 3];
    restarted.probabilities(&mut filtered);
    let pose = ws_until(&mut ws, Duration::from_secs(10), |m| {
        m["type"] == "pose" && m["seq"] == 19
    });
    let act = &pose["activity"];
    assert_eq!(act["frames"], 5, "{act}");
    assert_eq!(act["index"], class as u64, "{act}");
    assert_probabilities(act, &filtered);
    // Not what the filter would say had it gone on from the first session.
    let mut went_on = filter.clone();
    went_on.step(&fresh[0]);
    let mut on = vec![0f32; 3];
    went_on.probabilities(&mut on);
    assert!(
        on.iter().zip(&filtered).any(|(a, b)| (a - b).abs() > 1e-3),
        "{on:?} vs {filtered:?}"
    );
}

/// The activity message's probabilities equal `expected` to 1e-5.
fn assert_probabilities(act: &serde_json::Value, expected: &[f32]) {
    let served: Vec<f64> = act["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(served.len(), expected.len(), "{act}");
    for (a, b) in served.iter().zip(expected) {
        assert!((a - *b as f64).abs() < 1e-5, "{served:?} vs {expected:?}");
    }
}
