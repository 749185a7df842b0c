//! Memory enforced while a step runs, not only estimated before it.
//!
//! The service reserves what a step may cost from headers and the PDF guard's count (see
//! [`crate::estimate`]). An estimate is a prediction about a known shape; a file built to make a
//! step do more than its shape suggests (a page tree whose inherited attributes multiply, say)
//! would outgrow it. So every step runs under a [`run`] meter: a counting global allocator,
//! [`MeteredAlloc`], charges every Rust allocation made on the step's thread to the step, and
//! the step's loops (per page, per object written, per row) call [`check`], which stops the step
//! with [`PipelineError::TooComplex`] (`"memory"`) as soon as it holds more than it reserved.
//! When the step returns, a meter that went over refuses the result whatever the step did.
//!
//! Why a counting allocator with checks rather than failing the allocation itself: Rust aborts
//! the process on a failed allocation (stable Rust has no way to turn it into an error), and an
//! allocator must not unwind. A check in every loop that grows with the input, with no single
//! allocation larger than a bounded multiple of the upload, keeps the overshoot to one
//! iteration's worth. Values a PDF shares (inherited page attributes, resources) are written by
//! reference, never copied per page, so no loop multiplies the input in the first place.
//!
//! C libraries (libjpeg, libwebp) allocate through `malloc` and are not counted here: they are
//! held by their own caps (libjpeg's `max_memory_to_use`, set from the same estimate; libwebp's
//! buffers are sized by the output, whose edge is capped).
//!
//! The binary that wants enforcement installs the allocator:
//! `#[global_allocator] static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;`
//! Without it, [`run`] still runs the step and [`installed`] says metering is off.

// The allocator must implement `GlobalAlloc`, an unsafe trait; every block forwards to the
// system allocator with the caller's own arguments.
#![allow(unsafe_code)]

use crate::PipelineError;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// The system allocator, counting what the current thread's step allocates.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeteredAlloc;

/// A step's account: bytes held now, the most held at once, and the limit.
#[derive(Debug)]
struct Meter {
    held: Cell<i64>,
    peak: Cell<i64>,
    limit: i64,
}

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates, so the allocator
    // may read it.
    static CURRENT: Cell<*const Meter> = const { Cell::new(ptr::null()) };
}

fn charge(delta: i64) {
    let _ = CURRENT.try_with(|current| {
        let meter = current.get();
        if !meter.is_null() {
            // SAFETY: `CURRENT` is non-null only inside `run`, on this thread, while the meter it
            // points to is alive on `run`'s stack; nothing else touches it (the cells are not
            // shared across threads).
            let meter = unsafe { &*meter };
            let held = meter.held.get() + delta;
            meter.held.set(held);
            if held > meter.peak.get() {
                meter.peak.set(held);
            }
        }
    });
}

fn size_of(layout: Layout) -> i64 {
    i64::try_from(layout.size()).unwrap_or(i64::MAX)
}

// SAFETY: every method forwards to `System` with the arguments it was given, and only counts.
unsafe impl GlobalAlloc for MeteredAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            charge(size_of(layout));
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            charge(size_of(layout));
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(block, layout) };
        charge(-size_of(layout));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as given.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            charge(i64::try_from(new_size).unwrap_or(i64::MAX) - size_of(layout));
        }
        moved
    }
}

/// Puts the previous meter back when a step ends, even by a panic.
struct Entered(*const Meter);

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(self.0));
    }
}

/// What a metered step held at most beyond what it started with, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peak(pub u64);

/// Runs `work` on this thread with `limit` bytes to allocate (net of what it frees). Returns
/// [`PipelineError::TooComplex`] (`"memory"`) if it ever held more, whatever `work` returned,
/// and otherwise its result and the most it held. Steps call [`check`] in their loops so that
/// an overrun stops early instead of at the end.
pub fn run<T>(
    limit: u64,
    work: impl FnOnce() -> Result<T, PipelineError>,
) -> Result<(T, Peak), PipelineError> {
    let meter = Meter {
        held: Cell::new(0),
        peak: Cell::new(0),
        limit: i64::try_from(limit).unwrap_or(i64::MAX),
    };
    let previous = CURRENT.with(|current| current.replace(&meter));
    let entered = Entered(previous);
    let result = work();
    drop(entered);
    let peak = meter.peak.get();
    if peak > meter.limit {
        return Err(over());
    }
    result.map(|value| (value, Peak(u64::try_from(peak).unwrap_or(0))))
}

fn over() -> PipelineError {
    PipelineError::TooComplex { what: "memory" }
}

/// Inside [`run`]: refuses once the step holds more than its limit. Outside: always `Ok`.
pub fn check() -> Result<(), PipelineError> {
    let over_limit = CURRENT
        .try_with(|current| {
            let meter = current.get();
            // SAFETY: as in `charge`.
            !meter.is_null() && unsafe { (*meter).peak.get() > (*meter).limit }
        })
        .unwrap_or(false);
    if over_limit { Err(over()) } else { Ok(()) }
}

/// True if [`MeteredAlloc`] is this process's global allocator (so [`run`] enforces limits).
pub fn installed() -> bool {
    run(u64::MAX, || {
        let probe: Vec<u8> = Vec::with_capacity(64);
        std::hint::black_box(&probe);
        Ok(())
    })
    .map(|((), peak)| peak.0 >= 64)
    .unwrap_or(false)
}
