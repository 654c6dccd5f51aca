//! The accept loop: each connection is served by hyper's HTTP/1.1 server
//! and watched for graceful shutdown; on the stop signal the listener is
//! dropped and in-flight requests drain under the shutdown deadline.
//! Started by the composition root, [`crate::server`].

use super::routes::{handle, AppState};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Accepts connections until `stopped` turns true, then drains: no new
/// connections, in-flight requests finish under the shutdown deadline.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<AppState>, mut stopped: watch::Receiver<bool>) {
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
