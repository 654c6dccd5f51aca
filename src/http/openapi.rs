//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, built from
//! the route table (`Route::ALL`, whose labels are the path templates) and
//! the limits in force (`max_batch`, the field bounds). `operation` matches
//! every route exhaustively, so a new route does not compile until it is
//! documented, and a test checks every path is in the document.
//!
//! Hand-built (with `serde_json::json!`) rather than derived with a macro
//! crate: the router is hand-rolled and the request parsers are custom
//! visitors, so the schemas say what the parsers accept (and the tests run
//! real clients against them: schemathesis, with every check, and
//! tritonclient). The text patterns of the application's fields are built
//! in [`pattern`]; what an infer body must satisfy beyond its schema is
//! said in the operation's description.

mod pattern;

use super::oip::{self, tensor::Output, EXTENSIONS};
use super::route::Route;
use crate::config::Config;
use crate::model::field_rules::MAX_CATEGORY_LEN;
use crate::model::fields::Fields;
use crate::model::schema::Kind;
use crate::registry::{Snapshot, MAX_NAMES_LISTED};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Map, Value};

/// The document as a response, with the models being served as examples.
pub fn response(config: &Config, snapshot: &Snapshot) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&document(config, snapshot)).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An application the documented version accepts, the example of the
/// request bodies: the reference loan's values where it has the field,
/// else the imputed value (or the first category, or the range's floor).
fn example_application(fields: &Fields) -> Value {
    let loan = json!({"loan_amnt": 5000, "int_rate": 0.1356, "annual_inc": 52000, "revol_util": 0.226, "dti": 14.39,
        "delinq_2yrs": 1, "purpose": "debt_consolidation", "grade": "C", "emp_length": "9 years",
        "home_ownership": "MORTGAGE"});
    let mut app = Map::new();
    for f in fields.features() {
        let value = match &f.kind {
            Kind::Number { min, max, imputed_with, .. } => match loan.get(&f.name).and_then(Value::as_f64) {
                Some(v) if (*min..=*max).contains(&v) => json!(v),
                _ => json!(imputed_with.unwrap_or(*min)),
            },
            Kind::Category { categories, .. } => match loan.get(&f.name).and_then(Value::as_str) {
                Some(v) if categories.iter().any(|c| c == v) => json!(v),
                _ => categories.first().map_or(Value::Null, |c| json!(c)),
            },
        };
        app.insert(f.name.clone(), value);
    }
    Value::Object(app)
}

/// [`example_application`] as OIP input tensors.
fn example_inference_request(fields: &Fields) -> Value {
    let app = example_application(fields);
    let inputs: Vec<Value> = oip::input_metadata(fields)
        .into_iter()
        .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": [1], "data": [app[&t.name]]}))
        .collect();
    json!({"id": "example-1", "inputs": inputs})
}

/// The OpenAPI 3.1 document for a server with `config`; the names and
/// versions being served are the path parameters' examples, so a client
/// generating requests from the document reaches real models.
pub fn document(config: &Config, snapshot: &Snapshot) -> Value {
    let names: Vec<&str> = snapshot.models.keys().take(MAX_NAMES_LISTED).map(String::as_str).collect();
    let mut versions: Vec<String> =
        snapshot.models.values().flat_map(|m| m.versions.keys().map(u64::to_string)).collect();
    versions.sort_unstable();
    versions.dedup();
    versions.truncate(MAX_NAMES_LISTED);
    // The request bodies are those of the first served model's serving
    // version (the ten loan fields when nothing is served yet); the fields
    // its other loaded versions declare are accepted, and ignored.
    let served = snapshot.models.values().find_map(|m| m.default_version().map(|v| (v.clone(), m.known.clone())));
    let loan;
    let (fields, others): (&Fields, Vec<String>) = match &served {
        Some((v, known)) => {
            let fields = v.scorer.fields();
            (fields, known.names().filter(|n| fields.index(n.as_bytes()).is_none()).map(str::to_string).collect())
        }
        None => {
            loan = Fields::new(crate::model::schema::Schema::loan()).expect("the loan schema is valid");
            (&loan, Vec::new())
        }
    };
    let mut paths = Map::new();
    for route in Route::ALL {
        let Some((method, op)) = operation(route, fields) else { continue };
        let item = paths.entry(route.label()).or_insert_with(|| json!({}));
        let mut op = op;
        let mut params = path_parameters(route.label(), &names, &versions);
        if let Some(own) = op.get("parameters").and_then(Value::as_array) {
            params.extend(own.iter().cloned());
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        item[method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "riskserve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Credit-risk model server: the native /v1 API, the Open Inference Protocol \
                (KServe V2) under /v2, health and metrics. Errors are JSON {\"error\", \"type\", \"fields\"?}.",
        },
        "paths": paths,
        "components": { "schemas": schemas(config, fields, &others) },
    })
}

/// `{name}` and `{version}` path parameters of a template, with examples.
fn path_parameters(template: &str, names: &[&str], versions: &[String]) -> Vec<Value> {
    let mut params = Vec::new();
    if template.contains("{name}") {
        params.push(json!({"name": "name", "in": "path", "required": true,
            "description": "Model name (its directory in the model repository)",
            "schema": {"type": "string", "examples": names}}));
    }
    if template.contains("{version}") {
        params.push(json!({"name": "version", "in": "path", "required": true,
            "description": "A loaded version: a positive integer without leading zeros",
            "schema": {"type": "string", "examples": versions}}));
    }
    params
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": json_body(schema)})
}

/// An error response with an example body.
fn error(description: &str, kind: &str, message: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {
            "schema": schema_ref("Error"),
            "example": {"error": message, "type": kind},
        }},
    })
}

fn not_found() -> Value {
    error("Unknown model or version", "not_found", "model `x` is not served; models: credit-risk")
}

fn unavailable() -> Value {
    error("The model has no version available", "unavailable", "model `credit-risk` has no version available")
}

fn bad_request() -> Value {
    error(
        "Invalid request: the message names each field or tensor and its problem",
        "invalid_field",
        "dti: must not be negative, got -1",
    )
}

/// The responses every prediction (`/v1` predict, OIP infer) can give
/// besides 200.
fn prediction_errors(responses: &mut Value) {
    responses["400"] = bad_request();
    responses["404"] = not_found();
    responses["408"] =
        error("The body did not arrive in time", "request_timeout", "the request body did not arrive in time");
    responses["413"] = error(
        "Body over max_body_bytes",
        "payload_too_large",
        "request body is larger than the limit of 1048576 bytes",
    );
    responses["415"] = error(
        "Unsupported content type",
        "unsupported_media_type",
        "content type `text/plain` is not supported; send `Content-Type: application/json`",
    );
    responses["500"] = error(
        "The model produced no answer (a non-finite probability)",
        "inference_error",
        "model `credit-risk` version 1 produced a non-finite probability (NaN); no prediction was made",
    );
    responses["503"] = error(
        "Overloaded, past the deadline, or no version available; Retry-After says when to retry",
        "overloaded",
        "too many requests in progress; retry later",
    );
}

/// What an infer body must also satisfy, beyond its schema: rules between
/// tensors that a JSON Schema cannot state, and the binary extension, whose
/// framing is not JSON. A body breaking one is refused with 400 naming it.
fn infer_rules() -> String {
    format!(
        "The body is an InferenceRequest with one input tensor per feature, each feature once, in any order. \
        Beyond the schema: every input has the same batch (shape [batch] or [batch, 1], 1..=max_batch); its \
        data has exactly batch elements once nested arrays are flattened; numeric features take FP64, FP32 or \
        INT/UINT tensors (integers in the type's range) and categorical features BYTES; and each element passes \
        the field's rule as in /v1 (a number in 0..=maximum; a category of at most {MAX_CATEGORY_LEN} characters \
        once trimmed). Binary tensor extension: with an Inference-Header-Content-Length header, the body is \
        that many bytes of InferenceRequest JSON followed by the bytes of the tensors whose parameters give \
        binary_data_size (little-endian, row-major; a BYTES element is a 4-byte little-endian length, then the \
        bytes), sent as application/json, application/octet-stream or without a content type."
    )
}

/// The method and operation of a route; `None` for the unmatched fallback.
fn operation(route: Route, fields: &Fields) -> Option<(&'static str, Value)> {
    let op = match route {
        Route::Predict | Route::PredictVersion => {
            let mut responses = json!({"200": ok("One prediction per application", schema_ref("PredictResponse"))});
            prediction_errors(&mut responses);
            json!({
                "summary": if route == Route::Predict { "Score applications with the serving version" } else { "Score applications with a pinned version" },
                "tags": ["v1"],
                "parameters": [
                    {"name": "explain", "in": "query", "required": false,
                        "description": "Whether each prediction carries its reason codes: true or false (also 1 or 0; \
                            empty is true, the default); shap: exact SHAP values of every feature instead (tree models)",
                        "schema": {"type": ["boolean", "string"], "enum": [true, false, "true", "false", "1", "0", "", "shap"],
                            "default": true}},
                    {"name": "reasons", "in": "query", "required": false,
                        "description": "How many reason codes each prediction carries",
                        "schema": {"type": "integer", "minimum": 0, "maximum": crate::model::explain::MAX_REASONS, "default": crate::model::explain::DEFAULT_REASONS}},
                ],
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": schema_ref("PredictRequest"), "example": example_application(fields)}}},
                "responses": responses,
            })
        }
        Route::Models => json!({
            "summary": "Every model the source lists, with each version's state", "tags": ["v1"],
            "responses": {"200": ok("Models", schema_ref("Models"))},
        }),
        Route::Model => json!({
            "summary": "One model's versions and their state", "tags": ["v1"],
            "responses": {"200": ok("The model", schema_ref("ModelStatus")), "404": not_found()},
        }),
        Route::Live => json!({
            "summary": "Liveness (also the OIP server-live endpoint)", "tags": ["health", "oip"],
            "responses": {"200": ok("Live", json!({"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}))},
        }),
        Route::Ready => json!({
            "summary": "Readiness: every model has a version serving and reloads are healthy (also OIP server-ready)",
            "tags": ["health", "oip"],
            "responses": {
                "200": ok("Ready", json!({"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}})),
                "503": error("Not ready", "unavailable", "not ready: no model has an available version"),
            },
        }),
        Route::Metrics => json!({
            "summary": "Prometheus metrics", "tags": ["health"],
            "responses": {"200": {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }),
        Route::Form => json!({
            "summary": "A web page to score one application", "tags": ["v1"],
            "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }),
        Route::OpenApi => json!({
            "summary": "This document", "tags": ["meta"],
            "responses": {"200": ok("OpenAPI 3.1 document", json!({"type": "object"}))},
        }),
        Route::OipServer => json!({
            "summary": "OIP server metadata", "tags": ["oip"],
            "responses": {"200": ok("Server metadata", schema_ref("ServerMetadata"))},
        }),
        Route::OipModel | Route::OipModelVersion => json!({
            "summary": "OIP model metadata: the input and output tensors", "tags": ["oip"],
            "responses": {"200": ok("Model metadata", schema_ref("ModelMetadata")), "404": not_found(), "503": unavailable()},
        }),
        Route::OipModelReady | Route::OipModelVersionReady => json!({
            "summary": "OIP model readiness: 200 when it can answer", "tags": ["oip"],
            "responses": {"200": ok("Ready", schema_ref("ModelReady")), "404": not_found(), "503": unavailable()},
        }),
        Route::OipInfer | Route::OipInferVersion => {
            let mut responses = json!({"200": {
                "description": "The output tensors; with binary outputs, the JSON (Inference-Header-Content-Length bytes) then the tensor bytes",
                "headers": {"Inference-Header-Content-Length": {"description": "With binary outputs: the length of the JSON part",
                    "schema": {"type": "integer", "minimum": 0}}},
                "content": {
                    "application/json": {"schema": schema_ref("InferenceResponse")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }});
            prediction_errors(&mut responses);
            json!({
                "summary": "OIP inference: one input tensor per feature", "tags": ["oip"],
                "description": infer_rules(),
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": schema_ref("InferenceRequest"), "example": example_inference_request(fields)},
                }},
                "responses": responses,
            })
        }
        Route::OipRepositoryIndex => json!({
            "summary": "OIP model-repository index: every version the source lists, with its state", "tags": ["oip"],
            "requestBody": {"required": false, "content": json_body(schema_ref("RepositoryIndexRequest"))},
            "responses": {
                "200": ok("Index", json!({"type": "array", "items": schema_ref("RepositoryIndexEntry")})),
                "400": error("Malformed request", "malformed_json", "repository index request: expected value at line 1 column 1; send {\"ready\": bool}"),
                "408": error("The body did not arrive in time", "request_timeout", "the request body did not arrive in time"),
                "413": error("Body too large", "payload_too_large", "request body is larger than the limit of 4096 bytes"),
                "415": error("Unsupported content type", "unsupported_media_type", "content type `text/plain` is not supported; send `Content-Type: application/json`"),
            },
        }),
        Route::OipRepositoryLoad | Route::OipRepositoryUnload => json!({
            "summary": "Refused: the model directory (or store) is the source of truth", "tags": ["oip"],
            "description": "Every request is refused with 400, whatever its body: riskserve serves what the model \
                directory (or object store) holds; publish or remove a version there and the watcher picks it up.",
            "responses": {"400": error("Loading and unloading stay with the model source", "bad_request",
                "model `credit-risk` cannot be loaded through the API: riskserve serves what the model directory (or store) holds")},
        }),
        Route::Unmatched => return None,
    };
    let method = match route {
        Route::Predict | Route::PredictVersion | Route::OipInfer | Route::OipInferVersion => "post",
        Route::OipRepositoryIndex | Route::OipRepositoryLoad | Route::OipRepositoryUnload => "post",
        _ => "get",
    };
    Some((method, op))
}

/// The fields of one application, as the field rules check them: each
/// number in its range or text that reads as one, each category text of at
/// most `MAX_CATEGORY_LEN` characters once trimmed; `null` or blank text is
/// missing; `others` (fields other loaded versions declare) accepted and
/// ignored.
fn application_fields(fields: &Fields, others: &[String]) -> Map<String, Value> {
    let mut application = Map::new();
    for f in fields.features() {
        let schema = match &f.kind {
            Kind::Number { min, max, unit, .. } => {
                let unit = unit.as_deref().map(|u| format!(" ({u})")).unwrap_or_default();
                let desc = format!(
                    "A number in {min}..={max}{unit}, or text that reads as one (white space around it ignored; \
                     exponents allowed); null or blank text is missing (imputed)"
                );
                if *min == 0.0 {
                    json!({"type": ["number", "string", "null"], "minimum": min, "maximum": max,
                        "pattern": format!("^{}$", pattern::numeric_text_body(*max)), "description": desc})
                } else {
                    // The text pattern is written for ranges from 0; a field
                    // that may be negative documents numbers only.
                    json!({"type": ["number", "null"], "minimum": min, "maximum": max, "description": desc})
                }
            }
            Kind::Category { .. } => json!({"type": ["string", "null"],
                "pattern": format!("^{}$", pattern::category_text_body(MAX_CATEGORY_LEN)),
                "description": format!("A category: at most {MAX_CATEGORY_LEN} characters once the white space around \
                    it is trimmed; null or blank text is missing")}),
        };
        application.insert(f.name.clone(), schema);
    }
    for other in others {
        application.insert(other.clone(), json!({"description": "Declared by another loaded version of the model: accepted, and ignored by this one"}));
    }
    application
}

fn schemas(config: &Config, fields: &Fields, others: &[String]) -> Value {
    let application = application_fields(fields, others);
    let names: Vec<&str> = fields.schema().names().collect();
    let required: Vec<&str> = fields.features().iter().filter(|f| f.required).map(|f| f.name.as_str()).collect();
    let datatypes = ["FP64", "FP32", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8", "BYTES"];
    let tensor_data = json!({"type": "array", "description": "Row-major elements (nested arrays are flattened); null is a missing value",
        "items": {"type": ["number", "string", "null", "array"]}});
    // Parameters are open maps; the keys the server reads are typed, and a
    // shared-memory region is refused.
    let parameters = |known: Value| json!({"type": ["object", "null"], "properties": known});
    let metadata_tensor = json!({"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}}}});
    let outputs: Vec<&str> = Output::ALL.iter().map(|o| o.name()).collect();
    let version_status = json!({"type": "object", "required": ["version", "state", "serving", "path"], "properties": {
        "version": {"type": "integer"},
        "state": {"type": "string", "enum": ["loading", "available", "failed", "not_loaded"]},
        "serving": {"type": "boolean"}, "path": {"type": "string"},
        "reason": {"type": "string"}, "detail": {"type": "string"},
        "loaded_at": {"type": "string"}, "load_seconds": {"type": "number"}, "digest": {"type": "string"},
        "model": {"type": "object"},
        "explain": {"type": "object", "description": "How reason codes are computed: method (saabas | linear) and base_value",
            "properties": {"method": {"type": "string"}, "base_value": {"type": "number"}}},
        "inputs": {"type": "array", "description": "Each input field: kind, limits, unit, categories, the value imputed when missing",
            "items": {"type": "object"}},
        "drift": {"type": "object", "description": "Drift of recent applications from the version's training reference \
            (docs/drift.md): the window, the high_risk share, the PSI of the score and of each feature, the top movers; \
            absent without a reference or with drift monitoring off",
            "properties": {"window": {"type": "object"}, "high_risk_share": {"type": ["number", "null"]},
                "psi": {"type": "array", "items": {"type": "object"}}, "top_movers": {"type": "array", "items": {"type": "object"}}}}}});
    json!({
        "Error": {"type": "object", "required": ["error", "type"], "properties": {
            "error": {"type": "string", "description": "What is wrong, naming the field or tensor"},
            "type": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "object", "required": ["field", "problem"],
                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}}}},
        }},
        "Application": {"type": "object", "required": required, "additionalProperties": false, "properties": application},
        "PredictRequest": {"oneOf": [
            schema_ref("Application"),
            {"type": "object", "required": ["instances"], "additionalProperties": false, "properties": {
                "instances": {"type": "array", "minItems": 1, "maxItems": config.max_batch, "items": schema_ref("Application")}}},
        ]},
        "PredictResponse": {"type": "object", "required": ["model_name", "model_version", "predictions"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "integer"},
            "predictions": {"type": "array", "items": {"type": "object", "required": ["probability_late", "decision"], "properties": {
                "probability_late": {"type": "number", "minimum": 0, "maximum": 1},
                "decision": {"type": "string", "enum": ["high_risk", "low_risk"]},
                "band": {"type": "string", "description": "The decision band, when the model file configures bands"},
                "reasons": {"type": "array", "description": "The features that raised the risk most, ranked (absent with explain=false)",
                    "items": {"type": "object", "required": ["feature", "value", "contribution", "imputed"], "properties": {
                        "feature": {"type": "string", "enum": names},
                        "value": {"type": ["number", "string", "null"]},
                        "contribution": {"type": "number"},
                        "imputed": {"type": "boolean"}}}},
                "shap": {"type": "object", "description": "With explain=shap: exact (path-dependent Tree SHAP) values of every feature; base_value plus the values is the model's score on `scale`",
                    "required": ["scale", "base_value", "values"], "properties": {
                        "scale": {"type": "string", "enum": ["log_odds", "probability", "uncalibrated_probability"]},
                        "base_value": {"type": "number"},
                        "values": {"type": "object", "additionalProperties": {"type": "number"}}}}}}},
        }},
        "ModelStatus": {"type": "object", "required": ["name", "version_policy", "versions"], "properties": {
            "name": {"type": "string"}, "version_policy": {"type": "string"}, "serving_version": {"type": "integer"},
            "versions": {"type": "array", "items": version_status},
            "ignored": {"type": "array", "items": {"type": "object"}}, "warning": {"type": "string"},
            "rollout": {"type": "object", "description": "The rollout in force (stable, canary, shadow, guards, state, comparison), and the error of a bad rollout.toml"}}},
        "Models": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": schema_ref("ModelStatus")}}},
        "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}, "examples": [EXTENSIONS]}}},
        "MetadataTensor": metadata_tensor,
        "ModelMetadata": {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"], "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": schema_ref("MetadataTensor"), "examples": [oip::input_metadata(fields)]},
            "outputs": {"type": "array", "items": schema_ref("MetadataTensor"), "examples": [oip::output_metadata()]}}},
        "ModelReady": {"type": "object", "required": ["name", "version", "ready"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "ready": {"type": "boolean"}}},
        "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": ["string", "null"]},
            "parameters": parameters(json!({"binary_data_output": {"type": ["boolean", "null"]}})),
            "inputs": {"type": "array", "items": schema_ref("RequestInput"),
                "minItems": required.len(), "maxItems": names.len() + others.len(),
                "description": format!("One tensor per feature ({}), shape [batch] or [batch, 1], batch 1..={}", names.join(", "), config.max_batch)},
            "outputs": {"type": ["array", "null"], "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "enum": outputs},
                "parameters": parameters(json!({"binary_data": {"type": ["boolean", "null"]}, "shared_memory_region": false}))}}}}},
        "RequestInput": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
            "name": {"type": "string", "enum": names.iter().copied().chain(others.iter().map(String::as_str)).collect::<Vec<_>>()},
            "shape": {"type": "array", "minItems": 1, "maxItems": 2,
                "prefixItems": [{"type": "integer", "minimum": 1, "maximum": config.max_batch}, {"const": 1}]},
            "datatype": {"type": "string", "enum": datatypes},
            "parameters": parameters(json!({
                "binary_data_size": {"type": "null", "description": "Binary tensor extension only (see the infer operation)"},
                "shared_memory_region": false})),
            "data": tensor_data}},
        "InferenceResponse": {"type": "object", "required": ["model_name", "model_version", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
                "name": {"type": "string", "enum": outputs}, "datatype": {"type": "string", "enum": ["FP64", "BYTES"]},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "parameters": {"type": "object"},
                "data": {"type": "array", "items": {"type": ["number", "string"]}}}}}}},
        "RepositoryIndexRequest": {"type": "object", "additionalProperties": false, "properties": {
            "ready": {"type": "boolean", "description": "Only versions ready for inference"},
            "repository_name": {"type": ["string", "null"]}}},
        "RepositoryIndexEntry": {"type": "object", "required": ["name", "state", "reason"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]}, "reason": {"type": "string"}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loan() -> Fields {
        crate::model::test_support::loan_fields()
    }

    fn doc() -> Value {
        document(&Config::with_models_dir(std::path::Path::new("models")), &Snapshot::default())
    }

    #[test]
    fn every_route_is_in_the_document_with_its_method() {
        let doc = doc();
        for route in Route::ALL {
            if route == Route::Unmatched {
                assert!(operation(route, &loan()).is_none());
                continue;
            }
            let (method, _) = operation(route, &loan()).unwrap();
            let op = &doc["paths"][route.label()][method];
            assert!(op.is_object(), "{route:?} ({method} {}) is missing from the document", route.label());
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{route:?} has no responses");
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn every_reference_resolves_and_every_error_has_an_example() {
        let doc = doc();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    if !status.starts_with('2') {
                        let example = &response["content"]["application/json"]["example"];
                        assert!(example["error"].is_string(), "{method} {path} {status} has no error example");
                    }
                }
            }
        }
    }

    #[test]
    fn the_examples_are_requests_the_server_accepts() {
        for fields in [loan(), Fields::new(crate::model::schema::Schema::loan()).unwrap()] {
            let body = example_application(&fields).to_string();
            crate::http::request::decode_with(&fields, body.as_bytes()).unwrap();
            let body = example_inference_request(&fields).to_string();
            let known = crate::model::fields::NameTable::default();
            let decoder = crate::http::request::Decoder { fields: &fields, known: &known, max_batch: 1 };
            let (_, rows) = super::oip::tensor::decode(body.as_bytes(), None, decoder).unwrap();
            assert_eq!(rows.len(), 1);
        }
    }

    #[test]
    fn path_parameters_match_the_templates() {
        let doc = doc();
        let op = &doc["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"];
        let names: Vec<&str> =
            op["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["name", "version"]);
        assert!(doc["paths"]["/v2"]["get"]["parameters"].is_null());
    }
}
