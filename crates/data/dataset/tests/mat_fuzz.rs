//! Robustness of the MATLAB v5 reader: thousands of mutated and truncated versions of the real
//! mmfi-mini frame files must give an error or a value, never a panic, and never an allocation
//! out of proportion to the input (checked with a counting allocator; this binary holds one test).

use csipose_dataset::mat;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records the largest single allocation since the last reset.
struct MaxAlloc;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; recording the largest size is one atomic operation that neither
// allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for MaxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: MaxAlloc = MaxAlloc;

fn mini() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/mmfi-mini"
    ))
}

/// xorshift64*: a tiny deterministic generator, enough to pick mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random mutation of `src`: truncation, byte flips, or a hostile 32-bit value
/// (sizes, types, dimensions) written at a random or a structurally interesting position.
fn mutate(src: &[u8], rng: &mut Rng, hot: &[usize]) -> Vec<u8> {
    let mut b = src.to_vec();
    match rng.below(5) {
        0 => b.truncate(rng.below(src.len())),
        1 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        2 | 3 => {
            let values = [
                0u32,
                1,
                3,
                4,
                5,
                7,
                8,
                9,
                14,
                15,
                0xffff_ffff,
                0x7fff_ffff,
                0x8000_0000,
                0x0004_0001,
                0x0008_0009,
                0x0001_0006,
                rng.next() as u32,
            ];
            let v = values[rng.below(values.len())];
            let at = if rng.below(2) == 0 && !hot.is_empty() {
                hot[rng.below(hot.len())]
            } else {
                rng.below(b.len().saturating_sub(4))
            };
            if at + 4 <= b.len() {
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            // Delete or duplicate a random span, shifting everything after it.
            let i = rng.below(b.len());
            let n = 1 + rng.below(16);
            if rng.below(2) == 0 {
                b.drain(i..(i + n).min(b.len()));
            } else {
                let span: Vec<u8> = b[i..(i + n).min(b.len())].to_vec();
                b.splice(i..i, span);
            }
        }
    }
    b
}

fn check(bytes: &[u8], path: &Path, compressed: bool) {
    LARGEST.store(0, Ordering::Relaxed);
    let r = mat::read_variables(bytes, path);
    let largest = LARGEST.load(Ordering::Relaxed);
    // Decoded f64 values may be 8x their narrowest storage; inflated data is bounded by
    // deflate's ratio (and a growing Vec may double once past it).
    let bound = if compressed {
        2 * 1032 * bytes.len() + (1 << 16)
    } else {
        16 * bytes.len() + (1 << 16)
    };
    assert!(
        largest <= bound,
        "allocation of {largest} bytes for a {}-byte input",
        bytes.len()
    );
    if let Err(e) = r {
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("{}: byte ", path.display())),
            "error does not name file and offset: {s}"
        );
        assert!(e.offset <= bytes.len() as u64, "{s}");
    }
}

/// Offsets of the tags and size fields of the first variable's sub-elements, and of the
/// first element of the second variable, in an uncompressed scipy-written frame.
fn hot_offsets(plain: &[u8]) -> Vec<usize> {
    let mut hot = vec![
        128, 132, 136, 140, 144, 152, 156, 160, 164, 168, 176, 180, 192, 196,
    ];
    let first_len = u32::from_le_bytes(plain[132..136].try_into().unwrap()) as usize;
    let second = 136 + first_len;
    hot.extend([
        second,
        second + 4,
        second + 8,
        second + 12,
        second + 24,
        second + 28,
    ]);
    hot
}

#[test]
fn mutated_and_truncated_real_files_never_panic() {
    let dir = mini().join("E01/S01/A01/wifi-csi");
    let compressed_path = dir.join("frame001.mat");
    let plain_path = dir.join("frame002.mat");
    let compressed = std::fs::read(&compressed_path).unwrap();
    let plain = std::fs::read(&plain_path).unwrap();
    assert_eq!(
        u32::from_le_bytes(compressed[128..132].try_into().unwrap()),
        15
    );
    assert_eq!(u32::from_le_bytes(plain[128..132].try_into().unwrap()), 14);
    // The originals read.
    assert!(mat::read_variables(&compressed, &compressed_path).is_ok());
    assert!(mat::read_variables(&plain, &plain_path).is_ok());

    // The compressed file's first element, inflated, as a plain file of its own; and a
    // big-endian rewrite of its header to reach the byte-swapped paths.
    let mut inflated = Vec::new();
    let n = u32::from_le_bytes(compressed[132..136].try_into().unwrap()) as usize;
    flate2::read::ZlibDecoder::new(&compressed[136..136 + n])
        .read_to_end(&mut inflated)
        .unwrap();
    let mut from_compressed = compressed[..128].to_vec();
    from_compressed.extend_from_slice(&inflated);
    assert!(mat::read_variables(&from_compressed, Path::new("inflated.mat")).is_ok());
    let big_endian = to_big_endian(&plain);
    let le = mat::read_variables(&plain, &plain_path).unwrap();
    let be = mat::read_variables(&big_endian, Path::new("be.mat")).unwrap();
    assert!(!be.little_endian);
    assert_eq!(le.variables, be.variables, "byte orders read alike");

    let hot = hot_offsets(&plain);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0;
    let rounds = 1500;
    for _ in 0..rounds {
        for (src, name, hot) in [
            (&plain, "plain.mat", &hot[..]),
            (&from_compressed, "inflated.mat", &hot[..6]),
            (&big_endian, "big-endian.mat", &[][..]),
        ] {
            let m = mutate(src, &mut rng, hot);
            check(&m, Path::new(name), false);
            errors += mat::read_variables(&m, Path::new(name)).is_err() as usize;
        }
        // The compressed file itself: mutations mostly break zlib.
        let m = mutate(&compressed, &mut rng, &[128, 132]);
        check(&m, Path::new("compressed.mat"), true);
        // A mutated matrix, re-compressed, reaches the parser through zlib.
        let inner = mutate(
            &inflated,
            &mut rng,
            &[0, 4, 8, 12, 16, 24, 28, 32, 40, 44, 48, 56, 60],
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&inner).unwrap();
        let body = z.finish().unwrap();
        let mut f = compressed[..128].to_vec();
        f.extend_from_slice(&15u32.to_le_bytes());
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(&body);
        check(&f, Path::new("recompressed.mat"), true);
    }
    // Every truncation of the plain file's first 400 bytes, and of the compressed file's header.
    for len in 0..400 {
        check(&plain[..len], &plain_path, false);
        // (A bare 128-byte header is a valid file without variables.)
        let r = mat::read_variables(&plain[..len], &plain_path);
        assert_eq!(r.is_ok(), len == 128, "truncated to {len} bytes");
        check(&compressed[..len], &compressed_path, true);
    }
    // A plain file claiming big-endian order reads its sizes swapped: a clean error.
    let mut wrong_order = plain.clone();
    wrong_order[126..128].copy_from_slice(b"MI");
    assert!(mat::read_variables(&wrong_order, Path::new("wrong.mat")).is_err());
    // The mutations must have exercised the error paths, not only lucky no-ops.
    eprintln!("{errors} of {} mutated plain inputs failed", 3 * rounds);
    assert!(
        errors > rounds,
        "only {errors} of {} mutated inputs failed",
        3 * rounds
    );

    // Highly compressible data: 8 MiB of zeros inflate within the ratio bound (allocation
    // checked) and are then refused as an invalid element.
    let zeros = vec![0u8; 8 << 20];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&zeros).unwrap();
    let body = z.finish().unwrap();
    let mut f = compressed[..128].to_vec();
    f.extend(15u32.to_le_bytes());
    f.extend((body.len() as u32).to_le_bytes());
    f.extend(&body);
    check(&f, Path::new("zeros.mat"), true);
    let e = mat::read_variables(&f, Path::new("zeros.mat")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("zeros.mat: byte 128: in the compressed element"),
        "{e}"
    );
}

/// Rewrites an uncompressed little-endian scipy frame file in big-endian byte order,
/// walking its known structure (top-level miMATRIX elements of numeric sub-elements).
fn to_big_endian(le: &[u8]) -> Vec<u8> {
    let mut b = le.to_vec();
    b[124..126].copy_from_slice(&0x0100u16.to_be_bytes());
    b[126..128].copy_from_slice(b"MI");
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let swap = |b: &mut [u8], i: usize, n: usize| b[i..i + n].reverse();
    let mut pos = 128;
    while pos < le.len() {
        assert_eq!(u32_at(le, pos), 14, "plain frames hold miMATRIX elements");
        let len = u32_at(le, pos + 4) as usize;
        swap(&mut b, pos, 4);
        swap(&mut b, pos + 4, 4);
        let end = pos + 8 + len;
        let mut sub = pos + 8;
        while sub < end {
            let w = u32_at(le, sub);
            swap(&mut b, sub, 4);
            let (ty, n, data, next) = if w >> 16 != 0 {
                (w & 0xffff, (w >> 16) as usize, sub + 4, sub + 8)
            } else {
                let n = u32_at(le, sub + 4) as usize;
                swap(&mut b, sub + 4, 4);
                (w, n, sub + 8, sub + 8 + n.next_multiple_of(8))
            };
            let size = match ty {
                1 | 2 => 1,
                3 | 4 => 2,
                5..=7 => 4,
                _ => 8,
            };
            for k in (data..data + n).step_by(size) {
                swap(&mut b, k, size);
            }
            sub = next;
        }
        pos = end;
    }
    b
}
