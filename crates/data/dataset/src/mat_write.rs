//! Writing MATLAB Level 5 `.mat` files holding real `double` arrays: what the simulator's
//! `--mmfi-tree` output uses for MM-Fi-layout frames (`CSIamp`, `CSIphase`).
//!
//! Layout (little-endian, as MATLAB writes on x86): a 128-byte header (116 bytes of text,
//! 8 bytes of subsystem offset, version 0x0100, endian indicator `IM`), then one data
//! element per variable: a `miMATRIX` (tag type 14) holding the array-flags subelement
//! (`miUINT32`, class `mxDOUBLE_CLASS` = 6), the dimensions (`miINT32`), the name (`miINT8`)
//! and the real part (`miDOUBLE`), each padded to 8 bytes. With compression, each
//! `miMATRIX` element is zlib-deflated into an `miCOMPRESSED` (type 15) element, as
//! MATLAB's default `-v7` save does. Data is stored column-major, as MATLAB holds arrays.

use std::io::Write;

/// Data type codes of MAT v5 tags.
pub const MI_INT8: u32 = 1;
pub const MI_INT32: u32 = 5;
pub const MI_UINT32: u32 = 6;
pub const MI_DOUBLE: u32 = 9;
pub const MI_MATRIX: u32 = 14;
pub const MI_COMPRESSED: u32 = 15;
/// Array class of `double` arrays.
pub const MX_DOUBLE_CLASS: u32 = 6;

/// One variable to write: `data` holds the values in MATLAB's column-major order.
#[derive(Clone, Copy, Debug)]
pub struct MatVar<'a> {
    pub name: &'a str,
    pub dims: &'a [usize],
    pub data: &'a [f64],
}

/// Reorders a row-major (C-order) array of shape `dims` into column-major (MATLAB) order.
pub fn to_column_major(row_major: &[f64], dims: &[usize]) -> Vec<f64> {
    let n: usize = dims.iter().product();
    assert_eq!(n, row_major.len(), "shape {dims:?} does not match the data");
    let mut out = vec![0.0; n];
    // Row-major strides.
    let mut rs = vec![1usize; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        rs[d] = rs[d + 1] * dims[d + 1];
    }
    let mut idx = vec![0usize; dims.len()];
    for v in out.iter_mut() {
        // `idx` walks the column-major order: the first index changes fastest.
        let src: usize = idx.iter().zip(&rs).map(|(i, s)| i * s).sum();
        *v = row_major[src];
        for d in 0..dims.len() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

fn pad8(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(8) {
        buf.push(0);
    }
}

fn tag(buf: &mut Vec<u8>, ty: u32, bytes: usize) {
    buf.extend_from_slice(&ty.to_le_bytes());
    buf.extend_from_slice(&(bytes as u32).to_le_bytes());
}

/// The `miMATRIX` element (tag included) of one variable.
pub fn matrix_element(var: &MatVar) -> Vec<u8> {
    let n: usize = var.dims.iter().product();
    assert_eq!(
        n,
        var.data.len(),
        "{}: dims do not match the data",
        var.name
    );
    assert!(
        var.dims.len() >= 2,
        "MATLAB arrays have at least two dimensions"
    );
    let mut body = Vec::with_capacity(64 + 8 * n);
    // Array flags: class double, no complex/global/logical bits.
    tag(&mut body, MI_UINT32, 8);
    body.extend_from_slice(&MX_DOUBLE_CLASS.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // Dimensions.
    tag(&mut body, MI_INT32, 4 * var.dims.len());
    for &d in var.dims {
        body.extend_from_slice(&(d as i32).to_le_bytes());
    }
    pad8(&mut body);
    // Name.
    tag(&mut body, MI_INT8, var.name.len());
    body.extend_from_slice(var.name.as_bytes());
    pad8(&mut body);
    // Real part.
    tag(&mut body, MI_DOUBLE, 8 * n);
    for v in var.data {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = Vec::with_capacity(8 + body.len());
    tag(&mut out, MI_MATRIX, body.len());
    out.extend_from_slice(&body);
    out
}

/// The 128-byte file header.
pub fn header() -> [u8; 128] {
    let mut h = [b' '; 128];
    let text = b"MATLAB 5.0 MAT-file, Platform: csipose, Created by: csipose simulate";
    h[..text.len()].copy_from_slice(text);
    h[116..124].fill(0);
    h[124..126].copy_from_slice(&0x0100u16.to_le_bytes());
    h[126..128].copy_from_slice(b"IM");
    h
}

/// The bytes of a whole `.mat` file holding `vars`; `compress` wraps each variable in a
/// zlib-compressed `miCOMPRESSED` element.
pub fn mat_bytes(vars: &[MatVar], compress: bool) -> Vec<u8> {
    let mut out = header().to_vec();
    for v in vars {
        let el = matrix_element(v);
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&el).expect("writing to memory");
            let packed = z.finish().expect("writing to memory");
            tag(&mut out, MI_COMPRESSED, packed.len());
            out.extend_from_slice(&packed);
        } else {
            out.extend_from_slice(&el);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    /// A minimal independent parse of what the writer promises: returns (name, dims, data).
    fn parse_matrix(el: &[u8]) -> (String, Vec<usize>, Vec<f64>) {
        assert_eq!(u32_at(el, 0), MI_MATRIX);
        let len = u32_at(el, 4) as usize;
        assert_eq!(el.len(), 8 + len, "element length");
        let b = &el[8..];
        assert_eq!((u32_at(b, 0), u32_at(b, 4)), (MI_UINT32, 8));
        assert_eq!(u32_at(b, 8) & 0xFF, MX_DOUBLE_CLASS);
        let mut o = 16;
        assert_eq!(u32_at(b, o), MI_INT32);
        let nd = u32_at(b, o + 4) as usize / 4;
        let dims: Vec<usize> = (0..nd).map(|i| u32_at(b, o + 8 + 4 * i) as usize).collect();
        o += 8 + (4 * nd).div_ceil(8) * 8;
        assert_eq!(u32_at(b, o), MI_INT8);
        let nl = u32_at(b, o + 4) as usize;
        let name = String::from_utf8(b[o + 8..o + 8 + nl].to_vec()).unwrap();
        o += 8 + nl.div_ceil(8) * 8;
        assert_eq!(u32_at(b, o), MI_DOUBLE);
        let nb = u32_at(b, o + 4) as usize;
        let data: Vec<f64> = b[o + 8..o + 8 + nb]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(o + 8 + nb, b.len(), "nothing after the real part");
        (name, dims, data)
    }

    #[test]
    fn column_major_reorders_like_matlab() {
        // A (2,3) row-major [[1,2,3],[4,5,6]] is stored 1,4,2,5,3,6 in MATLAB.
        let v = to_column_major(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_eq!(v, vec![1., 4., 2., 5., 3., 6.]);
        // 3D: element (a,s,p) of dims (2,3,2) lands at a + 2 s + 6 p.
        let rm: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let cm = to_column_major(&rm, &[2, 3, 2]);
        for a in 0..2 {
            for s in 0..3 {
                for p in 0..2 {
                    assert_eq!(cm[a + 2 * s + 6 * p], rm[(a * 3 + s) * 2 + p]);
                }
            }
        }
    }

    #[test]
    fn plain_and_compressed_files_parse_back() {
        let amp: Vec<f64> = (0..3 * 4 * 2)
            .map(|i| {
                if i == 5 {
                    f64::INFINITY
                } else {
                    i as f64 * 0.5
                }
            })
            .collect();
        let ph: Vec<f64> = (0..24).map(|i| -(i as f64)).collect();
        let vars = [
            MatVar {
                name: "CSIamp",
                dims: &[3, 4, 2],
                data: &amp,
            },
            MatVar {
                name: "CSIphase",
                dims: &[3, 4, 2],
                data: &ph,
            },
        ];
        for compress in [false, true] {
            let bytes = mat_bytes(&vars, compress);
            assert!(bytes.starts_with(b"MATLAB 5.0 MAT-file"));
            assert_eq!(&bytes[124..128], &[0x00, 0x01, b'I', b'M']);
            let mut o = 128;
            let mut got = Vec::new();
            while o < bytes.len() {
                let ty = u32_at(&bytes, o);
                let len = u32_at(&bytes, o + 4) as usize;
                let el = if compress {
                    assert_eq!(ty, MI_COMPRESSED);
                    let mut d = Vec::new();
                    flate2::read::ZlibDecoder::new(&bytes[o + 8..o + 8 + len])
                        .read_to_end(&mut d)
                        .unwrap();
                    d
                } else {
                    assert_eq!(len % 8, 0, "elements are 8-byte aligned");
                    bytes[o..o + 8 + len].to_vec()
                };
                got.push(parse_matrix(&el));
                o += 8 + len;
            }
            assert_eq!(o, bytes.len());
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].0, "CSIamp");
            assert_eq!(got[0].1, vec![3, 4, 2]);
            assert!(got[0].2[5].is_infinite());
            assert_eq!(got[0].2[7], 3.5);
            assert_eq!(got[1].0, "CSIphase");
            assert_eq!(got[1].2, ph);
        }
    }

    #[test]
    fn round_trip_through_the_project_reader() {
        let dims = [3usize, 5, 4];
        let rm: Vec<f64> = (0..60)
            .map(|i| match i {
                7 => f64::INFINITY,
                11 => f64::NEG_INFINITY,
                _ => (i as f64).sqrt() - 3.0,
            })
            .collect();
        let cm = to_column_major(&rm, &dims);
        let ph: Vec<f64> = rm.iter().map(|v| -v).collect();
        let cph = to_column_major(&ph, &dims);
        for compress in [false, true] {
            let bytes = mat_bytes(
                &[
                    MatVar {
                        name: "CSIamp",
                        dims: &dims,
                        data: &cm,
                    },
                    MatVar {
                        name: "CSIphase",
                        dims: &dims,
                        data: &cph,
                    },
                ],
                compress,
            );
            let f = crate::mat::read_variables(&bytes, std::path::Path::new("rt.mat")).unwrap();
            let amp = f.get("CSIamp").unwrap();
            assert_eq!(amp.dims, dims.to_vec());
            assert_eq!(amp.class, crate::mat::MatClass::Double);
            assert_eq!(amp.data.len(), 60);
            for (a, b) in amp.data.iter().zip(&rm) {
                assert!(a == b || (a.is_nan() && b.is_nan()), "{a} vs {b}");
            }
            let p = f.get("CSIphase").unwrap();
            assert_eq!(p.data[3], ph[3]);
            assert!(amp.imag.is_none());
        }
    }

    #[test]
    fn file_matches_scipy_layout_of_mmfi_mini() {
        // scipy.io.savemat (uncompressed) and this writer lay a (3,114,10) double out the
        // same way: compare every byte after the 116-byte text with a real MM-Fi-mini frame.
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/mmfi-mini");
        let mut compared = 0;
        for f in [
            "E01/S02/A01/wifi-csi/frame001.mat",
            "E02/S11/A03/wifi-csi/frame005.mat",
        ] {
            let f = std::path::Path::new(root).join(f);
            let real = std::fs::read(&f)
                .unwrap_or_else(|e| panic!("{} is needed for this test: {e}", f.display()));
            if u32_at(&real, 128) != MI_MATRIX {
                continue; // a compressed frame: the round-trip test covers compression
            }
            compared += 1;
            let len = u32_at(&real, 132) as usize;
            let el = &real[128..136 + len];
            let (name, dims, data) = parse_matrix(el);
            assert_eq!(
                (name.as_str(), dims.as_slice()),
                ("CSIamp", &[3, 114, 10][..])
            );
            let mine = matrix_element(&MatVar {
                name: &name,
                dims: &dims,
                data: &data,
            });
            assert_eq!(mine.len(), el.len());
            assert_eq!(&mine[..], el, "element bytes differ from scipy's");
        }
        assert!(compared > 0, "no uncompressed frame found to compare with");
    }
}
