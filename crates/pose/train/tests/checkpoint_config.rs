//! Checkpoint metadata is not trusted: a `model` configuration outside the architecture's
//! bounds is a clear error naming the file and the field, before anything is allocated.

use csipose_model::ModelConfig;
use csipose_train::checkpoint;
use std::collections::HashMap;
use std::path::Path;

/// A checkpoint holding only metadata: the format tag and this model configuration.
fn write_meta_only(path: &Path, cfg: &ModelConfig) {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "csipose-checkpoint-1".to_string());
    meta.insert("model".to_string(), serde_json::to_string(cfg).unwrap());
    let views: Vec<(String, safetensors::tensor::TensorView)> = Vec::new();
    let bytes = safetensors::tensor::serialize(views, &Some(meta)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn out_of_bounds_model_metadata_is_an_error_not_a_panic_or_abort() {
    let dir = tempfile::tempdir().unwrap();
    let micro = ModelConfig::preset("micro").unwrap();
    let cases = [
        (
            "heads-0",
            ModelConfig {
                heads: 0,
                ..micro.clone()
            },
            "heads = 0",
        ),
        (
            "heads-5",
            ModelConfig {
                heads: 5,
                ..micro.clone()
            },
            "heads = 5",
        ),
        (
            "d-65536",
            ModelConfig {
                d: 65_536,
                ..micro.clone()
            },
            "d = 65536",
        ),
        (
            "layers-1e6",
            ModelConfig {
                layers: 1_000_000,
                ..micro.clone()
            },
            "layers = 1000000",
        ),
        (
            "graph-0",
            ModelConfig {
                graph: Some(0),
                ..micro.clone()
            },
            "graph = 0",
        ),
        (
            "dropout",
            ModelConfig {
                dropout: 1.5,
                ..micro.clone()
            },
            "dropout = 1.5",
        ),
    ];
    for (name, cfg, want) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        write_meta_only(&path, &cfg);
        for err in [
            checkpoint::load_model(&path)
                .err()
                .map(|e| format!("{e:#}")),
            checkpoint::load(&path).err().map(|e| format!("{e:#}")),
        ] {
            let err = err.unwrap_or_else(|| panic!("{name}: loaded"));
            assert!(err.contains(want), "{name}: {err}");
            assert!(err.contains(&path.display().to_string()), "{name}: {err}");
            assert!(err.contains("metadata model"), "{name}: {err}");
        }
    }
    // A valid configuration gets past the check (and fails later, on the missing tensors).
    let path = dir.path().join("valid.safetensors");
    write_meta_only(&path, &micro);
    let err = format!("{:#}", checkpoint::load_model(&path).unwrap_err());
    assert!(err.contains("missing"), "{err}");
}
