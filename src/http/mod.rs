//! The HTTP boundary: hyper 1.x server with graceful shutdown and a bound on
//! connections ([`server`]), each connection's timeouts ([`conn`]), the
//! router ([`routes`]) over what every handler shares: the app state and
//! per-route series ([`state`]), the route table's names ([`route`]), JSON
//! answers ([`reply`]) and byte splitting ([`text`]); request bodies read
//! without pinning hyper's buffers ([`body`]), admission control for
//! predictions ([`admission`]), the prediction path every protocol shares
//! ([`predict`]), prediction body parsing and validation ([`request`]),
//! response bodies ([`response`]), the one error → status mapping
//! ([`error`]), the web form ([`form`]), the Open Inference Protocol
//! (KServe V2) routes ([`oip`]) and the OpenAPI document of every route
//! ([`openapi`]).
//!
//! Nothing imports [`routes`] but the accept loop ([`server`]) and the
//! tests that call it without a socket.

pub mod admission;
pub mod body;
pub mod conn;
pub mod error;
pub mod form;
pub mod oip;
pub mod openapi;
pub mod predict;
pub mod reply;
pub mod request;
pub mod response;
pub mod route;
pub mod routes;
pub mod server;
pub mod state;
#[cfg(test)]
pub(crate) mod test_support;
pub mod text;
pub mod workers;
