//! A sliding window of counters the request path adds to without locks or
//! allocation: a ring of [`BUCKETS`] buckets, each holding its counters
//! once per stripe, one bucket current at a time.
//!
//! A bucket ends when it has counted its share of the window's predictions
//! (`max_predictions / BUCKETS`; the writer that fills it moves the window
//! on) or, checked whenever the window is read (each scrape), when it is
//! older than its share of the window's age (`max_age / BUCKETS`). Moving
//! on clears the oldest bucket and makes it current, so the window holds
//! the last 90–100 % of `max_predictions` predictions (a batch is counted
//! in blocks of up to 64 rows, which may overfill a bucket by one block). A read sums the
//! buckets that hold predictions younger than `max_age` (to the bucket).
//!
//! Writers use relaxed atomic adds: a read during a move may see a bucket
//! half cleared, a few counts late or early; never a torn or negative one.
//! Each thread writes its own stripe of the counters (up to [`MAX_STRIPES`],
//! each on its own cache lines), so request threads on different cores do
//! not pass the same cache lines back and forth on every prediction; a
//! read adds the stripes up.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Buckets in the ring.
pub const BUCKETS: usize = 10;
/// Most stripes per bucket (one per CPU core up to this).
pub const MAX_STRIPES: usize = 16;

/// How much a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Predictions at most (`drift_window`).
    pub max_predictions: u64,
    /// Age at most (`drift_window_secs`).
    pub max_age: Duration,
}

impl Default for WindowSize {
    /// 10,000 predictions or one hour, whichever is shorter.
    fn default() -> Self {
        WindowSize { max_predictions: 10_000, max_age: Duration::from_secs(3600) }
    }
}

/// Sixteen counters on one cache line of their own.
#[repr(align(64))]
struct Line([AtomicU32; 16]);

struct Bucket {
    /// `stripes` runs of `lines` lines.
    lines: Box<[Line]>,
    /// Predictions counted.
    rows: AtomicU32,
    /// When it became current, in ms since the window was made.
    started_ms: AtomicU64,
}

/// Where a thread adds its counts now: the current bucket, its stripe.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    bucket: usize,
    first_line: usize,
}

/// The stripe of the calling thread: threads take stripes in turn.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Relaxed);
    }
    STRIPE.with(|s| *s)
}

/// `width` counters per prediction slot, summed over recent predictions.
pub struct Window {
    buckets: Box<[Bucket]>,
    width: usize,
    /// Lines per stripe.
    lines: usize,
    stripes: usize,
    current: AtomicUsize,
    per_bucket: u32,
    bucket_age_ms: u64,
    max_age_ms: u64,
    moving: AtomicBool,
    epoch: Instant,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").field("per_bucket", &self.per_bucket).field("max_age_ms", &self.max_age_ms).finish()
    }
}

impl Window {
    /// A window of `width` counters, striped once per CPU core.
    pub fn new(width: usize, size: WindowSize) -> Window {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Window::with_stripes(width, size, cores.min(MAX_STRIPES))
    }

    fn with_stripes(width: usize, size: WindowSize, stripes: usize) -> Window {
        let per_bucket = size.max_predictions.div_ceil(BUCKETS as u64).clamp(1, u64::from(u32::MAX / 2)) as u32;
        let max_age_ms = (size.max_age.as_millis() as u64).max(BUCKETS as u64);
        let (lines, stripes) = (width.div_ceil(16), stripes.max(1));
        Window {
            buckets: (0..BUCKETS)
                .map(|_| Bucket {
                    lines: (0..lines * stripes).map(|_| Line(std::array::from_fn(|_| AtomicU32::new(0)))).collect(),
                    rows: AtomicU32::new(0),
                    started_ms: AtomicU64::new(0),
                })
                .collect(),
            width,
            lines,
            stripes,
            current: AtomicUsize::new(0),
            per_bucket,
            bucket_age_ms: max_age_ms / BUCKETS as u64,
            max_age_ms,
            moving: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    /// Where the calling thread adds counts now ([`Window::add`]), until it
    /// says how many predictions it added ([`Window::counted`]).
    #[inline]
    pub fn slot(&self) -> Slot {
        Slot { bucket: self.current.load(Relaxed), first_line: (stripe() % self.stripes) * self.lines }
    }

    /// Rows of a batch to count in one slot: at most 64, and at most a
    /// bucket's share of the window.
    pub fn block(&self) -> usize {
        (self.per_bucket as usize).min(64)
    }

    /// Adds one to counter `i` in `slot`.
    #[inline]
    pub fn add(&self, slot: Slot, i: usize) {
        if i < self.width {
            self.buckets[slot.bucket].lines[slot.first_line + i / 16].0[i % 16].fetch_add(1, Relaxed);
        }
    }

    /// `n` predictions were added in `slot`; the writer that fills its
    /// bucket moves the window on.
    #[inline]
    pub fn counted(&self, slot: Slot, n: u32) {
        let before = self.buckets[slot.bucket].rows.fetch_add(n, Relaxed);
        if before < self.per_bucket && before + n >= self.per_bucket {
            self.move_on(slot.bucket);
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Makes the bucket after `from` current (cleared), unless another
    /// thread is already moving the window or has moved it past `from`.
    fn move_on(&self, from: usize) {
        if self.moving.swap(true, Relaxed) {
            return;
        }
        if self.current.load(Relaxed) == from {
            let next = (from + 1) % BUCKETS;
            let b = &self.buckets[next];
            for c in b.lines.iter().flat_map(|l| &l.0) {
                c.store(0, Relaxed);
            }
            b.rows.store(0, Relaxed);
            b.started_ms.store(self.now_ms(), Relaxed);
            self.current.store(next, Relaxed);
        }
        self.moving.store(false, Relaxed);
    }

    /// The counters summed over the window, and the predictions in it.
    /// Moves the window on first if the current bucket is older than its
    /// share of the window's age.
    pub fn sum(&self) -> (u64, Vec<u64>) {
        let now = self.now_ms();
        let cur = self.current.load(Relaxed);
        if now.saturating_sub(self.buckets[cur].started_ms.load(Relaxed)) >= self.bucket_age_ms {
            self.move_on(cur);
        }
        let cur = self.current.load(Relaxed);
        let (mut rows, mut sums) = (0u64, vec![0u64; self.width]);
        // Newest first: the current bucket, then each older one while the
        // bucket after it started within the window's age (it holds
        // predictions younger than that).
        for k in 0..BUCKETS {
            let b = (cur + BUCKETS - k) % BUCKETS;
            if k > 0 {
                let successor = self.buckets[(b + 1) % BUCKETS].started_ms.load(Relaxed);
                if now.saturating_sub(successor) > self.max_age_ms {
                    break;
                }
            }
            let bucket = &self.buckets[b];
            rows += u64::from(bucket.rows.load(Relaxed));
            for stripe in bucket.lines.chunks(self.lines) {
                for (s, c) in sums.iter_mut().zip(stripe.iter().flat_map(|l| &l.0)) {
                    *s += u64::from(c.load(Relaxed));
                }
            }
        }
        (rows, sums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(w: &Window, counter: usize, times: usize) {
        for _ in 0..times {
            let slot = w.slot();
            w.add(slot, counter);
            w.counted(slot, 1);
        }
    }

    #[test]
    fn the_window_keeps_the_last_nine_to_ten_tenths_of_its_predictions() {
        let w = Window::new(2, WindowSize { max_predictions: 100, max_age: Duration::from_secs(3600) });
        record(&w, 0, 95);
        assert_eq!(w.sum(), (95, vec![95, 0]));
        record(&w, 1, 5);
        // The 100th prediction filled the tenth bucket: the oldest (the
        // first 10) is cleared and current.
        assert_eq!(w.sum(), (90, vec![85, 5]));
        record(&w, 1, 40);
        assert_eq!(w.sum(), (90, vec![45, 45]), "rows 51..140");
        record(&w, 1, 7);
        assert_eq!(w.sum(), (97, vec![45, 52]));
        record(&w, 1, 200);
        assert_eq!(w.sum().1, vec![0, 97]);
        w.add(w.slot(), 7); // out of range: ignored, not a panic
                            // A block counted at once fills (and overfills) the bucket it
                            // lands in: 7 + 25 rows, then the window moves on.
        let slot = w.slot();
        w.counted(slot, 25);
        assert_eq!(w.sum().0, 8 * 10 + 32);
        record(&w, 0, 1);
        assert_eq!(w.sum().0, 8 * 10 + 32 + 1, "a new bucket is current");
    }

    #[test]
    fn concurrent_writers_lose_no_counts_whatever_their_stripes() {
        for stripes in [1, 3, 16] {
            let size = WindowSize { max_predictions: 1_000_000, max_age: Duration::from_secs(3600) };
            let w = std::sync::Arc::new(Window::with_stripes(40, size, stripes));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let w = w.clone();
                    std::thread::spawn(move || record(&w, 17 + t, 10_000))
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let (rows, sums) = w.sum();
            assert_eq!(rows, 40_000, "{stripes} stripes");
            assert_eq!(sums[17..21], [10_000; 4], "{stripes} stripes");
            assert_eq!(sums.iter().sum::<u64>(), 40_000, "{stripes} stripes");
        }
    }

    #[test]
    fn buckets_older_than_the_window_are_left_out() {
        let w = Window::new(1, WindowSize { max_predictions: 1_000, max_age: Duration::from_millis(10) });
        let wait_until = |ms: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while w.now_ms() <= ms {
                assert!(Instant::now() < deadline, "the clock did not reach {ms} ms");
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        record(&w, 0, 3);
        wait_until(20);
        // The bucket is past its 1 ms share of the window: the read moves
        // on. The old bucket ended just now, so it is still in the window.
        assert_eq!(w.sum(), (3, vec![3]));
        let moved = w.now_ms();
        wait_until(moved + 20);
        assert_eq!(w.sum(), (0, vec![0]), "its successor started more than 10 ms ago");
    }
}
