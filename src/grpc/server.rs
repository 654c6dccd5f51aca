//! The gRPC listener: hyper's HTTP/2 server on each connection, through the
//! accept loop every listener shares (`crate::http::server::serve_connections`:
//! the connection limit, the idle gate before a connection's first bytes,
//! graceful shutdown, which sends GOAWAY and drains in-flight calls under
//! `shutdown_timeout_secs`), routing by path to `grpc.health.v1.Health` or
//! `inference.GRPCInferenceService`.
//!
//! Each call runs under one deadline from its arrival: the request timeout,
//! or the client's `grpc-timeout` if sooner. It covers receiving the
//! message too (a slow sender is answered DEADLINE_EXCEEDED and its stream
//! freed) and is handed to the service for admission and scoring.
//!
//! HTTP/2 limits, against abuse under good traffic: [`MAX_STREAMS`]
//! concurrent streams a connection (more are refused with
//! REFUSED_STREAM), a header list of at most [`MAX_HEADER_LIST_BYTES`],
//! h2's bound on streams reset before the server accepted them (the
//! rapid-reset flood, CVE-2023-44487: past it the connection is closed
//! with GOAWAY) and on streams the server had to reset, keep-alive pings
//! that close a connection whose peer stopped answering, and a bounded send
//! buffer per stream (a client that never grants flow-control window holds
//! at most that, and only on its own streams). Messages are limited to
//! `max_body_bytes` (RESOURCE_EXHAUSTED above).

use super::health::Readiness;
use super::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use super::service::{route_label, Deadline, Inference};
use super::status::grpc_timeout;
use super::unvectored::Unvectored;
use crate::http::server::serve_connections;
use crate::http::state::AppState;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codegen::Service;
use tonic_health::pb::health_server::HealthServer;

/// Concurrent streams one connection may have open.
pub const MAX_STREAMS: u32 = 128;
/// Largest header list (metadata) of one call, as HTTP's request head limit.
pub const MAX_HEADER_LIST_BYTES: u32 = crate::http::server::MAX_HEADER_BYTES as u32;
/// Streams a client may reset before the server accepts them, at once
/// (h2's default; the rapid-reset bound).
const MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset for a client's protocol errors before it
/// closes the connection.
const MAX_LOCAL_RESETS: usize = 256;
/// Largest response data buffered per stream waiting for flow-control window.
const MAX_SEND_BUF_BYTES: usize = 64 * 1024;
/// A ping every this long on a quiet connection; no answer within
/// [`KEEPALIVE_TIMEOUT`] closes it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves gRPC on `listener` until `stopped` turns true, then drains.
pub async fn accept_loop(listener: TcpListener, state: Arc<AppState>, stopped: watch::Receiver<bool>) {
    let limit = state.config.max_body_bytes;
    let inference = GrpcInferenceServiceServer::new(Inference::new(state.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let health = HealthServer::new(Readiness::new(state.registry.clone(), stopped.clone()));
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_RESETS)
        .max_send_buf_size(MAX_SEND_BUF_BYTES)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let idle = state.metrics.connection_timeouts_total.with_label_values(&["idle"]);
    let timeout = state.config.request_timeout;
    let shared = state.clone();
    serve_connections(listener, &shared, stopped, idle, move |stream, watcher| {
        let (builder, inference, health, metrics) =
            (builder.clone(), inference.clone(), health.clone(), state.metrics.clone());
        async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let budget = grpc_timeout(req.headers()).map_or(timeout, |t| t.min(timeout));
                let deadline = tokio::time::Instant::now() + budget;
                req.extensions_mut().insert(Deadline(deadline));
                let (mut inference, mut health, metrics) = (inference.clone(), health.clone(), metrics.clone());
                let route = route_label(req.uri().path());
                let is_health = req.uri().path().starts_with("/grpc.health.v1.Health/");
                async move {
                    let call = async {
                        if is_health {
                            health.call(req).await
                        } else {
                            inference.call(req).await
                        }
                    };
                    let response = match tokio::time::timeout_at(deadline, call).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => {
                            // The message did not arrive in time (the
                            // service answers its own deadlines itself).
                            let labels = ["grpc", route, "DEADLINE_EXCEEDED"];
                            metrics.requests_total.with_label_values(&labels).inc();
                            tonic::Status::deadline_exceeded("the call did not complete within its deadline")
                                .into_http()
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let io = TokioIo::new(Unvectored(stream));
            if let Err(e) = watcher.watch(builder.serve_connection(io, service)).await {
                tracing::debug!(error = %e, "gRPC connection ended with an error");
            }
        }
    })
    .await;
}
