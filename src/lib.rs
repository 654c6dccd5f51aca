//! riskserve: a zero-downtime, hot-reloading credit-risk model server.
//!
//! The architecture in one page:
//!
//! - [`model`] — the prediction core: the ten-feature [`model::input::LoanApplication`],
//!   the reference preprocessing (median / `missing` + one-hot), estimators
//!   compiled into flat arrays, and the versioned, digest-protected file format.
//! - [`train`] — smartcore training, stratified cross-validation, metrics
//!   (ROC-AUC, PR-AUC, Brier), synthetic data, atomic publication of versions.
//! - [`registry`] — the set of loaded versions in an `ArcSwap` snapshot, the
//!   loader that validates off the request path, and the notify watcher that
//!   triggers it.
//! - [`http`] — hyper 1.x accept loop with graceful shutdown, routes, request
//!   parsing and the one error → status mapping.
//! - [`metrics`] — the Prometheus registry and metric families.
//! - [`config`] — defaults < `config/riskserve.toml` (beside the models directory) < `RISKSERVE_*` env < CLI; each setting declared once.
//! - [`cli`] — the `riskserve` subcommands.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod repository;
pub mod server;
pub mod telemetry;
pub mod train;
