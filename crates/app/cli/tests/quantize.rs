//! `csipose quantize` end to end on a small synthetic run: fp32, int8 and int4 (QAT) model
//! files that parse and hold exactly the weights the command evaluated, the size breakdown,
//! torso-PCK of fp32 vs quantized, and clear errors for bad arguments.

mod common;

use common::{csipose, ok, synthetic};
use std::path::Path;

#[test]
fn quantize_fp32_int8_and_int4_qat() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic(&data, 300);
    let run = dir.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    ok(&[
        "train", "--data", d, "--model", "micro", "--epochs", "1", "--batch", "32", "--out", r,
    ]);
    let (_, ema) =
        csipose_train::checkpoint::load_model(&run.join("checkpoint.safetensors")).unwrap();
    let file = |n: &str| dir.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // fp32: the file holds the checkpoint's EMA weights exactly; the run's dataset is found
    let out = ok(&[
        "quantize",
        "--checkpoint",
        r,
        "--bits",
        "32",
        "--out",
        &s(&file("m32.csm")),
    ]);
    assert!(out.contains("torso-PCK@20"), "{out}");
    let (cfg, w) = csipose_quantize::from_csm(&file("m32.csm")).unwrap();
    assert_eq!(cfg.name, "micro");
    assert_eq!(w, ema);

    // int8 per channel with JSON: sizes add up, the file matches quantize() of the EMA
    let json = file("m8.json");
    ok(&[
        "quantize",
        "--checkpoint",
        r,
        "--bits",
        "8",
        "--per-channel",
        "--data",
        d,
        "--out",
        &s(&file("m8.csm")),
        "--json",
        &s(&json),
    ]);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let size = std::fs::metadata(file("m8.csm")).unwrap().len();
    assert_eq!(j["bytes"]["total"], size);
    assert!(j["torso_pck20"]["quantized"].is_number());
    let spec = csipose_quantize::Spec {
        keep_f32: vec!["graph.output.weight".into()],
        ..csipose_quantize::Spec::new(csipose_quantize::Bits::I8, true)
    };
    let (_, w8) = csipose_quantize::from_csm(&file("m8.csm")).unwrap();
    let expect = csipose_quantize::quantize(&cfg, &ema, &spec)
        .unwrap()
        .dequantize();
    assert_eq!(w8, expect);
    assert!((size as f64) < 0.35 * std::fs::metadata(file("m32.csm")).unwrap().len() as f64);

    // int4 QAT: one epoch, a resumable QAT run directory, the file is int4
    let out = ok(&[
        "quantize",
        "--checkpoint",
        r,
        "--bits",
        "4",
        "--qat",
        "--epochs",
        "1",
        "--keep-f32",
        "none",
        "--out",
        &s(&file("m4.csm")),
    ]);
    assert!(
        out.contains("int4 per-tensor QAT") && out.contains("PTQ (no QAT)"),
        "{out}"
    );
    assert!(file("m4.qat").join("checkpoint.safetensors").exists());
    // The QAT run folder is marked as ours, and locked while a fine-tune writes it.
    assert_eq!(
        std::fs::read_to_string(file("m4.qat").join(".csipose-output")).unwrap(),
        "quantize --qat\n"
    );
    let qat_args = |qrun: &str, out: &str| -> Vec<String> {
        [
            "quantize",
            "--checkpoint",
            r,
            "--bits",
            "4",
            "--qat",
            "--epochs",
            "1",
            "--qat-run",
            qrun,
            "--out",
            out,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let before = std::fs::read(file("m4.qat").join("checkpoint.safetensors")).unwrap();
    {
        let _held = csipose_files::PathLock::acquire(&file("m4.qat")).unwrap();
        let a = qat_args(&s(&file("m4.qat")), &s(&file("m4b.csm")));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        common::refused(&a, "in use by pid");
    }
    assert_eq!(
        std::fs::read(file("m4.qat").join("checkpoint.safetensors")).unwrap(),
        before
    );
    assert!(!file("m4b.csm").exists());
    // A folder of the user's, or the dataset, is never a QAT run folder.
    let mine = file("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    for (qrun, want) in [
        (s(&mine), "not a csipose quantize --qat output"),
        (d.to_string(), "--qat-run"),
    ] {
        let a = qat_args(&qrun, &s(&file("m4c.csm")));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        common::refused(&a, want);
    }
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
    assert!(!file("m4c.csm").exists());
    let buf = csipose_files::AlignedBytes::read(&file("m4.csm")).unwrap();
    let f = csipose_runtime::ModelFile::parse(buf.bytes()).unwrap();
    assert_eq!(f.precision(), csipose_runtime::Dtype::I4);
    let b = csipose_quantize::breakdown(&f);
    assert_eq!(b.f32_values + b.quantized_values, cfg.param_count());

    // errors, not panics
    for (args, want) in [
        (vec!["--bits", "32", "--qat"], "--qat needs --bits 8 or 4"),
        (
            vec!["--bits", "4", "--keep-f32", "head.0.bias"],
            "not a Linear weight",
        ),
        (vec!["--bits", "5"], "invalid value"),
    ] {
        let mut a = vec!["quantize", "--checkpoint", r, "--out"];
        let o = s(&file("x.csm"));
        a.push(&o);
        a.extend(args);
        let out = csipose(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{a:?}: {err}");
    }
    let out = csipose(&[
        "quantize",
        "--checkpoint",
        "/nonexistent/run",
        "--bits",
        "8",
        "--out",
        "x.csm",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/run"));
    assert!(!file("x.csm").exists());
}
