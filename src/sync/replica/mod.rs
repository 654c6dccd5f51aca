//! The replica side: poll the manifest (If-None-Match, with per-replica
//! jitter), download what it names into staging under the local models
//! directory, verify size and SHA-256, fsync, rename into place, and only
//! then let the loader see it ([`super::SyncedSource`]). A version that
//! leaves the manifest is hidden from the loader first; its local copy is
//! deleted only once a published snapshot no longer serves it.
//!
//! A store outage changes nothing that serves: the poll fails, the loop
//! backs off, `riskserve_sync_stale` and a log line say so, readiness is
//! untouched, and the next successful poll resumes.
//!
//! One bad version does not hold back the others: a version whose object
//! does not verify (or cannot be fetched) is recorded as failed, listed to
//! the loader as a failed version (so `/v1/models/{name}` shows it and the
//! newest valid version serves, as with a bad local file), and retried
//! with backoff on later polls until it verifies or leaves the manifest.
//!
//! Rollout files and the fleet revert are in [`rollouts`]; the loop that
//! paces the polls in [`pacing`].

mod pacing;
mod rollouts;

pub use pacing::{backoff, jitter, run, Pacing, ServerHooks, REVERT_CHECK};

use super::install;
use super::manifest::{FileEntry, Manifest, VersionFiles};
use super::revert;
use super::status::{Failed, SyncMetrics, SyncState, Verified, VersionFailure};
use super::store::{ManifestRead, Store, StoreError};
use crate::registry::{rfc3339, Registry};
use crate::repository::layout::ROLLOUT_FILE_NAME;
use crate::repository::LocalDirectory;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Longest wait between polls while the store keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// First wait before a version that failed to install is fetched again;
/// doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_VERSION_RETRY: Duration = Duration::from_millis(500);

/// Why a poll did not bring the replica up to date.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{model} version {version}: {file} does not match the manifest (size or sha256): not installed")]
    Mismatch { model: String, version: u64, file: String },
    #[error("installing {model} version {version}: {reason}")]
    Install { model: String, version: u64, reason: String },
    #[error("the poll took longer than {0:?}")]
    Timeout(Duration),
}

impl SyncError {
    /// The `outcome` label: `invalid` for content that did not verify.
    fn outcome(&self) -> &'static str {
        if self.is_invalid() {
            "invalid"
        } else {
            "error"
        }
    }

    fn is_invalid(&self) -> bool {
        matches!(
            self,
            SyncError::Mismatch { .. }
                | SyncError::Store(StoreError::Manifest { .. })
                | SyncError::Store(StoreError::TooLarge { .. })
        )
    }
}

/// What one successful poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Absent,
    /// A manifest was read and applied: `installed` versions downloaded,
    /// `failed` versions it names not installed (retried later); `changed`
    /// when the set the loader sees changed (a reload pass is due).
    Updated {
        generation: u64,
        installed: usize,
        failed: usize,
        changed: bool,
    },
}

/// One revert of one applied rollout: (model, sha256 of the published
/// rollout file, when the rollout in force was applied, in ns since the epoch).
type RevertKey = (String, String, u128);

fn revert_key(model: &str, published: &FileEntry, rollout: &crate::registry::traffic::Rollout) -> RevertKey {
    let since = rollout.since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (model.to_string(), published.sha256.clone(), since)
}

/// A version that failed to install: when to fetch it again.
struct Retry {
    files: VersionFiles,
    failure: VersionFailure,
    attempts: u32,
    at: Instant,
}

/// The sync task's state.
pub struct Syncer {
    store: Store,
    local: LocalDirectory,
    state: Arc<SyncState>,
    metrics: SyncMetrics,
    max_bytes: u64,
    /// Bound on one manifest read: a store that hangs is an error soon, not
    /// after the client's 30 s.
    manifest_timeout: Duration,
    /// The manifest applied (verified on disk), and its ETag.
    applied: Option<Manifest>,
    etag: Option<String>,
    /// Versions left out of the manifest whose local copies wait until no
    /// snapshot serves them.
    retiring: BTreeSet<(String, u64)>,
    /// Versions of the applied manifest that failed to install.
    retries: BTreeMap<(String, u64), Retry>,
    /// First wait before fetching a failed version again.
    first_version_retry: Duration,
    /// Models whose published `rollout.toml` could not be installed (the
    /// local one, if any, stays), with the reason.
    rollout_failures: BTreeMap<String, VersionFailure>,
    /// Reverts handled (published, found superseded in the store, or not
    /// ours to publish), by [`RevertKey`].
    reverts_done: BTreeSet<RevertKey>,
    /// Reverts whose publish failed: attempts so far and when to try again.
    revert_retries: BTreeMap<RevertKey, (u32, Instant)>,
    /// This replica's name in the reverts it publishes.
    name: String,
}

impl Syncer {
    pub fn new(store: Store, models_dir: &Path, max_bytes: u64, metrics: SyncMetrics) -> Syncer {
        let state = Arc::new(SyncState::new(store.url()));
        Syncer {
            store,
            local: LocalDirectory::new(models_dir),
            state,
            metrics,
            max_bytes,
            manifest_timeout: Duration::from_secs(10),
            applied: None,
            etag: None,
            retiring: BTreeSet::new(),
            retries: BTreeMap::new(),
            first_version_retry: FIRST_VERSION_RETRY,
            rollout_failures: BTreeMap::new(),
            reverts_done: BTreeSet::new(),
            revert_retries: BTreeMap::new(),
            name: revert::replica_name(),
        }
    }

    /// Bounds each manifest read (default 10 s).
    pub fn with_manifest_timeout(mut self, timeout: Duration) -> Syncer {
        self.manifest_timeout = timeout;
        self
    }

    /// First wait before a failed version is fetched again (default
    /// [`FIRST_VERSION_RETRY`]; doubles per failure up to [`MAX_BACKOFF`]).
    pub fn with_version_retry(mut self, first: Duration) -> Syncer {
        self.first_version_retry = first;
        self
    }

    pub fn state(&self) -> &Arc<SyncState> {
        &self.state
    }

    /// Start-up without the store: the last applied manifest (if saved) and
    /// the local copies that still match it, so a replica restarted during
    /// an outage serves what it served. No ETag is kept: the first poll
    /// reads the manifest in full.
    pub fn restore(&mut self) {
        install::clean_staging(&self.local);
        let Some(manifest) = install::load_applied(&self.local) else { return };
        let mut verified = Verified::new();
        for (model, version, files) in manifest.versions() {
            match install::verify_local(&self.local, model, version, files) {
                Some(fp) => {
                    verified.entry(model.to_string()).or_default().insert(version, fp);
                }
                None => {
                    tracing::warn!(%model, version, "local copy does not match the saved manifest; not served until re-downloaded")
                }
            }
        }
        tracing::info!(
            generation = manifest.generation,
            versions = verified.values().map(BTreeMap::len).sum::<usize>(),
            "restored the last applied manifest from disk"
        );
        self.state.set_verified(verified);
        let mut rollouts = BTreeMap::new();
        let mut rollout_files = BTreeMap::new();
        for (model, entry) in manifest.models.iter().filter_map(|(m, e)| Some((m, e.files.get(ROLLOUT_FILE_NAME)?))) {
            if let Some(fp) = install::verify_rollout(&self.local, model, entry) {
                rollouts.insert(model.clone(), fp);
                rollout_files.insert(model.clone(), vec![entry.clone()]);
            }
        }
        self.state.set_rollouts(rollouts);
        self.state.set_rollout_files(rollout_files);
        self.state.update_status(|s| s.generation = Some(manifest.generation));
        self.metrics.manifest_generation_applied.set(manifest.generation as i64);
        self.applied = Some(manifest);
    }

    /// One poll, bounded by `timeout`, with its metrics and status recorded.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Outcome, SyncError> {
        let result = match tokio::time::timeout(timeout, self.poll_once()).await {
            Ok(r) => r,
            Err(_) => Err(SyncError::Timeout(timeout)),
        };
        let mut failures: Vec<String> = self
            .retries
            .iter()
            .map(|((model, version), r)| format!("{model} version {version}: {}", r.failure.reason))
            .collect();
        failures.extend(self.rollout_failures.iter().map(|(m, f)| format!("{m}/{ROLLOUT_FILE_NAME}: {}", f.reason)));
        let invalid =
            self.retries.values().any(|r| r.failure.invalid) || self.rollout_failures.values().any(|f| f.invalid);
        let outcome = match &result {
            Ok(Outcome::Unchanged) => "unchanged",
            Ok(Outcome::Absent) => "absent",
            Ok(Outcome::Updated { failed: 0, .. }) => "updated",
            Ok(Outcome::Updated { .. }) if invalid => "invalid",
            Ok(Outcome::Updated { .. }) => "error",
            Err(e) => e.outcome(),
        };
        self.metrics.polls_total.with_label_values(&[outcome]).inc();
        match &result {
            Ok(o) => {
                let last_error = match o {
                    Outcome::Updated { failed, .. } if *failed > 0 => Some(format!(
                        "{failed} published file(s) not installed, retried in the background: {}",
                        failures.join("; ")
                    )),
                    _ => None,
                };
                self.metrics.last_success_timestamp_seconds.set(unix_seconds());
                self.state.update_status(|s| {
                    s.last_success = Some(rfc3339(SystemTime::now()));
                    s.last_error = last_error;
                });
            }
            Err(e) => self.state.update_status(|s| s.last_error = Some(e.to_string())),
        }
        result
    }

    async fn poll_once(&mut self) -> Result<Outcome, SyncError> {
        // A verified copy changed on disk since (edited, deleted): forget
        // the ETag so this poll re-reads and repairs it.
        if self.local_copies_changed() {
            self.etag = None;
        }
        let read = tokio::time::timeout(self.manifest_timeout, self.store.read_manifest(self.etag.as_deref()));
        let (manifest, etag) = match read.await.map_err(|_| SyncError::Timeout(self.manifest_timeout))?? {
            ManifestRead::Unchanged => return Ok(Outcome::Unchanged),
            ManifestRead::Absent => return Ok(Outcome::Absent),
            ManifestRead::Found { manifest, etag, bytes } => {
                self.metrics.downloaded_bytes_total.with_label_values(&["manifest"]).inc_by(bytes);
                (manifest, etag)
            }
        };
        self.metrics.manifest_generation.set(manifest.generation as i64);
        self.state.update_status(|s| s.generation_seen = Some(manifest.generation));
        let (installed, changed) = self.apply(&manifest).await?;
        let failed = self.retries.len() + self.rollout_failures.len();
        // With versions left to retry, the next poll reads the manifest in
        // full again (a 304 would skip them).
        self.etag = if failed == 0 { etag } else { None };
        Ok(Outcome::Updated { generation: manifest.generation, installed, failed, changed })
    }

    fn local_copies_changed(&self) -> bool {
        self.state.verified().iter().any(|(model, versions)| {
            versions.iter().any(|(v, fp)| install::local_fingerprint(&self.local, model, *v) != Some(*fp))
        }) || self
            .state
            .rollouts()
            .iter()
            .any(|(model, fp)| install::rollout_fingerprint(&self.local, model) != Some(*fp))
    }

    /// Makes the local directory hold the manifest's versions, each
    /// verified; then swaps the verified set the loader sees. A version that
    /// cannot be installed (its object does not verify, or cannot be
    /// fetched) is recorded as failed and the others go ahead; it is fetched
    /// again with backoff. What is already downloaded stays on disk and is
    /// verified, not fetched, next time. Returns the versions downloaded and
    /// whether the set the loader sees changed.
    async fn apply(&mut self, manifest: &Manifest) -> Result<(usize, bool), SyncError> {
        let before = self.state.verified();
        let failed_before = self.state.failed();
        let mut verified = Verified::new();
        let mut failed = Failed::new();
        let mut installed = 0;
        for (model, version, files) in manifest.versions() {
            let known = before.get(model).and_then(|v| v.get(&version)).copied();
            let same_files = self.applied.as_ref().and_then(|m| m.version(model, version)) == Some(files);
            let key = (model.to_string(), version);
            let fp = match known {
                Some(fp) if same_files && install::local_fingerprint(&self.local, model, version) == Some(fp) => fp,
                _ => {
                    // A version that failed with these files waits for its retry time.
                    if let Some(r) = self.retries.get(&key).filter(|r| r.files == *files && Instant::now() < r.at) {
                        failed.entry(model.to_string()).or_default().insert(version, r.failure.clone());
                        continue;
                    }
                    match self.verify_local(model, version, files).await {
                        Some(fp) => fp,
                        None => match self.download(model, version, files).await {
                            Ok(fp) => {
                                installed += 1;
                                fp
                            }
                            Err(e) => {
                                let failure = VersionFailure { reason: e.to_string(), invalid: e.is_invalid() };
                                let attempts = self.retries.get(&key).map_or(0, |r| r.attempts) + 1;
                                let wait = self
                                    .first_version_retry
                                    .saturating_mul(1 << (attempts - 1).min(16))
                                    .min(MAX_BACKOFF);
                                tracing::warn!(
                                    %model, version, error = %e, attempts, retry_in = ?wait,
                                    "published version not installed; serving the others, retrying in the background"
                                );
                                failed.entry(model.to_string()).or_default().insert(version, failure.clone());
                                let at = Instant::now() + wait;
                                self.retries.insert(key, Retry { files: files.clone(), failure, attempts, at });
                                continue;
                            }
                        },
                    }
                }
            };
            self.retries.remove(&key);
            verified.entry(model.to_string()).or_default().insert(version, fp);
        }
        self.retries.retain(|(model, version), _| failed.get(model).is_some_and(|v| v.contains_key(version)));
        for (model, versions) in &before {
            for version in versions.keys() {
                if !verified.get(model).is_some_and(|v| v.contains_key(version)) {
                    self.retiring.insert((model.clone(), *version));
                }
            }
        }
        for (model, versions) in &verified {
            for version in versions.keys() {
                self.retiring.remove(&(model.clone(), *version));
            }
        }
        let rollouts_changed = self.apply_rollouts(manifest).await;
        let changed = verified != before || failed != failed_before || rollouts_changed;
        self.state.set_verified(verified);
        let failed_rollouts: Vec<String> = self.rollout_failures.keys().cloned().collect();
        self.state.set_failed(failed, &failed_rollouts);
        if let Err(e) = install::save_applied(&self.local, manifest) {
            tracing::warn!(error = %e, "cannot save the applied manifest; a restart during an outage will serve nothing until the store is back");
        }
        self.applied = Some(manifest.clone());
        Ok((installed, changed))
    }

    async fn verify_local(
        &self,
        model: &str,
        version: u64,
        files: &VersionFiles,
    ) -> Option<crate::repository::Fingerprint> {
        let (local, model, files) = (self.local.clone(), model.to_string(), files.clone());
        tokio::task::spawn_blocking(move || install::verify_local(&local, &model, version, &files)).await.ok().flatten()
    }

    async fn download(
        &self,
        model: &str,
        version: u64,
        files: &VersionFiles,
    ) -> Result<crate::repository::Fingerprint, SyncError> {
        let mut fetched = Vec::new();
        for (name, entry) in &files.files {
            let bytes = match self.store.get_blob(&entry.path, self.max_bytes.min(entry.size)).await {
                // Larger than the manifest says: not the file it names.
                Err(StoreError::TooLarge { .. }) if entry.size <= self.max_bytes => {
                    return Err(SyncError::Mismatch { model: model.into(), version, file: name.clone() })
                }
                got => got?,
            };
            self.metrics.downloaded_bytes_total.with_label_values(&["file"]).inc_by(bytes.len() as u64);
            if !entry.matches(&bytes) {
                return Err(SyncError::Mismatch { model: model.into(), version, file: name.clone() });
            }
            fetched.push((name.clone(), bytes));
        }
        let (local, m) = (self.local.clone(), model.to_string());
        let fp = tokio::task::spawn_blocking(move || install::install(&local, &m, version, &fetched))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|reason| SyncError::Install { model: model.into(), version, reason })?;
        self.metrics.versions_installed_total.inc();
        tracing::info!(%model, version, "synced version installed");
        Ok(fp)
    }

    /// Deletes the local copies of retired versions no snapshot serves any more.
    pub fn collect_retired(&mut self, registry: &Registry) {
        if self.retiring.is_empty() {
            return;
        }
        let snapshot = registry.snapshot();
        let mut kept = BTreeSet::new();
        for (model, version) in std::mem::take(&mut self.retiring) {
            let serving = snapshot.models.get(&model).is_some_and(|m| m.versions.contains_key(&version));
            if serving {
                kept.insert((model, version));
                continue;
            }
            match install::remove(&self.local, &model, version) {
                Ok(()) => {
                    self.metrics.versions_removed_total.inc();
                    tracing::info!(%model, version, "retired version's local copy removed");
                }
                Err(e) => {
                    tracing::warn!(%model, version, error = %e, "cannot remove a retired version's local copy");
                    kept.insert((model, version));
                }
            }
        }
        self.retiring = kept;
    }

    /// The manifest generation applied.
    pub fn generation(&self) -> Option<u64> {
        self.applied.as_ref().map(|m| m.generation)
    }

    /// Marks the replica as on its applied generation (call after a reload
    /// pass has listed it), unless some of its versions failed to install.
    pub fn mark_on_generation(&self) {
        if !self.retries.is_empty() || !self.rollout_failures.is_empty() {
            return;
        }
        if let Some(g) = self.generation() {
            self.metrics.manifest_generation_applied.set(g as i64);
            self.state.update_status(|s| s.generation = Some(g));
        }
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::repository::layout::MODEL_FILE_NAME;
    use crate::repository::ModelSource;
    use crate::sync::publish::{publish_files, unpublish};
    use crate::sync::publish::{publish_rollout, unpublish_rollout};
    use crate::sync::SyncedSource;
    use bytes::Bytes;

    fn setup() -> (tempfile::TempDir, Store, Syncer, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_parts(Arc::new(object_store::memory::InMemory::new()), "p", "memory://b/p");
        let metrics = Arc::new(Metrics::new());
        let sm = SyncMetrics::register(&metrics).unwrap();
        let syncer = Syncer::new(store.clone(), dir.path(), 1 << 20, sm);
        (dir, store, syncer, metrics)
    }

    fn file(bytes: &[u8]) -> Vec<(String, Bytes)> {
        vec![(MODEL_FILE_NAME.into(), Bytes::copy_from_slice(bytes))]
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn versions_appear_only_verified_and_leave_after_they_stop_serving() {
        let (dir, store, mut syncer, metrics) = setup();
        let source = SyncedSource::new(Arc::new(LocalDirectory::new(dir.path())), syncer.state().clone(), "x");
        assert_eq!(syncer.poll(T).await.unwrap(), Outcome::Absent);
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        publish_files(&store, "m", 2, file(b"two")).await.unwrap();
        assert_eq!(
            syncer.poll(T).await.unwrap(),
            Outcome::Updated { generation: 2, installed: 2, failed: 0, changed: true }
        );
        assert_eq!(std::fs::read(dir.path().join("m/2/model.json")).unwrap(), b"two");
        assert_eq!(source.list().unwrap().models["m"].len(), 2);
        assert_eq!(syncer.poll(T).await.unwrap(), Outcome::Unchanged, "an unchanged manifest is a 304");
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("riskserve_sync_polls_total{outcome=\"unchanged\"} 1"), "{text}");
        assert!(text.contains("riskserve_sync_downloaded_bytes_total{kind=\"file\"} 6"), "{text}");
        assert!(text.contains("riskserve_sync_manifest_generation 2"), "{text}");

        // Removed from the manifest: hidden from the loader at once, deleted
        // from disk only once no snapshot serves it.
        unpublish(&store, "m", 1).await.unwrap();
        assert_eq!(
            syncer.poll(T).await.unwrap(),
            Outcome::Updated { generation: 3, installed: 0, failed: 0, changed: true }
        );
        assert_eq!(source.list().unwrap().models["m"].iter().map(|e| e.version).collect::<Vec<_>>(), [2]);
        assert!(dir.path().join("m/1").exists(), "kept until a swap away from it is published");
        let registry = Registry::new(metrics.clone(), Duration::from_secs(60));
        syncer.collect_retired(&registry);
        assert!(!dir.path().join("m/1").exists(), "no snapshot serves it: gone");
        assert!(dir.path().join("m/2").exists());
    }

    #[tokio::test]
    async fn a_file_that_does_not_match_the_manifest_is_never_installed() {
        let (dir, store, mut syncer, _) = setup();
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        // Someone overwrites the content-addressed object with other bytes.
        let entry = FileEntry::for_bytes(b"one");
        store.inner().put(&store.full_key(&entry.path), Bytes::from_static(b"onE").into()).await.unwrap();
        let outcome = syncer.poll(T).await.unwrap();
        assert!(matches!(outcome, Outcome::Updated { installed: 0, failed: 1, .. }), "{outcome:?}");
        assert!(!dir.path().join("m/1").exists());
        assert!(syncer.state().verified().is_empty());
        assert!(syncer.state().failed()["m"][&1].invalid);
        let status = syncer.state().status();
        assert!(status.last_error.unwrap().contains("does not match the manifest"));
        assert_eq!(status.failed, ["m/1"]);
    }

    /// The newest version's object is junk: the older one is installed and
    /// listed, the bad one is listed as failed (reading it says why), and
    /// once a good object is there it is installed on a later poll.
    #[tokio::test]
    async fn a_bad_newest_version_does_not_hold_back_the_others_and_is_retried() {
        let (dir, store, syncer, metrics) = setup();
        let mut syncer = syncer.with_version_retry(Duration::ZERO);
        let source = SyncedSource::new(Arc::new(LocalDirectory::new(dir.path())), syncer.state().clone(), "s3://b/p");
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        publish_files(&store, "m", 2, file(b"two")).await.unwrap();
        let entry = FileEntry::for_bytes(b"two");
        store.inner().put(&store.full_key(&entry.path), Bytes::from_static(b"junk").into()).await.unwrap();

        let outcome = syncer.poll(T).await.unwrap();
        assert_eq!(outcome, Outcome::Updated { generation: 2, installed: 1, failed: 1, changed: true });
        let listing = source.list().unwrap();
        assert_eq!(listing.models["m"].iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(source.read("m", &listing.models["m"][0], 100).unwrap(), b"one");
        let err = source.read("m", &listing.models["m"][1], 100).unwrap_err();
        assert!(err.public_reason().contains("payload digest mismatch"), "{err}");
        assert!(err.to_string().contains("does not match the manifest"), "{err}");
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("riskserve_sync_polls_total{outcome=\"invalid\"} 1"), "{text}");
        // Not on the generation while a version is missing; polls re-read the manifest.
        syncer.mark_on_generation();
        assert_eq!(syncer.state().status().generation, None);
        let again = syncer.poll(T).await.unwrap();
        assert!(matches!(again, Outcome::Updated { installed: 0, failed: 1, changed: false, .. }), "{again:?}");

        // The good object is uploaded again (as a re-run publish does).
        store.inner().put(&store.full_key(&entry.path), Bytes::from_static(b"two").into()).await.unwrap();
        let healed = syncer.poll(T).await.unwrap();
        assert_eq!(healed, Outcome::Updated { generation: 2, installed: 1, failed: 0, changed: true });
        let listing = source.list().unwrap();
        assert_eq!(source.read("m", &listing.models["m"][1], 100).unwrap(), b"two");
        assert!(syncer.state().failed().is_empty());
        syncer.mark_on_generation();
        let status = syncer.state().status();
        assert_eq!((status.generation, status.last_error, status.failed.len()), (Some(2), None, 0));
        assert_eq!(syncer.poll(T).await.unwrap(), Outcome::Unchanged, "the ETag is kept again");
    }

    /// A published rollout file lands in the model directory, where the
    /// loader reads it; a bad object leaves the last one in force; a removed
    /// one is deleted.
    #[tokio::test]
    async fn rollout_files_follow_the_manifest_and_a_bad_object_keeps_the_last_good_one() {
        let (dir, store, mut syncer, metrics) = setup();
        let source = SyncedSource::new(Arc::new(LocalDirectory::new(dir.path())), syncer.state().clone(), "s3://b/p");
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        publish_rollout(&store, "m", Bytes::from_static(b"stable = 1\n")).await.unwrap();
        assert!(matches!(syncer.poll(T).await.unwrap(), Outcome::Updated { failed: 0, changed: true, .. }));
        assert_eq!(std::fs::read(dir.path().join("m/rollout.toml")).unwrap(), b"stable = 1\n");
        let listing = source.list().unwrap();
        assert_eq!(source.read_rollout("m", &listing.rollouts["m"], 100).unwrap(), b"stable = 1\n");

        // The next file's object is junk in the store: the last one stays.
        publish_rollout(&store, "m", Bytes::from_static(b"stable = 1\n# two\n")).await.unwrap();
        let entry = FileEntry::for_bytes(b"stable = 1\n# two\n");
        store.inner().put(&store.full_key(&entry.path), Bytes::from_static(b"junk").into()).await.unwrap();
        assert!(matches!(syncer.poll(T).await.unwrap(), Outcome::Updated { failed: 1, changed: false, .. }));
        assert_eq!(std::fs::read(dir.path().join("m/rollout.toml")).unwrap(), b"stable = 1\n");
        assert_eq!(source.list().unwrap().rollouts.len(), 1, "the last good file stays in force");
        assert_eq!(syncer.state().status().failed, ["m/rollout.toml"]);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("riskserve_sync_polls_total{outcome=\"invalid\"} 1"), "{text}");
        store
            .inner()
            .put(&store.full_key(&entry.path), Bytes::from_static(b"stable = 1\n# two\n").into())
            .await
            .unwrap();
        let o = syncer.poll(T).await.unwrap();
        assert!(matches!(o, Outcome::Updated { failed: 0, changed: true, .. }), "{o:?} {:?}", syncer.state().status());
        assert_eq!(std::fs::read(dir.path().join("m/rollout.toml")).unwrap(), b"stable = 1\n# two\n");

        // Edited by hand: repaired on the next poll.
        std::fs::write(dir.path().join("m/rollout.toml"), b"stable = 9\n").unwrap();
        assert!(matches!(syncer.poll(T).await.unwrap(), Outcome::Updated { changed: true, .. }));
        assert_eq!(std::fs::read(dir.path().join("m/rollout.toml")).unwrap(), b"stable = 1\n# two\n");

        unpublish_rollout(&store, "m").await.unwrap();
        assert!(matches!(syncer.poll(T).await.unwrap(), Outcome::Updated { changed: true, .. }));
        assert!(!dir.path().join("m/rollout.toml").exists());
        assert!(source.list().unwrap().rollouts.is_empty());
    }

    #[tokio::test]
    async fn an_edited_local_copy_is_repaired_and_a_restart_restores_without_the_store() {
        let (dir, store, mut syncer, _) = setup();
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        publish_rollout(&store, "m", Bytes::from_static(b"stable = 1\n")).await.unwrap();
        syncer.poll(T).await.unwrap();
        std::fs::write(dir.path().join("m/1/model.json"), b"tampered").unwrap();
        assert!(matches!(syncer.poll(T).await.unwrap(), Outcome::Updated { installed: 1, .. }));
        assert_eq!(std::fs::read(dir.path().join("m/1/model.json")).unwrap(), b"one");
        // A new replica process over the same directory, store down.
        let metrics = Metrics::new();
        let down = Store::from_parts(Arc::new(object_store::memory::InMemory::new()), "p", "memory://down");
        let mut restarted = Syncer::new(down, dir.path(), 1 << 20, SyncMetrics::register(&metrics).unwrap());
        restarted.restore();
        assert_eq!(restarted.state().verified()["m"].len(), 1);
        assert_eq!(restarted.state().status().generation, Some(2));
        // The rollout in force before the restart applies again.
        let source =
            SyncedSource::new(Arc::new(LocalDirectory::new(dir.path())), restarted.state().clone(), "memory://down");
        let listing = source.list().unwrap();
        assert_eq!(source.read_rollout("m", &listing.rollouts["m"], 100).unwrap(), b"stable = 1\n");
    }

    #[test]
    fn waits_are_jittered_and_backoff_is_bounded() {
        let d = Duration::from_secs(1);
        let waits: Vec<_> = (0..50).map(|_| jitter(d)).collect();
        assert!(waits.iter().all(|w| *w >= d.mul_f64(0.75) && *w < d.mul_f64(1.25)), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "replicas do not poll in step");
        assert_eq!(backoff(d, 0), d);
        assert_eq!(backoff(d, 2), 4 * d);
        assert_eq!(backoff(d, 40), MAX_BACKOFF);
    }
}
