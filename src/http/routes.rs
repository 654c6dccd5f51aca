//! Routing and handlers. Every request goes through [`handle`], which counts
//! it (`riskserve_requests_total{route,code}`, duration, in-flight) under a
//! route *template* so label cardinality stays bounded.
//!
//! [`handle`] is generic over the request body, so the routing table,
//! statuses and bodies are tested by calling it with a request value (no
//! socket, no port); the socket-level tests are in `tests/integration`.

use super::error::{json_response, ApiError};
use super::request;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{Decision, Prediction};
use crate::registry::{LoadedVersion, LookupError, Registry, MAX_NAMES_LISTED};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use prometheus::{Histogram, IntCounter};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Batches larger than this are scored on a blocking thread, so a big batch
/// does not hold up the async workers.
const INLINE_BATCH: usize = 64;

/// The routes, each with a template label for metrics (bounded cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Predict,
    PredictVersion,
    Models,
    Model,
    Live,
    Ready,
    Metrics,
    Form,
    Unmatched,
}

impl Route {
    const ALL: [Route; 9] = [
        Route::Predict,
        Route::PredictVersion,
        Route::Models,
        Route::Model,
        Route::Live,
        Route::Ready,
        Route::Metrics,
        Route::Form,
        Route::Unmatched,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::Predict => "/v1/models/{name}/predict",
            Route::PredictVersion => "/v1/models/{name}/versions/{version}/predict",
            Route::Models => "/v1/models",
            Route::Model => "/v1/models/{name}",
            Route::Live => "/v2/health/live",
            Route::Ready => "/v2/health/ready",
            Route::Metrics => "/metrics",
            Route::Form => "/",
            Route::Unmatched => "unmatched",
        }
    }
}

/// Per-route series resolved once at start-up, so counting a request does
/// not hash label values. Other status codes than 200 (rarer, and open-ended)
/// are looked up by label.
struct RouteMetrics {
    duration: [Histogram; Route::ALL.len()],
    ok: [IntCounter; Route::ALL.len()],
}

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    route_metrics: RouteMetrics,
}

impl AppState {
    pub fn new(config: Arc<Config>, registry: Arc<Registry>, metrics: Arc<Metrics>) -> AppState {
        let route_metrics = RouteMetrics {
            duration: Route::ALL.map(|r| metrics.request_duration_seconds.with_label_values(&[r.label()])),
            ok: Route::ALL.map(|r| metrics.requests_total.with_label_values(&[r.label(), "200"])),
        };
        AppState { config, registry, metrics, route_metrics }
    }

    fn count(&self, route: Route, status: StatusCode, seconds: f64) {
        let i = route as usize;
        if status == StatusCode::OK {
            self.route_metrics.ok[i].inc();
        } else {
            self.metrics.requests_total.with_label_values(&[route.label(), status.as_str()]).inc();
        }
        self.route_metrics.duration[i].observe(seconds);
    }
}

/// Keeps `riskserve_inflight_requests` right even if a request is cancelled.
struct InflightGuard<'a>(&'a Metrics);
impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight_requests.dec();
    }
}

/// A request body the routes can read: hyper's `Incoming` on a connection,
/// or any in-memory body in tests.
pub trait RequestBody: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send {}
impl<B> RequestBody for B where B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send {}

pub async fn handle<B: RequestBody>(state: Arc<AppState>, req: Request<B>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    state.metrics.inflight_requests.inc();
    let _inflight = InflightGuard(&state.metrics);
    let (route, result) = dispatch(&state, req).await;
    let response = result.unwrap_or_else(ApiError::into_response);
    state.count(route, response.status(), started.elapsed().as_secs_f64());
    response
}

type Handled = Result<Response<Full<Bytes>>, ApiError>;

/// Most path segments any route has; longer paths are unmatched.
const MAX_SEGMENTS: usize = 6;

async fn dispatch<B: RequestBody>(state: &AppState, req: Request<B>) -> (Route, Handled) {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let mut buf = [""; MAX_SEGMENTS];
    let mut n = 0;
    for segment in path.trim_matches('/').split('/') {
        if n == MAX_SEGMENTS {
            n += 1;
            break;
        }
        buf[n] = segment;
        n += 1;
    }
    let segments: &[&str] = buf.get(..n).unwrap_or(&[]);
    let method = &parts.method;
    match segments {
        ["v1", "models", name, "predict"] => {
            if method != Method::POST {
                return (Route::Predict, Err(ApiError::method_not_allowed("POST")));
            }
            (Route::Predict, predict(state, name, None, &parts.headers, body).await)
        }
        ["v1", "models", name, "versions", version, "predict"] => {
            let route = Route::PredictVersion;
            if method != Method::POST {
                return (route, Err(ApiError::method_not_allowed("POST")));
            }
            let Some(v) = crate::repository::layout::parse_version(version) else {
                return (route, Err(ApiError::not_found(format!("version `{version}` is not a positive integer"))));
            };
            (route, predict(state, name, Some(v), &parts.headers, body).await)
        }
        ["v1", "models"] => (Route::Models, get_only(method, || list_models(state))),
        ["v1", "models", name] => (Route::Model, get_only(method, || model_status(state, name))),
        ["v2", "health", "live"] => (Route::Live, get_only(method, || Ok(json_ok(br#"{"live":true}"#.to_vec())))),
        ["v2", "health", "ready"] => (Route::Ready, get_only(method, || ready(state))),
        ["metrics"] => (Route::Metrics, get_only(method, || Ok(metrics_text(state)))),
        [""] => (Route::Form, get_only(method, || Ok(super::form::page()))),
        _ => (Route::Unmatched, Err(ApiError::not_found(format!("no route for {path}")))),
    }
}

fn get_only(method: &Method, f: impl FnOnce() -> Handled) -> Handled {
    if method == Method::GET || method == Method::HEAD {
        f()
    } else {
        Err(ApiError::method_not_allowed("GET"))
    }
}

fn json_ok(body: Vec<u8>) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, body)
}

fn to_json<T: Serialize>(value: &T) -> Handled {
    serde_json::to_vec(value).map(json_ok).map_err(|e| ApiError::internal(format!("serialising response: {e}")))
}

/// Content type check: absent means JSON; anything but `application/json`
/// (parameters like `charset=utf-8` allowed) is 415.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("<non-ASCII>");
    let mime = text.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(text))
    }
}

/// Reads the body under the size limit and the request timeout.
async fn read_body<B: RequestBody>(state: &AppState, headers: &HeaderMap, body: B) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let body = Limited::new(body, limit);
    match tokio::time::timeout(state.config.request_timeout, body.collect()).await {
        Err(_) => Err(ApiError::request_timeout()),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Ok(Err(e)) => Err(ApiError::bad_request(format!("could not read the request body: {e}"))),
    }
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model_name: &'a str,
    model_version: u64,
    predictions: &'a [Prediction],
}

async fn predict<B: RequestBody>(
    state: &AppState,
    name: &str,
    pinned: Option<u64>,
    headers: &HeaderMap,
    body: B,
) -> Handled {
    check_content_type(headers)?;
    let body = read_body(state, headers, body).await?;
    let apps = request::validate(request::parse(&body)?, state.config.max_batch)?;
    let version = state.registry.resolve(name, pinned).map_err(lookup_error)?;

    let started = Instant::now();
    let predictions = if apps.len() <= INLINE_BATCH {
        score(&version, &apps)
    } else {
        let v = version.clone();
        tokio::task::spawn_blocking(move || score(&v, &apps))
            .await
            .map_err(|e| ApiError::internal(format!("scoring failed: {e}")))?
    };
    version.metrics.inference_duration_seconds.observe(started.elapsed().as_secs_f64());

    let body = serde_json::to_vec(&PredictResponse {
        model_name: &version.name,
        model_version: version.version,
        predictions: &predictions,
    })
    .map_err(|e| ApiError::internal(format!("serialising response: {e}")))?;
    let mut response = json_ok(body);
    if let Ok(v) = HeaderValue::from_str(&version.version_label) {
        response.headers_mut().insert("x-model-version", v);
    }
    Ok(response)
}

fn score(version: &LoadedVersion, apps: &[crate::model::input::LoanApplication]) -> Vec<Prediction> {
    let (mut high, mut low) = (0u64, 0u64);
    let out: Vec<Prediction> = apps
        .iter()
        .map(|a| {
            let p = version.scorer.predict(a);
            match p.decision {
                Decision::HighRisk => high += 1,
                Decision::LowRisk => low += 1,
            }
            p
        })
        .collect();
    version.metrics.predictions_high_risk.inc_by(high);
    version.metrics.predictions_low_risk.inc_by(low);
    out
}

fn lookup_error(e: LookupError) -> ApiError {
    match e {
        LookupError::UnknownModel { name, known } => {
            ApiError::not_found(format!("model `{name}` is not served; models: {}", known.join(", ")))
        }
        LookupError::VersionNotLoaded { name, version, loaded } => ApiError::not_found(format!(
            "version {version} of model `{name}` is not loaded; loaded versions: {}",
            loaded.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        )),
        LookupError::NoVersionAvailable { name, reasons } if reasons.is_empty() => {
            ApiError::unavailable(format!("model `{name}` has no version available"))
        }
        LookupError::NoVersionAvailable { name, reasons } => {
            ApiError::unavailable(format!("model `{name}` has no version available ({})", reasons.join("; ")))
        }
    }
}

fn list_models(state: &AppState) -> Handled {
    #[derive(Serialize)]
    struct Models<'a> {
        models: Vec<&'a crate::registry::ModelStatus>,
    }
    let snapshot = state.registry.snapshot();
    to_json(&Models { models: snapshot.status.values().collect() })
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
mod tests {
    //! The routing table without a socket: each test calls [`handle`] with a
    //! request value and inspects the response value.
    use super::*;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::registry::loader::{compile_models, Loader};
    use crate::repository::LocalDirectory;

    const ROW: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"car","grade":"B","annual_inc":52000,"revol_util":0.2,"emp_length":"9 years","dti":14.4,"delinq_2yrs":0,"home_ownership":"RENT"}"#;

    /// App state serving the tiny model as `m` version 3.
    fn app() -> (Arc<AppState>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalDirectory::new(dir.path());
        repo.publish("m", 3, &encode(&tiny_payload()).unwrap()).unwrap();
        let config = Arc::new(Config::with_models_dir(dir.path()));
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::new(metrics.clone(), config.reload_stale_after));
        Loader::new(config.clone(), Arc::new(repo), compile_models(Default::default()), registry.clone()).reconcile();
        (Arc::new(AppState::new(config, registry, metrics)), dir)
    }

    async fn call(state: &Arc<AppState>, method: &str, path: &str, body: &str) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        if !body.is_empty() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let response = handle(state.clone(), req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn predictions_name_the_version_in_body_and_header() {
        let (state, _dir) = app();
        let (status, headers, body) = call(&state, "POST", "/v1/models/m/predict", ROW).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-model-version"], "3");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["model_version"], 3);
        assert_eq!(json["predictions"][0]["probability_late"], 0.3, "grade B leaf");
        let (status, headers, _) = call(&state, "POST", "/v1/models/m/versions/3/predict", ROW).await;
        assert_eq!((status, &headers["x-model-version"]), (StatusCode::OK, &HeaderValue::from_static("3")));
    }

    #[tokio::test]
    async fn the_routing_table_answers_each_miss_with_the_right_status() {
        let (state, _dir) = app();
        for (method, path, body, want, needle) in [
            ("GET", "/v2/health/live", "", StatusCode::OK, "live"),
            ("GET", "/v2/health/ready", "", StatusCode::OK, "ready"),
            ("GET", "/v1/models", "", StatusCode::OK, "\"serving_version\":3"),
            ("GET", "/v1/models/m", "", StatusCode::OK, "\"state\":\"available\""),
            ("GET", "/v1/models/nope", "", StatusCode::NOT_FOUND, "models: m"),
            ("POST", "/v1/models/nope/predict", ROW, StatusCode::NOT_FOUND, "models: m"),
            ("POST", "/v1/models/m/versions/9/predict", ROW, StatusCode::NOT_FOUND, "loaded versions: 3"),
            ("POST", "/v1/models/m/versions/03/predict", ROW, StatusCode::NOT_FOUND, "not a positive integer"),
            ("GET", "/v1/models/m/predict", "", StatusCode::METHOD_NOT_ALLOWED, "POST"),
            ("POST", "/metrics", "", StatusCode::METHOD_NOT_ALLOWED, "GET"),
            ("GET", "/v1/models/m/predict/extra/segments/here", "", StatusCode::NOT_FOUND, "no route"),
            ("POST", "/v1/models/m/predict", "{", StatusCode::BAD_REQUEST, "malformed JSON"),
        ] {
            let (status, _, text) = call(&state, method, path, body).await;
            assert_eq!(status, want, "{method} {path}: {text}");
            assert!(text.contains(needle), "{method} {path}: {text}");
        }
    }
}
