//! Nothing is left out without being counted: each reader's `skips()` names, by reason,
//! every record it read but did not yield as a frame, and inputs with a byte-order mark or an
//! Ethernet FCS after the UDP payload decode every frame.

use csipose_capture::any::{self, PacketGrouper};
use csipose_capture::{esp32, intel5300, nexmon, skips, Complex, Format};
use std::path::PathBuf;

fn shared(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/captures"
    ))
    .join(name)
}

fn nexmon_frame(seq: u16, core: u8, nfft: usize) -> nexmon::Frame {
    nexmon::Frame {
        offset: 0,
        ts_sec: 7,
        ts_frac: 9,
        rssi: -40,
        frame_control: 0x80,
        source_mac: [1, 2, 3, 4, 5, 6],
        sequence: seq,
        core,
        spatial_stream: 0,
        chanspec: 0x1001,
        chip_version: nexmon::Chip::Bcm43455c0.version(),
        chip: nexmon::Chip::Bcm43455c0,
        bandwidth_mhz: (nfft * 5 / 16) as u32,
        csi: (0..nfft)
            .map(|i| Complex::new(i as f64, -(i as f64)))
            .collect(),
    }
}

/// Rewrites every packet of a little-endian pcap with `extra` bytes appended (and
/// `incl_len`/`orig_len` grown to match), as a capture that keeps the Ethernet FCS has.
fn append_to_packets(pcap: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = pcap[..24].to_vec();
    let mut at = 24;
    while at < pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.extend_from_slice(&pcap[at..at + 8]);
        let n = (incl + extra.len()) as u32;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&pcap[at + 16..at + 16 + incl]);
        out.extend_from_slice(extra);
        at += 16 + incl;
    }
    out
}

#[test]
fn nexmon_packets_with_a_trailing_fcs_decode_from_the_udp_length() {
    let frames: Vec<_> = (0..5).map(|i| nexmon_frame(i, 0, 64)).collect();
    let mut plain = Vec::new();
    nexmon::write_int16_pcap(&mut plain, &frames).unwrap();
    let fcs = append_to_packets(&plain, &[0xde, 0xad, 0xbe, 0xef]);
    let mut r = nexmon::Reader::new(&fcs[..], Default::default());
    let got: Vec<_> = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(got.len(), 5, "skipped: {}", r.skips());
    assert!(r.skips().is_empty(), "{}", r.skips());
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(
            (&g.csi, g.sequence, g.bandwidth_mhz),
            (&f.csi, f.sequence, 20)
        );
    }
}

#[test]
fn nexmon_packets_cut_by_the_snapshot_length_are_counted() {
    let frames: Vec<_> = (0..3).map(|i| nexmon_frame(i, 0, 64)).collect();
    let mut pcap = Vec::new();
    nexmon::write_int16_pcap(&mut pcap, &frames).unwrap();
    // Cut the second packet's capture 10 bytes short (orig_len keeps the full size).
    let rec = 16 + nexmon::CSI_OFFSET + 4 * 64;
    let second = 24 + rec;
    let mut cut = pcap[..second + 8].to_vec();
    cut.extend_from_slice(&((rec - 16 - 10) as u32).to_le_bytes());
    cut.extend_from_slice(&pcap[second + 12..second + rec - 10]);
    cut.extend_from_slice(&pcap[second + rec..]);
    let mut r = nexmon::Reader::new(&cut[..], Default::default());
    let got: Vec<_> = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(r.skips().count(nexmon::SKIP_CUT), 1, "{}", r.skips());
    assert_eq!(r.skips().total(), 1);
}

#[test]
fn nexmon_non_csi_packets_are_counted_by_reason() {
    let mut pcap = Vec::new();
    nexmon::write_int16_pcap(&mut pcap, &[nexmon_frame(1, 0, 64)]).unwrap();
    let rec = pcap[24..].to_vec();
    let mut more = pcap.clone();
    // An ARP-sized non-IP packet, and a UDP packet without the nexmon magic.
    let mut arp = rec[..16].to_vec();
    arp[8..16].copy_from_slice(&[42, 0, 0, 0, 42, 0, 0, 0]);
    arp.extend_from_slice(&[0u8; 42]);
    more.extend_from_slice(&arp);
    let mut nomagic = rec.clone();
    nomagic[16 + nexmon::NEXMON_HEADER] = 0x22;
    more.extend_from_slice(&nomagic);
    let mut r = nexmon::Reader::new(&more[..], Default::default());
    assert_eq!(r.by_ref().filter(|x| x.is_ok()).count(), 1);
    assert_eq!(r.skips().count(nexmon::SKIP_NOT_UDP), 1, "{}", r.skips());
    assert_eq!(r.skips().count(nexmon::SKIP_NO_MAGIC), 1, "{}", r.skips());
}

#[test]
fn nexmon_bad_pcap_magic_is_fatal_not_skippable() {
    let mut bytes = [0u8; 64];
    bytes[..4].copy_from_slice(&0x0a0d_0d0au32.to_le_bytes());
    let mut r = nexmon::Reader::new(&bytes[..], Default::default());
    let e = r.next().unwrap().unwrap_err();
    assert!(e.is_fatal() && !e.is_truncation(), "{e}");
    assert!(r.next().is_none());
    assert_eq!(r.skips().count(skips::UNREADABLE), 1);
}

#[test]
fn intel_length_zero_record_is_fatal() {
    let mut r = intel5300::Reader::new(&[0u8, 0, 0xbb, 1, 2, 3][..]);
    let e = r.next().unwrap().unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(r.next().is_none());
}

#[test]
fn intel_other_codes_are_counted_per_code() {
    let bytes = std::fs::read(shared("example.dat")).unwrap();
    let mut with_other = vec![0u8, 3, 0xc1, 9, 9];
    with_other.extend_from_slice(&bytes);
    with_other.extend_from_slice(&[0, 2, 0xc1, 9]);
    let mut r = intel5300::Reader::new(&with_other[..]);
    let n = r.by_ref().filter(|x| x.is_ok()).count();
    assert_eq!(n, 26);
    assert_eq!(r.skips().count(&intel5300::skip_other_code(0xc1)), 2);
}

#[test]
fn esp32_byte_order_mark_keeps_the_first_frame() {
    let plain = std::fs::read(shared("example_csi.csv")).unwrap();
    let want: Vec<_> = esp32::Reader::new(&plain[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&plain);
    let mut r = esp32::Reader::new(&bom[..]);
    let got: Vec<_> = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(got[0].csi, want[0].csi);
    assert!(r.skips().is_empty(), "{}", r.skips());
    // With a header row first, the BOM opens the header and the header still counts.
    let frames = vec![got[0].clone()];
    let mut with_header = b"\xef\xbb\xbf".to_vec();
    esp32::write_frames(&mut with_header, &frames, true).unwrap();
    let mut r = esp32::Reader::new(&with_header[..]);
    assert_eq!(r.by_ref().filter(|x| x.is_ok()).count(), 1);
    assert!(r.skips().is_empty(), "{}", r.skips());
    // Detection agrees.
    assert_eq!(csipose_capture::detect(&bom), Ok(Format::Esp32));
}

#[test]
fn esp32_console_lines_and_bad_rows_are_counted() {
    let plain = std::fs::read_to_string(shared("example_csi.csv")).unwrap();
    let first = plain.lines().next().unwrap();
    let text = format!("boot: ok\n\n{first}\nCSI_DATA,AP,x,notanumber,[1 2]\n{first}\n");
    let mut r = esp32::Reader::new(text.as_bytes());
    let items: Vec<_> = r.by_ref().collect();
    assert_eq!(items.iter().filter(|x| x.is_ok()).count(), 2);
    assert_eq!(r.skips().count(esp32::SKIP_NOT_CSI), 1);
    assert_eq!(r.skips().count(esp32::SKIP_BLANK), 1);
    assert_eq!(r.skips().count(esp32::SKIP_BAD_ROW), 1);
}

#[test]
fn empty_file_is_refused_even_with_an_explicit_format() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("empty.pcap");
    std::fs::write(&p, b"").unwrap();
    for f in [None, Some(Format::Nexmon), Some(Format::Esp32)] {
        let e = any::open(&p, f, Default::default()).err().unwrap();
        assert!(e.contains("empty.pcap") && e.contains("empty"), "{e}");
    }
}

#[test]
fn any_reader_exposes_the_readers_counts() {
    let opts = nexmon::Options {
        chip: None,
        bandwidth_mhz: Some(40),
    };
    let mut r = any::open(&shared("example_4366c0.pcap"), None, opts).unwrap();
    assert_eq!(r.by_ref().count(), 0);
    assert_eq!(r.skips().count(&nexmon::skip_other_bandwidth(80, 40)), 293);
}

#[test]
fn grouper_counts_the_frames_it_leaves_out() {
    let mut g = PacketGrouper::new();
    let mut ss1 = nexmon_frame(1, 0, 64);
    ss1.spatial_stream = 1;
    let mut packets = Vec::new();
    for f in [
        nexmon_frame(1, 0, 64),
        nexmon_frame(1, 1, 64),
        ss1,
        nexmon_frame(1, 1, 64),
        nexmon_frame(1, 2, 128),
    ] {
        packets.extend(g.push(any::Frame::Nexmon(f)));
    }
    packets.extend(g.flush());
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].antennas, 2);
    assert_eq!(g.skips().count(any::SKIP_OTHER_STREAM), 1);
    assert_eq!(g.skips().count(any::SKIP_REPEATED_CORE), 1);
    assert_eq!(g.skips().count(any::SKIP_OTHER_WIDTH), 1);
}

#[test]
fn esp32_with_console_lines_first_is_detected() {
    let plain = std::fs::read(shared("example_csi.csv")).unwrap();
    let mut noisy = b"I (312) boot: ESP-IDF v4.3\nI (320) wifi: connected\n".to_vec();
    noisy.extend_from_slice(&plain);
    assert_eq!(csipose_capture::detect(&noisy), Ok(Format::Esp32));
    let e = csipose_capture::detect(b"hello\nworld\n").unwrap_err();
    assert!(
        e.contains("esp32: the file is text but has no `CSI_DATA` row"),
        "{e}"
    );
}

#[test]
fn nexmon_csi_of_no_bandwidth_size_is_counted() {
    let mut f = nexmon_frame(1, 0, 64);
    f.csi.truncate(60);
    let mut pcap = Vec::new();
    nexmon::write_int16_pcap(&mut pcap, &[f, nexmon_frame(2, 0, 64)]).unwrap();
    let mut r = nexmon::Reader::new(&pcap[..], Default::default());
    assert_eq!(r.by_ref().filter(|x| x.is_ok()).count(), 1);
    assert_eq!(r.skips().count(nexmon::SKIP_ODD_SIZE), 1, "{}", r.skips());
}
