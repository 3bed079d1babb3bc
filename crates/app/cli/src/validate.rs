//! Option validation shared by the subcommands, run before any work starts: float options must
//! be finite and inside their range, thread counts are capped, and the command line is recorded
//! without assuming UTF-8. Every message names the flag, the value and what was expected.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Which ends of a float range are included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// `[lo, hi]`
    Closed,
    /// `(lo, hi]`
    OpenLow,
}

/// Checks that `v` (the value of `flag`) is finite and inside the range; returns it.
pub fn float(flag: &str, v: f64, lo: f64, hi: f64, ends: Ends) -> Result<f64> {
    let ok = v.is_finite()
        && v <= hi
        && match ends {
            Ends::Closed => v >= lo,
            Ends::OpenLow => v > lo,
        };
    if !ok {
        let range = match ends {
            Ends::Closed => format!("[{lo}, {hi}]"),
            Ends::OpenLow => format!("({lo}, {hi}]"),
        };
        bail!("{flag} {v} is not a finite number in {range}");
    }
    Ok(v)
}

/// [`float`] over a closed range `[lo, hi]`.
pub fn closed(flag: &str, v: f64, lo: f64, hi: f64) -> Result<f64> {
    float(flag, v, lo, hi, Ends::Closed)
}

/// [`float`] over `(lo, hi]` (e.g. a learning rate: positive).
pub fn above(flag: &str, v: f64, lo: f64, hi: f64) -> Result<f64> {
    float(flag, v, lo, hi, Ends::OpenLow)
}

/// Checks that an integer option is at least `min`.
pub fn at_least(flag: &str, v: usize, min: usize) -> Result<usize> {
    if v < min {
        bail!("{flag} {v} must be at least {min}");
    }
    Ok(v)
}

/// Threads beyond this many per available core only add contention (and an absurd request such
/// as 100000 would spawn that many OS threads).
pub const THREADS_PER_CORE: usize = 4;

/// The most worker threads any `--threads` option gets on this machine.
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores * THREADS_PER_CORE
}

/// Caps a thread count at [`max_threads`] and says so on stderr when it does. `0` stays `0`
/// (for the options where it means "all cores").
pub fn threads(flag: &str, n: usize) -> usize {
    let max = max_threads();
    if n > max {
        eprintln!(
            "note: {flag} {n} capped to {max} ({THREADS_PER_CORE} per available core; \
             more only adds contention)"
        );
        max
    } else {
        n
    }
}

/// The command line as given, for provenance: arguments that are not UTF-8 are recorded
/// lossily (U+FFFD) instead of failing after the work is done.
pub fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The input paths an output must not replace: each given path and, for a folder (a packed
/// dataset, a training run), the files directly inside it.
pub fn inputs(paths: &[Option<&Path>]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for p in paths.iter().flatten() {
        v.push(p.to_path_buf());
        if let Ok(rd) = std::fs::read_dir(p) {
            v.extend(rd.flatten().map(|e| e.path()));
        }
    }
    v
}

/// Refuses an output file (given by `flag`) that resolves to one of `inputs` (canonical paths
/// and hard links alike).
pub fn output_file(flag: &str, output: &Path, inputs: &[PathBuf]) -> Result<()> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    csipose_files::check_output_file(output, &inputs).map_err(|e| anyhow::anyhow!("{flag} {e}"))
}

/// Refuses an output folder that is one of `inputs` or contains one.
pub fn output_dir(flag: &str, output: &Path, inputs: &[PathBuf]) -> Result<()> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    csipose_files::check_output_dir(output, &inputs).map_err(|e| anyhow::anyhow!("{flag} {e}"))
}

/// Refuses two outputs of one command that resolve to the same path (the second would replace
/// the first).
pub fn distinct_outputs(outputs: &[(&str, Option<&Path>)]) -> Result<()> {
    for (i, (fa, a)) in outputs.iter().enumerate() {
        for (fb, b) in &outputs[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if csipose_files::resolve(a) == csipose_files::resolve(b) {
                    bail!(
                        "{fa} and {fb} are both {}: give them different paths",
                        a.display()
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_name_flag_value_and_range() {
        assert_eq!(closed("--k", 0.2, 0.0, 1.0).unwrap(), 0.2);
        assert_eq!(closed("--k", 0.0, 0.0, 1.0).unwrap(), 0.0);
        assert_eq!(above("--lr", 1e-3, 0.0, 1.0).unwrap(), 1e-3);
        let cases = [
            (
                closed("--snr-db", f64::NAN, -40.0, 200.0),
                "--snr-db NaN is not a finite number in [-40, 200]",
            ),
            (
                closed("--ratio", 1.5, 0.0, 1.0),
                "--ratio 1.5 is not a finite number in [0, 1]",
            ),
            (closed("--k", f64::INFINITY, 0.0, 1.0), "--k inf"),
            (
                above("--lr", 0.0, 0.0, 1.0),
                "--lr 0 is not a finite number in (0, 1]",
            ),
            (above("--lr", -1.0, 0.0, 1.0), "(0, 1]"),
        ];
        for (r, want) in cases {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }

    #[test]
    fn threads_are_capped() {
        let max = max_threads();
        assert!(max >= THREADS_PER_CORE);
        assert_eq!(threads("--threads", 100_000), max);
        assert_eq!(threads("--threads", 1), 1);
        assert_eq!(threads("--threads", 0), 0);
    }

    #[test]
    fn outputs_must_differ_from_inputs_and_each_other() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.npy");
        std::fs::write(&a, b"x").unwrap();
        let dotted = d.path().join(".").join("a.npy");
        let e = output_file("--out", &dotted, &inputs(&[None, Some(&a)])).unwrap_err();
        assert!(e.to_string().starts_with("--out "), "{e}");
        assert!(e.to_string().contains("would overwrite the input"), "{e}");
        // A file inside an input folder is an input too.
        assert!(output_file("--out", &dotted, &inputs(&[Some(d.path())])).is_err());
        assert!(output_file("--out", &d.path().join("b.npy"), &inputs(&[Some(&a)])).is_ok());
        assert!(output_dir("--out", d.path(), &inputs(&[Some(&a)])).is_err());
        let e = distinct_outputs(&[("--out", Some(&a)), ("--json", Some(&dotted))]).unwrap_err();
        assert!(e.to_string().contains("--out and --json"), "{e}");
        assert!(distinct_outputs(&[("--out", Some(&a)), ("--json", None)]).is_ok());
    }

    /// Property check over many values (a deterministic stand-in for the `options` fuzz
    /// target, so CI runs it): accepted exactly when finite and in range.
    #[test]
    fn floats_accept_exactly_the_finite_values_in_range() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let special = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1.0,
            -1.0,
            1e300,
            f64::MIN_POSITIVE,
        ];
        for i in 0..20_000 {
            let mut pick = || {
                let r = next();
                if r % 4 == 0 {
                    special[(r >> 8) as usize % special.len()]
                } else if r % 4 == 1 {
                    f64::from_bits(next())
                } else {
                    (next() % 2001) as f64 / 100.0 - 10.0
                }
            };
            let (v, lo, hi) = (pick(), pick(), pick());
            let want = v.is_finite() && lo <= v && v <= hi;
            match closed("--x", v, lo, hi) {
                Ok(got) => assert!(want && got == v, "#{i}: {v} in [{lo}, {hi}]"),
                Err(e) => assert!(!want && e.to_string().starts_with("--x "), "#{i}: {v}: {e}"),
            }
            let want = v.is_finite() && lo < v && v <= hi;
            assert_eq!(
                above("--x", v, lo, hi).is_ok(),
                want,
                "#{i}: {v} in ({lo}, {hi}]"
            );
        }
    }
}
