//! Conformance: every capture in ../shared/captures decodes to its reference `.csi.npy`
//! (and Intel `.scaled.npy`) within 1e-9 relative, with the metadata of its `.ref.json`.

use csipose_capture::{atheros, esp32, intel5300, nexmon, Complex};
use std::path::PathBuf;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures"
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
        let again = intel5300::read_file(shared("example.dat")).unwrap();
        assert_eq!(again, frames);
        assert!(err <= 1e-9, "{npy}: max relative error {err}");
    }
}

fn flatten(frames: &[Vec<Complex>]) -> Vec<f64> {
    frames.iter().flatten().flat_map(|c| [c.re, c.im]).collect()
}

fn check_nexmon(name: &str, chip: Option<nexmon::Chip>, bw: Option<u32>) -> f64 {
    let file = std::fs::File::open(shared(name)).unwrap();
    let opts = nexmon::Options {
        chip,
        bandwidth_mhz: bw,
    };
    let frames: Vec<_> = nexmon::Reader::new(file, opts)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let meta = reference(&format!("{name}.ref.json"));
    assert_eq!(frames.len() as u64, meta["frames"].as_u64().unwrap());
    let want = csipose_npy::read::<f64>(shared(&format!("{name}.csi.npy"))).unwrap();
    assert_eq!(want.shape, vec![frames.len(), frames[0].csi.len(), 2]);
    let got = flatten(&frames.iter().map(|f| f.csi.clone()).collect::<Vec<_>>());
    max_rel_err(&got, &want.data)
}

#[test]
fn nexmon_4358_matches_csireader() {
    // Inferred chip (header 0xdead) and bandwidth (packet length), then given explicitly.
    for (chip, bw) in [(None, None), (Some(nexmon::Chip::Bcm4358), Some(80))] {
        let err = check_nexmon("example_4358.pcap", chip, bw);
        eprintln!("example_4358.pcap ({chip:?}, {bw:?}): max relative error {err:e}");
        assert!(err <= 1e-9, "{err}");
    }
}

#[test]
fn nexmon_4366c0_matches_csireader() {
    for (chip, bw) in [(None, None), (Some(nexmon::Chip::Bcm4366c0), Some(80))] {
        let err = check_nexmon("example_4366c0.pcap", chip, bw);
        eprintln!("example_4366c0.pcap ({chip:?}, {bw:?}): max relative error {err:e}");
        assert!(err <= 1e-9, "{err}");
    }
}

#[test]
fn nexmon_wrong_bandwidth_skips_every_packet() {
    let file = std::fs::File::open(shared("example_4358.pcap")).unwrap();
    let opts = nexmon::Options {
        chip: None,
        bandwidth_mhz: Some(20),
    };
    let mut r = nexmon::Reader::new(file, opts);
    assert!(r.next().is_none());
    assert_eq!(r.skipped(), 4);
    // Counted under the reason that says what was there and what was asked for.
    assert_eq!(r.skips().count(&nexmon::skip_other_bandwidth(80, 20)), 4);
    assert_eq!(
        r.skips().to_string(),
        "4 packets of 80 MHz CSI (20 MHz asked for)"
    );
}

#[test]
fn atheros_matches_csiread() {
    let file = std::fs::File::open(shared("ath_csi_1.dat")).unwrap();
    let mut reader = atheros::Reader::new(file);
    let frames: Vec<_> = reader.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(reader.endian(), Some(atheros::Endian::Little));
    let meta = reference("ath_csi_1.dat.ref.json");
    assert_eq!(frames.len() as u64, meta["frames"].as_u64().unwrap());
    for (f, m) in frames.iter().zip(meta["per_frame"].as_array().unwrap()) {
        let got = [
            f.timestamp,
            f.csi_len as u64,
            f.channel as u64,
            f.rate as u64,
            f.rssi as u64,
            f.nr as u64,
            f.nc as u64,
            f.num_tones as u64,
            f.payload_len as u64,
        ];
        let want: Vec<u64> = [
            "timestamp",
            "csi_len",
            "channel",
            "rate",
            "rssi",
            "nr",
            "nc",
            "num_tones",
            "payload_len",
        ]
        .iter()
        .map(|k| m[*k].as_u64().unwrap())
        .collect();
        assert_eq!(got.to_vec(), want);
    }
    let want = csipose_npy::read::<f64>(shared("ath_csi_1.dat.csi.npy")).unwrap();
    assert_eq!(want.shape, vec![frames.len(), 56, 3, 3, 2]);
    let mut got = vec![0.0; want.data.len()];
    for (i, f) in frames.iter().enumerate() {
        for t in 0..f.num_tones as usize {
            for rx in 0..f.nr as usize {
                for tx in 0..f.nc as usize {
                    let c = f.at(t, rx, tx);
                    let at = (((i * 56 + t) * 3 + rx) * 3 + tx) * 2;
                    got[at] = c.re;
                    got[at + 1] = c.im;
                }
            }
        }
    }
    let err = max_rel_err(&got, &want.data);
    eprintln!("ath_csi_1.dat: max relative error {err:e}");
    assert!(err <= 1e-9, "{err}");
}

#[test]
fn esp32_matches_csiread() {
    let file = std::fs::File::open(shared("example_csi.csv")).unwrap();
    let frames: Vec<_> = esp32::Reader::new(file)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let meta = reference("example_csi.csv.ref.json");
    assert_eq!(frames.len() as u64, meta["frames"].as_u64().unwrap());
    for (f, m) in frames.iter().zip(meta["per_frame"].as_array().unwrap()) {
        assert_eq!(f.rssi as i64, m["rssi"].as_i64().unwrap());
        assert_eq!(f.mac, m["mac"].as_str().unwrap());
    }
    let want = csipose_npy::read::<f64>(shared("example_csi.csv.csi.npy")).unwrap();
    assert_eq!(want.shape, vec![frames.len(), 64, 2]);
    let got = flatten(&frames.iter().map(|f| f.csi.clone()).collect::<Vec<_>>());
    let err = max_rel_err(&got, &want.data);
    eprintln!("example_csi.csv: max relative error {err:e}");
    assert!(err <= 1e-9, "{err}");
}

#[test]
fn every_capture_is_detected_as_its_format() {
    use csipose_capture::{detect, Format};
    for (name, want) in [
        ("example.dat", Format::Intel5300),
        ("example_4358.pcap", Format::Nexmon),
        ("example_4366c0.pcap", Format::Nexmon),
        ("ath_csi_1.dat", Format::Atheros),
        ("example_csi.csv", Format::Esp32),
    ] {
        let bytes = std::fs::read(shared(name)).unwrap();
        assert_eq!(
            detect(&bytes[..bytes.len().min(4096)]).unwrap(),
            want,
            "{name}"
        );
    }
    let err = detect(b"hello, world\n").unwrap_err();
    assert!(err.contains("esp32: the file is text"), "{err}");
    assert!(err.contains("intel5300:"), "{err}");
}
