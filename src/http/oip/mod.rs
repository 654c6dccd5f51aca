//! The Open Inference Protocol (KServe V2, Triton's HTTP/REST API): server
//! and model metadata, model readiness, inference, and the model-repository
//! extension's index. What a Triton, KServe or MLServer client expects, over
//! the same registry and prediction path as `/v1`.
//!
//! - `GET /v2` — server metadata (`name`, `version`, `extensions`).
//! - `GET /v2/models/{name}[/versions/{v}]` — model metadata: the ten
//!   feature tensors in, `probability_late` (FP64) and `decision` (BYTES) out.
//! - `GET /v2/models/{name}[/versions/{v}]/ready` — 200 when it can answer.
//! - `POST /v2/models/{name}[/versions/{v}]/infer` — [`tensor`] decodes the
//!   request (JSON, or JSON + binary tensors) into applications through the
//!   same field rules as `/v1`, so both answer bit-identically; scoring,
//!   admission, limits, deadline and metrics are the shared
//!   `predict::run_prediction`.
//! - `POST /v2/repository/index` — every version the source lists, with its
//!   state; `.../load` and `.../unload` are refused (400): the model
//!   directory (or store) is the source of truth.
//!
//! Errors are `{"error": "..."}` (plus `type` and `fields`) with a 4xx status
//! for anything the client can fix, as the protocol asks.

pub mod binding;
pub mod tensor;

use super::body::{read_body, RequestBody};
use super::error::{lookup_error, ApiError};
use super::predict::{run_prediction, with_version_header, ExplainQuery, PredictionRequest};
use super::reply::{get_only, json_ok, to_json, Handled};
use super::route::{pinned_version, Route};
use super::state::AppState;
use crate::registry::{LoadedVersion, VersionState};
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Extensions named in the server metadata.
pub const EXTENSIONS: [&str; 2] = ["model_repository", "binary_tensor_data"];

/// The header that splits a binary-extension body into JSON and tensor bytes.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Largest repository-index request body (`{"ready": true}` needs 15 bytes).
const INDEX_BODY_LIMIT: usize = 4096;

/// One OIP call, with its path parameters as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    Server,
    Model { name: &'a str, version: Option<&'a str> },
    Ready { name: &'a str, version: Option<&'a str> },
    Infer { name: &'a str, version: Option<&'a str> },
    Index,
    Load { name: &'a str },
    Unload { name: &'a str },
}

/// The route of a `/v2/...` path (health aside, matched before), if any.
pub(super) fn route<'a>(segments: &[&'a str]) -> Option<(Route, Call<'a>)> {
    Some(match *segments {
        ["v2"] => (Route::OipServer, Call::Server),
        ["v2", "models", name] => (Route::OipModel, Call::Model { name, version: None }),
        ["v2", "models", name, "versions", v] => (Route::OipModelVersion, Call::Model { name, version: Some(v) }),
        ["v2", "models", name, "ready"] => (Route::OipModelReady, Call::Ready { name, version: None }),
        ["v2", "models", name, "versions", v, "ready"] => {
            (Route::OipModelVersionReady, Call::Ready { name, version: Some(v) })
        }
        ["v2", "models", name, "infer"] => (Route::OipInfer, Call::Infer { name, version: None }),
        ["v2", "models", name, "versions", v, "infer"] => {
            (Route::OipInferVersion, Call::Infer { name, version: Some(v) })
        }
        ["v2", "repository", "index"] => (Route::OipRepositoryIndex, Call::Index),
        ["v2", "repository", "models", name, "load"] => (Route::OipRepositoryLoad, Call::Load { name }),
        ["v2", "repository", "models", name, "unload"] => (Route::OipRepositoryUnload, Call::Unload { name }),
        _ => return None,
    })
}

/// Answers one OIP call.
pub(super) async fn handle<B: RequestBody>(
    state: &AppState,
    call: Call<'_>,
    method: &Method,
    headers: &HeaderMap,
    body: B,
    deadline: tokio::time::Instant,
) -> Handled {
    let pinned = |version: Option<&str>| version.map(pinned_version).transpose();
    match call {
        Call::Server => get_only(method, server_metadata),
        Call::Model { name, version } => get_only(method, || model_metadata(state, name, pinned(version)?)),
        Call::Ready { name, version } => get_only(method, || model_ready(state, name, pinned(version)?)),
        Call::Infer { name, version } => {
            post_only(method)?;
            infer(state, name, pinned(version)?, headers, body, deadline).await
        }
        Call::Index => {
            post_only(method)?;
            repository_index(state, headers, body, deadline).await
        }
        Call::Load { name } | Call::Unload { name } => {
            post_only(method)?;
            let action = if matches!(call, Call::Load { .. }) { "loaded" } else { "unloaded" };
            // 400, as Triton answers when its model control mode is not
            // `explicit`: tritonclient and MLServer's client raise it with
            // this message. Not 403 (it is no permission problem: no
            // credential would help) and not 501 (a 5xx reads as a server
            // fault and invites retries).
            Err(ApiError::bad_request(format!(
                "model `{name}` cannot be {action} through the API: riskserve serves what the model directory \
                 (or store) holds, which is the source of truth; publish or remove a version there and the \
                 watcher picks it up"
            )))
        }
    }
}

fn post_only(method: &Method) -> Result<(), ApiError> {
    if method == Method::POST {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed("POST"))
    }
}

/// `$metadata_server_response`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

impl ServerMetadata {
    /// This server's: the same over HTTP and gRPC.
    pub fn of_this_server() -> ServerMetadata {
        ServerMetadata {
            name: "riskserve".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }
    }
}

fn server_metadata() -> Handled {
    to_json(&ServerMetadata::of_this_server())
}

/// `$metadata_tensor`: `shape` `[-1]` is a batch of any size.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

impl TensorMetadata {
    fn batch(name: &str, datatype: &str) -> TensorMetadata {
        TensorMetadata { name: name.into(), datatype: datatype.into(), shape: vec![-1] }
    }
}

/// `$metadata_model_response`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    /// The loaded versions, ascending, as strings (as the protocol has them).
    pub versions: Vec<String>,
    /// `riskserve_<algorithm>`, e.g. `riskserve_random_forest`.
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// The input tensors a version takes: one per feature of its schema,
/// numbers as FP64, categories as BYTES (other numeric datatypes are
/// accepted too).
pub fn input_metadata(fields: &crate::model::fields::Fields) -> Vec<TensorMetadata> {
    fields
        .features()
        .iter()
        .map(|f| TensorMetadata::batch(&f.name, if f.is_number() { "FP64" } else { "BYTES" }))
        .collect()
}

/// The output tensors.
pub fn output_metadata() -> Vec<TensorMetadata> {
    tensor::Output::ALL.iter().map(|o| TensorMetadata::batch(o.name(), o.datatype())).collect()
}

impl ModelMetadata {
    /// The metadata of `name` (or its pinned version), with the version
    /// that answered: the same over HTTP and gRPC.
    pub(crate) fn of(
        state: &AppState,
        name: &str,
        pinned: Option<u64>,
    ) -> Result<(ModelMetadata, Arc<LoadedVersion>), ApiError> {
        let version = state.registry.resolve(name, pinned).map_err(lookup_error)?;
        let snapshot = state.registry.snapshot();
        let versions = snapshot.models.get(name).map(|m| m.versions.keys().map(u64::to_string).collect());
        let metadata = ModelMetadata {
            name: version.name.clone(),
            versions: versions.unwrap_or_else(|| vec![version.version_label.clone()]),
            platform: format!("riskserve_{}", version.scorer.meta().algorithm),
            inputs: input_metadata(version.scorer.fields()),
            outputs: output_metadata(),
        };
        Ok((metadata, version))
    }
}

fn model_metadata(state: &AppState, name: &str, pinned: Option<u64>) -> Handled {
    let (metadata, version) = ModelMetadata::of(state, name, pinned)?;
    Ok(with_version_header(to_json(&metadata)?, &version))
}

/// 200 when the model (or the pinned version) can answer; otherwise the
/// lookup's error (404 unknown, 503 nothing loaded): a 4xx or 5xx both read
/// as "not ready" to clients, which look at the status only.
fn model_ready(state: &AppState, name: &str, pinned: Option<u64>) -> Handled {
    let version = state.registry.resolve(name, pinned).map_err(lookup_error)?;
    #[derive(Serialize)]
    struct Ready<'a> {
        name: &'a str,
        version: &'a str,
        ready: bool,
    }
    let body = to_json(&Ready { name: &version.name, version: &version.version_label, ready: true })?;
    Ok(with_version_header(body, &version))
}

/// Accepts the content types OIP clients send on infer: none (tritonclient
/// sends none), `application/json`, or `application/octet-stream` (the
/// binary extension). Compressed bodies are refused with a clear 415.
fn check_infer_content(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(encoding) = headers.get(CONTENT_ENCODING) {
        let text = encoding.to_str().unwrap_or("<non-ASCII>");
        if !text.trim().eq_ignore_ascii_case("identity") {
            return Err(ApiError {
                message: format!("content encoding `{text}` is not supported; send an uncompressed body"),
                ..ApiError::unsupported_media_type(text)
            });
        }
    }
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("<non-ASCII>");
    let mime = text.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") || mime.eq_ignore_ascii_case("application/octet-stream") {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(text))
    }
}

/// The `Inference-Header-Content-Length` header, if sent.
fn header_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "the Inference-Header-Content-Length header must be a byte count, got {:?}",
            String::from_utf8_lossy(value.as_bytes())
        ))
    })
}

async fn infer<B: RequestBody>(
    state: &AppState,
    name: &str,
    pinned: Option<u64>,
    headers: &HeaderMap,
    body: B,
    deadline: tokio::time::Instant,
) -> Handled {
    check_infer_content(headers)?;
    let json_length = header_length(headers)?;
    let request = PredictionRequest { name, pinned, explain: ExplainQuery::NONE, headers, body, deadline };
    let scored = run_prediction(
        state,
        request,
        move |body, decoder| tensor::decode(body, json_length, decoder),
        tensor::Wanted::explain,
    )
    .await?;
    let version = &scored.version;
    let fields = version.scorer.fields();
    let answer = tensor::Answer {
        wanted: &scored.request,
        model_name: &version.name,
        model_version: &version.version_label,
        answers: &scored.predictions,
        fields,
    };
    let encoded = tensor::encode(&answer).map_err(|e| ApiError::internal(format!("serialising response: {e}")))?;
    let mut response = json_ok(encoded.body);
    if let Some(json_length) = encoded.json_length {
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(HEADER_LENGTH, HeaderValue::from(json_length));
    }
    Ok(with_version_header(response, version))
}

/// `$repository_index_request`: no body or `{}` means all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
    /// Triton's gRPC field; accepted for clients that send it over HTTP.
    #[serde(default, rename = "repository_name")]
    _repository_name: Option<String>,
}

/// One `$repository_index_response` entry.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `READY`, `LOADING` or `UNAVAILABLE` (Triton's words).
    pub state: String,
    pub reason: String,
}

async fn repository_index<B: RequestBody>(
    state: &AppState,
    headers: &HeaderMap,
    body: B,
    deadline: tokio::time::Instant,
) -> Handled {
    check_infer_content(headers)?;
    let body = read_body(INDEX_BODY_LIMIT, body, deadline).await?;
    // No body means all; anything else must be a JSON object (whitespace
    // alone is not JSON).
    let request = if body.is_empty() {
        IndexRequest::default()
    } else if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // serde reads a struct from an array too (`[]`, `[true]`): only an
        // object is a request.
        return Err(ApiError::malformed_json("repository index request: send a JSON object, {\"ready\": bool}"));
    } else {
        serde_json::from_slice::<IndexRequest>(&body)
            .map_err(|e| ApiError::malformed_json(format!("repository index request: {e}; send {{\"ready\": bool}}")))?
    };
    to_json(&index_entries(state, request.ready))
}

/// The repository index: every version the source lists, with its state
/// (only the ready ones with `ready_only`); the same over HTTP and gRPC.
pub(crate) fn index_entries(state: &AppState, ready_only: bool) -> Vec<IndexEntry> {
    let snapshot = state.registry.snapshot();
    let mut entries = Vec::new();
    for (name, status) in &snapshot.status {
        if status.versions.is_empty() && !ready_only {
            let reason = status.warning.clone().unwrap_or_else(|| "no version in the model source".into());
            entries.push(IndexEntry { name: name.clone(), version: None, state: "UNAVAILABLE".into(), reason });
        }
        for v in status.versions.iter().rev() {
            let state = match v.state {
                VersionState::Available => "READY",
                VersionState::Loading => "LOADING",
                VersionState::Failed | VersionState::NotLoaded => "UNAVAILABLE",
            };
            if ready_only && state != "READY" {
                continue;
            }
            let reason = v.reason.clone().unwrap_or_else(|| match v.state {
                VersionState::NotLoaded => "not selected by the version policy".into(),
                _ => String::new(),
            });
            entries.push(IndexEntry {
                name: name.clone(),
                version: Some(v.version.to_string()),
                state: state.into(),
                reason,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    //! The OIP routes without a socket, over the tiny model served as `m` v3.
    use super::super::test_support::{app, app_with, call, expect, send, stand_in, ROW};
    use hyper::{Request, StatusCode};
    use serde_json::{json, Value};

    /// The tensors of `rows` (`/v1` application objects).
    fn infer_body(rows: &[Value]) -> Value {
        let inputs: Vec<Value> = crate::model::input::FEATURES
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let datatype = if i < crate::model::input::NUMERIC_FEATURES.len() { "FP64" } else { "BYTES" };
                json!({"name": f, "datatype": datatype, "shape": [rows.len()], "data": rows.iter().map(|r| r[f].clone()).collect::<Vec<_>>()})
            })
            .collect();
        json!({"id": "req-1", "inputs": inputs})
    }

    fn rows() -> Vec<Value> {
        let row: Value = serde_json::from_str(ROW).unwrap();
        let mut other = row.clone();
        other["grade"] = json!("A");
        other["dti"] = json!(null);
        let mut third = row.clone();
        third["purpose"] = json!("  unseen category ");
        vec![row, other, third]
    }

    #[tokio::test]
    async fn infer_answers_bit_identically_to_v1() {
        let (state, _dir) = app();
        let rows = rows();
        let (status, headers, body) =
            call(&state, "POST", "/v1/models/m/predict", &json!({"instances": rows}).to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v1: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(headers["x-model-version"], "3");
        let (status, headers, body) = call(&state, "POST", "/v2/models/m/infer", &infer_body(&rows).to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-model-version"], "3");
        let v2: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((&v2["model_name"], &v2["model_version"], &v2["id"]), (&json!("m"), &json!("3"), &json!("req-1")));
        let outputs = v2["outputs"].as_array().unwrap();
        assert_eq!(outputs[0]["name"], "probability_late");
        assert_eq!(outputs[0]["shape"], json!([3]));
        for (i, p) in v1["predictions"].as_array().unwrap().iter().enumerate() {
            let (a, b) = (p["probability_late"].as_f64().unwrap(), outputs[0]["data"][i].as_f64().unwrap());
            assert_eq!(a.to_bits(), b.to_bits(), "row {i}");
            assert_eq!(p["decision"], outputs[1]["data"][i], "row {i}");
        }
        let (status, _, body) =
            call(&state, "POST", "/v2/models/m/versions/3/infer", &infer_body(&rows).to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let text = String::from_utf8(state.metrics.render()).unwrap();
        assert!(
            text.contains(r#"riskserve_requests_total{code="200",protocol="http",route="/v2/models/{name}/infer"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"route="/v2/models/{name}/versions/{version}/infer"} 1"#), "{text}");
    }

    #[tokio::test]
    async fn the_reasons_output_carries_the_v1_reason_codes() {
        let (state, _dir) = app();
        let rows = rows();
        let (status, _, body) =
            call(&state, "POST", "/v1/models/m/predict", &json!({"instances": rows}).to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v1: Value = serde_json::from_str(&body).unwrap();
        let mut request = infer_body(&rows);
        request["outputs"] = json!([{"name": "reasons"}, {"name": "probability_late"}]);
        let (status, _, body) = call(&state, "POST", "/v2/models/m/infer", &request.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v2: Value = serde_json::from_str(&body).unwrap();
        let reasons = &v2["outputs"][0];
        assert_eq!(
            (&reasons["name"], &reasons["datatype"], &reasons["shape"]),
            (&json!("reasons"), &json!("BYTES"), &json!([3]))
        );
        let mut any = false;
        for (i, p) in v1["predictions"].as_array().unwrap().iter().enumerate() {
            let shown: Value = serde_json::from_str(reasons["data"][i].as_str().unwrap()).unwrap();
            assert_eq!(shown, p["reasons"], "row {i}");
            any |= !shown.as_array().unwrap().is_empty();
        }
        assert!(any, "some row has reasons: {v1}");
    }

    #[tokio::test]
    async fn infer_takes_no_content_type_and_answers_binary_when_asked() {
        let (state, _dir) = app();
        let mut body = infer_body(&rows());
        body["outputs"] = json!([{"name": "decision", "parameters": {"binary_data": true}}]);
        let req = Request::builder().method("POST").uri("/v2/models/m/infer");
        let (status, headers, text) = send(&state, req, &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(headers["content-type"], "application/octet-stream");
        let n: usize = headers["inference-header-content-length"].to_str().unwrap().parse().unwrap();
        let json: Value = serde_json::from_str(&text[..n]).unwrap();
        assert_eq!(json["outputs"].as_array().unwrap().len(), 1, "only the selected output");
        let size = json["outputs"][0]["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        assert_eq!(size, text.len() - n);
        assert!((3 * (4 + 8)..=3 * (4 + 9)).contains(&size), "three length-prefixed decisions: {size}");
        assert!(text[n..].contains("_risk"));

        for (content_type, encoding, needle) in [
            ("text/plain", "identity", "content type `text/plain` is not supported"),
            ("application/json", "gzip", "content encoding `gzip` is not supported"),
        ] {
            let req = Request::builder()
                .method("POST")
                .uri("/v2/models/m/infer")
                .header("content-type", content_type)
                .header("content-encoding", encoding);
            let (status, _, text) = send(&state, req, &body.to_string()).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
            assert!(text.contains(needle), "{text}");
        }
        let req =
            Request::builder().method("POST").uri("/v2/models/m/infer").header("inference-header-content-length", "x");
        let (status, _, text) = send(&state, req, &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    }

    #[tokio::test]
    async fn metadata_readiness_and_the_repository_answer() {
        let (state, _dir) = app();
        for (method, path, body, want, needle) in [
            ("GET", "/v2", "", StatusCode::OK, r#""extensions":["model_repository","binary_tensor_data"]"#),
            ("GET", "/v2/models/m", "", StatusCode::OK, r#""versions":["3"]"#),
            ("GET", "/v2/models/m/versions/3", "", StatusCode::OK, r#"{"name":"dti","datatype":"FP64","shape":[-1]}"#),
            (
                "GET",
                "/v2/models/m",
                "",
                StatusCode::OK,
                r#""outputs":[{"name":"probability_late","datatype":"FP64","shape":[-1]},{"name":"decision","datatype":"BYTES","shape":[-1]}]"#,
            ),
            ("GET", "/v2/models/m/versions/4", "", StatusCode::NOT_FOUND, "loaded versions: 3"),
            ("GET", "/v2/models/nope", "", StatusCode::NOT_FOUND, "models: m"),
            ("GET", "/v2/models/m/ready", "", StatusCode::OK, r#"{"name":"m","version":"3","ready":true}"#),
            ("GET", "/v2/models/m/versions/3/ready", "", StatusCode::OK, "\"ready\":true"),
            ("GET", "/v2/models/m/versions/03/ready", "", StatusCode::NOT_FOUND, "not a positive integer"),
            ("GET", "/v2/models/nope/ready", "", StatusCode::NOT_FOUND, "not served"),
            (
                "POST",
                "/v2/repository/index",
                "",
                StatusCode::OK,
                r#"[{"name":"m","version":"3","state":"READY","reason":""}]"#,
            ),
            ("POST", "/v2/repository/index", "{}", StatusCode::OK, r#""state":"READY""#),
            ("POST", "/v2/repository/index", r#"{"ready":true}"#, StatusCode::OK, r#""state":"READY""#),
            ("POST", "/v2/repository/index", r#"{"ready":1}"#, StatusCode::BAD_REQUEST, "send {\\\"ready\\\": bool}"),
            ("POST", "/v2/repository/index", r#"{"readdy":true}"#, StatusCode::BAD_REQUEST, "unknown field"),
            ("POST", "/v2/repository/index", "[]", StatusCode::BAD_REQUEST, "send a JSON object"),
            ("POST", "/v2/repository/index", " [true]", StatusCode::BAD_REQUEST, "send a JSON object"),
            // Whitespace alone is not JSON (schemathesis sent a tab).
            ("POST", "/v2/repository/index", "\t", StatusCode::BAD_REQUEST, "send a JSON object"),
            ("GET", "/v2/repository/index", "", StatusCode::METHOD_NOT_ALLOWED, "POST"),
            ("POST", "/v2/repository/models/m/load", "", StatusCode::BAD_REQUEST, "source of truth"),
            ("POST", "/v2/repository/models/m/unload", "{}", StatusCode::BAD_REQUEST, "cannot be unloaded"),
            ("GET", "/v2/models/m/infer", "", StatusCode::METHOD_NOT_ALLOWED, "POST"),
            ("POST", "/v2/models/m", "", StatusCode::METHOD_NOT_ALLOWED, "GET"),
            ("POST", "/v2/models/m/infer", "{", StatusCode::BAD_REQUEST, "malformed JSON"),
            ("POST", "/v2/models/nope/infer", &infer_body(&rows()).to_string(), StatusCode::NOT_FOUND, "not served"),
            ("GET", "/v2/models/m/versions/3/extra/x", "", StatusCode::NOT_FOUND, "no route"),
            ("GET", "/openapi.json", "", StatusCode::OK, r#""openapi":"3.1.0""#),
            ("GET", "/openapi.json", "", StatusCode::OK, r#""schema":{"examples":["m"],"type":"string"}"#),
        ] {
            expect(&state, method, path, body, want, needle).await;
        }
    }

    #[tokio::test]
    async fn a_bad_tensor_is_a_400_naming_it() {
        let (state, _dir) = app();
        let mut body = infer_body(&rows());
        body["inputs"][4]["data"][1] = json!(-3);
        let (status, _, text) = call(&state, "POST", "/v2/models/m/infer", &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"], "dti[1]: must not be negative, got -3");
        assert_eq!(json["fields"][0]["field"], "dti[1]");
    }

    #[tokio::test]
    async fn the_index_lists_every_version_with_its_state() {
        let (state, dir) = app();
        let repo = crate::repository::LocalDirectory::new(dir.path());
        repo.publish("broken", 1, b"not a model").unwrap();
        crate::registry::loader::Loader::new(
            state.config.clone(),
            std::sync::Arc::new(repo),
            crate::registry::loader::compile_models(Default::default()),
            state.registry.clone(),
        )
        .reconcile();
        let (status, _, _) = send(&state, Request::builder().method("POST").uri("/v2/repository/index"), "").await;
        assert_eq!(status, StatusCode::OK);
        let (_, _, text) = call(&state, "POST", "/v2/repository/index", "").await;
        let entries: Vec<super::IndexEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(entries.len(), 2, "{text}");
        assert_eq!((entries[0].name.as_str(), entries[0].state.as_str()), ("broken", "UNAVAILABLE"));
        assert!(!entries[0].reason.is_empty(), "{text}");
        let (_, _, text) = call(&state, "POST", "/v2/repository/index", r#"{"ready":true}"#).await;
        let entries: Vec<super::IndexEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(entries.len(), 1, "{text}");
        assert_eq!(entries[0].name, "m");
    }

    /// `n` rows, cycling through [`rows`].
    fn many(n: usize) -> Vec<Value> {
        rows().into_iter().cycle().take(n).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn infer_shares_the_deadline_and_the_body_limit_with_v1() {
        let (fits, over) = (infer_body(&many(500)).to_string(), infer_body(&many(1000)).to_string());
        let slow = stand_in(0.1, std::time::Duration::from_millis(2));
        let (state, _dir) = app_with(slow, |c| {
            c.request_timeout = std::time::Duration::from_millis(100);
            c.max_body_bytes = fits.len();
        });
        // 500 rows × 2 ms = 1 s of scoring, abandoned at the 100 ms deadline.
        let (status, headers, text) = call(&state, "POST", "/v2/models/m/infer", &fits).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert_eq!(headers["retry-after"], "1");
        assert!(text.contains("deadline_exceeded"), "{text}");
        let (status, _, text) = call(&state, "POST", "/v2/models/m/infer", &over).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        let metrics = String::from_utf8(state.metrics.render()).unwrap();
        assert!(metrics.contains(r#"riskserve_requests_shed_total{reason="deadline"} 1"#), "{metrics}");
    }
}
