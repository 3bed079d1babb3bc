//! `csipose serve`: the live sensing server. CSI packets arrive on one UDP socket (or as text
//! lines from stdin or a serial device), are decoded and counted per format and per reject
//! reason ([`ingest`]), tracked per node (rate, loss, reboots, RSSI; [`nodes`]), resampled by
//! timestamp into the pose model's `[A, S, P]` window, preprocessed by the shared MM-Fi
//! preprocessing and run through the `no_std` runtime and, optionally, the temporal activity
//! head's KV-cache streaming path ([`pipeline`]). Results go out over a WebSocket, a small REST
//! API and an embedded web page ([`http`], [`hub`]). Every queue is bounded; whatever is
//! dropped is counted.
//!
//! Start with [`Server::start`]; the returned handle knows the bound addresses and stops
//! every thread on [`Server::shutdown`] (or drop).

pub mod decode;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod model;
pub mod nodes;
pub mod pipeline;
pub mod stats;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Largest datagram accepted (bytes); larger ones are rejected as `too_large`.
pub const MAX_DATAGRAM: usize = 9000;
/// Largest text line accepted from stdin or a serial device (bytes).
pub const MAX_LINE: usize = 16 * 1024;

/// Whether the data is live or a replay (shown on the page's banner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Replay => "replay",
        }
    }
}

/// Everything the server needs; validated by [`Server::start`].
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP address for CSI datagrams.
    pub udp: SocketAddr,
    /// HTTP/WebSocket address.
    pub http: SocketAddr,
    /// The pose model (`.csm`).
    pub model: PathBuf,
    /// The temporal activity head (`.rvne`), optional.
    pub activity: Option<PathBuf>,
    /// Class names of the activity head (index order), overriding those stored in the `.rvne`
    /// file; a class named in neither is `class N`.
    pub activity_labels: Vec<String>,
    /// Window span in milliseconds: the `P` window positions are `span / P` apart.
    pub window_ms: f64,
    /// Packets between two inferences of one node.
    pub stride: usize,
    /// Largest gap between two packets inside a window (ms); a window with a larger one is
    /// skipped and counted.
    pub max_gap_ms: f64,
    /// Capacity of the inference queue (packets); the oldest are dropped beyond it.
    pub queue: usize,
    /// Required on the WebSocket and REST API (`?token=` or `Authorization: Bearer`).
    pub token: Option<String>,
    /// Where `POST /api/v1/record/start` writes recordings; recording is off without it.
    pub record_dir: Option<PathBuf>,
    /// Read text lines (ESP32 `CSI_DATA`) from standard input.
    pub stdin: bool,
    /// Read text lines from this serial device (opened as a file; configure its baud rate
    /// beforehand, e.g. with `stty`).
    pub serial: Option<PathBuf>,
    /// Live or replay, for the banner.
    pub mode: Mode,
    /// Most simultaneous HTTP/WebSocket connections.
    pub max_connections: usize,
    /// Run the presence/motion detector per node (default on): once it is calibrated, a
    /// pose message without a person carries no keypoints.
    pub presence: bool,
    /// MQTT broker (`HOST:PORT`) for poses, activity, presence and link statistics per node,
    /// with Home Assistant discovery (crate `csipose-mqtt`).
    pub mqtt: Option<String>,
}

impl Config {
    /// Defaults for everything but the model.
    pub fn new(model: PathBuf) -> Config {
        Config {
            udp: "127.0.0.1:5005".parse().expect("literal"),
            http: "127.0.0.1:8080".parse().expect("literal"),
            model,
            activity: None,
            activity_labels: Vec::new(),
            window_ms: 100.0,
            stride: 5,
            max_gap_ms: 250.0,
            queue: 4096,
            token: None,
            record_dir: None,
            stdin: false,
            serial: None,
            mode: Mode::Live,
            max_connections: 64,
            presence: true,
            mqtt: None,
        }
    }

    /// Checks the options before anything is bound or loaded.
    pub fn validate(&self) -> Result<()> {
        if !(self.window_ms.is_finite() && self.window_ms > 0.0 && self.window_ms <= 60_000.0) {
            bail!("--window-ms must be in (0, 60000], not {}", self.window_ms);
        }
        if !(self.max_gap_ms.is_finite() && self.max_gap_ms > 0.0) {
            bail!("--max-gap-ms must be positive, not {}", self.max_gap_ms);
        }
        if self.stride == 0 || self.stride > 10_000 {
            bail!("--stride must be in 1..=10000, not {}", self.stride);
        }
        if self.queue == 0 || self.queue > 1 << 20 {
            bail!("--queue must be in 1..=1048576, not {}", self.queue);
        }
        if self.max_connections == 0 || self.max_connections > 4096 {
            bail!("--max-connections must be in 1..=4096");
        }
        if let Some(t) = &self.token {
            if t.len() < 8 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("--token must be at least 8 printable ASCII characters without spaces");
            }
        }
        if !self.http.ip().is_loopback() && self.token.is_none() {
            bail!(
                "--http {} is not a loopback address: give --token so that the WebSocket and REST API are not open to the network",
                self.http
            );
        }
        if let Some(d) = &self.record_dir {
            if !d.is_dir() {
                bail!("--record-dir {}: not a directory", d.display());
            }
        }
        Ok(())
    }
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    udp_addr: SocketAddr,
    http_addr: SocketAddr,
}

/// State every thread shares.
pub struct Shared {
    pub cfg: Config,
    pub stop: AtomicBool,
    pub pose_model: model::ModelInfo,
    pub activity_model: Option<model::ModelInfo>,
    pub stats: stats::Stats,
    pub nodes: std::sync::Mutex<nodes::NodeTable>,
    pub queue: pipeline::Queue,
    pub hub: hub::Hub,
    pub recorder: std::sync::Mutex<Option<decode::Recording>>,
    /// The MQTT publisher (never blocks: it queues for its own thread).
    pub mqtt: std::sync::Mutex<Option<csipose_mqtt::Publisher>>,
    pub started: std::time::Instant,
    pub started_unix: f64,
}

impl Shared {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Server {
    /// Validates `cfg`, loads the models (refusing anything it cannot run: there is no
    /// fallback), binds the sockets and starts the threads.
    pub fn start(cfg: Config) -> Result<Server> {
        cfg.validate()?;
        let pose = model::load_pose(&cfg.model)?;
        let activity = match &cfg.activity {
            Some(p) => Some(model::load_activity(p, &pose.info)?),
            None => None,
        };
        let mqtt = match &cfg.mqtt {
            Some(broker) => {
                let mut pc = csipose_mqtt::PublisherConfig::new(broker);
                pc.client_id = format!("csipose-serve-{}", std::process::id());
                Some(
                    csipose_mqtt::Publisher::start(pc)
                        .map_err(|e| anyhow::anyhow!("--mqtt {broker}: {e}"))?,
                )
            }
            None => None,
        };
        let udp =
            UdpSocket::bind(cfg.udp).with_context(|| format!("cannot bind UDP {}", cfg.udp))?;
        ingest::enlarge_receive_buffer(&udp, 4 << 20);
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let http = TcpListener::bind(cfg.http)
            .with_context(|| format!("cannot bind HTTP {}", cfg.http))?;
        http.set_nonblocking(true)?;
        let udp_addr = udp.local_addr()?;
        let http_addr = http.local_addr()?;
        let shared = Arc::new(Shared {
            queue: pipeline::Queue::new(cfg.queue),
            pose_model: pose.info.clone(),
            activity_model: activity.as_ref().map(|a| a.info.clone()),
            stop: AtomicBool::new(false),
            stats: stats::Stats::default(),
            nodes: std::sync::Mutex::new(nodes::NodeTable::default()),
            hub: hub::Hub::default(),
            recorder: std::sync::Mutex::new(None),
            mqtt: std::sync::Mutex::new(mqtt),
            started: std::time::Instant::now(),
            started_unix: unix_now(),
            cfg,
        });
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .with_context(|| format!("cannot start thread {name}"))
        };
        {
            let s = shared.clone();
            threads.push(spawn(
                "csipose-udp",
                Box::new(move || ingest::udp_loop(&s, udp)),
            )?);
        }
        {
            let s = shared.clone();
            threads.push(spawn(
                "csipose-infer",
                Box::new(move || pipeline::run(&s, pose, activity)),
            )?);
        }
        {
            let s = shared.clone();
            threads.push(spawn(
                "csipose-http",
                Box::new(move || http::accept_loop(&s, http)),
            )?);
        }
        {
            let s = shared.clone();
            threads.push(spawn("csipose-ticker", Box::new(move || hub::ticker(&s)))?);
        }
        if let Some(dev) = shared.cfg.serial.clone() {
            let f = std::fs::File::open(&dev)
                .with_context(|| format!("cannot open serial device {}", dev.display()))?;
            let s = shared.clone();
            let src = format!("serial:{}", dev.display());
            // A serial read blocks until data comes; this thread is not joined on shutdown.
            spawn(
                "csipose-serial",
                Box::new(move || ingest::line_loop(&s, std::io::BufReader::new(f), &src)),
            )?;
        }
        if shared.cfg.stdin {
            let s = shared.clone();
            // Standard input blocks until data comes; this thread is not joined on shutdown.
            spawn(
                "csipose-stdin",
                Box::new(move || ingest::line_loop(&s, std::io::stdin().lock(), "stdin")),
            )?;
        }
        Ok(Server {
            shared,
            threads,
            udp_addr,
            http_addr,
        })
    }

    /// The bound UDP address (useful with port 0).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Blocks until the server stops (never, unless another thread calls shutdown).
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Stops and joins the threads.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.queue.wake();
        self.shared.hub.close_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mqtt = self.shared.mqtt.lock().map(|mut m| m.take());
        if let Ok(Some(p)) = mqtt {
            p.shutdown(Duration::from_secs(1));
        }
        if let Ok(mut r) = self.shared.recorder.lock() {
            if let Some(rec) = r.take() {
                let _ = rec.finish();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_threads();
    }
}
