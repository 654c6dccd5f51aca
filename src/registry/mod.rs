//! The set of loaded model versions and how requests find theirs.
//!
//! The serving set is an immutable [`Snapshot`] behind an `ArcSwap`. A request
//! loads it once, without locks, and clones the `Arc` of the one version it
//! uses, so that version stays alive until the request ends even if a swap
//! retires it meanwhile; the version is freed when its last request finishes.
//! Only the [`loader::Loader`] publishes snapshots (one pass at a time), after
//! every version in them has been read, verified, compiled and warmed up:
//! load-then-swap, never unload-then-load.

pub mod loader;
pub mod watcher;

use crate::metrics::{Metrics, VersionMetrics};
use crate::model::Model;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One loaded, servable model version.
#[derive(Debug)]
pub struct LoadedVersion {
    /// Model name (from its directory).
    pub name: String,
    /// Version (from its directory).
    pub version: u64,
    /// `version` as text, for headers and bodies.
    pub version_label: String,
    pub path: PathBuf,
    pub model: Model,
    pub loaded_at: SystemTime,
    pub load_seconds: f64,
    pub metrics: VersionMetrics,
}

/// The loaded versions of one model.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// Ascending by version; never empty.
    pub versions: BTreeMap<u64, Arc<LoadedVersion>>,
}

impl ServedModel {
    /// The version that takes unpinned traffic: the highest loaded.
    pub fn default_version(&self) -> Option<&Arc<LoadedVersion>> {
        self.versions.values().next_back()
    }
}

/// An immutable view of everything being served.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub models: BTreeMap<String, ServedModel>,
}

/// Why a request's model could not be resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupError {
    UnknownModel {
        name: String,
        known: Vec<String>,
    },
    VersionNotLoaded {
        name: String,
        version: u64,
        loaded: Vec<u64>,
    },
    /// The model directory exists but none of its versions loaded.
    NoVersionAvailable {
        name: String,
        reasons: Vec<String>,
    },
}

/// State of a version, as shown by `GET /v1/models`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    Loading,
    Available,
    Failed,
    /// Valid or untried, but not selected by the version policy.
    NotLoaded,
}

/// Status of one version directory.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    pub version: u64,
    pub state: VersionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True for the version taking unpinned traffic.
    pub serving: bool,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// What the file records: trained-as name/version, algorithm, threshold,
    /// training data fingerprint and metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::model::format::ModelMeta>,
}

/// Status of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<u64>,
    pub versions: Vec<VersionStatus>,
    /// A warning an operator should act on (e.g. every version removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The serving snapshot plus the status table.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    status: Mutex<BTreeMap<String, ModelStatus>>,
    pub metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>) -> Registry {
        Registry { current: ArcSwap::from_pointee(Snapshot::default()), status: Mutex::new(BTreeMap::new()), metrics }
    }

    /// The current snapshot (for listings; requests use [`Registry::resolve`]).
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
            let table = self.status_table();
            if let Some(status) = table.get(name) {
                let reasons = status
                    .versions
                    .iter()
                    .map(|v| format!("version {}: {}", v.version, v.reason.as_deref().unwrap_or("not loaded")))
                    .collect();
                return Err(LookupError::NoVersionAvailable { name: name.to_string(), reasons });
            }
            return Err(LookupError::UnknownModel { name: name.to_string(), known: table.into_keys().collect() });
        };
        match version {
            None => model
                .default_version()
                .cloned()
                .ok_or_else(|| LookupError::NoVersionAvailable { name: name.to_string(), reasons: Vec::new() }),
            Some(v) => model.versions.get(&v).cloned().ok_or_else(|| LookupError::VersionNotLoaded {
                name: name.to_string(),
                version: v,
                loaded: model.versions.keys().copied().collect(),
            }),
        }
    }

    /// Status of every model known on disk or served.
    pub fn status_table(&self) -> BTreeMap<String, ModelStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn set_status(&self, table: BTreeMap<String, ModelStatus>) {
        if let Ok(mut s) = self.status.lock() {
            *s = table;
        }
    }

    pub(crate) fn update_status(&self, f: impl FnOnce(&mut BTreeMap<String, ModelStatus>)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Ready when at least one model is served and every served model has an
    /// available version. A model directory whose versions all fail to load
    /// is reported in `/v1/models` and metrics but does not make the server
    /// unready: that would take every replica out of rotation at once for one
    /// bad file.
    pub fn is_ready(&self) -> bool {
        let snapshot = self.current.load();
        !snapshot.models.is_empty() && snapshot.models.values().all(|m| m.default_version().is_some())
    }
}

/// RFC 3339 text of a time.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
