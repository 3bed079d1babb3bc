//! Writing a physics-simulated MM-Fi-like packed dataset (optionally an MM-Fi-layout tree too)
//! and/or a PNG preview of one sequence ([`run`] with [`SimulateOptions`]), with an `indicatif`
//! bar the caller hands in; what was written is reported on stderr.

use anyhow::Context;
use csipose_sim::generate::{write_dataset, Plan, Summary};
use csipose_sim::sequence::SequenceSpec;
use csipose_sim::{SimConfig, Simulator};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// The preview: one sequence's CSI amplitude heatmap beside the skeleton at four frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// The PNG file to write.
    pub path: PathBuf,
    /// The sequence's action (1..=27); its subject is the first of E01.
    pub action: u32,
}

/// One simulation.
#[derive(Clone, Debug)]
pub struct SimulateOptions {
    /// Radio, body and noise settings (its float settings checked by the caller;
    /// `keep_raw` is set here when a tree is written).
    pub config: SimConfig,
    /// Environments, subjects, actions and frames per sequence.
    pub plan: Plan,
    /// Packed dataset directory to write (written atomically); `None`: preview only.
    pub out: Option<PathBuf>,
    /// Also write an MM-Fi-layout tree here (with `out`).
    pub tree: Option<PathBuf>,
    pub preview: Option<Preview>,
    /// The command line recorded as the dataset's provenance.
    pub command_line: String,
}

/// Writes the preview, then the dataset; `bar` counts simulated frames. Returns the dataset's
/// summary (`None` without `out`).
pub fn run(opts: &SimulateOptions, bar: &ProgressBar) -> anyhow::Result<Option<Summary>> {
    let plan = &opts.plan;
    let sim = Simulator::new(SimConfig {
        keep_raw: opts.tree.is_some(),
        ..opts.config.clone()
    });
    let h = sim.radio.hardware.clone();

    if let Some(Preview { path: png, action }) = &opts.preview {
        let seq = sim.sequence(SequenceSpec {
            env: 1,
            subject: 1,
            action: *action,
            frames: plan.frames_per_seq,
        });
        let bytes = csipose_sim::preview::render(&seq, h.antennas, h.subcarriers, h.packets);
        let mut f = csipose_npy::AtomicFile::create(png)?;
        std::io::Write::write_all(&mut f, &bytes)
            .with_context(|| format!("writing {}", png.display()))?;
        f.commit()?;
        eprintln!(
            "preview of E01 S01 A{:02} ({} frames) written to {}",
            action,
            plan.frames_per_seq,
            png.display()
        );
    }

    let Some(out) = &opts.out else {
        return Ok(None);
    };
    bar.set_length(plan.frames() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} simulating [{bar:40}] {pos}/{len} frames ({per_sec}, eta {eta})",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let provenance = serde_json::json!({
        "command": opts.command_line,
    });
    let summary = write_dataset(&sim, plan, out, opts.tree.as_deref(), provenance, &|n| {
        bar.set_position(n)
    })
    .with_context(|| format!("simulating into {}", out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "simulated {} frames ({} sequences, profile {}, {}×{}×{}) into {} in {:.1} s; \
         {} frames had a fully dropped packet (filled by the preprocessing repair)",
        summary.frames,
        summary.sequences,
        h.name,
        h.antennas,
        h.subcarriers,
        h.packets,
        out.display(),
        started.elapsed().as_secs_f64(),
        summary.repaired_frames
    );
    if let Some(t) = &summary.tree {
        eprintln!("MM-Fi-layout tree written to {}", t.display());
    }
    Ok(Some(summary))
}
