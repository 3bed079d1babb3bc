//! Reading `.npy` data: whole-array reads converted to a chosen element type,
//! and memory-mapped zero-copy views for little-endian C-order `f32` / `i32`.

use crate::header::{parse_header, DType, Header, Kind};
use crate::write::Element;
use crate::{NpyError, Result};
use std::path::Path;

/// An owned n-dimensional array in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T> Array<T> {
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Reads a whole `.npy` file, converting every element to `T`
/// (any integer, float or bool dtype, either byte order, C or Fortran order).
pub fn read<T: Element>(path: impl AsRef<Path>) -> Result<Array<T>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NpyError::io(path, e))?;
    from_bytes(&bytes, path)
}

/// Decodes `.npy` bytes; `path` only labels errors.
pub fn from_bytes<T: Element>(bytes: &[u8], path: &Path) -> Result<Array<T>> {
    let h = parse_header(bytes).map_err(|(o, m)| NpyError::format(path, o, m))?;
    let need = h
        .data_bytes()
        .ok_or_else(|| NpyError::format(path, 0, "shape overflows"))?;
    let avail = bytes.len() - h.data_offset;
    if avail < need {
        return Err(NpyError::format(
            path,
            bytes.len() as u64,
            format!(
                "truncated: shape {:?} of {} needs {need} data bytes, file has {avail}",
                h.shape,
                h.dtype.descr()
            ),
        ));
    }
    if h.dtype.kind == Kind::Unicode {
        return Err(NpyError::format(
            path,
            0,
            format!(
                "holds text ({}), not numbers; read it with read_strings",
                h.dtype.descr()
            ),
        ));
    }
    let raw = &bytes[h.data_offset..h.data_offset + need];
    let mut data: Vec<T> = raw
        .chunks_exact(h.dtype.size)
        .map(|c| T::from_f64_or_i64(decode(h.dtype, c)))
        .collect();
    if h.fortran_order && h.shape.len() > 1 {
        data = fortran_to_c(&data, &h.shape);
    }
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// Reads a whole `.npy` file of fixed-width text (`<U15`, `>U4`: UCS-4 code points, trailing
/// NULs dropped as numpy drops them), C or Fortran order.
pub fn read_strings(path: impl AsRef<Path>) -> Result<Array<String>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NpyError::io(path, e))?;
    strings_from_bytes(&bytes, path)
}

/// Decodes `.npy` bytes of fixed-width text; `path` only labels errors. Errors name the byte
/// offset of a code point that is not a Unicode scalar value.
pub fn strings_from_bytes(bytes: &[u8], path: &Path) -> Result<Array<String>> {
    let h = parse_header(bytes).map_err(|(o, m)| NpyError::format(path, o, m))?;
    if h.dtype.kind != Kind::Unicode {
        return Err(NpyError::format(
            path,
            0,
            format!("holds {}, not text (<U...)", h.dtype.descr()),
        ));
    }
    let need = h
        .data_bytes()
        .ok_or_else(|| NpyError::format(path, 0, "shape overflows"))?;
    let avail = bytes.len() - h.data_offset;
    if avail < need {
        return Err(NpyError::format(
            path,
            bytes.len() as u64,
            format!(
                "truncated: shape {:?} of {} needs {need} data bytes, file has {avail}",
                h.shape,
                h.dtype.descr()
            ),
        ));
    }
    let raw = &bytes[h.data_offset..h.data_offset + need];
    let mut data = Vec::with_capacity(h.len());
    for (i, item) in raw.chunks_exact(h.dtype.size).enumerate() {
        let mut text = String::new();
        for (j, c) in item.chunks_exact(4).enumerate() {
            let b = [c[0], c[1], c[2], c[3]];
            let code = if h.dtype.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            };
            let ch = char::from_u32(code).ok_or_else(|| {
                let at = h.data_offset + i * h.dtype.size + 4 * j;
                NpyError::format(
                    path,
                    at as u64,
                    format!("code point {code:#x} is not a Unicode scalar value"),
                )
            })?;
            text.push(ch);
        }
        let kept = text.trim_end_matches('\0').len();
        text.truncate(kept);
        data.push(text);
    }
    if h.fortran_order && h.shape.len() > 1 {
        data = fortran_to_c(&data, &h.shape);
    }
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// A decoded scalar: floats keep full precision, integers stay exact.
#[derive(Clone, Copy, Debug)]
pub enum Scalar {
    F(f64),
    I(i64),
    U(u64),
}

fn decode(dt: DType, c: &[u8]) -> Scalar {
    let mut buf = [0u8; 8];
    if dt.big_endian {
        for (i, b) in c.iter().rev().enumerate() {
            buf[i] = *b;
        }
    } else {
        buf[..c.len()].copy_from_slice(c);
    }
    match (dt.kind, dt.size) {
        (Kind::Float, 4) => Scalar::F(f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64),
        (Kind::Float, _) => Scalar::F(f64::from_le_bytes(buf)),
        (Kind::Int, n) => {
            let v = u64::from_le_bytes(buf);
            let shift = 64 - 8 * n as u32;
            Scalar::I(((v << shift) as i64) >> shift)
        }
        (Kind::UInt | Kind::Bool | Kind::Unicode, _) => Scalar::U(u64::from_le_bytes(buf)),
    }
}

fn fortran_to_c<T: Clone>(data: &[T], shape: &[usize]) -> Vec<T> {
    let n = data.len();
    let nd = shape.len();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; nd];
    // Fortran strides.
    let mut fstride = vec![1usize; nd];
    for d in 1..nd {
        fstride[d] = fstride[d - 1] * shape[d - 1];
    }
    for _ in 0..n {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(data[off].clone());
        for d in (0..nd).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

macro_rules! mmap_view {
    ($name:ident, $t:ty, $dt:expr, $what:literal) => {
        #[doc = concat!("A memory-mapped little-endian C-order `", $what, "` array: reading it never copies the file into memory.")]
        pub struct $name {
            map: memmap2::Mmap,
            header: Header,
        }

        impl $name {
            pub fn open(path: impl AsRef<Path>) -> Result<Self> {
                let path = path.as_ref();
                let file = std::fs::File::open(path).map_err(|e| NpyError::io(path, e))?;
                // SAFETY: the file is opened read-only; csipose never writes a dataset in
                // place (writers go through a temporary name and rename).
                let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| NpyError::io(path, e))?;
                let header = parse_header(&map).map_err(|(o, m)| NpyError::format(path, o, m))?;
                if header.dtype != $dt {
                    return Err(NpyError::format(
                        path,
                        0,
                        format!("expected dtype {} but the file holds {}", $dt.descr(), header.dtype.descr()),
                    ));
                }
                if header.fortran_order {
                    return Err(NpyError::format(path, 0, "Fortran-order arrays cannot be memory-mapped"));
                }
                if header.data_offset % std::mem::align_of::<$t>() != 0 {
                    return Err(NpyError::format(path, header.data_offset as u64, "data is not aligned"));
                }
                let need = header.data_bytes().ok_or_else(|| NpyError::format(path, 0, "shape overflows"))?;
                if map.len() - header.data_offset < need {
                    return Err(NpyError::format(
                        path,
                        map.len() as u64,
                        format!("truncated: shape {:?} needs {need} data bytes, file has {}", header.shape, map.len() - header.data_offset),
                    ));
                }
                Ok(Self { map, header })
            }
            pub fn shape(&self) -> &[usize] {
                &self.header.shape
            }
            pub fn as_slice(&self) -> &[$t] {
                let bytes = &self.map[self.header.data_offset..];
                let n = self.header.len();
                // SAFETY: alignment and length were checked in `open`; every bit pattern is a valid value.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const $t, n) }
            }
        }
    };
}

#[cfg(target_endian = "little")]
mmap_view!(MmapF32, f32, DType::F32, "f32");
#[cfg(target_endian = "little")]
mmap_view!(MmapI32, i32, DType::I32, "i32");

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn to_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn from_f64_or_i64(s: Scalar) -> Self {
        match s {
            Scalar::F(v) => v,
            Scalar::I(v) => v as f64,
            Scalar::U(v) => v as f64,
        }
    }
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn from_f64_or_i64(s: Scalar) -> Self {
        match s {
            Scalar::F(v) => v as f32,
            Scalar::I(v) => v as f32,
            Scalar::U(v) => v as f32,
        }
    }
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
    fn to_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn from_f64_or_i64(s: Scalar) -> Self {
        match s {
            Scalar::F(v) => v as i32,
            Scalar::I(v) => v as i32,
            Scalar::U(v) => v as i32,
        }
    }
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
    fn to_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn from_f64_or_i64(s: Scalar) -> Self {
        match s {
            Scalar::F(v) => v as i64,
            Scalar::I(v) => v,
            Scalar::U(v) => v as i64,
        }
    }
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
    fn to_le(&self, out: &mut Vec<u8>) {
        out.push(*self)
    }
    fn from_f64_or_i64(s: Scalar) -> Self {
        match s {
            Scalar::F(v) => v as u8,
            Scalar::I(v) => v as u8,
            Scalar::U(v) => v as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::write;

    #[test]
    fn write_then_read_and_mmap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        write(&p, &[2, 3, 4], &data).unwrap();
        let a: Array<f32> = read(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let m = MmapF32::open(&p).unwrap();
        assert_eq!(m.shape(), &[2, 3, 4]);
        assert_eq!(m.as_slice(), &data[..]);
        assert!(MmapI32::open(&p).is_err());
        let wide: Array<f64> = read(&p).unwrap();
        assert_eq!(wide.data[3], 1.5);
    }

    #[test]
    fn fortran_order_is_transposed() {
        // shape (2, 3), Fortran data = column-major of [[0,1,2],[3,4,5]]
        let f = [0.0, 3.0, 1.0, 4.0, 2.0, 5.0];
        let c = fortran_to_c(&f, &[2, 3]);
        assert_eq!(c, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn big_endian_and_narrow_ints_decode() {
        let v = decode(
            DType {
                kind: Kind::Int,
                size: 2,
                big_endian: true,
            },
            &[0xff, 0xfe],
        );
        assert!(matches!(v, Scalar::I(-2)));
        let v = decode(
            DType {
                kind: Kind::Float,
                size: 8,
                big_endian: true,
            },
            &1.25f64.to_be_bytes(),
        );
        assert!(matches!(v, Scalar::F(x) if x == 1.25));
    }

    #[test]
    fn truncated_file_names_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        write(&p, &[10], &[1.0f64; 10]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let err = read::<f64>(&p).unwrap_err().to_string();
        assert!(err.contains("t.npy") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u64;
        let base = crate::header::build_header(DType::F32, &[3, 4]);
        for _ in 0..2000 {
            let mut b = base.clone();
            b.extend_from_slice(&[0u8; 48]);
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (seed >> 33) as usize % b.len();
                b[i] = (seed >> 13) as u8;
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let cut = (seed >> 35) as usize % (b.len() + 1);
            let _ = from_bytes::<f64>(&b[..cut], Path::new("fuzz"));
        }
    }

    /// `<U15` text as numpy writes it: UCS-4 little-endian, NUL-padded to the width.
    fn text_npy(descr: &str, shape: &[usize], items: &[&str], width: usize, big: bool) -> Vec<u8> {
        let dtype = DType::parse(descr).unwrap();
        let mut b = crate::header::build_header(dtype, shape);
        for item in items {
            let mut codes: Vec<u32> = item.chars().map(|c| c as u32).collect();
            codes.resize(width, 0);
            for c in codes {
                b.extend_from_slice(&if big {
                    c.to_be_bytes()
                } else {
                    c.to_le_bytes()
                });
            }
        }
        b
    }

    #[test]
    fn reads_unicode_text() {
        let b = text_npy("<U5", &[3], &["SEAT", "héllo", ""], 5, false);
        let a = strings_from_bytes(&b, Path::new("y.npy")).unwrap();
        assert_eq!(a.shape, vec![3]);
        assert_eq!(a.data, vec!["SEAT", "héllo", ""]);
        let b = text_npy(">U2", &[2, 2], &["ab", "c", "d", "ef"], 2, true);
        let a = strings_from_bytes(&b, Path::new("y.npy")).unwrap();
        assert_eq!(a.data, vec!["ab", "c", "d", "ef"]);
        // Numeric reads refuse text and text reads refuse numbers, naming the file.
        let err = from_bytes::<f64>(&b, Path::new("y.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("y.npy") && err.contains("read_strings"),
            "{err}"
        );
        let num = crate::header::build_header(DType::F64, &[0]);
        let err = strings_from_bytes(&num, Path::new("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.npy") && err.contains("<f8"), "{err}");
        // A code point that is no character: the error names its byte offset.
        let mut bad = text_npy("<U2", &[1], &["ab"], 2, false);
        let at = bad.len() - 4;
        bad[at..].copy_from_slice(&0xD800u32.to_le_bytes());
        let err = strings_from_bytes(&bad, Path::new("y.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("byte {at}")) && err.contains("0xd800"),
            "{err}"
        );
        // Truncated data.
        let b = text_npy("<U5", &[3], &["SEAT", "x", "y"], 5, false);
        let err = strings_from_bytes(&b[..b.len() - 1], Path::new("y.npy")).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn reads_the_esp32_har_labels() {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../../shared/esp32-har/D1/e01_rx_tx-y.npy"
        );
        if !Path::new(p).exists() {
            println!("SKIPPED: {p} is absent");
            return;
        }
        // Counts as numpy reads them (`collections.Counter(np.load(p))`).
        let a = read_strings(p).unwrap();
        assert_eq!(a.shape, vec![29]);
        let count = |name: &str| a.data.iter().filter(|s| *s == name).count();
        assert_eq!(a.data[0], "SEATED_RX");
        assert_eq!(
            [
                count("SEATED_RX"),
                count("WALKING_TX"),
                count("SITTING_DOWN_TX")
            ],
            [10, 7, 5]
        );
        assert_eq!(
            [
                count("STANDING_UP_RX"),
                count("TURN_TX"),
                count("SEATED_TX")
            ],
            [3, 2, 2]
        );
    }

    #[test]
    fn arbitrary_text_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_u64;
        let base = text_npy("<U3", &[4], &["abc", "d", "ef", "g"], 3, false);
        for _ in 0..2000 {
            let mut b = base.clone();
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (seed >> 33) as usize % b.len();
                b[i] = (seed >> 13) as u8;
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let cut = (seed >> 35) as usize % (b.len() + 1);
            let _ = strings_from_bytes(&b[..cut], Path::new("fuzz"));
        }
    }
}
