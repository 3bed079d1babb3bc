//! `--mqtt` against a real broker: Debian's `mosquitto`, started here on a free loopback port
//! and killed when the test ends. The server's poses, Home Assistant discovery and link
//! statistics must reach a subscriber, naming the model file. Prints SKIPPED when mosquitto
//! is not installed (CI's `.ci/run` installs it).

mod common;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use csipose_mqtt::{Client, ClientOptions, Connect, Packet, QoS};

fn mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn poses_and_discovery_reach_a_real_broker() {
    let Some(bin) = mosquitto() else {
        println!("SKIPPED: mosquitto not installed (CI installs it in .ci/run)");
        return;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _broker = Broker(child);
    let addr = format!("127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < end, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sub = Client::connect(
        &addr,
        &ClientOptions::new(Connect {
            client_id: "test-serve-sub".into(),
            keep_alive_s: 30,
            username: None,
            password: None,
            will: None,
        }),
    )
    .unwrap();
    sub.subscribe(
        &[
            ("csipose/#", QoS::AtMostOnce),
            ("homeassistant/#", QoS::AtMostOnce),
        ],
        Duration::from_secs(5),
    )
    .unwrap();

    let a2 = addr.clone();
    let server = start(dir.path(), false, move |c| c.mqtt = Some(a2));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    send(
        &sock,
        server.udp_addr(),
        6,
        0..300,
        Duration::from_millis(5),
    );

    let (mut pose, mut discovery, mut stats) = (None, false, false);
    let end = Instant::now() + Duration::from_secs(15);
    while pose.is_none() || !discovery || !stats {
        assert!(
            Instant::now() < end,
            "pose {pose:?} discovery {discovery} stats {stats}"
        );
        if let Some(Packet::Publish { topic, payload, .. }) =
            sub.recv(Duration::from_millis(200)).unwrap()
        {
            if topic == "csipose/node-6/pose" {
                pose = Some(serde_json::from_slice::<serde_json::Value>(&payload).unwrap());
            } else if topic.starts_with("homeassistant/") && topic.contains("node-6") {
                discovery = true;
            } else if topic == "csipose/node-6/stats" {
                stats = true;
            }
        }
    }
    let pose = pose.unwrap();
    let text = pose.to_string();
    assert!(text.contains("nano-test.csm"), "{text}");
    let st = get_json(server.http_addr(), "/api/v1/status");
    assert_eq!(st["mqtt"]["connected"], true, "{st}");
    assert!(st["mqtt"]["sent"].as_u64().unwrap() > 0);
    server.shutdown();
}
