//! The one counting global allocator of the test suite.
//!
//! A test binary that measures memory declares it itself, in one line:
//! `#[global_allocator] static ALLOCATOR: common::alloc::Counting = common::alloc::Counting::PER_THREAD;`
//! (a `#[global_allocator]` must be declared in the binary that uses it).
//!
//! Every allocation is counted on the thread that makes it (allocations,
//! bytes requested, bytes still in use), so a measurement on one thread is
//! not disturbed by the harness's threads or goctx's helper threads.
//! [`Counting::WITH_PROCESS_TOTALS`] also keeps process-wide live totals,
//! for the leak tests that watch the whole process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// The system allocator, plus counters. Use one of the two constants.
pub struct Counting {
    /// Whether the process-wide live totals of [`process_live`] are kept.
    process_totals: bool,
}

impl Counting {
    /// Per-thread counts only ([`this_thread`], [`on_this_thread`]).
    pub const PER_THREAD: Counting = Counting {
        process_totals: false,
    };
    /// Per-thread counts and the process-wide live totals of [`process_live`].
    pub const WITH_PROCESS_TOTALS: Counting = Counting {
        process_totals: true,
    };
}

/// What a thread has allocated: running totals, or the difference of two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Allocations, reallocations included.
    pub allocs: u64,
    /// Bytes requested by those allocations.
    pub bytes: u64,
    /// Bytes allocated minus bytes freed: what stays in use.
    pub live: i64,
}

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// Process-wide bytes in use (kept only by `WITH_PROCESS_TOTALS`).
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
/// Process-wide allocations in use (kept only by `WITH_PROCESS_TOTALS`).
static LIVE_ALLOCS: AtomicI64 = AtomicI64::new(0);

fn note(allocs: u64, bytes: u64, live: i64) {
    // `try_with`: a thread being torn down may still allocate and free;
    // such allocations are not part of any measurement.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + allocs));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes));
    let _ = LIVE.try_with(|c| c.set(c.get() + live));
}

/// A byte count as a signed difference (saturating; never overflows in practice).
pub fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Counting {
    /// Adds a successful allocation (`ptr` not null) to the process totals.
    fn note_process(&self, ptr: *mut u8, bytes: i64, allocs: i64) {
        if self.process_totals && !ptr.is_null() {
            LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(allocs, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments;
// the bookkeeping touches only const-initialized thread-locals and relaxed
// atomics, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as u64, signed(layout.size()));
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc(layout) };
        self.note_process(ptr, signed(layout.size()), 1);
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(1, layout.size() as u64, signed(layout.size()));
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        self.note_process(ptr, signed(layout.size()), 1);
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = signed(new_size) - signed(layout.size());
        note(1, new_size as u64, grown);
        // SAFETY: forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        self.note_process(new, grown, 0);
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, 0, -signed(layout.size()));
        if self.process_totals {
            LIVE_BYTES.fetch_sub(signed(layout.size()), Ordering::Relaxed);
            LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// This thread's running totals since it started.
pub fn this_thread() -> Counts {
    Counts {
        allocs: ALLOCS.with(Cell::get),
        bytes: BYTES.with(Cell::get),
        live: LIVE.with(Cell::get),
    }
}

/// Runs `f` and returns what it allocated on this thread (with what `f`
/// returns still alive), and what it returned.
pub fn on_this_thread<T>(f: impl FnOnce() -> T) -> (Counts, T) {
    let before = this_thread();
    let out = f();
    let after = this_thread();
    let counts = Counts {
        allocs: after.allocs - before.allocs,
        bytes: after.bytes - before.bytes,
        live: after.live - before.live,
    };
    (counts, out)
}

/// Process-wide (bytes, allocations) in use; zeros unless the binary's
/// allocator is [`Counting::WITH_PROCESS_TOTALS`].
pub fn process_live() -> (i64, i64) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
    )
}
