//! The replica's loop: poll with jitter and bounded backoff, report a
//! stale store, wait for the reload passes a new generation needs, collect
//! retired copies, and publish this replica's reverts as soon as they
//! happen.

use super::{Outcome, Syncer, MAX_BACKOFF};
use crate::registry::loader::PassReport;
use crate::registry::Registry;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How the sync loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Mean time between polls (each wait is 75-125 % of it: jitter, so
    /// replicas do not poll in step).
    pub interval: Duration,
    /// The store unreachable this long makes sync stale.
    pub stale_after: Duration,
    /// Bound on one poll (manifest plus downloads).
    pub poll_timeout: Duration,
}

/// `d` scaled by a random factor in [0.75, 1.25).
pub fn jitter(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.75 + 0.5 * unit)
}

/// Wait before the next poll after `failures` failed polls in a row.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    interval.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF.max(interval))
}

/// What the loop needs from the running server: the registry (to see what
/// serves) and the reload machinery (to ask for a pass and see it done).
pub struct ServerHooks {
    pub registry: Arc<Registry>,
    pub trigger: Arc<Notify>,
    pub passes: watch::Receiver<PassReport>,
}

/// Runs the sync loop until the task is aborted.
pub async fn run(mut syncer: Syncer, hooks: ServerHooks, pacing: Pacing) {
    let ServerHooks { registry, trigger, mut passes } = hooks;
    let mut failures = 0u32;
    let mut last_success = Instant::now();
    let mut stale = false;
    loop {
        wait_publishing_reverts(&mut syncer, &registry, jitter(backoff(pacing.interval, failures))).await;
        match syncer.poll(pacing.poll_timeout).await {
            Ok(outcome) => {
                failures = 0;
                last_success = Instant::now();
                if stale {
                    stale = false;
                    syncer.metrics.stale.set(0);
                    syncer.state.update_status(|s| s.stale = false);
                    tracing::info!(source = %syncer.store.url(), "model sync recovered: the object store is reachable again");
                }
                if let Outcome::Updated { generation, installed, failed, changed } = outcome {
                    if changed {
                        tracing::info!(generation, installed, failed, "manifest generation applied");
                        // Two passes: one that may have listed before the swap, then ours.
                        for _ in 0..2 {
                            wait_for_pass(&trigger, &mut passes, pacing.poll_timeout).await;
                        }
                    }
                    syncer.mark_on_generation();
                }
                syncer.collect_retired(&registry);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let down_for = last_success.elapsed();
                if !stale && down_for >= pacing.stale_after {
                    stale = true;
                    syncer.metrics.stale.set(1);
                    syncer.state.update_status(|s| s.stale = true);
                    tracing::warn!(source = %syncer.store.url(), error = %e, ?down_for, "model sync is stale: the object store has been unreachable; serving the versions already here");
                } else {
                    tracing::warn!(error = %e, failures, next_in = ?backoff(pacing.interval, failures), "model sync poll failed; backing off");
                }
            }
        }
    }
}

/// How often the wait between polls looks for a revert of this replica's guards to publish.
pub const REVERT_CHECK: Duration = Duration::from_millis(20);

/// Waits `wait`, publishing this replica's reverts as soon as they happen
/// (a look at the snapshot every [`REVERT_CHECK`]: one atomic load).
async fn wait_publishing_reverts(syncer: &mut Syncer, registry: &Registry, wait: Duration) {
    let until = Instant::now() + wait;
    loop {
        if !syncer.pending_reverts(registry).is_empty() {
            syncer.publish_reverts(registry).await;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(REVERT_CHECK)).await;
    }
}

/// Asks for a reload pass and waits (bounded) until one completes.
async fn wait_for_pass(trigger: &Notify, passes: &mut watch::Receiver<PassReport>, bound: Duration) {
    passes.borrow_and_update();
    trigger.notify_one();
    let _ = tokio::time::timeout(bound, passes.changed()).await;
}
