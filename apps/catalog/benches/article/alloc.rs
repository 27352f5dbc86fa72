//! A counting global allocator: the bench's "Allocated" column, like
//! BenchmarkDotNet's `[MemoryDiagnoser]`.
//!
//! It wraps [`System`] and adds, process-wide, the bytes and the number of
//! allocations, and the number of allocations at or above a threshold (the
//! payload size of the row being measured: "payload-sized allocations"). A
//! `realloc` counts as one allocation of its new size, since it may copy the
//! whole block. Frees are not subtracted: like .NET's figure, this is what
//! an operation allocates, not what it retains.

// `GlobalAlloc` is an unsafe trait: implementing it is the only way to count
// allocations. Each method forwards to `System` with the caller's arguments
// unchanged, so the caller's guarantees carry over. The workspace denies
// `unsafe_code`; this module alone allows it, for that reason.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The allocator the bench installs.
pub(crate) struct Counting;

static BYTES: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
static LARGE: AtomicU64 = AtomicU64::new(0);
/// Allocations of at least this many bytes are counted in `LARGE`.
static THRESHOLD: AtomicUsize = AtomicUsize::new(usize::MAX);

fn record(size: usize) {
    // Relaxed: the counters are read after the measured loop, on the same
    // thread or after a join; no other memory depends on them.
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
    COUNT.fetch_add(1, Ordering::Relaxed);
    if size >= THRESHOLD.load(Ordering::Relaxed) {
        LARGE.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr` came from `System` through this allocator; the caller
        // upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a counted loop allocated, in total.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Allocated {
    /// Bytes requested (realloc: the new size).
    pub(crate) bytes: u64,
    /// Allocations (realloc included).
    pub(crate) count: u64,
    /// Allocations of at least the threshold given to [`start`].
    pub(crate) large: u64,
}

/// Zeroes the counters and sets the "large" threshold; call right before a
/// counted loop.
pub(crate) fn start(threshold: usize) {
    THRESHOLD.store(threshold, Ordering::Relaxed);
    BYTES.store(0, Ordering::Relaxed);
    COUNT.store(0, Ordering::Relaxed);
    LARGE.store(0, Ordering::Relaxed);
}

/// The counters since [`start`].
pub(crate) fn read() -> Allocated {
    Allocated {
        bytes: BYTES.load(Ordering::Relaxed),
        count: COUNT.load(Ordering::Relaxed),
        large: LARGE.load(Ordering::Relaxed),
    }
}
