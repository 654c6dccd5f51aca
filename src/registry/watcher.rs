//! What triggers a reconcile pass: a notify watcher on the models directory
//! (recursive; inotify on Linux), coalesced through a one-permit
//! `tokio::sync::Notify` plus a short quiet period, and a slow periodic
//! rescan that repairs anything the watcher missed (queue overflow, network
//! filesystems). Passes run on a blocking thread, one at a time, and each
//! completed pass is announced on a `watch` channel ([`Reloader::passes`]),
//! so tests (and anything else) wait for a pass instead of sleeping.

use super::loader::{Loader, PassReport};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Whether a filesystem event can change what should be served. Reads
/// (including the loader's own) are ignored, so loading never triggers itself.
pub fn is_relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Starts watching `dir`; every relevant event (or watcher error) wakes `trigger`.
pub fn watch_dir(dir: &Path, trigger: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) if is_relevant(&e.kind) => trigger.notify_one(),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "filesystem watcher error; rescanning");
            trigger.notify_one();
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// The running reload machinery. Dropping it stops the watcher and the task.
pub struct Reloader {
    _watcher: Option<notify::RecommendedWatcher>,
    trigger: Arc<Notify>,
    passes: watch::Receiver<PassReport>,
    task: JoinHandle<()>,
}

impl Reloader {
    /// Starts the watcher and the reload task. `last` is the report of the
    /// pass already run (the initial load). If the watcher cannot start, the
    /// periodic rescan still works (logged).
    pub fn start(loader: Loader, last: PassReport, dir: &Path, debounce: Duration, rescan: Duration) -> Reloader {
        let trigger = Arc::new(Notify::new());
        let watcher = match watch_dir(dir, trigger.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "cannot watch models directory; relying on periodic rescan");
                None
            }
        };
        let (done, passes) = watch::channel(last);
        let task = tokio::spawn(reload_loop(loader, trigger.clone(), done, debounce, rescan));
        Reloader { _watcher: watcher, trigger, passes, task }
    }

    /// The report of every completed pass, newest first: `changed()` wakes
    /// when the next pass completes.
    pub fn passes(&self) -> watch::Receiver<PassReport> {
        self.passes.clone()
    }

    /// Asks for a pass now (as a filesystem event would).
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn reload_loop(
    mut loader: Loader,
    trigger: Arc<Notify>,
    done: watch::Sender<PassReport>,
    debounce: Duration,
    rescan: Duration,
) {
    let mut ticker = tokio::time::interval(rescan);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the initial load already ran
    loop {
        tokio::select! {
            _ = trigger.notified() => coalesce(&trigger, debounce).await,
            _ = ticker.tick() => {}
        }
        let result = tokio::task::spawn_blocking(move || {
            let report: PassReport = loader.reconcile();
            (loader, report)
        })
        .await;
        match result {
            Ok((l, report)) => {
                loader = l;
                if report.loads_failed > 0 || !report.swapped.is_empty() {
                    tracing::debug!(?report, "reconcile pass");
                }
                done.send_replace(report);
            }
            Err(e) => {
                // A panic in a pass would be a bug; the snapshot is untouched,
                // but without the loader there is nothing left to reload with.
                tracing::error!(error = %e, "reconcile pass panicked; hot reload stopped, current versions keep serving");
                return;
            }
        }
    }
}

/// Waits until events have been quiet for `debounce` (at most 10 × debounce),
/// so a burst of writes becomes one pass.
async fn coalesce(trigger: &Notify, debounce: Duration) {
    let deadline = tokio::time::Instant::now() + debounce * 10;
    while tokio::time::Instant::now() < deadline {
        if tokio::time::timeout(debounce, trigger.notified()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_reads_do_not_trigger_but_writes_renames_and_removes_do() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
        assert!(!is_relevant(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_relevant(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_relevant(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_relevant(&EventKind::Create(CreateKind::Folder)));
        assert!(is_relevant(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(is_relevant(&EventKind::Remove(RemoveKind::Folder)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_is_coalesced_and_bounded() {
        let trigger = Arc::new(Notify::new());
        let t = trigger.clone();
        let burst = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                t.notify_one();
            }
        });
        let started = tokio::time::Instant::now();
        coalesce(&trigger, Duration::from_millis(20)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(25 + 20) && waited < Duration::from_millis(80), "{waited:?}");
        burst.await.unwrap();
        // An endless stream of events cannot postpone the pass past 10 × debounce.
        let t = trigger.clone();
        let storm = tokio::spawn(async move {
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                t.notify_one();
            }
        });
        let started = tokio::time::Instant::now();
        coalesce(&trigger, Duration::from_millis(20)).await;
        assert!(started.elapsed() <= Duration::from_millis(201), "{:?}", started.elapsed());
        storm.abort();
    }
}
