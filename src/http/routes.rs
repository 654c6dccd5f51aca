//! Routing and handlers. Every request goes through [`handle`], which counts
//! it (`riskserve_requests_total{route,code}`, duration, in-flight) under a
//! route *template* so label cardinality stays bounded.
//!
//! A prediction is routed here, its content type checked, and the rest
//! (admission, body, parse, version, scoring) is the shared path in
//! [`super::predict`].
//!
//! [`handle`] is generic over the request body, so the routing table,
//! statuses and bodies are tested by calling it with a request value (no
//! socket, no port); the socket-level tests are in `tests/integration`.

use super::admission::{Admission, AdmissionGauges};
use super::conn::Arrival;
use super::error::{json_response, ApiError};
use super::oip;
use super::predict::{run_prediction, with_version_header, ExplainQuery, PredictionRequest};
use super::request;
use super::response::PredictResponse;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::{LookupError, Registry, MAX_NAMES_LISTED};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use prometheus::{Histogram, IntCounter};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// The routes, each with a template label for metrics (bounded cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Predict,
    PredictVersion,
    Models,
    Model,
    Live,
    Ready,
    Metrics,
    Form,
    OipServer,
    OipModel,
    OipModelVersion,
    OipModelReady,
    OipModelVersionReady,
    OipInfer,
    OipInferVersion,
    OipRepositoryIndex,
    OipRepositoryLoad,
    OipRepositoryUnload,
    OpenApi,
    Unmatched,
}

impl Route {
    pub(super) const ALL: [Route; 20] = [
        Route::Predict,
        Route::PredictVersion,
        Route::Models,
        Route::Model,
        Route::Live,
        Route::Ready,
        Route::Metrics,
        Route::Form,
        Route::OipServer,
        Route::OipModel,
        Route::OipModelVersion,
        Route::OipModelReady,
        Route::OipModelVersionReady,
        Route::OipInfer,
        Route::OipInferVersion,
        Route::OipRepositoryIndex,
        Route::OipRepositoryLoad,
        Route::OipRepositoryUnload,
        Route::OpenApi,
        Route::Unmatched,
    ];

    /// The path template (OpenAPI syntax), also the metrics label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Route::Predict => "/v1/models/{name}/predict",
            Route::PredictVersion => "/v1/models/{name}/versions/{version}/predict",
            Route::Models => "/v1/models",
            Route::Model => "/v1/models/{name}",
            Route::Live => "/v2/health/live",
            Route::Ready => "/v2/health/ready",
            Route::Metrics => "/metrics",
            Route::Form => "/",
            Route::OipServer => "/v2",
            Route::OipModel => "/v2/models/{name}",
            Route::OipModelVersion => "/v2/models/{name}/versions/{version}",
            Route::OipModelReady => "/v2/models/{name}/ready",
            Route::OipModelVersionReady => "/v2/models/{name}/versions/{version}/ready",
            Route::OipInfer => "/v2/models/{name}/infer",
            Route::OipInferVersion => "/v2/models/{name}/versions/{version}/infer",
            Route::OipRepositoryIndex => "/v2/repository/index",
            Route::OipRepositoryLoad => "/v2/repository/models/{name}/load",
            Route::OipRepositoryUnload => "/v2/repository/models/{name}/unload",
            Route::OpenApi => "/openapi.json",
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
    pub(super) admission: Admission,
    /// Threads for big bodies and big batches.
    pub(super) workers: super::workers::Workers,
    /// The object-store sync's status, shown by `GET /v1/models` (`--sync-from`).
    pub sync: Option<Arc<crate::sync::SyncState>>,
}

impl AppState {
    pub fn new(config: Arc<Config>, registry: Arc<Registry>, metrics: Arc<Metrics>) -> AppState {
        let route_metrics = RouteMetrics {
            duration: Route::ALL.map(|r| metrics.request_duration_seconds.with_label_values(&[r.label()])),
            ok: Route::ALL.map(|r| metrics.requests_total.with_label_values(&[r.label(), "200"])),
        };
        let gauges =
            AdmissionGauges { admitted: metrics.requests_admitted.clone(), queued: metrics.requests_queued.clone() };
        let admission =
            Admission::new(config.max_inflight_requests, config.max_queued_requests, config.max_queue_wait, gauges);
        let workers = super::workers::Workers::new(std::thread::available_parallelism().map_or(1, usize::from));
        AppState { config, registry, metrics, route_metrics, admission, workers, sync: None }
    }

    /// Counts a shed request by its reason.
    pub(super) fn shed(&self, reason: &str) {
        self.metrics.requests_shed_total.with_label_values(&[reason]).inc();
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
    state.metrics.inflight_requests.inc();
    let _inflight = InflightGuard(&state.metrics);
    let (route, result) = dispatch(&state, req, arrival.0).await;
    if result.as_ref().is_err_and(ApiError::is_deadline_exceeded) {
        state.shed("deadline");
    }
    let response = result.unwrap_or_else(ApiError::into_response);
    state.count(route, response.status(), started.elapsed().as_secs_f64());
    response
}

pub(super) type Handled = Result<Response<Full<Bytes>>, ApiError>;

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

/// `text.split(separator as char)` for an ASCII separator, found byte by
/// byte: `str::split` with its char searcher costs about twice as much
/// (~300 instructions a request more for the path alone).
pub(super) fn split_at_byte(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    debug_assert!(separator.is_ascii());
    text.as_bytes().split(move |&b| b == separator).scan(0, move |from, piece| {
        // The separator is ASCII, so both ends are character boundaries.
        let part = &text[*from..*from + piece.len()];
        *from += piece.len() + 1;
        Some(part)
    })
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

/// A `{version}` path segment: a positive integer without leading zeros.
pub(super) fn pinned_version(version: &str) -> Result<u64, ApiError> {
    crate::repository::layout::parse_version(version)
        .ok_or_else(|| ApiError::not_found(format!("version `{version}` is not a positive integer")))
}

pub(super) fn get_only(method: &Method, f: impl FnOnce() -> Handled) -> Handled {
    if method == Method::GET || method == Method::HEAD {
        f()
    } else {
        Err(ApiError::method_not_allowed("GET"))
    }
}

pub(super) fn json_ok(body: Vec<u8>) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, body)
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Handled {
    serde_json::to_vec(value).map(json_ok).map_err(|e| ApiError::internal(format!("serialising response: {e}")))
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
    let scored = run_prediction(state, request, |body, decoder| Ok(((), request::decode(body, decoder)?))).await?;
    let version = &scored.version;
    let body = PredictResponse::of(version, &scored.predictions).to_json()?;
    Ok(with_version_header(json_ok(body), version))
}

pub(super) fn lookup_error(e: LookupError) -> ApiError {
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
pub(super) mod tests {
    //! The routing table without a socket: each test calls [`handle`] with a
    //! request value and inspects the response value.
    use super::*;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::model::{Decision, Prediction, Scorer};
    use crate::registry::loader::{compile_models, Loader, ScorerFactory};
    use crate::repository::LocalDirectory;
    use http_body_util::BodyExt;

    pub(crate) const ROW: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"car","grade":"B","annual_inc":52000,"revol_util":0.2,"emp_length":"9 years","dti":14.4,"delinq_2yrs":0,"home_ownership":"RENT"}"#;

    proptest::proptest! {
        #[test]
        fn split_at_byte_is_str_split(text in "[a/&=é\u{3000}]{0,12}", separator in proptest::sample::select(vec![b'/', b'&', b'='])) {
            let want: Vec<&str> = text.split(separator as char).collect();
            let got: Vec<&str> = split_at_byte(&text, separator).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn content_type_is_application_json_with_any_parameters() {
        let check = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_bytes(value).unwrap());
            check_content_type(&headers).map_err(|e| (e.status.as_u16(), e.message))
        };
        for ok in [
            &b"application/json"[..],
            b"Application/JSON",
            b" application/json ; charset=utf-8",
            b"application/json;",
            b"\tapplication/json\t",
        ] {
            assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        for (refused, named) in [
            (&b"text/plain"[..], "text/plain"),
            (b"application/json-seq", "application/json-seq"),
            (b"application/ json", "application/ json"),
            (b"", ""),
            (b"application/json; charset=\xe9", "<non-ASCII>"),
        ] {
            let (status, message) = check(refused).unwrap_err();
            assert_eq!(status, 415, "{message}");
            assert!(message.contains(named), "{message}");
        }
        assert_eq!(check_content_type(&HeaderMap::new()).unwrap_err().status.as_u16(), 415);
    }

    #[test]
    fn path_segments_are_what_splitting_on_slashes_gives() {
        /// The straightforward definition the byte scan replaces.
        fn split(path: &str) -> Vec<&str> {
            let all: Vec<&str> = path.trim_matches('/').split('/').collect();
            if all.len() > MAX_SEGMENTS {
                Vec::new()
            } else {
                all
            }
        }
        for path in [
            "/",
            "",
            "//",
            "/v1/models/m/predict",
            "v1/models/m/predict/",
            "///v1//models///",
            "/a/b/c/d/e/f",
            "/a/b/c/d/e/f/g",
            "/a/b/c/d/e/f/",
            "/é/ü//ß/",
            "/metrics",
            "/openapi.json",
            "/v1/models/m/versions/3/predict",
        ] {
            let mut buf = [""; MAX_SEGMENTS];
            assert_eq!(path_segments(path, &mut buf), split(path).as_slice(), "{path:?}");
        }
    }

    /// App state serving the tiny model as `m` version 3.
    pub(crate) fn app() -> (Arc<AppState>, tempfile::TempDir) {
        app_with(compile_models(Default::default()), |_| {})
    }

    /// App state serving `m` version 3 through `scorers`, with `tweak`ed settings.
    pub(crate) fn app_with(
        scorers: ScorerFactory,
        tweak: impl FnOnce(&mut Config),
    ) -> (Arc<AppState>, tempfile::TempDir) {
        app_serving(tiny_payload(), scorers, tweak)
    }

    /// App state serving `payload` as `m` version 3.
    fn app_serving(
        payload: crate::model::format::ModelPayload,
        scorers: ScorerFactory,
        tweak: impl FnOnce(&mut Config),
    ) -> (Arc<AppState>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalDirectory::new(dir.path());
        repo.publish("m", 3, &encode(&payload).unwrap()).unwrap();
        let mut config = Config::with_models_dir(dir.path());
        tweak(&mut config);
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::new(metrics.clone(), config.reload_stale_after));
        Loader::new(config.clone(), Arc::new(repo), scorers, registry.clone()).reconcile();
        (Arc::new(AppState::new(config, registry, metrics)), dir)
    }

    /// A stand-in model: every probability is `probability`, after `delay`.
    #[derive(Debug)]
    struct StandIn {
        meta: crate::model::format::ModelMeta,
        fields: crate::model::fields::Fields,
        probability: f64,
        delay: std::time::Duration,
    }

    impl Scorer for StandIn {
        fn fields(&self) -> &crate::model::fields::Fields {
            &self.fields
        }
        fn predict(&self, _: crate::model::row::Row<'_>) -> Prediction {
            std::thread::sleep(self.delay);
            Prediction { probability_late: self.probability, decision: Decision::LowRisk }
        }
        fn meta(&self) -> &crate::model::format::ModelMeta {
            &self.meta
        }
        fn digest(&self) -> &str {
            "stand-in"
        }
    }

    pub(crate) fn stand_in(probability: f64, delay: std::time::Duration) -> ScorerFactory {
        Arc::new(move |_, _, _| {
            let fields = crate::model::test_support::loan_fields();
            Ok(Arc::new(StandIn { meta: tiny_payload().meta, fields, probability, delay }) as Arc<dyn Scorer>)
        })
    }

    pub(crate) fn batch(n: usize) -> String {
        format!("{{\"instances\":[{}]}}", vec![ROW; n].join(","))
    }

    pub(crate) async fn call(
        state: &Arc<AppState>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        if !body.is_empty() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        send(state, req, body).await
    }

    /// Calls `method path` and checks the status and a piece of the body.
    pub(crate) async fn expect(
        state: &Arc<AppState>,
        method: &str,
        path: &str,
        body: &str,
        want: StatusCode,
        needle: &str,
    ) {
        let (status, _, text) = call(state, method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {text}");
        assert!(text.contains(needle), "{method} {path}: {text}");
    }

    pub(crate) async fn send(
        state: &Arc<AppState>,
        req: hyper::http::request::Builder,
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
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
            ("GET", "/v1/models/m", "", StatusCode::OK, r#""categories":["A","B"]"#),
            ("GET", "/v1/models/nope", "", StatusCode::NOT_FOUND, "models: m"),
            ("POST", "/v1/models/nope/predict", ROW, StatusCode::NOT_FOUND, "models: m"),
            ("POST", "/v1/models/m/versions/9/predict", ROW, StatusCode::NOT_FOUND, "loaded versions: 3"),
            ("POST", "/v1/models/m/versions/03/predict", ROW, StatusCode::NOT_FOUND, "not a positive integer"),
            ("GET", "/v1/models/m/predict", "", StatusCode::METHOD_NOT_ALLOWED, "POST"),
            ("POST", "/metrics", "", StatusCode::METHOD_NOT_ALLOWED, "GET"),
            ("GET", "/v1/models/m/predict/extra/segments/here", "", StatusCode::NOT_FOUND, "no route"),
            ("POST", "/v1/models/m/predict", "{", StatusCode::BAD_REQUEST, "malformed JSON"),
        ] {
            expect(&state, method, path, body, want, needle).await;
        }
    }

    #[tokio::test]
    async fn a_post_without_content_type_is_415() {
        let (state, _dir) = app();
        let req = Request::builder().method("POST").uri("/v1/models/m/predict");
        let (status, headers, body) = send(&state, req, ROW).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert!(body.contains("no content type") && body.contains("Content-Type: application/json"), "{body}");
    }

    #[tokio::test]
    async fn a_non_finite_probability_is_a_500_counted_never_an_answer() {
        for probability in [f64::NAN, f64::INFINITY] {
            let (state, _dir) = app_with(stand_in(probability, std::time::Duration::ZERO), |_| {});
            let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", ROW).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["type"], "inference_error");
            assert!(json["error"].as_str().unwrap().contains("non-finite probability"), "{body}");
            let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", &batch(100)).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
            assert!(body.contains("instances[0]"), "{body}");
            let text = String::from_utf8(state.metrics.render()).unwrap();
            assert!(text.contains(r#"riskserve_inference_errors_total{model="m",version="3"} 2"#), "{text}");
            let scored = text.lines().filter(|l| l.starts_with("riskserve_predictions_total{"));
            assert!(scored.clone().count() > 0 && scored.clone().all(|l| l.ends_with(" 0")), "none scored: {text}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scoring_past_the_deadline_is_503_with_retry_after() {
        let slow = stand_in(0.1, std::time::Duration::from_millis(2));
        let (state, _dir) = app_with(slow, |c| c.request_timeout = std::time::Duration::from_millis(100));
        let started = Instant::now();
        // 500 rows × 2 ms = 1 s of scoring: on a blocking thread, abandoned at 100 ms.
        let (status, headers, body) = call(&state, "POST", "/v1/models/m/predict", &batch(500)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(started.elapsed() < std::time::Duration::from_millis(900), "{:?}", started.elapsed());
        assert_eq!(headers["retry-after"], "1");
        assert!(body.contains("\"type\":\"deadline_exceeded\""), "{body}");
        // Inline (≤ 64 rows) the scoring loop checks the deadline itself.
        let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", &batch(64)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let text = String::from_utf8(state.metrics.render()).unwrap();
        assert!(text.contains(r#"riskserve_requests_shed_total{reason="deadline"} 2"#), "{text}");
    }

    #[tokio::test]
    async fn predictions_carry_ranked_reasons_unless_explain_is_false() {
        let (state, _dir) = app();
        let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", ROW).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let p = &json["predictions"][0];
        let reasons = p["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 1, "only grade raised the risk: {body}");
        assert_eq!(reasons[0]["feature"], "grade", "{body}");
        assert_eq!(reasons[0]["value"], "B");
        assert_eq!(reasons[0]["imputed"], false);
        let contributions: Vec<f64> = reasons.iter().map(|r| r["contribution"].as_f64().unwrap()).collect();
        assert!(contributions.windows(2).all(|w| w[0] >= w[1]), "{body}");
        assert!(p.get("band").is_none(), "no bands configured: {body}");
        // The metadata names the method and the base value they start from.
        let (_, _, meta) = call(&state, "GET", "/v1/models/m", "").await;
        let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        let explain = &meta["versions"][0]["explain"];
        assert_eq!(explain["method"], "saabas", "{meta}");
        let base = explain["base_value"].as_f64().unwrap();
        let p_late = p["probability_late"].as_f64().unwrap();
        // Every feature's contribution: they add up to the probability.
        let (_, _, all) = call(&state, "POST", "/v1/models/m/predict?reasons=10", ROW).await;
        let all: serde_json::Value = serde_json::from_str(&all).unwrap();
        let sum: f64 = all["predictions"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["contribution"].as_f64().unwrap())
            .sum();
        assert!((base + sum - p_late).abs() < 1e-9, "{base} + {sum} vs {p_late}");

        for (query, want) in [
            ("?explain=false", None),
            ("?reasons=2", Some(1)),
            ("?reasons=0", Some(0)),
            ("?explain=true&reasons=1", Some(1)),
        ] {
            let path = format!("/v1/models/m/versions/3/predict{query}");
            let (status, _, body) = call(&state, "POST", &path, &batch(2)).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            for p in json["predictions"].as_array().unwrap() {
                assert_eq!(p.get("reasons").map(|r| r.as_array().unwrap().len()), want, "{query}: {body}");
                assert_eq!(p["decision"], "high_risk", "{body}");
            }
        }
        for (query, needle) in
            [("?reasons=11", "`reasons`"), ("?reasons=-1", "`reasons`"), ("?explain=maybe", "`explain`")]
        {
            let (status, _, body) = call(&state, "POST", &format!("/v1/models/m/predict{query}"), ROW).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert!(body.contains(needle), "{query}: {body}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_big_batch_split_across_the_pool_answers_every_row_in_order() {
        let (state, _dir) = app();
        assert!(state.workers.threads() >= 1);
        let other = ROW.replace("\"B\"", "\"A\"");
        // 1,000 rows: grade A where i % 7 == 3 (0.02), grade B elsewhere (0.3).
        let rows: Vec<&str> = (0..1000).map(|i| if i % 7 == 3 { other.as_str() } else { ROW }).collect();
        let body = format!("{{\"instances\":[{}]}}", rows.join(","));
        let (status, _, text) = call(&state, "POST", "/v1/models/m/predict?explain=false", &body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let predictions = json["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 1000);
        for (i, p) in predictions.iter().enumerate() {
            let want = if i % 7 == 3 { 0.02 } else { 0.3 };
            assert_eq!(p["probability_late"], want, "row {i}");
        }
    }

    #[tokio::test]
    async fn a_model_with_bands_names_each_predictions_band() {
        let mut payload = tiny_payload();
        payload.meta.decision.bands = Some(crate::model::format::Bands {
            names: vec!["approve".into(), "review".into(), "decline".into()],
            cutoffs: vec![0.01, 0.1],
        });
        let (state, _dir) = app_serving(payload, compile_models(Default::default()), |_| {});
        let other = ROW.replace("\"B\"", "\"A\"");
        let body = format!("{{\"instances\":[{ROW},{other}]}}");
        let (status, _, text) = call(&state, "POST", "/v1/models/m/predict?explain=false", &body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["predictions"][0]["band"], "decline", "0.3: {text}");
        assert_eq!(json["predictions"][1]["band"], "review", "0.02: {text}");
        assert_eq!(json["predictions"][1]["decision"], "low_risk", "{text}");
    }
}
