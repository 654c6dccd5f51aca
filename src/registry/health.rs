//! Whether hot reload is alive: the time of the last reload pass that listed
//! the model source, and whether the reload task still runs. Readiness
//! turns 503, with the reason, when either goes wrong, so a replica that
//! silently stopped reloading is taken out of rotation and seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct ReloadHealth {
    stale_after: Duration,
    /// Origin of `last_pass_ms`.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last pass that listed the source.
    last_pass_ms: AtomicU64,
    task_alive: AtomicBool,
}

impl ReloadHealth {
    /// Healthy now; stale when no pass completes within `stale_after`.
    pub fn new(stale_after: Duration) -> ReloadHealth {
        ReloadHealth {
            stale_after,
            epoch: Instant::now(),
            last_pass_ms: AtomicU64::new(0),
            task_alive: AtomicBool::new(true),
        }
    }

    /// A pass listed the source and finished.
    pub fn pass_completed(&self) {
        self.last_pass_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The reload task is gone for good.
    pub fn task_ended(&self) {
        self.task_alive.store(false, Ordering::Relaxed);
    }

    /// Why hot reload is unhealthy, if it is.
    pub fn problem(&self) -> Option<String> {
        if !self.task_alive.load(Ordering::Relaxed) {
            return Some("hot reload stopped: the reload task ended".into());
        }
        let last = Duration::from_millis(self.last_pass_ms.load(Ordering::Relaxed));
        let since = self.epoch.elapsed().saturating_sub(last);
        (since > self.stale_after).then(|| {
            format!(
                "hot reload is stuck: no reload pass has listed the model source for {}s (limit {}s)",
                since.as_secs(),
                self.stale_after.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_dead_are_reported() {
        let h = ReloadHealth::new(Duration::from_millis(30));
        assert_eq!(h.problem(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.problem().is_none() {
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert!(h.problem().unwrap().contains("no reload pass"));
        h.pass_completed();
        assert_eq!(h.problem(), None);
        h.task_ended();
        assert!(h.problem().unwrap().contains("reload task ended"));
    }
}
