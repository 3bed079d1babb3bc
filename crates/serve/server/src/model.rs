//! Loading the models the server runs: the pose model (`.csm`, checked by parsing it and
//! building a runtime once) and the optional activity head (`.rvne`, streamable features
//! only). Each gets a [`ModelInfo`] (file name, size, SHA-256 of the file bytes, shape) that
//! every output message carries, so no result is ever separated from the model that made it.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use csipose_runtime::{Config as CsmConfig, Dtype, Kernel, ModelFile, Runtime};
use csipose_temporal::features::FeatureKind;
use csipose_temporal::model::ActivityModel;
use csipose_temporal::sequence::Decode;

/// What names a model in every message.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// The file name (no directories: messages do not reveal the server's paths).
    pub file: String,
    pub bytes: usize,
    /// SHA-256 of the whole file, 64 hex digits. (Not a CRC: `.csm` and `.rvne` files end
    /// with their own CRC-32, so the CRC-32 of a whole file is the same constant for all.)
    pub sha256: String,
    /// Model name stored in the file (pose) or a short description (activity).
    pub name: String,
    /// `fp32`, `int8`, `int4` (pose) or `rvne` (activity).
    pub precision: String,
}

impl ModelInfo {
    fn new(path: &Path, bytes: &[u8], name: String, precision: &str) -> ModelInfo {
        ModelInfo {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            bytes: bytes.len(),
            sha256: {
                use sha2::Digest;
                sha2::Sha256::digest(bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
            name,
            precision: precision.into(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file, "bytes": self.bytes, "sha256": self.sha256,
            "name": self.name, "precision": self.precision,
        })
    }
}

/// Model bytes in 4-byte aligned memory (what `ModelFile::parse` needs).
pub struct Aligned {
    words: Vec<u32>,
    len: usize,
}

impl Aligned {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the u32 buffer viewed as bytes, within its length (len <= 4 * words.len()).
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }
}

/// A loaded pose model: its bytes, shape and identity.
pub struct PoseModel {
    pub bytes: Aligned,
    pub config: CsmConfig,
    pub info: ModelInfo,
}

impl PoseModel {
    /// Builds the runtime over `consts` (at least `consts_len()` floats).
    pub fn runtime<'a>(&'a self, consts: &'a mut [f32]) -> Result<Runtime<'a, 'a>> {
        let mf = ModelFile::parse(self.bytes.bytes())
            .map_err(|e| anyhow::anyhow!("invalid model file {}: {e:?}", self.info.file))?;
        Runtime::new(&mf, Kernel::best(), consts)
            .map_err(|e| anyhow::anyhow!("model file {}: {e:?}", self.info.file))
    }

    pub fn consts_len(&self) -> usize {
        match ModelFile::parse(self.bytes.bytes()) {
            Ok(mf) => Runtime::consts_len_for_file(&mf, Kernel::best()),
            // `runtime` reports the parse error; this bound fits any file of the config.
            Err(_) => Runtime::consts_len_for(&self.config, Kernel::best()),
        }
    }
}

/// Reads and checks a `.csm` pose model.
pub fn load_pose(path: &Path) -> Result<PoseModel> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open model {}", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("cannot read model {}", path.display()))?
        .len();
    if len > 512 << 20 {
        bail!(
            "model {}: {len} bytes is larger than any .csm model",
            path.display()
        );
    }
    let len = len as usize;
    let mut a = Aligned {
        words: vec![0u32; len.div_ceil(4)],
        len,
    };
    f.read_exact(a.bytes_mut())
        .with_context(|| format!("cannot read model {}", path.display()))?;
    let mf = ModelFile::parse(a.bytes())
        .map_err(|e| anyhow::anyhow!("{}: not a valid .csm model file: {e:?}", path.display()))?;
    let precision = match mf.precision() {
        Dtype::F32 => "fp32",
        Dtype::I8 => "int8",
        Dtype::I4 => "int4",
    };
    let info = ModelInfo::new(path, a.bytes(), mf.name().to_string(), precision);
    let config = mf.config;
    let model = PoseModel {
        bytes: a,
        config,
        info,
    };
    // Build the runtime once now so that a model the runtime refuses fails at start.
    let mut consts = vec![0.0f32; model.consts_len()];
    model.runtime(&mut consts)?;
    Ok(model)
}

/// A loaded activity head.
pub struct Activity {
    pub model: ActivityModel,
    pub kind: FeatureKind,
    pub stride: usize,
    pub info: ModelInfo,
}

/// Reads and checks a `.rvne` activity head: it must be causal (so it can stream) and read
/// amplitude or amplitude-phase features (pose-encoder features need a packed dataset). A
/// stored decoding (`--decode forward|viterbi` of `activity train`) runs as the forward filter
/// on the live window sequence (a stored viterbi mode too: it needs the whole recording).
pub fn load_activity(path: &Path, _pose: &ModelInfo) -> Result<Activity> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read activity model {}", path.display()))?;
    let model = ActivityModel::from_rvne(&bytes)
        .with_context(|| format!("{}: not a valid .rvne activity model", path.display()))?;
    if !model.head.causal {
        bail!(
            "{}: the activity head uses symmetric attention and cannot stream",
            path.display()
        );
    }
    let kind = FeatureKind::from_code(model.head.features)
        .with_context(|| format!("{}: unknown feature code", path.display()))?;
    if kind == FeatureKind::PoseEncoder {
        bail!(
            "{}: the activity head reads pose-encoder features, which the server cannot make from live packets",
            path.display()
        );
    }
    let decode = model.meta.as_ref().and_then(|m| m.decode.as_ref());
    if let Some(d) = decode.filter(|d| d.step_frames > 0) {
        // Window-by-window classification keeps context + 1 windows of raw packets per node.
        let context = model.meta.as_ref().map_or(0, |m| m.context as usize);
        let packets = (context + 1) * d.step_frames as usize * model.head.stride.max(1) as usize;
        if packets > crate::pipeline::ACTIVITY_RING_PACKETS {
            bail!(
                "{}: context {context} + 1 windows of {} frames × {} packets is {packets} packets \
                 per node, more than the server keeps ({})",
                path.display(),
                d.step_frames,
                model.head.stride,
                crate::pipeline::ACTIVITY_RING_PACKETS
            );
        }
    }
    let name = format!(
        "activity {} classes, {} features{}",
        model.shape.n_classes,
        kind.name(),
        match decode {
            None => String::new(),
            Some(d) => format!(
                ", forward decoding every {}",
                match d.step_frames {
                    0 => "frame".to_string(),
                    f => format!("{f} frames"),
                }
            ),
        }
    );
    if decode.is_some_and(|d| d.mode == Decode::Viterbi) {
        eprintln!(
            "note: {} stores viterbi decoding (offline, whole recordings); the live stream \
             decodes with its forward filter",
            path.display()
        );
    }
    let info = ModelInfo::new(path, &bytes, name, "rvne");
    Ok(Activity {
        stride: model.head.stride.max(1) as usize,
        model,
        kind,
        info,
    })
}

/// The activity head's class names in class order: `configured` (the config's
/// `activity_labels`, an explicit override) where it names the class, else the name stored in
/// the `.rvne` file, else `class N`.
pub fn activity_labels(model: &ActivityModel, configured: &[String]) -> Vec<String> {
    let stored = model.meta.as_ref().and_then(|m| m.classes.as_deref());
    (0..model.shape.n_classes)
        .map(|i| {
            configured
                .get(i)
                .or_else(|| stored.and_then(|s| s.get(i)))
                .cloned()
                .unwrap_or_else(|| format!("class {i}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_labels_come_from_the_file_unless_configured() {
        use csipose_temporal::model::ModelShape;
        use csipose_temporal::rvne::RvneMeta;
        let shape = ModelShape {
            input_dim: 6,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
            n_layers: 1,
            n_classes: 3,
        };
        let mut m =
            ActivityModel::new(shape, csipose_attention::Backend::Sparse, 1).expect("model");
        let old = ActivityModel::from_rvne(&m.to_rvne(false).unwrap()).unwrap();
        assert_eq!(
            activity_labels(&old, &[]),
            ["class 0", "class 1", "class 2"]
        );
        m.meta = Some(RvneMeta {
            classes: Some(vec!["walk".into(), "sit".into(), "wave".into()]),
            ..RvneMeta::default()
        });
        let named = ActivityModel::from_rvne(&m.to_rvne(false).unwrap()).unwrap();
        assert_eq!(activity_labels(&named, &[]), ["walk", "sit", "wave"]);
        // An explicit list overrides the file, class by class.
        assert_eq!(
            activity_labels(&named, &["A".into(), "B".into()]),
            ["A", "B", "wave"]
        );
        assert_eq!(
            activity_labels(&old, &["A".into()]),
            ["A", "class 1", "class 2"]
        );
    }

    #[test]
    fn a_head_whose_windows_do_not_fit_the_ring_is_refused_at_start() {
        use csipose_temporal::model::ModelShape;
        use csipose_temporal::rvne::{RvneDecode, RvneMeta};
        use csipose_temporal::sequence::Transitions;
        let shape = ModelShape {
            input_dim: 6,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
            n_layers: 1,
            n_classes: 2,
        };
        let mut m = ActivityModel::new(shape, csipose_attention::Backend::Sparse, 1).unwrap();
        let half = 0.5f32.ln();
        let dir = tempfile::tempdir().unwrap();
        let pose = ModelInfo::new(Path::new("p.csm"), b"p", "p".into(), "fp32");
        // stride 4 (the default head): 8192 frames × 4 packets = 32768 packets per window.
        for (context, ok) in [(1u16, true), (2, false)] {
            m.meta = Some(RvneMeta {
                context,
                decode: Some(RvneDecode {
                    mode: Decode::Forward,
                    step_frames: 8192,
                    transitions: Transitions {
                        n_classes: 2,
                        log_start: vec![half; 2],
                        log_next: vec![half; 4],
                    },
                }),
                ..RvneMeta::default()
            });
            let path = dir.path().join(format!("c{context}.rvne"));
            std::fs::write(&path, m.to_rvne(false).unwrap()).unwrap();
            let r = load_activity(&path, &pose);
            assert_eq!(r.is_ok(), ok, "context {context}");
            if let Err(e) = r {
                assert!(format!("{e:#}").contains("98304 packets per node"), "{e:#}");
            }
        }
    }

    #[test]
    fn files_ending_in_their_own_crc_still_get_different_hashes() {
        let with_crc = |body: &[u8]| {
            let mut v = body.to_vec();
            v.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            v
        };
        let (a, b) = (with_crc(b"model one"), with_crc(b"model two"));
        // The whole-file CRC-32 is the same residue for both: useless as an identity.
        assert_eq!(crc32fast::hash(&a), crc32fast::hash(&b));
        let p = Path::new("/x/m.csm");
        let (ia, ib) = (
            ModelInfo::new(p, &a, "a".into(), "fp32"),
            ModelInfo::new(p, &b, "b".into(), "fp32"),
        );
        assert_ne!(ia.sha256, ib.sha256);
        assert_eq!(ia.sha256.len(), 64);
        assert_eq!(ia.file, "m.csm", "no directories in messages");
    }
}
