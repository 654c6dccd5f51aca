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
//!
//! This file holds the [`Loader`] and the pass that drives the others:
//! `load` (one version's load under a deadline), `status` (the status rows
//! a pass publishes), `rollouts` (rollout files → applied rollouts) and
//! `gauges` (serving gauges and forgetting retired series).

mod gauges;
mod load;
mod rollouts;
mod status;

pub use load::{compile_models, ScorerFactory, FIRST_RETRY_DELAY, MAX_ABANDONED, MAX_RETRY_DELAY};

use super::deadline::DeadlineRunner;
use super::plan::{self, KnownVersions, Step};
use super::snapshot::{IgnoredEntry, LoadedVersion, ModelStatus, ServedModel, Snapshot};
use super::Registry;
use crate::config::Config;
use crate::repository::{ModelSource, Rejected};
use rollouts::{rollout_versions, RolloutFile};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

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
            let versions = self.version_rows(&name, &model, serving_version);
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
    use crate::model::import::VersionBytes;
    use crate::model::limits::ModelLimits;
    use crate::model::test_support::tiny_payload;
    use crate::registry::snapshot::VersionState;
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
            let factory: ScorerFactory = Arc::new(move |name: &str, version: u64, bytes: &VersionBytes| {
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
