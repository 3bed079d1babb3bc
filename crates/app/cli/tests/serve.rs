//! `csipose serve` as a process: refuses a missing model and an open HTTP address without a
//! token, and serves its status naming the model once started on loopback port 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::csipose;

#[test]
fn serve_starts_on_loopback_and_refuses_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.csm");
    let m = model.to_str().unwrap();
    let out = csipose(&[
        "bench", "--random", "nano", "--bits", "8", "--save", m, "--iters", "10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let missing = dir.path().join("missing.csm");
    let out = csipose(&["serve", "--model", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.csm"), "{err}");

    let out = csipose(&[
        "serve",
        "--model",
        m,
        "--bind",
        "127.0.0.1:0",
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));

    let (mut child, http) = start_serve(
        dir.path(),
        &[
            "serve",
            "--model",
            m,
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let resp = request(&http, "/api/v1/status");
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"file\":\"m.csm\""), "{resp}");
}

/// `serve --activity` without a value loads the shipped `models/esp32-har-d1.rvne` (the
/// repository's copy when the working directory has none) and names it in its status.
#[test]
fn serve_loads_the_shipped_activity_model_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.csm");
    let m = model.to_str().unwrap();
    let out = csipose(&[
        "bench", "--random", "nano", "--bits", "8", "--save", m, "--iters", "10",
    ]);
    assert!(out.status.success());
    let (mut child, http) = start_serve(
        dir.path(),
        &[
            "serve",
            "--model",
            m,
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--activity",
        ],
    );
    let status = get(&http, "/api/v1/status");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let act = &v["activity_model"];
    assert_eq!(act["file"], "esp32-har-d1.rvne", "{status}");
    let shipped = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../models/esp32-har-d1.rvne"
    ))
    .unwrap();
    let meta = csipose_temporal::rvne::RvneView::parse(&shipped)
        .unwrap()
        .meta()
        .expect("the shipped model stores its class names and settings");
    assert_eq!(meta.classes.map(|c| c.len()), Some(10));
    assert!(act["sha256"].as_str().unwrap().len() == 64, "{status}");
}

/// Starts `csipose ARGS` in `dir` and waits (at most 20 s) for the page address it prints;
/// the process and `host:port`. Kills it and shows its stderr when no address comes.
fn start_serve(dir: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_csipose"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.trim().strip_prefix("page on http://") {
            return (child, rest.trim_end_matches('/').to_string());
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no page address; stderr: {seen:?}");
}

/// GET `path` from `http` (host:port); the whole response, status line and headers included.
fn request(http: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {http}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// GET `path` from `http` (host:port); the body.
fn get(http: &str, path: &str) -> String {
    request(http, path)
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn serve_demo_replays_the_demo_dataset_through_its_model() {
    // A miniature `csipose demo` output: a simulated dataset and a micro model file.
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim-demo");
    let out = csipose(&[
        "simulate",
        "--out",
        sim.to_str().unwrap(),
        "--envs",
        "1",
        "--subjects",
        "1",
        "--actions",
        "1",
        "--frames-per-seq",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir(dir.path().join("models")).unwrap();
    let model = dir.path().join("models").join("micro-int8.csm");
    let out = csipose(&[
        "bench",
        "--random",
        "micro",
        "--bits",
        "8",
        "--save",
        model.to_str().unwrap(),
        "--iters",
        "10",
    ]);
    assert!(out.status.success());

    let (mut child, http) = start_serve(
        dir.path(),
        &[
            "serve",
            "--demo",
            dir.path().to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
    );
    // 20 frames x 10 packets at 100 packets/s: 2 s; one pose per frame.
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let v: serde_json::Value = serde_json::from_str(&get(&http, "/api/v1/status")).unwrap();
        if v["counters"]["poses"].as_u64() == Some(20) || Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let latest = get(&http, "/api/v1/pose/latest");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status["mode"], "replay");
    assert_eq!(status["counters"]["decoded"]["live"], 200, "{status}");
    assert_eq!(status["counters"]["poses"], 20, "{status}");
    assert_eq!(status["model"]["file"], "micro-int8.csm");
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(
        latest["poses"][0]["keypoints"].as_array().map(Vec::len),
        Some(17)
    );
    // The simulated data has no empty room: the demo runs without the presence detector.
    assert!(latest["poses"][0]["presence"].is_null(), "{latest}");
}
