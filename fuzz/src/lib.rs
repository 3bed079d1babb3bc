//! Shared bodies of the cargo-fuzz targets: one macro for the capture readers (one target per
//! format plus detection), and the properties the loader and option targets check. Each file in
//! `fuzz_targets/` is a one-line use of these.

pub use libfuzzer_sys;

use csipose_capture::any::Reader;
use csipose_capture::Format;

/// Reads `data` as `format` to the end: no panic, no endless loop (at most one item per input
/// byte, plus one), and every frame and error offset inside the input.
pub fn check_capture(data: &[u8], format: Format) {
    let reader = Reader::new(
        std::io::Cursor::new(data.to_vec()),
        format,
        Default::default(),
    );
    for (n, item) in reader.enumerate() {
        assert!(n <= data.len() + 1, "more items than input bytes");
        match item {
            Ok(frame) => {
                assert!(frame.offset() < data.len() as u64);
                let _ = frame.metadata();
                let (a, s, amp) = frame.rx_amplitudes();
                assert_eq!(amp.len(), a * s);
            }
            Err(e) => assert!(
                e.offset <= data.len() as u64,
                "offset {} past end",
                e.offset
            ),
        }
    }
}

/// A capture fuzz target: `capture_target!(Intel5300)` reads every input as that format;
/// `capture_target!(detect)` detects the format first and then reads it.
#[macro_export]
macro_rules! capture_target {
    (detect) => {
        $crate::libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            if let Ok(format) = csipose_capture::detect(data) {
                $crate::check_capture(data, format);
            }
        });
    };
    ($format:ident) => {
        $crate::libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            $crate::check_capture(data, csipose_capture::Format::$format);
        });
    };
}

/// A training checkpoint (safetensors with JSON metadata) from arbitrary bytes: both loaders
/// return an error or a model, never panic. The bytes go through a file because the loaders
/// take paths (they memory-map).
pub fn check_checkpoint(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("csipose-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("checkpoint.safetensors");
    std::fs::write(&path, data).expect("write temp checkpoint");
    if let Ok((model, w)) = csipose_train::checkpoint::load_model(&path) {
        assert_eq!(w.len(), model.layout.total);
    }
    let _ = csipose_train::checkpoint::load(&path);
}

/// A `.csm` model file from arbitrary bytes: parse, then (when it parses) the quantize crate's
/// reading back of its weights; errors only.
pub fn check_model_file(data: &[u8]) {
    // The format needs 4-byte aligned memory.
    let mut words = vec![0u32; data.len().div_ceil(4)];
    // SAFETY: the u32 buffer viewed as bytes, within its length (u8 has no alignment needs).
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, data.len()) };
    bytes.copy_from_slice(data);
    if let Ok(file) = csipose_runtime::ModelFile::parse(bytes) {
        let _ = csipose_quantize::from_model_file(&file);
    }
}

/// A `.rvne` activity model from arbitrary bytes: an error or a model whose re-encoding parses.
pub fn check_rvne(data: &[u8]) {
    if let Ok(m) = csipose_temporal::model::ActivityModel::from_rvne(data) {
        let again = m.to_rvne(false).expect("a parsed model re-encodes");
        let back =
            csipose_temporal::model::ActivityModel::from_rvne(&again).expect("and parses again");
        assert_eq!(back.meta, m.meta, "the META section survives re-encoding");
    }
}

/// The CLI's option validation, compiled here from its source.
#[path = "../../crates/app/cli/src/validate.rs"]
pub mod validate;

/// Reads little-endian f64s from `data` (missing bytes are zero).
fn f64s<const N: usize>(data: &[u8]) -> [f64; N] {
    let mut out = [0.0; N];
    for (i, v) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        for (j, x) in b.iter_mut().enumerate() {
            *x = data.get(i * 8 + j).copied().unwrap_or(0);
        }
        *v = f64::from_le_bytes(b);
    }
    out
}

/// Option validation on arbitrary values: `validate::closed` accepts exactly the finite values
/// in range and names the flag otherwise; the simulator's settings pass the CLI's check exactly
/// when they pass `SimConfig::validate`, and a config that passes simulates a frame without a
/// panic and with finite features; thread counts never exceed the cap.
pub fn check_options(data: &[u8]) {
    let [v, lo, hi] = f64s::<3>(data);
    let want = v.is_finite() && lo <= v && v <= hi;
    match validate::closed("--x", v, lo, hi) {
        Ok(got) => assert!(want && got == v, "{v} accepted in [{lo}, {hi}]"),
        Err(e) => assert!(!want && e.to_string().starts_with("--x "), "{v}: {e}"),
    }
    let n = data
        .iter()
        .fold(0usize, |a, &b| a.wrapping_mul(31).wrapping_add(b as usize));
    assert!(validate::threads("--threads", n) <= validate::max_threads().max(n.min(1)));

    let f = f64s::<7>(data.get(24..).unwrap_or(&[]));
    let cfg = csipose_sim::SimConfig {
        snr_db: f[0],
        agc_jitter_db: f[1],
        subcarrier_dropout: f[2],
        packet_dropout: f[3],
        position_jitter_m: f[4],
        heading_jitter_rad: f[5],
        body_rcs_scale: f[6],
        ..Default::default()
    };
    let cli_ok = cfg
        .float_settings()
        .iter()
        .all(|&(flag, v, lo, hi)| validate::closed(flag, v, lo, hi).is_ok());
    assert_eq!(cli_ok, cfg.validate().is_ok());
    if cli_ok {
        let seq = csipose_sim::Simulator::new(cfg).sequence(csipose_sim::SequenceSpec {
            env: 1,
            subject: 1,
            action: 1 + (data.len() % 27) as u32,
            frames: 1,
        });
        assert_eq!(seq.empty_frames, 0);
        assert!(seq.x.iter().all(|v| v.is_finite()));
    }
}

/// `.npy` bytes (a header and data, as the ESPectre and ESP32-HAR files are read) into every
/// element type and as text: an error or an array whose element count matches its shape,
/// never a panic.
pub fn check_npy(data: &[u8]) {
    let path = std::path::Path::new("fuzz.npy");
    fn shape_holds<T>(a: &csipose_npy::Array<T>) {
        assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
    }
    if let Ok(a) = csipose_npy::from_bytes::<f32>(data, path) {
        shape_holds(&a);
    }
    if let Ok(a) = csipose_npy::from_bytes::<f64>(data, path) {
        shape_holds(&a);
    }
    if let Ok(a) = csipose_npy::from_bytes::<i64>(data, path) {
        shape_holds(&a);
    }
    if let Ok(a) = csipose_npy::from_bytes::<u8>(data, path) {
        shape_holds(&a);
    }
    if let Ok(a) = csipose_npy::strings_from_bytes(data, path) {
        shape_holds(&a);
    }
}

/// An `.npz` archive from arbitrary bytes (through a temporary file: the reader takes a path):
/// opening it and reading every member as numbers and as text gives errors or arrays, never a
/// panic.
pub fn check_npz(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("csipose-fuzz-npz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("fuzz.npz");
    std::fs::write(&path, data).expect("temp file");
    if let Ok(mut z) = csipose_npy::Npz::open(&path) {
        for name in z.names() {
            let _ = z.read::<f32>(&name);
            let _ = z.read_strings(&name);
        }
    }
}
