//! The `Publisher`: a background thread that keeps one MQTT connection to the broker and sends
//! what the server hands it. The caller never blocks on the network: messages go into a bounded
//! queue where a newer message replaces a queued one on the same topic (latest value wins) and
//! a full queue evicts its oldest message; every message that is not sent is counted.
//!
//! On each connection the thread publishes `online` (retained) to the availability topic (the
//! last will sets it to `offline` if the connection dies), re-publishes the Home Assistant
//! discovery configs of every known node, and re-sends them when Home Assistant announces
//! `online` on its status topic. A lost connection is retried with exponential backoff (bounded,
//! with jitter); a ping every half keep-alive detects a broker that stopped answering.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientError, ClientOptions, PacketReader};
use crate::messages::{
    discovery_configs, ActivityMessage, NameError, NodeId, NodeInfo, PoseMessage, PresenceMessage,
    StatsMessage, Topics, OFFLINE, ONLINE,
};
use crate::packet::{Connect, Packet, QoS, Will};

/// Most nodes one publisher announces.
pub const MAX_NODES: usize = 1024;

/// An invalid publisher configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--mqtt {0:?}: expected HOST:PORT with a port from 1 to 65535")]
    Broker(String),
    #[error("MQTT client id {0:?}: must be 1 to 65535 bytes without NUL")]
    ClientId(String),
    #[error("MQTT password given without a user name")]
    PasswordWithoutUser,
    #[error("MQTT {what}: {why}")]
    Value { what: &'static str, why: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("MQTT payload for {topic} is {len} bytes; the limit is {limit}")]
    TooLarge {
        topic: String,
        len: usize,
        limit: usize,
    },
    #[error("MQTT topic {0:?} is not a valid topic name")]
    Topic(String),
    #[error("MQTT: more than {MAX_NODES} nodes; node {0} not announced")]
    TooManyNodes(NodeId),
    #[error("MQTT publisher has stopped")]
    Stopped,
}

/// Everything the publisher needs; build with [`PublisherConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// `HOST:PORT` of the broker.
    pub broker: String,
    /// MQTT client id; the default is `csipose-` and 15 random hex digits.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub topics: Topics,
    /// 1 s to 65,535 s; default 30 s. A ping goes out every half of it.
    pub keep_alive: Duration,
    /// Messages waiting to be sent, at most (1 to 4096; a queued message is found by topic with
    /// a linear scan); default 256.
    pub queue_capacity: usize,
    /// Reconnect backoff: the first wait, doubling per failed try up to `backoff_max`, each
    /// wait drawn uniformly from [half, full]. Defaults 0.5 s and 30 s.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// TCP connect + CONNACK limit; default 5 s.
    pub connect_timeout: Duration,
    /// A write blocked this long (broker not reading) drops the connection; default 5 s.
    pub write_timeout: Duration,
    /// Largest payload accepted by `publish`; default 256 KiB.
    pub max_payload: usize,
}

impl PublisherConfig {
    /// Defaults for `broker` (`HOST:PORT`).
    pub fn new(broker: &str) -> PublisherConfig {
        PublisherConfig {
            broker: broker.to_string(),
            client_id: format!("csipose-{:015x}", seed() & 0x0fff_ffff_ffff_ffff),
            username: None,
            password: None,
            topics: Topics::default(),
            keep_alive: Duration::from_secs(30),
            queue_capacity: 256,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_payload: 256 * 1024,
        }
    }

    /// Checks every field; [`Publisher::start`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_broker(&self.broker)?;
        if self.client_id.is_empty()
            || self.client_id.len() > 65_535
            || self.client_id.contains('\0')
        {
            return Err(ConfigError::ClientId(self.client_id.clone()));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::PasswordWithoutUser);
        }
        self.topics.check()?;
        let bad = |what, why: String| Err(ConfigError::Value { what, why });
        if self.keep_alive < Duration::from_secs(1) || self.keep_alive.as_secs() > 65_535 {
            return bad(
                "keep-alive",
                format!("{:?} is outside 1 s to 65535 s", self.keep_alive),
            );
        }
        if self.queue_capacity == 0 || self.queue_capacity > 4096 {
            return bad(
                "queue capacity",
                format!("{} is outside 1 to 4096", self.queue_capacity),
            );
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return bad(
                "backoff",
                format!(
                    "minimum {:?} must be positive and at most the maximum {:?}",
                    self.backoff_min, self.backoff_max
                ),
            );
        }
        if self.backoff_max > Duration::from_secs(3600) {
            return bad(
                "backoff",
                format!("maximum {:?} exceeds 1 h", self.backoff_max),
            );
        }
        for (what, d) in [
            ("connect timeout", self.connect_timeout),
            ("write timeout", self.write_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(600) {
                return bad(what, format!("{d:?} is outside (0, 600 s]"));
            }
        }
        if self.max_payload == 0 || self.max_payload > 16 << 20 {
            return bad(
                "max payload",
                format!("{} is outside 1 B to 16 MiB", self.max_payload),
            );
        }
        Ok(())
    }
}

/// Checks `HOST:PORT` (IPv6 hosts in brackets) without resolving it.
pub fn check_broker(addr: &str) -> Result<(), ConfigError> {
    let err = || ConfigError::Broker(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let host_ok = !host.is_empty()
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
        && !host.contains(char::is_whitespace);
    if port == 0 || !host_ok {
        return Err(err());
    }
    Ok(())
}

/// Counters for the server's `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// PUBLISH packets written to the broker (data, discovery and availability).
    pub sent: u64,
    /// Queued messages replaced by a newer one on the same topic before they were sent.
    pub dropped_replaced: u64,
    /// Oldest queued messages evicted because the queue was full.
    pub dropped_overflow: u64,
    /// Messages whose write failed because the connection broke.
    pub dropped_failed: u64,
    /// Messages still queued when the publisher stopped.
    pub dropped_shutdown: u64,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Whether a connection is up now.
    pub connected: bool,
    /// Messages waiting now.
    pub queued: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

impl Metrics {
    /// All messages not sent, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_replaced + self.dropped_overflow + self.dropped_failed + self.dropped_shutdown
    }

    /// Prometheus text exposition lines (`csipose_mqtt_*`).
    pub fn to_prometheus(&self) -> String {
        let mut s = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            s += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        line(
            "csipose_mqtt_sent_total",
            "counter",
            "MQTT messages sent.",
            self.sent.to_string(),
        );
        s += "# HELP csipose_mqtt_dropped_total MQTT messages not sent, by reason.\n";
        s += "# TYPE csipose_mqtt_dropped_total counter\n";
        for (reason, v) in [
            ("replaced", self.dropped_replaced),
            ("overflow", self.dropped_overflow),
            ("failed", self.dropped_failed),
            ("shutdown", self.dropped_shutdown),
        ] {
            s += &format!("csipose_mqtt_dropped_total{{reason=\"{reason}\"}} {v}\n");
        }
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            s += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        line(
            "csipose_mqtt_reconnects_total",
            "counter",
            "MQTT connections made after the first.",
            self.reconnects.to_string(),
        );
        line(
            "csipose_mqtt_connect_failures_total",
            "counter",
            "Failed MQTT connection attempts.",
            self.connect_failures.to_string(),
        );
        line(
            "csipose_mqtt_connected",
            "gauge",
            "1 while connected to the MQTT broker.",
            u8::from(self.connected).to_string(),
        );
        line(
            "csipose_mqtt_queued",
            "gauge",
            "MQTT messages waiting to be sent.",
            self.queued.to_string(),
        );
        s
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped_replaced: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_failed: AtomicU64,
    dropped_shutdown: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    pongs: AtomicU64,
}

struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

struct NodeEntry {
    info: NodeInfo,
    /// Discovery configs sent on the current connection.
    announced: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Message>,
    nodes: BTreeMap<NodeId, NodeEntry>,
    stop: Option<Instant>,
    /// Set by the reader thread when the connection broke.
    conn_lost: Option<String>,
    /// Home Assistant (re)started: send discovery again.
    rediscover: bool,
    connected: bool,
    last_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop publishing: the state stays consistent between
        // statements, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The MQTT output of the sensing server; see the module docs.
pub struct Publisher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    topics: Topics,
    capacity: usize,
    max_payload: usize,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topics", &self.topics)
            .finish()
    }
}

impl Publisher {
    /// Validates `config` and starts the publishing thread. Does not wait for the broker: the
    /// thread connects (and keeps retrying) in the background.
    pub fn start(config: PublisherConfig) -> Result<Publisher, ConfigError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            counters: Counters::default(),
        });
        let topics = config.topics.clone();
        let capacity = config.queue_capacity;
        let max_payload = config.max_payload;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("csipose-mqtt".into())
            .spawn(move || run(config, s))
            .map_err(|e| ConfigError::Value {
                what: "thread",
                why: e.to_string(),
            })?;
        Ok(Publisher {
            shared,
            thread: Some(thread),
            topics,
            capacity,
            max_payload,
        })
    }

    /// The topic layout in use.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Registers a node (or updates its name and model) for Home Assistant discovery; the
    /// retained configs go out now and on every reconnect. Publishing for an unknown node
    /// announces it with [`NodeInfo::new`].
    pub fn announce(&self, info: NodeInfo) -> Result<(), PublishError> {
        let mut st = self.shared.lock();
        if st.stop.is_some() {
            return Err(PublishError::Stopped);
        }
        if let Some(e) = st.nodes.get_mut(&info.id) {
            if e.info != info {
                e.info = info;
                e.announced = false;
            }
        } else {
            if st.nodes.len() >= MAX_NODES {
                return Err(PublishError::TooManyNodes(info.id));
            }
            st.nodes.insert(
                info.id.clone(),
                NodeEntry {
                    info,
                    announced: false,
                },
            );
        }
        drop(st);
        self.shared.cv.notify_all();
        Ok(())
    }

    fn ensure_node(&self, st: &mut State, node: &NodeId) -> Result<(), PublishError> {
        if !st.nodes.contains_key(node) {
            if st.nodes.len() >= MAX_NODES {
                return Err(PublishError::TooManyNodes(node.clone()));
            }
            st.nodes.insert(
                node.clone(),
                NodeEntry {
                    info: NodeInfo::new(node.clone()),
                    announced: false,
                },
            );
        }
        Ok(())
    }

    fn enqueue(
        &self,
        node: Option<&NodeId>,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), PublishError> {
        if payload.len() > self.max_payload {
            return Err(PublishError::TooLarge {
                topic,
                len: payload.len(),
                limit: self.max_payload,
            });
        }
        if crate::packet::check_topic_name(&topic).is_err() {
            return Err(PublishError::Topic(topic));
        }
        let c = &self.shared.counters;
        let mut st = self.shared.lock();
        if st.stop.is_some() {
            return Err(PublishError::Stopped);
        }
        if let Some(node) = node {
            self.ensure_node(&mut st, node)?;
        }
        if let Some(m) = st.queue.iter_mut().find(|m| m.topic == topic) {
            m.payload = payload;
            m.retain = retain;
            c.dropped_replaced.fetch_add(1, Ordering::Relaxed);
        } else {
            if st.queue.len() >= self.capacity {
                st.queue.pop_front();
                c.dropped_overflow.fetch_add(1, Ordering::Relaxed);
            }
            st.queue.push_back(Message {
                topic,
                payload,
                retain,
            });
        }
        drop(st);
        self.shared.cv.notify_all();
        Ok(())
    }

    /// Queues a pose on `<base>/<node>/pose`.
    pub fn pose(&self, node: &NodeId, msg: &PoseMessage) -> Result<(), PublishError> {
        self.enqueue(Some(node), self.topics.pose(node), msg.to_json(), false)
    }

    /// Queues an activity on `<base>/<node>/activity`.
    pub fn activity(&self, node: &NodeId, msg: &ActivityMessage) -> Result<(), PublishError> {
        self.enqueue(Some(node), self.topics.activity(node), msg.to_json(), false)
    }

    /// Queues presence on `<base>/<node>/presence` (retained, so a new subscriber sees the
    /// current state).
    pub fn presence(&self, node: &NodeId, msg: &PresenceMessage) -> Result<(), PublishError> {
        self.enqueue(Some(node), self.topics.presence(node), msg.to_json(), true)
    }

    /// Queues link statistics on `<base>/<node>/stats`.
    pub fn stats(&self, node: &NodeId, msg: &StatsMessage) -> Result<(), PublishError> {
        self.enqueue(Some(node), self.topics.stats(node), msg.to_json(), false)
    }

    /// Queues any payload on any topic (QoS 0).
    pub fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), PublishError> {
        self.enqueue(None, topic.to_string(), payload, retain)
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> Metrics {
        let c = &self.shared.counters;
        let st = self.shared.lock();
        Metrics {
            sent: c.sent.load(Ordering::Relaxed),
            dropped_replaced: c.dropped_replaced.load(Ordering::Relaxed),
            dropped_overflow: c.dropped_overflow.load(Ordering::Relaxed),
            dropped_failed: c.dropped_failed.load(Ordering::Relaxed),
            dropped_shutdown: c.dropped_shutdown.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            connect_failures: c.connect_failures.load(Ordering::Relaxed),
            connected: st.connected,
            queued: st.queue.len() as u64,
            last_error: st.last_error.clone(),
        }
    }

    /// Stops: if connected, sends what is queued (for at most `flush`), publishes `offline`
    /// (retained) and disconnects cleanly; then joins the thread. What is left unsent is counted
    /// in `dropped_shutdown`. A broker that stopped reading can hold this up to the write
    /// timeout beyond `flush`, and a connection attempt in progress up to the connect timeout.
    /// Returns the final counters. Dropping a `Publisher` does the same with a 0.5 s flush.
    pub fn shutdown(mut self, flush: Duration) -> Metrics {
        self.stop(flush);
        self.metrics()
    }

    fn stop(&mut self, flush: Duration) {
        {
            let mut st = self.shared.lock();
            if st.stop.is_none() {
                st.stop = Some(Instant::now() + flush);
            }
        }
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(500));
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ addr.rotate_left(17);
    // splitmix64 finaliser
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The wait before reconnect try `attempt` (0-based): `min·2^attempt` capped at `max`, drawn
/// uniformly from [half, full] with `rand` (any u64).
pub fn backoff_delay(min: Duration, max: Duration, attempt: u32, rand: u64) -> Duration {
    let full = min
        .checked_mul(1u32 << attempt.min(30))
        .unwrap_or(max)
        .min(max);
    let half = full / 2;
    let span = (full - half).as_nanos() as u64;
    let extra = if span == 0 { 0 } else { rand % (span + 1) };
    half + Duration::from_nanos(extra)
}

fn run(cfg: PublisherConfig, shared: Arc<Shared>) {
    let topics = cfg.topics.clone();
    let opts = ClientOptions {
        connect: Connect {
            client_id: cfg.client_id.clone(),
            keep_alive_s: cfg.keep_alive.as_secs() as u16,
            username: cfg.username.clone(),
            password: cfg.password.as_ref().map(|p| p.as_bytes().to_vec()),
            will: Some(Will {
                topic: topics.availability(),
                payload: OFFLINE.as_bytes().to_vec(),
                retain: true,
            }),
        },
        connect_timeout: cfg.connect_timeout,
        write_timeout: cfg.write_timeout,
        max_incoming_packet: 64 * 1024,
    };
    let c = &shared.counters;
    let mut rng = seed() | 1;
    let mut attempt = 0u32;
    let mut ever_connected = false;
    loop {
        if shared.lock().stop.is_some() {
            break;
        }
        let outcome = match Client::connect(&cfg.broker, &opts) {
            Ok(client) => {
                if ever_connected {
                    c.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                ever_connected = true;
                let started = Instant::now();
                let end = session(client, &cfg, &topics, &shared);
                if started.elapsed() >= cfg.backoff_max.max(Duration::from_secs(1)) {
                    attempt = 0;
                }
                end
            }
            Err(e) => {
                c.connect_failures.fetch_add(1, Ordering::Relaxed);
                shared.lock().last_error = Some(e.to_string());
                SessionEnd::Lost
            }
        };
        if outcome == SessionEnd::Stopped {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = backoff_delay(cfg.backoff_min, cfg.backoff_max, attempt, rng);
        attempt = attempt.saturating_add(1);
        let until = Instant::now() + wait;
        let mut st = shared.lock();
        while st.stop.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = shared
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
    let mut st = shared.lock();
    let left = st.queue.len() as u64;
    st.queue.clear();
    st.connected = false;
    c.dropped_shutdown.fetch_add(left, Ordering::Relaxed);
}

#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    Lost,
    Stopped,
}

enum Work {
    Discovery(NodeInfo),
    Message(Message),
    Ping,
    Stop,
    Lost(String),
}

fn reader_loop(mut reader: PacketReader, addr: String, ha_status: String, shared: Arc<Shared>) {
    let err = loop {
        match reader.next_packet(&addr) {
            Ok(Packet::PingResp) => {
                shared.counters.pongs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Packet::Publish { topic, payload, .. }) => {
                if topic == ha_status && payload == ONLINE.as_bytes() {
                    shared.lock().rediscover = true;
                    shared.cv.notify_all();
                }
            }
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    let mut st = shared.lock();
    if st.conn_lost.is_none() {
        st.conn_lost = Some(err.to_string());
    }
    drop(st);
    shared.cv.notify_all();
}

fn session(
    mut client: Client,
    cfg: &PublisherConfig,
    topics: &Topics,
    shared: &Arc<Shared>,
) -> SessionEnd {
    let reader = match client.split_reader() {
        Ok(r) => r,
        Err(e) => {
            shared.lock().last_error = Some(e.to_string());
            client.shutdown();
            return SessionEnd::Lost;
        }
    };
    {
        let mut st = shared.lock();
        st.conn_lost = None;
        st.rediscover = false;
        for n in st.nodes.values_mut() {
            n.announced = false;
        }
    }
    let reader_thread = {
        let (addr, ha, s) = (cfg.broker.clone(), topics.ha_status(), shared.clone());
        std::thread::Builder::new()
            .name("csipose-mqtt-rx".into())
            .spawn(move || reader_loop(reader, addr, ha, s))
    };
    let reader_thread = match reader_thread {
        Ok(t) => t,
        Err(e) => {
            shared.lock().last_error = Some(format!("cannot start the MQTT reader thread: {e}"));
            client.shutdown();
            return SessionEnd::Lost;
        }
    };
    let end = session_loop(&mut client, cfg, topics, shared);
    client.shutdown();
    let _ = reader_thread.join();
    // Every way out of the loop has recorded its cause; the reader's error after our own
    // shutdown ("closed the connection") is not one.
    let mut st = shared.lock();
    st.connected = false;
    st.conn_lost = None;
    drop(st);
    end
}

fn session_loop(
    client: &mut Client,
    cfg: &PublisherConfig,
    topics: &Topics,
    shared: &Arc<Shared>,
) -> SessionEnd {
    let c = &shared.counters;
    let fail = |e: ClientError| {
        shared.lock().last_error = Some(e.to_string());
        SessionEnd::Lost
    };
    let ha_status = topics.ha_status();
    if let Err(e) = client.send_subscribe(&[(ha_status.as_str(), QoS::AtMostOnce)]) {
        return fail(e);
    }
    if let Err(e) = client.publish(&topics.availability(), ONLINE.as_bytes(), true) {
        return fail(e);
    }
    c.sent.fetch_add(1, Ordering::Relaxed);
    shared.lock().connected = true;

    let ping_every = cfg.keep_alive / 2;
    let mut next_ping = Instant::now() + ping_every;
    let mut ping_sent: Option<(Instant, u64)> = None;
    loop {
        let work = {
            let mut st = shared.lock();
            loop {
                if let Some(e) = st.conn_lost.take() {
                    break Work::Lost(e);
                }
                if st.rediscover {
                    st.rediscover = false;
                    for n in st.nodes.values_mut() {
                        n.announced = false;
                    }
                }
                if let Some(n) = st.nodes.values_mut().find(|n| !n.announced) {
                    n.announced = true;
                    break Work::Discovery(n.info.clone());
                }
                if let Some(m) = st.queue.pop_front() {
                    break Work::Message(m);
                }
                if st.stop.is_some() {
                    break Work::Stop;
                }
                let now = Instant::now();
                if let Some((at, pongs)) = ping_sent {
                    if c.pongs.load(Ordering::Relaxed) > pongs {
                        ping_sent = None;
                    } else if now >= at + cfg.keep_alive {
                        break Work::Lost(format!(
                            "MQTT broker {}: no PINGRESP within {:?}",
                            cfg.broker, cfg.keep_alive
                        ));
                    }
                }
                if now >= next_ping {
                    break Work::Ping;
                }
                let mut wake = next_ping;
                if let Some((at, _)) = ping_sent {
                    wake = wake.min(at + cfg.keep_alive);
                }
                st = shared
                    .cv
                    .wait_timeout(st, wake.saturating_duration_since(now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        // A stop with a passed flush deadline sends nothing more queued.
        let stop_at = shared.lock().stop;
        let past_deadline = stop_at.is_some_and(|d| Instant::now() >= d);
        match work {
            Work::Lost(e) => {
                shared.lock().last_error = Some(e);
                return SessionEnd::Lost;
            }
            Work::Discovery(info) => {
                for (topic, payload) in discovery_configs(topics, &info) {
                    if let Err(e) = client.publish(&topic, &payload, true) {
                        if let Some(n) = shared.lock().nodes.get_mut(&info.id) {
                            n.announced = false;
                        }
                        return fail(e);
                    }
                    c.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Work::Message(m) if past_deadline => {
                c.dropped_shutdown.fetch_add(1, Ordering::Relaxed);
                let mut st = shared.lock();
                let n = st.queue.len() as u64;
                st.queue.clear();
                c.dropped_shutdown.fetch_add(n, Ordering::Relaxed);
                drop(m);
            }
            Work::Message(m) => match client.publish(&m.topic, &m.payload, m.retain) {
                Ok(()) => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    c.dropped_failed.fetch_add(1, Ordering::Relaxed);
                    return fail(e);
                }
            },
            Work::Ping => {
                if let Err(e) = client.ping() {
                    return fail(e);
                }
                if ping_sent.is_none() {
                    ping_sent = Some((Instant::now(), c.pongs.load(Ordering::Relaxed)));
                }
                next_ping = Instant::now() + ping_every;
            }
            Work::Stop => {
                if client
                    .publish(&topics.availability(), OFFLINE.as_bytes(), true)
                    .is_ok()
                {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    let _ = client.send_disconnect();
                }
                return SessionEnd::Stopped;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jitters_within_half_to_full() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..40 {
            let full = (min * (1u32 << attempt.min(5))).min(max);
            for r in [0u64, 1, 12345, u64::MAX] {
                let d = backoff_delay(min, max, attempt, r);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        assert_eq!(backoff_delay(min, max, 0, 0), Duration::from_millis(50));
        assert_eq!(backoff_delay(min, max, 10, 0), Duration::from_secs(1));
        // Jitter spreads: different draws give different waits.
        assert_ne!(
            backoff_delay(min, max, 3, 1),
            backoff_delay(min, max, 3, 99_999_999)
        );
    }

    #[test]
    fn publisher_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Publisher>();
        shareable::<Metrics>();
    }

    #[test]
    fn config_is_validated() {
        let ok = PublisherConfig::new("127.0.0.1:1883");
        assert!(ok.validate().is_ok());
        assert!(ok.client_id.starts_with("csipose-") && ok.client_id.len() == 23);
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:70000",
            ":1883",
            "::1:1883",
            "a b:1",
        ] {
            assert!(check_broker(bad).is_err(), "{bad:?}");
        }
        for good in ["localhost:1883", "[::1]:1883", "10.0.0.2:8883"] {
            assert!(check_broker(good).is_ok(), "{good:?}");
        }
        let mut c = ok.clone();
        c.password = Some("p".into());
        assert_eq!(c.validate(), Err(ConfigError::PasswordWithoutUser));
        let mut c = ok.clone();
        c.keep_alive = Duration::from_millis(10);
        assert!(c.validate().is_err());
        for cap in [0, 4097] {
            let mut c = ok.clone();
            c.queue_capacity = cap;
            assert!(c.validate().is_err(), "{cap}");
        }
        let mut c = ok.clone();
        c.backoff_min = Duration::from_secs(60);
        assert!(c.validate().is_err());
        let mut c = ok;
        c.topics.base = "a/#".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn queue_replaces_same_topic_and_evicts_oldest_without_a_broker() {
        // A broker address nothing listens on (port 1 on loopback): the thread keeps failing
        // to connect, so everything stays queued.
        let mut cfg = PublisherConfig::new("127.0.0.1:1");
        cfg.queue_capacity = 3;
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(100);
        let p = Publisher::start(cfg).unwrap();
        for i in 0..5u8 {
            p.publish("t/a", vec![i], false).unwrap();
        }
        let m = p.metrics();
        assert_eq!((m.queued, m.dropped_replaced), (1, 4));
        for t in ["t/b", "t/c", "t/d", "t/e"] {
            p.publish(t, vec![0], false).unwrap();
        }
        let m = p.metrics();
        assert_eq!((m.queued, m.dropped_overflow), (3, 2));
        assert!(p.publish("t/+", vec![], false).is_err());
        assert!(matches!(
            p.publish("t/x", vec![0; 300 * 1024], false),
            Err(PublishError::TooLarge { .. })
        ));
        let m = p.shutdown(Duration::from_millis(10));
        assert_eq!(m.dropped_shutdown, 3);
        assert_eq!(m.sent, 0);
        assert_eq!(m.dropped(), 4 + 2 + 3);
    }
}
