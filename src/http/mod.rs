//! The HTTP boundary: hyper 1.x server with graceful shutdown and a bound on
//! connections ([`server`]), each connection's timeouts ([`conn`]), routes
//! and handlers ([`routes`]), request bodies read without pinning hyper's
//! buffers ([`body`]), admission control for predictions
//! ([`admission`]), the prediction path every protocol shares ([`predict`]), prediction body parsing and validation ([`request`]),
//! response bodies ([`response`]), the one error → status mapping
//! ([`error`]), the web form ([`form`]), the Open Inference Protocol
//! (KServe V2) routes ([`oip`]) and the OpenAPI document of every route
//! ([`openapi`]).

pub mod admission;
pub mod body;
pub mod conn;
pub mod error;
pub mod form;
pub mod oip;
pub mod openapi;
pub mod predict;
pub mod request;
pub mod response;
pub mod routes;
pub mod server;
pub mod workers;
