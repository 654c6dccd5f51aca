//! What a syncing replica shares with the rest of the server: the set of
//! versions verified against the manifest (which the [`SyncedSource`]
//! filters the local listing by), the status `/v1/models` shows, and the
//! `riskserve_sync_*` metrics, and the versions the manifest names that
//! could not be installed (listed to the loader as failed versions, so
//! `/v1/models/{name}` shows them like a bad local file).

use super::manifest::FileEntry;
use crate::metrics::Metrics;
use crate::model::format::LoadError;
use crate::repository::{Fingerprint, ListError, Listing, ModelSource, RolloutEntry, VersionEntry};
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// Model → version → fingerprint of its verified `model.json`.
pub type Verified = BTreeMap<String, BTreeMap<u64, Fingerprint>>;

/// Model → version → why the manifest's version could not be installed.
pub type Failed = BTreeMap<String, BTreeMap<u64, VersionFailure>>;

/// Why one published version is not installed (it is retried in the background).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFailure {
    /// The full reason, for the log and the operator view.
    pub reason: String,
    /// True when the bytes in the store did not verify (size or SHA-256);
    /// false for a store error (e.g. the object is missing).
    pub invalid: bool,
}

impl VersionFailure {
    /// The error the loader records for this version.
    pub fn load_error(&self, location: &str) -> LoadError {
        if self.invalid {
            // "payload digest mismatch" is shown publicly in fixed words.
            LoadError::Invalid(format!("payload digest mismatch: {}; retried in the background", self.reason))
        } else {
            LoadError::Io { path: location.to_string(), reason: self.reason.clone() }
        }
    }

    /// A fingerprint no real file has (length 0, a hash of the reason), so
    /// the loader reads the version again once it verifies or fails otherwise.
    pub fn fingerprint(&self) -> Fingerprint {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.invalid, &self.reason).hash(&mut h);
        Fingerprint { len: 0, token: h.finish() }
    }
}

/// Shared between the sync task, the source it feeds and the routes.
#[derive(Debug, Default)]
pub struct SyncState {
    verified: RwLock<Verified>,
    failed: RwLock<Failed>,
    /// Model → fingerprint of the `rollout.toml` the sync task wrote.
    rollouts: RwLock<BTreeMap<String, Fingerprint>>,
    /// Model → the published rollout files its local `rollout.toml` may be
    /// (two while one replaces the other, else one).
    rollout_files: RwLock<BTreeMap<String, Vec<FileEntry>>>,
    status: Mutex<SyncStatus>,
}

/// The sync part of `GET /v1/models`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SyncStatus {
    /// The store URL.
    pub source: String,
    /// The manifest generation this replica is on: every version it lists
    /// is verified on local disk and a reload pass has taken it in.
    pub generation: Option<u64>,
    /// The newest manifest generation read from the store.
    pub generation_seen: Option<u64>,
    /// RFC 3339 time of the last poll that reached the store.
    pub last_success: Option<String>,
    /// True while the store has been unreachable for longer than the stale
    /// threshold; the replica keeps serving what it has.
    pub stale: bool,
    /// The last error, while it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Published versions this replica could not install (retried in the
    /// background), as `<model>/<version>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SyncState {
    pub fn new(source: &str) -> SyncState {
        SyncState {
            verified: RwLock::default(),
            failed: RwLock::default(),
            rollouts: RwLock::default(),
            rollout_files: RwLock::default(),
            status: Mutex::new(SyncStatus { source: source.to_string(), ..SyncStatus::default() }),
        }
    }

    pub fn verified(&self) -> Verified {
        self.verified.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_verified(&self, verified: Verified) {
        *self.verified.write().unwrap_or_else(|p| p.into_inner()) = verified;
    }

    pub fn rollouts(&self) -> BTreeMap<String, Fingerprint> {
        self.rollouts.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_rollouts(&self, rollouts: BTreeMap<String, Fingerprint>) {
        *self.rollouts.write().unwrap_or_else(|p| p.into_inner()) = rollouts;
    }

    pub fn rollout_files(&self) -> BTreeMap<String, Vec<FileEntry>> {
        self.rollout_files.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_rollout_files(&self, files: BTreeMap<String, Vec<FileEntry>>) {
        *self.rollout_files.write().unwrap_or_else(|p| p.into_inner()) = files;
    }

    /// Accepts `file` as `model`'s rollout file too (before it replaces the current one).
    pub fn accept_rollout_file(&self, model: &str, file: &FileEntry) {
        self.rollout_files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(model.to_string())
            .or_default()
            .push(file.clone());
    }

    pub fn failed(&self) -> Failed {
        self.failed.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the versions that could not be installed, and the status's list
    /// of them with the models whose rollout file could not be (`failed_rollouts`).
    pub fn set_failed(&self, failed: Failed, failed_rollouts: &[String]) {
        let mut names: Vec<String> =
            failed.iter().flat_map(|(m, vs)| vs.keys().map(move |v| format!("{m}/{v}"))).collect();
        names.extend(failed_rollouts.iter().map(|m| format!("{m}/{}", crate::repository::layout::ROLLOUT_FILE_NAME)));
        *self.failed.write().unwrap_or_else(|p| p.into_inner()) = failed;
        self.update_status(|s| s.failed = names);
    }

    pub fn status(&self) -> SyncStatus {
        lock(&self.status).clone()
    }

    pub fn update_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        f(&mut lock(&self.status));
    }
}

/// The local models directory as a source, showing only versions whose
/// files were verified against the manifest and have not changed since
/// (same fingerprint). Anything else on disk (a download in progress, a
/// version retired from the manifest, a file someone edited) is invisible
/// to the loader. Versions the manifest names that could not be installed
/// are listed with a fingerprint of their failure, and reading them fails
/// with it: the loader reports them failed and serves the newest valid one.
/// Rollout files are listed only for models the manifest gives one, and
/// read only when their bytes are a published file (a `rollout.toml` put
/// there or edited by hand is not applied: the store decides, and the loader
/// keeps the last good rollout, as for any bad file, until the sync task
/// restores it). While the sync task replaces a file, both the old and the
/// new published content are accepted, so a pass in between never sees the
/// rollout vanish.
pub struct SyncedSource {
    inner: Arc<dyn ModelSource>,
    state: Arc<SyncState>,
    url: String,
}

impl SyncedSource {
    pub fn new(inner: Arc<dyn ModelSource>, state: Arc<SyncState>, url: &str) -> SyncedSource {
        SyncedSource { inner, state, url: url.to_string() }
    }
}

impl ModelSource for SyncedSource {
    fn describe(&self) -> String {
        format!("{} synced into {}", self.url, self.inner.describe())
    }

    fn list(&self) -> Result<Listing, ListError> {
        let mut listing = self.inner.list()?;
        let verified = self.state.verified.read().unwrap_or_else(|p| p.into_inner());
        let failed = self.state.failed.read().unwrap_or_else(|p| p.into_inner());
        listing.models.retain(|name, entries| match verified.get(name) {
            Some(versions) => {
                entries.retain(|e| versions.get(&e.version) == Some(&e.fingerprint));
                true
            }
            None => failed.contains_key(name),
        });
        for (name, versions) in failed.iter() {
            let entries = listing.models.entry(name.clone()).or_default();
            for (version, failure) in versions {
                if entries.iter().all(|e| e.version != *version) {
                    let location = format!("{}/{name}/{version}", self.url);
                    entries.push(VersionEntry {
                        version: *version,
                        file: crate::repository::layout::MODEL_FILE_NAME,
                        fingerprint: failure.fingerprint(),
                        location,
                    });
                }
            }
            entries.sort_by_key(|e| e.version);
        }
        listing.rejected.retain(|r| r.model.as_ref().is_some_and(|m| verified.contains_key(m)));
        let rollout_files = self.state.rollout_files.read().unwrap_or_else(|p| p.into_inner());
        listing.rollouts.retain(|name, _| rollout_files.get(name).is_some_and(|files| !files.is_empty()));
        Ok(listing)
    }

    fn read(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
        let failure = {
            let failed = self.state.failed.read().unwrap_or_else(|p| p.into_inner());
            failed.get(model).and_then(|v| v.get(&entry.version)).cloned()
        };
        match failure {
            Some(f) if f.fingerprint() == entry.fingerprint => Err(f.load_error(&entry.location)),
            _ => self.inner.read(model, entry, max_bytes),
        }
    }

    fn read_settings(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Option<Vec<u8>>, LoadError> {
        self.inner.read_settings(model, entry, max_bytes)
    }

    fn read_rollout(&self, model: &str, entry: &RolloutEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
        let bytes = self.inner.read_rollout(model, entry, max_bytes)?;
        let accepted = self.state.rollout_files.read().unwrap_or_else(|p| p.into_inner());
        if accepted.get(model).is_some_and(|files| files.iter().any(|f| f.matches(&bytes))) {
            Ok(bytes)
        } else {
            Err(LoadError::Invalid(format!(
                "{}: not the rollout file published in {} (changed by hand?); the sync task restores it",
                entry.location, self.url
            )))
        }
    }
}

/// The `riskserve_sync_*` metric families.
#[derive(Debug, Clone)]
pub struct SyncMetrics {
    pub polls_total: IntCounterVec,
    pub downloaded_bytes_total: IntCounterVec,
    pub last_success_timestamp_seconds: Gauge,
    pub manifest_generation: IntGauge,
    pub manifest_generation_applied: IntGauge,
    pub stale: IntGauge,
    pub versions_installed_total: IntCounter,
    pub versions_removed_total: IntCounter,
    pub fleet_reverts_total: IntCounterVec,
}

impl SyncMetrics {
    /// Creates the families and registers them with the server's registry.
    pub fn register(metrics: &Metrics) -> prometheus::Result<SyncMetrics> {
        let m = SyncMetrics {
            polls_total: IntCounterVec::new(
                Opts::new(
                    "riskserve_sync_polls_total",
                    "Manifest polls of the object store, by outcome: unchanged (304), updated, absent (no manifest \
                     yet), error (store unreachable or a download failed), invalid (manifest or file did not verify).",
                ),
                &["outcome"],
            )?,
            downloaded_bytes_total: IntCounterVec::new(
                Opts::new(
                    "riskserve_sync_downloaded_bytes_total",
                    "Body bytes downloaded from the object store, by kind: manifest, file.",
                ),
                &["kind"],
            )?,
            last_success_timestamp_seconds: Gauge::new(
                "riskserve_sync_last_success_timestamp_seconds",
                "Unix time of the last manifest poll that reached the object store.",
            )?,
            manifest_generation: IntGauge::new(
                "riskserve_sync_manifest_generation",
                "Newest manifest generation read from the object store.",
            )?,
            manifest_generation_applied: IntGauge::new(
                "riskserve_sync_manifest_generation_applied",
                "Manifest generation this replica is on (verified on disk and taken in by a reload pass).",
            )?,
            stale: IntGauge::new(
                "riskserve_sync_stale",
                "1 while the object store has been unreachable past the stale threshold (serving continues).",
            )?,
            versions_installed_total: IntCounter::new(
                "riskserve_sync_versions_installed_total",
                "Versions downloaded, verified and renamed into the models directory.",
            )?,
            versions_removed_total: IntCounter::new(
                "riskserve_sync_versions_removed_total",
                "Local copies removed after their version left the manifest and stopped serving.",
            )?,
            fleet_reverts_total: IntCounterVec::new(
                Opts::new(
                    "riskserve_sync_fleet_reverts_total",
                    "Reverts of this replica's rollout guards published to the object store, by outcome: published, \
                     superseded (the rollout file had already changed: another replica's revert or an operator's \
                     edit), error (store unreachable; retried with backoff, the local revert holds).",
                ),
                &["outcome"],
            )?,
        };
        for outcome in ["published", "superseded", "error"] {
            m.fleet_reverts_total.with_label_values(&[outcome]);
        }
        for outcome in ["unchanged", "updated", "absent", "error", "invalid"] {
            m.polls_total.with_label_values(&[outcome]);
        }
        for kind in ["manifest", "file"] {
            m.downloaded_bytes_total.with_label_values(&[kind]);
        }
        for c in [
            Box::new(m.polls_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.downloaded_bytes_total.clone()),
            Box::new(m.last_success_timestamp_seconds.clone()),
            Box::new(m.manifest_generation.clone()),
            Box::new(m.manifest_generation_applied.clone()),
            Box::new(m.stale.clone()),
            Box::new(m.versions_installed_total.clone()),
            Box::new(m.versions_removed_total.clone()),
            Box::new(m.fleet_reverts_total.clone()),
        ] {
            metrics.register(c)?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::LocalDirectory;

    #[test]
    fn the_source_lists_only_verified_unchanged_versions() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDirectory::new(dir.path());
        for v in [1, 2, 3] {
            local.publish("m", v, b"x").unwrap();
        }
        local.publish("other", 1, b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("m/007")).unwrap();
        let state = Arc::new(SyncState::new("s3://b/p"));
        let source = SyncedSource::new(Arc::new(local.clone()), state.clone(), "s3://b/p");
        assert!(source.list().unwrap().models.is_empty(), "nothing verified, nothing listed");
        let fp = |v| super::super::install::local_fingerprint(&local, "m", v).unwrap();
        let stale = Fingerprint { len: 1, token: 0 };
        state.set_verified(BTreeMap::from([("m".into(), BTreeMap::from([(1, fp(1)), (2, stale), (3, fp(3))]))]));
        let listing = source.list().unwrap();
        assert_eq!(listing.models.keys().collect::<Vec<_>>(), ["m"]);
        assert_eq!(listing.models["m"].iter().map(|e| e.version).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(listing.rejected.len(), 1, "the model's own rejected entries still show");
        assert!(source.describe().starts_with("s3://b/p synced into directory"));
        assert_eq!(source.read("m", &listing.models["m"][0], 10).unwrap(), b"x");
        // A rollout file shows only for a model the manifest gives one, and
        // reads only as a published file.
        std::fs::write(dir.path().join("m/rollout.toml"), "stable = 1\n").unwrap();
        assert!(source.list().unwrap().rollouts.is_empty(), "put there by hand: not applied");
        state.accept_rollout_file("m", &FileEntry::for_bytes(b"stable = 1\n"));
        let listing = source.list().unwrap();
        assert_eq!(source.read_rollout("m", &listing.rollouts["m"], 100).unwrap(), b"stable = 1\n");
        std::fs::write(dir.path().join("m/rollout.toml"), "stable = 3\n").unwrap();
        let listing = source.list().unwrap();
        let err = source.read_rollout("m", &listing.rollouts["m"], 100).unwrap_err();
        assert!(err.to_string().contains("not the rollout file published in s3://b/p"), "{err}");
        // While a file replaces another, both are accepted.
        state.accept_rollout_file("m", &FileEntry::for_bytes(b"stable = 3\n"));
        assert_eq!(source.read_rollout("m", &listing.rollouts["m"], 100).unwrap(), b"stable = 3\n");
    }
}
