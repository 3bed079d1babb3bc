//! MATLAB v5 `.mat` reader (compressed and uncompressed) for MM-Fi CSI frames.
//!
//! Reads the level-5 MAT-file format as MATLAB (`save`, v6 and the v7 default) and
//! `scipy.io.savemat` write it: the 128-byte header with its `IM`/`MI` endianness indicator
//! (both byte orders), data elements in the normal and the small (4-byte) format,
//! `miCOMPRESSED` elements (zlib), and `miMATRIX` elements of the numeric classes
//! (double, single, int8..uint64) with their array flags, dimensions, name, real part and,
//! for complex arrays, imaginary part. The real part may be stored with a narrower type
//! than the class (MATLAB saves an integral `double` array as `miUINT8`, for instance);
//! values are converted by their storage type. Other classes (cell, struct, char, sparse,
//! objects) are skipped and listed by name.
//!
//! The parser never panics on any input: each claimed size is checked against the bytes that
//! remain before anything is allocated, zlib output is bounded by deflate's maximum
//! expansion ratio, and every error names the file, the byte offset and what was wrong.
//!
//! MATLAB stores arrays column-major; [`MatArray::data`] is converted to row-major (C order)
//! over [`MatArray::dims`], so a `(3, 114, 10)` `CSIamp` becomes `[A, S, P]` row-major.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A `.mat` file that could not be read: which file, at which byte, and what was wrong.
/// For data inside a compressed element, `offset` is the compressed element's position in the
/// file and the message gives the position within its decompressed bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: byte {offset}: {msg}")]
pub struct MatError {
    pub path: PathBuf,
    pub offset: u64,
    pub msg: String,
}

/// MATLAB array class (`mxCLASS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatClass {
    Cell,
    Struct,
    Object,
    Char,
    Sparse,
    Double,
    Single,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Function,
    Opaque,
    Unknown(u8),
}

impl MatClass {
    fn from_code(c: u8) -> MatClass {
        use MatClass::*;
        match c {
            1 => Cell,
            2 => Struct,
            3 => Object,
            4 => Char,
            5 => Sparse,
            6 => Double,
            7 => Single,
            8 => Int8,
            9 => UInt8,
            10 => Int16,
            11 => UInt16,
            12 => Int32,
            13 => UInt32,
            14 => Int64,
            15 => UInt64,
            16 => Function,
            17 => Opaque,
            other => Unknown(other),
        }
    }
    /// Whether the reader decodes arrays of this class.
    pub fn is_numeric(self) -> bool {
        use MatClass::*;
        matches!(
            self,
            Double | Single | Int8 | UInt8 | Int16 | UInt16 | Int32 | UInt32 | Int64 | UInt64
        )
    }
}

/// One numeric variable.
#[derive(Clone, Debug, PartialEq)]
pub struct MatArray {
    pub name: String,
    pub class: MatClass,
    /// Dimensions as MATLAB gives them (at least two).
    pub dims: Vec<usize>,
    /// Real part in row-major (C) order over `dims`.
    pub data: Vec<f64>,
    /// Imaginary part (row-major) for complex arrays.
    pub imag: Option<Vec<f64>>,
}

/// The variables of one `.mat` file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatFile {
    /// Decoded numeric variables, in file order.
    pub variables: Vec<MatArray>,
    /// Variables present but not decoded: non-numeric classes, or names not asked for.
    pub skipped: Vec<(String, MatClass)>,
    /// Whether the file is little-endian (`IM`).
    pub little_endian: bool,
}

impl MatFile {
    /// The numeric variable `name`, if decoded.
    pub fn get(&self, name: &str) -> Option<&MatArray> {
        self.variables.iter().find(|v| v.name == name)
    }
    /// Every variable name in the file (decoded or skipped), for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.variables
            .iter()
            .map(|v| v.name.as_str())
            .chain(self.skipped.iter().map(|(n, _)| n.as_str()))
            .collect()
    }
}

/// Reads every numeric variable of a MATLAB v5 file held in `bytes`; `path` labels errors.
pub fn read_variables(bytes: &[u8], path: &Path) -> Result<MatFile, MatError> {
    read_impl(bytes, path, None)
}

/// Like [`read_variables`] but decodes only the variables named in `wanted`; the others are
/// listed in [`MatFile::skipped`] (with class [`MatClass::Unknown`] when a compressed
/// variable was skipped without decompressing it whole).
pub fn read_variables_named(
    bytes: &[u8],
    path: &Path,
    wanted: &[&str],
) -> Result<MatFile, MatError> {
    read_impl(bytes, path, Some(wanted))
}

const HEADER_LEN: usize = 128;

// Data types (miXXX).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// Deflate cannot expand data by more than about 1032:1; zlib output beyond this is refused.
const MAX_INFLATE_RATIO: usize = 1032;
/// Bytes decompressed to peek at a compressed variable's name.
const PEEK_LEN: usize = 512;

fn type_name(t: u32) -> String {
    let n = match t {
        MI_INT8 => "miINT8",
        MI_UINT8 => "miUINT8",
        MI_INT16 => "miINT16",
        MI_UINT16 => "miUINT16",
        MI_INT32 => "miINT32",
        MI_UINT32 => "miUINT32",
        MI_SINGLE => "miSINGLE",
        MI_DOUBLE => "miDOUBLE",
        MI_INT64 => "miINT64",
        MI_UINT64 => "miUINT64",
        MI_MATRIX => "miMATRIX",
        MI_COMPRESSED => "miCOMPRESSED",
        MI_UTF8 => "miUTF8",
        17 => "miUTF16",
        18 => "miUTF32",
        _ => return format!("unknown data type {t}"),
    };
    n.to_string()
}

/// Where a buffer sits, for error offsets.
#[derive(Clone, Copy)]
struct Ctx<'p> {
    path: &'p Path,
    little_endian: bool,
    /// File offset of the compressed element this buffer was inflated from, if any.
    compressed_at: Option<u64>,
}

impl Ctx<'_> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> MatError {
        let msg = msg.into();
        match self.compressed_at {
            None => MatError {
                path: self.path.to_path_buf(),
                offset: pos as u64,
                msg,
            },
            Some(at) => MatError {
                path: self.path.to_path_buf(),
                offset: at,
                msg: format!("in the compressed element, decompressed byte {pos}: {msg}"),
            },
        }
    }
    fn u32_at(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.little_endian {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    fn u16_at(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.little_endian {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
}

/// A data element's tag, decoded.
struct Element {
    dtype: u32,
    /// Position of the first data byte.
    data: usize,
    /// Number of data bytes.
    len: usize,
    /// Position just after the element's data (before any padding).
    end: usize,
    small: bool,
}

/// Reads the tag at `pos`; the element must fit in `buf[..limit]`.
fn read_tag(ctx: &Ctx, buf: &[u8], pos: usize, limit: usize) -> Result<Element, MatError> {
    let limit = limit.min(buf.len());
    if pos > limit || limit - pos < 8 {
        return Err(ctx.err(
            pos,
            format!(
                "truncated: a data element tag needs 8 bytes, {} remain",
                limit.saturating_sub(pos)
            ),
        ));
    }
    let w = ctx.u32_at(&buf[pos..]);
    if w >> 16 != 0 {
        // Small data element: type in the low 16 bits, size in the high 16, data in 4 bytes.
        let dtype = w & 0xffff;
        let len = (w >> 16) as usize;
        if len > 4 {
            return Err(ctx.err(
                pos,
                format!(
                    "small data element of {} claims {len} bytes (at most 4)",
                    type_name(dtype)
                ),
            ));
        }
        return Ok(Element {
            dtype,
            data: pos + 4,
            len,
            end: pos + 4 + len,
            small: true,
        });
    }
    let dtype = w;
    let len = ctx.u32_at(&buf[pos + 4..]) as usize;
    let data = pos + 8;
    if len > limit - data {
        return Err(ctx.err(
            pos,
            format!(
                "{} element claims {len} bytes but only {} remain",
                type_name(dtype),
                limit - data
            ),
        ));
    }
    Ok(Element {
        dtype,
        data,
        len,
        end: data + len,
        small: false,
    })
}

/// Position of the next sub-element after `e` (sub-elements are padded to 8 bytes).
fn next_sub(e: &Element, limit: usize) -> usize {
    if e.small {
        e.data + 4
    } else {
        e.end.next_multiple_of(8)
    }
    .min(limit)
}

fn read_impl(bytes: &[u8], path: &Path, wanted: Option<&[&str]>) -> Result<MatFile, MatError> {
    let mut ctx = Ctx {
        path,
        little_endian: true,
        compressed_at: None,
    };
    if bytes.len() < HEADER_LEN {
        return Err(ctx.err(
            bytes.len(),
            format!(
                "truncated: a MATLAB v5 file starts with a 128-byte header, the file has {} bytes",
                bytes.len()
            ),
        ));
    }
    if bytes.starts_with(b"MATLAB 7.3") {
        return Err(ctx.err(
            0,
            "MATLAB v7.3 (HDF5) files are not supported; re-save with `save -v7`",
        ));
    }
    ctx.little_endian = match &bytes[126..128] {
        b"IM" => true,
        b"MI" => false,
        other => {
            return Err(ctx.err(
                126,
                format!(
                "no endianness indicator ('IM' or 'MI'), found {other:02x?}: not a MATLAB v5 file"
            ),
            ))
        }
    };
    let version = ctx.u16_at(&bytes[124..]);
    if version != 0x0100 {
        return Err(ctx.err(
            124,
            format!("unsupported MAT-file version 0x{version:04x} (expected 0x0100)"),
        ));
    }
    let mut out = MatFile {
        little_endian: ctx.little_endian,
        ..MatFile::default()
    };
    read_elements(&ctx, bytes, HEADER_LEN, wanted, &mut out, true)?;
    Ok(out)
}

/// Reads top-level data elements of `buf` from `pos` to its end.
fn read_elements(
    ctx: &Ctx,
    buf: &[u8],
    mut pos: usize,
    wanted: Option<&[&str]>,
    out: &mut MatFile,
    allow_compressed: bool,
) -> Result<(), MatError> {
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < 8 {
            if rest.iter().all(|&b| b == 0) {
                break; // trailing padding
            }
            return Err(ctx.err(
                pos,
                format!(
                    "truncated: {} trailing bytes are not a data element",
                    rest.len()
                ),
            ));
        }
        let e = read_tag(ctx, buf, pos, buf.len())?;
        match e.dtype {
            MI_MATRIX => {
                read_matrix(ctx, buf, &e, wanted, out)?;
            }
            MI_COMPRESSED if allow_compressed && !e.small => {
                read_compressed(ctx, buf, &e, pos, wanted, out)?;
            }
            MI_COMPRESSED => {
                return Err(ctx.err(pos, "compressed element nested in a compressed element"))
            }
            other => {
                return Err(ctx.err(
                    pos,
                    format!(
                        "top-level data element of type {} (expected miMATRIX or miCOMPRESSED)",
                        type_name(other)
                    ),
                ))
            }
        }
        // Top-level elements follow each other without padding (scipy and MATLAB agree).
        pos = if e.small { e.data + 4 } else { e.end };
    }
    Ok(())
}

fn read_compressed(
    ctx: &Ctx,
    buf: &[u8],
    e: &Element,
    elem_pos: usize,
    wanted: Option<&[&str]>,
    out: &mut MatFile,
) -> Result<(), MatError> {
    let src = &buf[e.data..e.end];
    let inner_ctx = Ctx {
        compressed_at: Some(elem_pos as u64),
        ..*ctx
    };
    // Decompress the variable's header first: its name (to skip unwanted variables) and its
    // class and dimensions, which bound how many bytes the rest may inflate to.
    let mut dec = flate2::bufread::ZlibDecoder::new(src);
    let mut inflated = Vec::with_capacity(PEEK_LEN);
    let peeked = (&mut dec).take(PEEK_LEN as u64).read_to_end(&mut inflated);
    if let Some(w) = wanted {
        if let Some(name) = peek_matrix_name(&inner_ctx, &inflated) {
            if !w.contains(&name.as_str()) {
                out.skipped.push((name, MatClass::Unknown(0)));
                return Ok(());
            }
        }
    }
    peeked.map_err(|err| ctx.err(elem_pos, format!("compressed element: zlib error: {err}")))?;
    let ratio_bound = src
        .len()
        .saturating_mul(MAX_INFLATE_RATIO)
        .saturating_add(64);
    let cap = match inflate_cap(&inner_ctx, &inflated)? {
        Cap::Bytes(n) => n.min(ratio_bound),
        Cap::Skip(name, class) => {
            out.skipped.push((name, class));
            return Ok(());
        }
    };
    if inflated.len() == PEEK_LEN && cap > PEEK_LEN {
        (&mut dec)
            .take((cap - PEEK_LEN) as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|err| ctx.err(elem_pos, format!("compressed element: zlib error: {err}")))?;
    }
    if inflated.len() > cap {
        return Err(ctx.err(
            elem_pos,
            if cap == ratio_bound {
                format!(
                    "compressed element of {} bytes inflates beyond deflate's maximum ratio",
                    src.len()
                )
            } else {
                format!(
                    "compressed element inflates to more than the {cap} bytes its variable declares"
                )
            },
        ));
    }
    read_elements(&inner_ctx, &inflated, 0, wanted, out, false)
}

/// How much of a compressed element to inflate.
enum Cap {
    /// At most this many bytes (the variable's element with its padding).
    Bytes(usize),
    /// A variable of a class that is never read (cell, struct, ...): skip it unread.
    Skip(String, MatClass),
}

/// The most bytes a compressed element may inflate to, from the first [`PEEK_LEN`] inflated
/// bytes (`prefix`): the size its `miMATRIX` tag declares (plus padding), which must not exceed
/// what the variable's class and dimensions need (values of at most 8 bytes, a real and an
/// imaginary part). A header that claims more is refused before inflating anything else, so a
/// small file cannot make the reader inflate a gigabyte.
fn inflate_cap(ctx: &Ctx, prefix: &[u8]) -> Result<Cap, MatError> {
    if prefix.len() < 8 || ctx.u32_at(prefix) != MI_MATRIX {
        // Not a matrix (or the whole stream is in `prefix`): `read_elements` reports it.
        return Ok(Cap::Bytes(PEEK_LEN));
    }
    let declared = ctx.u32_at(&prefix[4..]) as usize;
    let whole = 8 + declared;
    let m = Element {
        dtype: MI_MATRIX,
        data: 8,
        len: declared.min(prefix.len() - 8),
        end: whole.min(prefix.len()),
        small: false,
    };
    if declared == 0 {
        return Ok(Cap::Bytes(whole + 7));
    }
    let head = match matrix_head(ctx, prefix, &m) {
        Ok(h) => h,
        // The whole element was inflated: `read_matrix` reports the problem.
        Err(_) if prefix.len() < PEEK_LEN => return Ok(Cap::Bytes(PEEK_LEN)),
        Err(e) => return Err(e),
    };
    if !head.class.is_numeric() {
        return Ok(Cap::Skip(head.name, head.class));
    }
    let need = head
        .dims
        .iter()
        .try_fold(8usize, |acc, &d| acc.checked_mul(d))
        .and_then(|bytes| bytes.checked_add(8 + 7))
        .and_then(|part| part.checked_mul(1 + usize::from(head.complex)))
        .and_then(|parts| parts.checked_add(head.next));
    match need {
        Some(need) if whole <= need => Ok(Cap::Bytes(whole + 7)),
        _ => {
            Err(ctx.err(
                0,
                format!(
                "variable `{}` declares {declared} bytes, more than its dimensions {:?} can hold \
                 ({})",
                head.name,
                head.dims,
                need.map_or("overflow".to_string(), |n| format!("at most {} bytes", n - 8)),
            ),
            ))
        }
    }
}

/// The name of the `miMATRIX` element starting at `buf[0]`, if `buf` holds enough of it.
fn peek_matrix_name(ctx: &Ctx, buf: &[u8]) -> Option<String> {
    let e = read_tag(ctx, buf, 0, usize::MAX).ok().or_else(|| {
        // The prefix is shorter than the claimed matrix: read the tag alone.
        if buf.len() < 8 || ctx.u32_at(buf) != MI_MATRIX {
            return None;
        }
        Some(Element {
            dtype: MI_MATRIX,
            data: 8,
            len: buf.len() - 8,
            end: buf.len(),
            small: false,
        })
    })?;
    if e.dtype != MI_MATRIX {
        return None;
    }
    let head = matrix_head(ctx, buf, &e).ok()?;
    Some(head.name)
}

/// Flags, dimensions and name of a matrix.
struct MatrixHead {
    class: MatClass,
    complex: bool,
    dims: Vec<usize>,
    name: String,
    /// Position after the name element.
    next: usize,
}

fn matrix_head(ctx: &Ctx, buf: &[u8], m: &Element) -> Result<MatrixHead, MatError> {
    let limit = m.end;
    let f = read_tag(ctx, buf, m.data, limit)?;
    if f.dtype != MI_UINT32 || f.len != 8 {
        return Err(ctx.err(
            m.data,
            format!(
                "array flags: expected an miUINT32 element of 8 bytes, found {} of {} bytes",
                type_name(f.dtype),
                f.len
            ),
        ));
    }
    let flags = ctx.u32_at(&buf[f.data..]);
    let class = MatClass::from_code((flags & 0xff) as u8);
    let complex = flags & 0x0800 != 0;
    let mut pos = next_sub(&f, limit);
    if class == MatClass::Opaque {
        return Ok(MatrixHead {
            class,
            complex,
            dims: Vec::new(),
            name: String::new(),
            next: pos,
        });
    }
    let d = read_tag(ctx, buf, pos, limit)?;
    if d.dtype != MI_INT32 || d.len % 4 != 0 || d.len < 8 {
        return Err(ctx.err(
            pos,
            format!(
                "dimensions: expected an miINT32 element of at least 2 values, found {} of {} bytes",
                type_name(d.dtype),
                d.len
            ),
        ));
    }
    let mut dims = Vec::with_capacity(d.len / 4);
    for i in 0..d.len / 4 {
        let v = ctx.u32_at(&buf[d.data + 4 * i..]) as i32;
        if v < 0 {
            return Err(ctx.err(d.data + 4 * i, format!("negative dimension {v}")));
        }
        dims.push(v as usize);
    }
    pos = next_sub(&d, limit);
    let n = read_tag(ctx, buf, pos, limit)?;
    if n.dtype != MI_INT8 && n.dtype != MI_UTF8 {
        return Err(ctx.err(
            pos,
            format!(
                "array name: expected an miINT8 element, found {}",
                type_name(n.dtype)
            ),
        ));
    }
    let name = String::from_utf8_lossy(&buf[n.data..n.end]).into_owned();
    Ok(MatrixHead {
        class,
        complex,
        dims,
        name,
        next: next_sub(&n, limit),
    })
}

fn read_matrix(
    ctx: &Ctx,
    buf: &[u8],
    m: &Element,
    wanted: Option<&[&str]>,
    out: &mut MatFile,
) -> Result<(), MatError> {
    if m.len == 0 {
        return Ok(()); // an empty matrix element (MATLAB writes these for empty arrays)
    }
    let head = matrix_head(ctx, buf, m)?;
    if !head.class.is_numeric() {
        out.skipped.push((head.name, head.class));
        return Ok(());
    }
    if let Some(w) = wanted {
        if !w.contains(&head.name.as_str()) {
            out.skipped.push((head.name, head.class));
            return Ok(());
        }
    }
    let count = head
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ctx.err(m.data, format!("dimensions {:?} overflow", head.dims)))?;
    let real = read_numeric(ctx, buf, head.next, m.end, count, &head, "real part")?;
    let imag = if head.complex {
        let pos = next_sub(&real.1, m.end);
        Some(read_numeric(ctx, buf, pos, m.end, count, &head, "imaginary part")?.0)
    } else {
        None
    };
    out.variables.push(MatArray {
        data: column_to_row_major(&real.0, &head.dims),
        imag: imag.map(|v| column_to_row_major(&v, &head.dims)),
        name: head.name,
        class: head.class,
        dims: head.dims,
    });
    Ok(())
}

/// Reads one numeric data element holding exactly `count` values, converting by storage type.
fn read_numeric(
    ctx: &Ctx,
    buf: &[u8],
    pos: usize,
    limit: usize,
    count: usize,
    head: &MatrixHead,
    what: &str,
) -> Result<(Vec<f64>, Element), MatError> {
    let e = read_tag(ctx, buf, pos, limit)?;
    let size = match e.dtype {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => {
            return Err(ctx.err(
                pos,
                format!(
                    "{what} of `{}`: {} is not a numeric storage type",
                    head.name,
                    type_name(other)
                ),
            ))
        }
    };
    if e.len % size != 0 || e.len / size != count {
        return Err(ctx.err(
            pos,
            format!(
                "{what} of `{}`: {} bytes of {} hold {} values, dimensions {:?} need {count}",
                head.name,
                e.len,
                type_name(e.dtype),
                e.len as f64 / size as f64,
                head.dims
            ),
        ));
    }
    let raw = &buf[e.data..e.end];
    let le = ctx.little_endian;
    let mut v = Vec::with_capacity(count);
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            for c in raw.chunks_exact($n) {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                let x = if le {
                    <$t>::from_le_bytes(a)
                } else {
                    <$t>::from_be_bytes(a)
                };
                v.push(x as f64);
            }
        };
    }
    match e.dtype {
        MI_INT8 => conv!(i8, 1),
        MI_UINT8 => conv!(u8, 1),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        _ => conv!(u64, 8),
    }
    Ok((v, e))
}

/// Reorders column-major (MATLAB) values over `dims` into row-major (C) order.
pub fn column_to_row_major(data: &[f64], dims: &[usize]) -> Vec<f64> {
    let n = data.len();
    if dims.len() < 2 || n <= 1 {
        return data.to_vec();
    }
    // Column-major strides: stride[0] = 1, stride[k] = stride[k-1] * dims[k-1].
    let mut stride = vec![1usize; dims.len()];
    for k in 1..dims.len() {
        stride[k] = stride[k - 1] * dims[k - 1];
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize; // column-major offset of idx
    for _ in 0..n {
        out.push(data[off]);
        // Advance idx in row-major order (last index fastest).
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            off += stride[k];
            if idx[k] < dims[k] {
                break;
            }
            off -= stride[k] * dims[k];
            idx[k] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a little- or big-endian uncompressed MAT file holding one double array.
    fn build(le: bool, name: &str, dims: &[i32], storage: u32, payload: &[u8]) -> Vec<u8> {
        let u32b = |v: u32| {
            if le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let pad = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(8), 0);
        let mut m = Vec::new();
        m.extend(u32b(MI_UINT32));
        m.extend(u32b(8));
        m.extend(u32b(6)); // mxDOUBLE_CLASS
        m.extend(u32b(0));
        m.extend(u32b(MI_INT32));
        m.extend(u32b(4 * dims.len() as u32));
        for &d in dims {
            m.extend(u32b(d as u32));
        }
        pad(&mut m);
        if name.len() <= 4 {
            m.extend(u32b(((name.len() as u32) << 16) | MI_INT8));
            let mut nb = name.as_bytes().to_vec();
            nb.resize(4, 0);
            m.extend(nb);
        } else {
            m.extend(u32b(MI_INT8));
            m.extend(u32b(name.len() as u32));
            m.extend(name.as_bytes());
            pad(&mut m);
        }
        m.extend(u32b(storage));
        m.extend(u32b(payload.len() as u32));
        m.extend(payload);
        pad(&mut m);
        let mut f = vec![b' '; 116];
        f[..10].copy_from_slice(b"MATLAB 5.0");
        f.extend([0u8; 8]);
        f.extend(if le {
            0x0100u16.to_le_bytes()
        } else {
            0x0100u16.to_be_bytes()
        });
        f.extend(if le { b"IM" } else { b"MI" });
        f.extend(u32b(MI_MATRIX));
        f.extend(u32b(m.len() as u32));
        f.extend(m);
        f
    }

    #[test]
    fn column_major_becomes_row_major() {
        // MATLAB A = [1 2 3; 4 5 6] is stored 1 4 2 5 3 6.
        let cm = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        assert_eq!(
            column_to_row_major(&cm, &[2, 3]),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        // 3-D: element (i,j,k) of a 2x2x2 stored at i + 2j + 4k; row-major at 4i + 2j + k.
        let cm: Vec<f64> = (0..8).map(|v| v as f64).collect();
        let rm = column_to_row_major(&cm, &[2, 2, 2]);
        for i in 0..2 {
            for j in 0..2 {
                for k in 0..2 {
                    assert_eq!(rm[4 * i + 2 * j + k], (i + 2 * j + 4 * k) as f64);
                }
            }
        }
    }

    #[test]
    fn both_byte_orders_small_name_and_narrow_storage() {
        for le in [true, false] {
            // A double array stored as miUINT8, as MATLAB does for integral values.
            let f = build(le, "ab", &[2, 3], MI_UINT8, &[1, 4, 2, 5, 3, 6]);
            let m = read_variables(&f, Path::new("t.mat")).unwrap();
            let a = m.get("ab").unwrap();
            assert_eq!(a.class, MatClass::Double);
            assert_eq!(a.dims, vec![2, 3]);
            assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
            assert_eq!(m.little_endian, le);
            // int16 storage, negative values, long name.
            let vals: [i16; 2] = [-300, 7];
            let payload: Vec<u8> = vals
                .iter()
                .flat_map(|v| if le { v.to_le_bytes() } else { v.to_be_bytes() })
                .collect();
            let f = build(le, "longname", &[1, 2], MI_INT16, &payload);
            let m = read_variables(&f, Path::new("t.mat")).unwrap();
            assert_eq!(m.get("longname").unwrap().data, vec![-300.0, 7.0]);
        }
    }

    #[test]
    fn errors_name_file_offset_and_problem() {
        let f = build(true, "x", &[2, 2], MI_DOUBLE, &[0u8; 24]); // 3 doubles for 4 cells
        let e = read_variables(&f, Path::new("dir/f.mat")).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("dir/f.mat: byte "), "{s}");
        assert!(s.contains("need 4"), "{s}");
        let e = read_variables(&f[..100], Path::new("f.mat")).unwrap_err();
        assert!(e.to_string().contains("128-byte header"), "{e}");
        let mut g = f.clone();
        g[126] = b'X';
        let e = read_variables(&g, Path::new("f.mat")).unwrap_err();
        assert_eq!(e.offset, 126);
        // Truncated inside the data: the claim is checked against the remaining bytes.
        let e = read_variables(&f[..f.len() - 9], Path::new("f.mat")).unwrap_err();
        assert_eq!(e.offset, 128, "{e}");
        assert!(e.to_string().contains("claims"), "{e}");
    }

    /// `file` (from [`build`]) with its matrix element wrapped in a zlib `miCOMPRESSED` element,
    /// the matrix tag declaring `declared` bytes and `extra` zero bytes after the element.
    fn compressed(file: &[u8], declared: Option<u32>, extra: usize) -> Vec<u8> {
        use std::io::Write;
        let mut inner = file[HEADER_LEN..].to_vec();
        if let Some(d) = declared {
            inner[4..8].copy_from_slice(&d.to_le_bytes());
        }
        inner.resize(inner.len() + extra, 0);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&inner).unwrap();
        let z = z.finish().unwrap();
        let mut out = file[..HEADER_LEN].to_vec();
        out.extend(MI_COMPRESSED.to_le_bytes());
        out.extend((z.len() as u32).to_le_bytes());
        out.extend(z);
        out
    }

    #[test]
    fn compressed_inflation_is_capped_by_the_variable_header() {
        let p = Path::new("big.mat");
        let file = build(true, "x", &[1, 1], MI_DOUBLE, &1.5f64.to_le_bytes());
        // The honest compressed form reads back.
        let ok = read_variables(&compressed(&file, None, 0), p).unwrap();
        assert_eq!(ok.get("x").unwrap().data, vec![1.5]);
        // A 1x1 double whose element claims 2^30 bytes: refused from its header alone.
        let e = read_variables(&compressed(&file, Some(1 << 30), 1 << 20), p).unwrap_err();
        assert!(
            e.msg
                .contains("declares 1073741824 bytes, more than its dimensions [1, 1]"),
            "{e}"
        );
        assert_eq!(e.offset, HEADER_LEN as u64);
        // An honest header followed by a megabyte of more data: inflation stops just past the
        // declared size.
        let e = read_variables(&compressed(&file, None, 1 << 20), p).unwrap_err();
        assert!(e.msg.contains("more than the"), "{e}");
        assert!(e.msg.contains("bytes its variable declares"), "{e}");
        // A header consistent with 2^27 doubles but a stream that ends early: truncated.
        let big = build(true, "y", &[1 << 14, 1 << 13], MI_DOUBLE, &[0u8; 64]);
        let mut inner_claims = compressed(&big, Some((1u32 << 30) + 48), 4096);
        let e = read_variables(&inner_claims, p).unwrap_err();
        assert!(e.msg.contains("remain"), "{e}");
        inner_claims.truncate(inner_claims.len() - 3);
        assert!(read_variables(&inner_claims, p).is_err());
    }
}
