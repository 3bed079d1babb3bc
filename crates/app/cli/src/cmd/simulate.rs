//! `csipose simulate`: the flags of a simulation (profile, size, noise, outputs), checked and
//! turned into [`SimulateOptions`]; the pipeline writes a physics-simulated MM-Fi-like packed
//! dataset (optionally an MM-Fi-layout tree too) and/or a PNG preview of one sequence.

use anyhow::{bail, Context};
use csipose_pipeline::simulate::{Preview, SimulateOptions};
use csipose_sim::generate::Plan;
use csipose_sim::{Preset, Profile, SimConfig};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Output directory of the packed dataset (written atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Hardware profile: mmfi (3 rx × 114 subcarriers, 5 GHz, 40 MHz), iwl5300 (3 × 30,
    /// 5 GHz, 20 MHz) or esp32 (1 × 64, 2.4 GHz, 20 MHz); 10 packets per frame.
    #[arg(long, default_value = "mmfi", value_parser = ["mmfi", "iwl5300", "esp32"])]
    profile: String,
    /// Size preset: demo (4 env × 40 subjects × 27 actions × 45 frames = 48,600 frames) or
    /// mmfi-full (× 297 frames = 320,760). Explicit size flags override it.
    #[arg(long, value_parser = ["demo", "mmfi-full"])]
    preset: Option<String>,
    /// Environments E01.. (1–4) [default: 4].
    #[arg(long)]
    envs: Option<u32>,
    /// Subjects, shared out over the environments with MM-Fi numbering (E01: S01–S10, …,
    /// E04: S31–S40) [default: 40].
    #[arg(long)]
    subjects: Option<u32>,
    /// Actions A01.. (1–27) [default: 27].
    #[arg(long)]
    actions: Option<u32>,
    /// Frames per sequence at 10 frames/s [default: 297].
    #[arg(long)]
    frames_per_seq: Option<usize>,
    /// Receiver SNR in dB against the mean static channel power.
    #[arg(long, default_value_t = 25.0)]
    snr_db: f64,
    /// Per-sequence variation (±metres on each floor axis) of where a subject stands around
    /// the environment's marked spot (MM-Fi subjects stand on a marked spot).
    #[arg(long, default_value_t = 0.1)]
    position_jitter: f64,
    /// Per-sequence variation (±radians) of the heading around facing the camera.
    #[arg(long, default_value_t = 0.3)]
    heading_jitter: f64,
    /// Standard deviation of the per-packet automatic-gain-control error, dB.
    #[arg(long, default_value_t = 0.5)]
    agc_jitter_db: f64,
    /// Probability that one (packet, antenna, subcarrier) value is lost (written as inf).
    #[arg(long, default_value_t = 0.002)]
    subcarrier_dropout: f64,
    /// Probability that a whole packet is lost (all its values inf).
    #[arg(long, default_value_t = 0.005)]
    packet_dropout: f64,
    /// Scale of the body's radar cross-sections (torso 0.5 m², thigh 0.15 m², ... × build²).
    #[arg(long, default_value_t = 1.0)]
    body_rcs_scale: f64,
    /// Random seed: subjects, placements, motion and noise all follow from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write an MM-Fi-layout tree (E0x/Syy/Azz/wifi-csi/frameNNN.mat, rgb/, ground_truth.npy)
    /// that `csipose import-mmfi` reads back; default path: OUT-mmfi-tree.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    mmfi_tree: Option<Option<PathBuf>>,
    /// Write a PNG of one sequence: CSI amplitude heatmap beside the skeleton at four frames.
    #[arg(long, value_name = "OUT.png")]
    preview: Option<PathBuf>,
    /// Action of the previewed sequence (its subject is the first of E01).
    #[arg(long, default_value_t = 12)]
    preview_action: u32,
    /// Worker threads (0 = all cores); the output does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// The dataset folder, the tree folder and the preview file must be apart: neither folder inside
/// the other (each is replaced as a whole), and the preview not inside either.
fn check_outputs(
    out: Option<&Path>,
    tree: Option<&Path>,
    preview: Option<&Path>,
) -> anyhow::Result<()> {
    use csipose_files::resolve;
    let dirs = [("--out", out), ("--mmfi-tree", tree)];
    if let (Some(o), Some(t)) = (out, tree) {
        let (ro, rt) = (resolve(o), resolve(t));
        if ro == rt {
            bail!(
                "--mmfi-tree and --out are both {}: the tree and the dataset need separate folders",
                o.display()
            );
        }
        if rt.starts_with(&ro) || ro.starts_with(&rt) {
            bail!(
                "--mmfi-tree {} and --out {}: one lies inside the other; they need separate folders",
                t.display(),
                o.display()
            );
        }
    }
    if let Some(p) = preview {
        let rp = resolve(p);
        for (flag, d) in dirs {
            if let Some(d) = d {
                if rp == resolve(d) || rp.starts_with(resolve(d)) {
                    bail!(
                        "--preview {} lies in {flag} {}, which is replaced as a whole: write it elsewhere",
                        p.display(),
                        d.display()
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.out.is_none() && args.preview.is_none() {
        bail!("nothing to do: give --out DIR and/or --preview OUT.png");
    }
    let threads = crate::validate::threads("--threads", args.threads);
    if threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting up worker threads")?;
    }
    let base = match args.preset.as_deref() {
        Some(p) => Preset::parse(p).expect("clap checked").plan(),
        None => Plan {
            frames_per_seq: 297,
            ..Preset::MmfiFull.plan()
        },
    };
    let plan = Plan {
        envs: args.envs.unwrap_or(base.envs),
        subjects: args.subjects.unwrap_or(base.subjects),
        actions: args.actions.unwrap_or(base.actions),
        frames_per_seq: args.frames_per_seq.unwrap_or(base.frames_per_seq),
    };
    plan.subjects_by_env().map_err(anyhow::Error::msg)?;
    let tree = match (&args.mmfi_tree, &args.out) {
        (Some(Some(t)), _) => Some(t.clone()),
        (Some(None), Some(out)) => {
            let mut name = out
                .file_name()
                .context("--out has no directory name")?
                .to_os_string();
            name.push("-mmfi-tree");
            Some(out.with_file_name(name))
        }
        (Some(None), None) => bail!("--mmfi-tree without a path needs --out"),
        (None, _) => None,
    };
    let config = SimConfig {
        seed: args.seed,
        profile: Profile::parse(&args.profile).expect("clap checked"),
        snr_db: args.snr_db,
        position_jitter_m: args.position_jitter,
        heading_jitter_rad: args.heading_jitter,
        body_rcs_scale: args.body_rcs_scale,
        agc_jitter_db: args.agc_jitter_db,
        subcarrier_dropout: args.subcarrier_dropout,
        packet_dropout: args.packet_dropout,
        ..SimConfig::default()
    };
    // Every float option, with its flag and range, before any work.
    for (flag, v, lo, hi) in config.float_settings() {
        crate::validate::closed(flag, v, lo, hi)?;
    }
    check_outputs(
        args.out.as_deref(),
        tree.as_deref(),
        args.preview.as_deref(),
    )?;
    let preview = match &args.preview {
        Some(path) => {
            if !(1..=27).contains(&args.preview_action) {
                bail!("--preview-action {} is not in 1..=27", args.preview_action);
            }
            Some(Preview {
                path: path.clone(),
                action: args.preview_action,
            })
        }
        None => None,
    };
    let opts = SimulateOptions {
        config,
        plan,
        out: args.out.clone(),
        tree,
        preview,
        command_line: crate::validate::command_line(),
    };
    csipose_pipeline::simulate::run(&opts, &ProgressBar::new(0))?;
    Ok(())
}
