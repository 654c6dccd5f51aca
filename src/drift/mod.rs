//! Drift monitoring (issue 29): how far the applications a version scores
//! have moved from the population it was trained on, measured as the
//! population stability index (PSI) of the score and of each feature
//! against the reference the model file records
//! ([`crate::model::reference`]); see `docs/drift.md`.
//!
//! - [`psi`]: the index, with its smoothing of empty bins;
//! - [`window`]: the lock-free sliding window of counters;
//! - [`monitor`]: one version's reference and window, what the request
//!   path counts into and `GET /v1/models/{name}` shows;
//! - [`collector`]: the `riskserve_drift_*` gauges, computed at each scrape;
//! - [`offline`]: `riskserve drift`, a CSV of recent applications against
//!   a version's reference, with its HTML report.

pub mod collector;
pub mod monitor;
pub mod offline;
pub mod psi;
pub mod window;

pub use monitor::{LiveDrift, Monitor};
pub use window::WindowSize;
