//! The pieces every JSON handler answers with: [`Handled`], `200` JSON
//! bodies ([`json_ok`], [`to_json`]) and the GET/HEAD-only guard.

use super::error::{json_response, ApiError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

pub(super) type Handled = Result<Response<Full<Bytes>>, ApiError>;

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
