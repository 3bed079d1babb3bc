//! `csipose`: the one command-line tool. Each subcommand lives in its own module under `cmd/`.

mod cmd;
mod validate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "csipose",
    version,
    about = "WiFi CSI human pose estimation: capture, simulate, train, quantize, run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read real CSI captures: export, info, inspect, to-dataset.
    #[command(subcommand_required = true)]
    Capture(cmd::capture::Args),
    /// Send captures, datasets or recordings to a UDP address as live traffic, with faults.
    Replay(cmd::replay::Args),
    /// The live sensing server: CSI over UDP/stdin/serial to poses on a WebSocket, REST and a web page.
    Serve(cmd::serve::Args),
    /// Run the main job end to end on a built-in default (see README).
    Demo(cmd::demo::Args),
    /// Import an MM-Fi tree (or its zip archives) into a packed dataset.
    ImportMmfi(cmd::import_mmfi::Args),
    /// Simulate an MM-Fi-like dataset (physics-based CSI with exact ground truth).
    Simulate(cmd::simulate::Args),
    /// Print the train/validation subjects per action for an MM-Fi split.
    Split(cmd::split::Args),
    /// Evaluate predicted keypoints against a packed dataset (torso-PCK, MPJPE, ...).
    Eval(cmd::eval::Args),
    /// Attention kernel of the temporal head: `temporal bench` times sparse vs dense.
    Temporal(cmd::temporal::Args),
    /// Activity recognition with the temporal head: train, eval, stream.
    Activity(cmd::activity::Args),
    /// Presence and motion from raw CSI (streaming detector with still-room calibration).
    Presence(cmd::presence::Args),
    /// List the model family: parameter counts (ours vs published) and FLOPs per forward.
    Models(cmd::models::Args),
    /// Train a pose model on a packed dataset (checkpoints each epoch; --resume continues).
    Train(cmd::train::Args),
    /// Predict keypoints for every frame of a packed dataset from a trained run.
    Predict(cmd::predict::Args),
    /// Time the no_std runtime on a .csm model: batch-1 latency, FLOPs, GFLOP/s.
    Bench(cmd::bench::Args),
    /// Quantize a trained run into a .csm model file (int8/int4 PTQ or int4 QAT, or fp32).
    Quantize(cmd::quantize::Args),
    /// Train the family, quantize micro, time everything: FRONTIER.md, JSON and a Pareto plot.
    Frontier(cmd::frontier::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Capture(a) => cmd::capture::run(a),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::ImportMmfi(a) => cmd::import_mmfi::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Split(a) => cmd::split::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Temporal(a) => cmd::temporal::run(a),
        Command::Activity(a) => cmd::activity::run(a),
        Command::Presence(a) => cmd::presence::run(a),
        Command::Models(a) => cmd::models::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Frontier(a) => cmd::frontier::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message so far
/// already contains (many of our errors print their source as part of their own message).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chain_drops_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io)
            .context("/x: No such file")
            .context("cannot import");
        assert_eq!(super::error_chain(&e), "cannot import: /x: No such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}
