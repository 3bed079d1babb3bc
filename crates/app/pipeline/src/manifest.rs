//! Activity manifests: a CSV `file,label` (header optional; relative paths are relative to the
//! manifest; lines starting with `#` are comments). A row is one of
//! - a CSI capture (any format `csipose-capture` reads, detected from its content) or a `.npy`
//!   of amplitudes `[packets, channels]`, with a class number;
//! - one sequence of a packed dataset, `DIR#S03/A12` or `DIR#E01/S03/A12`, with a class number;
//! - a `.npy` of windows `[windows, channels, samples]` (ESP32-HAR's `-x.npy`) whose label is a
//!   `.npy` of one label per window (`-y.npy`): text labels (`<U15`) or class numbers. Each
//!   window is one example.
//!
//! Text labels become class numbers through the manifest's `#classes,NAME,NAME,...` line (class
//! 0 is the first name); a manifest with text labels must have it, so every manifest of one
//! dataset numbers the classes the same way.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Where one manifest row's data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A capture or amplitude `.npy` file: one example.
    File(PathBuf),
    /// One (environment, subject, action) sequence of a packed dataset: one example.
    Packed {
        dir: PathBuf,
        environment: Option<i32>,
        subject: i32,
        action: i32,
    },
    /// A `.npy` of windows `[windows, channels, samples]` and its per-window labels: one example
    /// per window.
    Windows { x: PathBuf, y: PathBuf },
}

impl Source {
    /// How the row is written in a manifest (and named in messages).
    pub fn display(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Windows { x, .. } => x.display().to_string(),
            Source::Packed {
                dir,
                environment,
                subject,
                action,
            } => match environment {
                Some(e) => format!("{}#E{e:02}/S{subject:02}/A{action:02}", dir.display()),
                None => format!("{}#S{subject:02}/A{action:02}", dir.display()),
            },
        }
    }

    /// Parses a row's file part (`path`, `DIR#S03/A12`); `base` resolves relative paths.
    pub fn parse(file: &str, base: &Path) -> Result<Source, String> {
        match file.trim().rsplit_once('#') {
            Some((dir, key)) => {
                let (environment, subject, action) = parse_sequence_key(key)?;
                Ok(Source::Packed {
                    dir: base.join(dir),
                    environment,
                    subject,
                    action,
                })
            }
            None => Ok(Source::File(base.join(file.trim()))),
        }
    }
}

/// One manifest row: its source and, for single-example rows, its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub source: Source,
    /// The class of a single-example row; `None` for windows (their labels are per window).
    pub label: Option<usize>,
}

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub path: PathBuf,
    pub rows: Vec<Row>,
    /// The `#classes` line: class names in class-number order.
    pub classes: Option<Vec<String>>,
}

/// Parses the part after `#`: `S03/A12` or `E01/S03/A12` (letters case-insensitive).
pub fn parse_sequence_key(key: &str) -> Result<(Option<i32>, i32, i32), String> {
    let parts: Vec<&str> = key.trim().split('/').collect();
    let field = |s: &str, letter: char| -> Result<i32, String> {
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if c.eq_ignore_ascii_case(&letter) => chars
                .as_str()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{s:?} is not {letter} followed by a number >= 1")),
            _ => Err(format!("expected {letter}<number>, found {s:?}")),
        }
    };
    match parts.as_slice() {
        [s, a] => Ok((None, field(s, 'S')?, field(a, 'A')?)),
        [e, s, a] => Ok((Some(field(e, 'E')?), field(s, 'S')?, field(a, 'A')?)),
        _ => Err(format!(
            "sequence {key:?} should be S<subject>/A<action> or E<env>/S<subject>/A<action>"
        )),
    }
}

/// Reads a manifest. Errors name the file and line.
pub fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    let mut classes: Option<Vec<String>> = None;
    let mut first_row = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let at = || format!("{}:{}", path.display(), n + 1);
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case("classes") {
                let names: Vec<String> = rest[7..]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if names.is_empty() {
                    bail!("{}: #classes names no class", at());
                }
                if let Some(d) = names
                    .iter()
                    .enumerate()
                    .find_map(|(i, a)| names[..i].contains(a).then_some(a))
                {
                    bail!("{}: class {d:?} is named twice", at());
                }
                if classes.replace(names).is_some() {
                    bail!("{}: a second #classes line", at());
                }
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if std::mem::take(&mut first_row) && line.eq_ignore_ascii_case("file,label") {
            continue;
        }
        let (file, label) = line
            .rsplit_once(',')
            .with_context(|| format!("{}: expected `file,label`", at()))?;
        let label = label.trim();
        if label.to_ascii_lowercase().ends_with(".npy") {
            let file = file.trim();
            if !file.to_ascii_lowercase().ends_with(".npy") || file.contains('#') {
                bail!(
                    "{}: per-window labels ({label}) need a .npy of windows [windows, channels, samples], not {file:?}",
                    at()
                );
            }
            rows.push(Row {
                source: Source::Windows {
                    x: base.join(file),
                    y: base.join(label),
                },
                label: None,
            });
            continue;
        }
        let label: usize = label.parse().with_context(|| {
            format!(
                "{}: label {label:?} is not a class number or a .npy of labels",
                at()
            )
        })?;
        let source = Source::parse(file, base).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        rows.push(Row {
            source,
            label: Some(label),
        });
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(Manifest {
        path: path.to_path_buf(),
        rows,
        classes,
    })
}

/// The text of a manifest listing every `NAME-x.npy` with its `NAME-y.npy` in `dirs` (sorted by
/// name), with a `#classes` line: `classes` as given, else the sorted distinct text labels of
/// the files. Paths are written as `prefix` joined with the file name of each dir's entry
/// (`prefix` = how the manifest will reach the dirs).
pub fn windows_manifest(
    dirs: &[(PathBuf, PathBuf)],
    classes: Option<Vec<String>>,
) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (dir, written) in dirs {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with("-x.npy"))
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("{}: no *-x.npy windows", dir.display());
        }
        for x in names {
            let y = format!("{}-y.npy", x.trim_end_matches("-x.npy"));
            if !dir.join(&y).exists() {
                bail!("{}: {x} has no {y}", dir.display());
            }
            if classes.is_none() {
                let labels = csipose_npy::read_strings(dir.join(&y))?;
                seen.extend(labels.data);
            }
            rows.push(format!(
                "{},{}\n",
                written.join(&x).display(),
                written.join(&y).display()
            ));
        }
    }
    let classes = classes.unwrap_or_else(|| seen.into_iter().collect());
    Ok(format!(
        "#classes,{}\nfile,label\n{}",
        classes.join(","),
        rows.concat()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_row_kind_and_the_class_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(
            &p,
            "#classes, SIT ,STAND\n# a comment\nfile,label\na.dat,1\nds#E01/S03/A12,0\nw-x.npy,w-y.npy\n",
        )
        .unwrap();
        let m = read_manifest(&p).unwrap();
        assert_eq!(
            m.classes,
            Some(vec!["SIT".to_string(), "STAND".to_string()])
        );
        assert_eq!(m.rows.len(), 3);
        assert_eq!(m.rows[0].source, Source::File(dir.path().join("a.dat")));
        assert_eq!(m.rows[0].label, Some(1));
        assert!(matches!(
            &m.rows[1].source,
            Source::Packed {
                environment: Some(1),
                subject: 3,
                action: 12,
                ..
            }
        ));
        assert_eq!(
            m.rows[2],
            Row {
                source: Source::Windows {
                    x: dir.path().join("w-x.npy"),
                    y: dir.path().join("w-y.npy")
                },
                label: None
            }
        );
        for (text, want) in [
            ("a.dat,x\n", "m.csv:1"),
            ("a.dat,w-y.npy\n", "per-window labels"),
            ("#classes,A,A\na.npy,0\n", "named twice"),
            ("#classes\na.npy,0\n", "no class"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = format!("{:#}", read_manifest(&p).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
