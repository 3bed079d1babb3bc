//! Recording files: round trip, cut-off tails at every length, damage, rotation, and a
//! writer killed with SIGKILL mid-stream.

use csipose_wire::record::{self, part_path, RecordOptions, RecordReader, RecordWriter};
use csipose_wire::Record;
use std::net::SocketAddr;
use std::time::Duration;

fn sample(i: u64) -> Record {
    let source: SocketAddr = if i % 3 == 2 {
        format!("[::1]:{}", 40000 + i % 5).parse().unwrap()
    } else {
        format!("127.0.0.{}:{}", 1 + i % 2, 5500 + i % 7)
            .parse()
            .unwrap()
    };
    Record {
        recv_time_ns: 1_700_000_000_000_000_000 + i * 10_000_000,
        source,
        data: (0..(i * 37 % 300) as usize)
            .map(|k| (k as u64 * 7 + i) as u8)
            .collect(),
    }
}

fn write_all(prefix: &std::path::Path, n: u64, opts: RecordOptions) -> Vec<std::path::PathBuf> {
    let mut w = RecordWriter::create(prefix, opts).unwrap();
    for i in 0..n {
        let r = sample(i);
        w.append(r.recv_time_ns, r.source, &r.data).unwrap();
    }
    assert_eq!(w.records(), n);
    w.finish().unwrap()
}

fn read_all(path: &std::path::Path) -> (Vec<Record>, Option<record::Truncation>) {
    let mut r = RecordReader::open(path).unwrap();
    let recs: Vec<Record> = r.by_ref().collect::<Result<_, _>>().unwrap();
    (recs, r.truncation())
}

#[test]
fn round_trip_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("rec");
    let paths = write_all(&prefix, 50, RecordOptions::default());
    assert_eq!(paths, vec![part_path(&prefix, 0)]);
    assert!(paths[0].to_string_lossy().ends_with("rec-00000.csirec"));
    let (recs, trunc) = read_all(&paths[0]);
    assert_eq!(recs, (0..50).map(sample).collect::<Vec<_>>());
    assert_eq!(trunc, None);
    // A second recording with the same prefix does not overwrite the first.
    let err = RecordWriter::create(&prefix, RecordOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("rec-00000.csirec"), "{err}");
    assert_eq!(read_all(&paths[0]).0.len(), 50);
}

#[test]
fn truncated_tail_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(&dir.path().join("t"), 6, RecordOptions::default());
    let full = std::fs::read(&paths[0]).unwrap();
    // Where each record ends.
    let mut ends = vec![record::HEADER];
    for i in 0..6 {
        ends.push(ends[i] + record::RECORD_OVERHEAD + sample(i as u64).data.len());
    }
    assert_eq!(*ends.last().unwrap(), full.len());
    for len in record::HEADER..full.len() {
        let mut r = RecordReader::new(&full[..len], "cut.csirec").unwrap();
        let recs: Vec<Record> = r.by_ref().collect::<Result<_, _>>().unwrap();
        let trunc = r.truncation();
        let complete = ends.iter().filter(|&&e| e <= len).count() - 1;
        assert_eq!(recs.len(), complete, "cut at {len}");
        assert_eq!(recs, (0..complete as u64).map(sample).collect::<Vec<_>>());
        if ends.contains(&len) {
            assert_eq!(trunc, None, "cut at a record boundary {len}");
        } else {
            let t = trunc.expect("truncation reported");
            assert_eq!(t.offset as usize, ends[complete]);
            assert_eq!(t.got as usize, len - ends[complete]);
            if t.got >= 32 {
                assert_eq!(
                    t.needed.unwrap() as usize,
                    ends[complete + 1] - ends[complete]
                );
            }
        }
    }
    // A cut inside the header is an error naming the file.
    let cut = dir.path().join("cut.csirec");
    std::fs::write(&cut, &full[..20]).unwrap();
    let e = RecordReader::open(&cut).err().unwrap().to_string();
    assert!(e.contains("cut.csirec") && e.contains("header"), "{e}");
}

#[test]
fn damage_is_reported_with_offset() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(&dir.path().join("d"), 4, RecordOptions::default());
    let mut b = std::fs::read(&paths[0]).unwrap();
    let second = record::HEADER + record::RECORD_OVERHEAD + sample(0).data.len();
    b[second + 40] ^= 0x10;
    let bad = dir.path().join("bad.csirec");
    std::fs::write(&bad, &b).unwrap();
    let mut r = RecordReader::open(&bad).unwrap();
    assert_eq!(r.next().unwrap().unwrap(), sample(0));
    let e = r.next().unwrap().unwrap_err();
    assert_eq!(e.offset as usize, second);
    assert!(e.to_string().contains("CRC32"), "{e}");
    assert!(r.next().is_none());
    // A length above the datagram limit is refused before allocating.
    let mut b = std::fs::read(&paths[0]).unwrap();
    b[record::HEADER + 28..record::HEADER + 32].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    let e = RecordReader::open(&bad)
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("exceeds"), "{e}");
    // Not a recording at all.
    std::fs::write(&bad, b"hello").unwrap();
    assert!(RecordReader::open(&bad)
        .err()
        .unwrap()
        .to_string()
        .contains("not a csipose recording"));
}

#[test]
fn rotation_splits_into_numbered_parts() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("rot");
    let limit = 2000u64;
    let opts = RecordOptions {
        max_part_bytes: limit,
        ..Default::default()
    };
    let paths = write_all(&prefix, 60, opts);
    assert!(paths.len() > 3, "{} parts", paths.len());
    let mut all = Vec::new();
    for (k, p) in paths.iter().enumerate() {
        assert_eq!(p, &part_path(&prefix, k as u32));
        let len = std::fs::metadata(p).unwrap().len();
        let r = RecordReader::open(p).unwrap();
        assert_eq!(r.header().part, k as u32);
        let (recs, trunc) = read_all(p);
        assert!(trunc.is_none());
        // Within the limit, unless a single record alone exceeds it.
        assert!(len <= limit || recs.len() == 1, "part {k}: {len} bytes");
        assert!(!recs.is_empty());
        all.extend(recs);
    }
    assert_eq!(all, (0..60).map(sample).collect::<Vec<_>>());
}

/// Child side of `killed_writer_leaves_a_readable_file`: appends until killed.
#[test]
fn child_writer_until_killed() {
    let Ok(prefix) = std::env::var("CSIPOSE_WIRE_KILL_PREFIX") else {
        return; // only runs as the child
    };
    let opts = RecordOptions {
        sync_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let mut w = RecordWriter::create(&prefix, opts).unwrap();
    use std::io::Write;
    let mut out = std::io::stdout();
    for i in 0.. {
        let r = sample(i);
        w.append(r.recv_time_ns, r.source, &r.data).unwrap();
        writeln!(out, "{}", i + 1).unwrap();
        out.flush().unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn killed_writer_leaves_a_readable_file() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("killed");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CSIPOSE_WIRE_KILL_PREFIX", &prefix)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut appended = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while appended < 300 && std::time::Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                if let Ok(n) = l.trim().parse::<u64>() {
                    appended = n;
                }
            }
            _ => break,
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(appended >= 300, "child appended only {appended}");
    let (recs, _trunc) = read_all(&part_path(&prefix, 0));
    // Every record the child had finished appending is there, intact and in order.
    assert!(recs.len() as u64 >= appended, "{} < {appended}", recs.len());
    assert_eq!(recs, (0..recs.len() as u64).map(sample).collect::<Vec<_>>());
}

#[test]
fn fuzz_mutated_recordings_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(&dir.path().join("f"), 12, RecordOptions::default());
    let good = std::fs::read(&paths[0]).unwrap();
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut complete, mut errors, mut cut) = (0, 0, 0);
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + next() % 3 {
            if b.is_empty() {
                break;
            }
            let i = (next() as usize) % b.len();
            match next() % 3 {
                0 => b[i] ^= 1 << (next() % 8),
                1 => b[i] = next() as u8,
                _ => b.truncate(i),
            }
        }
        match RecordReader::new(&b[..], "fuzz.csirec") {
            Err(_) => errors += 1,
            Ok(mut r) => {
                let mut n = 0;
                for rec in r.by_ref() {
                    match rec {
                        Ok(rec) => {
                            assert!(rec.data.len() <= b.len());
                            n += 1;
                        }
                        Err(e) => {
                            assert!(e.offset <= b.len() as u64);
                            errors += 1;
                        }
                    }
                    assert!(n <= 12);
                }
                if r.truncation().is_some() {
                    cut += 1;
                } else {
                    complete += 1;
                }
            }
        }
    }
    assert!(
        complete > 0 && errors > 0 && cut > 0,
        "{complete} {errors} {cut}"
    );
}
