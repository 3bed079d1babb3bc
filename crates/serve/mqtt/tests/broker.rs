//! The publisher against a real broker: Debian's `mosquitto`, started by each test as a child
//! process on a free loopback port and killed when the test ends (pass or fail). Covers
//! retained discovery, payloads, the last will, reconnecting after a broker restart, and a
//! stalled broker never blocking `publish`. Prints SKIPPED when mosquitto is not installed
//! (CI's `.ci/run` installs it).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csipose_mqtt::{
    ActivityMessage, Client, ClientOptions, Connect, NodeId, NodeInfo, Packet, PoseMessage,
    PresenceMessage, Publisher, PublisherConfig, QoS, StatsMessage,
};
use serde_json::{json, Value};

fn mosquitto_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A mosquitto child process; killed on drop.
struct Broker {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Broker {
    /// Starts a broker on a free port, or returns None (after printing SKIPPED) when mosquitto
    /// is not installed.
    fn start(test: &str) -> Option<Broker> {
        let Some(bin) = mosquitto_binary() else {
            println!("SKIPPED {test}: mosquitto not installed");
            return None;
        };
        let mut b = Broker {
            child: None,
            port: free_port(),
            bin,
            dir: tempfile::tempdir().unwrap(),
        };
        b.launch();
        Some(b)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts mosquitto on `self.port` and waits (at most 10 s) until it accepts connections.
    fn launch(&mut self) {
        assert!(self.child.is_none());
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n",
                self.port
            ),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
            let mut child = Command::new(&self.bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            // Ready when it accepts TCP; if it exits (port still in use after a restart), retry.
            let ready = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if TcpStream::connect(self.addr()).is_ok() {
                    break true;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("mosquitto did not start on {}: {}", self.addr(), self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                self.child = Some(child);
                return;
            }
            if Instant::now() > deadline {
                panic!("mosquitto exited on {}: {}", self.addr(), self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().unwrap().id() as libc::pid_t;
        // SAFETY: kill(2) with the pid of our own live child process and a valid signal number;
        // no memory is involved.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig}) failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped broker still dies from SIGKILL; SIGCONT first anyway so nothing lingers.
            // SAFETY: as in `signal`.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.kill();
    }
}

fn subscriber(addr: &str, name: &str, filters: &[&str]) -> Client {
    let opts = ClientOptions::new(Connect {
        client_id: format!("test-{name}"),
        keep_alive_s: 30,
        username: None,
        password: None,
        will: None,
    });
    let mut c = Client::connect(addr, &opts).unwrap();
    let f: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtMostOnce)).collect();
    let granted = c.subscribe(&f, Duration::from_secs(5)).unwrap();
    assert!(granted.iter().all(|&g| g == 0), "{granted:?}");
    c
}

/// One received PUBLISH.
#[derive(Debug, Clone)]
struct Got {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// Collects PUBLISHes until `done` says so, or panics after `timeout` naming what arrived.
fn collect_until(
    c: &mut Client,
    timeout: Duration,
    mut done: impl FnMut(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out; received {:?}",
            got.iter()
                .map(|g: &Got| (
                    g.topic.clone(),
                    String::from_utf8_lossy(&g.payload).into_owned()
                ))
                .collect::<Vec<_>>()
        );
        if let Some(Packet::Publish {
            topic,
            payload,
            retain,
            ..
        }) = c.recv(left.min(Duration::from_millis(200))).unwrap()
        {
            got.push(Got {
                topic,
                payload,
                retain,
            });
        }
    }
    got
}

fn has(got: &[Got], topic: &str, payload: &str) -> bool {
    got.iter()
        .any(|g| g.topic == topic && g.payload == payload.as_bytes())
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn test_config(addr: &str, id: &str) -> PublisherConfig {
    let mut cfg = PublisherConfig::new(addr);
    cfg.client_id = id.into();
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(400);
    cfg.connect_timeout = Duration::from_secs(1);
    cfg.write_timeout = Duration::from_secs(1);
    cfg
}

fn pose(seq: u64) -> PoseMessage {
    let mut keypoints = [[0f32; 3]; 17];
    for (i, k) in keypoints.iter_mut().enumerate() {
        *k = [i as f32 * 0.05, 0.25, 0.5];
    }
    PoseMessage {
        seq,
        time_unix_s: 1_765_000_000.5,
        keypoints,
        model_file: "micro-int8.csm".into(),
        model_hash: "sha256:0123".into(),
    }
}

#[test]
fn discovery_is_retained_and_payloads_arrive_as_json() {
    let Some(broker) = Broker::start("discovery_is_retained_and_payloads_arrive_as_json") else {
        return;
    };
    let addr = broker.addr();
    let mut live = subscriber(&addr, "live", &["csipose/#"]);
    let p = Publisher::start(test_config(&addr, "pub-discovery")).unwrap();
    let node = NodeId::new("n1").unwrap();
    p.announce(NodeInfo {
        id: node.clone(),
        name: "Kitchen".into(),
        model: "ESP32-S3".into(),
    })
    .unwrap();
    p.pose(&node, &pose(42)).unwrap();
    p.presence(
        &node,
        &PresenceMessage {
            time_unix_s: 1_765_000_001.0,
            present: true,
            motion: true,
            confidence: 0.75,
        },
    )
    .unwrap();
    p.activity(
        &node,
        &ActivityMessage {
            seq: 42,
            time_unix_s: 1_765_000_001.0,
            label: "walk".into(),
            probabilities: vec![("walk".into(), 0.75), ("sit".into(), 0.25)],
            decode: None,
        },
    )
    .unwrap();
    p.stats(
        &node,
        &StatsMessage {
            time_unix_s: 1_765_000_001.0,
            packet_rate_hz: 100.0,
            packets: 5000,
        },
    )
    .unwrap();

    let got = collect_until(&mut live, Duration::from_secs(10), |g| {
        ["pose", "presence", "activity", "stats"]
            .iter()
            .all(|t| g.iter().any(|x| x.topic == format!("csipose/n1/{t}")))
    });
    assert!(has(&got, "csipose/status", "online"));
    let find = |t: &str| got.iter().find(|g| g.topic == t).unwrap().json();
    let pose_json = find("csipose/n1/pose");
    assert_eq!(pose_json["seq"], 42);
    assert_eq!(pose_json["time"], 1_765_000_000.5);
    assert_eq!(pose_json["keypoints"].as_array().unwrap().len(), 17);
    assert_eq!(pose_json["keypoints"][4], json!([0.2, 0.25, 0.5]));
    assert_eq!(
        pose_json["model"],
        json!({"file": "micro-int8.csm", "hash": "sha256:0123"})
    );
    assert_eq!(
        find("csipose/n1/presence"),
        json!({"time": 1_765_000_001.0, "state": "present", "motion": true, "confidence": 0.75})
    );
    let act = find("csipose/n1/activity");
    assert_eq!(act["label"], "walk");
    assert_eq!(act["probabilities"], json!({"walk": 0.75, "sit": 0.25}));
    assert_eq!(find("csipose/n1/stats")["packet_rate_hz"], 100.0);

    // A subscriber that arrives later gets the discovery configs, availability and presence
    // as retained messages.
    let mut late = subscriber(&addr, "late", &["homeassistant/#", "csipose/#"]);
    let got = collect_until(&mut late, Duration::from_secs(10), |g| {
        g.iter().filter(|x| x.topic.ends_with("/config")).count() == 4
            && g.iter().any(|x| x.topic == "csipose/n1/presence")
            && g.iter().any(|x| x.topic == "csipose/status")
    });
    assert!(got.iter().all(|g| g.retain), "all retained: {got:?}");
    assert!(
        !got.iter().any(|g| g.topic.ends_with("/pose")),
        "pose is not retained"
    );
    let cfg = |t: &str| got.iter().find(|g| g.topic == t).unwrap().json();
    let presence = cfg("homeassistant/binary_sensor/csipose_n1/presence/config");
    assert_eq!(presence["device_class"], "occupancy");
    assert_eq!(presence["state_topic"], "csipose/n1/presence");
    assert_eq!(presence["availability_topic"], "csipose/status");
    assert_eq!(presence["device"]["identifiers"], json!(["csipose_n1"]));
    assert_eq!(presence["device"]["manufacturer"], "csipose");
    assert_eq!(presence["device"]["name"], "Kitchen");
    assert_eq!(presence["device"]["model"], "ESP32-S3");
    let motion = cfg("homeassistant/binary_sensor/csipose_n1/motion/config");
    assert_eq!(motion["device_class"], "motion");
    let activity = cfg("homeassistant/sensor/csipose_n1/activity/config");
    assert_eq!(activity["state_topic"], "csipose/n1/activity");
    let rate = cfg("homeassistant/sensor/csipose_n1/packet_rate/config");
    assert_eq!(rate["state_topic"], "csipose/n1/stats");
    for g in got.iter().filter(|g| g.topic.ends_with("/config")) {
        assert_eq!(g.json()["device"]["identifiers"], json!(["csipose_n1"]));
    }

    // Home Assistant restarting (announcing "online") makes the publisher send discovery again.
    let mut ha = subscriber(&addr, "ha", &["homeassistant/sensor/#"]);
    collect_until(&mut ha, Duration::from_secs(5), |g| g.len() == 2); // the retained ones
    let mut ha_pub = subscriber(&addr, "ha-pub", &["unused/x"]);
    ha_pub
        .publish("homeassistant/status", b"online", false)
        .unwrap();
    let again = collect_until(&mut ha, Duration::from_secs(5), |g| g.len() == 2);
    assert!(
        again.iter().all(|g| !g.retain),
        "fresh (not replayed) configs: {again:?}"
    );

    let m = p.shutdown(Duration::from_secs(2));
    assert_eq!(m.dropped(), 0, "{m:?}");
    assert_eq!(m.reconnects, 0);
    // online + 4 data + 4 discovery + 4 discovery again + offline
    assert_eq!(m.sent, 14, "{m:?}");
    let mut after = subscriber(&addr, "after", &["csipose/status"]);
    let got = collect_until(&mut after, Duration::from_secs(5), |g| !g.is_empty());
    assert!(
        has(&got, "csipose/status", "offline"),
        "clean shutdown says offline"
    );
}

const CHILD_ENV: &str = "CSIPOSE_MQTT_TEST_CHILD_BROKER";

/// Not a test by itself: the body of the child process of
/// `last_will_says_offline_when_the_publisher_process_dies` (runs only with its variable set).
#[test]
#[ignore = "run as a child process by last_will_says_offline_when_the_publisher_process_dies"]
fn child_publisher_process() {
    let Ok(addr) = std::env::var(CHILD_ENV) else {
        return;
    };
    let p = Publisher::start(test_config(&addr, "pub-child")).unwrap();
    p.announce(NodeInfo::new(NodeId::new("n2").unwrap()))
        .unwrap();
    // Killed by the parent long before this; bounded so it can never linger.
    std::thread::sleep(Duration::from_secs(20));
    std::mem::forget(p);
}

#[test]
fn last_will_says_offline_when_the_publisher_process_dies() {
    let Some(broker) = Broker::start("last_will_says_offline_when_the_publisher_process_dies")
    else {
        return;
    };
    let addr = broker.addr();
    let mut sub = subscriber(&addr, "will", &["csipose/status"]);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_publisher_process",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct KillOnDrop<'a>(&'a mut Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = KillOnDrop(&mut child);
    let got = collect_until(&mut sub, Duration::from_secs(10), |g| {
        has(g, "csipose/status", "online")
    });
    assert!(!has(&got, "csipose/status", "offline"));
    // SIGKILL: no DISCONNECT is sent, the kernel just closes the socket.
    drop(guard);
    let got = collect_until(&mut sub, Duration::from_secs(5), |g| {
        has(g, "csipose/status", "offline")
    });
    assert!(got.iter().all(|g| g.payload != b"online"));
    // The will is retained.
    let mut later = subscriber(&addr, "will-later", &["csipose/status"]);
    let got = collect_until(&mut later, Duration::from_secs(5), |g| !g.is_empty());
    assert!(got[0].retain && got[0].payload == b"offline", "{got:?}");
}

#[test]
fn reconnects_after_the_broker_restarts() {
    let Some(mut broker) = Broker::start("reconnects_after_the_broker_restarts") else {
        return;
    };
    let addr = broker.addr();
    let p = Publisher::start(test_config(&addr, "pub-restart")).unwrap();
    let node = NodeId::new("n3").unwrap();
    p.announce(NodeInfo::new(node.clone())).unwrap();
    wait_for("first connection", Duration::from_secs(10), || {
        p.metrics().connected
    });

    broker.kill();
    wait_for("the publisher to notice", Duration::from_secs(10), || {
        !p.metrics().connected
    });
    // Give it some failed tries while the broker is down, then bring it back on the same port.
    wait_for("failed reconnects", Duration::from_secs(10), || {
        p.metrics().connect_failures >= 2
    });
    let err = p.metrics().last_error.unwrap();
    assert!(err.contains(&addr), "the error names the broker: {err}");
    broker.launch();
    wait_for("the reconnect", Duration::from_secs(10), || {
        let m = p.metrics();
        m.connected && m.reconnects == 1
    });

    // The new broker has no retained state (persistence off): discovery and availability were
    // re-published on reconnect, and new messages flow.
    let mut sub = subscriber(&addr, "restart", &["homeassistant/#", "csipose/#"]);
    collect_until(&mut sub, Duration::from_secs(10), |g| {
        g.iter().filter(|x| x.topic.ends_with("/config")).count() == 4
            && has(g, "csipose/status", "online")
    });
    p.presence(
        &node,
        &PresenceMessage {
            time_unix_s: 5.0,
            present: false,
            motion: false,
            confidence: 0.5,
        },
    )
    .unwrap();
    let got = collect_until(&mut sub, Duration::from_secs(10), |g| {
        g.iter().any(|x| x.topic == "csipose/n3/presence")
    });
    let presence = got
        .iter()
        .find(|g| g.topic == "csipose/n3/presence")
        .unwrap();
    assert_eq!(presence.json()["state"], "absent");
    let m = p.shutdown(Duration::from_secs(2));
    assert_eq!(m.reconnects, 1, "{m:?}");
    assert_eq!(m.dropped(), 0, "{m:?}");
}

#[test]
fn a_stalled_broker_never_blocks_publish() {
    let Some(broker) = Broker::start("a_stalled_broker_never_blocks_publish") else {
        return;
    };
    let addr = broker.addr();
    let mut cfg = test_config(&addr, "pub-stall");
    cfg.queue_capacity = 16;
    let write_timeout = cfg.write_timeout;
    let p = Publisher::start(cfg).unwrap();
    wait_for("connection", Duration::from_secs(10), || {
        p.metrics().connected
    });

    // Freeze the broker: TCP stays open, nobody reads, the socket buffers fill up.
    broker.signal(libc::SIGSTOP);
    let payload = vec![b'x'; 64 * 1024];
    let mut published = 0u64;
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < write_timeout * 3 {
        for i in 0..32 {
            let t = Instant::now();
            p.publish(&format!("csipose/stall/{i}"), payload.clone(), false)
                .unwrap();
            slowest = slowest.max(t.elapsed());
            published += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = p.metrics();
    // Blocking on the network would take at least the write timeout (1 s); queueing takes
    // microseconds. The bound leaves room for a loaded machine's scheduling.
    assert!(
        slowest < write_timeout / 2,
        "publish took {slowest:?} with a stalled broker"
    );
    assert!(
        m.dropped_overflow + m.dropped_replaced > 0,
        "a full queue drops and counts: {m:?}"
    );
    assert!(m.queued <= 16, "{m:?}");
    assert!(
        !m.connected && m.dropped_failed >= 1,
        "the blocked write timed out and the connection was dropped: {m:?}"
    );
    // Every published message is accounted for: sent (less the one "online"), dropped or
    // still queued. No reconnect succeeded while the broker was frozen.
    assert_eq!(m.reconnects, 0, "{m:?}");
    assert_eq!(m.sent - 1 + m.dropped() + m.queued, published, "{m:?}");

    // Thaw: the publisher reconnects and messages flow again.
    broker.signal(libc::SIGCONT);
    wait_for("the reconnect", Duration::from_secs(10), || {
        let m = p.metrics();
        m.connected && m.reconnects >= 1
    });
    let mut sub = subscriber(&addr, "stall", &["csipose/after"]);
    p.publish("csipose/after", b"ok".to_vec(), false).unwrap();
    collect_until(&mut sub, Duration::from_secs(10), |g| {
        has(g, "csipose/after", "ok")
    });
    drop(p);
}
