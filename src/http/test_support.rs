//! Test support for the routes without a socket: app state serving the
//! tiny model as `m` version 3 (or a stand-in), and calls through
//! [`handle`](super::routes::handle) that return the response's status,
//! headers and body.

use super::routes::handle;
use super::state::AppState;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::format::encode;
use crate::model::test_support::tiny_payload;
use crate::model::{Decision, Prediction, Scorer};
use crate::registry::loader::{compile_models, Loader, ScorerFactory};
use crate::registry::Registry;
use crate::repository::LocalDirectory;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Request, StatusCode};
use std::sync::Arc;

pub(crate) const ROW: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"car","grade":"B","annual_inc":52000,"revol_util":0.2,"emp_length":"9 years","dti":14.4,"delinq_2yrs":0,"home_ownership":"RENT"}"#;

/// App state serving the tiny model as `m` version 3.
pub(crate) fn app() -> (Arc<AppState>, tempfile::TempDir) {
    app_with(compile_models(Default::default()), |_| {})
}

/// App state serving `m` version 3 through `scorers`, with `tweak`ed settings.
pub(crate) fn app_with(scorers: ScorerFactory, tweak: impl FnOnce(&mut Config)) -> (Arc<AppState>, tempfile::TempDir) {
    app_serving(tiny_payload(), scorers, tweak)
}

/// App state serving `payload` as `m` version 3.
pub(crate) fn app_serving(
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
    fields: crate::model::fields::Fields,
    meta: crate::model::format::ModelMeta,
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
        Ok(Arc::new(StandIn { fields, meta: tiny_payload().meta, probability, delay }) as Arc<dyn Scorer>)
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
