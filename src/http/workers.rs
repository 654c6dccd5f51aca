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
    threads: usize,
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
        Workers { jobs: Mutex::new(jobs), threads: threads.max(1) }
    }

    /// How many threads the pool has.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on the pool and waits for it without blocking the caller's
    /// async worker.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, WorkerError> {
        let rx = self.submit(work)?;
        receive(rx).await
    }

    /// Runs every part on the pool at once (as many side by side as there
    /// are threads) and waits for all of them; the results in order.
    pub async fn run_all<T, W>(&self, parts: Vec<W>) -> Result<Vec<T>, WorkerError>
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
    {
        let submitted: Vec<_> = parts.into_iter().map(|work| self.submit(work)).collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(submitted.len());
        for rx in submitted {
            out.push(receive(rx).await?);
        }
        Ok(out)
    }

    fn submit<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<Receiver<T>, WorkerError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
        });
        self.jobs.lock().map_err(|_| WorkerError::Gone)?.send(job).map_err(|_| WorkerError::Gone)?;
        Ok(rx)
    }
}

/// The answer of one submitted job.
type Receiver<T> = tokio::sync::oneshot::Receiver<std::thread::Result<T>>;

async fn receive<T>(rx: Receiver<T>) -> Result<T, WorkerError> {
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(WorkerError::Panicked),
        Err(_) => Err(WorkerError::Gone),
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

    #[tokio::test]
    async fn parts_run_side_by_side_and_come_back_in_order() {
        let pool = Workers::new(2);
        assert_eq!(pool.threads(), 2);
        // Each part waits for the other: they can only finish side by side.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let parts: Vec<_> = (0..2u32)
            .map(|i| {
                let barrier = barrier.clone();
                move || {
                    barrier.wait();
                    i * 10
                }
            })
            .collect();
        assert_eq!(pool.run_all(parts).await, Ok(vec![0, 10]));
    }

    async fn futures_join(pool: &Workers) -> Vec<u32> {
        let mut out = Vec::new();
        for i in 0..8u32 {
            out.push(pool.run(move || i).await.unwrap());
        }
        out
    }
}
