//! Shadow scoring off the request path: a bounded queue of real requests
//! (their applications and what the baseline answered, moved in, not
//! copied) and one worker thread that scores them with the shadow version
//! and compares ([`ShadowTarget::compare_shadow`], which a rollout
//! implements: this module knows no rollout, so neither imports the
//! other's internals). The request
//! path only does a `try_send`: when the queue is full the copy is dropped
//! and counted, never the real request delayed.
//!
//! ## No wake-up per request: the worker drains in batches
//!
//! A worker blocked in `recv()` costs every request a futex wake and a
//! context switch, on the 2 cores the real requests and (in the bench) the
//! load generator share: measured +33 % p99 and −21 % throughput, far more
//! than the ~3 µs of the second prediction. So the worker never blocks in
//! the channel, and in steady state nobody wakes it:
//!
//! - it takes what is queued with `try_recv` (at most [`MAX_BATCH`] at a
//!   time), compares each job, then judges the guards of each rollout it
//!   saw **once per batch** (a copy that fails and the copy that brings the
//!   count to `min_requests` are judged at once, see `compare_shadow`);
//! - if it found work it sleeps [`BATCH_INTERVAL`] (`park_timeout`) and
//!   drains again: under load it wakes about 500 times a second whatever the
//!   request rate, and the request path does no syscall;
//! - if the queue was empty it announces itself idle and parks without a
//!   timeout; the first sender to see the flag clears it and unparks the
//!   worker: one wake per idle → busy transition, none on an idle server;
//! - a sender also unparks it when the queue reaches [`WAKE_AT`], so a burst
//!   is drained before copies are dropped rather than after the interval.
//!
//! Rejected: a 1–2 ms polling loop without the idle flag (500 wake-ups a
//! second on an idle server, for nothing); a mutex/condvar queue (a lock on
//! the request path and still a wake per signal); waking only at the
//! threshold (a quiet server would compare nothing until 512 requests
//! came). The price of batching is that comparisons (metrics, the view,
//! guard verdicts) lag real traffic by up to [`BATCH_INTERVAL`].
//!
//! No lost wake-up: `pending` (jobs sent and not yet taken) is raised
//! before `try_send`, and the worker parks only when it reads 0 after
//! setting `idle`; a sender reads `idle` after raising `pending` (all
//! `SeqCst`), so one of the two sees the other. An `unpark` that comes
//! before the `park` makes the `park` return at once.
//!
//! The worker is started by the first rollout that declares a shadow and
//! ends when the registry and every rollout holding a sender are gone (the
//! last sender unparks it and it finds the channel disconnected).

use crate::model::Prediction;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// Copies waiting for the shadow worker, at most.
pub const SHADOW_QUEUE_CAPACITY: usize = 1024;
/// How long the worker sleeps after a batch before draining again.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(2);
/// Jobs the worker takes before judging the guards of what it saw.
pub const MAX_BATCH: usize = 256;
/// A sender that brings the queue to this length wakes the worker early.
pub const WAKE_AT: usize = SHADOW_QUEUE_CAPACITY / 2;

/// Which version answered a request that a shadow copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    Stable,
    /// The canary (active or promoted).
    Canary,
}

/// Who scores and judges a shadow's copies: a rollout.
pub trait ShadowTarget: Send + Sync {
    /// The model's name, for logs.
    fn model(&self) -> &str;
    /// Scores one copy with the shadow and compares (`scratch`: a reused buffer).
    fn compare_shadow(&self, job: &ShadowJob, scratch: &mut Vec<Prediction>);
    /// Judges the shadow's guards on what was compared so far.
    fn judge_shadow(&self);
}

/// One request for the shadow: what the baseline was given and answered.
pub struct ShadowJob {
    pub rollout: Arc<dyn ShadowTarget>,
    /// The version that answered the real request (the stable version or the canary).
    pub baseline: Baseline,
    /// The rows as the answering version decoded them.
    pub rows: crate::model::row::Rows,
    /// What it answered, one per application.
    pub predictions: Vec<Prediction>,
    /// How long it took to score them.
    pub baseline_elapsed: Duration,
}

/// What the senders and the worker share.
#[derive(Default)]
struct State {
    /// Jobs sent (or being sent) and not yet taken by the worker.
    pending: AtomicUsize,
    /// The worker is parked without a timeout: the next sender must wake it.
    idle: AtomicBool,
}

/// Shared by every clone of a sender. Dropping the last one disconnects
/// the channel and wakes the worker so that it sees so and ends.
struct SenderInner {
    tx: Option<SyncSender<ShadowJob>>,
    state: Arc<State>,
    worker: Thread,
}

impl Drop for SenderInner {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.worker.unpark();
    }
}

/// The sending end of the shadow queue (cheap to clone).
#[derive(Clone)]
pub struct ShadowSender(Arc<SenderInner>);

impl ShadowSender {
    /// Queues a job; `false` when the queue is full (the job is dropped).
    /// Never blocks; a syscall (an unpark) only when the worker is idle or
    /// the queue reaches [`WAKE_AT`].
    pub fn try_send(&self, job: ShadowJob) -> bool {
        let SenderInner { tx: Some(tx), state, worker } = &*self.0 else { return false };
        let queued = state.pending.fetch_add(1, SeqCst) + 1;
        match tx.try_send(job) {
            Ok(()) => {
                if queued == WAKE_AT || (state.idle.load(SeqCst) && state.idle.swap(false, SeqCst)) {
                    worker.unpark();
                }
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                state.pending.fetch_sub(1, SeqCst);
                false
            }
        }
    }
}

/// The registry's shadow queue, started on first use.
#[derive(Default)]
pub struct ShadowQueue {
    sender: OnceLock<Option<ShadowSender>>,
}

impl ShadowQueue {
    /// A sender to the worker, starting it the first time. `None` if the
    /// thread cannot be started (logged; shadows then count every copy as dropped).
    pub fn sender(&self) -> Option<ShadowSender> {
        self.sender.get_or_init(start).clone()
    }
}

fn start() -> Option<ShadowSender> {
    spawn().map(|(sender, _detached)| sender)
}

fn spawn() -> Option<(ShadowSender, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(SHADOW_QUEUE_CAPACITY);
    let state = Arc::new(State::default());
    let theirs = state.clone();
    match std::thread::Builder::new().name("riskserve-shadow".into()).spawn(move || work(&rx, &theirs)) {
        Ok(handle) => {
            let worker = handle.thread().clone();
            Some((ShadowSender(Arc::new(SenderInner { tx: Some(tx), state, worker })), handle))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start the shadow worker; shadow copies are dropped");
            None
        }
    }
}

fn work(jobs: &Receiver<ShadowJob>, state: &State) {
    // The rollouts seen in the current batch, judged once at its end.
    let mut seen: Vec<Arc<dyn ShadowTarget>> = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let mut taken = 0;
        let mut disconnected = false;
        while taken < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => {
                    taken += 1;
                    if !seen.iter().any(|r| Arc::ptr_eq(r, &job.rollout)) {
                        seen.push(job.rollout.clone());
                    }
                    guarded(job.rollout.as_ref(), || job.rollout.compare_shadow(&job, &mut scratch));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if taken > 0 {
            state.pending.fetch_sub(taken, SeqCst);
        }
        for rollout in seen.drain(..) {
            guarded(rollout.as_ref(), || rollout.judge_shadow());
        }
        if disconnected {
            return;
        }
        if taken == MAX_BATCH {
            continue;
        }
        if taken > 0 {
            std::thread::park_timeout(BATCH_INTERVAL);
            continue;
        }
        state.idle.store(true, SeqCst);
        if state.pending.load(SeqCst) == 0 {
            std::thread::park();
        }
        state.idle.store(false, SeqCst);
    }
}

/// A panicking shadow scorer must not end shadowing for everyone.
fn guarded(rollout: &dyn ShadowTarget, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!(model = %rollout.model(), "shadow scoring panicked; copy discarded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_ends_when_the_last_sender_is_dropped_even_while_idle() {
        let (sender, handle) = spawn().unwrap();
        let clone = sender.clone();
        // Let it find the queue empty and park without a timeout.
        std::thread::sleep(BATCH_INTERVAL * 10);
        drop(sender);
        std::thread::sleep(BATCH_INTERVAL * 5);
        assert!(!handle.is_finished(), "a clone still holds the queue open");
        drop(clone);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !handle.is_finished() {
            assert!(std::time::Instant::now() < deadline, "the idle worker did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
