//! `csipose serve` as a process: refuses a missing model and an open HTTP address without a
//! token, and serves its status naming the model once started on loopback port 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
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

    let mut child = Command::new(env!("CARGO_BIN_EXE_csipose"))
        .args([
            "serve",
            "--model",
            m,
            "--bind",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut http = None;
    let end = Instant::now() + Duration::from_secs(20);
    while http.is_none() && Instant::now() < end {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.trim().strip_prefix("page on http://") {
            http = Some(rest.trim_end_matches('/').to_string());
        }
    }
    let http = http.expect("the server printed its page address");
    let mut s = std::net::TcpStream::connect(&http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /api/v1/status HTTP/1.1\r\nHost: {http}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"file\":\"m.csm\""), "{resp}");
}
