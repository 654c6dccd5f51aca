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

use super::install;
use super::manifest::{FileEntry, Manifest, VersionFiles};
use super::publish::{publish_rollout_if, PublishError};
use super::revert::{self, Reverted};
use super::status::{Failed, SyncMetrics, SyncState, Verified, VersionFailure};
use super::store::{ManifestRead, Store, StoreError};
use crate::registry::loader::PassReport;
use crate::registry::rollout::MAX_ROLLOUT_FILE_BYTES;
use crate::registry::{rfc3339, Registry};
use crate::repository::layout::ROLLOUT_FILE_NAME;
use crate::repository::LocalDirectory;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{watch, Notify};

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

    /// Makes each model's local `rollout.toml` the one the manifest names
    /// (downloaded, verified, written atomically), or removes it when the
    /// manifest names none. A file that cannot be fetched or does not
    /// verify leaves the local one in force (the last good rollout) and is
    /// retried on the next poll. Returns whether any changed.
    async fn apply_rollouts(&mut self, manifest: &Manifest) -> bool {
        let before = self.state.rollouts();
        let accepted_before = self.state.rollout_files();
        let mut now = BTreeMap::new();
        let mut accepted = BTreeMap::new();
        let failed_before = std::mem::take(&mut self.rollout_failures);
        for (model, entry) in manifest.models.iter().filter_map(|(m, e)| Some((m, e.files.get(ROLLOUT_FILE_NAME)?))) {
            let same = !failed_before.contains_key(model)
                && self.applied.as_ref().and_then(|m| m.models.get(model)).and_then(|e| e.files.get(ROLLOUT_FILE_NAME))
                    == Some(entry);
            let known = before.get(model).copied();
            if let Some(fp) = known.filter(|fp| same && install::rollout_fingerprint(&self.local, model) == Some(*fp)) {
                now.insert(model.clone(), fp);
                accepted.insert(model.clone(), vec![entry.clone()]);
                continue;
            }
            if let Some(fp) = install::verify_rollout(&self.local, model, entry) {
                now.insert(model.clone(), fp);
                accepted.insert(model.clone(), vec![entry.clone()]);
                continue;
            }
            let fetched = match self.store.get_blob(&entry.path, entry.size.min(MAX_ROLLOUT_FILE_BYTES)).await {
                Ok(bytes) if entry.matches(&bytes) => {
                    self.metrics.downloaded_bytes_total.with_label_values(&["file"]).inc_by(bytes.len() as u64);
                    // A pass that reads the file between the rename and the
                    // end of this poll finds a content it accepts.
                    self.state.accept_rollout_file(model, entry);
                    install::install_rollout(&self.local, model, &bytes)
                        .map_err(|e| VersionFailure { reason: format!("writing it: {e}"), invalid: false })
                }
                Ok(_) | Err(StoreError::TooLarge { .. }) => {
                    Err(VersionFailure { reason: "does not match the manifest (size or sha256)".into(), invalid: true })
                }
                Err(e) => Err(VersionFailure { reason: e.to_string(), invalid: false }),
            };
            match fetched {
                Ok(fp) => {
                    tracing::info!(%model, "synced rollout file installed");
                    now.insert(model.clone(), fp);
                    accepted.insert(model.clone(), vec![entry.clone()]);
                }
                Err(e) => {
                    tracing::warn!(%model, error = %e.reason, "published rollout file not installed; the last one stays in force, retried on the next poll");
                    if let Some(fp) = known.filter(|fp| install::rollout_fingerprint(&self.local, model) == Some(*fp)) {
                        now.insert(model.clone(), fp);
                        if let Some(files) = accepted_before.get(model) {
                            accepted.insert(model.clone(), files.clone());
                        }
                    }
                    self.rollout_failures.insert(model.clone(), e);
                }
            }
        }
        for model in
            before.keys().filter(|m| !manifest.models.get(*m).is_some_and(|e| e.files.contains_key(ROLLOUT_FILE_NAME)))
        {
            match install::remove_rollout(&self.local, model) {
                Ok(()) => tracing::info!(%model, "rollout file removed from the manifest: local copy removed"),
                Err(e) => tracing::warn!(%model, error = %e, "cannot remove the local rollout file"),
            }
        }
        let changed = now != before;
        self.state.set_rollouts(now);
        self.state.set_rollout_files(accepted);
        changed
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

    /// The reverts of this replica's guards not yet published (and due):
    /// (model, the rollout in force, the published file it came from).
    fn pending_reverts(&self, registry: &Registry) -> Vec<(String, Arc<crate::registry::traffic::Rollout>, FileEntry)> {
        let snapshot = registry.snapshot();
        let mut out = Vec::new();
        for (model, served) in &snapshot.models {
            let Some(r) = served.rollout.as_ref().filter(|r| Reverted::of(r).any()) else { continue };
            let published =
                self.applied.as_ref().and_then(|m| m.models.get(model)).and_then(|e| e.files.get(ROLLOUT_FILE_NAME));
            let Some(published) = published else { continue };
            let key = revert_key(model, published, r);
            let due = self.revert_retries.get(&key).is_none_or(|(_, at)| Instant::now() >= *at);
            if due && !self.reverts_done.contains(&key) {
                out.push((model.clone(), r.clone(), published.clone()));
            }
        }
        out
    }

    /// Publishes the reverts of this replica's guards to the store, so every
    /// replica takes the candidate out of traffic (see [`super::revert`]).
    /// A failed publish is retried with backoff; a file already changed in
    /// the store (another replica's revert, an operator's edit) is left alone.
    pub async fn publish_reverts(&mut self, registry: &Registry) {
        for (model, rollout, published) in self.pending_reverts(registry) {
            let key = revert_key(&model, &published, &rollout);
            let local = std::fs::read(self.local.model_dir(&model).join(ROLLOUT_FILE_NAME)).unwrap_or_default();
            let at = rfc3339(SystemTime::now());
            let reverted = Reverted::of(&rollout);
            let Some(plan) =
                revert::plan(&rollout.policy, rollout.stable.version, &reverted, &published, &local, &self.name, &at)
            else {
                // The rollout in force is not the published file (a local
                // copy being replaced): nothing of ours to publish.
                self.reverts_done.insert(key);
                continue;
            };
            let write = publish_rollout_if(&self.store, &model, plan.bytes, Some(Some(plan.expected)));
            let outcome = match tokio::time::timeout(self.manifest_timeout, write).await {
                Ok(r) => r,
                Err(_) => Err(PublishError::Local {
                    path: self.store.url().into(),
                    reason: format!("timed out after {:?}", self.manifest_timeout),
                }),
            };
            match outcome {
                Ok(c) => {
                    self.metrics.fleet_reverts_total.with_label_values(&["published"]).inc();
                    tracing::warn!(%model, generation = c.generation, summary = %plan.summary, "fleet revert published: every replica takes the candidate out of traffic at its next poll");
                    self.reverts_done.insert(key.clone());
                    self.revert_retries.remove(&key);
                }
                Err(PublishError::FileChanged { .. }) => {
                    self.metrics.fleet_reverts_total.with_label_values(&["superseded"]).inc();
                    tracing::info!(%model, "fleet revert not published: the rollout file already changed in the store (another replica's revert or an operator's edit)");
                    self.reverts_done.insert(key.clone());
                    self.revert_retries.remove(&key);
                }
                Err(e) => {
                    self.metrics.fleet_reverts_total.with_label_values(&["error"]).inc();
                    let attempts = self.revert_retries.get(&key).map_or(0, |r| r.0) + 1;
                    let wait = Duration::from_secs(1).saturating_mul(1 << (attempts - 1).min(16)).min(MAX_BACKOFF);
                    tracing::warn!(%model, error = %e, attempts, retry_in = ?wait, "fleet revert not published yet (the local revert holds); retrying");
                    self.revert_retries.insert(key, (attempts, Instant::now() + wait));
                }
            }
        }
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

/// How the sync loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Mean time between polls (each wait is 75-125 % of it: jitter, so
    /// replicas do not poll in step).
    pub interval: Duration,
    /// The store unreachable this long makes sync stale.
    pub stale_after: Duration,
    /// Bound on one poll (manifest plus downloads).
    pub poll_timeout: Duration,
}

/// `d` scaled by a random factor in [0.75, 1.25).
pub fn jitter(d: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.75 + 0.5 * unit)
}

/// Wait before the next poll after `failures` failed polls in a row.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    interval.saturating_mul(1 << failures.min(16)).min(MAX_BACKOFF.max(interval))
}

/// What the loop needs from the running server: the registry (to see what
/// serves) and the reload machinery (to ask for a pass and see it done).
pub struct ServerHooks {
    pub registry: Arc<Registry>,
    pub trigger: Arc<Notify>,
    pub passes: watch::Receiver<PassReport>,
}

/// Runs the sync loop until the task is aborted.
pub async fn run(mut syncer: Syncer, hooks: ServerHooks, pacing: Pacing) {
    let ServerHooks { registry, trigger, mut passes } = hooks;
    let mut failures = 0u32;
    let mut last_success = Instant::now();
    let mut stale = false;
    loop {
        wait_publishing_reverts(&mut syncer, &registry, jitter(backoff(pacing.interval, failures))).await;
        match syncer.poll(pacing.poll_timeout).await {
            Ok(outcome) => {
                failures = 0;
                last_success = Instant::now();
                if stale {
                    stale = false;
                    syncer.metrics.stale.set(0);
                    syncer.state.update_status(|s| s.stale = false);
                    tracing::info!(source = %syncer.store.url(), "model sync recovered: the object store is reachable again");
                }
                if let Outcome::Updated { generation, installed, failed, changed } = outcome {
                    if changed {
                        tracing::info!(generation, installed, failed, "manifest generation applied");
                        // Two passes: one that may have listed before the swap, then ours.
                        for _ in 0..2 {
                            wait_for_pass(&trigger, &mut passes, pacing.poll_timeout).await;
                        }
                    }
                    syncer.mark_on_generation();
                }
                syncer.collect_retired(&registry);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let down_for = last_success.elapsed();
                if !stale && down_for >= pacing.stale_after {
                    stale = true;
                    syncer.metrics.stale.set(1);
                    syncer.state.update_status(|s| s.stale = true);
                    tracing::warn!(source = %syncer.store.url(), error = %e, ?down_for, "model sync is stale: the object store has been unreachable; serving the versions already here");
                } else {
                    tracing::warn!(error = %e, failures, next_in = ?backoff(pacing.interval, failures), "model sync poll failed; backing off");
                }
            }
        }
    }
}

/// How often the wait between polls looks for a revert of this replica's guards to publish.
pub const REVERT_CHECK: Duration = Duration::from_millis(20);

/// Waits `wait`, publishing this replica's reverts as soon as they happen
/// (a look at the snapshot every [`REVERT_CHECK`]: one atomic load).
async fn wait_publishing_reverts(syncer: &mut Syncer, registry: &Registry, wait: Duration) {
    let until = Instant::now() + wait;
    loop {
        if !syncer.pending_reverts(registry).is_empty() {
            syncer.publish_reverts(registry).await;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(REVERT_CHECK)).await;
    }
}

/// Asks for a reload pass and waits (bounded) until one completes.
async fn wait_for_pass(trigger: &Notify, passes: &mut watch::Receiver<PassReport>, bound: Duration) {
    passes.borrow_and_update();
    trigger.notify_one();
    let _ = tokio::time::timeout(bound, passes.changed()).await;
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
