//! The one place errors become HTTP responses: [`ApiError`] carries a status,
//! a stable `type`, a message naming the problem, and per-field details.
//! Body: `{"error": "...", "type": "...", "fields": [{"field", "problem"}]}`.

use crate::registry::LookupError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// A problem with one field of one application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProblem {
    /// `loan_amnt`, or `instances[3].loan_amnt` in a batch.
    pub field: String,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub fields: Vec<FieldProblem>,
    pub allow: Option<&'static str>,
    /// `Retry-After` in seconds, on answers that mean "overloaded, come back".
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, message: message.into(), fields: Vec::new(), allow: None, retry_after_secs: None }
    }

    pub fn malformed_json(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 naming every invalid field; the message lists them all.
    pub fn invalid_fields(fields: Vec<FieldProblem>) -> ApiError {
        let message = fields.iter().map(|f| format!("{}: {}", f.field, f.problem)).collect::<Vec<_>>().join("; ");
        ApiError { fields, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message) }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("this path accepts {allow}"))
        }
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 431: more header fields than the server takes.
    pub fn too_many_headers(count: usize, limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            format!("the request has {count} header fields; the limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(got: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type `{got}` is not supported; send `Content-Type: application/json`"),
        )
    }

    /// 415 for a POST without any `Content-Type`: taking it as JSON would let
    /// any web page send a cross-site "simple" request without a preflight.
    pub fn missing_content_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request has no content type; send `Content-Type: application/json`",
        )
    }

    pub fn request_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time (request_timeout_ms covers headers and body)",
        )
    }

    /// 503 with `Retry-After: 1`: too many prediction requests in progress and
    /// queued. Answered at once, so latency does not grow without limit.
    pub fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError { retry_after_secs: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message) }
    }

    /// 503 with `Retry-After: 1`: the request could not be answered within
    /// its deadline (a slow batch on a busy server).
    pub fn deadline_exceeded() -> ApiError {
        ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "deadline_exceeded",
                "the request could not be answered within request_timeout_ms; retry later or send smaller batches",
            )
        }
    }

    pub fn is_deadline_exceeded(&self) -> bool {
        self.kind == "deadline_exceeded"
    }

    /// 500: the model produced something that is not an answer (a
    /// non-finite probability). Never passed on as `null`.
    pub fn inference(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "inference_error", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            fields: &'a [FieldProblem],
        }
        let body = serde_json::to_vec(&Body { error: &self.message, kind: self.kind, fields: &self.fields })
            .unwrap_or_else(|_| br#"{"error":"internal error","type":"internal"}"#.to_vec());
        let mut response = json_response(self.status, body);
        if let Some(allow) = self.allow {
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A registry lookup that found nothing to serve: 404 for an unknown
/// model or version, 503 for a model with no version available.
pub(crate) fn lookup_error(e: LookupError) -> ApiError {
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
