//! Paced loading: a thread that opts in (the reload's load thread) rests
//! for a moment after each slice of work while it decodes and compiles a
//! model, so the requests sharing its cores are not queued behind one
//! multi-millisecond burst.
//!
//! On two cores at half load, a 6 ms parse that takes a core outright
//! leaves the requests one core for 6 ms: they queue, and every commit
//! shows in the tail. Working `work` and resting `rest` in turn leaves them
//! a share of that core too. A lower scheduling priority does not do this
//! (a preempted low-priority loader can hold the allocator's lock), and it
//! needs `unsafe` system calls; a sleep needs neither.
//!
//! Decoding calls [`checkpoint`] once per list element (trees, nodes,
//! categories) and compiling once per tree; a thread that has not opted in
//! pays one thread-local read per call. A paced thread reads the clock once
//! every [`CLOCK_EVERY`] checkpoints.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How a paced thread divides its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Work this long...
    pub work: Duration,
    /// ...then sleep this long.
    pub rest: Duration,
}

impl Pacing {
    /// Slices of [`Pacing::SLICE`] with rests between them, so the work takes
    /// `percent` of one core; `None` at 100 % (or above).
    pub fn share_of_a_core(percent: u8) -> Option<Pacing> {
        let percent = u32::from(percent.max(1));
        (percent < 100).then(|| Pacing { work: Self::SLICE, rest: Self::SLICE * (100 - percent) / percent })
    }

    /// The work between two rests.
    pub const SLICE: Duration = Duration::from_micros(500);
}

/// Checkpoints between two reads of the clock.
const CLOCK_EVERY: u32 = 256;

thread_local! {
    /// Checkpoints left before the next look at the clock; 0 when this
    /// thread is not paced (the only thing an unpaced checkpoint reads).
    static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
    /// The pacing and when the current slice of work began.
    static SLICE: Cell<Option<(Pacing, Instant)>> = const { Cell::new(None) };
}

/// Runs `f` with pacing on this thread (nested calls keep the outer pacing;
/// pacing ends with `f`, also when it panics).
pub fn paced<T>(pacing: Pacing, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SLICE.set(None);
            COUNTDOWN.set(0);
        }
    }
    if SLICE.get().is_some() {
        return f();
    }
    SLICE.set(Some((pacing, Instant::now())));
    COUNTDOWN.set(CLOCK_EVERY);
    let _reset = Reset;
    f()
}

/// Marks a point where a paced thread may rest; one thread-local read
/// elsewhere.
#[inline]
pub fn checkpoint() {
    let left = COUNTDOWN.get();
    if left > 1 {
        COUNTDOWN.set(left - 1);
    } else if left == 1 {
        COUNTDOWN.set(CLOCK_EVERY);
        rest_if_due();
    }
}

#[cold]
fn rest_if_due() {
    if let Some((pacing, started)) = SLICE.get() {
        if started.elapsed() >= pacing.work {
            std::thread::sleep(pacing.rest);
            SLICE.set(Some((pacing, Instant::now())));
        }
    }
}

/// Whether this thread is paced now (inside [`paced`]; for tests).
#[cfg(test)]
pub(crate) fn is_paced() -> bool {
    SLICE.get().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints until `wall` has passed; returns how many of them
    /// slept at least `rest` (gaps between two checkpoints that long).
    fn rests_seen(wall: Duration, rest: Duration) -> usize {
        let end = Instant::now() + wall;
        let (mut last, mut rests) = (Instant::now(), 0);
        while last < end {
            checkpoint();
            let now = Instant::now();
            rests += usize::from(now - last >= rest);
            last = now;
        }
        rests
    }

    #[test]
    fn a_share_of_a_core_sets_the_rest_after_each_slice() {
        assert_eq!(Pacing::share_of_a_core(100), None);
        assert_eq!(Pacing::share_of_a_core(50).unwrap().rest, Pacing::SLICE);
        assert_eq!(Pacing::share_of_a_core(25).unwrap().rest, Pacing::SLICE * 3);
        assert_eq!(Pacing::share_of_a_core(0).unwrap().rest, Pacing::SLICE * 99);
    }

    #[test]
    fn an_unpaced_thread_never_rests() {
        let started = Instant::now();
        for _ in 0..1_000_000 {
            checkpoint();
        }
        assert!(!is_paced());
        // A million checkpoints that never sleep: far below one 50 ms rest.
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_paced_thread_rests_between_slices_and_pacing_ends_with_the_closure() {
        let rest = Duration::from_millis(8);
        let pacing = Pacing { work: Duration::from_millis(1), rest };
        // 1 ms of work, 8 ms of rest: about 5 rests in 45 ms.
        let rests = paced(pacing, || {
            assert!(is_paced());
            rests_seen(Duration::from_millis(45), rest)
        });
        assert!((3..=6).contains(&rests), "{rests} rests");
        assert!(!is_paced());
    }

    #[test]
    fn pacing_ends_when_the_closure_panics_and_nesting_keeps_the_outer_pacing() {
        let outer = Pacing { work: Duration::from_millis(1), rest: Duration::from_millis(1) };
        let caught = std::panic::catch_unwind(|| paced(outer, || panic!("a load panicked")));
        assert!(caught.is_err());
        assert!(!is_paced());
        paced(outer, || {
            paced(Pacing { work: Duration::from_secs(1), rest: Duration::ZERO }, || assert!(is_paced()));
            assert!(is_paced(), "the inner call must not end the outer pacing");
        });
        assert!(!is_paced());
    }
}
