//! Routing, and the `/v1` and health handlers. Every request goes through
//! [`handle`], which counts it (`riskserve_requests_total{protocol,route,code}`,
//! duration, in-flight) under a route *template* so label cardinality stays
//! bounded.
//!
//! A prediction is routed here, its content type checked, and the rest
//! (admission, body, parse, version, scoring) is the shared path in
//! [`super::predict`].
//!
//! [`handle`] is generic over the request body, so the routing table,
//! statuses and bodies are tested by calling it with a request value (no
//! socket, no port); the socket-level tests are in `tests/integration`.
//!
//! Only the accept loop imports this file: what handlers share (the app
//! state, the route names, JSON answers) lives in [`super::state`],
//! [`super::route`] and [`super::reply`].

use super::body::RequestBody;
use super::conn::Arrival;
use super::error::ApiError;
use super::oip;
use super::predict::{run_prediction, with_version_header, ExplainQuery, PredictionRequest};
use super::reply::{get_only, json_ok, to_json, Handled};
use super::request;
use super::response::PredictResponse;
use super::route::{pinned_version, Route};
use super::state::AppState;
use super::text::split_at_byte;
use crate::registry::MAX_NAMES_LISTED;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

pub async fn handle<B: RequestBody>(state: Arc<AppState>, req: Request<B>) -> Response<Full<Bytes>> {
    let arrival = req.extensions().get::<Arrival>().copied().unwrap_or_else(|| Arrival(tokio::time::Instant::now()));
    handle_arrived(state, req, arrival).await
}

/// [`handle`] for a request whose start is known (the accept loop's
/// connection clock), without going through the request's extensions map.
pub async fn handle_arrived<B: RequestBody>(
    state: Arc<AppState>,
    req: Request<B>,
    arrival: Arrival,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let _inflight = state.metrics.inflight();
    let (route, result) = dispatch(&state, req, arrival.0).await;
    if result.as_ref().is_err_and(ApiError::is_deadline_exceeded) {
        state.shed("deadline");
    }
    let response = result.unwrap_or_else(ApiError::into_response);
    state.count(route, response.status(), started.elapsed().as_secs_f64());
    response
}

/// Most path segments any route has; longer paths are unmatched.
const MAX_SEGMENTS: usize = 6;

/// The path's segments between slashes, leading and trailing slashes
/// ignored (`/` is one empty segment); none when there are more than
/// `MAX_SEGMENTS`.
fn path_segments<'b, 'p>(path: &'p str, buf: &'b mut [&'p str; MAX_SEGMENTS]) -> &'b [&'p str] {
    let bytes = path.as_bytes();
    let start = bytes.iter().position(|&b| b != b'/').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(start, |last| last + 1);
    let mut n = 0;
    for segment in split_at_byte(&path[start..end], b'/') {
        if n == MAX_SEGMENTS {
            return &[];
        }
        buf[n] = segment;
        n += 1;
    }
    &buf[..n]
}

async fn dispatch<B: RequestBody>(
    state: &AppState,
    req: Request<B>,
    arrived: tokio::time::Instant,
) -> (Route, Handled) {
    let (parts, body) = req.into_parts();
    // Refused before routing (hyper refuses heads over its own 100 fields).
    if parts.headers.len() > super::server::MAX_HEADERS {
        return (Route::Unmatched, Err(ApiError::too_many_headers(parts.headers.len(), super::server::MAX_HEADERS)));
    }
    // One deadline from the request's first byte (see `conn`), or from when
    // the handler got it for a request that did not come over a connection.
    let deadline = arrived + state.config.request_timeout;
    let path = parts.uri.path();
    let mut buf = [""; MAX_SEGMENTS];
    let segments = path_segments(path, &mut buf);
    let method = &parts.method;
    match segments {
        ["v1", "models", name, "predict"] => {
            if method != Method::POST {
                return (Route::Predict, Err(ApiError::method_not_allowed("POST")));
            }
            let explain = match ExplainQuery::parse(parts.uri.query()) {
                Ok(e) => e,
                Err(e) => return (Route::Predict, Err(e)),
            };
            let request = PredictionRequest { name, pinned: None, explain, headers: &parts.headers, body, deadline };
            (Route::Predict, predict(state, request).await)
        }
        ["v1", "models", name, "versions", version, "predict"] => {
            let route = Route::PredictVersion;
            if method != Method::POST {
                return (route, Err(ApiError::method_not_allowed("POST")));
            }
            let v = match pinned_version(version) {
                Ok(v) => v,
                Err(e) => return (route, Err(e)),
            };
            let explain = match ExplainQuery::parse(parts.uri.query()) {
                Ok(e) => e,
                Err(e) => return (route, Err(e)),
            };
            let request = PredictionRequest { name, pinned: Some(v), explain, headers: &parts.headers, body, deadline };
            (route, predict(state, request).await)
        }
        ["v1", "models"] => (Route::Models, get_only(method, || list_models(state))),
        ["v1", "models", name] => (Route::Model, get_only(method, || model_status(state, name))),
        ["v2", "health", "live"] => (Route::Live, get_only(method, || Ok(json_ok(br#"{"live":true}"#.to_vec())))),
        ["v2", "health", "ready"] => (Route::Ready, get_only(method, || ready(state))),
        ["metrics"] => (Route::Metrics, get_only(method, || Ok(metrics_text(state)))),
        [""] => (Route::Form, get_only(method, || Ok(super::form::page()))),
        ["openapi.json"] => (
            Route::OpenApi,
            get_only(method, || Ok(super::openapi::response(&state.config, &state.registry.snapshot()))),
        ),
        ["v2", ..] => match oip::route(segments) {
            Some((route, call)) => (route, oip::handle(state, call, method, &parts.headers, body, deadline).await),
            None => (Route::Unmatched, Err(ApiError::not_found(format!("no route for {path}")))),
        },
        _ => (Route::Unmatched, Err(ApiError::not_found(format!("no route for {path}")))),
    }
}

/// Content type check: `application/json` (parameters like
/// `charset=utf-8` allowed); anything else, or none, is 415. A missing one is
/// not taken as JSON: that would let any web page send a cross-site "simple"
/// request without a CORS preflight.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(ApiError::missing_content_type());
    };
    let text = value.to_str().unwrap_or("<non-ASCII>");
    // `to_str` passed only visible ASCII, spaces and tabs, so trimming ASCII
    // whitespace is `trim`.
    let mime = text.as_bytes().split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    if mime.eq_ignore_ascii_case(b"application/json") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(text))
    }
}

async fn predict<B: RequestBody>(state: &AppState, request: PredictionRequest<'_, B>) -> Handled {
    check_content_type(request.headers)?;
    let scored = run_prediction(
        state,
        request,
        |body, decoder| Ok(((), request::decode(body, decoder)?)),
        |_| ExplainQuery::NONE,
    )
    .await?;
    let version = &scored.version;
    let body = PredictResponse::of(version, &scored.predictions).to_json()?;
    Ok(with_version_header(json_ok(body), version))
}

fn list_models(state: &AppState) -> Handled {
    #[derive(Serialize)]
    struct Models<'a> {
        models: Vec<&'a crate::registry::ModelStatus>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sync: Option<crate::sync::SyncStatus>,
    }
    let snapshot = state.registry.snapshot();
    let sync = state.sync.as_ref().map(|s| s.status());
    to_json(&Models { models: snapshot.status.values().collect(), sync })
}

fn model_status(state: &AppState, name: &str) -> Handled {
    let snapshot = state.registry.snapshot();
    match snapshot.status.get(name) {
        Some(status) => to_json(status),
        None => Err(ApiError::not_found(format!(
            "model `{name}` is not known; models: {}",
            snapshot.status.keys().take(MAX_NAMES_LISTED).cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn ready(state: &AppState) -> Handled {
    match state.registry.readiness() {
        Ok(()) => Ok(json_ok(br#"{"ready":true}"#.to_vec())),
        Err(reason) => Err(ApiError::unavailable(reason)),
    }
}

fn metrics_text(state: &AppState) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(state.metrics.render())));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests;
