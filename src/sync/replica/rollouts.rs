//! The rollout side of a replica: each model's `rollout.toml` made the
//! one the manifest names (downloaded, verified, written atomically, or
//! removed), and this replica's guard reverts published to the store so the
//! whole fleet takes a bad candidate out of traffic ([`super::super::revert`]).

use super::super::manifest::{FileEntry, Manifest};
use super::super::publish::{publish_rollout_if, PublishError};
use super::super::revert::{self, Reverted};
use super::super::status::VersionFailure;
use super::super::store::StoreError;
use super::{install, revert_key, Syncer, MAX_BACKOFF};
use crate::registry::rollout::MAX_ROLLOUT_FILE_BYTES;
use crate::registry::{rfc3339, Registry};
use crate::repository::layout::ROLLOUT_FILE_NAME;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

impl Syncer {
    /// Makes each model's local `rollout.toml` the one the manifest names
    /// (downloaded, verified, written atomically), or removes it when the
    /// manifest names none. A file that cannot be fetched or does not
    /// verify leaves the local one in force (the last good rollout) and is
    /// retried on the next poll. Returns whether any changed.
    pub(super) async fn apply_rollouts(&mut self, manifest: &Manifest) -> bool {
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

    /// The reverts of this replica's guards not yet published (and due):
    /// (model, the rollout in force, the published file it came from).
    pub(super) fn pending_reverts(
        &self,
        registry: &Registry,
    ) -> Vec<(String, Arc<crate::registry::traffic::Rollout>, FileEntry)> {
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
}
