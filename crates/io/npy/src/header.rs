//! The `.npy` header: magic, version, and the Python-literal dictionary
//! `{'descr': ..., 'fortran_order': ..., 'shape': (...)}`.

/// Scalar kind of a dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    UInt,
    Bool,
    /// Fixed-width UCS-4 text (`<U15`): `size` is the byte width, 4 per character. Numeric
    /// reads refuse it; [`crate::read_strings`] decodes it.
    Unicode,
}

/// A dtype: kind, byte width and byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DType {
    pub kind: Kind,
    pub size: usize,
    pub big_endian: bool,
}

impl DType {
    pub const F32: DType = DType {
        kind: Kind::Float,
        size: 4,
        big_endian: false,
    };
    pub const F64: DType = DType {
        kind: Kind::Float,
        size: 8,
        big_endian: false,
    };
    pub const I32: DType = DType {
        kind: Kind::Int,
        size: 4,
        big_endian: false,
    };
    pub const I64: DType = DType {
        kind: Kind::Int,
        size: 8,
        big_endian: false,
    };
    pub const U8: DType = DType {
        kind: Kind::UInt,
        size: 1,
        big_endian: false,
    };

    /// Parses a NumPy type string such as `<f4`, `>i8`, `|u1`, `|b1`, `<U15`.
    pub fn parse(descr: &str) -> Option<DType> {
        let b = descr.as_bytes();
        if b.len() < 3 {
            return None;
        }
        let big_endian = match b[0] {
            b'<' | b'|' | b'=' => false,
            b'>' => true,
            _ => return None,
        };
        let kind = match b[1] {
            b'f' => Kind::Float,
            b'i' => Kind::Int,
            b'u' => Kind::UInt,
            b'b' => Kind::Bool,
            b'U' => Kind::Unicode,
            _ => return None,
        };
        let size: usize = descr[2..].parse().ok()?;
        // A text width counts characters of 4 bytes; 0 (numpy's `<U0`) has no bytes to decode.
        let size = match kind {
            Kind::Unicode => size.checked_mul(4)?,
            _ => size,
        };
        let ok = match kind {
            Kind::Float => size == 4 || size == 8,
            Kind::Int | Kind::UInt => matches!(size, 1 | 2 | 4 | 8),
            Kind::Bool => size == 1,
            Kind::Unicode => size > 0,
        };
        ok.then_some(DType {
            kind,
            size,
            big_endian,
        })
    }

    /// The NumPy type string (`<f4`, `|u1`, `<U15`, ...).
    pub fn descr(&self) -> String {
        if self.kind == Kind::Unicode {
            let order = if self.big_endian { '>' } else { '<' };
            return format!("{order}U{}", self.size / 4);
        }
        let order = if self.size == 1 {
            '|'
        } else if self.big_endian {
            '>'
        } else {
            '<'
        };
        let k = match self.kind {
            Kind::Float => 'f',
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Bool => 'b',
            Kind::Unicode => 'U',
        };
        format!("{order}{k}{}", self.size)
    }
}

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub dtype: DType,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the first data byte.
    pub data_offset: usize,
}

impl Header {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of data bytes the header promises, or `None` on overflow.
    pub fn data_bytes(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.size, |acc, &d| acc.checked_mul(d))
    }
}

/// Parses the header at the start of `bytes`. Errors are `(offset, message)`.
pub fn parse_header(bytes: &[u8]) -> Result<Header, (u64, String)> {
    if bytes.len() < 10 {
        return Err((
            0,
            format!("file is {} bytes, too short for a .npy header", bytes.len()),
        ));
    }
    if &bytes[..6] != b"\x93NUMPY" {
        return Err((0, "bad magic: not a .npy file".into()));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err((8, "truncated header length".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12usize,
            )
        }
        v => return Err((6, format!("unsupported .npy version {v}"))),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or((
            start as u64,
            format!("header claims {hlen} bytes but the file is shorter"),
        ))?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| (start as u64, "header is not text".to_string()))?;
    let descr =
        dict_value(text, "descr").ok_or((start as u64, "header has no 'descr'".to_string()))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let dtype = DType::parse(descr)
        .ok_or_else(|| (start as u64, format!("unsupported dtype '{descr}'")))?;
    let fortran = dict_value(text, "fortran_order")
        .ok_or((start as u64, "header has no 'fortran_order'".to_string()))?;
    let fortran_order = match fortran.trim() {
        "True" => true,
        "False" => false,
        other => return Err((start as u64, format!("bad fortran_order '{other}'"))),
    };
    let shape_txt =
        dict_value(text, "shape").ok_or((start as u64, "header has no 'shape'".to_string()))?;
    let inner = shape_txt
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or((start as u64, format!("bad shape '{shape_txt}'")))?;
    let mut shape = Vec::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let p = p.trim_end_matches('L');
        shape.push(
            p.parse::<usize>()
                .map_err(|_| (start as u64, format!("bad shape entry '{p}'")))?,
        );
    }
    Ok(Header {
        dtype,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// Finds the text of a key's value in a flat Python dict literal.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let pos = text.find(&pat1).or_else(|| text.find(&pat2))?;
    let rest = &text[pos + pat1.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    if rest.starts_with('(') {
        let close = rest.find(')')?;
        Some(&rest[..=close])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

/// Builds a version-1 header (or version 2 if it does not fit) padded so data starts on 64 bytes.
pub(crate) fn build_header(dtype: DType, shape: &[usize]) -> Vec<u8> {
    build_header_len(dtype, shape, 0)
}

/// Like [`build_header`] but padded to at least `min_len` bytes (a multiple of 64), so a
/// streaming writer can reserve room and rewrite the header once the row count is known.
pub(crate) fn build_header_len(dtype: DType, shape: &[usize], min_len: usize) -> Vec<u8> {
    let shape_txt = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_txt
    );
    let mut out = Vec::new();
    let v1 = dict.len() + 1 + 10 <= u16::MAX as usize;
    let prefix = if v1 { 10 } else { 12 };
    let total = ((prefix + dict.len() + 1).div_ceil(64) * 64).max(min_len.div_ceil(64) * 64);
    let hlen = total - prefix;
    out.extend_from_slice(b"\x93NUMPY");
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    while out.len() < total - 1 {
        out.push(b' ');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        for shape in [vec![], vec![5], vec![3, 114, 10], vec![0, 17, 2]] {
            let h = build_header(DType::F32, &shape);
            assert_eq!(h.len() % 64, 0);
            let p = parse_header(&h).unwrap();
            assert_eq!(p.shape, shape);
            assert_eq!(p.dtype, DType::F32);
            assert!(!p.fortran_order);
            assert_eq!(p.data_offset, h.len());
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_header(b"hello world, not numpy").is_err());
        let mut h = build_header(DType::F64, &[2, 2]);
        h[6] = 9;
        assert_eq!(parse_header(&h).unwrap_err().0, 6);
        let h = build_header(DType::F64, &[2, 2]);
        assert!(parse_header(&h[..20]).is_err());
    }

    #[test]
    fn unicode_dtype() {
        let u = DType::parse("<U15").unwrap();
        assert_eq!((u.kind, u.size, u.big_endian), (Kind::Unicode, 60, false));
        assert_eq!(u.descr(), "<U15");
        assert_eq!(DType::parse(">U2").unwrap().descr(), ">U2");
        assert_eq!(DType::parse("<U0"), None);
        assert_eq!(DType::parse("<U99999999999999999999"), None);
    }

    #[test]
    fn parses_numpy_written_header() {
        let text = b"{'descr': '>i8', 'fortran_order': True, 'shape': (7, 3), }";
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        h.extend_from_slice(&(text.len() as u16).to_le_bytes());
        h.extend_from_slice(text);
        let p = parse_header(&h).unwrap();
        assert_eq!(
            p.dtype,
            DType {
                kind: Kind::Int,
                size: 8,
                big_endian: true
            }
        );
        assert!(p.fortran_order);
        assert_eq!(p.shape, vec![7, 3]);
    }
}
