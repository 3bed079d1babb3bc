//! Writing `.npy` files atomically: data goes to a temporary name in the
//! destination directory and is renamed into place only once complete.

use crate::header::{build_header, build_header_len, DType};
use crate::read::Scalar;
use crate::{NpyError, Result};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An element type that `.npy` files can hold.
pub trait Element: Copy + 'static {
    const DTYPE: DType;
    fn to_le(&self, out: &mut Vec<u8>);
    fn from_f64_or_i64(s: Scalar) -> Self;
}

/// Writes `data` with `shape` to `path` atomically.
pub fn write<T: Element>(path: impl AsRef<Path>, shape: &[usize], data: &[T]) -> Result<()> {
    let path = path.as_ref();
    let mut f = AtomicFile::create(path)?;
    write_to(&mut f, shape, data).map_err(|e| NpyError::io(path, e))?;
    f.commit()
}

/// Writes `.npy` bytes to any writer (for archives and streams).
pub fn write_to<T: Element, W: Write>(
    w: &mut W,
    shape: &[usize],
    data: &[T],
) -> std::io::Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "shape {shape:?} holds {n} elements but {} were given",
                data.len()
            ),
        ));
    }
    w.write_all(&build_header(T::DTYPE, shape))?;
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in data.chunks(8192) {
        buf.clear();
        for v in chunk {
            v.to_le(&mut buf);
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Streams rows of a `.npy` array whose first dimension is not known up front.
/// A 128-byte header is reserved and rewritten by [`NpyStreamWriter::finish`].
pub struct NpyStreamWriter<T: Element> {
    file: AtomicFile,
    row_shape: Vec<usize>,
    row_len: usize,
    rows: usize,
    buf: Vec<u8>,
    _t: std::marker::PhantomData<T>,
}

const STREAM_HEADER: usize = 128;

impl<T: Element> NpyStreamWriter<T> {
    /// `row_shape` is the shape of one row (everything after the first dimension).
    pub fn create(path: impl AsRef<Path>, row_shape: &[usize]) -> Result<Self> {
        let mut file = AtomicFile::create(path)?;
        let h = build_header_len(T::DTYPE, &[0], STREAM_HEADER);
        file.write_all(&vec![b' '; h.len()])
            .map_err(|e| NpyError::io(&file.dest, e))?;
        Ok(Self {
            file,
            row_shape: row_shape.to_vec(),
            row_len: row_shape.iter().product(),
            rows: 0,
            buf: Vec::new(),
            _t: std::marker::PhantomData,
        })
    }

    /// Appends whole rows (`data.len()` must be a multiple of the row length).
    pub fn push(&mut self, data: &[T]) -> Result<()> {
        if self.row_len == 0 || !data.len().is_multiple_of(self.row_len) {
            return Err(NpyError::format(
                &self.file.dest,
                0,
                format!(
                    "pushed {} values, not a whole number of rows of {}",
                    data.len(),
                    self.row_len
                ),
            ));
        }
        self.buf.clear();
        for v in data {
            v.to_le(&mut self.buf);
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| NpyError::io(&self.file.dest, e))?;
        self.rows += data.len() / self.row_len;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the final header and renames the file into place; returns the row count.
    pub fn finish(mut self) -> Result<usize> {
        let mut shape = vec![self.rows];
        shape.extend_from_slice(&self.row_shape);
        let h = build_header_len(T::DTYPE, &shape, STREAM_HEADER);
        if h.len() != STREAM_HEADER {
            return Err(NpyError::format(
                &self.file.dest,
                0,
                "shape too long for a streamed header",
            ));
        }
        let dest = self.file.dest.clone();
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| NpyError::io(&dest, e))?;
        self.file
            .write_all(&h)
            .map_err(|e| NpyError::io(&dest, e))?;
        self.file.commit()?;
        Ok(self.rows)
    }
}

/// A file written under a temporary name and renamed to its final name by [`AtomicFile::commit`].
/// Dropped without commit, the temporary file is removed: no half output is left behind.
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| {
            // Name what the user gave, not the temporary name, when the folder is missing.
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                let msg = format!("the output folder {} does not exist", parent.display());
                NpyError::io(
                    &dest,
                    std::io::Error::new(std::io::ErrorKind::NotFound, msg),
                )
            } else {
                NpyError::io(&tmp, e)
            }
        })?;
        Ok(Self {
            tmp,
            dest,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let w = self.file.take().expect("committed twice");
        let f = w
            .into_inner()
            .map_err(|e| NpyError::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| NpyError::io(&self.tmp, e))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| NpyError::io(&self.dest, e))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("write after commit").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("flush after commit").flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.as_mut().expect("seek after commit").seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_atomic_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.npy");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_output_folder_is_named_not_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("nodir").join("a.npy");
        let e = AtomicFile::create(&dest).err().unwrap().to_string();
        assert!(
            e.contains("a.npy") && e.contains("nodir does not exist"),
            "{e}"
        );
        assert!(!e.contains(".tmp-"), "{e}");
    }

    #[test]
    fn stream_writer_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        let mut w = NpyStreamWriter::<i32>::create(&p, &[4]).unwrap();
        w.push(&[1, 2, 3, 4]).unwrap();
        w.push(&[5, 6, 7, 8, 9, 10, 11, 12]).unwrap();
        assert!(w.push(&[1, 2]).is_err());
        assert_eq!(w.finish().unwrap(), 3);
        let a: crate::Array<i32> = crate::read(&p).unwrap();
        assert_eq!(a.shape, vec![3, 4]);
        assert_eq!(a.data, (1..=12).collect::<Vec<_>>());
        let m = crate::MmapI32::open(&p).unwrap();
        assert_eq!(m.as_slice()[11], 12);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path().join("b.npy"), &[2, 2], &[1.0f32; 3]).is_err());
        assert!(!dir.path().join("b.npy").exists());
    }
}
