//! `GET /`: a single self-contained page where a person can score an
//! application in a browser. It posts JSON to the same predict endpoint API
//! clients use, so it exercises exactly the served path.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

const PAGE: &str = include_str!("form.html");

pub fn page() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}
