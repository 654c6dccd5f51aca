//! The accept loop: each connection is served by hyper's HTTP/1.1 server
//! over a [`GuardedIo`] (request, idle and write timeouts) once its first
//! bytes arrive, and watched for graceful shutdown; on the stop signal the listener is dropped and
//! in-flight requests drain under the shutdown deadline. At most
//! `max_connections` are open: one more is accepted and closed at once, and
//! counted. Accept errors (say EMFILE) are logged at most once a second.
//! Started by the composition root, [`crate::server`]. The loop itself,
//! without the HTTP/1.1 part (`serve_connections`), is shared with the
//! gRPC listener (`crate::grpc::server`).

use super::conn::{ConnClock, GuardedIo, IoLimits, TimeoutCounters};
use super::routes::handle_arrived;
use super::state::AppState;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// Largest request head (request line and headers); above it, 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields in one request; above it, 431. The router checks it
/// (`routes::dispatch`), not hyper: hyper's `max_headers` makes it fill a
/// header array of that length for every request head it parses (about
/// 1,300 instructions a request, 2.6 %), while without it the array is
/// left uninitialised and hyper itself answers 431 above its own 100.
pub const MAX_HEADERS: usize = 64;
/// hyper's read and write buffer bound per connection.
const MAX_BUF_BYTES: usize = 64 * 1024;

/// Binds `addr` with a listen backlog of `backlog` (tokio's `bind` uses
/// 1,024): a burst of 2,000 new connections then waits in the kernel for
/// the accept loop instead of having its handshakes dropped, which makes
/// clients (health probes included) retry a second later. Linux caps the
/// backlog at `net.core.somaxconn`.
pub(crate) fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's and tokio's `bind` do on Unix: a restarted server can bind
    // while the old one's connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accepts connections until `stopped` turns true, then drains: no new
/// connections, in-flight requests finish under the shutdown deadline.
pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<AppState>, stopped: watch::Receiver<bool>) {
    let config = state.config.clone();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        // The request deadline, headers included, is the GuardedIo's.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(MAX_BUF_BYTES)
        .max_header_size(MAX_HEADER_BYTES);
    let limits = IoLimits { idle: config.idle_timeout, request: config.request_timeout, write: config.write_timeout };
    let timeouts = &state.metrics.connection_timeouts_total;
    let counters = TimeoutCounters {
        idle: timeouts.with_label_values(&["idle"]),
        request: timeouts.with_label_values(&["request"]),
        write: timeouts.with_label_values(&["write"]),
    };
    let (idle, shared) = (counters.idle.clone(), state.clone());
    serve_connections(listener, &shared, stopped, idle, move |stream, watcher| {
        let (state, http, counters) = (state.clone(), http.clone(), counters.clone());
        async move {
            let clock = ConnClock::new();
            let io = GuardedIo::new(stream, clock.clone(), limits, counters);
            let service = service_fn(move |req| {
                // hyper calls the service as soon as it has parsed
                // the headers, and may read the socket again (to
                // see a close) before it first polls the future:
                // the request is the handler's from here, so that
                // read waits under no header deadline.
                let arrival = clock.begin_request();
                let (state, clock) = (state.clone(), clock.clone());
                async move {
                    let response = handle_arrived(state, req, arrival).await;
                    clock.end_request();
                    Ok::<_, Infallible>(response)
                }
            });
            if let Err(e) = watcher.watch(http.serve_connection(TokioIo::new(io), service)).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
    })
    .await;
}

/// The accept loop every listener shares (HTTP/1.1 here, gRPC's HTTP/2 in
/// `crate::grpc::server`): at most `max_connections` open (one more is
/// accepted and closed at once, and counted), `serve` runs each connection
/// once its first bytes arrive (a silent one is closed after the idle
/// timeout, counted on `idle`), watched for graceful shutdown; when
/// `stopped` turns true the listener is dropped and open connections drain
/// under the shutdown deadline.
pub(crate) async fn serve_connections<F, Fut>(
    listener: TcpListener,
    state: &AppState,
    mut stopped: watch::Receiver<bool>,
    idle: prometheus::IntCounter,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, Watcher) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let config = &state.config;
    let connections = Arc::new(Semaphore::new(config.max_connections.min(Semaphore::MAX_PERMITS)));
    let mut accept_errors = RateLimitedLog::new(Duration::from_secs(1));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        if let Some(suppressed) = accept_errors.record(Instant::now()) {
                            tracing::warn!(error = %e, suppressed, "accept failed (logged at most once a second)");
                        }
                        // e.g. EMFILE: back off briefly instead of spinning.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    state.metrics.connections_refused_total.inc();
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (stop, idle, idle_timeout) = (stopped.clone(), idle.clone(), config.idle_timeout);
                let (open, serve, watcher) = (state.metrics.connections_open.clone(), serve.clone(), graceful.watcher());
                open.inc();
                tokio::spawn(async move {
                    if first_byte(&stream, idle_timeout, stop, &idle).await {
                        serve(stream, watcher).await;
                    }
                    open.dec();
                    drop(permit);
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no longer accepting; draining in-flight requests");
    match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(timeout = ?config.shutdown_timeout, "shutdown deadline passed; closing remaining connections")
        }
    }
}

/// Waits until a new connection has bytes to read (or is closed) before
/// hyper takes it: hyper gives a connection its read buffer (8 KiB) when it
/// first polls it, so 2,000 connections that never send a byte would hold
/// 16 MiB. `false` (the connection is then closed) when it stays silent for
/// the idle timeout, counted as an idle timeout, or when the server stops.
async fn first_byte(
    stream: &tokio::net::TcpStream,
    idle: Duration,
    mut stopped: watch::Receiver<bool>,
    idle_timeouts: &prometheus::IntCounter,
) -> bool {
    tokio::select! {
        ready = tokio::time::timeout(idle, stream.readable()) => match ready {
            Ok(ready) => ready.is_ok(),
            Err(_) => {
                idle_timeouts.inc();
                false
            }
        },
        _ = stopped.wait_for(|stop| *stop) => false,
    }
}

/// Lets a repeated event be logged at most once per `every`, with the
/// number of occurrences not logged since the last one.
#[derive(Debug)]
struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog { every, last: None, suppressed: 0 }
    }

    /// An occurrence at `now`: `Some(suppressed since the last log)` if it
    /// should be logged, `None` if it is counted and suppressed.
    fn record(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel completes at most backlog + 1 handshakes for a listener
    /// that does not accept; the rest wait (their SYNs are dropped).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_listen_backlog_is_the_configured_one() {
        for backlog in [4u32, 12] {
            let listener = listen("127.0.0.1:0".parse().unwrap(), backlog).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut clients = Vec::new();
            for _ in 0..24 {
                let connect = tokio::net::TcpStream::connect(addr);
                if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(100), connect).await {
                    clients.push(c);
                }
            }
            let mut queued = 0;
            while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await {
                queued += 1;
            }
            assert_eq!(queued, backlog as usize + 1, "backlog {backlog}");
        }
    }

    #[test]
    fn repeated_errors_are_logged_once_a_second_with_the_count_suppressed() {
        let mut log = RateLimitedLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(log.record(t0), Some(0));
        for ms in [1, 200, 999] {
            assert_eq!(log.record(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.record(t0 + Duration::from_millis(1000)), Some(3));
        assert_eq!(log.record(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.record(t0 + Duration::from_secs(5)), Some(1));
    }
}
