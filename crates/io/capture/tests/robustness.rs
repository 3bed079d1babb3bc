//! Robustness: truncated and randomly mutated captures never panic, never loop, keep every
//! complete frame before a cut, and report errors with offsets; random frames survive an
//! encode-then-decode round trip through each format's writer.

use csipose_capture::any::{Frame, Reader};
use csipose_capture::{atheros, esp32, intel5300, nexmon, Complex, Format};
use std::path::PathBuf;

fn shared(name: &str) -> Vec<u8> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures"
    ))
    .join(name);
    std::fs::read(p).unwrap()
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const FILES: [(&str, Format); 5] = [
    ("example.dat", Format::Intel5300),
    ("example_4358.pcap", Format::Nexmon),
    ("example_4366c0.pcap", Format::Nexmon),
    ("ath_csi_1.dat", Format::Atheros),
    ("example_csi.csv", Format::Esp32),
];

/// Reads everything; asserts termination (items bounded by the input size).
fn read_all(bytes: &[u8], format: Format) -> (Vec<Frame>, Vec<csipose_capture::CaptureError>) {
    let reader = Reader::new(
        std::io::Cursor::new(bytes.to_vec()),
        format,
        Default::default(),
    );
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for (n, item) in reader.enumerate() {
        assert!(
            n <= bytes.len() + 1,
            "reader yields more items than the input has bytes"
        );
        match item {
            Ok(f) => ok.push(f),
            Err(e) => {
                assert!(
                    e.offset <= bytes.len() as u64,
                    "error offset {} past the end",
                    e.offset
                );
                errs.push(e)
            }
        }
    }
    (ok, errs)
}

#[test]
fn truncation_keeps_every_complete_frame_and_reports_the_cut() {
    let mut rng = Rng(0x5eed);
    for (name, format) in FILES {
        let bytes = shared(name);
        let (full, errs) = read_all(&bytes, format);
        assert!(
            errs.is_empty(),
            "{name}: {:?}",
            errs.first().map(|e| e.to_string())
        );
        // Frame end offsets: the start of the next frame (or the file end).
        let mut cuts: Vec<usize> = (0..64)
            .map(|_| rng.below(bytes.len() as u64) as usize)
            .collect();
        cuts.extend(full.iter().map(|f| f.offset() as usize + 1));
        for cut in cuts {
            let (got, errs) = read_all(&bytes[..cut], format);
            let complete = full
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    full.get(i + 1).map_or(bytes.len(), |n| n.offset() as usize) <= cut
                })
                .count();
            // ESP32 rows: a cut row may still parse as a shorter row; binary formats never.
            assert!(
                got.len() >= complete,
                "{name} cut at {cut}: {} frames, {complete} complete",
                got.len()
            );
            assert_eq!(&got[..complete], &full[..complete], "{name} cut at {cut}");
            if cut < bytes.len() && got.len() == complete && cut > 24 {
                let cut_inside_record = full.iter().any(|f| (f.offset() as usize) < cut)
                    && !full.iter().any(|f| f.offset() as usize == cut);
                if cut_inside_record {
                    let last = errs
                        .last()
                        .unwrap_or_else(|| panic!("{name} cut at {cut}: no error reported"));
                    assert!(last.is_truncation(), "{name} cut at {cut}: {last}");
                    assert!(last.to_string().contains("byte "), "{last}");
                }
            }
        }
    }
}

#[test]
fn random_mutations_never_panic_or_loop() {
    let mut rng = Rng(0xdecaf);
    for (name, format) in FILES {
        let original = shared(name);
        let original = &original[..original.len().min(64 * 1024)];
        for _ in 0..150 {
            let mut b = original.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len() as u64) as usize;
                match rng.below(4) {
                    0 => b[at] = rng.next() as u8,
                    1 => b[at] ^= 1 << rng.below(8),
                    2 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, rng.next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = read_all(&b, format);
            // Detection must also hold up on anything.
            let _ = csipose_capture::detect(&b[..b.len().min(4096)]);
        }
        // Pure noise of the same size.
        let noise: Vec<u8> = (0..original.len().min(4096))
            .map(|_| rng.next() as u8)
            .collect();
        let _ = read_all(&noise, format);
    }
}

#[test]
fn errors_name_the_byte_offset() {
    // An Intel record whose bfee header claims 4 antennas, after one valid record.
    let bytes = shared("example.dat");
    let mut first = intel5300::Reader::new(&bytes[..]);
    let f0 = first.next().unwrap().unwrap();
    let mut rec = intel5300::encode_bfee(&f0).unwrap();
    let second_at = rec.len();
    let mut bad = rec.clone();
    bad[3 + 8] = 4;
    rec.extend_from_slice(&bad);
    let items: Vec<_> = intel5300::Reader::new(&rec[..]).collect();
    assert_eq!(items.len(), 2);
    let e = items[1].as_ref().unwrap_err();
    assert_eq!(e.offset, (second_at + 3 + 8) as u64);
    assert!(
        e.to_string()
            .contains(&format!("byte {}", second_at + 3 + 8)),
        "{e}"
    );
    assert!(!e.is_truncation());
}

fn random_intel(rng: &mut Rng) -> intel5300::Frame {
    let nrx = 1 + rng.below(3) as usize;
    let ntx = 1 + rng.below(3) as usize;
    // antenna_sel: a real permutation for 3 antennas half the time, anything otherwise.
    let perms = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let antenna_sel = if nrx == 3 && rng.below(2) == 0 {
        let p = perms[rng.below(6) as usize];
        (p[0] | (p[1] << 2) | (p[2] << 4)) as u8
    } else {
        rng.next() as u8 & 0x3f
    };
    let mut csi = vec![vec![[Complex::ZERO; 30]; nrx]; ntx];
    for t in csi.iter_mut() {
        for r in t.iter_mut() {
            for c in r.iter_mut() {
                *c = Complex::new(rng.next() as i8 as f64, rng.next() as i8 as f64);
            }
        }
    }
    let body_perm = intel5300::perm_from_antenna_sel(antenna_sel);
    let mut f = intel5300::Frame {
        offset: 0,
        timestamp_low: rng.next() as u32,
        bfee_count: rng.next() as u16,
        nrx: nrx as u8,
        ntx: ntx as u8,
        rssi_a: rng.next() as u8,
        rssi_b: rng.next() as u8,
        rssi_c: rng.next() as u8,
        noise: rng.next() as i8,
        agc: rng.next() as u8,
        antenna_sel,
        perm: body_perm,
        rate: rng.next() as u16,
        perm_applied: false,
        csi,
    };
    // What the reader will report for perm_applied (it is derived, not stored).
    let sum: u32 = body_perm.iter().map(|&p| p as u32).sum();
    f.perm_applied =
        nrx > 1 && sum == [1, 3, 6][nrx - 1] && body_perm[..nrx].iter().all(|&p| p as usize <= nrx);
    f
}

#[test]
fn intel5300_round_trip() {
    let mut rng = Rng(1);
    let mut frames = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..200 {
        let mut f = random_intel(&mut rng);
        match intel5300::encode_bfee(&f) {
            Ok(rec) => {
                f.offset = bytes.len() as u64;
                // A non-bfee record in between must be skipped by its length.
                bytes.extend_from_slice(&rec);
                bytes.extend_from_slice(&[0, 4, 0xc1, 1, 2, 3]);
                frames.push(f);
            }
            Err(m) => assert!(m.contains("not invertible"), "{m}"),
        }
    }
    assert!(frames.len() > 150);
    let mut r = intel5300::Reader::new(&bytes[..]);
    let back: Vec<_> = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(back, frames);
    assert_eq!(r.skipped(), frames.len() as u64);
}

#[test]
fn atheros_round_trip_both_endians() {
    let mut rng = Rng(2);
    for endian in [atheros::Endian::Little, atheros::Endian::Big] {
        let mut frames = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..60 {
            let (nr, nc) = (1 + rng.below(3) as u8, 1 + rng.below(3) as u8);
            let tones = [56u8, 114, 1 + rng.below(60) as u8][rng.below(3) as usize];
            let csi: Vec<Complex> = (0..tones as usize * nr as usize * nc as usize)
                .map(|_| {
                    Complex::new(
                        rng.below(1024) as f64 - 512.0,
                        rng.below(1024) as f64 - 512.0,
                    )
                })
                .collect();
            let payload: Vec<u8> = (0..rng.below(100)).map(|_| rng.next() as u8).collect();
            let mut f = atheros::Frame {
                offset: bytes.len() as u64,
                timestamp: rng.next(),
                csi_len: atheros::csi_bytes_needed(tones as usize, nr as usize, nc as usize) as u16,
                channel: rng.next() as u16,
                err_info: rng.next() as u8,
                noise_floor: rng.next() as u8,
                rate: rng.next() as u8,
                bandwidth: rng.next() as u8,
                num_tones: tones,
                nr,
                nc,
                rssi: rng.next() as u8,
                rssi_1: rng.next() as u8,
                rssi_2: rng.next() as u8,
                rssi_3: rng.next() as u8,
                payload_len: payload.len() as u16,
                csi,
                payload,
            };
            let rec = atheros::encode_record(&f, endian).unwrap();
            f.offset = bytes.len() as u64;
            bytes.extend_from_slice(&rec);
            frames.push(f);
        }
        let mut r = atheros::Reader::new(&bytes[..]);
        let back: Vec<_> = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(r.endian(), Some(endian));
        assert_eq!(back, frames);
    }
}

#[test]
fn esp32_round_trip_with_and_without_header() {
    let mut rng = Rng(3);
    for header in [false, true] {
        let frames: Vec<esp32::Frame> = (0..40)
            .map(|_| {
                let rssi = -(rng.below(100) as i32);
                let mac = format!(
                    "AA:BB:CC:{:02X}:{:02X}:{:02X}",
                    rng.next() as u8,
                    rng.next() as u8,
                    rng.next() as u8
                );
                let mut fields: Vec<String> = (0..25)
                    .map(|i| (i * 7 + rng.below(9) as i32).to_string())
                    .collect();
                fields[0] = "CSI_DATA".into();
                fields[1] = "AP".into();
                fields[2] = mac.clone();
                fields[3] = rssi.to_string();
                let n = [64usize, 128, 192][rng.below(3) as usize];
                let csi = (0..n)
                    .map(|_| {
                        Complex::new(rng.below(256) as f64 - 128.0, rng.below(256) as f64 - 128.0)
                    })
                    .collect();
                esp32::Frame {
                    offset: 0,
                    line: 0,
                    fields,
                    rssi,
                    mac,
                    csi,
                }
            })
            .collect();
        let mut bytes = Vec::new();
        esp32::write_frames(&mut bytes, &frames, header).unwrap();
        let back: Vec<_> = esp32::Reader::new(&bytes[..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(back.len(), frames.len());
        for (i, (b, f)) in back.iter().zip(&frames).enumerate() {
            assert_eq!(b.line as usize, i + 1 + header as usize);
            assert_eq!(
                (&b.fields, b.rssi, &b.mac, &b.csi),
                (&f.fields, f.rssi, &f.mac, &f.csi)
            );
        }
    }
}

#[test]
fn nexmon_int16_round_trip_and_bandwidth_inference() {
    let mut rng = Rng(4);
    let frames: Vec<nexmon::Frame> = (0..30)
        .map(|i| {
            let bw = [20u32, 40, 80][rng.below(3) as usize];
            let chip = if i % 2 == 0 {
                nexmon::Chip::Bcm43455c0
            } else {
                nexmon::Chip::Bcm4339
            };
            nexmon::Frame {
                offset: 0,
                ts_sec: rng.next() as u32,
                ts_frac: rng.below(1_000_000) as u32,
                rssi: rng.next() as i8,
                frame_control: rng.next() as u8,
                source_mac: [1, 2, 3, 4, 5, rng.next() as u8],
                sequence: rng.next() as u16,
                core: rng.below(4) as u8,
                spatial_stream: rng.below(4) as u8,
                chanspec: rng.next() as u16,
                chip_version: chip.version(),
                chip,
                bandwidth_mhz: bw,
                csi: (0..bw as usize * 16 / 5)
                    .map(|_| Complex::new(rng.next() as i16 as f64, rng.next() as i16 as f64))
                    .collect(),
            }
        })
        .collect();
    let mut bytes = Vec::new();
    nexmon::write_int16_pcap(&mut bytes, &frames).unwrap();
    let back: Vec<_> = nexmon::Reader::new(&bytes[..], Default::default())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(back.len(), frames.len());
    for (b, f) in back.iter().zip(&frames) {
        let mut b = b.clone();
        b.offset = 0;
        assert_eq!(&b, f);
    }
}

#[test]
fn nexmon_unknown_chip_is_an_error_unless_given() {
    let f = nexmon::Frame {
        offset: 0,
        ts_sec: 0,
        ts_frac: 0,
        rssi: -40,
        frame_control: 0x80,
        source_mac: [0; 6],
        sequence: 1,
        core: 0,
        spatial_stream: 0,
        chanspec: 0,
        chip_version: 0x1234,
        chip: nexmon::Chip::Bcm43455c0,
        bandwidth_mhz: 20,
        csi: vec![Complex::new(1.0, -1.0); 64],
    };
    let mut bytes = Vec::new();
    nexmon::write_int16_pcap(&mut bytes, &[f]).unwrap();
    let items: Vec<_> = nexmon::Reader::new(&bytes[..], Default::default()).collect();
    let e = items[0].as_ref().unwrap_err();
    assert!(e.to_string().contains("0x1234"), "{e}");
    let opts = nexmon::Options {
        chip: Some(nexmon::Chip::Bcm43455c0),
        bandwidth_mhz: Some(20),
    };
    let items: Vec<_> = nexmon::Reader::new(&bytes[..], opts)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(items[0].csi[0], Complex::new(1.0, -1.0));
}
