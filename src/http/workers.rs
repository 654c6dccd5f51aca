//! A small fixed pool of threads for the request work too heavy for an async
//! worker: parsing big bodies and scoring big batches. One thread per core
//! is all CPU-bound work can use; a fixed set (rather than tokio's elastic
//! blocking pool, which starts a new thread whenever all are busy) also
//! keeps a burst from leaving behind a dozen allocator arenas and cached
//! stacks: measured with `bench/hostile.sh`, that was the memory the
//! server kept after the abuse cases. Admission control bounds how many
//! jobs can be waiting.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The pool; dropping it lets its threads finish their jobs and exit.
pub struct Workers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// Why a job gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("the work panicked (a bug; it is logged)")]
    Panicked,
    #[error("the worker pool is gone")]
    Gone,
}

impl Workers {
    /// `threads` workers named `riskserve-work`.
    pub fn new(threads: usize) -> Workers {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for _ in 0..threads.max(1) {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new().name("riskserve-work".into()).spawn(move || loop {
                let job = match inbox.lock() {
                    Ok(inbox) => inbox.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a request worker thread");
            }
        }
        Workers { jobs: Mutex::new(jobs) }
    }

    /// Runs `work` on the pool and waits for it without blocking the caller's
    /// async worker.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, WorkerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
        });
        self.jobs.lock().map_err(|_| WorkerError::Gone)?.send(job).map_err(|_| WorkerError::Gone)?;
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(WorkerError::Panicked),
            Err(_) => Err(WorkerError::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_and_a_panic_is_an_error() {
        let pool = Workers::new(2);
        let name = pool.run(|| std::thread::current().name().unwrap_or_default().to_string()).await;
        assert_eq!(name, Ok("riskserve-work".to_string()));
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, Err(WorkerError::Panicked));
        let results = futures_join(&pool).await;
        assert_eq!(results, (0..8).collect::<Vec<u32>>(), "the pool survives a panic and runs every job");
    }

    async fn futures_join(pool: &Workers) -> Vec<u32> {
        let mut out = Vec::new();
        for i in 0..8u32 {
            out.push(pool.run(move || i).await.unwrap());
        }
        out
    }
}
