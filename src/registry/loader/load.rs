//! One version's load: read → size limit → digest → schema → compile →
//! smoke prediction under `load_timeout` on the deadline worker, its
//! metrics and log lines, and the outcome recorded (with retry backoff for
//! transient failures) for the fingerprint it was listed with.

use super::{Loader, PassReport};
use crate::drift::WindowSize;
use crate::model::format::LoadError;
use crate::model::import::VersionBytes;
use crate::model::limits::ModelLimits;
use crate::model::{Model, Scorer};
use crate::registry::deadline::DeadlineError;
use crate::registry::plan::{Known, LoadRequest};
use crate::registry::snapshot::LoadedVersion;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First retry delay after a transient failure; doubles up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Abandoned loads and listings still running: beyond this, new ones fail
/// at once instead of piling up more stuck threads.
pub const MAX_ABANDONED: usize = 8;

/// Turns a version's verified bytes into something that scores. Production
/// compiles a [`Model`]; tests may wrap it (e.g. a scorer that blocks until
/// released) to observe a swap exactly.
pub type ScorerFactory = Arc<dyn Fn(&str, u64, &VersionBytes) -> Result<Arc<dyn Scorer>, LoadError> + Send + Sync>;

/// The production [`ScorerFactory`]: [`Model::load`] under `limits`.
pub fn compile_models(limits: ModelLimits) -> ScorerFactory {
    Arc::new(move |name, number, version| {
        let mut model = Model::load(version, limits)?;
        // An imported file does not know where it is served from.
        if model.meta.model_name.is_empty() {
            (model.meta.model_name, model.meta.model_version) = (name.to_string(), number);
        }
        Ok(Arc::new(model) as Arc<dyn Scorer>)
    })
}

impl Loader {
    /// Reads and compiles one version and records the outcome for the
    /// fingerprint it was listed with.
    pub(super) fn load(&mut self, request: &LoadRequest, report: &mut PassReport) {
        let (name, entry) = (request.model.as_str(), &request.entry);
        let key = (name.to_string(), entry.version);
        let previous = self.known.get(&key);
        let in_memory = previous.and_then(|k| k.in_memory().cloned());
        let attempts = match previous {
            Some(Known::Failed { fingerprint, attempts, .. }) if *fingerprint == entry.fingerprint => *attempts,
            _ => 0,
        };
        let started = Instant::now();
        let result = self.load_with_deadline(name, entry);
        let seconds = started.elapsed().as_secs_f64();
        let metrics = &self.registry.metrics;
        metrics.model_load_duration_seconds.with_label_values(&[name]).observe(seconds);
        let fingerprint = entry.fingerprint;
        let known = match result {
            Ok(scorer) => {
                metrics.model_loads_total.with_label_values(&[name, "success"]).inc();
                report.loads_succeeded += 1;
                tracing::info!(
                    model = name,
                    version = entry.version,
                    location = %entry.location,
                    seconds,
                    digest = %scorer.digest(),
                    algorithm = %scorer.meta().algorithm,
                    "loaded model version"
                );
                let series = metrics.version(name, entry.version, scorer.fields().schema().names());
                let drift = self.config.drift.then_some(WindowSize {
                    max_predictions: self.config.drift_window,
                    max_age: self.config.drift_window_age,
                });
                let version = LoadedVersion::new(name, entry.version, entry.location.clone(), scorer, seconds, series);
                let version = Arc::new(version.with_drift(drift));
                Known::Loaded { fingerprint, version }
            }
            Err(e) => {
                metrics.model_loads_total.with_label_values(&[name, e.kind()]).inc();
                report.loads_failed += 1;
                tracing::warn!(
                    model = name,
                    version = entry.version,
                    location = %entry.location,
                    result = e.kind(),
                    reason = %e,
                    "model version not loaded; the current version keeps serving"
                );
                let reason = e.public_reason();
                let detail = e.to_string();
                // Transient failures come back with backoff; the others
                // when the file changes.
                let (retry_at, attempts) = if e.is_transient() {
                    let delay = FIRST_RETRY_DELAY.saturating_mul(1 << attempts.min(16)).min(MAX_RETRY_DELAY);
                    (Some(Instant::now() + delay), attempts + 1)
                } else {
                    (None, 0)
                };
                match in_memory {
                    Some(version) => {
                        tracing::warn!(
                            model = name,
                            version = entry.version,
                            "the file of a loaded version changed and does not load; the copy in memory keeps serving"
                        );
                        Known::Stale { fingerprint, reason, detail, version }
                    }
                    None => Known::Failed { fingerprint, reason, detail, retry_at, attempts },
                }
            }
        };
        self.known.insert(key, known);
    }

    /// Reads and compiles under `load_timeout` (see [`crate::registry::deadline`]).
    pub(super) fn load_with_deadline(
        &mut self,
        name: &str,
        entry: &crate::repository::VersionEntry,
    ) -> Result<Arc<dyn Scorer>, LoadError> {
        let (source, scorers, max_bytes) = (self.source.clone(), self.scorers.clone(), self.config.max_model_bytes);
        let (model, entry) = (name.to_string(), entry.clone());
        let pacing = crate::model::pacing::Pacing::share_of_a_core(self.config.load_pacing_percent);
        let load = move || {
            let read_and_compile = || {
                let bytes = source.read(&model, &entry, max_bytes)?;
                let settings = source.read_settings(&model, &entry, max_bytes)?;
                scorers(&model, entry.version, &VersionBytes { file: entry.file, bytes, settings })
            };
            match pacing {
                Some(pacing) => crate::model::pacing::paced(pacing, read_and_compile),
                None => read_and_compile(),
            }
        };
        self.worker.run(self.config.load_timeout, load).unwrap_or_else(|e| match e {
            DeadlineError::Panicked => Err(LoadError::Invalid(format!("loading this file {e}"))),
            e => Err(LoadError::Timeout(format!("reading and compiling {e}"))),
        })
    }
}
