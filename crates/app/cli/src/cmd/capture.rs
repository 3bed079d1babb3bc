//! `csipose capture ...`: export, describe, picture and window real CSI captures
//! (Intel 5300 `.dat`, Nexmon `.pcap`, ESP32 CSV, Atheros `.dat`).
//!
//! Every command reads through [`for_each_frame`], which holds the rules common to all:
//! what was read but not decoded is counted by reason and printed; a capture that gives no
//! frame is an error; a fatal reader error (wrong file type, lost framing) stops the command
//! whatever `--skip-bad` says; and a capture whose frames have more than one width
//! (subcarriers per antenna) is refused by `export`, `inspect` and `to-dataset` alike
//! unless `--subcarriers N` keeps one width (the other frames are counted as left out).
//! Outputs never resolve to an input, and `to-dataset` replaces only a csipose dataset.

use anyhow::{bail, Context, Result};
use csipose_capture::any::{self, Frame, Packet, PacketGrouper};
use csipose_capture::{intel5300, nexmon, CaptureError, Complex, Format, Skips};
use csipose_dataset::packed::{FrameMeta, JOINTS};
use csipose_dataset::windows::{capture_profile, Skip, Windower};
use csipose_dataset::{DatasetInfo, HardwareProfile, KeypointLayout, PackedWriter};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(clap::Subcommand)]
pub enum Sub {
    /// Write the decoded CSI as float64 .npy (last axis [re, im]) in the reference layout.
    Export(ExportArgs),
    /// Print the frame count and per-frame metadata.
    Info(InfoArgs),
    /// Draw an amplitude heatmap (subcarrier x time, per antenna) and print a summary.
    Inspect(InspectArgs),
    /// Cut captures into [A, S, P] amplitude windows and write a packed dataset.
    ToDataset(ToDatasetArgs),
}

/// How to read a capture.
#[derive(clap::Args, Clone)]
pub struct ReadArgs {
    /// auto | intel5300 | nexmon | esp32 | atheros
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Nexmon chip: 4339 | 43455c0 | 4358 | 4366c0 (default: from the packet header).
    #[arg(long)]
    pub chip: Option<String>,
    /// Nexmon bandwidth in MHz: 20 | 40 | 80 (default: from the packet length).
    #[arg(long)]
    pub bw: Option<u32>,
    /// Keep only frames of this many subcarriers per antenna (tones for Atheros) and count
    /// the others as left out. Without it, a capture of mixed widths is refused.
    #[arg(long)]
    pub subcarriers: Option<usize>,
    /// Skip undecodable records (with a warning, counted) instead of stopping at the first.
    /// File-level errors (not this format, lost record framing) are never skipped.
    #[arg(long)]
    pub skip_bad: bool,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Capture file.
    pub file: PathBuf,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Intel 5300 only: write get_scaled_csi output instead of the raw CSI.
    #[arg(long)]
    pub scaled: bool,
    /// Output .npy (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Capture file.
    pub file: PathBuf,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Print JSON: {file, format, frames, per_frame: [...], not_decoded: {reason: count},
    /// skipped_bad_records, truncated}.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Capture file.
    pub file: PathBuf,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Output PNG (written atomically).
    #[arg(long)]
    pub png: PathBuf,
}

#[derive(clap::Args)]
pub struct ToDatasetArgs {
    /// Capture files (optional when --manifest lists them).
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
    /// CSV `file,label` (header optional); paths relative to the manifest's folder.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// `native` (the capture's own antennas x subcarriers) or `mmfi` (3 x 114).
    #[arg(long, default_value = "native")]
    pub profile: String,
    /// Packets per window (P).
    #[arg(long, default_value_t = 10)]
    pub packets: usize,
    /// Packets between window starts (default: P, disjoint windows).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Output dataset directory (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Sub::Export(a) => export(a),
        Sub::Info(a) => info(a),
        Sub::Inspect(a) => inspect(a),
        Sub::ToDataset(a) => to_dataset(a),
    }
}

fn open(path: &Path, read: &ReadArgs) -> Result<any::Reader> {
    let format = match read.format.as_str() {
        "auto" => None,
        f => Some(Format::parse(f).with_context(|| {
            format!("unknown --format {f:?} (auto, intel5300, nexmon, esp32, atheros)")
        })?),
    };
    let chip = match &read.chip {
        None => None,
        Some(c) => Some(
            nexmon::Chip::parse(c)
                .with_context(|| format!("unknown --chip {c:?} (4339, 43455c0, 4358, 4366c0)"))?,
        ),
    };
    if let Some(bw) = read.bw {
        if ![20, 40, 80].contains(&bw) {
            bail!("--bw {bw}: nexmon bandwidths are 20, 40 and 80 MHz");
        }
    }
    if read.subcarriers == Some(0) {
        bail!("--subcarriers must be at least 1");
    }
    let opts = nexmon::Options {
        chip,
        bandwidth_mhz: read.bw,
    };
    any::open(path, format, opts).map_err(anyhow::Error::msg)
}

fn progress(path: &Path) -> ProgressBar {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(path.display().to_string());
    bar
}

/// What reading one capture gave besides the frames.
struct ReadReport {
    format: Format,
    /// Frames passed on.
    frames: usize,
    /// Everything read but not passed on, by reason: the reader's counts, records skipped
    /// with `--skip-bad`, frames of another width than `--subcarriers`.
    skips: Skips,
    truncated: Option<String>,
    skipped_bad: usize,
    /// Frames per width (subcarriers per antenna).
    widths: BTreeMap<usize, usize>,
}

/// Whether a capture of several frame widths may be read (only `info` describes one).
#[derive(Clone, Copy, PartialEq)]
enum Widths {
    One,
    Mixed,
}

/// Streams the frames of `path` into `each`. A truncated last record is a warning; a fatal
/// reader error always stops; another error stops with the file name and byte offset unless
/// `--skip-bad`. Every record not passed on is counted in the report. Fails when no frame
/// is left, and (with `Widths::One`) when the frames have more than one width.
fn for_each_frame(
    path: &Path,
    read: &ReadArgs,
    bar: Option<&ProgressBar>,
    widths_rule: Widths,
    mut each: impl FnMut(Frame) -> Result<()>,
) -> Result<ReadReport> {
    let mut reader = open(path, read)?;
    let mut report = ReadReport {
        format: reader.format,
        frames: 0,
        skips: Skips::new(),
        truncated: None,
        skipped_bad: 0,
        widths: BTreeMap::new(),
    };
    let mut first_other_width: Option<(u64, usize)> = None;
    for item in reader.by_ref() {
        match item {
            Ok(f) => {
                if let Some(b) = bar {
                    b.set_position(f.offset());
                }
                let w = f.subcarriers();
                if let Some(want) = read.subcarriers {
                    if w != want {
                        report.skips.add(&format!(
                            "frames of {w} subcarriers (--subcarriers {want} asked for)"
                        ));
                        continue;
                    }
                }
                *report.widths.entry(w).or_default() += 1;
                if report.widths.len() > 1 && widths_rule == Widths::One {
                    // Keep counting to name every width, but pass nothing more on.
                    first_other_width.get_or_insert((f.offset(), w));
                    continue;
                }
                report.frames += 1;
                each(f)?;
            }
            Err(e) if e.is_truncation() => {
                eprintln!(
                    "warning: {}: {e}; keeping the frames before it",
                    path.display()
                );
                report.truncated = Some(e.to_string());
            }
            Err(e) if e.is_fatal() => {
                bail!(
                    "{}: {e} ({} frames before it; a file-level error, which --skip-bad does not skip)",
                    path.display(),
                    report.frames
                )
            }
            Err(e) if read.skip_bad => {
                eprintln!("warning: {}: {e}; record skipped", path.display());
                report.skipped_bad += 1;
            }
            Err(e) => return Err(bad(path, e)),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.skips.merge(reader.skips());
    if let Some((offset, w)) = first_other_width {
        let list = report
            .widths
            .iter()
            .map(|(w, n)| format!("{n} frames of {w} subcarriers"))
            .collect::<Vec<_>>()
            .join(", ");
        let bw_hint = if report.format == Format::Nexmon {
            " or --bw 20|40|80"
        } else {
            ""
        };
        bail!(
            "{}: frames of mixed widths (subcarriers per antenna): {list}; the first of {w} is at byte {offset}. \
             Frames of different widths are not resampled into one array: keep one width with --subcarriers N{bw_hint} (the other frames are counted and left out)",
            path.display()
        );
    }
    if report.frames == 0 {
        bail!(
            "{}: no CSI frames decoded ({} capture); not decoded: {}",
            path.display(),
            report.format.name(),
            report.skips
        );
    }
    Ok(report)
}

/// Prints the counts of what was left out, one reason a line, under `indent`, headed
/// `what: TOTAL`.
fn print_skips(skips: &Skips, what: &str, indent: &str) {
    if skips.is_empty() {
        return;
    }
    println!("{indent}{what}: {}", skips.total());
    for (why, n) in skips.iter() {
        println!("{indent}  {n} {why}");
    }
}

fn bad(path: &Path, e: CaptureError) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: {e} (use --skip-bad to skip such records)",
        path.display()
    )
}

/// Refuses an output file that resolves to an input, that is a folder, or whose folder does
/// not exist; checked before any work starts.
fn check_output(out: &Path, inputs: &[&Path]) -> Result<()> {
    csipose_files::check_output_file(out, inputs)?;
    if out.is_dir() {
        bail!("{}: is a folder; give an output file name", out.display());
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "{}: the output folder {} does not exist; create it first",
            out.display(),
            parent.display()
        );
    }
    Ok(())
}

/// Row shape and values of one frame in the reference `.csi.npy` layout.
fn export_row(f: &Frame, scaled: bool, tones: usize) -> Result<Vec<f64>> {
    let push = |out: &mut Vec<f64>, c: Complex| {
        out.push(c.re);
        out.push(c.im)
    };
    let mut out = Vec::new();
    match f {
        Frame::Intel5300(f) => {
            let csi = if scaled {
                f.scaled_csi()
            } else {
                f.csi.clone()
            };
            out.resize(3 * 3 * 30 * 2, 0.0);
            for (tx, t) in csi.iter().enumerate() {
                for (rx, r) in t.iter().enumerate() {
                    for (s, c) in r.iter().enumerate() {
                        let at = ((tx * 3 + rx) * 30 + s) * 2;
                        out[at] = c.re;
                        out[at + 1] = c.im;
                    }
                }
            }
        }
        Frame::Atheros(f) => {
            out.resize(tones * 3 * 3 * 2, 0.0);
            if !f.csi.is_empty() {
                for t in 0..f.num_tones as usize {
                    for rx in 0..f.nr as usize {
                        for tx in 0..f.nc as usize {
                            let c = f.at(t, rx, tx);
                            let at = ((t * 3 + rx) * 3 + tx) * 2;
                            out[at] = c.re;
                            out[at + 1] = c.im;
                        }
                    }
                }
            }
        }
        Frame::Esp32(f) => f.csi.iter().for_each(|&c| push(&mut out, c)),
        Frame::Nexmon(f) => f.csi.iter().for_each(|&c| push(&mut out, c)),
    }
    Ok(out)
}

fn row_shape(f: &Frame) -> Vec<usize> {
    match f {
        Frame::Intel5300(_) => vec![3, 3, intel5300::SUBCARRIERS, 2],
        Frame::Atheros(f) => vec![(f.num_tones as usize).max(56), 3, 3, 2],
        Frame::Esp32(f) => vec![f.csi.len(), 2],
        Frame::Nexmon(f) => vec![f.csi.len(), 2],
    }
}

fn export(a: ExportArgs) -> Result<()> {
    check_output(&a.out, &[&a.file])?;
    let bar = progress(&a.file);
    let mut writer: Option<(csipose_npy::NpyStreamWriter<f64>, Vec<usize>)> = None;
    let mut index = 0usize;
    let report = for_each_frame(&a.file, &a.read, Some(&bar), Widths::One, |f| {
        if a.scaled && !matches!(f, Frame::Intel5300(_)) {
            bail!("--scaled applies to Intel 5300 captures only");
        }
        if writer.is_none() {
            let shape = row_shape(&f);
            let w = csipose_npy::NpyStreamWriter::<f64>::create(&a.out, &shape)?;
            writer = Some((w, shape));
        }
        let (w, shape) = writer.as_mut().expect("created above");
        let tones = shape[0];
        if let Frame::Atheros(af) = &f {
            if af.num_tones as usize > tones {
                bail!(
                    "{}: frame {index} at byte {} has {} tones, earlier frames {tones}",
                    a.file.display(),
                    af.offset,
                    af.num_tones
                );
            }
        }
        let row = export_row(&f, a.scaled, tones)?;
        if row.len() != shape.iter().product::<usize>() {
            bail!(
                "{}: frame {index} at byte {} has {} subcarriers, earlier frames {} (for Nexmon, pick one bandwidth with --bw)",
                a.file.display(),
                f.offset(),
                row.len() / 2,
                shape[0]
            );
        }
        w.push(&row)?;
        index += 1;
        Ok(())
    })?;
    let Some((w, shape)) = writer else {
        bail!("{}: no CSI frames to export", a.file.display());
    };
    let n = w.finish()?;
    println!(
        "{}: {} {n} frames -> {} shape [{n}, {}]{}",
        a.file.display(),
        report.format.name(),
        a.out.display(),
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if report.truncated.is_some() {
            " (truncated last record dropped)"
        } else {
            ""
        }
    );
    print_skips(&report.skips, "not decoded", "");
    Ok(())
}

fn info(a: InfoArgs) -> Result<()> {
    let mut per_frame = Vec::new();
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    let report = for_each_frame(&a.file, &a.read, None, Widths::Mixed, |f| {
        let (ant, sub, _) = f.rx_amplitudes();
        *shapes.entry(format!("{ant}x{sub}")).or_default() += 1;
        per_frame.push(f.metadata());
        Ok(())
    })?;
    if a.json {
        let v = json!({
            "file": a.file.file_name().map(|n| n.to_string_lossy().to_string()),
            "format": report.format.name(),
            "frames": per_frame.len(),
            "per_frame": per_frame,
            "not_decoded": report.skips.iter().collect::<BTreeMap<_, _>>(),
            "skipped_bad_records": report.skipped_bad,
            "truncated": report.truncated,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("file: {}", a.file.display());
        println!("format: {}", report.format.name());
        println!("frames: {}", per_frame.len());
        for (shape, n) in &shapes {
            println!("  {n} frames of {shape} (rx antennas x subcarriers)");
        }
        if report.widths.len() > 1 {
            println!("  mixed widths: export, inspect and to-dataset need --subcarriers N");
        }
        print_skips(&report.skips, "not decoded", "");
        if let Some(t) = &report.truncated {
            println!("truncated: {t}");
        }
        if let Some(first) = per_frame.first() {
            println!("first frame: {first}");
        }
    }
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    check_output(&a.png, &[&a.file])?;
    let bar = progress(&a.file);
    let mut packets: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    let report = for_each_frame(&a.file, &a.read, Some(&bar), Widths::One, |f| {
        packets.push(f.rx_amplitudes());
        Ok(())
    })?;
    let antennas = packets.iter().map(|p| p.0).max().unwrap_or(0);
    let subs = packets.iter().map(|p| p.1).max().unwrap_or(0);
    let panels: Vec<Vec<Vec<f64>>> = (0..antennas)
        .map(|ant| {
            packets
                .iter()
                .map(|(na, ns, v)| {
                    if ant < *na {
                        v[ant * ns..(ant + 1) * ns].to_vec()
                    } else {
                        vec![f64::NAN; *ns]
                    }
                })
                .collect()
        })
        .collect();
    let (png, layout) = csipose_capture::heatmap::render_png(&panels)
        .map_err(|m| anyhow::anyhow!("{}: {m}", a.file.display()))?;
    let mut out = csipose_npy::AtomicFile::create(&a.png)?;
    out.write_all(&png)
        .with_context(|| format!("writing {}", a.png.display()))?;
    out.commit()?;
    println!("file: {}", a.file.display());
    println!("format: {}", report.format.name());
    println!(
        "frames: {}  rx antennas: {antennas}  subcarriers: {subs}",
        packets.len()
    );
    for (ant, panel) in panels.iter().enumerate() {
        let vals: Vec<f64> = panel
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if vals.is_empty() {
            continue;
        }
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let (lo, hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(*v), h.max(*v))
            });
        println!("  antenna {ant}: |CSI| min {lo:.3} mean {mean:.3} max {hi:.3}");
    }
    print_skips(&report.skips, "not decoded", "");
    if let Some(t) = &report.truncated {
        println!("truncated: {t}");
    }
    println!(
        "heatmap: {} ({}x{} px, {} time columns, rows = subcarriers, one panel per antenna, shared colour scale)",
        a.png.display(),
        layout.width,
        layout.height,
        layout.columns
    );
    Ok(())
}

/// Reads a `file,label` manifest: returns (path, label text) in file order.
fn read_manifest(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((file, label)) = line.rsplit_once(',') else {
            bail!(
                "{}: line {}: expected `file,label`, got {line:?}",
                path.display(),
                i + 1
            );
        };
        let (file, label) = (file.trim(), label.trim());
        if rows.is_empty()
            && file.eq_ignore_ascii_case("file")
            && label.eq_ignore_ascii_case("label")
        {
            continue;
        }
        rows.push((base.join(file), label.to_string()));
    }
    Ok(rows)
}

/// Maps label texts to the integer stored in meta's action column: integer labels as they
/// are; other labels 1, 2, ... in order of first appearance.
fn label_ids(labels: &[String]) -> (Vec<i32>, BTreeMap<String, i32>) {
    let all_int = labels.iter().all(|l| l.parse::<i32>().is_ok());
    let mut map = BTreeMap::new();
    let mut next = 1;
    let ids = labels
        .iter()
        .map(|l| {
            if all_int {
                l.parse().expect("checked")
            } else {
                *map.entry(l.clone()).or_insert_with(|| {
                    next += 1;
                    next - 1
                })
            }
        })
        .collect();
    (ids, map)
}

/// The profile of a capture whose first frame is `f` and first packet `ant` x `sub`, named
/// after its format.
fn native_profile(f: &Frame, ant: usize, sub: usize, packets: usize) -> HardwareProfile {
    match f {
        Frame::Intel5300(_) => capture_profile("iwl5300", ant, sub, packets, "unknown", 20.0),
        Frame::Atheros(a) => {
            let band = if a.channel < 3000 { "2.4GHz" } else { "5GHz" };
            let bw = if a.num_tones > 56 { 40.0 } else { 20.0 };
            capture_profile("atheros", ant, sub, packets, band, bw)
        }
        Frame::Esp32(_) => capture_profile("esp32", ant, sub, packets, "2.4GHz", 20.0),
        Frame::Nexmon(n) => capture_profile(
            "nexmon",
            ant,
            sub,
            packets,
            "unknown",
            n.bandwidth_mhz as f64,
        ),
    }
}

/// The dataset being written: its profile (fixed by `--profile mmfi`, or by the first packet
/// for `native`) and its writer (created with the first window, so a run that yields no
/// window writes nothing).
struct Output {
    profile: Option<HardwareProfile>,
    /// The file and first frame the native profile came from.
    native_from: Option<(PathBuf, Frame)>,
    writer: Option<(PackedWriter, DatasetInfo)>,
}

fn to_dataset(a: ToDatasetArgs) -> Result<()> {
    if a.packets == 0 {
        bail!("--packets must be at least 1");
    }
    if a.stride == Some(0) {
        bail!("--stride must be at least 1");
    }
    if !["native", "mmfi"].contains(&a.profile.as_str()) {
        bail!("unknown --profile {:?} (native, mmfi)", a.profile);
    }
    // Inputs and labels.
    let (files, labels): (Vec<PathBuf>, Option<Vec<String>>) = match &a.manifest {
        None => {
            if a.files.is_empty() {
                bail!("give capture files, or --manifest with a `file,label` CSV");
            }
            (a.files.clone(), None)
        }
        Some(m) => {
            let rows = read_manifest(m)?;
            if a.files.is_empty() {
                let (f, l) = rows.into_iter().unzip();
                (f, Some(l))
            } else {
                let mut l = Vec::new();
                for f in &a.files {
                    let name = f.file_name();
                    let hit = rows
                        .iter()
                        .find(|(p, _)| p == f || (name.is_some() && p.file_name() == name))
                        .with_context(|| {
                            format!("{} is not listed in {}", f.display(), m.display())
                        })?;
                    l.push(hit.1.clone());
                }
                (a.files.clone(), Some(l))
            }
        }
    };
    if files.is_empty() {
        bail!("no capture files to read");
    }
    // The output: never one holding an input, only ever replacing a csipose dataset, and
    // locked against a second writer; all checked before any reading.
    let mut inputs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    if let Some(m) = &a.manifest {
        inputs.push(m);
    }
    csipose_files::check_output_dir(&a.out, &inputs)?;
    csipose_files::check_replaceable(&a.out, csipose_files::OutputKind::Dataset)?;
    let parent = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "{}: the output's parent folder {} does not exist; create it first",
            a.out.display(),
            parent.display()
        );
    }
    // The dataset writer locks `--out` (PathLock) from its creation to its rename.

    let (label_of_file, label_map) = match &labels {
        Some(l) => label_ids(l),
        None => (vec![0; files.len()], BTreeMap::new()),
    };
    let stride = a.stride.unwrap_or(a.packets);
    let mut out = Output {
        profile: (a.profile == "mmfi").then(|| HardwareProfile {
            packets: a.packets,
            ..HardwareProfile::mmfi()
        }),
        native_from: None,
        writer: None,
    };
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("windowing [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let y_zero = vec![0f32; JOINTS * 2];
    let mut per_file = Vec::new();
    let mut lines = Vec::new();
    let mut done_bytes = 0u64;
    let mut all_skips = Skips::new();
    let mut repaired = 0usize;
    let (mut all_packets, mut most_packets) = (0usize, 0usize);
    for (fi, path) in files.iter().enumerate() {
        let mut windower: Option<Windower> = None;
        let mut windows = 0i32;
        let (mut packets, mut accepted, mut refused) = (0usize, 0usize, 0usize);
        // What this file's packets and windows lost (the readers' counts come separately).
        let mut window_skips = Skips::new();
        let label = label_of_file[fi];
        let base = done_bytes;
        let mut grouper = PacketGrouper::new();
        let mut first: Option<Frame> = None;
        let mut push_packet = |p: Packet, first: &Option<Frame>, windows: &mut i32| -> Result<()> {
            packets += 1;
            if out.profile.is_none() {
                let f = first.as_ref().expect("a packet comes from a frame");
                out.profile = Some(native_profile(f, p.antennas, p.subcarriers, a.packets));
                out.native_from = Some((path.clone(), f.clone()));
            }
            let profile = out.profile.as_ref().expect("set above");
            if a.profile == "native" && p.subcarriers != profile.subcarriers {
                let from = out
                    .native_from
                    .as_ref()
                    .map(|(p, _)| p.display().to_string());
                bail!(
                    "{}: packets of {} subcarriers, but the native profile (from {}) has {}; \
                     captures of different widths are not resampled into one native dataset: use --profile mmfi (every capture interpolated to 114) or convert them separately",
                    path.display(),
                    p.subcarriers,
                    from.unwrap_or_default(),
                    profile.subcarriers
                );
            }
            let w = windower.get_or_insert_with(|| Windower::new(profile.clone(), stride));
            match w.push(p.antennas, p.subcarriers, &p.amplitudes) {
                Ok(Some(win)) => {
                    accepted += 1;
                    *windows += 1;
                    if !win.report.repairs.is_empty() || win.report.filled > 0 {
                        repaired += 1;
                    }
                    if out.writer.is_none() {
                        let info =
                            DatasetInfo::new(profile.clone(), KeypointLayout::Coco17_2d, "capture");
                        out.writer = Some((PackedWriter::create(&a.out, info.clone())?, info));
                    }
                    let (writer, _) = out.writer.as_mut().expect("created above");
                    let meta = FrameMeta {
                        environment: 0,
                        subject: fi as i32 + 1,
                        action: label,
                        frame: *windows,
                    };
                    writer.push(&win.x, &y_zero, &[meta])?;
                }
                Ok(None) => accepted += 1,
                Err(skip @ Skip::Refused(_)) => {
                    accepted += 1;
                    refused += 1;
                    window_skips.add(&format!("windows: {skip}"))
                }
                Err(skip) => window_skips.add(&format!("packets: {skip}")),
            }
            Ok(())
        };
        let report = for_each_frame(path, &a.read, None, Widths::One, |f| {
            bar.set_position(base + f.offset());
            if first.is_none() {
                first = Some(f.clone());
            }
            for p in grouper.push(f) {
                push_packet(p, &first, &mut windows)?;
            }
            Ok(())
        })?;
        if let Some(p) = grouper.flush() {
            push_packet(p, &first, &mut windows)?;
        }
        done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        // Accepted packets in no window: fewer than P at the end of the file, and the gaps
        // between windows when the stride is longer than a window.
        let starts = windows as usize + refused;
        let covered = match starts {
            0 => 0,
            n if stride >= a.packets => n * a.packets,
            n => (n - 1) * stride + a.packets,
        };
        let mut skips = report.skips.clone();
        skips.merge(grouper.skips());
        skips.merge(&window_skips);
        skips.add_n(
            "packets in no window (after the last full window, or between windows when --stride > --packets)",
            accepted.saturating_sub(covered) as u64,
        );
        all_skips.merge(&skips);
        all_packets += packets;
        most_packets = most_packets.max(accepted);
        lines.push((
            format!(
                "{}: {} {} frames -> {packets} packets -> {windows} windows",
                path.display(),
                report.format.name(),
                report.frames
            ),
            skips.clone(),
        ));
        per_file.push(json!({
            "file": path.display().to_string(), "format": report.format.name(), "index": fi + 1,
            "label": labels.as_ref().map(|l| l[fi].clone()), "action": label,
            "frames": report.frames, "packets": packets, "windows": windows,
            "truncated": report.truncated,
            "left_out": skips.iter().collect::<BTreeMap<_, _>>(),
        }));
    }
    bar.finish_and_clear();
    let Some((mut writer, mut info)) = out.writer else {
        bail!(
            "no windows: the captures gave {all_packets} packets in all, at most {most_packets} usable in one file, \
             and a window takes --packets {} consecutive packets of one file; nothing was written to {}\n  left out: {}",
            a.packets,
            a.out.display(),
            all_skips
        );
    };
    let profile = info.hardware.clone();
    info.provenance = json!({
        "command": crate::validate::command_line(),
        "packets_per_window": a.packets,
        "stride": stride,
        "meta": "environment = 0, subject = input file index (1-based, order of `files`), action = label (0 without a manifest), frame = window index within its file (1-based)",
        "labels": label_map,
        "y": "zeros: captures carry no pose; the label is in meta's action column",
        "files": per_file,
        "left_out": all_skips.iter().collect::<BTreeMap<_, _>>(),
        "windows_with_filled_or_repaired_values": repaired,
    });
    writer.set_provenance(info.provenance.clone());
    let n = writer.finish()?;
    println!(
        "{} windows of [{}, {}, {}] from {} files -> {}",
        n,
        profile.antennas,
        profile.subcarriers,
        profile.packets,
        files.len(),
        a.out.display()
    );
    for (line, skips) in &lines {
        println!("  {line}");
        print_skips(skips, "left out", "    ");
    }
    Ok(())
}
