//! The HTTP boundary: hyper 1.x server with graceful shutdown ([`server`]),
//! routes and handlers ([`routes`]), prediction body parsing and validation
//! ([`request`]), the one error → status mapping ([`error`]), and the web
//! form ([`form`]).

pub mod error;
pub mod form;
pub mod request;
pub mod routes;
pub mod server;
