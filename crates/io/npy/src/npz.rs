//! `.npz` archives (zip files of `.npy` members, stored or deflated).

use crate::read::{from_bytes, strings_from_bytes, Array};
use crate::write::Element;
use crate::{NpyError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// An opened `.npz` archive.
pub struct Npz {
    path: PathBuf,
    zip: zip::ZipArchive<std::fs::File>,
}

impl Npz {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let f = std::fs::File::open(&path).map_err(|e| NpyError::io(&path, e))?;
        let zip = zip::ZipArchive::new(f)
            .map_err(|e| NpyError::format(&path, 0, format!("not a readable zip archive: {e}")))?;
        Ok(Self { path, zip })
    }

    /// Names of the arrays (member names without `.npy`).
    pub fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
            .collect()
    }

    /// Reads array `name` converted to `T`.
    pub fn read<T: Element>(&mut self, name: &str) -> Result<Array<T>> {
        let (bytes, label) = self.member(name)?;
        from_bytes(&bytes, &label)
    }

    /// Reads the text array `name` (`<U...`), see [`crate::read_strings`].
    pub fn read_strings(&mut self, name: &str) -> Result<Array<String>> {
        let (bytes, label) = self.member(name)?;
        strings_from_bytes(&bytes, &label)
    }

    /// The bytes of member `name.npy` and the label errors use.
    fn member(&mut self, name: &str) -> Result<(Vec<u8>, PathBuf)> {
        let member = format!("{name}.npy");
        let label = self.path.join(&member);
        let mut f = self
            .zip
            .by_name(&member)
            .map_err(|e| NpyError::format(&self.path, 0, format!("member {member}: {e}")))?;
        let mut bytes = Vec::with_capacity(f.size().min(1 << 30) as usize);
        f.read_to_end(&mut bytes)
            .map_err(|e| NpyError::io(&label, e))?;
        Ok((bytes, label))
    }
}
