//! Start-up and shutdown, as a story: load every model (no port bound yet;
//! no valid model is a start-up error) → bind → start the watcher → accept
//! connections, each watched for graceful shutdown → on SIGTERM/SIGINT stop
//! accepting, let in-flight requests finish under a deadline → exit 0.
//!
//! [`start`] returns a [`RunningServer`] so tests run the real server on
//! `127.0.0.1:0` in-process; `main` uses [`run_blocking`].

use super::routes::{handle, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::loader::Loader;
use crate::registry::watcher::Reloader;
use crate::registry::Registry;
use anyhow::{bail, Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub reloader: Reloader,
    stop: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, drains in-flight requests (bounded by the shutdown
    /// timeout) and returns when done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept_loop.await;
    }
}

/// Loads the models, binds, and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(metrics.clone()));

    let mut loader = Loader::new(config.clone(), registry.clone());
    let dir = config.models_dir.clone();
    if !dir.is_dir() {
        bail!("models directory {} does not exist", dir.display());
    }
    let loader = tokio::task::spawn_blocking(move || {
        loader.reconcile();
        loader
    })
    .await
    .context("initial model load")?;
    if registry.snapshot().models.is_empty() {
        let reasons: Vec<String> = registry
            .status_table()
            .values()
            .flat_map(|m| {
                m.versions
                    .iter()
                    .map(move |v| format!("{} v{}: {}", m.name, v.version, v.reason.clone().unwrap_or_default()))
            })
            .collect();
        bail!(
            "no valid model under {}{}",
            dir.display(),
            if reasons.is_empty() {
                " (expected <model-name>/<version>/model.json)".to_string()
            } else {
                format!(": {}", reasons.join("; "))
            }
        );
    }

    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let reloader = Reloader::start(loader, &dir, config.reload_debounce, config.rescan_interval);
    let state = Arc::new(AppState::new(config.clone(), registry.clone(), metrics));
    let (stop, stopped) = watch::channel(false);
    let accept_loop = tokio::spawn(accept_loop(listener, state, stopped));
    for (name, model) in &registry.snapshot().models {
        if let Some(v) = model.default_version() {
            tracing::info!(model = %name, version = v.version, loaded = ?model.versions.keys().collect::<Vec<_>>(), "serving");
        }
    }
    tracing::info!(%addr, models_dir = %dir.display(), "riskserve listening");
    Ok(RunningServer { addr, registry, reloader, stop, accept_loop })
}

async fn accept_loop(listener: TcpListener, state: Arc<AppState>, mut stopped: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(state.config.request_timeout).keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // e.g. EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(state, req).await) }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no longer accepting; draining in-flight requests");
    match tokio::time::timeout(state.config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(timeout = ?state.config.shutdown_timeout, "shutdown deadline passed; closing remaining connections")
        }
    }
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
pub fn run_blocking(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let server = start(config).await?;
        wait_for_signal().await?;
        server.shutdown().await;
        Ok(())
    })
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
