//! The set of loaded model versions and how requests find theirs.
//!
//! - [`snapshot`]: the immutable [`Snapshot`] (serving set + status table)
//!   behind an `ArcSwap`. A request loads it once, without locks, and clones
//!   the `Arc` of the one version it uses, so that version stays alive until
//!   the request ends even if a swap retires it meanwhile.
//! - [`plan`]: the pure decision of a reload pass (listing + what is loaded +
//!   policy → next serving set and every version's state).
//! - [`loader`]: performs the loads the plan asks for and publishes.
//! - [`rollout`], [`traffic`], [`guards`], [`shadow`]: a model's
//!   `rollout.toml` (stable, canary, shadow, guards): the file, routing
//!   and the guard counters at run time, the pure guard evaluator, and
//!   shadow scoring off the request path.
//! - [`watcher`]: what triggers a pass (notify + periodic rescan), and the
//!   pass signal tests and operators can wait on.
//!
//! Only the loader publishes snapshots (one pass at a time), after every
//! version in them has been read, verified, compiled and warmed up:
//! load-then-swap, never unload-then-load.

pub mod deadline;
pub mod guards;
pub mod health;
pub mod loader;
pub mod plan;
pub mod rollout;
pub mod shadow;
pub mod snapshot;
pub mod traffic;
pub mod version;
pub mod watcher;

pub use snapshot::{
    rfc3339, LoadedVersion, LookupError, ModelStatus, RolloutStatus, ServedModel, Snapshot, VersionState, VersionStatus,
};

use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use health::ReloadHealth;
use std::sync::Arc;
use std::time::Duration;

/// The current snapshot, shared by requests (readers) and the loader (the
/// only writer).
pub struct Registry {
    current: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// Whether hot reload is alive (readiness reports it).
    pub reload_health: ReloadHealth,
    /// Where rollouts send shadow copies.
    pub(crate) shadow: shadow::ShadowQueue,
}

/// A resolved unpinned or pinned request: the version to use and, when a
/// rollout routed it, the rollout to report the outcome to.
pub struct Resolved {
    pub version: Arc<LoadedVersion>,
    pub rollout: Option<Arc<traffic::Rollout>>,
    /// The feature names any version of the model declares (see
    /// [`ServedModel::known`]).
    pub known: Arc<crate::model::fields::NameTable>,
}

impl Resolved {
    /// Reports how the request went (`None`: the model failed it) so the
    /// rollout's guards and shadow see it; the rows and predictions
    /// are moved to the shadow, if any. Nothing to do without a rollout.
    pub fn observe(
        &self,
        rows: crate::model::row::Rows,
        predictions: Option<Vec<crate::model::Prediction>>,
        elapsed: Duration,
    ) {
        if let Some(r) = &self.rollout {
            r.observe(&self.version, rows, predictions, elapsed);
        }
    }
}

impl Registry {
    /// Readiness turns 503 when no reload pass completes within `reload_stale_after`.
    pub fn new(metrics: Arc<Metrics>, reload_stale_after: Duration) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            metrics,
            reload_health: ReloadHealth::new(reload_stale_after),
            shadow: shadow::ShadowQueue::default(),
        }
    }

    /// The current snapshot, owned (for listings and status; requests use
    /// [`Registry::resolve`]).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a new snapshot and returns the previous one.
    pub(crate) fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }

    /// The version a request should use: pinned, or the model's default
    /// (for a model with a rollout, as a request without a key).
    pub fn resolve(&self, name: &str, version: Option<u64>) -> Result<Arc<LoadedVersion>, LookupError> {
        self.resolve_keyed(name, version, |_| None).map(|r| r.version)
    }

    /// [`Registry::resolve`] for a request with headers: an unpinned request
    /// to a model with a rollout is routed by its request key header
    /// (`x-request-id` unless the rollout names another), sticky per key;
    /// without the header (or with an empty one), by the rollout's counter.
    pub fn resolve_request(
        &self,
        name: &str,
        version: Option<u64>,
        headers: &hyper::HeaderMap,
    ) -> Result<Resolved, LookupError> {
        self.resolve_keyed(name, version, |key| headers.get(key).map(|v| v.as_bytes()).filter(|k| !k.is_empty()))
    }

    /// One lock-free load of the snapshot; the returned `Arc` keeps the
    /// version alive for the whole request.
    fn resolve_keyed<'h>(
        &self,
        name: &str,
        version: Option<u64>,
        key: impl FnOnce(&hyper::header::HeaderName) -> Option<&'h [u8]>,
    ) -> Result<Resolved, LookupError> {
        let snapshot = self.current.load();
        let Some(model) = snapshot.models.get(name) else {
            // Off the hot path: only requests for models not being served get here.
            return Err(match snapshot.status.get(name) {
                Some(status) => LookupError::NoVersionAvailable {
                    name: name.to_string(),
                    reasons: status
                        .versions
                        .iter()
                        .map(|v| format!("version {}: {}", v.version, v.reason.as_deref().unwrap_or("not loaded")))
                        .collect(),
                },
                None => LookupError::UnknownModel {
                    name: name.to_string(),
                    known: snapshot.status.keys().take(MAX_NAMES_LISTED).cloned().collect(),
                },
            });
        };
        match (version, &model.rollout) {
            (None, Some(rollout)) => {
                let picked = rollout.pick(key(&rollout.policy.request_key)).clone();
                Ok(Resolved { version: picked, rollout: Some(rollout.clone()), known: model.known.clone() })
            }
            (None, None) => model
                .default_version()
                .cloned()
                .map(|version| Resolved { version, rollout: None, known: model.known.clone() })
                .ok_or_else(|| LookupError::NoVersionAvailable { name: name.to_string(), reasons: Vec::new() }),
            (Some(v), _) => model
                .versions
                .get(&v)
                .cloned()
                .map(|version| Resolved { version, rollout: None, known: model.known.clone() })
                .ok_or_else(|| LookupError::VersionNotLoaded {
                    name: name.to_string(),
                    version: v,
                    loaded: model.versions.keys().take(MAX_NAMES_LISTED).copied().collect(),
                }),
        }
    }

    /// Ready when at least one model is served, every served model has an
    /// available version, and hot reload is alive. `Err` says why not. A
    /// model directory whose versions all fail to load is reported in
    /// `/v1/models` and metrics but does not make the server unready: that
    /// would take every replica out of rotation at once for one bad file.
    pub fn readiness(&self) -> Result<(), String> {
        let snapshot = self.current.load();
        if snapshot.models.is_empty() || !snapshot.models.values().all(|m| m.default_version().is_some()) {
            return Err("not ready: no model has an available version".into());
        }
        match self.reload_health.problem() {
            Some(problem) => Err(format!("not ready: {problem}")),
            None => Ok(()),
        }
    }
}

/// At most this many names or versions are listed in a 404 message, so an
/// error stays small however large the repository.
pub const MAX_NAMES_LISTED: usize = 20;
