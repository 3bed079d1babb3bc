//! The `.csm` model file (layout in FORMATS.md): a zero-copy, validated view over borrowed
//! bytes ([`ModelFile::parse`]) and an allocation-free writer ([`encode`] into a caller buffer).
//!
//! Tensors appear in the fixed order of the architecture ([`TensorSlot::all`]); Linear weight
//! matrices are stored transposed, `[in, out]` row-major, so a token-major product streams them
//! row by row. Only Linear weights may be int8 or int4; every other tensor is f32.

use core::fmt;

/// File magic: the bytes `CSPM`.
pub const MAGIC: [u8; 4] = *b"CSPM";
/// The only version this code reads and writes.
pub const VERSION: u16 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one tensor-table entry.
pub const ENTRY_LEN: usize = 32;
/// Tensor payloads start at multiples of this many bytes (a cache line).
pub const PAYLOAD_ALIGN: usize = 64;
pub use csipose_spec::coco::JOINTS;
pub use csipose_spec::config::{GRAPH_LAYERS, JOINT_EMBED, MAX_LAYERS};
/// The model hyper-parameters stored in the header (the architecture fixes the rest).
pub use csipose_spec::PoseConfig as Config;
pub use csipose_spec::{ConfigError, TensorSlot};

/// Header offset of each configuration field (for error messages).
fn config_offset(field: &str) -> usize {
    match field {
        "antennas" => 8,
        "subcarriers" => 10,
        "packets" => 12,
        "d" => 14,
        "layers" => 16,
        "heads" => 18,
        "graph" => 22,
        _ => 8,
    }
}

/// Storage type of a tensor's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32 = 0,
    I8 = 1,
    I4 = 2,
}

/// How a quantized tensor is scaled back: `w = q · scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    /// No scale (f32 tensors).
    None = 0,
    /// One scale for the whole tensor.
    PerTensor = 1,
    /// One scale per output column (`cols` scales).
    PerColumn = 2,
}

/// Everything that can be wrong with a model file; each says where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes end before `need` bytes (the file has `have`).
    Truncated { need: usize, have: usize },
    /// The first four bytes are not `CSPM`.
    BadMagic([u8; 4]),
    /// A version this code does not read.
    BadVersion(u16),
    /// The header's file length disagrees with the number of bytes given.
    BadLength { header: usize, actual: usize },
    /// CRC32 footer mismatch.
    BadCrc { stored: u32, computed: u32 },
    /// The configuration in the header is outside the architecture's bounds (says which
    /// field and why).
    BadConfig(ConfigError),
    /// The writer was given a model name longer than 16 bytes.
    NameTooLong(usize),
    /// Header field at this byte offset holds an invalid value (says which).
    BadHeader { offset: usize, what: &'static str },
    /// The table lists a different number of tensors than the configuration needs.
    TensorCount { expected: usize, found: usize },
    /// Tensor `index` (`slot`) has stored shape `found`, the configuration needs `expected`.
    Shape {
        index: usize,
        slot: TensorSlot,
        expected: (usize, usize),
        found: (usize, usize),
    },
    /// Tensor `index` has an invalid table entry field (says which).
    BadEntry {
        index: usize,
        slot: TensorSlot,
        what: &'static str,
    },
    /// The bytes do not start at a 4-byte aligned address (f32 views need it).
    Misaligned,
    /// The payload is little-endian; this target is big-endian.
    BigEndian,
    /// The writer was given a tensor that does not fit its slot (says why).
    BadInput {
        index: usize,
        slot: TensorSlot,
        what: &'static str,
    },
    /// The writer's output buffer is too small.
    BufferTooSmall { need: usize, have: usize },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match self {
            Truncated { need, have } => {
                write!(f, "truncated: needs at least {need} bytes, has {have}")
            }
            BadMagic(m) => write!(f, "bad magic at offset 0: {m:02x?}, expected \"CSPM\""),
            BadVersion(v) => write!(f, "unsupported version {v} at offset 4 (this reads {VERSION})"),
            BadLength { header, actual } => write!(
                f,
                "length mismatch: header (offset 40) says {header} bytes, file has {actual}"
            ),
            BadCrc { stored, computed } => write!(
                f,
                "CRC32 mismatch: footer says {stored:08x}, contents give {computed:08x} (corrupted file)"
            ),
            BadConfig(e) => write!(
                f,
                "invalid model configuration in header (offset {}): {e}",
                config_offset(e.field)
            ),
            NameTooLong(n) => write!(f, "model name is {n} bytes, at most 16 fit"),
            BadHeader { offset, what } => write!(f, "invalid header field at offset {offset}: {what}"),
            TensorCount { expected, found } => write!(
                f,
                "tensor table (offset 30) lists {found} tensors, the configuration needs {expected}"
            ),
            Shape { index, slot, expected, found } => write!(
                f,
                "tensor {index} ({slot}, table offset {}): stored shape {found:?}, expected {expected:?}",
                HEADER_LEN + index * ENTRY_LEN
            ),
            BadEntry { index, slot, what } => write!(
                f,
                "tensor {index} ({slot}, table offset {}): {what}",
                HEADER_LEN + index * ENTRY_LEN
            ),
            Misaligned => f.write_str("model bytes are not 4-byte aligned in memory"),
            BigEndian => f.write_str("model files are little-endian; big-endian targets are unsupported"),
            BadInput { index, slot, what } => write!(f, "tensor {index} ({slot}): {what}"),
            BufferTooSmall { need, have } => {
                write!(f, "output buffer too small: needs {need} bytes, has {have}")
            }
        }
    }
}

impl core::error::Error for FormatError {}

/// The values of one tensor, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    F32(&'a [f32]),
    /// Signed 8-bit codes, row-major; `scales` has 1 (per tensor) or `cols` entries.
    I8 {
        q: &'a [i8],
        scales: &'a [f32],
    },
    /// Signed 4-bit codes (two's complement nibbles), row-major, two per byte: element `2i`
    /// in the low nibble of byte `i`, element `2i + 1` in the high nibble.
    I4 {
        packed: &'a [u8],
        scales: &'a [f32],
    },
}

/// One tensor of a parsed model file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub slot: TensorSlot,
    pub data: TensorData<'a>,
}

impl TensorView<'_> {
    /// Storage type.
    pub fn dtype(&self) -> Dtype {
        match self.data {
            TensorData::F32(_) => Dtype::F32,
            TensorData::I8 { .. } => Dtype::I8,
            TensorData::I4 { .. } => Dtype::I4,
        }
    }

    /// The dequantised value at flat (row-major) index `i`.
    pub fn get(&self, i: usize) -> f32 {
        let cols = self.slot.cols;
        let scale = |s: &[f32]| if s.len() == 1 { s[0] } else { s[i % cols] };
        match self.data {
            TensorData::F32(v) => v[i],
            TensorData::I8 { q, scales } => q[i] as f32 * scale(scales),
            TensorData::I4 { packed, scales } => nibble(packed, i) as f32 * scale(scales),
        }
    }
}

/// The signed 4-bit value at element `i` of a packed int4 array.
#[inline]
pub fn nibble(packed: &[u8], i: usize) -> i8 {
    let b = packed[i / 2];
    let n = if i.is_multiple_of(2) {
        b & 0x0f
    } else {
        b >> 4
    };
    ((n << 4) as i8) >> 4
}

/// A validated model file borrowed from memory.
#[derive(Clone, Copy, Debug)]
pub struct ModelFile<'a> {
    bytes: &'a [u8],
    pub config: Config,
    name: [u8; 16],
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Fixed architecture constants stored in the header, checked on load: (offset, value, what).
const FIXED: [(usize, u16, &str); 3] = [
    (24, JOINTS as u16, "joints must be 17"),
    (26, JOINT_EMBED as u16, "joint embedding width must be 32"),
    (28, GRAPH_LAYERS as u16, "graph layers must be 2"),
];

impl<'a> ModelFile<'a> {
    /// Validates `bytes` (magic, version, length, CRC, configuration, every table entry and
    /// shape) and borrows them. Nothing is copied.
    pub fn parse(bytes: &'a [u8]) -> Result<ModelFile<'a>, FormatError> {
        if cfg!(target_endian = "big") {
            return Err(FormatError::BigEndian);
        }
        let have = bytes.len();
        if have < 4 {
            return Err(FormatError::Truncated {
                need: HEADER_LEN + 4,
                have,
            });
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(FormatError::BadMagic(magic));
        }
        if have < HEADER_LEN + 4 {
            return Err(FormatError::Truncated {
                need: HEADER_LEN + 4,
                have,
            });
        }
        let version = u16_at(bytes, 4);
        if version != VERSION {
            return Err(FormatError::BadVersion(version));
        }
        let file_len = u32_at(bytes, 40) as usize;
        if file_len > have {
            return Err(FormatError::Truncated {
                need: file_len,
                have,
            });
        }
        if file_len != have {
            return Err(FormatError::BadLength {
                header: file_len,
                actual: have,
            });
        }
        let stored = u32_at(bytes, have - 4);
        let computed = crc32fast::hash(&bytes[..have - 4]);
        if stored != computed {
            return Err(FormatError::BadCrc { stored, computed });
        }
        let h = |o| u16_at(bytes, o) as usize;
        if h(6) != HEADER_LEN {
            return Err(FormatError::BadHeader {
                offset: 6,
                what: "header length must be 64",
            });
        }
        let config = Config {
            antennas: h(8),
            subcarriers: h(10),
            packets: h(12),
            d: h(14),
            layers: h(16),
            heads: h(18),
            graph: h(22),
        };
        config.validate().map_err(FormatError::BadConfig)?;
        if h(20) != config.ffn() {
            return Err(FormatError::BadHeader {
                offset: 20,
                what: "ffn width must be 2d",
            });
        }
        for (o, v, what) in FIXED {
            if u16_at(bytes, o) != v {
                return Err(FormatError::BadHeader { offset: o, what });
            }
        }
        let expected = config.tensor_count();
        let found = h(30);
        if found != expected {
            return Err(FormatError::TensorCount { expected, found });
        }
        if u32_at(bytes, 32) as usize != HEADER_LEN {
            return Err(FormatError::BadHeader {
                offset: 32,
                what: "tensor table must start at 64",
            });
        }
        if bytes[44..48].iter().any(|&b| b != 0) {
            return Err(FormatError::BadHeader {
                offset: 44,
                what: "reserved bytes must be 0",
            });
        }
        let table_end = HEADER_LEN + expected * ENTRY_LEN;
        if table_end + 4 > have {
            return Err(FormatError::Truncated {
                need: table_end + 4,
                have,
            });
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(FormatError::Misaligned);
        }
        let mut name = [0u8; 16];
        name.copy_from_slice(&bytes[48..64]);
        let file = ModelFile {
            bytes,
            config,
            name,
        };
        for i in 0..expected {
            file.entry(i)?;
        }
        Ok(file)
    }

    /// The model's name (e.g. `micro`), as stored in the header.
    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.config.tensor_count()
    }

    /// Tensor `i` in file order (validated by [`ModelFile::parse`]).
    pub fn tensor(&self, i: usize) -> TensorView<'a> {
        self.entry(i).expect("entries were validated by parse")
    }

    /// The smallest storage precision of any tensor (what the file is "at").
    pub fn precision(&self) -> Dtype {
        (0..self.tensor_count())
            .map(|i| self.tensor(i).dtype())
            .max_by_key(|&d| d as u8)
            .unwrap_or(Dtype::F32)
    }

    fn entry(&self, index: usize) -> Result<TensorView<'a>, FormatError> {
        let b = self.bytes;
        let slot = TensorSlot::nth(&self.config, index).expect("index below tensor_count");
        let e = HEADER_LEN + index * ENTRY_LEN;
        let bad = |what| FormatError::BadEntry { index, slot, what };
        let found = (u32_at(b, e + 4) as usize, u32_at(b, e + 8) as usize);
        let expected = (slot.rows, slot.cols);
        if found != expected {
            return Err(FormatError::Shape {
                index,
                slot,
                expected,
                found,
            });
        }
        if b[e + 3] != 0 || u32_at(b, e + 28) != 0 {
            return Err(bad("reserved fields must be 0"));
        }
        let n = slot.len();
        let (dtype, scale) = (b[e], b[e + 1]);
        let data_len = match dtype {
            0 => n * 4,
            1 => n,
            2 => n.div_ceil(2),
            _ => return Err(bad("unknown dtype (0 = f32, 1 = int8, 2 = int4)")),
        };
        if dtype != 0 && !slot.linear {
            return Err(bad("only Linear weights may be quantized"));
        }
        let n_scales = match (dtype, scale) {
            (0, 0) => 0,
            (0, _) => return Err(bad("f32 tensors carry no scale")),
            (_, 1) => 1,
            (_, 2) => slot.cols,
            _ => return Err(bad("quantized tensors need scale kind 1 or 2")),
        };
        if b[e + 2] as usize != slot.stored_rank() {
            return Err(bad("wrong number of dimensions"));
        }
        let off = u32_at(b, e + 12) as usize;
        let len = u32_at(b, e + 16) as usize;
        let payload_end = b.len() - 4;
        let table_end = HEADER_LEN + self.tensor_count() * ENTRY_LEN;
        if len != data_len {
            return Err(bad("payload length does not match shape and dtype"));
        }
        if !off.is_multiple_of(PAYLOAD_ALIGN) || off < table_end || off + len > payload_end {
            return Err(bad("payload offset out of range or not 64-byte aligned"));
        }
        let s_off = u32_at(b, e + 20) as usize;
        let s_cnt = u32_at(b, e + 24) as usize;
        if s_cnt != n_scales {
            return Err(bad("scale count does not match scale kind"));
        }
        if n_scales > 0
            && (!s_off.is_multiple_of(4) || s_off < table_end || s_off + 4 * n_scales > payload_end)
        {
            return Err(bad("scale offset out of range or not 4-byte aligned"));
        }
        if n_scales == 0 && s_off != 0 {
            return Err(bad("scale offset must be 0 without scales"));
        }
        let scales = f32s(&b[s_off..s_off + 4 * n_scales]);
        if scales.iter().any(|s| !s.is_finite()) {
            return Err(bad("non-finite scale"));
        }
        let raw = &b[off..off + len];
        let data = match dtype {
            0 => TensorData::F32(f32s(raw)),
            1 => TensorData::I8 {
                // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is
                // valid for both, so the slice (same length, same borrow of the file) is a
                // valid `[i8]`.
                q: unsafe { &*(raw as *const [u8] as *const [i8]) },
                scales,
            },
            _ => TensorData::I4 {
                packed: raw,
                scales,
            },
        };
        Ok(TensorView { slot, data })
    }
}

/// Reinterprets little-endian bytes as f32 (the caller checked length and alignment).
fn f32s(b: &[u8]) -> &[f32] {
    assert!(b.len().is_multiple_of(4) && (b.as_ptr() as usize).is_multiple_of(4));
    // SAFETY: length is a multiple of 4, the pointer is 4-aligned, every bit pattern is a
    // valid f32, and the target is little-endian (checked in `parse`).
    unsafe { core::slice::from_raw_parts(b.as_ptr() as *const f32, b.len() / 4) }
}

/// One tensor handed to the writer, in stored orientation (Linear weights `[in, out]`).
#[derive(Clone, Copy, Debug)]
pub enum TensorIn<'a> {
    F32(&'a [f32]),
    /// int8 codes in -127..=127 and 1 or `cols` scales.
    I8 {
        q: &'a [i8],
        scales: &'a [f32],
    },
    /// int4 codes in -8..=7 (one per element, unpacked) and 1 or `cols` scales.
    I4 {
        q: &'a [i8],
        scales: &'a [f32],
    },
}

fn align(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Where each tensor's payload and scales go: calls `f(index, data_offset, data_len,
/// scale_offset, scale_count)` and returns the total file length.
fn plan(
    cfg: &Config,
    tensors: &[TensorIn],
    mut f: impl FnMut(usize, usize, usize, usize, usize),
) -> Result<usize, FormatError> {
    cfg.validate().map_err(FormatError::BadConfig)?;
    let expected = cfg.tensor_count();
    if tensors.len() != expected {
        return Err(FormatError::TensorCount {
            expected,
            found: tensors.len(),
        });
    }
    let mut off = align(HEADER_LEN + expected * ENTRY_LEN, PAYLOAD_ALIGN);
    for (index, (t, slot)) in tensors.iter().zip(TensorSlot::all(cfg)).enumerate() {
        let bad = |what| FormatError::BadInput { index, slot, what };
        let n = slot.len();
        let (len, count, scales) = match t {
            TensorIn::F32(v) => (v.len(), n, 0),
            TensorIn::I8 { q, scales } => (q.len(), n, scales.len()),
            TensorIn::I4 { q, scales } => (q.len(), n, scales.len()),
        };
        if len != count {
            return Err(bad("wrong number of values for this tensor's shape"));
        }
        if !matches!(t, TensorIn::F32(_)) {
            if !slot.linear {
                return Err(bad("only Linear weights may be quantized"));
            }
            if scales != 1 && scales != slot.cols {
                return Err(bad("quantized tensors need 1 or `cols` scales"));
            }
        }
        let data_len = match t {
            TensorIn::F32(_) => 4 * n,
            TensorIn::I8 { q, .. } => {
                if q.contains(&i8::MIN) {
                    return Err(bad("int8 codes must be in -127..=127"));
                }
                n
            }
            TensorIn::I4 { q, .. } => {
                if q.iter().any(|&v| !(-8..=7).contains(&v)) {
                    return Err(bad("int4 codes must be in -8..=7"));
                }
                n.div_ceil(2)
            }
        };
        let s_off = if scales > 0 {
            align(off + data_len, 4)
        } else {
            0
        };
        f(index, off, data_len, s_off, scales);
        let end = if scales > 0 {
            s_off + 4 * scales
        } else {
            off + data_len
        };
        off = align(end, PAYLOAD_ALIGN);
    }
    Ok(off + 4)
}

/// Bytes [`encode`] will write for these tensors.
pub fn encoded_len(cfg: &Config, tensors: &[TensorIn]) -> Result<usize, FormatError> {
    plan(cfg, tensors, |_, _, _, _, _| {})
}

/// Writes a model file for `cfg` (named `name`, at most 16 bytes) into `out` and returns its
/// length. `tensors` are in file order ([`TensorSlot::all`]), Linear weights as `[in, out]`.
pub fn encode(
    cfg: &Config,
    name: &str,
    tensors: &[TensorIn],
    out: &mut [u8],
) -> Result<usize, FormatError> {
    let total = encoded_len(cfg, tensors)?;
    if out.len() < total {
        return Err(FormatError::BufferTooSmall {
            need: total,
            have: out.len(),
        });
    }
    if name.len() > 16 {
        return Err(FormatError::NameTooLong(name.len()));
    }
    let out = &mut out[..total];
    out.fill(0);
    let put16 = |o: &mut [u8], at: usize, v: usize| {
        o[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes())
    };
    let put32 = |o: &mut [u8], at: usize, v: usize| {
        o[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes())
    };
    out[..4].copy_from_slice(&MAGIC);
    put16(out, 4, VERSION as usize);
    put16(out, 6, HEADER_LEN);
    for (at, v) in [
        (8, cfg.antennas),
        (10, cfg.subcarriers),
        (12, cfg.packets),
        (14, cfg.d),
        (16, cfg.layers),
        (18, cfg.heads),
        (20, cfg.ffn()),
        (22, cfg.graph),
        (24, JOINTS),
        (26, JOINT_EMBED),
        (28, GRAPH_LAYERS),
        (30, cfg.tensor_count()),
    ] {
        put16(out, at, v);
    }
    put32(out, 32, HEADER_LEN);
    put32(out, 40, total);
    out[48..48 + name.len()].copy_from_slice(name.as_bytes());
    plan(cfg, tensors, |i, off, len, s_off, s_cnt| {
        let slot = TensorSlot::nth(cfg, i).expect("planned index");
        let e = HEADER_LEN + i * ENTRY_LEN;
        let t = &tensors[i];
        let (dtype, scales): (u8, &[f32]) = match t {
            TensorIn::F32(_) => (0, &[]),
            TensorIn::I8 { scales, .. } => (1, scales),
            TensorIn::I4 { scales, .. } => (2, scales),
        };
        out[e] = dtype;
        out[e + 1] = match (dtype, s_cnt) {
            (0, _) => 0,
            (_, 1) => 1,
            _ => 2,
        };
        out[e + 2] = slot.stored_rank() as u8;
        put32(out, e + 4, slot.rows);
        put32(out, e + 8, slot.cols);
        put32(out, e + 12, off);
        put32(out, e + 16, len);
        put32(out, e + 20, s_off);
        put32(out, e + 24, s_cnt);
        let dst = &mut out[off..off + len];
        match t {
            TensorIn::F32(v) => {
                for (d, x) in dst.chunks_exact_mut(4).zip(v.iter()) {
                    d.copy_from_slice(&x.to_le_bytes());
                }
            }
            TensorIn::I8 { q, .. } => {
                for (d, &x) in dst.iter_mut().zip(q.iter()) {
                    *d = x as u8;
                }
            }
            TensorIn::I4 { q, .. } => {
                for (k, &x) in q.iter().enumerate() {
                    let nib = (x as u8) & 0x0f;
                    dst[k / 2] |= if k % 2 == 0 { nib } else { nib << 4 };
                }
            }
        }
        for (k, s) in scales.iter().enumerate() {
            out[s_off + 4 * k..s_off + 4 * k + 4].copy_from_slice(&s.to_le_bytes());
        }
    })?;
    let crc = crc32fast::hash(&out[..total - 4]);
    out[total - 4..].copy_from_slice(&crc.to_le_bytes());
    Ok(total)
}
