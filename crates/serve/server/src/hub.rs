//! Fan-out to WebSocket clients without ever blocking the producer: each client has a
//! mailbox holding only the latest message of each kind (the latest `pose` per node, the
//! latest `nodes`, the latest `csi` per node for clients that asked for it). Publishing
//! replaces what a slow client has not sent yet (counted as `superseded`) and wakes its
//! writer thread; nothing queues up. The hub also keeps the latest pose per node for
//! `/api/v1/pose/latest` and for clients that connect later, and the 1 Hz `nodes` ticker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Shared;

/// One message ready to send: its JSON text and the receive time of the packet behind it.
#[derive(Clone, Debug)]
pub struct Out {
    pub text: Arc<str>,
    pub received: Option<Instant>,
}

#[derive(Default)]
struct Mailbox {
    poses: BTreeMap<u32, Out>,
    csi: BTreeMap<u32, Out>,
    nodes: Option<Out>,
    closed: bool,
}

/// One WebSocket client's mailbox.
pub struct Client {
    pub id: u64,
    pub wants_csi: bool,
    mailbox: Mutex<Mailbox>,
    cv: Condvar,
    /// Messages replaced before this client's writer sent them.
    pub superseded: AtomicU64,
    pub sent: AtomicU64,
}

impl Client {
    fn put(&self, f: impl FnOnce(&mut Mailbox) -> bool) {
        let mut m = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        if f(&mut m) {
            self.superseded.fetch_add(1, Ordering::Relaxed);
        }
        drop(m);
        self.cv.notify_one();
    }

    /// Waits up to `timeout` for messages and takes them all: nodes first, then poses and
    /// CSI rows by node. `None` when the client was closed.
    pub fn take(&self, timeout: Duration) -> Option<Vec<Out>> {
        let mut m = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        if !m.closed && m.poses.is_empty() && m.csi.is_empty() && m.nodes.is_none() {
            m = self
                .cv
                .wait_timeout(m, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if m.closed {
            return None;
        }
        let mut out = Vec::new();
        out.extend(m.nodes.take());
        out.extend(std::mem::take(&mut m.poses).into_values());
        out.extend(std::mem::take(&mut m.csi).into_values());
        Some(out)
    }

    pub fn close(&self) {
        self.mailbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.cv.notify_all();
    }
}

/// All clients and the latest values.
#[derive(Default)]
pub struct Hub {
    clients: Mutex<Vec<Arc<Client>>>,
    next_id: AtomicU64,
    csi_clients: AtomicUsize,
    latest_pose: Mutex<BTreeMap<u32, Out>>,
    latest_nodes: Mutex<Option<Out>>,
    closed: AtomicBool,
}

impl Hub {
    /// Registers a client; it starts with the latest pose of every node.
    pub fn join(&self, wants_csi: bool) -> Arc<Client> {
        let c = Arc::new(Client {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            wants_csi,
            mailbox: Mutex::new(Mailbox::default()),
            cv: Condvar::new(),
            superseded: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        {
            let mut m = c.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            m.poses = self
                .latest_pose
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            m.nodes = self
                .latest_nodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            m.closed = self.closed.load(Ordering::SeqCst);
        }
        if wants_csi {
            self.csi_clients.fetch_add(1, Ordering::Relaxed);
        }
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c.clone());
        c
    }

    pub fn leave(&self, c: &Arc<Client>) {
        let mut cs = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cs.iter().position(|x| Arc::ptr_eq(x, c)) {
            cs.swap_remove(i);
            if c.wants_csi {
                self.csi_clients.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    pub fn client_count(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Messages superseded (replaced before sending) over the connected clients.
    pub fn superseded(&self) -> u64 {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.superseded.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether any client wants the CSI preview.
    pub fn wants_csi(&self) -> bool {
        self.csi_clients.load(Ordering::Relaxed) > 0
    }

    fn snapshot(&self) -> Vec<Arc<Client>> {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish_pose(&self, node: u32, msg: serde_json::Value, received: Instant) {
        let out = Out {
            text: msg.to_string().into(),
            received: Some(received),
        };
        self.latest_pose
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, out.clone());
        for c in self.snapshot() {
            let o = out.clone();
            c.put(move |m| m.poses.insert(node, o).is_some());
        }
    }

    pub fn publish_csi(&self, node: u32, msg: serde_json::Value) {
        let out = Out {
            text: msg.to_string().into(),
            received: None,
        };
        for c in self.snapshot().into_iter().filter(|c| c.wants_csi) {
            let o = out.clone();
            c.put(move |m| m.csi.insert(node, o).is_some());
        }
    }

    pub fn publish_nodes(&self, msg: serde_json::Value) {
        let out = Out {
            text: msg.to_string().into(),
            received: None,
        };
        *self.latest_nodes.lock().unwrap_or_else(|e| e.into_inner()) = Some(out.clone());
        for c in self.snapshot() {
            let o = out.clone();
            c.put(move |m| m.nodes.replace(o).is_some());
        }
    }

    /// The latest pose message of every node.
    pub fn latest_poses(&self) -> Vec<Arc<str>> {
        self.latest_pose
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|o| o.text.clone())
            .collect()
    }

    pub fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for c in self.snapshot() {
            c.close();
        }
    }
}

/// The `nodes` message: every node's state and the server's counters.
pub fn nodes_message(s: &Shared) -> serde_json::Value {
    let now = Instant::now();
    let nodes = s.nodes.lock().unwrap_or_else(|e| e.into_inner()).json(now);
    serde_json::json!({
        "v": 1,
        "type": "nodes",
        "time": crate::unix_now(),
        "mode": s.cfg.mode.name(),
        "nodes": nodes,
        "latency_us": crate::http::latency_json(s),
    })
}

/// Announces new nodes to MQTT (Home Assistant discovery) and publishes each node's link
/// statistics.
fn mqtt_nodes(s: &Shared, announced: &mut std::collections::BTreeSet<u32>) {
    let guard = s.mqtt.lock().unwrap_or_else(|e| e.into_inner());
    let Some(publ) = guard.as_ref() else {
        return;
    };
    let now = Instant::now();
    let rows: Vec<(u32, f64, u64)> = s
        .nodes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .nodes
        .values()
        .map(|n| (n.id, n.rate_hz(now), n.packets))
        .collect();
    for (node, rate, packets) in rows {
        let Some(id) = crate::pipeline::mqtt_node(node) else {
            continue;
        };
        if announced.insert(node) {
            let _ = publ.announce(csipose_mqtt::NodeInfo::new(id.clone()));
        }
        let _ = publ.stats(
            &id,
            &csipose_mqtt::StatsMessage {
                time_unix_s: crate::unix_now(),
                packet_rate_hz: rate,
                packets,
            },
        );
    }
}

/// Publishes `nodes` once a second until the server stops.
pub fn ticker(s: &Shared) {
    let mut announced = std::collections::BTreeSet::new();
    let mut next = Instant::now();
    while !s.stopping() {
        let now = Instant::now();
        if now >= next {
            s.hub.publish_nodes(nodes_message(s));
            mqtt_nodes(s, &mut announced);
            next += Duration::from_secs(1);
            if next < now {
                next = now + Duration::from_secs(1);
            }
        }
        {
            // Recordings are fsync'ed at least once a second even when no datagram comes.
            let mut rec = s.recorder.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = rec.as_mut() {
                if let Err(e) = r.tick() {
                    eprintln!("recording {}: {e:#}; recording stopped", r.path.display());
                    if let Some(r) = rec.take() {
                        let _ = r.finish();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50).min(next.saturating_duration_since(now)));
    }
}
