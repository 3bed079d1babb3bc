//! Opening and reading a packed dataset must not copy X into memory twice: the bound is
//! 1.2x the dataset's size in RAM. Checked here on a 7,000-frame MM-Fi-shaped set (~96 MB) by
//! the process's resident set size (Linux `/proc/self/status`), alone in its own test binary.

use csipose_dataset::packed::FrameMeta;
use csipose_dataset::{DatasetInfo, HardwareProfile, KeypointLayout, PackedDataset, PackedWriter};

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn reading_every_frame_stays_within_1_2x_of_the_dataset_size() {
    if rss_bytes().is_none() {
        eprintln!("no /proc/self/status: skipping the resident-memory check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("ds");
    let info = DatasetInfo::new(
        HardwareProfile::mmfi(),
        KeypointLayout::Coco17_2d,
        "memory-test",
    );
    let mut w = PackedWriter::create(&dest, info).unwrap();
    let frames = 7_000;
    let fl = HardwareProfile::mmfi().frame_len();
    let mut x = vec![0f32; 100 * fl];
    let y = vec![0.5f32; 100 * 34];
    for chunk in 0..frames / 100 {
        for (i, v) in x.iter_mut().enumerate() {
            *v = ((i + chunk) % 97) as f32 / 97.0;
        }
        let meta: Vec<FrameMeta> = (0..100)
            .map(|i| FrameMeta {
                environment: 1,
                subject: 1,
                action: 1,
                frame: (chunk * 100 + i + 1) as i32,
            })
            .collect();
        w.push(&x, &y, &meta).unwrap();
    }
    drop(x);
    w.finish().unwrap();
    let size: u64 = ["X.npy", "Y.npy", "meta.npy"]
        .iter()
        .map(|f| std::fs::metadata(dest.join(f)).unwrap().len())
        .sum();

    let before = rss_bytes().unwrap();
    let ds = PackedDataset::open(&dest).unwrap();
    let mut sum = 0f64;
    for i in 0..ds.len() {
        sum += ds.x(i).iter().map(|&v| v as f64).sum::<f64>();
        sum += ds.y(i)[0] as f64 + ds.meta(i).frame as f64;
    }
    let after = rss_bytes().unwrap();
    assert!(sum > 0.0);
    let grown = after.saturating_sub(before);
    assert!(
        grown as f64 <= 1.2 * size as f64,
        "reading {size} bytes of dataset grew the resident set by {grown} bytes"
    );
}
