//! The Prometheus registry and every metric family the server exports
//! (names in base units, as Prometheus recommends). Each server owns its own
//! registry, so tests can run several servers in one process.
//!
//! Per-version series are resolved once, when a version is loaded
//! ([`VersionMetrics`]), so the request path never hashes label values, and
//! they are removed when the version is retired, so thousands of swaps do
//! not grow `/metrics`.
//!
//! The allocator's statistics ([`allocator`]) are exported when the binary
//! has installed a reader for them.

pub mod allocator;

use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every `reason` of `riskserve_requests_shed_total`: the admission
/// queue was full or its wait ran out ([`crate::http::admission::Shed`]),
/// or the request deadline passed before scoring.
pub const SHED_REASONS: [&str; 3] = ["queue_full", "queue_wait", "deadline"];

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration_seconds: HistogramVec,
    pub inference_duration_seconds: HistogramVec,
    pub predictions_total: IntCounterVec,
    pub model_loads_total: IntCounterVec,
    pub model_load_duration_seconds: HistogramVec,
    pub model_version_serving: IntGaugeVec,
    pub model_versions_loaded: IntGaugeVec,
    pub model_swaps_total: IntCounterVec,
    pub inflight_requests: IntGauge,
    pub reload_passes_total: IntCounterVec,
    pub reload_last_pass_timestamp_seconds: Gauge,
    pub inference_errors_total: IntCounterVec,
    pub imputed_features_total: IntCounterVec,
    pub requests_shed_total: IntCounterVec,
    pub requests_admitted: IntGauge,
    pub requests_queued: IntGauge,
    pub connections_open: IntGauge,
    pub connections_refused_total: IntCounter,
    pub connection_timeouts_total: IntCounterVec,
    pub rollout: RolloutMetrics,
}

/// The families of rollouts (`rollout.toml`): transitions, bad files, shadow comparisons.
pub struct RolloutMetrics {
    pub transitions_total: IntCounterVec,
    pub file_errors_total: IntCounterVec,
    pub shadow_predictions_total: IntCounterVec,
    pub shadow_probability_delta: HistogramVec,
    pub shadow_latency_ratio: HistogramVec,
    pub shadow_dropped_total: IntCounterVec,
}

impl RolloutMetrics {
    fn new(registry: &Registry) -> RolloutMetrics {
        let m = RolloutMetrics {
            transitions_total: must(IntCounterVec::new(
                Opts::new(
                    "riskserve_rollout_transitions_total",
                    "Rollout transitions: from/to a role or state (stable, canary, shadow, reverted, promoted, none), \
                     with the reason (rollout_file, a guard name, clean_window).",
                ),
                &["model", "from", "to", "reason"],
            )),
            file_errors_total: must(IntCounterVec::new(
                Opts::new(
                    "riskserve_rollout_file_errors_total",
                    "Rollout files that could not be read or are invalid; the last good rollout stays in force.",
                ),
                &["model"],
            )),
            shadow_predictions_total: must(IntCounterVec::new(
                Opts::new(
                    "riskserve_shadow_predictions_total",
                    "Applications scored by a shadow version, by whether its decision agrees with the baseline's.",
                ),
                &["model", "version", "baseline", "agreement"],
            )),
            shadow_probability_delta: must(HistogramVec::new(
                HistogramOpts::new(
                    "riskserve_shadow_probability_delta",
                    "|probability_late of the shadow - of the baseline| per application.",
                )
                .buckets(vec![0.0001, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
                &["model", "version", "baseline"],
            )),
            shadow_latency_ratio: must(HistogramVec::new(
                HistogramOpts::new(
                    "riskserve_shadow_latency_ratio",
                    "Scoring time of the shadow copy / of the real request, per request.",
                )
                .buckets(vec![0.25, 0.5, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]),
                &["model", "version", "baseline"],
            )),
            shadow_dropped_total: must(IntCounterVec::new(
                Opts::new(
                    "riskserve_shadow_dropped_total",
                    "Shadow copies dropped because the shadow queue was full (the real request is never delayed).",
                ),
                &["model", "version"],
            )),
        };
        for c in [
            Box::new(m.transitions_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.file_errors_total.clone()),
            Box::new(m.shadow_predictions_total.clone()),
            Box::new(m.shadow_probability_delta.clone()),
            Box::new(m.shadow_latency_ratio.clone()),
            Box::new(m.shadow_dropped_total.clone()),
        ] {
            must(registry.register(c));
        }
        m
    }
}

/// Handles for one loaded version's series.
#[derive(Debug, Clone)]
pub struct VersionMetrics {
    pub inference_duration_seconds: Histogram,
    pub predictions_high_risk: IntCounter,
    pub predictions_low_risk: IntCounter,
    pub inference_errors: IntCounter,
    /// Per feature, in schema order: missing values imputed.
    pub imputed: Vec<IntCounter>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; an error here is a programming error
    // caught by every test that builds a server.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

/// One request or call counted in `riskserve_inflight_requests` while it
/// lives, even if it is cancelled ([`Metrics::inflight`]).
pub struct Inflight<'a>(&'a IntGauge);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Counts a request in flight until the guard is dropped.
    pub fn inflight(&self) -> Inflight<'_> {
        self.inflight_requests.inc();
        Inflight(&self.inflight_requests)
    }

    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_requests_total",
                "Requests answered, by protocol (http, grpc), route (an HTTP route template or a gRPC method) and \
                 status code (HTTP's, or gRPC's name such as OK or INVALID_ARGUMENT).",
            ),
            &["protocol", "route", "code"],
        ));
        let request_duration_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "riskserve_request_duration_seconds",
                "Time from request start to response, by protocol and route.",
            )
            .buckets(must(exponential_buckets(10e-6, 2.5, 14))),
            &["protocol", "route"],
        ));
        let inference_duration_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "riskserve_inference_duration_seconds",
                "Time spent scoring one request's applications, by model version.",
            )
            .buckets(must(exponential_buckets(1e-6, 2.0, 21))),
            &["model", "version"],
        ));
        let predictions_total = must(IntCounterVec::new(
            Opts::new("riskserve_predictions_total", "Applications scored, by model version and decision."),
            &["model", "version", "decision"],
        ));
        let model_loads_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_model_loads_total",
                "Model file load attempts, by result (success, incomplete, invalid, io_error, timeout).",
            ),
            &["model", "result"],
        ));
        let model_load_duration_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "riskserve_model_load_duration_seconds",
                "Time to read, verify, compile and warm up a model file.",
            )
            .buckets(must(exponential_buckets(1e-4, 2.5, 14))),
            &["model"],
        ));
        let model_version_serving = must(IntGaugeVec::new(
            Opts::new("riskserve_model_version_serving", "1 for the version that takes unpinned traffic."),
            &["model", "version"],
        ));
        let model_versions_loaded = must(IntGaugeVec::new(
            Opts::new("riskserve_model_versions_loaded", "Number of versions loaded and available, by model."),
            &["model"],
        ));
        let model_swaps_total = must(IntCounterVec::new(
            Opts::new("riskserve_model_swaps_total", "Snapshots published that changed a model's loaded versions."),
            &["model"],
        ));
        let inflight_requests =
            must(IntGauge::new("riskserve_inflight_requests", "Requests being processed right now."));
        let reload_passes_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_reload_passes_total",
                "Reload passes, by outcome: ok, list_error (the source could not be listed), panic.",
            ),
            &["outcome"],
        ));
        let reload_last_pass_timestamp_seconds = must(Gauge::new(
            "riskserve_reload_last_pass_timestamp_seconds",
            "Unix time of the last reload pass that listed the model source; alert when it falls behind.",
        ));
        let inference_errors_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_inference_errors_total",
                "Requests answered 500 because the model version produced no valid answer (a non-finite probability).",
            ),
            &["model", "version"],
        ));
        let imputed_features_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_imputed_features_total",
                "Missing values imputed (sent as null or blank, or an optional feature left out), by model version and feature.",
            ),
            &["model", "version", "feature"],
        ));
        let requests_shed_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_requests_shed_total",
                "Prediction requests answered 503 to shed load, by reason: queue_full, queue_wait, deadline.",
            ),
            &["reason"],
        ));
        // Every reason is a series from the start (at 0), so a rate or an
        // alert on shedding works before the first request is shed.
        for reason in SHED_REASONS {
            requests_shed_total.with_label_values(&[reason]);
        }
        let requests_admitted = must(IntGauge::new(
            "riskserve_requests_admitted",
            "Prediction requests holding one of the max_inflight_requests slots.",
        ));
        let requests_queued =
            must(IntGauge::new("riskserve_requests_queued", "Prediction requests waiting for a slot."));
        let connections_open = must(IntGauge::new("riskserve_connections_open", "Client connections open."));
        let connections_refused_total = must(IntCounter::new(
            "riskserve_connections_refused_total",
            "Connections closed on accept because max_connections were open.",
        ));
        let connection_timeouts_total = must(IntCounterVec::new(
            Opts::new(
                "riskserve_connection_timeouts_total",
                "Connections closed by a timeout, by kind: idle, request (headers too slow), write (client not reading).",
            ),
            &["kind"],
        ));
        for c in [
            Box::new(requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration_seconds.clone()),
            Box::new(inference_duration_seconds.clone()),
            Box::new(predictions_total.clone()),
            Box::new(model_loads_total.clone()),
            Box::new(model_load_duration_seconds.clone()),
            Box::new(model_version_serving.clone()),
            Box::new(model_versions_loaded.clone()),
            Box::new(model_swaps_total.clone()),
            Box::new(inflight_requests.clone()),
            Box::new(reload_passes_total.clone()),
            Box::new(reload_last_pass_timestamp_seconds.clone()),
            Box::new(inference_errors_total.clone()),
            Box::new(imputed_features_total.clone()),
            Box::new(requests_shed_total.clone()),
            Box::new(requests_admitted.clone()),
            Box::new(requests_queued.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused_total.clone()),
            Box::new(connection_timeouts_total.clone()),
        ] {
            must(registry.register(c));
        }
        #[cfg(target_os = "linux")]
        must(registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())));
        if let Some(collector) = allocator::AllocatorCollector::installed() {
            must(registry.register(Box::new(collector)));
        }
        let rollout = RolloutMetrics::new(&registry);
        Metrics {
            rollout,
            registry,
            requests_total,
            request_duration_seconds,
            inference_duration_seconds,
            predictions_total,
            model_loads_total,
            model_load_duration_seconds,
            model_version_serving,
            model_versions_loaded,
            model_swaps_total,
            inflight_requests,
            reload_passes_total,
            reload_last_pass_timestamp_seconds,
            inference_errors_total,
            imputed_features_total,
            requests_shed_total,
            requests_admitted,
            requests_queued,
            connections_open,
            connections_refused_total,
            connection_timeouts_total,
        }
    }

    /// Creates (or finds) the series of one model version, whose inputs
    /// are `features` (in schema order).
    pub fn version<'a>(
        &self,
        model: &str,
        version: u64,
        features: impl IntoIterator<Item = &'a str>,
    ) -> VersionMetrics {
        let v = version.to_string();
        VersionMetrics {
            inference_duration_seconds: self.inference_duration_seconds.with_label_values(&[model, &v]),
            predictions_high_risk: self.predictions_total.with_label_values(&[model, &v, "high_risk"]),
            predictions_low_risk: self.predictions_total.with_label_values(&[model, &v, "low_risk"]),
            inference_errors: self.inference_errors_total.with_label_values(&[model, &v]),
            imputed: features
                .into_iter()
                .map(|f| self.imputed_features_total.with_label_values(&[model, &v, f]))
                .collect(),
        }
    }

    /// Removes every series of a retired version, whose inputs were `features`.
    pub fn forget_version<'a>(&self, model: &str, version: u64, features: impl IntoIterator<Item = &'a str>) {
        let v = version.to_string();
        for f in features {
            let _ = self.imputed_features_total.remove_label_values(&[model, &v, f]);
        }
        let _ = self.inference_duration_seconds.remove_label_values(&[model, &v]);
        let _ = self.predictions_total.remove_label_values(&[model, &v, "high_risk"]);
        let _ = self.predictions_total.remove_label_values(&[model, &v, "low_risk"]);
        let _ = self.model_version_serving.remove_label_values(&[model, &v]);
        let _ = self.inference_errors_total.remove_label_values(&[model, &v]);
    }

    /// Removes every per-model series of a model that is gone from the
    /// source and no longer served, so junk directories created and deleted
    /// leave `/metrics` as it was.
    pub fn forget_model(&self, model: &str) {
        for result in crate::model::format::LoadError::KINDS.iter().chain(["success"].iter()) {
            let _ = self.model_loads_total.remove_label_values(&[model, result]);
        }
        let _ = self.model_load_duration_seconds.remove_label_values(&[model]);
        let _ = self.model_swaps_total.remove_label_values(&[model]);
        let _ = self.model_versions_loaded.remove_label_values(&[model]);
    }

    /// Registers a family defined elsewhere (e.g. `riskserve_sync_*` in
    /// `crate::sync`), so it is exported with the rest.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shed_reason_is_exported_at_zero_from_the_start() {
        let text = String::from_utf8(Metrics::new().render()).unwrap();
        for reason in SHED_REASONS {
            let line = format!("riskserve_requests_shed_total{{reason=\"{reason}\"}} 0");
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn retired_versions_leave_no_series_behind() {
        let m = Metrics::new();
        for v in 1..=500 {
            let h = m.version("credit-risk", v, []);
            h.inference_duration_seconds.observe(1e-5);
            h.predictions_low_risk.inc();
            m.model_version_serving.with_label_values(&["credit-risk", &v.to_string()]).set(1);
            if v > 1 {
                m.forget_version("credit-risk", v - 1, []);
            }
        }
        let text = String::from_utf8(m.render()).unwrap();
        let series = text.lines().filter(|l| l.starts_with("riskserve_predictions_total{")).count();
        assert_eq!(series, 2, "only the live version's two decision series remain");
        assert!(text.contains("version=\"500\""));
        let errors = text.lines().filter(|l| l.starts_with("riskserve_inference_errors_total{")).count();
        assert_eq!(errors, 1, "only the live version's inference error series remains");
        assert!(!text.contains("version=\"499\""));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
