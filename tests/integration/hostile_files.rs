//! The reload path under hostile files and a failing filesystem: it never
//! wedges, says when it is unhealthy, retries what may heal, and leaks
//! nothing from the files it refuses. Faults are injected through a model
//! source that wraps the real local directory (the `Components` seam).

use crate::common::*;
use riskserve::model::format::LoadError;
use riskserve::repository::{ListError, Listing, LocalDirectory, ModelSource, VersionEntry};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the faulty source does wrong, switchable while the server runs.
#[derive(Default)]
struct Faults {
    /// Reads of this version block at `gate` until released.
    block_read_of: Option<u64>,
    /// Reads of version 2 fail with an I/O error this many more times.
    failing_reads: AtomicUsize,
    /// The listing call with this number (1-based) panics.
    panic_at_list: AtomicUsize,
    /// Listings block at `gate` while set.
    list_blocked: AtomicBool,
    list_calls: AtomicUsize,
    gate: Option<Arc<Gate>>,
}

struct FaultySource {
    inner: LocalDirectory,
    faults: Arc<Faults>,
}

impl ModelSource for FaultySource {
    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }

    fn list(&self) -> Result<Listing, ListError> {
        let call = self.faults.list_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if call == self.faults.panic_at_list.load(Ordering::SeqCst) {
            panic!("injected panic in listing {call}");
        }
        if self.faults.list_blocked.load(Ordering::SeqCst) {
            if let Some(gate) = &self.faults.gate {
                gate.pass();
            }
        }
        self.inner.list()
    }

    fn read(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
        if Some(entry.version) == self.faults.block_read_of {
            if let Some(gate) = &self.faults.gate {
                gate.pass();
            }
        }
        if entry.version == 2
            && self.faults.failing_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(LoadError::Io {
                path: entry.location.clone(),
                reason: "Permission denied (os error 13)".into(),
            });
        }
        self.inner.read(model, entry, max_bytes)
    }
}

async fn faulty_server(
    faults: Faults,
    tweak: impl FnOnce(&mut riskserve::config::Config),
) -> (TestServer, Arc<Faults>) {
    let faults = Arc::new(faults);
    let f = faults.clone();
    let s = TestServer::start_with_components(tweak, move |config, parts| {
        let inner = LocalDirectory::new(&config.models_dir);
        parts.source = Arc::new(FaultySource { inner, faults: f });
    })
    .await;
    (s, faults)
}

fn loads(text: &str, result: &str) -> f64 {
    metric(text, "riskserve_model_loads_total", &[("model", MODEL), ("result", result)]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_never_finishes_is_abandoned_and_reloading_goes_on() {
    let gate = Gate::new();
    let faults = Faults { block_read_of: Some(3), gate: Some(gate.clone()), ..Faults::default() };
    let (s, _faults) = faulty_server(faults, |c| c.load_timeout = Duration::from_secs(2)).await;
    commit(&s.models, MODEL, 3, bundled_model());
    s.wait_metric("riskserve_model_loads_total", &[("model", MODEL), ("result", "timeout")], 1.0).await;
    let status = s.get("/v1/models/credit-risk").await.json();
    assert_eq!(status["versions"][0]["state"], "failed", "{status}");
    assert!(status["versions"][0]["reason"].as_str().unwrap().contains("load abandoned"), "{status}");
    assert_eq!(s.get("/v2/health/ready").await.status, 200, "one stuck file does not make the server unready");
    // Reloading goes on: a later version loads while the stuck read still hangs.
    commit(&s.models, MODEL, 4, bundled_model());
    s.wait_serving(4).await;
    gate.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_is_retried_with_backoff_without_the_file_changing() {
    let faults = Faults { failing_reads: AtomicUsize::new(2), ..Faults::default() };
    let (s, _faults) = faulty_server(faults, |_| {}).await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    let text = s.metrics().await;
    assert_eq!(loads(&text, "io_error"), 2.0, "two failed reads, then the retry succeeded");
    assert_eq!(loads(&text, "success"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_panics_is_survived() {
    let (s, faults) = faulty_server(Faults::default(), |_| {}).await;
    faults.panic_at_list.store(faults.list_calls.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
    s.server.reloader.trigger();
    s.wait_metric("riskserve_reload_passes_total", &[("outcome", "list_error")], 1.0).await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_hangs_makes_readiness_say_so_and_recovers() {
    let gate = Gate::new();
    let faults = Faults { gate: Some(gate.clone()), ..Faults::default() };
    let (s, faults) = faulty_server(faults, |c| {
        c.load_timeout = Duration::from_secs(2);
        c.reload_stale_after = Duration::from_secs(3);
        c.rescan_interval = Duration::from_millis(500);
    })
    .await;
    faults.list_blocked.store(true, Ordering::SeqCst);
    s.wait_metric("riskserve_reload_passes_total", &[("outcome", "list_error")], 1.0).await;
    let registry = s.server.registry.clone();
    s.wait_for_pass("readiness reports the stuck reload", |_| registry.readiness().is_err()).await;
    let ready = s.get("/v2/health/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.error().contains("hot reload is stuck"), "{}", ready.text());
    assert_eq!(s.serving_version().await, 1, "still serving meanwhile");
    // The filesystem comes back.
    faults.list_blocked.store(false, Ordering::SeqCst);
    gate.release();
    s.wait_for_pass("readiness back", |_| registry.readiness().is_ok()).await;
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_is_refused_without_blocking_the_reload() {
    let s = TestServer::start().await;
    let dir = s.models.join(MODEL).join("2");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(dir.join("model.json")).status().unwrap().success());
    s.wait_metric("riskserve_model_loads_total", &[("model", MODEL), ("result", "invalid")], 1.0).await;
    let status = s.get("/v1/models/credit-risk").await.json();
    assert!(status["versions"][0]["reason"].as_str().unwrap().contains("not a regular file"), "{status}");
    commit(&s.models, MODEL, 3, bundled_model());
    s.wait_serving(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_files_leak_neither_content_nor_paths() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("shadow");
    std::fs::write(&secret, "{\"format\":\"root:hunter2:19000:0:99999:7:::\"}").unwrap();
    let s = TestServer::start().await;
    // A symlink out of the models directory, and a copy of the secret inside it.
    let v2 = s.models.join(MODEL).join("2");
    std::fs::create_dir_all(&v2).unwrap();
    std::os::unix::fs::symlink(&secret, v2.join("model.json")).unwrap();
    let leaky = s.models.join("leaky").join("1");
    std::fs::create_dir_all(&leaky).unwrap();
    std::fs::copy(&secret, leaky.join("model.json")).unwrap();
    s.wait_for_pass("both refused", |snap| {
        snap.status.get("leaky").is_some_and(|m| !m.versions.is_empty())
            && snap.status[MODEL].versions.iter().any(|v| v.version == 2 && v.reason.is_some())
    })
    .await;
    let listing = s.get("/v1/models").await.text();
    let unavailable = s.post("/v1/models/leaky/predict", ROW).await;
    assert_eq!(unavailable.status, 503);
    for body in [&listing, &unavailable.text()] {
        assert!(!body.contains("hunter2"), "file content leaked: {body}");
        assert!(!body.contains(&*s.models.to_string_lossy()), "absolute path leaked: {body}");
        assert!(!body.contains(&*secrets.path().to_string_lossy()), "absolute path leaked: {body}");
    }
    assert!(listing.contains("outside the models directory"), "{listing}");
    assert!(listing.contains("not a riskserve model file"), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_model_directories_leave_no_series_behind() {
    let s = TestServer::start().await;
    let lines = |t: &str| t.lines().filter(|l| !l.starts_with('#') && !l.starts_with("process_")).count();
    s.next_pass().await;
    let before = lines(&s.metrics().await);
    for i in 0..100 {
        let dir = s.models.join(format!("junk-{i}")).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.json"), b"{\"format\":").unwrap();
    }
    s.wait_for_pass("junk listed", |snap| snap.status.len() == 101).await;
    assert!(lines(&s.metrics().await) > before + 100, "junk models have series while they exist");
    for i in 0..100 {
        std::fs::remove_dir_all(s.models.join(format!("junk-{i}"))).unwrap();
    }
    s.wait_for_pass("junk gone", |snap| snap.status.len() == 1).await;
    assert_eq!(lines(&s.metrics().await), before, "{}", s.metrics().await);
}
