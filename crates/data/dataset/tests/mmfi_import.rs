//! MM-Fi import checks against ../shared/mmfi-mini and its expected.npz (the official toolbox output).

use csipose_dataset::mat;
use csipose_dataset::mmfi::{
    import_mmfi, ImportOptions, ImportSummary, KeypointSource, NoProgress,
};
use csipose_dataset::preprocess::Repair;
use csipose_dataset::{KeypointLayout, PackedDataset};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn mini() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/mmfi-mini"
    ))
}

/// Header (dtype, shape) of a member of expected.npz, read with csipose_npy's header parser.
fn npz_header(name: &str) -> (String, Vec<usize>) {
    let f = std::fs::File::open(mini().join("expected.npz")).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut bytes = Vec::new();
    z.by_name(&format!("{name}.npy"))
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let h = csipose_npy::parse_header(&bytes).unwrap();
    (h.dtype.descr(), h.shape)
}

fn npy_header(path: &Path) -> (String, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let h = csipose_npy::parse_header(&bytes).unwrap();
    (h.dtype.descr(), h.shape)
}

struct Expected {
    csi: Vec<f64>,
    rgb: Vec<f64>,
    gt: Vec<f64>,
    meta: Vec<i64>,
}

fn expected() -> Expected {
    assert_eq!(npz_header("csi"), ("<f8".into(), vec![19, 3, 114, 10]));
    assert_eq!(npz_header("rgb_keypoints"), ("<f8".into(), vec![19, 17, 2]));
    assert_eq!(npz_header("ground_truth"), ("<f8".into(), vec![19, 17, 3]));
    assert_eq!(
        npz_header("env_subject_action_frame"),
        ("<i8".into(), vec![19, 4])
    );
    let mut z = csipose_npy::Npz::open(mini().join("expected.npz")).unwrap();
    Expected {
        csi: z.read::<f64>("csi").unwrap().data,
        rgb: z.read::<f64>("rgb_keypoints").unwrap().data,
        gt: z.read::<f64>("ground_truth").unwrap().data,
        meta: z.read::<i64>("env_subject_action_frame").unwrap().data,
    }
}

fn opts(keypoints: KeypointSource) -> ImportOptions {
    ImportOptions {
        keypoints,
        batch_frames: 7, // several batches even on the mini set
        ..ImportOptions::default()
    }
}

fn import(root: &Path, out: &Path, o: &ImportOptions) -> ImportSummary {
    import_mmfi(root, out, o, &NoProgress).unwrap()
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 1e-6,
            "{what}[{i}]: got {g}, expected {w}"
        );
    }
}

fn check_meta(ds: &PackedDataset, want: &[i64]) {
    let got: Vec<i64> = ds.meta_all().iter().map(|&v| v as i64).collect();
    assert_eq!(got, want);
}

#[test]
fn tree_import_equals_expected_and_skips_the_empty_frame() {
    let exp = expected();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds");
    let s = import(&mini(), &out, &opts(KeypointSource::Rgb));
    assert_eq!(s.frame_files, 20);
    assert_eq!(s.written, 19);
    assert_eq!(s.sequences, 4);
    assert_eq!(
        s.skipped_empty,
        vec![mini().join("E01/S01/A02/wifi-csi/frame004.mat")]
    );
    assert!(s.skipped_bad.is_empty() && s.skipped_no_finite.is_empty());
    assert!(
        s.filled_values > 0,
        "mini frames hold inf/NaN that the toolbox fills"
    );
    let text = s.to_string();
    assert!(text.contains("E01/S01/A02/wifi-csi/frame004.mat"), "{text}");

    assert_eq!(
        npy_header(&out.join("X.npy")),
        ("<f4".into(), vec![19, 3, 114, 10])
    );
    assert_eq!(
        npy_header(&out.join("Y.npy")),
        ("<f4".into(), vec![19, 17, 2])
    );
    assert_eq!(
        npy_header(&out.join("meta.npy")),
        ("<i4".into(), vec![19, 4])
    );
    let ds = PackedDataset::open(&out).unwrap();
    assert_eq!(ds.info.keypoints, KeypointLayout::Coco17_2d);
    assert_eq!(ds.info.source, "mmfi-import");
    assert_close(ds.x_all(), &exp.csi, "X");
    let want_y: Vec<f64> = exp
        .rgb
        .chunks_exact(2)
        .flat_map(|p| [p[0] / 640.0, p[1] / 480.0])
        .collect();
    assert_close(ds.y_all(), &want_y, "Y");
    check_meta(&ds, &exp.meta);

    let p = &ds.info.provenance;
    assert_eq!(p["counts"]["written"], 19);
    assert_eq!(p["counts"]["skipped_empty"], 1);
    assert_eq!(p["options"]["keypoints"], "rgb");
    assert_eq!(p["options"]["image_size"], serde_json::json!([640, 480]));
    assert!(p["skipped_files"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("frame004.mat"));
    assert!(!out.join("phase.npy").exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn gt3d_import_equals_expected_ground_truth() {
    let exp = expected();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds3d");
    let s = import(&mini(), &out, &opts(KeypointSource::Gt3d));
    assert_eq!(s.written, 19);
    let ds = PackedDataset::open(&out).unwrap();
    assert_eq!(ds.info.keypoints, KeypointLayout::H36m17_3d);
    assert_close(ds.y_all(), &exp.gt, "Y (gt3d)");
    assert_close(ds.x_all(), &exp.csi, "X");
    check_meta(&ds, &exp.meta);
}

#[test]
fn image_size_scales_rgb_keypoints() {
    let exp = expected();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds");
    let o = ImportOptions {
        image_size: (1280, 960),
        ..opts(KeypointSource::Rgb)
    };
    import(&mini(), &out, &o);
    let ds = PackedDataset::open(&out).unwrap();
    let want_y: Vec<f64> = exp
        .rgb
        .chunks_exact(2)
        .flat_map(|p| [p[0] / 1280.0, p[1] / 960.0])
        .collect();
    assert_close(ds.y_all(), &want_y, "Y");
}

#[test]
fn phase_is_written_raw_with_nonfinite_as_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ds");
    let o = ImportOptions {
        with_phase: true,
        ..opts(KeypointSource::Rgb)
    };
    let s = import(&mini(), &out, &o);
    assert_eq!(
        npy_header(&out.join("phase.npy")),
        ("<f4".into(), vec![19, 3, 114, 10])
    );
    let phase = csipose_npy::read::<f64>(out.join("phase.npy")).unwrap();
    // Frame 10 in sorted order is E01/S02/A01 frame001 (a zlib-compressed file).
    let ds = PackedDataset::open(&out).unwrap();
    let m = ds.meta(10);
    assert_eq!((m.environment, m.subject, m.action, m.frame), (1, 2, 1, 1));
    let path = mini().join("E01/S02/A01/wifi-csi/frame001.mat");
    let bytes = std::fs::read(&path).unwrap();
    let mf = mat::read_variables(&bytes, &path).unwrap();
    let raw = &mf.get("CSIphase").unwrap().data;
    let got = &phase.data[10 * 3420..11 * 3420];
    let mut nonfinite = 0;
    for (g, r) in got.iter().zip(raw) {
        if r.is_finite() {
            assert!((g - r).abs() <= 1e-5 * r.abs().max(1.0), "{g} vs {r}");
        } else {
            nonfinite += 1;
            assert_eq!(*g, 0.0);
        }
    }
    let total = s.phase_nonfinite.unwrap();
    assert!(total >= nonfinite);
    let ex = &ds.info.provenance["extra_arrays"]["phase.npy"];
    assert_eq!(ex["nonfinite_set_to_zero"], total);
    assert_eq!(ex["shape"], serde_json::json!([19, 3, 114, 10]));
}

/// Copies a directory tree (files become writable).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::write(&dest, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

/// Zips each environment directory of `tree` into `zips/E0x.zip` with entries `E0x/...`,
/// mixing deflated and stored entries and forcing zip64 extra fields on some.
fn zip_environments(tree: &Path, zips: &Path) {
    std::fs::create_dir_all(zips).unwrap();
    for env in ["E01", "E02"] {
        let file = std::fs::File::create(zips.join(format!("{env}.zip"))).unwrap();
        let mut w = zip::ZipWriter::new(file);
        let mut files = Vec::new();
        fn walk(dir: &Path, rel: &str, files: &mut Vec<(String, PathBuf)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = format!("{rel}/{}", e.file_name().to_string_lossy());
                if e.path().is_dir() {
                    walk(&e.path(), &name, files);
                } else {
                    files.push((name, e.path()));
                }
            }
        }
        walk(&tree.join(env), env, &mut files);
        // Reverse order: the importer must sort, not trust the archive order.
        files.reverse();
        w.add_directory::<_, ()>(format!("{env}/"), Default::default())
            .unwrap();
        for (i, (name, path)) in files.iter().enumerate() {
            let method = if i % 3 == 0 {
                zip::CompressionMethod::Stored
            } else {
                zip::CompressionMethod::Deflated
            };
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(method)
                .large_file(i % 2 == 0);
            w.start_file(name.as_str(), o).unwrap();
            w.write_all(&std::fs::read(path).unwrap()).unwrap();
        }
        w.finish().unwrap();
    }
}

#[test]
fn zip_archives_import_equals_tree_import() {
    let tmp = tempfile::tempdir().unwrap();
    let zips = tmp.path().join("zips");
    zip_environments(&mini(), &zips);
    assert!(
        zip64_local_headers(&std::fs::read(zips.join("E01.zip")).unwrap()) > 0,
        "the test archive exercises zip64 extra fields"
    );
    for kp in [KeypointSource::Rgb, KeypointSource::Gt3d] {
        let a = tmp.path().join("from_tree");
        let b = tmp.path().join("from_zip");
        let sa = import(&mini(), &a, &opts(kp));
        let sb = import(&zips, &b, &opts(kp));
        assert_eq!(sb.archives.len(), 2);
        assert_eq!(sa.written, sb.written);
        assert_eq!(sb.skipped_empty.len(), 1);
        assert!(
            sb.skipped_empty[0]
                .to_string_lossy()
                .ends_with("E01.zip!/E01/S01/A02/wifi-csi/frame004.mat"),
            "{:?}",
            sb.skipped_empty
        );
        for f in ["X.npy", "Y.npy", "meta.npy"] {
            assert!(
                std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                "{f} differs between tree and zip import ({kp:?})"
            );
        }
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
    // A single archive given directly as ROOT.
    let c = tmp.path().join("only_e02");
    let s = import(&zips.join("E02.zip"), &c, &opts(KeypointSource::Rgb));
    assert_eq!(s.written, 5);
    let ds = PackedDataset::open(&c).unwrap();
    assert_eq!(ds.meta(0).environment, 2);
}

/// Local file headers carrying a zip64 extended-information extra field (id 0x0001).
fn zip64_local_headers(zip: &[u8]) -> usize {
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let mut count = 0;
    let mut i = 0;
    while i + 30 <= zip.len() {
        if &zip[i..i + 4] != b"PK\x03\x04" {
            i += 1;
            continue;
        }
        let (name_len, extra_len) = (u16_at(i + 26), u16_at(i + 28));
        let mut e = i + 30 + name_len;
        let end = e + extra_len;
        while e + 4 <= end {
            if u16_at(e) == 1 {
                count += 1;
            }
            e += 4 + u16_at(e + 2);
        }
        i = end;
    }
    count
}

fn only_entry(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn corrupted_mat_is_named_and_skip_bad_lists_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&mini(), &tree);
    let bad = tree.join("E01/S02/A01/wifi-csi/frame002.mat");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..1000]).unwrap();
    let outs = tmp.path().join("outs");
    std::fs::create_dir(&outs).unwrap();
    let out = outs.join("ds");
    let err = import_mmfi(&tree, &out, &opts(KeypointSource::Rgb), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("byte "), "{err}");
    assert!(!out.exists(), "a failed import leaves no output");
    assert!(
        only_entry(&outs).is_empty(),
        "no temporary left: {:?}",
        only_entry(&outs)
    );

    let o = ImportOptions {
        skip_bad: true,
        ..opts(KeypointSource::Rgb)
    };
    let s = import(&tree, &out, &o);
    assert_eq!(s.written, 18);
    assert_eq!(s.skipped_bad.len(), 1);
    assert_eq!(s.skipped_bad[0].file, bad);
    assert!(s.to_string().contains(&bad.display().to_string()));
    let ds = PackedDataset::open(&out).unwrap();
    assert_eq!(ds.len(), 18);
    assert!((0..18).all(|i| {
        let m = ds.meta(i);
        !(m.subject == 2 && m.frame == 2)
    }));
    assert_eq!(ds.info.provenance["counts"]["skipped_bad_frames"], 1);
}

#[test]
fn missing_key_wrong_shape_and_missing_rgb_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&mini(), &tree);
    let out = tmp.path().join("ds");
    // The uncompressed frames hold CSIamp first: its dims at bytes 160..172, its name at 184.
    let f = tree.join("E02/S11/A03/wifi-csi/frame003.mat");
    let orig = std::fs::read(&f).unwrap();
    assert_eq!(&orig[184..190], b"CSIamp");

    let mut renamed = orig.clone();
    renamed[189] = b'X';
    std::fs::write(&f, &renamed).unwrap();
    let err = import_mmfi(&tree, &out, &opts(KeypointSource::Rgb), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&f.display().to_string()), "{err}");
    assert!(err.contains("no numeric variable `CSIamp`"), "{err}");
    assert!(err.contains("CSIamX"), "{err}");

    let mut reshaped = orig.clone();
    reshaped[160..164].copy_from_slice(&114u32.to_le_bytes());
    reshaped[164..168].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&f, &reshaped).unwrap();
    let err = import_mmfi(&tree, &out, &opts(KeypointSource::Rgb), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&f.display().to_string()), "{err}");
    assert!(err.contains("shape [114, 3, 10]"), "{err}");
    std::fs::write(&f, &orig).unwrap();

    let rgb = tree.join("E01/S01/A01/rgb/frame005.npy");
    std::fs::remove_file(&rgb).unwrap();
    let err = import_mmfi(&tree, &out, &opts(KeypointSource::Rgb), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&rgb.display().to_string()), "{err}");
    assert!(err.contains("missing rgb"), "{err}");
    // gt3d does not need the rgb file.
    assert_eq!(import(&tree, &out, &opts(KeypointSource::Gt3d)).written, 19);
    assert!(!tmp.path().join("ds").join("phase.npy").exists());
}

#[test]
fn short_ground_truth_is_an_error_or_skips_its_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&mini(), &tree);
    let gt = tree.join("E01/S01/A01/ground_truth.npy");
    let a = csipose_npy::read::<f64>(&gt).unwrap();
    assert_eq!(a.shape[1..], [17, 3]);
    csipose_npy::write(&gt, &[4, 17, 3], &a.data[..4 * 51]).unwrap();
    let out = tmp.path().join("ds");
    let err = import_mmfi(&tree, &out, &opts(KeypointSource::Gt3d), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&gt.display().to_string()), "{err}");
    assert!(err.contains("has 4 frames"), "{err}");
    assert!(!out.exists());
    // rgb mode does not read the ground truth.
    assert_eq!(import(&tree, &out, &opts(KeypointSource::Rgb)).written, 19);
    let o = ImportOptions {
        skip_bad: true,
        ..opts(KeypointSource::Gt3d)
    };
    let s = import(&tree, &out, &o);
    assert_eq!(s.written, 13, "the 6 frames of E01/S01/A01 are skipped");
    assert_eq!(s.skipped_bad.len(), 1);
    assert_eq!(s.skipped_bad[0].file, gt);
    assert_eq!(s.skipped_bad[0].frames, 6);
}

#[test]
fn frames_without_finite_values_and_repairs_are_counted() {
    // Build frames whose CSIamp is all inf (refused) and has a packet without finite values
    // (repaired), by rewriting the doubles of an uncompressed mini frame.
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&mini(), &tree);
    let f = tree.join("E02/S11/A03/wifi-csi/frame002.mat");
    let orig = std::fs::read(&f).unwrap();
    let data_at = 200; // real part of CSIamp: tag at 192, 3420 doubles from 200
    assert_eq!(&orig[192..196], &9u32.to_le_bytes());
    let mut all_inf = orig.clone();
    for i in 0..3420 {
        all_inf[data_at + 8 * i..data_at + 8 * i + 8].copy_from_slice(&f64::INFINITY.to_le_bytes());
    }
    std::fs::write(&f, &all_inf).unwrap();
    let g = tree.join("E02/S11/A03/wifi-csi/frame005.mat");
    let mut one_nan_packet = std::fs::read(&g).unwrap();
    // Column-major (3, 114, 10): packet p holds linear indices 342p .. 342p + 341.
    for i in 342 * 4..342 * 5 {
        one_nan_packet[data_at + 8 * i..data_at + 8 * i + 8]
            .copy_from_slice(&f64::NAN.to_le_bytes());
    }
    std::fs::write(&g, &one_nan_packet).unwrap();
    let out = tmp.path().join("ds");
    let s = import(&tree, &out, &opts(KeypointSource::Rgb));
    assert_eq!(s.written, 18);
    assert_eq!(s.skipped_no_finite, vec![f.clone()]);
    assert_eq!(s.repaired_frames, 1);
    assert_eq!(s.repairs.get(&Repair::EmptyPacket), Some(&1));
    let ds = PackedDataset::open(&out).unwrap();
    let last = ds.len() - 1;
    assert_eq!(ds.meta(last).frame, 5);
    assert!(ds.x(last).iter().all(|v| v.is_finite()));
    assert_eq!(ds.info.provenance["counts"]["repairs"]["empty_packet"], 1);
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_a_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("precious.txt");
    std::fs::write(&keep, "x").unwrap();
    let err = import_mmfi(&mini(), tmp.path(), &opts(KeypointSource::Rgb), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing to replace"), "{err}");
    assert!(keep.exists());
    // An existing dataset is replaced.
    let out = tmp.path().join("ds");
    import(&mini(), &out, &opts(KeypointSource::Rgb));
    import(&mini(), &out, &opts(KeypointSource::Gt3d));
    let ds = PackedDataset::open(&out).unwrap();
    assert_eq!(ds.info.keypoints, KeypointLayout::H36m17_3d);
}

#[test]
fn empty_root_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = import_mmfi(
        tmp.path(),
        &tmp.path().join("ds"),
        &opts(KeypointSource::Rgb),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no MM-Fi data found"), "{err}");
}

#[test]
fn real_frames_parse_in_both_storage_forms() {
    // frame001 of E01/S01/A01 is zlib-compressed (miCOMPRESSED), frame002 is not.
    for name in ["frame001.mat", "frame002.mat"] {
        let p = mini().join("E01/S01/A01/wifi-csi").join(name);
        let bytes = std::fs::read(&p).unwrap();
        let m = mat::read_variables(&bytes, &p).unwrap();
        for v in ["CSIamp", "CSIphase"] {
            let a = m.get(v).unwrap();
            assert_eq!(a.dims, vec![3, 114, 10], "{name} {v}");
            assert_eq!(a.class, mat::MatClass::Double);
            assert_eq!(a.data.len(), 3420);
        }
        let only = mat::read_variables_named(&bytes, &p, &["CSIamp"]).unwrap();
        assert!(only.get("CSIphase").is_none());
        assert_eq!(only.get("CSIamp"), m.get("CSIamp"));
        assert_eq!(only.skipped.len(), 1);
    }
}

#[test]
fn zip_errors_name_the_archive_entry_and_duplicates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&mini(), &tree);
    let bad = tree.join("E02/S11/A03/wifi-csi/frame002.mat");
    std::fs::write(&bad, b"not a mat file").unwrap();
    let zips = tmp.path().join("zips");
    zip_environments(&tree, &zips);
    let out = tmp.path().join("ds");
    let err = import_mmfi(&zips, &out, &opts(KeypointSource::Rgb), &NoProgress)
        .unwrap_err()
        .to_string();
    let want = format!(
        "{}!/E02/S11/A03/wifi-csi/frame002.mat",
        zips.join("E02.zip").display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!out.exists());
    let o = ImportOptions {
        skip_bad: true,
        ..opts(KeypointSource::Rgb)
    };
    let s = import(&zips, &out, &o);
    assert_eq!(s.written, 18);
    assert_eq!(s.skipped_bad[0].file, PathBuf::from(&want));

    // E02 both extracted and zipped under one root: every frame twice, refused.
    let mixed = tmp.path().join("mixed");
    copy_tree(&mini().join("E02"), &mixed.join("E02"));
    std::fs::copy(zips.join("E02.zip"), mixed.join("E02.zip")).unwrap();
    let err = import_mmfi(
        &mixed,
        &tmp.path().join("ds2"),
        &opts(KeypointSource::Rgb),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("duplicate of"), "{err}");
    assert!(err.contains("E02.zip!/E02/S11/A03/"), "{err}");
    // E01 extracted and E02 zipped: a valid mix.
    let mix_ok = tmp.path().join("mix_ok");
    copy_tree(&mini().join("E01"), &mix_ok.join("E01"));
    std::fs::copy(zips.join("E02.zip"), mix_ok.join("E02.zip")).unwrap();
    let s = import(&mix_ok, &tmp.path().join("ds3"), &o);
    assert_eq!(s.written, 18, "{s}");
}

#[test]
fn frame_zero_is_refused_with_gt3d_in_trees_and_zips_and_skipped_with_skip_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_tree(&mini(), &tree);
    // E02/S11/A03 has frames 1-5: add a frame 0 (a copy of frame 1) with its rgb file.
    let seq = tree.join("E02/S11/A03");
    std::fs::copy(
        seq.join("wifi-csi/frame001.mat"),
        seq.join("wifi-csi/frame000.mat"),
    )
    .unwrap();
    std::fs::copy(seq.join("rgb/frame001.npy"), seq.join("rgb/frame000.npy")).unwrap();
    let zips = tmp.path().join("zips");
    zip_environments(&tree, &zips);
    for root in [&tree, &zips] {
        let out = tmp.path().join("ds");
        let err = import_mmfi(root, &out, &opts(KeypointSource::Gt3d), &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(err.contains("frame000.mat"), "{err}");
        assert!(err.contains("numbered from 1"), "{err}");
        assert!(!out.exists());
        let o = ImportOptions {
            skip_bad: true,
            ..opts(KeypointSource::Gt3d)
        };
        let s = import(root, &out, &o);
        assert_eq!(s.written, 14, "the 6 frames of E02/S11/A03 are skipped");
        assert_eq!(s.skipped_bad.len(), 1);
        assert_eq!(s.skipped_bad[0].frames, 6);
        // rgb keypoints do not index the ground truth: frame 0 imports.
        assert_eq!(import(root, &out, &opts(KeypointSource::Rgb)).written, 20);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
