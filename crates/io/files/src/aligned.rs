//! Bytes in 4-byte aligned memory: what zero-copy readers that borrow `f32` values in place
//! (the `.csm` model file) need. The one helper for it: read a file, copy bytes, or fill a
//! zeroed buffer, then borrow it as `&[u8]`.

use std::io::Read;
use std::path::Path;

/// An owned byte buffer whose start is 4-byte aligned (backed by `u32` words).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes {
            words: vec![0u32; len.div_ceil(4)],
            len,
        }
    }

    /// A copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> AlignedBytes {
        let mut a = AlignedBytes::zeroed(bytes.len());
        a.bytes_mut().copy_from_slice(bytes);
        a
    }

    /// The whole file at `path`.
    pub fn read(path: &Path) -> std::io::Result<AlignedBytes> {
        let mut f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
        let mut a = AlignedBytes::zeroed(len);
        f.read_exact(a.bytes_mut())?;
        Ok(a)
    }

    /// The bytes (4-byte aligned start).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the u32 storage viewed as bytes: every byte pattern is valid, u8 has no
        // alignment requirement, and `len <= 4 * words.len()`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_copies_and_reads() {
        for n in [0usize, 1, 3, 4, 5, 67] {
            let src: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            let a = AlignedBytes::copy_from(&src);
            assert_eq!(a.bytes(), &src[..]);
            assert_eq!(a.len(), n);
            assert!((a.bytes().as_ptr() as usize).is_multiple_of(4));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"hello aligned").unwrap();
        let a = AlignedBytes::read(&p).unwrap();
        assert_eq!(a.bytes(), b"hello aligned");
        assert!((a.bytes().as_ptr() as usize).is_multiple_of(4));
        assert!(AlignedBytes::read(&dir.path().join("missing")).is_err());
    }
}
