//! The web page in a real headless Chromium, driven over the DevTools protocol: with packets
//! flowing over UDP loopback it must report LIVE, draw every joint exactly where the last
//! `pose` message (the same one the server sent this test's own WebSocket client) puts it,
//! draw nothing for a node whose room is empty, then report NO DATA when packets stop and
//! DISCONNECTED when the server shuts down.
//! Saves a screenshot (`CSIPOSE_SCREENSHOT=path` copies it there, e.g. docs/serve.png).
//! Prints SKIPPED when no `chromium` binary exists (CI installs it from `.ci/run`).

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

struct Browser {
    child: Child,
    ws: Ws,
    next_id: u64,
    session: Option<String>,
}

impl Browser {
    fn launch(bin: &Path, profile: &Path) -> Browser {
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1280,820",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        // Chromium writes its DevTools port and browser path here.
        let port_file = profile.join("DevToolsActivePort");
        let end = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file) {
                if t.lines().count() >= 2 {
                    break t;
                }
            }
            assert!(Instant::now() < end, "chromium wrote no DevToolsActivePort");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut lines = text.lines();
        let port = lines.next().unwrap().trim();
        let path = lines.next().unwrap().trim();
        let (ws, _) =
            tungstenite::connect(format!("ws://127.0.0.1:{port}{path}")).expect("CDP connects");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        }
        Browser {
            child,
            ws,
            next_id: 1,
            session: None,
        }
    }

    /// One CDP command; returns its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("CDP send");
        loop {
            let m = match self.ws.read().expect("CDP read") {
                tungstenite::Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
                _ => continue,
            };
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.session = None;
        let _ = self.ws.send(tungstenite::Message::text(
            json!({"id": 0, "method": "Browser.close"}).to_string(),
        ));
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64"),
    };
    let b: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| val(c) as u32).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | x << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_page_draws_the_last_pose_message_in_chromium() {
    let Some(bin) = chromium() else {
        println!("SKIPPED: no chromium binary on PATH (CI installs Debian's chromium in .ci/run)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), true, |_| {});
    let (udp, http_addr) = (server.udp_addr(), server.http_addr());

    // This test's own client sees every pose message the page sees.
    let mut mine = ws_connect(http_addr, "");
    assert_eq!(ws_next(&mut mine)["type"], "hello");

    // Node 2: an empty, still room (calibrates the presence detector, then "nobody").
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..800u32 {
        sock.send_to(&still_datagram(2, i), udp).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Node 1: a person moving, 100 packets/s until told to stop (at most 60 s).
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let end = Instant::now() + Duration::from_secs(60);
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                sock.send_to(&live_datagram(1, i), udp).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            i
        })
    };

    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::launch(&bin, profile.path());
    let target = b.call(
        "Target.createTarget",
        json!({"url": format!("http://{http_addr}/")}),
    );
    let attached = b.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    b.session = Some(attached["sessionId"].as_str().unwrap().to_string());

    // Wait for LIVE with node 1 drawn and node 2's "nobody" drawn.
    let probe = "JSON.stringify({state: window.__csipose && window.__csipose.state, \
                 drawn: window.__csipose && window.__csipose.lastDrawn, \
                 last: window.__csipose && window.__csipose.lastPose, \
                 banner: document.getElementById('banner').textContent, \
                 rows: document.querySelectorAll('#nodes tbody tr').length, \
                 acts2: (document.querySelector('#node-2 .acts') || {}).textContent})";
    let end = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let v: Value = b
            .eval(probe)
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let ready = v["state"] == "live"
            && v["drawn"]["1"]["joints"].is_array()
            && v["drawn"]["2"].is_object()
            && v["rows"] == 2;
        if ready {
            break v;
        }
        assert!(Instant::now() < end, "the page never showed live data: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::SeqCst);
    let sent = sender.join().unwrap();
    assert_eq!(page["banner"], "LIVE");

    // Node 1: the drawn joints are the last pose message's keypoints scaled to the canvas,
    // and that message is the one the server sent (this test's client got the same seq).
    let d = &page["drawn"]["1"];
    let (w, h) = (d["width"].as_f64().unwrap(), d["height"].as_f64().unwrap());
    assert_eq!(
        d["pose"], page["last"]["1"],
        "drawn from the last pose message"
    );
    let seq = d["seq"].as_u64().unwrap();
    let mut served: HashMap<u64, Value> = HashMap::new();
    let end = Instant::now() + Duration::from_secs(10);
    while !served.contains_key(&seq) {
        assert!(
            Instant::now() < end,
            "the server never sent seq {seq} to another client"
        );
        let m = ws_next(&mut mine);
        if m["type"] == "pose" && m["node"] == 1 {
            served.insert(m["seq"].as_u64().unwrap(), m);
        }
    }
    let kp = served[&seq]["keypoints"].as_array().unwrap().clone();
    let joints = d["joints"].as_array().unwrap();
    assert_eq!(joints.len(), 17);
    for (j, (drawn, k)) in joints.iter().zip(&kp).enumerate() {
        let (x, y) = (k[0].as_f64().unwrap() * w, k[1].as_f64().unwrap() * h);
        let (dx, dy) = (drawn[0].as_f64().unwrap(), drawn[1].as_f64().unwrap());
        assert!(
            (dx - x).abs() < 1e-6 && (dy - y).abs() < 1e-6,
            "joint {j}: drawn ({dx}, {dy}), message ({x}, {y})"
        );
    }
    assert_eq!(served[&seq]["model"]["file"], "nano-test.csm");
    // Node 2: nobody there, nothing drawn.
    let d2 = &page["drawn"]["2"];
    assert_eq!(d2["pose"]["presence"], false, "{d2}");
    assert!(
        d2["joints"].is_null(),
        "no skeleton for an empty room: {d2}"
    );
    assert!(
        d2["pose"]["activity"].is_null(),
        "no activity for an empty room: {d2}"
    );
    assert_eq!(page["acts2"], "activity: nobody present", "{page}");

    // The screenshot (what a person sees).
    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve.png");
    std::fs::write(&out, &png).unwrap();
    if let Some(p) = std::env::var_os("CSIPOSE_SCREENSHOT") {
        std::fs::write(&p, &png).unwrap();
    }
    println!(
        "screenshot: {} ({} bytes); {sent} packets of node 1 sent",
        out.display(),
        png.len()
    );

    // Packets stopped: NO DATA within a few seconds.
    let end = Instant::now() + Duration::from_secs(8);
    loop {
        let banner = b.eval("document.getElementById('banner').textContent");
        if banner == "NO DATA" {
            break;
        }
        assert!(Instant::now() < end, "banner stayed {banner}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The server goes away: DISCONNECTED within a few seconds (the page then keeps retrying).
    drop(mine);
    server.shutdown();
    let end = Instant::now() + Duration::from_secs(8);
    loop {
        let banner = b.eval("document.getElementById('banner').textContent");
        if banner == "DISCONNECTED" {
            break;
        }
        assert!(
            Instant::now() < end,
            "banner stayed {banner} after shutdown"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(b);
}
