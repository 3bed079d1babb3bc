//! `csipose capture ...`: export, describe, picture and window real CSI captures
//! (Intel 5300 `.dat`, Nexmon `.pcap`, ESP32 CSV, Atheros `.dat`).

use anyhow::{bail, Context, Result};
use csipose_capture::any::{self, Frame, Packet, PacketGrouper};
use csipose_capture::{intel5300, nexmon, CaptureError, Complex, Format};
use csipose_dataset::packed::{FrameMeta, JOINTS};
use csipose_dataset::windows::{capture_profile, Windower};
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
    /// Skip undecodable records (with a warning) instead of stopping at the first.
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
    /// Print JSON: {file, format, frames, per_frame: [...], skipped_bad_records, truncated}.
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

/// What went wrong while reading, beyond the frames.
#[derive(Default)]
struct Trouble {
    truncated: Option<String>,
    skipped_bad: usize,
}

/// Streams the frames of `path` into `each`. A truncated last record is a warning; another
/// error stops with the file name and byte offset unless `--skip-bad`.
fn for_each_frame(
    path: &Path,
    read: &ReadArgs,
    bar: Option<&ProgressBar>,
    mut each: impl FnMut(Frame) -> Result<()>,
) -> Result<(Format, Trouble)> {
    let reader = open(path, read)?;
    let format = reader.format;
    let mut trouble = Trouble::default();
    for item in reader {
        match item {
            Ok(f) => {
                if let Some(b) = bar {
                    b.set_position(f.offset());
                }
                each(f)?;
            }
            Err(e) if e.is_truncation() => {
                eprintln!(
                    "warning: {}: {e}; keeping the frames before it",
                    path.display()
                );
                trouble.truncated = Some(e.to_string());
            }
            Err(e) if read.skip_bad => {
                eprintln!("warning: {}: {e}; record skipped", path.display());
                trouble.skipped_bad += 1;
            }
            Err(e) => return Err(bad(path, e)),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok((format, trouble))
}

fn bad(path: &Path, e: CaptureError) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: {e} (use --skip-bad to skip such records)",
        path.display()
    )
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
    let bar = progress(&a.file);
    let mut writer: Option<(csipose_npy::NpyStreamWriter<f64>, Vec<usize>)> = None;
    let mut index = 0usize;
    let (format, trouble) = for_each_frame(&a.file, &a.read, Some(&bar), |f| {
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
        format.name(),
        a.out.display(),
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if trouble.truncated.is_some() {
            " (truncated last record dropped)"
        } else {
            ""
        }
    );
    Ok(())
}

fn info(a: InfoArgs) -> Result<()> {
    let mut per_frame = Vec::new();
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    let (format, trouble) = for_each_frame(&a.file, &a.read, None, |f| {
        let (ant, sub, _) = f.rx_amplitudes();
        *shapes.entry(format!("{ant}x{sub}")).or_default() += 1;
        per_frame.push(f.metadata());
        Ok(())
    })?;
    if a.json {
        let v = json!({
            "file": a.file.file_name().map(|n| n.to_string_lossy().to_string()),
            "format": format.name(),
            "frames": per_frame.len(),
            "per_frame": per_frame,
            "skipped_bad_records": trouble.skipped_bad,
            "truncated": trouble.truncated,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("file: {}", a.file.display());
        println!("format: {}", format.name());
        println!("frames: {}", per_frame.len());
        for (shape, n) in &shapes {
            println!("  {n} frames of {shape} (rx antennas x subcarriers)");
        }
        if let Some(t) = &trouble.truncated {
            println!("truncated: {t}");
        }
        if let Some(first) = per_frame.first() {
            println!("first frame: {first}");
        }
    }
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let bar = progress(&a.file);
    let mut packets: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    let (format, trouble) = for_each_frame(&a.file, &a.read, Some(&bar), |f| {
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
    println!("format: {}", format.name());
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
    if let Some(t) = &trouble.truncated {
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

/// The profile of a capture's first packet (`ant` x `sub`), named after its format.
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

fn to_dataset(a: ToDatasetArgs) -> Result<()> {
    if a.packets == 0 {
        bail!("--packets must be at least 1");
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
    let (label_of_file, label_map) = match &labels {
        Some(l) => {
            let (ids, map) = label_ids(l);
            (ids, map)
        }
        None => (vec![0; files.len()], BTreeMap::new()),
    };
    let stride = a.stride.unwrap_or(a.packets);
    // The profile: fixed, or from the first frame of the first file.
    let profile = match a.profile.as_str() {
        "mmfi" => HardwareProfile {
            packets: a.packets,
            ..HardwareProfile::mmfi()
        },
        "native" => {
            // The first packet: for Nexmon, all cores of the first sequence number.
            let mut grouper = PacketGrouper::new();
            let (mut first_frame, mut first_packet) = (None, None);
            for f in open(&files[0], &a.read)?.filter_map(|item| item.ok()) {
                let done = grouper.push(f.clone());
                first_frame.get_or_insert(f);
                if let Some(p) = done.into_iter().next() {
                    first_packet = Some(p);
                    break;
                }
            }
            let f =
                first_frame.with_context(|| format!("{}: no CSI frames", files[0].display()))?;
            let p = match first_packet {
                Some(p) => p,
                None => grouper.flush().context("no packet")?,
            };
            native_profile(&f, p.antennas, p.subcarriers, a.packets)
        }
        p => bail!("unknown --profile {p:?} (native, mmfi)"),
    };
    let mut info = DatasetInfo::new(profile.clone(), KeypointLayout::Coco17_2d, "capture");
    let mut writer = PackedWriter::create(&a.out, info.clone())?;
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
    let mut done_bytes = 0u64;
    let mut skip_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut repaired = 0usize;
    for (fi, path) in files.iter().enumerate() {
        let mut windower = Windower::new(profile.clone(), stride);
        let mut windows = 0i32;
        let mut packets = 0usize;
        let label = label_of_file[fi];
        let base = done_bytes;
        let mut grouper = PacketGrouper::new();
        let mut push_packet = |p: Packet, windows: &mut i32| -> Result<()> {
            packets += 1;
            match windower.push(p.antennas, p.subcarriers, &p.amplitudes) {
                Ok(Some(w)) => {
                    *windows += 1;
                    if !w.report.repairs.is_empty() || w.report.filled > 0 {
                        repaired += 1;
                    }
                    let meta = FrameMeta {
                        environment: 0,
                        subject: fi as i32 + 1,
                        action: label,
                        frame: *windows,
                    };
                    writer.push(&w.x, &y_zero, &[meta])?;
                }
                Ok(None) => {}
                Err(skip) => *skip_reasons.entry(skip.to_string()).or_default() += 1,
            }
            Ok(())
        };
        let (format, trouble) = for_each_frame(path, &a.read, None, |f| {
            bar.set_position(base + f.offset());
            for p in grouper.push(f) {
                push_packet(p, &mut windows)?;
            }
            Ok(())
        })?;
        if let Some(p) = grouper.flush() {
            push_packet(p, &mut windows)?;
        }
        done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        per_file.push(json!({
            "file": path.display().to_string(), "format": format.name(), "index": fi + 1,
            "label": labels.as_ref().map(|l| l[fi].clone()), "action": label,
            "packets": packets, "windows": windows, "truncated": trouble.truncated,
        }));
    }
    bar.finish_and_clear();
    info.provenance = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "packets_per_window": a.packets,
        "stride": stride,
        "meta": "environment = 0, subject = input file index (1-based, order of `files`), action = label (0 without a manifest), frame = window index within its file (1-based)",
        "labels": label_map,
        "y": "zeros: captures carry no pose; the label is in meta's action column",
        "files": per_file,
        "skipped": skip_reasons,
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
    for (why, count) in &skip_reasons {
        println!("  skipped {count}: {why}");
    }
    Ok(())
}
