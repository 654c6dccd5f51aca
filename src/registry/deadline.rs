//! Running a blocking call that might never return (a read from a hung
//! mount, a listing of a dead NFS server) without letting it stall the
//! caller: calls run on a long-lived worker thread and the caller waits at
//! most a deadline. A call past its deadline is *abandoned*: the worker
//! finishes it (or stays stuck) on its own, its result is dropped, and the
//! next call gets a fresh worker. The number of abandoned calls still
//! running is bounded; past the bound, new calls are refused at once instead
//! of piling up stuck threads.
//!
//! One reused worker (rather than a thread per call) keeps the loader's
//! allocations in one place: a new thread per model load made the
//! allocator spread freed model memory over many per-thread arenas, and the
//! server's RSS crept up with every swap.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
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

type Job = Box<dyn FnOnce() + Send>;

/// Runs calls under a deadline on a reused worker thread.
pub struct DeadlineRunner {
    name: String,
    max_abandoned: usize,
    /// Abandoned calls still running.
    abandoned: Arc<AtomicUsize>,
    worker: Option<mpsc::Sender<Job>>,
}

impl DeadlineRunner {
    /// Workers are named `name`; at most `max_abandoned` calls may be stuck.
    pub fn new(name: &str, max_abandoned: usize) -> DeadlineRunner {
        DeadlineRunner { name: name.to_string(), max_abandoned, abandoned: Arc::default(), worker: None }
    }

    /// Abandoned calls still running.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Runs `f` on the worker, waiting at most `timeout`.
    pub fn run<T: Send + 'static>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DeadlineError> {
        let stuck = self.abandoned();
        if stuck >= self.max_abandoned {
            return Err(DeadlineError::TooManyStuck(stuck));
        }
        // 0 = running, 1 = finished, 2 = abandoned: whoever moves it first
        // decides, so the count of stuck calls cannot drift.
        let state = Arc::new(AtomicU8::new(0));
        let (tx, rx) = mpsc::sync_channel(1);
        let (counter, job_state) = (self.abandoned.clone(), state.clone());
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            if job_state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
            let _ = tx.send(result);
        });
        self.submit(job)?;
        match rx.recv_timeout(timeout) {
            Ok(result) => return result.map_err(|_| DeadlineError::Panicked),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(DeadlineError::Panicked),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if state.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.abandoned.fetch_add(1, Ordering::Relaxed);
            // The worker is busy for who knows how long: the next call gets a
            // new one, and this one exits once its call returns.
            self.worker = None;
            return Err(DeadlineError::TimedOut(timeout));
        }
        // It finished just as the deadline passed.
        rx.recv().map_err(|_| DeadlineError::Panicked)?.map_err(|_| DeadlineError::Panicked)
    }

    /// Hands `job` to the worker, starting one if there is none (or it died).
    fn submit(&mut self, job: Job) -> Result<(), DeadlineError> {
        let job = match &self.worker {
            Some(worker) => match worker.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                while let Ok(job) = inbox.recv() {
                    job();
                }
            })
            .map_err(|e| DeadlineError::Spawn(e.to_string()))?;
        jobs.send(job).map_err(|_| DeadlineError::Spawn("the new worker ended at once".into()))?;
        self.worker = Some(jobs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_thread() -> String {
        std::thread::current().name().unwrap_or_default().to_string()
    }

    #[test]
    fn results_panics_and_deadlines() {
        let mut runner = DeadlineRunner::new("t-worker", 2);
        let ms = Duration::from_millis;
        assert_eq!(runner.run(ms(2000), || 7), Ok(7));
        assert_eq!(runner.run(ms(2000), || -> u8 { panic!("boom") }), Err(DeadlineError::Panicked));
        // The worker survives a panic and is reused.
        let first = runner.run(ms(2000), || std::thread::current().id()).unwrap();
        assert_eq!(runner.run(ms(2000), || std::thread::current().id()), Ok(first));
        assert_eq!(runner.run(ms(2000), worker_thread), Ok("t-worker".to_string()));
        // Two calls stuck until released: both abandoned, the third refused.
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        for _ in 0..2 {
            let gate = gate.clone();
            let r = runner.run(ms(20), move || {
                let _ = gate.lock().unwrap().recv();
            });
            assert_eq!(r, Err(DeadlineError::TimedOut(ms(20))));
        }
        assert_eq!(runner.abandoned(), 2);
        assert_eq!(runner.run(ms(20), || 1), Err(DeadlineError::TooManyStuck(2)));
        // Released, they finish and no longer count; a new worker serves.
        drop(release);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runner.abandoned() > 0 {
            assert!(std::time::Instant::now() < deadline, "abandoned calls never finished");
            std::thread::yield_now();
        }
        assert_eq!(runner.run(ms(2000), || 1), Ok(1));
        assert_ne!(runner.run(ms(2000), || std::thread::current().id()), Ok(first), "a fresh worker");
    }
}
