//! What every handler can reach: [`AppState`] (config, registry, metrics,
//! admission, the worker pool, the sync status) and the per-route request
//! series, resolved once at start-up.

use super::admission::{Admission, AdmissionGauges};
use super::route::Route;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use hyper::StatusCode;
use prometheus::{Histogram, IntCounter};
use std::sync::Arc;

/// Per-route series resolved once at start-up, so counting a request does
/// not hash label values. Other status codes than 200 (rarer, and open-ended)
/// are looked up by label.
struct RouteMetrics {
    duration: [Histogram; Route::ALL.len()],
    ok: [IntCounter; Route::ALL.len()],
}

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    route_metrics: RouteMetrics,
    pub(super) admission: Admission,
    /// Threads for big bodies and big batches.
    pub(super) workers: super::workers::Workers,
    /// The object-store sync's status, shown by `GET /v1/models` (`--sync-from`).
    pub sync: Option<Arc<crate::sync::SyncState>>,
}

impl AppState {
    pub fn new(config: Arc<Config>, registry: Arc<Registry>, metrics: Arc<Metrics>) -> AppState {
        let route_metrics = RouteMetrics {
            duration: Route::ALL.map(|r| metrics.request_duration_seconds.with_label_values(&["http", r.label()])),
            ok: Route::ALL.map(|r| metrics.requests_total.with_label_values(&["http", r.label(), "200"])),
        };
        let gauges =
            AdmissionGauges { admitted: metrics.requests_admitted.clone(), queued: metrics.requests_queued.clone() };
        let admission =
            Admission::new(config.max_inflight_requests, config.max_queued_requests, config.max_queue_wait, gauges);
        let workers = super::workers::Workers::new(std::thread::available_parallelism().map_or(1, usize::from));
        AppState { config, registry, metrics, route_metrics, admission, workers, sync: None }
    }

    /// Counts a shed request by its reason.
    pub(crate) fn shed(&self, reason: &str) {
        self.metrics.requests_shed_total.with_label_values(&[reason]).inc();
    }

    /// Counts a finished request under its route and status.
    pub(super) fn count(&self, route: Route, status: StatusCode, seconds: f64) {
        let i = route as usize;
        if status == StatusCode::OK {
            self.route_metrics.ok[i].inc();
        } else {
            self.metrics.requests_total.with_label_values(&["http", route.label(), status.as_str()]).inc();
        }
        self.route_metrics.duration[i].observe(seconds);
    }
}
