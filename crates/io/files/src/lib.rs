//! Output safety shared by every command that writes: an output never resolves to an input
//! (canonical paths and hard links alike), a folder is replaced only when it is a csipose output
//! of the same kind, and a folder being written is locked against a second writer.
//!
//! The checks are made before any work starts, so a refused command has touched nothing.
//! Also [`AlignedBytes`]: file or byte contents in 4-byte aligned memory for zero-copy readers.

pub mod aligned;
pub use aligned::AlignedBytes;

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why an output was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{output}: output would overwrite the input {input}; choose another output path")]
    OutputIsInput { output: PathBuf, input: PathBuf },
    #[error("{output}: output folder contains the input {input}; choose another output folder")]
    OutputContainsInput { output: PathBuf, input: PathBuf },
    #[error("{dir}: refusing to replace a folder that is not a csipose {kind} ({why}); choose another path or remove it yourself")]
    NotOurs {
        dir: PathBuf,
        kind: OutputKind,
        why: String,
    },
    #[error("{path}: in use by pid {pid} (lock {lock}); wait for it to finish or stop it")]
    InUse {
        path: PathBuf,
        lock: PathBuf,
        pid: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FilesError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        FilesError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, FilesError>;

/// Whether `a` and `b` name the same file or folder: the same canonical path, or the same
/// device and inode (hard links). A path that does not exist is the same as nothing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
            return true;
        }
    }
    let _ = (ma, mb);
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The absolute form of `p` with every existing ancestor resolved (symbolic links followed), so
/// that an output that does not exist yet can still be compared with inputs.
pub fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    // Resolve the longest existing prefix, then append the rest.
    let mut existing = abs.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for n in rest.iter().rev() {
        out.push(n);
    }
    out
}

/// Refuses an output file that resolves to any of `inputs` (same canonical path or same inode).
pub fn check_output_file(output: &Path, inputs: &[&Path]) -> Result<()> {
    let out = resolve(output);
    for input in inputs {
        if resolve(input) == out || same_file(output, input) {
            return Err(FilesError::OutputIsInput {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Refuses an output folder that is, or contains, any of `inputs` (the folder is replaced as a
/// whole, so anything inside it would be lost), or that lies inside an input folder.
pub fn check_output_dir(output: &Path, inputs: &[&Path]) -> Result<()> {
    let out = resolve(output);
    for input in inputs {
        let inp = resolve(input);
        if inp == out || same_file(output, input) {
            return Err(FilesError::OutputIsInput {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
        if inp.starts_with(&out) {
            return Err(FilesError::OutputContainsInput {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The kinds of folder csipose writes, each recognised by the file it always contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A packed dataset (`dataset.json` with `"format": "csipose-packed"`).
    Dataset,
    /// A training run (`config.json` holding the run's `options` and `model`).
    Run,
    /// A simulated MM-Fi-layout tree (`csipose-simulated-tree.json`).
    MmfiTree,
    /// A folder of per-item outputs of one command, marked by `.csipose-output` naming the command.
    Marked(&'static str),
}

impl fmt::Display for OutputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputKind::Dataset => f.write_str("dataset"),
            OutputKind::Run => f.write_str("training run"),
            OutputKind::MmfiTree => f.write_str("simulated MM-Fi tree"),
            OutputKind::Marked(what) => write!(f, "{what} output"),
        }
    }
}

/// The marker file of [`OutputKind::Marked`] folders.
pub const MARKER: &str = ".csipose-output";

impl OutputKind {
    /// Why `dir` (which exists) is not a folder of this kind, or `None` when it is.
    fn mismatch(self, dir: &Path) -> Option<String> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        match self {
            OutputKind::Dataset => match read("dataset.json") {
                None => Some("no dataset.json".into()),
                Some(t) if t.contains("\"csipose-packed\"") => None,
                Some(_) => Some("dataset.json is not a csipose packed dataset".into()),
            },
            OutputKind::Run => match read("config.json") {
                None => Some("no config.json".into()),
                Some(t) if t.contains("\"options\"") && t.contains("\"model\"") => None,
                Some(_) => Some("config.json is not a csipose run config".into()),
            },
            OutputKind::MmfiTree => match read("csipose-simulated-tree.json") {
                None => Some("no csipose-simulated-tree.json".into()),
                Some(_) => None,
            },
            OutputKind::Marked(what) => match read(MARKER) {
                None => Some(format!("no {MARKER}")),
                Some(t) if t.trim() == what => None,
                Some(t) => Some(format!("{MARKER} says {:?}", t.trim())),
            },
        }
    }
}

/// Checks that `dir` may be replaced by an output of `kind`: it does not exist, is an empty
/// folder, or is a csipose output of the same kind. Anything else (a file, a folder of the
/// user's) is refused with a message naming the folder.
pub fn check_replaceable(dir: &Path, kind: OutputKind) -> Result<()> {
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FilesError::io(dir, e)),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(FilesError::NotOurs {
            dir: dir.to_path_buf(),
            kind,
            why: "it is not a folder".into(),
        });
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| FilesError::io(dir, e))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    match kind.mismatch(dir) {
        None => Ok(()),
        Some(why) => Err(FilesError::NotOurs {
            dir: dir.to_path_buf(),
            kind,
            why,
        }),
    }
}

/// Writes the [`MARKER`] of an [`OutputKind::Marked`] folder.
pub fn mark(dir: &Path, what: &str) -> Result<()> {
    let p = dir.join(MARKER);
    std::fs::write(&p, format!("{what}\n")).map_err(|e| FilesError::io(&p, e))
}

/// An advisory lock on an output path (file or folder), held until dropped. The lock file is
/// `.NAME.lock` beside the path (so it survives the path being renamed into place) and holds
/// the owner's pid. The lock is released by the kernel when the process dies, so a killed
/// writer never leaves a folder locked.
#[derive(Debug)]
pub struct PathLock {
    file: File,
    lock: PathBuf,
}

impl PathLock {
    /// Takes the lock or fails at once with "in use by pid N".
    pub fn acquire(path: &Path) -> Result<PathLock> {
        let abs = resolve(path);
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = abs.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(|e| FilesError::io(parent, e))?;
        let lock = parent.join(format!(".{name}.lock"));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(|e| FilesError::io(&lock, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(FilesError::InUse {
                    path: path.to_path_buf(),
                    lock,
                    pid: if pid.is_empty() {
                        "?".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(FilesError::io(&lock, e)),
        }
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            write!(f, "{}", std::process::id())?;
            f.flush()
        };
        write_pid(&mut file).map_err(|e| FilesError::io(&lock, e))?;
        Ok(PathLock { file, lock })
    }

    /// The lock file's path.
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock, then release it.
        let _ = std::fs::remove_file(&self.lock);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_equal_to_input_is_refused_by_path_and_hard_link() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.bin");
        std::fs::write(&a, b"x").unwrap();
        let dotted = d.path().join(".").join("a.bin");
        assert!(matches!(
            check_output_file(&dotted, &[&a]),
            Err(FilesError::OutputIsInput { .. })
        ));
        let link = d.path().join("link.bin");
        std::fs::hard_link(&a, &link).unwrap();
        assert!(check_output_file(&link, &[&a]).is_err());
        assert!(check_output_file(&d.path().join("new.bin"), &[&a]).is_ok());
        // A not-yet-existing output under a symlinked folder still resolves.
        #[cfg(unix)]
        {
            let sub = d.path().join("sub");
            std::fs::create_dir(&sub).unwrap();
            std::fs::write(sub.join("in.bin"), b"y").unwrap();
            let ln = d.path().join("ln");
            std::os::unix::fs::symlink(&sub, &ln).unwrap();
            assert!(check_output_file(&ln.join("in.bin"), &[&sub.join("in.bin")]).is_err());
        }
    }

    #[test]
    fn output_folder_holding_an_input_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("caps").join("x.dat");
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, b"x").unwrap();
        assert!(matches!(
            check_output_dir(&d.path().join("caps"), &[&input]),
            Err(FilesError::OutputContainsInput { .. })
        ));
        assert!(check_output_dir(&d.path().join("out"), &[&input]).is_ok());
    }

    #[test]
    fn only_our_own_folders_are_replaceable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ds");
        assert!(check_replaceable(&p, OutputKind::Dataset).is_ok());
        std::fs::create_dir(&p).unwrap();
        assert!(check_replaceable(&p, OutputKind::Dataset).is_ok());
        std::fs::write(p.join("precious.txt"), b"x").unwrap();
        let e = check_replaceable(&p, OutputKind::Dataset).unwrap_err();
        assert!(e.to_string().contains("not a csipose dataset"), "{e}");
        std::fs::write(p.join("dataset.json"), br#"{"format": "csipose-packed"}"#).unwrap();
        assert!(check_replaceable(&p, OutputKind::Dataset).is_ok());
        assert!(check_replaceable(&p, OutputKind::Run).is_err());
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(check_replaceable(&f, OutputKind::Dataset).is_err());
        let m = d.path().join("m");
        std::fs::create_dir(&m).unwrap();
        mark(&m, "export").unwrap();
        assert!(check_replaceable(&m, OutputKind::Marked("export")).is_ok());
        assert!(check_replaceable(&m, OutputKind::Marked("other")).is_err());
    }

    #[test]
    fn second_lock_names_the_owner_and_release_frees_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run");
        let l = PathLock::acquire(&p).unwrap();
        let e = PathLock::acquire(&p).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("in use by pid {}", std::process::id())),
            "{msg}"
        );
        drop(l);
        assert!(!d.path().join(".run.lock").exists());
        let _l2 = PathLock::acquire(&p).unwrap();
    }
}
