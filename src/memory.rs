//! Giving memory back after a burst, from the threads that made it.
//!
//! `main` sets a fixed 128 KiB mmap threshold and runs `malloc_trim` every
//! 2 s. glibc's `malloc_trim` releases free pages inside every arena and the
//! top of the *main* arena, but never the top of a thread's own arena: that
//! is released only when a thread of that arena frees a chunk of 64 KiB or
//! more (glibc then calls `heap_trim`). A thread that made a burst of small
//! allocations (a 1,000-row batch, a pass over 500 junk directories, a
//! flood of connections) would keep those pages at the top of its arena for
//! as long as it only frees small chunks afterwards.
//!
//! [`release_arena_top`] makes that large free happen: it allocates and
//! frees one 96 KiB buffer (below the mmap threshold, so it comes from the
//! calling thread's arena), at most once per second per thread. It is called
//! when a tokio worker goes idle, after each request-worker job and after
//! each reload pass. Safe Rust; with another allocator it is a harmless
//! allocation.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Above glibc's 64 KiB consolidation threshold, below the 128 KiB mmap
/// threshold `main` sets.
const NUDGE_BYTES: usize = 96 * 1024;
/// At most this often per thread.
const EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Lets glibc give back the free top of the calling thread's arena (see
/// the module docs). Cheap when called often: one clock read.
pub fn release_arena_top() {
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        let buffer: Vec<u8> = Vec::with_capacity(NUDGE_BYTES);
        std::hint::black_box(&buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_at_most_once_a_second_per_thread() {
        release_arena_top();
        let first = LAST.with(Cell::get);
        assert!(first.is_some());
        release_arena_top();
        assert_eq!(LAST.with(Cell::get), first, "a second call within a second does nothing");
        std::thread::spawn(|| {
            assert!(LAST.with(Cell::get).is_none(), "per thread");
            release_arena_top();
            assert!(LAST.with(Cell::get).is_some());
        })
        .join()
        .unwrap();
    }
}
