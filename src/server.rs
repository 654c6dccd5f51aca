//! The composition root: start-up and shutdown, as a story.
//!
//! Load every model (no port bound yet; no valid model is a start-up error)
//! → bind (HTTP, and gRPC with `--grpc-listen`) → start the watcher → accept connections, each watched for
//! graceful shutdown → on SIGTERM/SIGINT stop accepting, let in-flight
//! requests finish under a deadline → exit 0.
//!
//! [`start`] returns a [`RunningServer`] so tests run the real server on
//! `127.0.0.1:0` in-process, optionally with other [`Components`] (a
//! different model source, a scorer stand-in); `main` uses [`run_blocking`].

use crate::config::Config;
use crate::http::state::AppState;
use crate::metrics::Metrics;
use crate::model::limits::ModelLimits;
use crate::registry::loader::{compile_models, Loader, ScorerFactory};
use crate::registry::watcher::Reloader;
use crate::registry::Registry;
use crate::repository::{LocalDirectory, ModelSource};
use crate::sync::replica::{Pacing, ServerHooks, Syncer};
use crate::sync::status::SyncMetrics;
use crate::sync::store::Store;
use crate::sync::{SyncState, SyncedSource};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The replaceable parts of a server. [`Components::production`] is what
/// `riskserve serve` runs; tests swap one part at a time.
pub struct Components {
    /// Where model versions come from.
    pub source: Arc<dyn ModelSource>,
    /// How a version's bytes become a scorer.
    pub scorers: ScorerFactory,
}

impl Components {
    /// The local models directory, compiled into [`crate::model::Model`]s.
    pub fn production(config: &Config) -> Components {
        let directory =
            LocalDirectory::new(&config.models_dir).follow_links_outside(config.follow_symlinks_outside_models_dir);
        let limits = ModelLimits { max_prediction_cost: config.max_prediction_cost };
        Components { source: Arc::new(directory), scorers: compile_models(limits) }
    }
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The gRPC listener's address, with `--grpc-listen`.
    pub grpc_addr: Option<SocketAddr>,
    pub registry: Arc<Registry>,
    pub reloader: Reloader,
    /// The object-store sync's shared state, with `--sync-from`.
    pub sync: Option<Arc<SyncState>>,
    stop: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
    grpc_accept_loop: Option<JoinHandle<()>>,
    sync_task: Option<AbortOnDrop>,
}

/// A background task that ends with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RunningServer {
    /// Stops accepting, drains in-flight requests (bounded by the shutdown
    /// timeout) and returns when done.
    pub async fn shutdown(mut self) {
        self.sync_task.take();
        let _ = self.stop.send(true);
        let _ = self.accept_loop.await;
        if let Some(grpc) = self.grpc_accept_loop.take() {
            let _ = grpc.await;
        }
    }
}

/// Loads the models, binds, and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer> {
    let components = Components::production(&config);
    start_with(config, components).await
}

/// [`start`] with the given components.
pub async fn start_with(config: Config, mut components: Components) -> Result<RunningServer> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(metrics.clone(), config.reload_stale_after));
    let dir = config.models_dir.clone();
    let syncer = match &config.sync_from {
        Some(url) => Some(first_sync(&config, url, &metrics, &mut components).await?),
        None => None,
    };
    if !dir.is_dir() {
        bail!("models directory {} does not exist", dir.display());
    }
    let source_name = components.source.describe();
    let mut loader = Loader::new(config.clone(), components.source, components.scorers, registry.clone());
    let (loader, first_pass) = tokio::task::spawn_blocking(move || {
        let report = loader.reconcile();
        (loader, report)
    })
    .await
    .context("initial model load")?;
    crate::registry::watcher::record_pass(&registry, &first_pass);
    let snapshot = registry.snapshot();
    if snapshot.models.is_empty() {
        let reasons: Vec<String> = snapshot
            .status
            .values()
            .flat_map(|m| {
                m.versions
                    .iter()
                    .map(move |v| format!("{} v{}: {}", m.name, v.version, v.reason.clone().unwrap_or_default()))
            })
            .collect();
        bail!(
            "no valid model in {source_name}{}",
            if reasons.is_empty() {
                " (expected <model-name>/<version>/model.json, or an imported xgboost.json or lightgbm.txt)".to_string()
            } else {
                format!(": {}", reasons.join("; "))
            }
        );
    }

    let listener = crate::http::server::listen(config.listen, config.listen_backlog)
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let grpc_listener = match config.grpc_listen {
        Some(grpc) => Some(
            crate::http::server::listen(grpc, config.listen_backlog)
                .with_context(|| format!("binding {grpc} (--grpc-listen)"))?,
        ),
        None => None,
    };
    let grpc_addr = grpc_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let reloader = Reloader::start(loader, first_pass, &dir, config.reload_debounce, config.rescan_interval);
    if let Some(syncer) = &syncer {
        // The initial pass above listed what the first sync applied.
        syncer.mark_on_generation();
    }
    let sync = syncer.as_ref().map(|s| s.state().clone());
    let sync_task = syncer.map(|syncer| {
        let hooks =
            ServerHooks { registry: registry.clone(), trigger: reloader.trigger_handle(), passes: reloader.passes() };
        let interval = config.sync_interval;
        let pacing = Pacing {
            interval,
            stale_after: (interval * 5).max(std::time::Duration::from_secs(2)),
            poll_timeout: config.load_timeout.max(interval),
        };
        AbortOnDrop(tokio::spawn(crate::sync::replica::run(syncer, hooks, pacing)))
    });
    register_drift(&metrics, &registry)?;
    let mut app = AppState::new(config.clone(), registry.clone(), metrics);
    app.sync = sync.clone();
    let state = Arc::new(app);
    let (stop, stopped) = watch::channel(false);
    let grpc_accept_loop =
        grpc_listener.map(|l| tokio::spawn(crate::grpc::server::accept_loop(l, state.clone(), stopped.clone())));
    let accept_loop = tokio::spawn(crate::http::server::accept_loop(listener, state, stopped));
    for (name, model) in &snapshot.models {
        if let Some(v) = model.default_version() {
            tracing::info!(model = %name, version = v.version, loaded = ?model.versions.keys().collect::<Vec<_>>(), "serving");
        }
    }
    if let Some(grpc_addr) = grpc_addr {
        tracing::info!(%grpc_addr, "riskserve gRPC listening");
    }
    tracing::info!(%addr, source = %source_name, "riskserve listening");
    Ok(RunningServer { addr, grpc_addr, registry, reloader, sync, stop, accept_loop, grpc_accept_loop, sync_task })
}

/// Exports the drift gauges of every loaded version with a monitor. The
/// collector holds the registry weakly: the registry holds the metrics.
fn register_drift(metrics: &Metrics, registry: &Arc<Registry>) -> Result<()> {
    let registry = Arc::downgrade(registry);
    let monitors = move || {
        let Some(registry) = registry.upgrade() else { return Vec::new() };
        let snapshot = registry.snapshot();
        let versions = snapshot.models.values().flat_map(|m| m.versions.values());
        versions.filter_map(|v| Some((v.name.clone(), v.version, v.drift.clone()?))).collect()
    };
    metrics
        .register(Box::new(crate::drift::collector::DriftCollector::new(Box::new(monitors))))
        .context("registering drift metrics")
}

/// `--sync-from`: restores the last applied manifest from disk, polls the
/// store once (bounded by the load timeout; a store that is down is logged
/// and serving starts from the local copies), and puts the synced view of
/// the models directory in front of the loader.
async fn first_sync(config: &Config, url: &str, metrics: &Metrics, components: &mut Components) -> Result<Syncer> {
    std::fs::create_dir_all(&config.models_dir)
        .with_context(|| format!("creating models directory {}", config.models_dir.display()))?;
    let store = Store::open(url)?;
    let sync_metrics = SyncMetrics::register(metrics).context("registering sync metrics")?;
    let manifest_timeout = (config.sync_interval * 10).max(std::time::Duration::from_secs(5));
    let mut syncer = Syncer::new(store, &config.models_dir, config.max_model_bytes, sync_metrics)
        .with_manifest_timeout(manifest_timeout);
    syncer.restore();
    match syncer.poll(config.load_timeout).await {
        Ok(outcome) => tracing::info!(source = %url, ?outcome, "first sync from the object store"),
        Err(e) => tracing::warn!(
            source = %url,
            error = %e,
            generation = ?syncer.generation(),
            "first sync failed; serving the versions already synced here, retrying in the background"
        ),
    }
    components.source = Arc::new(SyncedSource::new(components.source.clone(), syncer.state().clone(), url));
    Ok(syncer)
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
///
/// Shutdown is bounded whatever the loader is doing: draining is bounded by
/// `shutdown_timeout`, and a load or listing stuck on a hung filesystem is
/// not waited for (the runtime gives blocking threads one more second).
pub fn run_blocking(config: Config) -> Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(async move {
        let server = start(config).await?;
        wait_for_signal().await?;
        server.shutdown().await;
        Ok(())
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// The tokio runtime `riskserve serve` runs on (the benchmark's hyper
/// ceiling, `crates/ceiling`, uses the same one, so the two differ only in
/// what they do per request).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // Blocking threads (reload passes, file system calls) that have nothing
    // to do exit after 2 s instead of tokio's 10 s, so the memory of a burst
    // (their stacks, their allocator caches) is given back soon after it.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
