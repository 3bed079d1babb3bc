//! `csipose replay FILE...`: sends captures, packed datasets or recordings to a UDP address
//! as live traffic (one source port per node), with seeded fault injection, and prints the
//! exact counts of what it did. The work is `csipose_wire::replay`.

use anyhow::{bail, Result};
use csipose_wire::replay::{self, Faults, ReplayOptions, SendAs, Speed};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Capture files (any format `capture` reads), packed dataset folders (X.npy amplitude
    /// [N, A, S, P]: each frame's P packets become P datagrams), or recording part files
    /// (sent bit-exactly, one socket per recorded source).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Destination host:port (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:5500")]
    pub to: String,
    /// Allow a destination that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Nodes: each sends the whole stream from its own source port (node ids 1..=N).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Pace: 1 = as captured (timestamps where the input has them, else --rate), 2 = twice
    /// as fast, ..., or `max`.
    #[arg(long, default_value = "1")]
    pub speed: String,
    /// Packet rate in Hz where the input has no timestamps (datasets) or with --ignore-timestamps.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Pace captures by --rate instead of their timestamps.
    #[arg(long)]
    pub ignore_timestamps: bool,
    /// What to send: live (csipose live frames) | adr018 (int8 captures) | native (Nexmon
    /// UDP payloads, ESP32 CSI_DATA lines).
    #[arg(long = "as", default_value = "live")]
    pub send_as: String,
    /// Probability that a datagram is dropped.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Probability that a datagram is held back and sent after the node's next one.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Probability that a datagram is sent twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate: f64,
    /// Probability that a junk datagram (random bytes no format accepts) is sent before a datagram.
    #[arg(long, default_value_t = 0.0)]
    pub junk: f64,
    /// Each node restarts (new session, sequence 0) at its K-th datagram (live frames only).
    #[arg(long)]
    pub reset_at: Option<u64>,
    /// Seed of the fault RNG (and of the node sessions).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the counts as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = ReplayOptions {
        to: replay::parse_target(&a.to, a.allow_remote).map_err(anyhow::Error::msg)?,
        nodes: a.nodes,
        speed: Speed::parse(&a.speed).map_err(anyhow::Error::msg)?,
        rate_hz: a.rate,
        use_timestamps: !a.ignore_timestamps,
        faults: Faults {
            loss: a.loss,
            reorder: a.reorder,
            duplicate: a.duplicate,
            junk: a.junk,
            reset_at: a.reset_at,
        },
        seed: a.seed,
        send_as: SendAs::parse(&a.send_as).map_err(anyhow::Error::msg)?,
        allow_remote: a.allow_remote,
    };
    replay::validate(&opts).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let result = replay::replay_with_progress(&a.files, &opts, |s| {
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!("replay: {s}");
            last_report = Instant::now();
        }
    });
    let stats = match result {
        Ok(s) => s,
        Err(e) => bail!("replay: {e}"),
    };
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        let mut j = stats.to_json();
        j["to"] = opts.to.to_string().into();
        j["seconds"] = secs.into();
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!("replay to {} in {secs:.2} s: {stats}", opts.to);
    }
    Ok(())
}
