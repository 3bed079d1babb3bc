//! Conformance: every capture in ../shared/captures decodes to its reference `.csi.npy`
//! (and Intel `.scaled.npy`) within 1e-9 relative, with the metadata of its `.ref.json`.

use csipose_capture::intel5300;
use std::path::PathBuf;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/captures"
    ))
    .join(name)
}

fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(shared(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Largest |got - want| / max(|want|, tiny) over all elements; shapes must match.
fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "element count differs");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-300);
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(scale * 1e-12))
        .fold(0f64, f64::max)
}

#[test]
fn intel5300_example_matches_matlab() {
    let file = std::fs::File::open(shared("example.dat")).unwrap();
    let frames: Vec<_> = intel5300::Reader::new(file)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let meta = reference("example.dat.ref.json");
    assert_eq!(frames.len() as u64, meta["frames"].as_u64().unwrap());
    let per = meta["per_frame"].as_array().unwrap();
    for (f, m) in frames.iter().zip(per) {
        assert_eq!(f.timestamp_low as f64, m["timestamp_low"].as_f64().unwrap());
        assert_eq!(f.bfee_count as u64, m["bfee_count"].as_u64().unwrap());
        assert_eq!(f.nrx as u64, m["Nrx"].as_u64().unwrap());
        assert_eq!(f.ntx as u64, m["Ntx"].as_u64().unwrap());
        assert_eq!(f.rssi_a as u64, m["rssi_a"].as_u64().unwrap());
        assert_eq!(f.rssi_b as u64, m["rssi_b"].as_u64().unwrap());
        assert_eq!(f.rssi_c as u64, m["rssi_c"].as_u64().unwrap());
        assert_eq!(f.noise as i64, m["noise"].as_i64().unwrap());
        assert_eq!(f.agc as u64, m["agc"].as_u64().unwrap());
        assert_eq!(f.rate as u64, m["rate"].as_u64().unwrap());
        let perm: Vec<u64> = m["perm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(perm, f.perm.iter().map(|&p| p as u64).collect::<Vec<_>>());
    }
    for (npy, scaled) in [
        ("example.dat.csi.npy", false),
        ("example.dat.scaled.npy", true),
    ] {
        let want = csipose_npy::read::<f64>(shared(npy)).unwrap();
        assert_eq!(want.shape, vec![frames.len(), 3, 3, 30, 2]);
        let mut got = vec![0.0; want.data.len()];
        for (i, f) in frames.iter().enumerate() {
            let csi = if scaled {
                f.scaled_csi()
            } else {
                f.csi.clone()
            };
            for (tx, t) in csi.iter().enumerate() {
                for (rx, r) in t.iter().enumerate() {
                    for (s, c) in r.iter().enumerate() {
                        let at = (((i * 3 + tx) * 3 + rx) * 30 + s) * 2;
                        got[at] = c.re;
                        got[at + 1] = c.im;
                    }
                }
            }
        }
        let err = max_rel_err(&got, &want.data);
        eprintln!("{npy}: max relative error {err:e}");
        assert!(err <= 1e-9, "{npy}: max relative error {err}");
    }
}
