//! The loader: the doing half of a reload pass. It lists the source, asks
//! [`plan::next_step`] what to do, performs the loads it asks for (read →
//! size limit → digest → schema → compile → smoke prediction, on the calling
//! blocking thread, never on the request path) until the plan is complete,
//! then publishes the serving set and the status table in one snapshot.
//!
//! Each load runs on its own thread under `load_timeout`: a load that does
//! not finish (a hung mount, a pathological file) is abandoned and counted
//! as `timeout`, and the pass goes on with the other versions. Transient
//! failures (I/O errors, timeouts) are retried with exponential backoff
//! even if the file does not change; the pass report says when.
//!
//! It also owns the side effects of a pass: metric series (resolved when a
//! version loads, removed when it retires), the serving gauges, and logging
//! each operator warning once. A retired version's memory is freed when its
//! last in-flight request drops its `Arc`.

use super::deadline::{DeadlineError, DeadlineRunner};
use super::plan::{self, Known, KnownVersions, LoadRequest, Planned, Step};
use super::rollout::{self, RolloutPolicy, MAX_ROLLOUT_FILE_BYTES};
use super::snapshot::{
    IgnoredEntry, LoadedVersion, ModelStatus, RolloutStatus, ServedModel, Snapshot, VersionState, VersionStatus,
};
use super::traffic::Rollout;
use super::Registry;
use crate::config::Config;
use crate::model::format::LoadError;
use crate::model::limits::ModelLimits;
use crate::model::{Model, Scorer};
use crate::repository::Rejected;
use crate::repository::{Fingerprint, Listing, ModelSource};
use std::collections::{BTreeMap, HashMap, HashSet};
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
pub type ScorerFactory = Arc<dyn Fn(&str, u64, &[u8]) -> Result<Arc<dyn Scorer>, LoadError> + Send + Sync>;

/// The production [`ScorerFactory`]: [`Model::from_bytes_with`] under `limits`.
pub fn compile_models(limits: ModelLimits) -> ScorerFactory {
    Arc::new(move |_, _, bytes| Model::from_bytes_with(bytes, limits).map(|m| Arc::new(m) as Arc<dyn Scorer>))
}

/// What one pass did; published on the reloader's pass signal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Passes completed so far by this loader, this one included.
    pub seq: u64,
    /// Models whose set of loaded versions changed (a swap was published).
    pub swapped: Vec<String>,
    pub loads_succeeded: usize,
    pub loads_failed: usize,
    /// When a transient failure is due for a retry (the reload loop wakes then).
    pub next_retry: Option<Instant>,
    /// The source could not be listed: nothing changed.
    pub list_error: Option<String>,
    /// Entries the listing had (models, versions, rejected entries): the
    /// watcher uses it to notice that the tree it watches shrank a lot.
    pub listed_entries: usize,
}

pub struct Loader {
    config: Arc<Config>,
    source: Arc<dyn ModelSource>,
    scorers: ScorerFactory,
    registry: Arc<Registry>,
    known: KnownVersions<Arc<LoadedVersion>>,
    /// Last operator warning logged per model, so it is logged once.
    warned: HashMap<String, String>,
    /// Rejected entries already logged (logged again only after they vanish).
    rejected_seen: HashSet<(Option<String>, String)>,
    passes: u64,
    /// Runs listings and loads under `load_timeout` on a reused worker.
    worker: DeadlineRunner,
    /// Each model's `rollout.toml` as last read, by model.
    rollout_files: HashMap<String, RolloutFile>,
    /// (model, shadow version, baseline version) of every shadow comparison
    /// a rollout has written series for: removed when either version retires.
    shadow_pairs: HashSet<(String, u64, u64)>,
}

/// A model's rollout file as last read.
struct RolloutFile {
    fingerprint: Fingerprint,
    location: String,
    /// The last good policy read from this file (kept while a newer content is bad).
    good: Option<RolloutPolicy>,
    /// Why the current content is not applied.
    error: Option<String>,
}

impl Loader {
    pub fn new(
        config: Arc<Config>,
        source: Arc<dyn ModelSource>,
        scorers: ScorerFactory,
        registry: Arc<Registry>,
    ) -> Loader {
        Loader {
            config,
            source,
            scorers,
            registry,
            known: HashMap::new(),
            warned: HashMap::new(),
            rejected_seen: HashSet::new(),
            passes: 0,
            worker: DeadlineRunner::new("riskserve-load", MAX_ABANDONED),
            rollout_files: HashMap::new(),
            shadow_pairs: HashSet::new(),
        }
    }

    /// One reconcile pass. Never fails the server: a source that cannot be
    /// listed keeps the current snapshot and is logged.
    pub fn reconcile(&mut self) -> PassReport {
        self.passes += 1;
        let mut report = PassReport { seq: self.passes, ..PassReport::default() };
        let source = self.source.clone();
        let listed = self.worker.run(self.config.load_timeout, move || source.list());
        let listing = match listed
            .map_err(|e| format!("listing {}: {e}", self.source.describe()))
            .and_then(|l| l.map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) => {
                self.warn_once("*", &e);
                report.list_error = Some(e);
                return report;
            }
        };
        self.warned.remove("*");
        report.listed_entries =
            listing.models.len() + listing.models.values().map(Vec::len).sum::<usize>() + listing.rejected.len();
        self.note_rejected(&listing.rejected);
        let current = self.registry.snapshot();
        let serving_now: BTreeMap<String, BTreeMap<u64, Arc<LoadedVersion>>> =
            current.models.iter().map(|(name, m)| (name.clone(), m.versions.clone())).collect();
        self.read_rollouts(&listing);
        let config = self.config.clone();
        let policy_of = |name: &str| config.policy(name).clone();
        // Versions the rollout files name, and those the rollouts in force
        // use (kept until a new rollout is applied without them).
        let mut named: HashMap<String, Vec<u64>> = self.named_versions();
        for (name, m) in &current.models {
            if let Some(r) = &m.rollout {
                named.entry(name.clone()).or_default().extend(rollout_versions(r));
            }
        }
        let pinned_of = |name: &str| named.get(name).cloned().unwrap_or_default();
        let mut shown_loading = false;
        let plan = loop {
            match plan::next_step(&listing, &self.known, &serving_now, &policy_of, &pinned_of, Instant::now()) {
                Step::Publish(plan) => break plan,
                Step::Load(requests) => {
                    if !shown_loading {
                        self.show_loading(&current, &requests);
                        shown_loading = true;
                    }
                    for request in &requests {
                        self.load(request, &mut report);
                    }
                }
            }
        };

        report.next_retry = plan.next_retry;
        let mut next = Snapshot::default();
        for (name, model) in plan.models {
            match &model.warning {
                Some(w) => self.warn_once(&name, w),
                None => {
                    self.warned.remove(&name);
                }
            }
            let previous = current.models.get(&name).and_then(|m| m.rollout.as_ref());
            let (rollout, rollout_status) = self.apply_rollout(&name, &model.serving, previous);
            let serving_version = match &rollout {
                Some(r) => Some(r.default_version().version),
                None => model.serving.keys().next_back().copied(),
            };
            let versions = model
                .versions
                .iter()
                .map(|v| {
                    let mut row = match &v.state {
                        Planned::Serving(lv) => VersionStatus::available(lv),
                        Planned::ServingStale { version, reason } => VersionStatus {
                            reason: Some(format!("serving the copy loaded earlier; the changed file: {reason}")),
                            ..VersionStatus::available(version)
                        },
                        Planned::Kept(lv) => VersionStatus {
                            reason: Some("kept serving: no other version of this model is loadable".into()),
                            ..VersionStatus::available(lv)
                        },
                        Planned::Failed(reason) => {
                            VersionStatus::unloaded(v.version, &v.location, VersionState::Failed, Some(reason.clone()))
                        }
                        Planned::NotSelected(reason) => VersionStatus::unloaded(
                            v.version,
                            &v.location,
                            VersionState::NotLoaded,
                            Some(reason.clone()),
                        ),
                    };
                    row.serving = Some(v.version) == serving_version && row.state == VersionState::Available;
                    if self.config.operator_view && row.reason.is_some() {
                        row.detail =
                            self.known.get(&(name.clone(), v.version)).and_then(Known::detail).map(str::to_string);
                    }
                    row
                })
                .collect();
            next.status.insert(
                name.clone(),
                ModelStatus {
                    name: name.clone(),
                    version_policy: model.policy,
                    serving_version,
                    versions,
                    ignored: model.ignored.iter().map(IgnoredEntry::from).collect(),
                    warning: model.warning,
                    rollout: rollout_status,
                },
            );
            if !model.serving.is_empty() {
                let known = ServedModel::known_names(&model.serving, current.models.get(&name));
                next.models.insert(name, ServedModel { versions: model.serving, rollout, known });
            }
        }

        // Forget what is neither served nor listed: retired versions must
        // not be kept alive by this cache.
        self.known.retain(|(name, version), k| match k.in_memory() {
            Some(v) => next.models.get(name).and_then(|m| m.versions.get(version)).is_some_and(|s| Arc::ptr_eq(s, v)),
            None => listing.models.get(name).is_some_and(|entries| entries.iter().any(|e| e.version == *version)),
        });
        // Warnings of models that are gone are forgotten too, and neither
        // table keeps the capacity a burst of junk directories gave it.
        self.warned.retain(|key, _| key == "*" || next.status.contains_key(key));
        shrink_if_sparse(&mut self.known);
        shrink_if_sparse(&mut self.warned);

        // Models gone from the source and no longer served lose their series.
        for name in current.status.keys().filter(|n| !next.status.contains_key(*n)) {
            self.registry.metrics.forget_model(name);
        }
        self.note_shadow_pairs(&next);
        // Versions only a superseded rollout kept loaded go in a pass right after this one.
        let needed = self.named_versions();
        let superseded = next.models.iter().any(|(name, m)| {
            let mut still = needed.get(name).cloned().unwrap_or_default();
            still.extend(m.rollout.iter().flat_map(|r| rollout_versions(r)));
            named.get(name).is_some_and(|pinned| pinned.iter().any(|v| !still.contains(v)))
        });
        if superseded {
            report.next_retry = Some(Instant::now());
        }
        report.swapped = changed_models(&current, &next);
        let mut regauged = report.swapped.clone();
        regauged.extend(changed_rollouts(&current, &next).into_iter().filter(|n| !report.swapped.contains(n)));
        self.update_gauges(&current, &next, &regauged);
        self.forget_retired_shadows(&current, &next);
        for name in &report.swapped {
            let loaded: Vec<u64> =
                next.models.get(name).map(|m| m.versions.keys().copied().collect()).unwrap_or_default();
            tracing::info!(
                model = %name,
                before = ?current.serving_version(name),
                after = ?next.serving_version(name),
                ?loaded,
                "swapped in new model snapshot"
            );
            self.registry.metrics.model_swaps_total.with_label_values(&[name]).inc();
        }
        // One store publishes the serving set and the status together. The
        // old snapshot is dropped here; each retired version is freed when
        // its last in-flight request ends.
        drop(self.registry.publish(next));
        report
    }

    /// The versions each model's last good rollout file names.
    fn named_versions(&self) -> HashMap<String, Vec<u64>> {
        self.rollout_files
            .iter()
            .filter_map(|(name, f)| f.good.as_ref().map(|p| (name.clone(), p.named_versions())))
            .collect()
    }

    /// Reads the rollout files whose fingerprint changed. A file that cannot
    /// be read or is invalid keeps the last good policy in force, with the
    /// reason shown and counted; a removed file removes the rollout.
    fn read_rollouts(&mut self, listing: &Listing) {
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
    fn apply_rollout(
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

    fn build_rollout(
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
    fn note_transitions(&self, name: &str, previous: Option<&Rollout>, next: &Rollout) {
        let version = |c: Option<&super::traffic::Candidate>| c.map(|c| c.version.version);
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

    fn count_transition(&self, name: &str, from: &str, to: &str) {
        self.registry.metrics.rollout.transitions_total.with_label_values(&[name, from, to, "rollout_file"]).inc();
    }

    /// Publishes the current serving set with the versions about to load
    /// marked `loading`, so `/v1/models` shows a slow load while it runs.
    fn show_loading(&self, current: &Snapshot, requests: &[LoadRequest]) {
        let mut status = current.status.clone();
        for r in requests {
            let Some(model) = status.get_mut(&r.model) else { continue };
            match model.versions.iter_mut().find(|v| v.version == r.entry.version) {
                Some(row) => row.state = VersionState::Loading,
                None => {
                    model.versions.push(VersionStatus::unloaded(
                        r.entry.version,
                        &r.entry.location,
                        VersionState::Loading,
                        None,
                    ));
                    model.versions.sort_by_key(|v| std::cmp::Reverse(v.version));
                }
            }
        }
        drop(self.registry.publish(Snapshot { models: current.models.clone(), status }));
    }

    /// Reads and compiles one version and records the outcome for the
    /// fingerprint it was listed with.
    fn load(&mut self, request: &LoadRequest, report: &mut PassReport) {
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
                let version =
                    Arc::new(LoadedVersion::new(name, entry.version, entry.location.clone(), scorer, seconds, series));
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

    /// Reads and compiles under `load_timeout` (see [`super::deadline`]).
    fn load_with_deadline(
        &mut self,
        name: &str,
        entry: &crate::repository::VersionEntry,
    ) -> Result<Arc<dyn Scorer>, LoadError> {
        let (source, scorers, max_bytes) = (self.source.clone(), self.scorers.clone(), self.config.max_model_bytes);
        let (model, entry) = (name.to_string(), entry.clone());
        let pacing = crate::model::pacing::Pacing::share_of_a_core(self.config.load_pacing_percent);
        let load = move || {
            let read_and_compile =
                || source.read(&model, &entry, max_bytes).and_then(|bytes| scorers(&model, entry.version, &bytes));
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

    /// A new loader with the same parts and nothing loaded yet.
    pub fn fresh(&self) -> Loader {
        Loader::new(self.config.clone(), self.source.clone(), self.scorers.clone(), self.registry.clone())
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Forgets every load outcome (after a panic in a pass: nothing half-done
    /// is trusted). The next pass reloads what it needs; the current
    /// snapshot keeps serving meanwhile.
    pub fn reset(&mut self) {
        self.known.clear();
        self.warned.clear();
    }

    /// Records the shadow comparisons `next`'s rollouts write series for.
    fn note_shadow_pairs(&mut self, next: &Snapshot) {
        for (name, model) in &next.models {
            let Some(r) = &model.rollout else { continue };
            let Some(shadow) = &r.shadow else { continue };
            let v = shadow.version.version;
            self.shadow_pairs.insert((name.clone(), v, r.stable.version));
            if let Some(c) = &r.canary {
                self.shadow_pairs.insert((name.clone(), v, c.version.version));
            }
        }
    }

    /// Removes the shadow series of every version `current` serves and `next` does not.
    fn forget_retired_shadows(&mut self, current: &Snapshot, next: &Snapshot) {
        for (name, model) in &current.models {
            for version in model.versions.keys() {
                if !next.models.get(name).is_some_and(|n| n.versions.contains_key(version)) {
                    self.forget_shadow_series(name, *version);
                }
            }
        }
    }

    /// Removes the shadow series `version` of `model` is part of (as the
    /// shadow or as its baseline): it retired.
    fn forget_shadow_series(&mut self, model: &str, version: u64) {
        let m = &self.registry.metrics.rollout;
        self.shadow_pairs.retain(|(name, shadow, baseline)| {
            if name != model || (*shadow != version && *baseline != version) {
                return true;
            }
            let (s, b) = (shadow.to_string(), baseline.to_string());
            for agreement in ["agree", "disagree"] {
                let _ = m.shadow_predictions_total.remove_label_values(&[name, &s, &b, agreement]);
            }
            let _ = m.shadow_probability_delta.remove_label_values(&[name, &s, &b]);
            let _ = m.shadow_latency_ratio.remove_label_values(&[name, &s, &b]);
            false
        });
        let _ = m.shadow_dropped_total.remove_label_values(&[model, &version.to_string()]);
    }

    fn update_gauges(&self, current: &Snapshot, next: &Snapshot, swapped: &[String]) {
        let m = &self.registry.metrics;
        for name in swapped {
            let before: Vec<Arc<LoadedVersion>> =
                current.models.get(name).map(|m| m.versions.values().cloned().collect()).unwrap_or_default();
            let after = next.models.get(name);
            for retired in before {
                if !after.is_some_and(|n| n.versions.contains_key(&retired.version)) {
                    m.forget_version(name, retired.version, retired.scorer.fields().schema().names());
                }
            }
            let Some(model) = after else {
                let _ = m.model_versions_loaded.remove_label_values(&[name]);
                continue;
            };
            let default = model.default_version().map(|v| v.version);
            for version in model.versions.keys() {
                let serving = i64::from(Some(*version) == default);
                m.model_version_serving.with_label_values(&[name, &version.to_string()]).set(serving);
            }
            m.model_versions_loaded.with_label_values(&[name]).set(model.versions.len() as i64);
        }
    }

    /// Logs each entry the source will not offer once, when it appears.
    fn note_rejected(&mut self, rejected: &[Rejected]) {
        let now: HashSet<(Option<String>, String)> =
            rejected.iter().map(|r| (r.model.clone(), r.entry.clone())).collect();
        for r in rejected {
            if !self.rejected_seen.contains(&(r.model.clone(), r.entry.clone())) {
                tracing::warn!(model = ?r.model, entry = %r.entry, reason = %r.reason, "not served: entry in the model source breaks the layout rules");
            }
        }
        self.rejected_seen = now;
    }

    fn warn_once(&mut self, key: &str, msg: &str) {
        if self.warned.get(key).map(String::as_str) != Some(msg) {
            tracing::error!("{msg}");
            self.warned.insert(key.to_string(), msg.to_string());
        }
    }
}

/// Gives back a map's capacity once it is mostly empty (after a burst of
/// entries that are gone again), so memory follows what is listed now.
fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.capacity() > 4 * map.len() {
        map.shrink_to_fit();
    }
}

/// The versions a rollout in force uses.
fn rollout_versions(r: &Rollout) -> impl Iterator<Item = u64> + '_ {
    std::iter::once(r.stable.version)
        .chain(r.canary.as_ref().map(|c| c.version.version))
        .chain(r.shadow.as_ref().map(|c| c.version.version))
}

/// Models whose applied rollout changed (another instance, or added/removed).
fn changed_rollouts(current: &Snapshot, next: &Snapshot) -> Vec<String> {
    let id = |s: &Snapshot, name: &str| {
        s.models.get(name).and_then(|m| m.rollout.as_ref()).map(|r| Arc::as_ptr(r) as *const () as usize)
    };
    let names: HashSet<&String> = current.models.keys().chain(next.models.keys()).collect();
    names.into_iter().filter(|name| id(current, name) != id(next, name)).cloned().collect()
}

/// Models whose served versions differ (by version or by loaded instance).
fn changed_models(current: &Snapshot, next: &Snapshot) -> Vec<String> {
    let ids = |s: &Snapshot, name: &str| -> Vec<(u64, usize)> {
        s.models
            .get(name)
            .map(|m| m.versions.iter().map(|(v, lv)| (*v, Arc::as_ptr(lv) as *const () as usize)).collect())
            .unwrap_or_default()
    };
    let mut names: Vec<&String> = current.models.keys().chain(next.models.keys()).collect();
    names.sort();
    names.dedup();
    names.into_iter().filter(|name| ids(current, name) != ids(next, name)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VersionPolicy;
    use crate::metrics::Metrics;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::repository::LocalDirectory;
    use std::path::Path;

    fn write(models: &Path, version: u64, bytes: &[u8]) {
        let dir = models.join("m").join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.json"), bytes).unwrap();
    }

    fn loader(models: &Path, policy: VersionPolicy) -> (Loader, Arc<Registry>) {
        let mut config = Config::with_models_dir(models);
        config.default_policy = policy;
        let registry = Arc::new(Registry::new(Arc::new(Metrics::new()), config.reload_stale_after));
        let source = Arc::new(LocalDirectory::new(models));
        (Loader::new(Arc::new(config), source, compile_models(ModelLimits::default()), registry.clone()), registry)
    }

    fn served(registry: &Registry) -> Vec<u64> {
        registry.snapshot().models.get("m").map(|m| m.versions.keys().copied().collect()).unwrap_or_default()
    }

    fn counts(r: &PassReport) -> (Vec<String>, usize, usize) {
        (r.swapped.clone(), r.loads_succeeded, r.loads_failed)
    }

    #[test]
    fn a_shadow_loses_its_series_when_its_version_retires() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&tiny_payload()).unwrap();
        for v in [1, 2, 3] {
            write(dir.path(), v, &good);
        }
        let (mut l, registry) = loader(dir.path(), VersionPolicy::Specific(vec![1]));
        let shadow_series = || {
            let text = String::from_utf8(registry.metrics.render()).unwrap();
            text.lines().filter(|l| l.starts_with("riskserve_shadow_") && !l.starts_with('#')).count()
        };
        std::fs::write(dir.path().join("m/rollout.toml"), "stable = 1\nshadow = 3\n").unwrap();
        l.reconcile();
        assert_eq!(served(&registry), vec![1, 3]);
        assert!(shadow_series() > 0, "the shadow's series exist while it runs");
        std::fs::write(dir.path().join("m/rollout.toml"), "stable = 1\n# shadow ended\n").unwrap();
        l.reconcile();
        l.reconcile(); // the pass right after, which retires what only the old rollout kept
        assert_eq!(served(&registry), vec![1]);
        assert_eq!(shadow_series(), 0, "series of a retired shadow are removed");
    }

    #[test]
    fn loads_are_paced_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &encode(&tiny_payload()).unwrap());
        for (percent, paced) in [(50u8, true), (100, false)] {
            let mut config = Config::with_models_dir(dir.path());
            config.load_pacing_percent = percent;
            let registry = Arc::new(Registry::new(Arc::new(Metrics::new()), config.reload_stale_after));
            let seen = Arc::new(std::sync::Mutex::new(None));
            let (compile, record) = (compile_models(ModelLimits::default()), seen.clone());
            let factory: ScorerFactory = Arc::new(move |name: &str, version: u64, bytes: &[u8]| {
                *record.lock().unwrap() = Some(crate::model::pacing::is_paced());
                compile(name, version, bytes)
            });
            let source = Arc::new(LocalDirectory::new(dir.path()));
            let mut l = Loader::new(Arc::new(config), source, factory, registry.clone());
            l.reconcile();
            assert_eq!(served(&registry), vec![1]);
            assert_eq!(*seen.lock().unwrap(), Some(paced), "load_pacing_percent = {percent}");
        }
    }

    #[test]
    fn policies_select_versions_and_skip_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&tiny_payload()).unwrap();
        for v in [1, 2, 3, 4] {
            write(dir.path(), v, &good);
        }
        write(dir.path(), 5, &good[..good.len() / 2]);

        let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(2));
        let report = l.reconcile();
        assert_eq!(served(&r), vec![3, 4], "5 is incomplete, so latest=2 is 4 and 3");
        assert_eq!((report.loads_succeeded, report.loads_failed), (2, 1));
        assert_eq!(r.resolve("m", None).unwrap().version, 4);

        let (mut l, r) = loader(dir.path(), VersionPolicy::Specific(vec![1, 3, 9]));
        l.reconcile();
        assert_eq!(served(&r), vec![1, 3]);

        let (mut l, r) = loader(dir.path(), VersionPolicy::All);
        l.reconcile();
        assert_eq!(served(&r), vec![1, 2, 3, 4]);
        let snapshot = r.snapshot();
        let status = &snapshot.status["m"];
        assert_eq!(status.serving_version, Some(4));
        assert_eq!(status.versions[0].state, VersionState::Failed);
        assert!(status.versions[0].reason.as_deref().unwrap().contains("incomplete"));
        assert!(status.versions[1].serving && !status.versions[2].serving);
    }

    #[test]
    fn an_unchanged_pass_publishes_no_change_and_reloads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &encode(&tiny_payload()).unwrap());
        write(dir.path(), 2, b"{\"format\":");
        let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(1));
        let first = l.reconcile();
        assert_eq!(counts(&first), (vec!["m".to_string()], 1, 1));
        let before = r.resolve("m", None).unwrap();
        let second = l.reconcile();
        assert_eq!(counts(&second), (vec![], 0, 0), "no reload, no retry of the unchanged broken file, no swap");
        assert_eq!(second.seq, 2);
        assert!(Arc::ptr_eq(&before, &r.resolve("m", None).unwrap()));
    }

    #[test]
    fn a_serving_version_whose_file_is_overwritten_badly_keeps_serving_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&tiny_payload()).unwrap();
        write(dir.path(), 1, &good);
        write(dir.path(), 2, &good);
        let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(1));
        l.reconcile();
        let v2 = r.resolve("m", None).unwrap();
        assert_eq!(v2.version, 2);
        // Overwritten in place, and only part of the new content is there yet.
        write(dir.path(), 2, &good[..good.len() / 3]);
        let report = l.reconcile();
        assert_eq!(report.loads_failed, 1);
        assert!(report.swapped.is_empty(), "no rollback to v1: {report:?}");
        assert!(Arc::ptr_eq(&v2, &r.resolve("m", None).unwrap()));
        let status = r.snapshot().status["m"].versions[0].clone();
        assert_eq!(status.state, VersionState::Available);
        assert!(status.reason.as_deref().unwrap().contains("incomplete"));
        // Not retried while unchanged; reloaded once the write completes.
        assert_eq!(counts(&l.reconcile()), (vec![], 0, 0));
        write(dir.path(), 2, &good);
        let report = l.reconcile();
        assert_eq!((report.loads_succeeded, report.swapped.len()), (1, 1));
        assert!(!Arc::ptr_eq(&v2, &r.resolve("m", None).unwrap()));
        assert!(r.snapshot().status["m"].versions[0].reason.is_none());
    }

    #[test]
    fn the_full_error_is_shown_only_in_the_operator_view() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&tiny_payload()).unwrap();
        write(dir.path(), 1, &good);
        write(dir.path(), 2, &good[..good.len() / 2]);
        for operator_view in [false, true] {
            let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(1));
            let mut config = (*l.config).clone();
            config.operator_view = operator_view;
            l.config = Arc::new(config);
            l.reconcile();
            let row = r.snapshot().status["m"].versions[0].clone();
            assert_eq!(row.reason.as_deref(), Some("incomplete model file (still being written or truncated)"));
            match operator_view {
                false => assert_eq!(row.detail, None),
                true => assert!(row.detail.as_deref().unwrap().contains("JSON ends early"), "{row:?}"),
            }
        }
    }

    #[test]
    fn the_status_published_with_a_swap_describes_that_swap() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&tiny_payload()).unwrap();
        write(dir.path(), 1, &good);
        std::fs::create_dir_all(dir.path().join("m/007")).unwrap();
        std::fs::write(dir.path().join("m/007/model.json"), &good).unwrap();
        let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(1));
        l.reconcile();
        write(dir.path(), 2, &good);
        l.reconcile();
        let snapshot = r.snapshot();
        assert_eq!(snapshot.serving_version("m"), Some(2));
        assert_eq!(snapshot.status["m"].serving_version, Some(2));
        assert_eq!(snapshot.status["m"].ignored.len(), 1);
        assert!(snapshot.status["m"].ignored[0].reason.contains("leading zeros"));
    }

    fn rollout_of(r: &Registry) -> (Option<u64>, Option<String>, Option<u64>) {
        let snapshot = r.snapshot();
        let status = snapshot.status["m"].rollout.clone();
        let applied = snapshot.models["m"].rollout.as_ref().map(|r| r.stable.version);
        (applied, status.as_ref().and_then(|s| s.error.clone()), snapshot.serving_version("m"))
    }

    #[test]
    fn a_rollout_file_picks_the_stable_version_and_a_bad_one_keeps_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&tiny_payload()).unwrap();
        for v in [1, 2, 3] {
            write(dir.path(), v, &good);
        }
        let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(1));
        l.reconcile();
        assert_eq!((served(&r), rollout_of(&r)), (vec![3], (None, None, Some(3))), "no file: today's behaviour");
        let file = dir.path().join("m/rollout.toml");
        std::fs::write(&file, "stable = 1\ncanary = { version = 3, weight = 0.25 }\n").unwrap();
        let report = l.reconcile();
        assert_eq!(report.loads_succeeded, 2, "1 and 3 are named; latest=1 picks among the others: 2");
        assert_eq!(served(&r), vec![1, 2, 3]);
        assert_eq!(rollout_of(&r), (Some(1), None, Some(1)));
        let shares: Vec<u64> = (0..1000).map(|_| r.resolve("m", None).unwrap().version).collect();
        assert_eq!(shares.iter().filter(|&&v| v == 3).count(), 250, "requests without a key: the exact share");
        assert_eq!(r.resolve("m", Some(3)).unwrap().version, 3, "pinned requests ignore the rollout");

        for (bad, needle) in [("stable = ", "TOML"), ("stable = 9", "version 9 (stable) is not loaded")] {
            std::fs::write(&file, bad).unwrap();
            let report = l.reconcile();
            assert_eq!((report.loads_succeeded, report.swapped.len()), (0, 0), "{bad}");
            let (applied, error, serving) = rollout_of(&r);
            assert_eq!((applied, serving), (Some(1), Some(1)), "{bad}: the last good rollout stays");
            assert!(error.as_deref().unwrap_or_default().contains(needle), "{bad}: {error:?}");
        }
        let text = String::from_utf8(r.metrics.render()).unwrap();
        assert!(text.contains("riskserve_rollout_file_errors_total{model=\"m\"} 1"), "{text}");

        // Roll back to 1 alone, then remove the file: back to latest=1.
        std::fs::write(&file, "stable = 1\n").unwrap();
        let before = r.resolve("m", None).unwrap();
        let report = l.reconcile();
        assert_eq!(report.loads_succeeded, 0, "a warm version needs no reload");
        assert!(Arc::ptr_eq(&before, &r.resolve("m", None).unwrap()));
        assert_eq!(rollout_of(&r), (Some(1), None, Some(1)));
        std::fs::remove_file(&file).unwrap();
        let report = l.reconcile();
        assert_eq!(rollout_of(&r), (None, None, Some(3)));
        assert!(report.next_retry.is_some(), "1 was kept only for the old rollout: another pass is due now");
        l.reconcile();
        assert_eq!(served(&r), vec![3]);
        let text = String::from_utf8(r.metrics.render()).unwrap();
        for (from, to) in [("none", "stable"), ("stable", "canary"), ("canary", "stable"), ("stable", "none")] {
            let labels = [("model", "m"), ("from", from), ("to", to), ("reason", "rollout_file")];
            let counted = testkit::prometheus::value(&text, "riskserve_rollout_transitions_total", &labels);
            assert_eq!(counted, Some(1.0), "{from} -> {to}: {text}");
        }
    }
}
