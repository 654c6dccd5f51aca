//! Rollout files → applied rollouts: reading each model's `rollout.toml`
//! (keeping the last good policy while a newer content is bad), building the
//! [`Rollout`] a model serves with from its loaded versions, and logging and
//! counting the transitions a new rollout makes.

use super::Loader;
use crate::registry::rollout::{self, RolloutPolicy, MAX_ROLLOUT_FILE_BYTES};
use crate::registry::snapshot::{LoadedVersion, RolloutStatus};
use crate::registry::traffic::Rollout;
use crate::repository::{Fingerprint, Listing};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A model's rollout file as last read.
pub(super) struct RolloutFile {
    fingerprint: Fingerprint,
    location: String,
    /// The last good policy read from this file (kept while a newer content is bad).
    good: Option<RolloutPolicy>,
    /// Why the current content is not applied.
    error: Option<String>,
}

impl Loader {
    /// The versions each model's last good rollout file names.
    pub(super) fn named_versions(&self) -> HashMap<String, Vec<u64>> {
        self.rollout_files
            .iter()
            .filter_map(|(name, f)| f.good.as_ref().map(|p| (name.clone(), p.named_versions())))
            .collect()
    }

    /// Reads the rollout files whose fingerprint changed. A file that cannot
    /// be read or is invalid keeps the last good policy in force, with the
    /// reason shown and counted; a removed file removes the rollout.
    pub(super) fn read_rollouts(&mut self, listing: &Listing) {
        self.rollout_files.retain(|name, _| listing.rollouts.contains_key(name));
        for (name, entry) in &listing.rollouts {
            if self.rollout_files.get(name).is_some_and(|f| f.fingerprint == entry.fingerprint) {
                continue;
            }
            let (source, model, listed) = (self.source.clone(), name.clone(), entry.clone());
            let read = self
                .worker
                .run(self.config.load_timeout, move || source.read_rollout(&model, &listed, MAX_ROLLOUT_FILE_BYTES));
            let parsed = match read {
                Ok(Ok(bytes)) => rollout::parse(&bytes).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("reading the rollout file {e}")),
            };
            let good = self.rollout_files.remove(name).and_then(|f| f.good);
            let (good, error) = match parsed {
                Ok(policy) => {
                    tracing::info!(model = %name, file = %entry.location, ?policy, "rollout file read");
                    (Some(policy), None)
                }
                Err(e) => {
                    self.registry.metrics.rollout.file_errors_total.with_label_values(&[name]).inc();
                    tracing::warn!(
                        model = %name, file = %entry.location, error = %e, keeps = ?good,
                        "rollout file not applied; the last good rollout stays in force"
                    );
                    (good, Some(e))
                }
            };
            let file = RolloutFile { fingerprint: entry.fingerprint, location: entry.location.clone(), good, error };
            self.rollout_files.insert(name.clone(), file);
        }
    }

    /// The rollout `name` serves with, given its serving versions: the
    /// previous one while nothing changed (it keeps its counters and any
    /// revert), a new one when the policy or its versions changed, the
    /// previous one when the new policy names a version that is not loaded.
    pub(super) fn apply_rollout(
        &self,
        name: &str,
        serving: &BTreeMap<u64, Arc<LoadedVersion>>,
        previous: Option<&Arc<Rollout>>,
    ) -> (Option<Arc<Rollout>>, Option<RolloutStatus>) {
        let Some(file) = self.rollout_files.get(name) else {
            if previous.is_some() {
                tracing::info!(model = %name, "rollout file removed: the highest version takes unpinned traffic");
                self.count_transition(name, "stable", "none");
            }
            return (None, None);
        };
        let mut error = file.error.clone();
        let built = match &file.good {
            None => None,
            Some(policy) if serving.is_empty() => {
                error.get_or_insert_with(|| format!("not applied: no version of {name} is loaded"));
                let _ = policy;
                None
            }
            Some(policy) => match self.build_rollout(name, policy, serving, previous) {
                Ok(r) => Some(r),
                Err(why) => {
                    error = Some(why);
                    // Keep the previous rollout while every version it uses still serves as it was.
                    previous
                        .filter(|p| {
                            let named = std::iter::once(&p.stable)
                                .chain(p.canary.as_ref().map(|c| &c.version))
                                .chain(p.shadow.as_ref().map(|c| &c.version));
                            named.into_iter().all(|v| serving.get(&v.version).is_some_and(|s| Arc::ptr_eq(s, v)))
                        })
                        .cloned()
                }
            },
        };
        let status = RolloutStatus { file: file.location.clone(), error, applied: built.clone() };
        (built, Some(status))
    }

    pub(super) fn build_rollout(
        &self,
        name: &str,
        policy: &RolloutPolicy,
        serving: &BTreeMap<u64, Arc<LoadedVersion>>,
        previous: Option<&Arc<Rollout>>,
    ) -> Result<Arc<Rollout>, String> {
        let get = |role: &str, v: u64| {
            serving.get(&v).cloned().ok_or_else(|| {
                format!("not applied: version {v} ({role}) is not loaded; the previous rollout, if any, stays in force")
            })
        };
        let canary = policy.canary.map(|c| get("canary", c.version)).transpose()?;
        let shadow = policy.shadow.map(|v| get("shadow", v)).transpose()?;
        let stable = match policy.stable {
            Some(v) => get("stable", v)?,
            None => serving
                .values()
                .rev()
                .find(|v| Some(v.version) != policy.canary.map(|c| c.version) && Some(v.version) != policy.shadow)
                .cloned()
                .ok_or_else(|| {
                    "not applied: no loaded version other than the canary and the shadow to be the stable one"
                        .to_string()
                })?,
        };
        // A shadow scores the rows the answering version decoded: each
        // feature it requires must be one every answering version declares.
        if let Some(sh) = &shadow {
            for baseline in std::iter::once(&stable).chain(canary.as_ref()) {
                if let Some(missing) = sh.scorer.fields().missing_from(baseline.scorer.fields()) {
                    return Err(format!(
                        "not applied: shadow version {} requires `{missing}`, which version {} does not declare, so \
                         it could not score the requests version {} answers; make `{missing}` optional in the shadow \
                         (train --optional) or shadow a version with the same inputs; the previous rollout, if any, \
                         stays in force",
                        sh.version, baseline.version, baseline.version
                    ));
                }
            }
        }
        if let Some(p) = previous.filter(|p| p.same_as(policy, &stable, canary.as_ref(), shadow.as_ref())) {
            return Ok(p.clone());
        }
        let queue = shadow.as_ref().and_then(|_| self.registry.shadow.sender());
        let next = Rollout::new(name, policy.clone(), stable, canary, shadow, self.registry.metrics.clone(), queue);
        self.note_transitions(name, previous.map(|p| p.as_ref()), &next);
        Ok(Arc::new(next))
    }

    /// Logs and counts what a new rollout changes.
    pub(super) fn note_transitions(&self, name: &str, previous: Option<&Rollout>, next: &Rollout) {
        let version = |c: Option<&crate::registry::traffic::Candidate>| c.map(|c| c.version.version);
        match previous {
            None => self.count_transition(name, "none", "stable"),
            Some(p) if p.stable.version != next.stable.version => self.count_transition(name, "stable", "stable"),
            Some(_) => {}
        }
        for (role, before, after) in [
            ("canary", previous.and_then(|p| p.canary.as_ref()), next.canary.as_ref()),
            ("shadow", previous.and_then(|p| p.shadow.as_ref()), next.shadow.as_ref()),
        ] {
            match (before, after) {
                (None, Some(_)) => self.count_transition(name, "stable", role),
                (Some(_), None) => self.count_transition(name, role, "stable"),
                (Some(b), Some(_)) if !b.is_active() => self.count_transition(name, "reverted", role),
                (Some(_), Some(_)) if version(before) != version(after) => self.count_transition(name, role, role),
                _ => {}
            }
        }
        tracing::info!(
            model = %name,
            stable = next.stable.version,
            canary = ?next.canary.as_ref().map(|c| (c.version.version, c.weight_bp)),
            shadow = ?version(next.shadow.as_ref()),
            "rollout applied"
        );
    }

    pub(super) fn count_transition(&self, name: &str, from: &str, to: &str) {
        self.registry.metrics.rollout.transitions_total.with_label_values(&[name, from, to, "rollout_file"]).inc();
    }
}

/// The versions a rollout in force uses.
pub(super) fn rollout_versions(r: &Rollout) -> impl Iterator<Item = u64> + '_ {
    std::iter::once(r.stable.version)
        .chain(r.canary.as_ref().map(|c| c.version.version))
        .chain(r.shadow.as_ref().map(|c| c.version.version))
}
