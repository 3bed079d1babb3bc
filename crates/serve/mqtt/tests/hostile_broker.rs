//! The client against brokers that misbehave, played by a loopback listener: random bytes
//! instead of a CONNACK, a huge declared packet, silence, a refusal. Each must end in an error
//! (never a panic or a hang) within the configured timeouts.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use csipose_mqtt::{Client, ClientError, ClientOptions, Connect};

fn options() -> ClientOptions {
    let mut o = ClientOptions::new(Connect {
        client_id: "hostile".into(),
        keep_alive_s: 10,
        username: None,
        password: None,
        will: None,
    });
    o.connect_timeout = Duration::from_millis(300);
    o.write_timeout = Duration::from_millis(300);
    o.max_incoming_packet = 4096;
    o
}

/// Serves one connection: reads what the client sends, answers `reply`, then closes (or keeps
/// the socket open for `hold` first).
fn serve_once(reply: Vec<u8>, hold: Duration) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        let _ = s.write_all(&reply);
        std::thread::sleep(hold);
    });
    (addr, t)
}

#[test]
fn random_replies_give_errors_not_panics() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..40 {
        let len = (next() % 40) as usize;
        let mut reply: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && !reply.is_empty() {
            reply[0] = 0x20; // CONNACK type with a random body
        }
        let (addr, t) = serve_once(reply.clone(), Duration::ZERO);
        let started = Instant::now();
        match Client::connect(&addr, &options()) {
            Ok(_) => assert!(
                reply.len() >= 4 && reply[..4] == [0x20, 2, 0, 0],
                "accepted {reply:?}"
            ),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{reply:?}");
        t.join().unwrap();
    }
}

#[test]
fn an_oversized_packet_is_refused_before_it_arrives() {
    // A PUBLISH declaring 2 MB against a 4 KiB limit; the body never comes.
    let (addr, t) = serve_once(
        vec![0x30, 0x80, 0x80, 0x80, 0x01],
        Duration::from_millis(500),
    );
    let err = Client::connect(&addr, &options()).unwrap_err();
    assert!(
        matches!(err, ClientError::Decode { offset: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("exceeds the limit of 4096"),
        "{err}"
    );
    t.join().unwrap();
}

#[test]
fn a_silent_broker_times_out_and_a_refusal_is_named() {
    let (addr, t) = serve_once(Vec::new(), Duration::from_millis(800));
    let started = Instant::now();
    let err = Client::connect(&addr, &options()).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(800));
    t.join().unwrap();

    let (addr, t) = serve_once(vec![0x20, 2, 0, 5], Duration::ZERO);
    let err = Client::connect(&addr, &options()).unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: 5, .. }), "{err}");
    assert!(err.to_string().contains("not authorized"), "{err}");
    t.join().unwrap();
}
