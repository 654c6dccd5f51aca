//! Shadow scoring off the request path: a bounded queue of copies of real
//! requests and one worker thread that scores each copy with the shadow
//! version and compares it with what the baseline answered
//! ([`super::traffic::Rollout::compare_shadow`]). The request path only
//! does a `try_send`: when the queue is full the copy is dropped and
//! counted, never the real request delayed.
//!
//! The worker is started by the first rollout that declares a shadow and
//! ends when the registry and every rollout holding a sender are gone.

use super::snapshot::LoadedVersion;
use super::traffic::Rollout;
use crate::model::input::LoanApplication;
use crate::model::Prediction;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Copies waiting for the shadow worker, at most.
pub const SHADOW_QUEUE_CAPACITY: usize = 1024;

/// One request's copy for the shadow.
pub struct ShadowJob {
    pub rollout: Arc<Rollout>,
    /// The version that answered the real request.
    pub baseline: Arc<LoadedVersion>,
    pub apps: Vec<LoanApplication>,
    /// What it answered.
    pub predictions: Vec<Prediction>,
    /// How long it took to score them.
    pub baseline_elapsed: Duration,
}

/// The sending end of the shadow queue (cheap to clone).
#[derive(Clone)]
pub struct ShadowSender(SyncSender<ShadowJob>);

impl ShadowSender {
    /// Queues a copy; `false` when the queue is full (the copy is dropped).
    pub fn try_send(&self, job: ShadowJob) -> bool {
        match self.0.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
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
        self.sender
            .get_or_init(|| {
                let (tx, rx) = sync_channel(SHADOW_QUEUE_CAPACITY);
                match std::thread::Builder::new().name("riskserve-shadow".into()).spawn(move || work(rx)) {
                    Ok(_) => Some(ShadowSender(tx)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the shadow worker; shadow copies are dropped");
                        None
                    }
                }
            })
            .clone()
    }
}

fn work(jobs: Receiver<ShadowJob>) {
    while let Ok(job) = jobs.recv() {
        // A panicking shadow scorer must not end shadowing for everyone.
        let rollout = job.rollout.clone();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rollout.compare_shadow(&job))).is_err() {
            tracing::error!(model = %rollout.model, "shadow scoring panicked; copy discarded");
        }
    }
}
