//! Decoding every wire format: byte layouts, real Nexmon payloads and ESP32 rows against
//! reference decodings, live-frame round trips and CRC damage, and no-panic fuzzing.

// Index loops compare against the flat reference arrays element by element.
#![allow(clippy::needless_range_loop)]
use csipose_wire::live::LiveFrame;
use csipose_wire::{
    adr018, decode_datagram, decode_line, Counters, Format, LineSplitter, Reject, Samples,
};
use std::path::PathBuf;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures"
    ))
    .join(name)
}

fn reason(b: &[u8]) -> (Option<Format>, Reject) {
    let r = decode_datagram(b).expect_err("should be rejected");
    (r.format, r.reason)
}

#[test]
fn adr018_byte_layout_imag_then_real() {
    let mut b = Vec::new();
    b.extend_from_slice(&0xC511_0001u32.to_le_bytes());
    b.push(7); // node
    b.push(2); // n_ant
    b.extend_from_slice(&3u16.to_le_bytes()); // n_sc
    b.extend_from_slice(&2437u32.to_le_bytes());
    b.extend_from_slice(&123_456u32.to_le_bytes());
    b.push((-40i8) as u8);
    b.push((-95i8) as u8);
    b.extend_from_slice(&[0xAA, 0xBB]); // reserved, ignored
                                        // 6 (imag, real) pairs: imag = -(k+1), real = 10*(k+1)
    for k in 0..6i8 {
        b.push((-(k + 1)) as u8);
        b.push((10 * (k + 1)) as u8);
    }
    assert_eq!(b.len(), 20 + 2 * 6);
    let f = decode_datagram(&b).unwrap();
    assert_eq!(f.format, Format::Adr018);
    assert_eq!((f.node_id, f.antennas, f.subcarriers), (Some(7), 2, 3));
    assert_eq!(f.freq_mhz, Some(2437));
    assert_eq!(f.seq, Some(123_456));
    assert_eq!((f.rssi_dbm, f.noise_floor_dbm), (Some(-40), Some(-95)));
    let Samples::ComplexI8(s) = &f.samples else {
        panic!("{:?}", f.samples)
    };
    assert_eq!(s[0], [10, -1]);
    assert_eq!(s[5], [60, -6]);
    // The encoder writes the same bytes (reserved as zero).
    let h = adr018::Header {
        node_id: 7,
        freq_mhz: 2437,
        seq: 123_456,
        rssi: -40,
        noise_floor: -95,
    };
    let mut b0 = b.clone();
    b0[18] = 0;
    b0[19] = 0;
    assert_eq!(adr018::encode(&h, 2, 3, s).unwrap(), b0);

    // Length must be exactly 20 + 2*n_ant*n_sc.
    assert_eq!(
        reason(&b[..b.len() - 1]),
        (Some(Format::Adr018), Reject::BadLength)
    );
    let mut longer = b.clone();
    longer.push(0);
    assert_eq!(reason(&longer), (Some(Format::Adr018), Reject::BadLength));
    assert_eq!(reason(&b[..19]), (Some(Format::Adr018), Reject::Truncated));
    let mut zero = b.clone();
    zero[5] = 0;
    assert_eq!(reason(&zero), (Some(Format::Adr018), Reject::BadDimensions));
    // Other RuView frame types are counted and ignored; unknown ones are their own reason.
    for m in [0xC511_0002u32, 0xC511_0004, 0xC511_0006] {
        let mut o = m.to_le_bytes().to_vec();
        o.extend_from_slice(&[0; 40]);
        assert_eq!(reason(&o), (Some(Format::Adr018), Reject::IgnoredType));
        assert!(Reject::IgnoredType.is_ignored());
    }
    let mut o = 0xC511_0003u32.to_le_bytes().to_vec();
    o.extend_from_slice(&[0; 40]);
    assert_eq!(reason(&o), (Some(Format::Adr018), Reject::UnknownType));
}

/// The packets of a little-endian microsecond pcap (enough for the shared examples).
fn pcap_packets(name: &str) -> Vec<Vec<u8>> {
    let b = std::fs::read(shared(name)).unwrap();
    assert_eq!(&b[..4], &0xa1b2_c3d4u32.to_le_bytes());
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(b[at + 16..at + 16 + incl].to_vec());
        at += 16 + incl;
    }
    out
}

fn check_nexmon_payloads(name: &str) {
    let packets = pcap_packets(name);
    let want = csipose_npy::read::<f64>(shared(&format!("{name}.csi.npy"))).unwrap();
    let (n, sc) = (want.shape[0], want.shape[1]);
    let reader_frames: Vec<_> = csipose_capture::nexmon::Reader::new(
        std::fs::File::open(shared(name)).unwrap(),
        Default::default(),
    )
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let mut counters = Counters::new();
    let mut got = Vec::new();
    for p in &packets {
        let payload = csipose_wire::nexmon_udp::payload_of_frame(p).unwrap();
        let r = decode_datagram(payload);
        counters.count(&r);
        if let Ok(f) = r {
            got.push(f);
        }
    }
    assert_eq!(
        got.len(),
        n,
        "{name}: accepted payloads vs reference frames"
    );
    assert_eq!(counters.accepted(Format::Nexmon), n as u64);
    for (i, f) in got.iter().enumerate() {
        assert_eq!((f.antennas as usize, f.subcarriers as usize), (1, sc));
        let c = f.samples.complex_f64().unwrap();
        for k in 0..sc {
            let w = [want.data[(i * sc + k) * 2], want.data[(i * sc + k) * 2 + 1]];
            assert_eq!(c[k], w, "{name} frame {i} subcarrier {k}");
        }
        let r = &reader_frames[i];
        assert_eq!(f.seq, Some(r.sequence as u64));
        assert_eq!(f.core, Some(r.core));
        assert_eq!(f.spatial_stream, Some(r.spatial_stream));
        assert_eq!(f.rssi_dbm, Some(r.rssi as i16));
        assert_eq!(f.mac, Some(r.source_mac));
    }
    eprintln!(
        "{name}: {} packets, {n} CSI payloads match the reference exactly",
        packets.len()
    );
}

#[test]
fn nexmon_real_payloads_match_csireader() {
    check_nexmon_payloads("example_4358.pcap");
    check_nexmon_payloads("example_4366c0.pcap");
}

#[test]
fn nexmon_bad_payloads() {
    let mut p = vec![0x11, 0x11];
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&[0; 4 * 64]);
    // chip version 0 is unknown
    assert_eq!(reason(&p), (Some(Format::Nexmon), Reject::UnknownChip));
    p[16..18].copy_from_slice(&0x0065u16.to_le_bytes());
    let f = decode_datagram(&p).unwrap();
    assert_eq!((f.antennas, f.subcarriers), (1, 64));
    assert!(matches!(f.samples, Samples::ComplexI16(_)));
    assert_eq!(
        reason(&p[..p.len() - 4]),
        (Some(Format::Nexmon), Reject::BadLength)
    );
    assert_eq!(reason(&p[..10]), (Some(Format::Nexmon), Reject::Truncated));
    // A configured chip decodes an unknown chip-version field.
    p[16..18].copy_from_slice(&0x7777u16.to_le_bytes());
    let opts = csipose_wire::DecodeOptions {
        nexmon_chip: Some(csipose_capture::nexmon::Chip::Bcm4339),
    };
    assert!(csipose_wire::decode_datagram_with(&p, &opts).is_ok());
}

#[test]
fn esp32_csi_tool_rows_match_csiread() {
    let text = std::fs::read(shared("example_csi.csv")).unwrap();
    let want = csipose_npy::read::<f64>(shared("example_csi.csv.csi.npy")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shared("example_csi.csv.ref.json")).unwrap())
            .unwrap();
    let (n, sc) = (want.shape[0], want.shape[1]);
    let mut frames = Vec::new();
    let mut split = LineSplitter::new(4096);
    split.feed(&text, |l| frames.push(decode_line(l.unwrap()).unwrap()));
    split.finish(|l| frames.push(decode_line(l.unwrap()).unwrap()));
    assert_eq!(frames.len(), n);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.format, Format::Esp32CsiTool);
        assert_eq!(f.subcarriers as usize, sc);
        let c = f.samples.complex_f64().unwrap();
        for k in 0..sc {
            assert_eq!(
                c[k],
                [want.data[(i * sc + k) * 2], want.data[(i * sc + k) * 2 + 1]]
            );
        }
        let rssi = meta["per_frame"][i]["rssi"].as_i64().unwrap();
        assert_eq!(f.rssi_dbm, Some(rssi as i16));
        assert_eq!(f.mac, Some([0x3C, 0x71, 0xBF, 0x6D, 0x2A, 0x78]));
    }
    assert_eq!(frames[0].device_time_ns, Some(80_272_146_000));
    assert_eq!(frames[0].channel, Some(1));
    // The same row as one datagram (with its CRLF) decodes the same.
    let first = text.split(|&c| c == b'\n').next().unwrap();
    let mut dg = first.to_vec();
    dg.extend_from_slice(b"\r\n");
    assert_eq!(decode_datagram(&dg).unwrap(), frames[0]);
    // Two rows in one datagram are refused.
    let mut two = dg.clone();
    two.extend_from_slice(&dg);
    assert_eq!(reason(&two).1, Reject::MultipleLines);
}

fn esp_csi_classic(values: &str, len: usize) -> String {
    format!(
        "CSI_DATA,17,aa:bb:cc:dd:ee:0f,-52,11,1,7,1,1,0,0,0,1,0,-97,0,6,1,123456789,0,45,0,{len},0,\"[{values}]\""
    )
}

fn esp_csi_c5c6(values: &str, len: usize) -> String {
    format!("CSI_DATA,9,10:20:30:40:50:60,-61,11,-93,12,30,11,4242,200,0,{len},1,\"[{values}]\"")
}

#[test]
fn esp_csi_both_column_sets() {
    let f = decode_datagram(esp_csi_classic("3,-4,0,127,-128,5", 6).as_bytes()).unwrap();
    assert_eq!(f.format, Format::EspCsi);
    assert_eq!(f.seq, Some(17));
    assert_eq!(f.mac, Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f]));
    assert_eq!(
        (f.rssi_dbm, f.noise_floor_dbm, f.channel),
        (Some(-52), Some(-97), Some(6))
    );
    assert_eq!(f.device_time_ns, Some(123_456_789_000));
    // (imag, real) pairs → [re, im]
    assert_eq!(
        f.samples,
        Samples::ComplexI8(vec![[-4, 3], [127, 0], [5, -128]])
    );

    let g = decode_datagram(esp_csi_c5c6("1,2,3,4", 4).as_bytes()).unwrap();
    assert_eq!(g.format, Format::EspCsiC5C6);
    assert_eq!(g.seq, Some(9));
    assert_eq!(
        (g.rssi_dbm, g.noise_floor_dbm, g.channel),
        (Some(-61), Some(-93), Some(11))
    );
    assert_eq!(g.device_time_ns, Some(4_242_000));
    assert_eq!(g.samples, Samples::ComplexI8(vec![[2, 1], [4, 3]]));

    let c = Some(Format::EspCsi);
    assert_eq!(
        reason(esp_csi_classic("1,2,3,4", 6).as_bytes()),
        (c, Reject::LenMismatch)
    );
    assert_eq!(
        reason(esp_csi_classic("1,2,3", 3).as_bytes()),
        (c, Reject::OddCsiValues)
    );
    assert_eq!(
        reason(esp_csi_classic("1,2,300,4", 4).as_bytes()),
        (c, Reject::BadCsiValue)
    );
    assert_eq!(
        reason(esp_csi_classic("1,x,3,4", 4).as_bytes()),
        (c, Reject::BadCsiValue)
    );
    assert_eq!(
        reason(esp_csi_classic("", 0).as_bytes()),
        (c, Reject::BadDimensions)
    );
    let unclosed = esp_csi_classic("1,2", 2).replace("]\"", "");
    assert_eq!(reason(unclosed.as_bytes()), (c, Reject::BadCsiArray));
    let bad_rssi = esp_csi_classic("1,2", 2).replace(",-52,", ",loud,");
    assert_eq!(reason(bad_rssi.as_bytes()), (c, Reject::BadField));
    let bad_mac = esp_csi_c5c6("1,2", 2).replace("10:20:30:40:50:60", "nope");
    assert_eq!(
        reason(bad_mac.as_bytes()),
        (Some(Format::EspCsiC5C6), Reject::BadField)
    );
    assert_eq!(
        reason(b"CSI_DATA,1,aa:bb:cc:dd:ee:ff,-50,\"[1,2]\""),
        (None, Reject::BadColumnCount)
    );
    assert_eq!(
        reason(b"type,id,mac,rssi,rate,sig_mode,mcs,bandwidth,data"),
        (None, Reject::NotCsiLine)
    );
    assert_eq!(
        reason(b"I (1234) wifi: connected"),
        (None, Reject::NotCsiLine)
    );
    assert_eq!(reason(&[0xff, 0xfe, 0x00]), (None, Reject::UnknownFormat));
    assert_eq!(reason(b""), (None, Reject::Empty));
    assert_eq!(reason(&vec![0u8; 70_000]), (None, Reject::TooLarge));
}

fn live(samples: Samples, a: u16, s: u16) -> LiveFrame {
    LiveFrame {
        node: 3,
        session: 0xDEAD_BEEF,
        seq: 41,
        device_time_ns: 1_700_000_000_123_456_789,
        rssi_dbm: Some(-47),
        antennas: a,
        subcarriers: s,
        samples,
    }
}

#[test]
fn live_frame_round_trips_every_sample_type() {
    let cases = [
        live(
            Samples::ComplexI8(vec![[1, -2], [127, -128], [0, 5], [9, 9], [-1, 0], [3, 4]]),
            2,
            3,
        ),
        live(
            Samples::ComplexI16(vec![[1000, -2000], [32767, -32768], [0, 5]]),
            1,
            3,
        ),
        live(Samples::ComplexF32(vec![[0.5, -1.25], [1e-30, 3e30]]), 2, 1),
        live(
            Samples::AmplitudeF32((0..342).map(|i| i as f32 * 0.01).collect()),
            3,
            114,
        ),
    ];
    for fr in cases {
        let b = fr.encode().unwrap();
        assert_eq!(
            b.len(),
            40 + fr.samples.len() * fr.samples.sample_type().bytes()
        );
        assert_eq!(&b[..4], &[0xC5, b'P', b'L', b'F']);
        assert_eq!(b[5], fr.samples.sample_type().code());
        let crc = crc32fast::hash(&b[..b.len() - 4]);
        assert_eq!(&b[b.len() - 4..], &crc.to_le_bytes());
        assert_eq!(LiveFrame::decode(&b).unwrap(), fr);
        let c = decode_datagram(&b).unwrap();
        assert_eq!(c.format, Format::Live);
        assert_eq!(
            (c.node_id, c.session, c.seq),
            (Some(3), Some(0xDEAD_BEEF), Some(41))
        );
        assert_eq!(c.device_time_ns, Some(1_700_000_000_123_456_789));
        assert_eq!(c.rssi_dbm, Some(-47));
        assert_eq!(c.samples, fr.samples);
    }
    // Byte positions of the header fields, as FORMATS.md documents them.
    let b = live(Samples::ComplexI8(vec![[1, 2]]), 1, 1)
        .encode()
        .unwrap();
    assert_eq!(b[4], 1);
    assert_eq!(b[6] as i8, -47);
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 3);
    assert_eq!(
        u32::from_le_bytes(b[12..16].try_into().unwrap()),
        0xDEAD_BEEF
    );
    assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 41);
    assert_eq!(
        u64::from_le_bytes(b[20..28].try_into().unwrap()),
        1_700_000_000_123_456_789
    );
    assert_eq!(u16::from_le_bytes(b[28..30].try_into().unwrap()), 1);
    assert_eq!(u16::from_le_bytes(b[30..32].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 2);
    assert_eq!(&b[36..38], &[1, 2]);
    // Shape errors are refused by the encoder.
    assert!(live(Samples::ComplexI8(vec![[1, 2]]), 2, 1)
        .encode()
        .is_err());
    assert!(live(Samples::ComplexI8(vec![]), 0, 1).encode().is_err());
    assert!(live(Samples::AmplitudeF32(vec![0.0; 20_000]), 1, 20_000)
        .encode()
        .is_err());
}

#[test]
fn live_frame_damage_is_always_rejected() {
    let fr = live(
        Samples::ComplexI16((0..30).map(|i| [i, -i]).collect()),
        3,
        10,
    );
    let b = fr.encode().unwrap();
    // Every single-bit flip anywhere is refused (CRC32 detects all of them).
    let mut reasons = std::collections::BTreeSet::new();
    for i in 0..b.len() {
        for bit in 0..8 {
            let mut d = b.clone();
            d[i] ^= 1 << bit;
            let r = decode_datagram(&d).expect_err("damaged frame accepted");
            reasons.insert(r.reason);
        }
    }
    assert!(reasons.contains(&Reject::BadCrc));
    assert!(reasons.contains(&Reject::BadVersion));
    assert!(reasons.contains(&Reject::BadLength));
    // Truncation at every length.
    for n in 0..b.len() {
        assert!(
            decode_datagram(&b[..n]).is_err(),
            "truncated to {n} accepted"
        );
    }
    // Valid CRC but bad contents: sample type, reserved byte, dimensions, NaN.
    let reseal = |mut d: Vec<u8>| {
        let n = d.len() - 4;
        let crc = crc32fast::hash(&d[..n]);
        d[n..].copy_from_slice(&crc.to_le_bytes());
        d
    };
    let mut d = b.clone();
    d[5] = 9;
    assert_eq!(
        reason(&reseal(d)),
        (Some(Format::Live), Reject::BadSampleType)
    );
    let mut d = b.clone();
    d[7] = 1;
    assert_eq!(
        reason(&reseal(d)),
        (Some(Format::Live), Reject::BadReserved)
    );
    let mut d = b.clone();
    d[28] = 2;
    assert_eq!(
        reason(&reseal(d)),
        (Some(Format::Live), Reject::BadDimensions)
    );
    let nan = live(Samples::AmplitudeF32(vec![1.0, f32::NAN]), 1, 2)
        .encode()
        .unwrap();
    assert_eq!(reason(&nan), (Some(Format::Live), Reject::NonFinite));
}

/// xorshift64*: a fixed, dependency-free generator for the fuzz test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzz_random_and_mutated_datagrams_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seeds: Vec<Vec<u8>> = vec![
        live(Samples::ComplexF32(vec![[1.0, 2.0]; 8]), 2, 4)
            .encode()
            .unwrap(),
        live(Samples::AmplitudeF32(vec![1.0; 12]), 3, 4)
            .encode()
            .unwrap(),
        adr018::encode(&Default::default(), 2, 4, &[[1, 2]; 8]).unwrap(),
        esp_csi_classic("1,2,3,4", 4).into_bytes(),
        esp_csi_c5c6("1,2,3,4", 4).into_bytes(),
        std::fs::read(shared("example_csi.csv")).unwrap()[..600].to_vec(),
    ];
    let pk = pcap_packets("example_4366c0.pcap");
    seeds.push(pk[0][42..].to_vec());
    let pk = pcap_packets("example_4358.pcap");
    seeds.push(pk[0][42..].to_vec());
    let mut counters = Counters::new();
    let iterations = 100_000;
    for it in 0..iterations {
        let d: Vec<u8> = if it % 4 == 0 {
            let n = rng.below(300);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let mut d = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 if !d.is_empty() => {
                        let i = rng.below(d.len());
                        d[i] ^= 1 << rng.below(8);
                    }
                    1 if !d.is_empty() => {
                        let i = rng.below(d.len());
                        d[i] = rng.next() as u8;
                    }
                    2 => {
                        let n = rng.below(d.len() + 1);
                        d.truncate(n);
                    }
                    _ => {
                        let i = rng.below(d.len() + 1);
                        d.insert(i, rng.next() as u8);
                    }
                }
            }
            d
        };
        let r = decode_datagram(&d);
        if let Ok(f) = &r {
            // Never more samples than the input could hold, and the shape is consistent.
            assert!(f.samples.len() <= d.len());
            assert_eq!(
                f.samples.len(),
                f.antennas as usize * f.subcarriers as usize
            );
        }
        counters.count(&r);
        let _ = decode_line(&d);
    }
    assert_eq!(
        counters.total_accepted() + counters.total_rejected(),
        iterations
    );
    assert!(counters.total_rejected() > 0 && counters.total_accepted() > 0);
    eprintln!("fuzz: {}", counters.to_json());
}

#[test]
fn counters_per_format_and_reason() {
    let mut c = Counters::new();
    c.count(&decode_datagram(
        &live(Samples::ComplexI8(vec![[1, 2]]), 1, 1)
            .encode()
            .unwrap(),
    ));
    c.count(&decode_datagram(b""));
    c.count(&decode_datagram(b""));
    let mut o = 0xC511_0002u32.to_le_bytes().to_vec();
    o.push(0);
    c.count(&decode_datagram(&o));
    assert_eq!(c.accepted(Format::Live), 1);
    assert_eq!(c.rejected(None, Reject::Empty), 2);
    assert_eq!(c.rejected(Some(Format::Adr018), Reject::IgnoredType), 1);
    assert_eq!(c.total_ignored(), 1);
    let j = c.to_json();
    assert_eq!(j["accepted"]["live"], 1);
    assert_eq!(j["rejected"]["unknown"]["empty"], 2);
    assert_eq!(j["rejected"]["adr018"]["ignored_type"], 1);
    assert_eq!(j["total_rejected"], 3);
    // Reason strings are stable and unique.
    let names: std::collections::BTreeSet<_> = Reject::ALL.iter().map(|r| r.reason()).collect();
    assert_eq!(names.len(), Reject::ALL.len());
    for r in Reject::ALL {
        assert_eq!(Reject::from_reason(r.reason()), Some(r));
    }
    for f in Format::ALL {
        assert_eq!(Format::from_name(f.name()), Some(f));
    }
}

#[test]
fn line_splitter_bounds_lines() {
    let mut s = LineSplitter::new(8);
    let mut got: Vec<Result<Vec<u8>, Reject>> = Vec::new();
    let mut push = |r: csipose_wire::lines::LineResult<'_>| {
        got.push(r.map(|l| l.to_vec()).map_err(|e| e.reason))
    };
    s.feed(b"abc\r\n12345", &mut push);
    s.feed(b"678\nthis line is far too long", &mut push);
    assert!(s.pending() <= 9);
    s.feed(b" still\nok\n12345678\r\nlast", &mut push);
    s.finish(&mut push);
    assert_eq!(
        got,
        vec![
            Ok(b"abc".to_vec()),
            Ok(b"12345678".to_vec()),
            Err(Reject::TooLarge),
            Ok(b"ok".to_vec()),
            Ok(b"12345678".to_vec()),
            Ok(b"last".to_vec()),
        ]
    );
    assert_eq!(s.overlong(), 1);
}

#[test]
fn decode_stream_counts_every_line() {
    // Two real rows, console noise, a blank line, an over-long line and a row cut off at
    // the end of the stream, fed through a reader that returns 7 bytes at a time.
    let text = std::fs::read(shared("example_csi.csv")).unwrap();
    let mut rows = text.split(|&c| c == b'\n');
    let (r1, r2) = (rows.next().unwrap(), rows.next().unwrap());
    let mut input = Vec::new();
    input.extend_from_slice(r1);
    input.extend_from_slice(b"\r\nI (355) wifi:mode : sta\n\n");
    input.extend_from_slice(&vec![b'x'; 5000]);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(r2);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(&r1[..r1.len() / 2]);
    struct Slow<'a>(&'a [u8]);
    impl std::io::Read for Slow<'_> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(b.len()).min(7);
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut c = Counters::new();
    csipose_wire::lines::decode_stream(Slow(&input), 4096, |r| c.count(&r)).unwrap();
    assert_eq!(c.accepted(Format::Esp32CsiTool), 2);
    assert_eq!(c.rejected(None, Reject::NotCsiLine), 1);
    assert_eq!(c.rejected(None, Reject::TooLarge), 1);
    assert_eq!(
        c.rejected(Some(Format::Esp32CsiTool), Reject::BadCsiArray),
        1
    );
    assert_eq!(c.total_rejected(), 3);
}
