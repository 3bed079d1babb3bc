//! `csipose serve`: the live sensing server (crate `csipose-serve`) from the command line:
//! options to [`csipose_serve::Config`], start, print where it listens, run until killed.

use std::path::PathBuf;

use anyhow::Result;
use csipose_serve::{Config, Mode, Server};

/// The shipped activity model (`--activity` without a value).
const DEFAULT_ACTIVITY: &str = "models/esp32-har-d1.rvne";

/// Its classes, in class order (the `#classes` line of the manifest it was trained from), for
/// a copy of it written before `.rvne` files carried class names.
const DEFAULT_ACTIVITY_LABELS: [&str; 10] = [
    "SEATED_RX",
    "SEATED_TX",
    "SITTING_DOWN_RX",
    "SITTING_DOWN_TX",
    "STANDING_UP_RX",
    "STANDING_UP_TX",
    "TURN_RX",
    "TURN_TX",
    "WALKING_RX",
    "WALKING_TX",
];

#[derive(clap::Args)]
pub struct Args {
    /// The pose model (.csm); its input shape [A, S, P] sets the window.
    #[arg(long, required_unless_present = "demo")]
    pub model: Option<PathBuf>,
    /// Replay the output folder of `csipose demo` (default csipose-demo) through the server:
    /// its simulated dataset sent as live frames at 100 packets/s, poses from its trained
    /// micro int8 model (unless --model names another), banner REPLAY.
    #[arg(long, num_args = 0..=1, default_missing_value = "csipose-demo")]
    pub demo: Option<PathBuf>,
    /// The temporal activity head (.rvne; causal, amplitude or amplitude-phase features).
    /// `--activity` alone uses the shipped default, `models/esp32-har-d1.rvne` (ESP32 HT-LTF
    /// amplitudes of 56 subcarriers, the 10 ESP32-HAR classes; README, "The default activity
    /// model").
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_ACTIVITY)]
    pub activity: Option<PathBuf>,
    /// Comma-separated class names of the activity head, in class order [default: the names
    /// stored in the .rvne file; `class N` for a file without them]. Given, they override the
    /// file's.
    #[arg(long, value_delimiter = ',')]
    pub activity_labels: Vec<String>,
    /// UDP address for CSI datagrams.
    #[arg(long, default_value = "127.0.0.1:5005")]
    pub bind: std::net::SocketAddr,
    /// HTTP/WebSocket address (a non-loopback address needs --token).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: std::net::SocketAddr,
    /// Token the WebSocket and REST API require (?token= or Authorization: Bearer).
    #[arg(long)]
    pub token: Option<String>,
    /// Folder for recordings started with POST /api/v1/record/start (or the page's button).
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// Also read ESP32 CSI_DATA text lines from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// Also read CSI_DATA text lines from this serial device (set its baud rate with stty).
    #[arg(long)]
    pub serial: Option<PathBuf>,
    /// Window span in ms: the model's P positions are span / P apart.
    #[arg(long, default_value_t = 100.0)]
    pub window_ms: f64,
    /// Packets of one node between two inferences.
    #[arg(long, default_value_t = 5)]
    pub stride: usize,
    /// A window with a larger gap between two packets (ms) is skipped and counted.
    #[arg(long, default_value_t = 250.0)]
    pub max_gap_ms: f64,
    /// Inference queue capacity in packets (the oldest are dropped and counted beyond it).
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
    /// Label the data as a replay on the page's banner.
    #[arg(long)]
    pub replay: bool,
    /// Do not run the presence detector (poses are sent with presence null). Always off with
    /// --demo: the simulated data has no empty room to calibrate on.
    #[arg(long)]
    pub no_presence: bool,
    /// Most simultaneous HTTP/WebSocket connections.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Publish poses, activity, presence and link statistics to this MQTT broker (HOST:PORT),
    /// with Home Assistant discovery.
    #[arg(long)]
    pub mqtt: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let demo = match &a.demo {
        Some(dir) => {
            let data = dir.join("sim-demo");
            if !data.join("X.npy").is_file() {
                anyhow::bail!(
                    "--demo {}: no simulated dataset at {}; run `csipose demo --out {}` first",
                    dir.display(),
                    data.display(),
                    dir.display()
                );
            }
            Some(data)
        }
        None => None,
    };
    let model = match (a.model, &a.demo) {
        (Some(m), _) => m,
        (None, Some(dir)) => {
            let m = dir.join("models").join("micro-int8.csm");
            if !m.is_file() {
                anyhow::bail!(
                    "--demo {}: no trained model at {}; run `csipose demo --out {}` first",
                    dir.display(),
                    m.display(),
                    dir.display()
                );
            }
            m
        }
        (None, None) => anyhow::bail!("give --model FILE (or --demo)"),
    };
    let mut cfg = Config::new(model);
    let mut labels = a.activity_labels;
    cfg.activity = match a.activity {
        Some(p) if p.as_os_str() == DEFAULT_ACTIVITY => {
            // Run from anywhere: the repository's copy when ./models has none.
            let p = if p.is_file() {
                p
            } else {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../../models/esp32-har-d1.rvne"
                ))
            };
            if labels.is_empty() && !has_class_names(&p) {
                labels = DEFAULT_ACTIVITY_LABELS
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            }
            Some(p)
        }
        other => other,
    };
    cfg.activity_labels = labels;
    cfg.udp = a.bind;
    cfg.http = a.http;
    cfg.token = a.token;
    cfg.record_dir = a.record_dir;
    cfg.stdin = a.stdin;
    cfg.serial = a.serial;
    cfg.window_ms = a.window_ms;
    cfg.stride = a.stride;
    if demo.is_some() {
        // One window per dataset frame: P packets apart, aligned with the frames.
        cfg.stride = csipose_serve::model::load_pose(&cfg.model)?.config.packets;
    }
    cfg.max_gap_ms = a.max_gap_ms;
    cfg.queue = a.queue;
    cfg.mode = if a.replay || demo.is_some() {
        Mode::Replay
    } else {
        Mode::Live
    };
    // The simulated demo data has a person in every frame and no empty room to calibrate the
    // presence detector on (it would calibrate on the person and then call the room empty), so
    // the demo runs without it: poses are sent with presence null ("not measured").
    cfg.presence = !a.no_presence && demo.is_none();
    if demo.is_some() && !a.no_presence {
        eprintln!(
            "note: presence detection is off for --demo (simulated data has no empty room to calibrate on)"
        );
    }
    cfg.max_connections = a.max_connections;
    cfg.mqtt = a.mqtt;
    let token = cfg.token.clone();
    let server = Server::start(cfg)?;
    let s = server.shared();
    eprintln!(
        "csipose serve: model {} ({}, sha256 {}){}",
        s.pose_model.file,
        s.pose_model.precision,
        &s.pose_model.sha256[..16],
        s.activity_model
            .as_ref()
            .map(|m| format!(", activity {} (sha256 {})", m.file, &m.sha256[..16]))
            .unwrap_or_default()
    );
    eprintln!("  CSI datagrams on udp://{}", server.udp_addr());
    eprintln!(
        "  page on http://{}/{}",
        server.http_addr(),
        token.map(|t| format!("?token={t}")).unwrap_or_default()
    );
    if let Some(data) = demo {
        // Windows of P packets every P packets line up with the dataset's frames.
        let to = server.udp_addr();
        eprintln!(
            "  replaying {} to {to} at 100 packets/s (REPLAY)",
            data.display()
        );
        std::thread::spawn(move || {
            let opts = csipose_wire::replay::ReplayOptions {
                to,
                rate_hz: 100.0,
                ..Default::default()
            };
            match csipose_wire::replay::replay(&[data], &opts) {
                Ok(st) => eprintln!("demo replay finished: {}", st.to_json()),
                Err(e) => eprintln!("demo replay failed: {e}"),
            }
        });
    }
    server.wait();
    Ok(())
}

/// Whether the `.rvne` file at `p` stores its class names (an unreadable file is reported when
/// the server loads it).
fn has_class_names(p: &std::path::Path) -> bool {
    std::fs::read(p)
        .ok()
        .and_then(|b| {
            csipose_temporal::rvne::RvneView::parse(&b)
                .ok()
                .and_then(|v| v.meta())
        })
        .is_some_and(|m| m.classes.is_some())
}
