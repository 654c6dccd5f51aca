//! The one place errors become gRPC statuses, the `grpc-timeout` header
//! read into a deadline, and status codes named for metrics.
//!
//! | HTTP answer | gRPC status |
//! | --- | --- |
//! | 400 (and 415) | INVALID_ARGUMENT |
//! | 404 | NOT_FOUND |
//! | 408 (the request did not arrive in time) | DEADLINE_EXCEEDED |
//! | 413 | RESOURCE_EXHAUSTED |
//! | 503 overloaded (admission) | RESOURCE_EXHAUSTED |
//! | 503 deadline exceeded | DEADLINE_EXCEEDED |
//! | 503 no version available | UNAVAILABLE |
//! | 500 | INTERNAL |
//!
//! The message is the HTTP answer's `error` text (every invalid field named).

use crate::http::error::ApiError;
use hyper::{HeaderMap, StatusCode};
use std::time::Duration;
use tonic::{Code, Status};

/// The gRPC status of an error.
pub fn status(e: ApiError) -> Status {
    let code = match e.status {
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE if e.kind == "overloaded" => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE if e.is_deadline_exceeded() => Code::DeadlineExceeded,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        s if s.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    };
    Status::new(code, e.message)
}

/// The `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`), if sent and valid.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A status code's name as the gRPC documentation spells it (the `code`
/// label of gRPC requests in `riskserve_requests_total`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_status_a_grpc_client_expects() {
        for (e, want) in [
            (ApiError::bad_request("x"), Code::InvalidArgument),
            (ApiError::invalid_fields(vec![]), Code::InvalidArgument),
            (ApiError::not_found("x"), Code::NotFound),
            (ApiError::payload_too_large(10), Code::ResourceExhausted),
            (ApiError::overloaded("full"), Code::ResourceExhausted),
            (ApiError::deadline_exceeded(), Code::DeadlineExceeded),
            (ApiError::request_timeout(), Code::DeadlineExceeded),
            (ApiError::unavailable("nothing loaded"), Code::Unavailable),
            (ApiError::inference("NaN"), Code::Internal),
        ] {
            let message = e.message.clone();
            let s = status(e);
            assert_eq!((s.code(), s.message()), (want, message.as_str()));
        }
    }

    #[test]
    fn grpc_timeout_is_read_in_every_unit_and_junk_is_ignored() {
        let timeout = |text: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", text.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
        for (text, want) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("99999999u", Duration::from_micros(99_999_999)),
            ("5n", Duration::from_nanos(5)),
        ] {
            assert_eq!(timeout(text), Some(want), "{text}");
        }
        for junk in ["", "S", "100", "123456789S", "1s", "-1S", "1.5S"] {
            assert_eq!(timeout(junk), None, "{junk:?}");
        }
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
