//! riskserve: a zero-downtime, hot-reloading credit-risk model server.
//!
//! The architecture in one page:
//!
//! - [`server`] — the composition root: [`server::Components`] (a model
//!   source and a scorer factory), start-up as a story, bounded shutdown.
//! - [`model`] — the prediction core: the ten-feature [`model::input::LoanApplication`]
//!   and its per-field rules, the reference preprocessing, estimators compiled
//!   into flat arrays, load-time limits, the digest-protected file format,
//!   calibration, exact reason codes ([`model::explain`]), and the
//!   [`model::Scorer`] seam.
//! - [`repository`] — the layout rules, the [`repository::ModelSource`]
//!   interface, and the local directory with atomic publishing.
//! - [`registry`] — the `ArcSwap` snapshot (serving set + status), the pure
//!   plan of a reload pass, the loader (deadlines, backoff), reload health,
//!   the notify watcher with its pass signal, and rollouts (`rollout.toml`:
//!   stable, sticky canary, shadow, guards that revert a bad candidate).
//! - [`train`] — the training pipeline (typed plan → outcome), smartcore
//!   fitting, cross-validation, evaluation (ROC-AUC, PR-AUC, Brier), out-of-fold
//!   calibration and cost-based thresholds, the HTML report, data.
//! - [`http`] — the accept loop with connection limits, admission control,
//!   routes (callable without a socket), request parsing, the one error →
//!   status mapping, the loan officer's web form at `/`, the Open Inference
//!   Protocol (`/v2`, same prediction path as `/v1`) and the OpenAPI
//!   document of every route.
//! - [`grpc`] — the Open Inference Protocol over gRPC (Triton's
//!   `inference.GRPCInferenceService`) and `grpc.health.v1`, a second
//!   listener over the same registry, admission, limits and prediction path
//!   as [`http`], with HTTP/2 abuse limits.
//! - [`metrics`] — the Prometheus registry and metric families.
//! - [`config`] — defaults < `config/riskserve.toml` (beside the models
//!   directory) < `RISKSERVE_*` env < CLI; each setting declared once.
//! - [`importer`] — `riskserve import`: a model trained elsewhere (XGBoost,
//!   LightGBM; read by [`model::import`]) checked, its digest recorded in
//!   `model.toml`, published as the next version.
//! - [`sync`] — many replicas, one object store: the manifest, publishing
//!   with compare-and-swap, and the replica poll loop.
//! - [`cli`] — the `riskserve` subcommands: parse and print.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod drift;
pub mod grpc;
pub mod http;
pub mod importer;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod repository;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod train;
