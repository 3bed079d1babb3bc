//! `csipose replay` end to end: the built binary sends a real capture to a loopback socket
//! with faults and its printed counts match what arrives; bad options fail clearly.

mod common;

use common::csipose;
use std::net::UdpSocket;
use std::time::Duration;

fn capture(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/captures/").to_string() + name
}

#[test]
fn replay_prints_exact_counts_of_what_arrives() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = sock.local_addr().unwrap().to_string();
    let file = capture("example_csi.csv");
    let out = csipose(&[
        "replay",
        &file,
        "--to",
        &to,
        "--nodes",
        "2",
        "--speed",
        "max",
        "--loss",
        "0.2",
        "--duplicate",
        "0.2",
        "--junk",
        "0.1",
        "--seed",
        "5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| j[k].as_u64().unwrap();
    assert_eq!(n("datagrams"), 26);
    assert_eq!(n("sent"), 26 - n("dropped") + n("duplicated") + n("junk"));
    let mut buf = [0u8; 65_536];
    let (mut live, mut junk) = (0, 0);
    while let Ok((len, _)) = sock.recv_from(&mut buf) {
        match csipose_wire::decode_datagram(&buf[..len]) {
            Ok(_) => live += 1,
            Err(_) => junk += 1,
        }
    }
    assert_eq!(junk, n("junk"));
    assert_eq!(live, 26 - n("dropped") + n("duplicated"));
}

#[test]
fn replay_refuses_bad_options() {
    let file = capture("example_csi.csv");
    for (args, want) in [
        (vec!["--to", "192.0.2.1:5500"], "--allow-remote"),
        (vec!["--to", "127.0.0.1:0"], "port 0"),
        (vec!["--loss", "2"], "--loss"),
        (vec!["--speed", "fast"], "--speed"),
        (vec!["--as", "carrier-pigeon"], "--as"),
        (vec!["--nodes", "0"], "--nodes"),
    ] {
        let mut all = vec!["replay", file.as_str()];
        all.extend(args.iter());
        let out = csipose(&all);
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{all:?}: {err}");
    }
}
