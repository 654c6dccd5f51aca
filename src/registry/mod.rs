//! The set of loaded model versions and how requests find theirs.
//!
//! - [`snapshot`]: the immutable [`Snapshot`] (serving set + status table)
//!   behind an `ArcSwap`. A request loads it once, without locks, and clones
//!   the `Arc` of the one version it uses, so that version stays alive until
//!   the request ends even if a swap retires it meanwhile.
//! - [`plan`]: the pure decision of a reload pass (listing + what is loaded +
//!   policy → next serving set and every version's state).
//! - [`loader`]: performs the loads the plan asks for and publishes.
//! - [`watcher`]: what triggers a pass (notify + periodic rescan), and the
//!   pass signal tests and operators can wait on.
//!
//! Only the loader publishes snapshots (one pass at a time), after every
//! version in them has been read, verified, compiled and warmed up:
//! load-then-swap, never unload-then-load.

pub mod deadline;
pub mod health;
pub mod loader;
pub mod plan;
pub mod snapshot;
pub mod watcher;

pub use snapshot::{
    rfc3339, LoadedVersion, LookupError, ModelStatus, ServedModel, Snapshot, VersionState, VersionStatus,
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
}

impl Registry {
    /// Readiness turns 503 when no reload pass completes within `reload_stale_after`.
    pub fn new(metrics: Arc<Metrics>, reload_stale_after: Duration) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            metrics,
            reload_health: ReloadHealth::new(reload_stale_after),
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

    /// The version a request should use: pinned, or the model's default.
    /// One lock-free load of the snapshot; the returned `Arc` keeps the
    /// version alive for the whole request.
    pub fn resolve(&self, name: &str, version: Option<u64>) -> Result<Arc<LoadedVersion>, LookupError> {
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
        match version {
            None => model
                .default_version()
                .cloned()
                .ok_or_else(|| LookupError::NoVersionAvailable { name: name.to_string(), reasons: Vec::new() }),
            Some(v) => model.versions.get(&v).cloned().ok_or_else(|| LookupError::VersionNotLoaded {
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
