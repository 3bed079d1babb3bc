//! Raw inputs of the activity pipeline: every kind of manifest source read into packets of
//! amplitudes (and complex CSI where the source has it): captures through `csipose-capture`'s
//! readers ([`csipose_capture::any::Frame::rx_csi`]), amplitude `.npy` files, packed-dataset
//! sequences, ESP32-HAR window files, and a trained pose model's encoder vectors per frame.
//! Anything left out (packets of another shape, a truncated last record) is counted in a
//! warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use csipose_dataset::PackedDataset;
use csipose_temporal::features::{csi_frame_features, frame_features, FeatureKind};

use crate::manifest::{Row, Source};

/// One sequence's raw input: amplitudes `[packets, antennas x subcarriers]`, and the complex CSI
/// `[packets, antennas, subcarriers, 2]` where the source has it (captures, not amplitude `.npy`).
pub struct RawSequence {
    pub amplitudes: Vec<f32>,
    pub csi: Option<Vec<f32>>,
    pub antennas: usize,
    pub subcarriers: usize,
}

impl RawSequence {
    pub fn channels(&self) -> usize {
        self.antennas * self.subcarriers
    }

    /// Per-frame features of the given kind (`stride` packets per frame); `name` is for messages.
    pub fn features(
        &self,
        kind: FeatureKind,
        stride: usize,
        name: &str,
    ) -> anyhow::Result<Vec<f32>> {
        match kind {
            FeatureKind::Amplitude => Ok(frame_features(&self.amplitudes, self.channels(), stride)),
            FeatureKind::AmplitudePhase => {
                let Some(csi) = &self.csi else {
                    bail!(
                        "{name}: amplitude-phase features need complex CSI; this input has amplitudes only (use --features amplitude)"
                    );
                };
                if self.antennas < 2 {
                    bail!(
                        "{name}: amplitude-phase features need at least 2 receive antennas, it has {} (use --features amplitude)",
                        self.antennas
                    );
                }
                Ok(csi_frame_features(
                    csi,
                    self.antennas,
                    self.subcarriers,
                    stride,
                ))
            }
            FeatureKind::PoseEncoder => {
                bail!("{name}: pose-encoder features come from a packed dataset and a pose model")
            }
        }
    }
}

/// A capture file (format detected) or an amplitude `.npy`.
pub fn read_sequence(path: &Path, warnings: &mut Vec<String>) -> anyhow::Result<RawSequence> {
    if path.extension().is_some_and(|e| e == "npy") {
        let a = csipose_npy::read::<f32>(path)
            .with_context(|| format!("reading {}", path.display()))?;
        if a.shape.len() != 2 || a.shape[1] == 0 {
            bail!(
                "{}: expected a 2-D [packets, channels] array, got shape {:?}",
                path.display(),
                a.shape
            );
        }
        return Ok(RawSequence {
            subcarriers: a.shape[1],
            amplitudes: a.data,
            csi: None,
            antennas: 1,
        });
    }
    read_capture(path, warnings)
}

/// Complex CSI and amplitudes of a capture file (format detected) via the capture readers: the
/// first transmit stream's receive antennas x subcarriers per packet. Packets whose
/// antenna/subcarrier count differs from the first packet's are skipped; a truncated last record
/// ends the capture.
pub fn read_capture(path: &Path, warnings: &mut Vec<String>) -> anyhow::Result<RawSequence> {
    let reader =
        csipose_capture::any::open(path, None, Default::default()).map_err(anyhow::Error::msg)?;
    let mut csi = Vec::new();
    let mut amplitudes = Vec::new();
    let mut shape = (0usize, 0usize);
    let mut skipped = 0usize;
    for frame in reader {
        let frame = match frame {
            Ok(f) => f,
            Err(e) if e.is_truncation() && shape.0 * shape.1 > 0 => {
                warnings.push(format!(
                    "{}: {e}; using the {} complete packets",
                    path.display(),
                    amplitudes.len() / (shape.0 * shape.1)
                ));
                break;
            }
            Err(e) => bail!("{}: {e}", path.display()),
        };
        let (antennas, subcarriers, values) = frame.rx_csi();
        if shape.0 * shape.1 == 0 {
            shape = (antennas, subcarriers);
        }
        if (antennas, subcarriers) != shape || antennas * subcarriers == 0 {
            skipped += 1;
            continue;
        }
        for z in values {
            csi.extend([z.re as f32, z.im as f32]);
            amplitudes.push(z.re.hypot(z.im) as f32);
        }
    }
    if shape.0 * shape.1 == 0 || amplitudes.is_empty() {
        bail!("{}: no CSI packets", path.display());
    }
    if skipped > 0 {
        warnings.push(format!(
            "{}: skipped {skipped} packets with a different antenna count",
            path.display()
        ));
    }
    Ok(RawSequence {
        amplitudes,
        csi: Some(csi),
        antennas: shape.0,
        subcarriers: shape.1,
    })
}

/// (environment, subject, action) -> frame indices in frame order.
pub type SequenceIndex = BTreeMap<(i32, i32, i32), Vec<usize>>;

/// Packed datasets named by a manifest, opened once, with each one's sequences.
pub struct PackedSets {
    pub sets: Vec<(PathBuf, PackedDataset, SequenceIndex)>,
}

impl PackedSets {
    pub fn open(rows: &[Row]) -> anyhow::Result<Self> {
        let mut sets: Vec<(PathBuf, PackedDataset, SequenceIndex)> = Vec::new();
        for row in rows {
            let Source::Packed { dir, .. } = &row.source else {
                continue;
            };
            if sets.iter().any(|(d, _, _)| d == dir) {
                continue;
            }
            let ds = PackedDataset::open(dir)
                .with_context(|| format!("opening packed dataset {}", dir.display()))?;
            let mut index: BTreeMap<(i32, i32, i32), Vec<(i32, usize)>> = BTreeMap::new();
            for i in 0..ds.len() {
                let m = ds.meta(i);
                index
                    .entry((m.environment, m.subject, m.action))
                    .or_default()
                    .push((m.frame, i));
            }
            let index = index
                .into_iter()
                .map(|(k, mut v)| {
                    v.sort_unstable();
                    (k, v.into_iter().map(|(_, i)| i).collect())
                })
                .collect();
            sets.push((dir.clone(), ds, index));
        }
        Ok(PackedSets { sets })
    }

    /// The dataset and frame indices of a packed-dataset row.
    pub fn sequence(&self, source: &Source) -> anyhow::Result<(&PackedDataset, &[usize])> {
        let Source::Packed {
            dir,
            environment,
            subject,
            action,
        } = source
        else {
            bail!("{}: not a packed-dataset sequence", source.display());
        };
        let (_, ds, index) = self
            .sets
            .iter()
            .find(|(d, _, _)| d == dir)
            .expect("opened in PackedSets::open");
        let matches: Vec<_> = index
            .iter()
            .filter(|((e, s, a), _)| {
                s == subject && a == action && environment.is_none_or(|want| *e == want)
            })
            .collect();
        match matches.as_slice() {
            [] => bail!(
                "{}: the dataset has no frames of this sequence",
                source.display()
            ),
            [(_, frames)] => Ok((ds, frames.as_slice())),
            many => bail!(
                "{}: subject {subject} did action {action} in several environments ({}); name one as DIR#E01/S03/A12",
                source.display(),
                many.iter()
                    .map(|((e, _, _), _)| format!("E{e:02}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The amplitudes of a packed-dataset sequence as packets in time order: frame by frame, each
/// frame's `P` packets of `A x S` channels.
pub fn packed_raw(ds: &PackedDataset, frames: &[usize]) -> RawSequence {
    let h = &ds.info.hardware;
    let (a, s, p) = (h.antennas, h.subcarriers, h.packets);
    let mut amplitudes = Vec::with_capacity(frames.len() * a * s * p);
    for &i in frames {
        let x = ds.x(i);
        for packet in 0..p {
            amplitudes.extend((0..a * s).map(|c| x[c * p + packet]));
        }
    }
    RawSequence {
        amplitudes,
        csi: None,
        antennas: a,
        subcarriers: s,
    }
}

/// A trained pose model whose encoder gives per-frame features.
pub struct PoseEncoder {
    pub path: PathBuf,
    pub model: csipose_model::Model,
    pub params: Vec<f32>,
}

impl PoseEncoder {
    /// `path`: a run directory (its checkpoint.safetensors) or a checkpoint file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let file = if path.is_dir() {
            path.join("checkpoint.safetensors")
        } else {
            path.to_path_buf()
        };
        let (model, params) = csipose_train::checkpoint::load_model(&file)
            .with_context(|| format!("loading the pose model {}", file.display()))?;
        Ok(PoseEncoder {
            path: file,
            model,
            params,
        })
    }

    /// The pooled encoder vector `[frames, d]` of each frame of a packed-dataset sequence.
    pub fn features(
        &self,
        ds: &PackedDataset,
        frames: &[usize],
        name: &str,
    ) -> anyhow::Result<Vec<f32>> {
        let c = &self.model.cfg;
        let h = &ds.info.hardware;
        if (c.antennas, c.subcarriers, c.packets) != (h.antennas, h.subcarriers, h.packets) {
            bail!(
                "{name}: frames are {}x{}x{} but the pose model {} reads {}x{}x{}",
                h.antennas,
                h.subcarriers,
                h.packets,
                self.path.display(),
                c.antennas,
                c.subcarriers,
                c.packets
            );
        }
        let mut out = Vec::with_capacity(frames.len() * c.d);
        let mut ws = csipose_model::Workspace::default();
        for chunk in frames.chunks(256) {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| ds.x(i).iter().copied())
                .collect();
            self.model
                .forward(&self.params, &x, chunk.len(), None, &mut ws);
            out.extend_from_slice(self.model.pooled(&ws, chunk.len()));
        }
        Ok(out)
    }
}

/// The windows of an ESP32-HAR style file pair: `x` `[windows, channels, samples]` (any numeric
/// dtype) and `y` one label per window, text (mapped through `classes`) or class numbers. Each
/// window becomes a sequence of `samples` packets of `channels` amplitudes (one antenna),
/// preceded by the `context` windows before it in the file (fewer at the start): a causal view
/// of the last `(context + 1) · samples` packets, labelled with the last window's label.
pub fn read_windows(
    x: &Path,
    y: &Path,
    classes: Option<&[String]>,
    context: usize,
) -> anyhow::Result<Vec<(RawSequence, usize)>> {
    let a = csipose_npy::read::<f32>(x).with_context(|| format!("reading {}", x.display()))?;
    let [windows, channels, samples] = a.shape[..] else {
        bail!(
            "{}: expected windows [windows, channels, samples], got shape {:?}",
            x.display(),
            a.shape
        );
    };
    if channels == 0 || samples == 0 {
        bail!("{}: empty windows, shape {:?}", x.display(), a.shape);
    }
    let bytes = std::fs::read(y).with_context(|| format!("reading {}", y.display()))?;
    let header = csipose_npy::parse_header(&bytes)
        .map_err(|(o, m)| anyhow::anyhow!("{}: byte {o}: {m}", y.display()))?;
    let labels: Vec<usize> = if header.dtype.kind == csipose_npy::Kind::Unicode {
        let text = csipose_npy::strings_from_bytes(&bytes, y)?;
        let Some(classes) = classes else {
            bail!(
                "{}: text labels need a #classes line in the manifest",
                y.display()
            );
        };
        text.data
            .iter()
            .enumerate()
            .map(|(i, s)| {
                classes.iter().position(|c| c == s).with_context(|| {
                    format!(
                        "{}: window {i}: label {s:?} is not in #classes ({})",
                        y.display(),
                        classes.join(",")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        let n = csipose_npy::from_bytes::<i64>(&bytes, y)?;
        n.data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                usize::try_from(v)
                    .with_context(|| format!("{}: window {i}: label {v} is negative", y.display()))
            })
            .collect::<anyhow::Result<_>>()?
    };
    if labels.len() != windows {
        bail!(
            "{}: {} labels for the {windows} windows of {}",
            y.display(),
            labels.len(),
            x.display()
        );
    }
    // [channels, samples] -> [samples (packets), channels], per window.
    let packets: Vec<Vec<f32>> = a
        .data
        .chunks_exact(channels * samples)
        .map(|w| {
            let mut out = vec![0.0f32; channels * samples];
            for c in 0..channels {
                for t in 0..samples {
                    out[t * channels + c] = w[c * samples + t];
                }
            }
            out
        })
        .collect();
    Ok(labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| {
            let amplitudes = packets[i.saturating_sub(context)..=i].concat();
            (
                RawSequence {
                    amplitudes,
                    csi: None,
                    antennas: 1,
                    subcarriers: channels,
                },
                label,
            )
        })
        .collect())
}
