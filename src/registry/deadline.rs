//! Running a blocking call that might never return (a read from a hung
//! mount, a listing of a dead NFS server) without letting it stall the
//! caller: the call runs on a thread of its own and the caller waits at most
//! a deadline. A call past its deadline is *abandoned*: its thread finishes
//! (or stays stuck) on its own and its result is dropped. The number of
//! abandoned calls still running is bounded; past the bound, new calls are
//! refused at once instead of piling up stuck threads.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why a call gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    #[error("did not finish within {0:?}; abandoned")]
    TimedOut(Duration),
    #[error("{0} earlier calls are still stuck past their deadline; not starting another")]
    TooManyStuck(usize),
    #[error("panicked (a bug; the panic is logged)")]
    Panicked,
    #[error("cannot start a thread: {0}")]
    Spawn(String),
}

/// Abandoned calls still running, shared by every call of one owner.
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<AtomicUsize>);

impl Abandoned {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `f` on a thread named `name`, waiting at most `timeout`.
pub fn run_with_deadline<T: Send + 'static>(
    name: &str,
    timeout: Duration,
    abandoned: &Abandoned,
    max_abandoned: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DeadlineError> {
    let stuck = abandoned.count();
    if stuck >= max_abandoned {
        return Err(DeadlineError::TooManyStuck(stuck));
    }
    // 0 = running, 1 = finished, 2 = abandoned: whoever moves it first
    // decides, so the count of stuck calls cannot drift.
    let state = Arc::new(AtomicU8::new(0));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (counter, thread_state) = (abandoned.0.clone(), state.clone());
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = f();
            if thread_state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
            let _ = tx.send(result);
        })
        .map_err(|e| DeadlineError::Spawn(e.to_string()))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => return Ok(result),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(DeadlineError::Panicked),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
    }
    if state.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        abandoned.0.fetch_add(1, Ordering::Relaxed);
        return Err(DeadlineError::TimedOut(timeout));
    }
    // It finished just as the deadline passed.
    rx.recv().map_err(|_| DeadlineError::Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn results_panics_and_deadlines() {
        let abandoned = Abandoned::default();
        let ms = Duration::from_millis;
        assert_eq!(run_with_deadline("t", ms(2000), &abandoned, 2, || 7), Ok(7));
        assert_eq!(
            run_with_deadline("t", ms(2000), &abandoned, 2, || -> u8 { panic!("boom") }),
            Err(DeadlineError::Panicked)
        );
        // Two calls stuck until released: both abandoned, the third refused.
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        for _ in 0..2 {
            let gate = gate.clone();
            let r = run_with_deadline("t", ms(20), &abandoned, 2, move || {
                let _ = gate.lock().unwrap().recv();
            });
            assert_eq!(r, Err(DeadlineError::TimedOut(ms(20))));
        }
        assert_eq!(abandoned.count(), 2);
        assert_eq!(run_with_deadline("t", ms(20), &abandoned, 2, || 1), Err(DeadlineError::TooManyStuck(2)));
        // Released, they finish and no longer count.
        drop(release);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while abandoned.count() > 0 {
            assert!(std::time::Instant::now() < deadline, "abandoned calls never finished");
            std::thread::yield_now();
        }
        assert_eq!(run_with_deadline("t", ms(2000), &abandoned, 2, || 1), Ok(1));
    }
}
