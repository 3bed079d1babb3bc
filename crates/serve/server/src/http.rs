//! A small HTTP/1.1 server on `std::net` with one thread per connection (at most
//! `max_connections`; beyond that `503`), request heads of at most [`MAX_HEAD`] bytes read
//! within [`READ_LIMIT`], bodies of at most [`MAX_BODY`] bytes, one request per connection.
//! Routes: the embedded web page (`/`, `/app.js`), `/healthz`, `/metrics` (Prometheus text),
//! `/api/v1/status`, `/api/v1/nodes`, `/api/v1/pose/latest`, `POST /api/v1/record/start|stop`
//! and the WebSocket `/ws` (`?csi=1` adds the CSI preview). With `--token`, everything but the
//! page and `/healthz` needs `?token=` or `Authorization: Bearer`; without one (loopback only)
//! the `Host` header must name a loopback host, which keeps other web sites' pages
//! (DNS rebinding) out. `POST` needs `Content-Type: application/json` (no cross-site form
//! posts). Nothing here touches the file system except recording into `--record-dir`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::stats::Stats;
use crate::{unix_now, Shared};

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 4 * 1024;
/// Time allowed to receive a request.
pub const READ_LIMIT: Duration = Duration::from_secs(5);
/// A WebSocket write that blocks longer than this drops the client.
pub const WRITE_LIMIT: Duration = Duration::from_secs(2);
/// Largest message a WebSocket client may send.
pub const MAX_WS_MESSAGE: usize = 4 * 1024;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");

/// Accepts connections until the server stops.
pub fn accept_loop(s: &Arc<Shared>, listener: TcpListener) {
    let active = Arc::new(AtomicUsize::new(0));
    while !s.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if active.load(Ordering::SeqCst) >= s.cfg.max_connections {
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = respond(&mut stream, 503, "text/plain", b"too many connections\n");
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (s2, a2) = (s.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("csipose-conn".into())
                    .spawn(move || {
                        handle(&s2, stream);
                        a2.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    // Let connection threads see the stop flag and end.
    let deadline = Instant::now() + Duration::from_secs(3);
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A parsed request.
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io,
    TooLarge,
    Malformed(&'static str),
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request head (without the final blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines
        .next()
        .ok_or(ReadError::Malformed("no request line"))?;
    let mut parts = first.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(ReadError::Malformed("bad request line")),
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(ReadError::Malformed("bad request line"));
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or(ReadError::Malformed("bad header line"))?;
        if headers.len() >= 64 {
            return Err(ReadError::TooLarge);
        }
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        headers,
    })
}

/// Reads one request head (and discards a body of at most [`MAX_BODY`]).
fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let start = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::TooLarge);
        }
        let left = READ_LIMIT.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ReadError::Io);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadError::Io),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Io),
        }
    };
    if end > MAX_HEAD {
        return Err(ReadError::TooLarge);
    }
    let req = parse_head(&buf[..end])?;
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Malformed("chunked bodies are not accepted"));
    }
    let body_len: usize = match req.header("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| ReadError::Malformed("bad Content-Length"))?,
        None => 0,
    };
    if body_len > MAX_BODY {
        return Err(ReadError::TooLarge);
    }
    let mut have = buf.len() - (end + 4);
    while have < body_len {
        let left = READ_LIMIT.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ReadError::Io);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(ReadError::Io),
            Ok(n) => have += n,
        }
    }
    Ok(req)
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn respond_json(stream: &mut TcpStream, code: u16, v: &serde_json::Value) {
    let _ = respond(
        stream,
        code,
        "application/json",
        format!("{v}\n").as_bytes(),
    );
}

fn error(stream: &mut TcpStream, code: u16, msg: &str) {
    respond_json(stream, code, &json!({"error": msg}));
}

/// Constant-time comparison of two byte strings (length leaks, content does not).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorised(s: &Shared, req: &Request) -> bool {
    let Some(token) = &s.cfg.token else {
        return true;
    };
    let given = req
        .param("token")
        .map(str::to_string)
        .or_else(|| {
            req.header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_string())
        })
        .unwrap_or_default();
    same(given.as_bytes(), token.as_bytes())
}

/// Without a token the server is loopback-only: the Host must name a loopback host.
fn host_ok(s: &Shared, req: &Request) -> bool {
    if s.cfg.token.is_some() {
        return true;
    }
    let Some(host) = req.header("host") else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    matches!(name, "localhost" | "::1")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn handle(s: &Arc<Shared>, mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(WRITE_LIMIT));
    let req = match read_request(&mut stream) {
        Ok(r) => r,
        Err(ReadError::TooLarge) => return error(&mut stream, 413, "request too large"),
        Err(ReadError::Malformed(m)) => return error(&mut stream, 400, m),
        Err(ReadError::Io) => return,
    };
    if !host_ok(s, &req) {
        return error(&mut stream, 403, "Host must be a loopback name");
    }
    let get = req.method == "GET";
    match req.path.as_str() {
        "/" | "/index.html" if get => {
            let _ = respond(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                INDEX_HTML.as_bytes(),
            );
        }
        "/app.js" if get => {
            let _ = respond(
                &mut stream,
                200,
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes(),
            );
        }
        "/favicon.ico" if get => {
            let _ = respond(&mut stream, 204, "text/plain", b"");
        }
        "/healthz" if get => {
            let _ = respond(&mut stream, 200, "text/plain", b"ok\n");
        }
        "/" | "/index.html" | "/app.js" | "/healthz" | "/favicon.ico" => {
            error(&mut stream, 405, "method not allowed")
        }
        p if !authorised(s, &req) && (p == "/ws" || p == "/metrics" || p.starts_with("/api/")) => {
            error(&mut stream, 401, "token required")
        }
        "/metrics" if get => {
            let _ = respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                metrics(s).as_bytes(),
            );
        }
        "/api/v1/status" if get => respond_json(&mut stream, 200, &status(s)),
        "/api/v1/nodes" if get => {
            let v = crate::hub::nodes_message(s);
            respond_json(&mut stream, 200, &v)
        }
        "/api/v1/pose/latest" if get => {
            let poses: Vec<serde_json::Value> = s
                .hub
                .latest_poses()
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect();
            respond_json(&mut stream, 200, &json!({"v": 1, "poses": poses}))
        }
        "/api/v1/record/start" | "/api/v1/record/stop" if req.method == "POST" => {
            let json_body = req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"));
            if !json_body {
                return error(
                    &mut stream,
                    415,
                    "POST needs Content-Type: application/json",
                );
            }
            let (code, v) = if req.path.ends_with("start") {
                record_start(s)
            } else {
                record_stop(s)
            };
            respond_json(&mut stream, code, &v)
        }
        "/ws" if get => websocket(s, stream, &req),
        "/metrics"
        | "/api/v1/status"
        | "/api/v1/nodes"
        | "/api/v1/pose/latest"
        | "/ws"
        | "/api/v1/record/start"
        | "/api/v1/record/stop" => error(&mut stream, 405, "method not allowed"),
        _ => error(&mut stream, 404, "not found"),
    }
}

fn record_start(s: &Shared) -> (u16, serde_json::Value) {
    match crate::decode::Recording::start(s) {
        Ok(v) => (200, v),
        Err((code, msg)) => (code, json!({"error": msg})),
    }
}

fn record_stop(s: &Shared) -> (u16, serde_json::Value) {
    let rec = s.recorder.lock().unwrap_or_else(|e| e.into_inner()).take();
    match rec {
        None => (409, json!({"error": "not recording"})),
        Some(r) => {
            let file = r.file_name();
            match r.finish() {
                Ok(parts) => (
                    200,
                    json!({"recording": false, "file": file, "parts": parts}),
                ),
                Err(e) => (500, json!({"error": format!("{e:#}"), "file": file})),
            }
        }
    }
}

/// `{p50, p99, max}` in microseconds of publish and send latency and of the forward.
pub fn latency_json(s: &Shared) -> serde_json::Value {
    let j = |r: Option<(u32, u32, u32)>| match r {
        Some((p50, p99, max)) => json!({"p50": p50, "p99": p99, "max": max}),
        None => serde_json::Value::Null,
    };
    json!({
        "receive_to_publish": j(Stats::latency(&s.stats.publish_latency)),
        "receive_to_send": j(Stats::latency(&s.stats.send_latency)),
        "forward": j(Stats::latency(&s.stats.inference_time)),
    })
}

fn status(s: &Shared) -> serde_json::Value {
    let (counters, recorded) = s.stats.with(|c| {
        (
            json!({
                "datagrams": c.datagrams,
                "lines": c.lines,
                "decoded": c.decoded,
                "rejected": c.rejected,
                "decoded_total": c.decoded.values().sum::<u64>(),
                "rejected_total": c.rejected.values().sum::<u64>(),
                "queue_dropped": c.queue_dropped,
                "skipped": c.skipped,
                "inferences": c.inferences,
                "poses": c.poses,
            }),
            c.recorded,
        )
    });
    let recording = s
        .recorder
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|r| json!({"file": r.file_name(), "started": r.started_unix, "datagrams": recorded}));
    json!({
        "v": 1,
        "time": unix_now(),
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "mode": s.cfg.mode.name(),
        "model": s.pose_model.json(),
        "activity_model": s.activity_model.as_ref().map(|m| m.json()),
        "counters": counters,
        "queue": {"len": s.queue.len(), "capacity": s.cfg.queue},
        "clients": s.hub.client_count(),
        "superseded": s.hub.superseded(),
        "latency_us": latency_json(s),
        "recording": recording,
        "record_dir_set": s.cfg.record_dir.is_some(),
        "mqtt": s.mqtt.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|p| {
            let m = p.metrics();
            json!({"connected": m.connected, "sent": m.sent, "dropped": m.dropped(), "reconnects": m.reconnects, "last_error": m.last_error})
        }),
    })
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition.
pub fn metrics(s: &Shared) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(o, "{name}{labels} {v}");
        }
    };
    let c = s.stats.with(|c| {
        (
            c.datagrams,
            c.lines,
            c.decoded.clone(),
            c.rejected.clone(),
            c.queue_dropped,
            c.skipped.clone(),
            c.poses,
            c.recorded,
        )
    });
    metric(
        "csipose_datagrams_received_total",
        "counter",
        "UDP datagrams received.",
        vec![(String::new(), c.0 as f64)],
    );
    metric(
        "csipose_lines_received_total",
        "counter",
        "Text lines received (stdin, serial).",
        vec![(String::new(), c.1 as f64)],
    );
    metric(
        "csipose_decoded_total",
        "counter",
        "Datagrams and lines decoded, by format.",
        c.2.iter()
            .map(|(k, v)| (format!("{{format=\"{}\"}}", esc(k)), *v as f64))
            .collect(),
    );
    metric(
        "csipose_rejected_total",
        "counter",
        "Datagrams and lines rejected, by reason.",
        c.3.iter()
            .map(|(k, v)| (format!("{{reason=\"{}\"}}", esc(k)), *v as f64))
            .collect(),
    );
    metric(
        "csipose_queue_dropped_total",
        "counter",
        "Packets dropped because inference fell behind (oldest first).",
        vec![(String::new(), c.4 as f64)],
    );
    metric(
        "csipose_pipeline_skipped_total",
        "counter",
        "Packets or windows the pipeline skipped, by reason.",
        c.5.iter()
            .map(|(k, v)| (format!("{{reason=\"{}\"}}", esc(k)), *v as f64))
            .collect(),
    );
    metric(
        "csipose_poses_total",
        "counter",
        "Pose messages published.",
        vec![(String::new(), c.6 as f64)],
    );
    metric(
        "csipose_recorded_datagrams_total",
        "counter",
        "Datagrams written to recordings.",
        vec![(String::new(), c.7 as f64)],
    );
    metric(
        "csipose_queue_length",
        "gauge",
        "Packets waiting for inference.",
        vec![(String::new(), s.queue.len() as f64)],
    );
    metric(
        "csipose_websocket_clients",
        "gauge",
        "Connected WebSocket clients.",
        vec![(String::new(), s.hub.client_count() as f64)],
    );
    metric(
        "csipose_websocket_superseded_total",
        "counter",
        "Messages replaced before a slow client received them (connected clients).",
        vec![(String::new(), s.hub.superseded() as f64)],
    );
    for (name, ring, help) in [
        (
            "csipose_receive_to_publish_seconds",
            &s.stats.publish_latency,
            "Receive of a window's last packet to its pose message, over recent messages.",
        ),
        (
            "csipose_receive_to_send_seconds",
            &s.stats.send_latency,
            "Receive of a window's last packet to the message written to a WebSocket client.",
        ),
        (
            "csipose_forward_seconds",
            &s.stats.inference_time,
            "One pose forward pass.",
        ),
    ] {
        let rows = match Stats::latency(ring) {
            Some((p50, p99, max)) => vec![
                ("{quantile=\"0.5\"}".to_string(), p50 as f64 / 1e6),
                ("{quantile=\"0.99\"}".to_string(), p99 as f64 / 1e6),
                ("{quantile=\"1\"}".to_string(), max as f64 / 1e6),
            ],
            None => vec![],
        };
        metric(name, "summary", help, rows);
    }
    let now = Instant::now();
    let nodes = s.nodes.lock().unwrap_or_else(|e| e.into_inner());
    let per = |f: &dyn Fn(&crate::nodes::Node) -> f64| -> Vec<(String, f64)> {
        nodes
            .nodes
            .values()
            .map(|n| (format!("{{node=\"{}\"}}", n.id), f(n)))
            .collect()
    };
    metric(
        "csipose_node_packets_total",
        "counter",
        "Packets accepted per node.",
        per(&|n| n.packets as f64),
    );
    metric(
        "csipose_node_lost_total",
        "counter",
        "Packets missing from sequence gaps per node.",
        per(&|n| n.lost as f64),
    );
    metric(
        "csipose_node_rate_hz",
        "gauge",
        "Packet rate measured from arrival times over the last 2 s.",
        per(&|n| n.rate_hz(now)),
    );
    metric(
        "csipose_node_reboots_total",
        "counter",
        "Sequence resets (reboots) per node.",
        per(&|n| n.reboots as f64),
    );
    metric(
        "csipose_node_rssi_dbm",
        "gauge",
        "Last RSSI per node.",
        per(&|n| n.rssi.map(f64::from).unwrap_or(f64::NAN)),
    );
    metric(
        "csipose_node_last_seen_seconds",
        "gauge",
        "Seconds since the node's last packet.",
        per(&|n| now.duration_since(n.last_seen).as_secs_f64()),
    );
    drop(nodes);
    if let Some(p) = s.mqtt.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        o.push_str(&p.metrics().to_prometheus());
    }
    o
}

fn websocket(s: &Arc<Shared>, mut stream: TcpStream, req: &Request) {
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let key = req.header("sec-websocket-key");
    let version_ok = req.header("sec-websocket-version") == Some("13");
    let (true, Some(key), true) = (upgrade, key, version_ok) else {
        return error(&mut stream, 400, "not a WebSocket upgrade (version 13)");
    };
    // A browser page from another origin may not read our stream.
    if let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) {
        let o = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if o != host {
            return error(&mut stream, 403, "Origin does not match Host");
        }
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let wants_csi = req.param("csi") == Some("1");
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let client = s.hub.join(wants_csi);
    let hello = json!({
        "v": 1,
        "type": "hello",
        "time": unix_now(),
        "server": format!("csipose {}", env!("CARGO_PKG_VERSION")),
        "mode": s.cfg.mode.name(),
        "model": s.pose_model.json(),
        "activity_model": s.activity_model.as_ref().map(|m| m.json()),
        "csi": wants_csi,
        "client": client.id,
    });
    let mut ok = ws.send(Message::text(hello.to_string())).is_ok();
    while ok && !s.stopping() {
        let Some(batch) = client.take(Duration::from_millis(500)) else {
            break;
        };
        for out in batch {
            if ws.send(Message::text(out.text.to_string())).is_err() {
                ok = false;
                break;
            }
            client.sent.fetch_add(1, Ordering::Relaxed);
            if let Some(r) = out.received {
                Stats::record_latency(&s.stats.send_latency, r.elapsed().as_micros() as u64);
            }
        }
    }
    s.hub.leave(&client);
    let _ = ws.close(None);
    let _ = ws.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_heads_and_refuses_bad_ones() {
        let r = parse_head(b"GET /ws?csi=1&token=a%20b HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-A:  v ")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/ws");
        assert_eq!(r.param("csi"), Some("1"));
        assert_eq!(r.param("token"), Some("a b"));
        assert_eq!(r.header("x-a"), Some("v"));
        assert_eq!(r.header("HOST"), Some("127.0.0.1:80"));
        for bad in [
            &b"GET /"[..],
            b"GET / HTTP/1.1 x",
            b"GET nopath HTTP/1.1",
            b"GET / SPDY/3",
            b"GET / HTTP/1.1\r\nno colon",
            b"\xff\xfe / HTTP/1.1",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%41"), "aA");
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abcdefgh", b"abcdefgh"));
        assert!(!same(b"abcdefgh", b"abcdefgi"));
        assert!(!same(b"abc", b"abcd"));
    }
}
