//! What triggers a reconcile pass: a notify watcher on the models directory
//! (recursive; inotify on Linux), coalesced through a one-permit
//! `tokio::sync::Notify` plus a short quiet period, and a slow periodic
//! rescan that repairs anything the watcher missed (queue overflow, network
//! filesystems). Passes run on a blocking thread, one at a time, and each
//! completed pass is announced on a `watch` channel ([`Reloader::passes`]),
//! so tests (and anything else) wait for a pass instead of sleeping.

use super::loader::{Loader, PassReport};
use super::Registry;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// Rebuild the watcher when the watched tree has shrunk to less than half of
/// its high-water mark by more than this many entries.
const REBUILD_SLACK: usize = 64;

/// The filesystem watcher of the models directory. notify keeps a table
/// entry per watched directory and its tables never give capacity back, so
/// after a burst of directories that are gone again (500 junk model
/// directories created and deleted), the watcher is rebuilt: memory follows
/// what is on disk now. A rebuild watches the new tree before dropping the
/// old watcher, and the pass that follows rescans anyway, so nothing is missed.
pub struct DirWatch {
    dir: PathBuf,
    trigger: Arc<Notify>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Most listing entries seen since the watcher was (re)built.
    high_water: usize,
}

impl DirWatch {
    fn start(dir: &Path, trigger: Arc<Notify>) -> DirWatch {
        let watcher = match watch_dir(dir, trigger.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "cannot watch models directory; relying on periodic rescan");
                None
            }
        };
        DirWatch { dir: dir.to_path_buf(), trigger, watcher, high_water: 0 }
    }

    /// Called after each pass with the number of entries it listed.
    fn after_pass(&mut self, listed: usize) {
        self.high_water = self.high_water.max(listed);
        if self.watcher.is_none() || self.high_water <= 2 * listed + REBUILD_SLACK {
            return;
        }
        match watch_dir(&self.dir, self.trigger.clone()) {
            Ok(fresh) => {
                tracing::debug!(from = self.high_water, to = listed, "models tree shrank; rebuilt its watcher");
                self.watcher = Some(fresh);
                self.high_water = listed;
            }
            Err(e) => tracing::warn!(error = %e, "could not rebuild the models watcher; keeping the old one"),
        }
    }
}

/// The running reload machinery. Dropping it stops the watcher and the task.
pub struct Reloader {
    _watch: Arc<Mutex<DirWatch>>,
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
        let dir_watch = Arc::new(Mutex::new(DirWatch::start(dir, trigger.clone())));
        let (done, passes) = watch::channel(last);
        let triggers = Triggers { trigger: trigger.clone(), dir_watch: dir_watch.clone(), debounce, rescan };
        let task = tokio::spawn(supervise(loader, triggers, done));
        Reloader { _watch: dir_watch, trigger, passes, task }
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

    /// What [`Reloader::trigger`] notifies, for a task that asks for passes
    /// by itself (the object-store sync).
    pub fn trigger_handle(&self) -> Arc<Notify> {
        self.trigger.clone()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the reload loop running: if it ever panics outside a pass (a
/// panic inside a pass is caught there), it is restarted with a fresh
/// loader. Readiness reports a reload task that is gone for good.
async fn supervise(loader: Loader, triggers: Triggers, done: watch::Sender<PassReport>) {
    let template = loader.fresh();
    let registry = template.registry().clone();
    let done = Arc::new(done);
    let mut next = Some(loader);
    for restart in 0u32.. {
        let loader = next.take().unwrap_or_else(|| template.fresh());
        let task = tokio::spawn(reload_loop(loader, triggers.clone(), done.clone()));
        match task.await {
            Err(e) if e.is_panic() && restart < 1000 => {
                tracing::error!(error = %e, "the reload task panicked; restarting it");
                registry.metrics.reload_passes_total.with_label_values(&["panic"]).inc();
                // Let a trigger that arrived meanwhile run the next pass.
                triggers.trigger.notify_one();
            }
            _ => break,
        }
    }
    registry.reload_health.task_ended();
    tracing::error!("hot reload stopped for good; current versions keep serving");
}

/// What wakes the reload loop, and the watcher it keeps in shape.
#[derive(Clone)]
struct Triggers {
    trigger: Arc<Notify>,
    dir_watch: Arc<Mutex<DirWatch>>,
    debounce: Duration,
    rescan: Duration,
}

async fn reload_loop(mut loader: Loader, triggers: Triggers, done: Arc<watch::Sender<PassReport>>) {
    let Triggers { trigger, dir_watch, debounce, rescan } = triggers;
    let registry = loader.registry().clone();
    let mut ticker = tokio::time::interval(rescan);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the initial load already ran
    let mut retry_at = done.borrow().next_retry;
    loop {
        let retry = retry_at.map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = trigger.notified() => coalesce(&trigger, debounce).await,
            _ = ticker.tick() => {}
            _ = async { tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)).await }, if retry.is_some() => {}
        }
        let pass = tokio::task::spawn_blocking(move || {
            let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader.reconcile()));
            (loader, report)
        })
        .await;
        let Ok((l, report)) = pass else {
            // Only cancellation gets here (the pass itself catches panics).
            return;
        };
        loader = l;
        match report {
            Ok(report) => {
                record_pass(&registry, &report);
                if report.loads_failed > 0 || !report.swapped.is_empty() {
                    tracing::debug!(?report, "reconcile pass");
                }
                retry_at = report.next_retry;
                if report.list_error.is_none() {
                    if let Ok(mut watch) = dir_watch.lock() {
                        watch.after_pass(report.listed_entries);
                    }
                }
                done.send_replace(report);
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "a reload pass panicked; its results are discarded and the next pass starts afresh");
                registry.metrics.reload_passes_total.with_label_values(&["panic"]).inc();
                loader.reset();
                retry_at = Some(std::time::Instant::now() + super::loader::FIRST_RETRY_DELAY);
            }
        }
    }
}

/// Counts a completed pass and, if it listed the source, marks reload healthy.
pub fn record_pass(registry: &Registry, report: &PassReport) {
    let outcome = if report.list_error.is_some() { "list_error" } else { "ok" };
    registry.metrics.reload_passes_total.with_label_values(&[outcome]).inc();
    if report.list_error.is_none() {
        registry.reload_health.pass_completed();
        registry.metrics.reload_last_pass_timestamp_seconds.set(unix_seconds());
    }
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
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

    #[tokio::test]
    async fn the_watcher_is_rebuilt_after_the_tree_shrank_and_still_watches() {
        let tmp = tempfile::tempdir().unwrap();
        let trigger = Arc::new(Notify::new());
        let mut watch = DirWatch::start(tmp.path(), trigger.clone());
        watch.after_pass(1000);
        watch.after_pass(600);
        assert_eq!(watch.high_water, 1000, "shrinking by less than half keeps the watcher");
        watch.after_pass(10);
        assert_eq!(watch.high_water, 10, "rebuilt: the high-water mark starts again");
        std::fs::create_dir(tmp.path().join("m")).unwrap();
        tokio::time::timeout(Duration::from_secs(10), trigger.notified())
            .await
            .expect("the rebuilt watcher reports a new directory");
    }

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
