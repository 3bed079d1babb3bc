//! No input makes a reader allocate more than the input justifies: a counting global
//! allocator records the largest single allocation while tiny inputs that announce huge
//! records are read.

use csipose_capture::any::Reader;
use csipose_capture::Format;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; recording the largest size is one atomic operation that neither
// allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn lying_lengths_do_not_allocate() {
    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    pcap.extend_from_slice(&[0; 16]);
    pcap.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x00,
    ]);
    let inputs: Vec<(Vec<u8>, Format)> = vec![
        (vec![0xff, 0xff, 0xbb, 1, 2, 3], Format::Intel5300),
        (
            vec![0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
            Format::Atheros,
        ),
        (pcap, Format::Nexmon),
        (
            b"CSI_DATA,AP,".iter().cycle().take(3000).copied().collect(),
            Format::Esp32,
        ),
    ];
    LARGEST.store(0, Ordering::Relaxed);
    for (bytes, format) in inputs {
        let reader = Reader::new(std::io::Cursor::new(bytes), format, Default::default());
        let items: Vec<_> = reader.collect();
        assert!(
            items.iter().any(|r| r.is_err()),
            "{format:?}: no error reported"
        );
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    // The 64 KiB read buffer and 8 KiB chunks are the biggest legitimate allocations.
    assert!(
        largest <= 128 * 1024,
        "largest single allocation {largest} bytes"
    );
}
