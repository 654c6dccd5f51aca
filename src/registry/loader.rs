//! The loader: one reconcile pass turns what is on disk into the next
//! serving snapshot. It runs on a blocking thread, never on the request path.
//!
//! For each model directory it walks versions from the highest down, takes
//! those its version policy selects, reuses versions already loaded from an
//! unchanged file, loads (read → size limit → digest → schema → compile →
//! smoke prediction) new or changed files, and skips files that failed and
//! have not changed since. Only when the pass is complete is the new snapshot
//! published. A model with nothing loadable on disk keeps its last good
//! versions serving. Retired versions lose their metric series; their memory
//! is freed when their last in-flight request drops its `Arc`.

use super::{rfc3339, LoadedVersion, ModelStatus, Registry, ServedModel, Snapshot, VersionState, VersionStatus};
use crate::config::{Config, VersionPolicy};
use crate::model::Model;
use crate::repository::{LocalDirectory, ModelSource, VersionEntry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

enum Known {
    Loaded {
        fingerprint: crate::repository::Fingerprint,
        version: Arc<LoadedVersion>,
    },
    Failed {
        fingerprint: crate::repository::Fingerprint,
        reason: String,
    },
    /// The file of a loaded version changed and the new content failed to
    /// load: the copy already in memory keeps serving until the file changes
    /// again.
    Stale {
        fingerprint: crate::repository::Fingerprint,
        reason: String,
        version: Arc<LoadedVersion>,
    },
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Models whose set of loaded versions changed (a swap was published).
    pub swapped: Vec<String>,
    pub loads_succeeded: usize,
    pub loads_failed: usize,
}

pub struct Loader {
    config: Arc<Config>,
    registry: Arc<Registry>,
    known: HashMap<(String, u64), Known>,
    /// Last operator warning logged per model, so it is logged once.
    warned: HashMap<String, String>,
}

impl Loader {
    pub fn new(config: Arc<Config>, registry: Arc<Registry>) -> Loader {
        Loader { config, registry, known: HashMap::new(), warned: HashMap::new() }
    }

    /// One reconcile pass. Never fails the server: an unreadable models
    /// directory keeps the current snapshot and is logged.
    pub fn reconcile(&mut self) -> PassReport {
        let mut report = PassReport::default();
        let repo = match LocalDirectory::new(&self.config.models_dir).list() {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("cannot read models directory {}: {e}", self.config.models_dir.display());
                self.warn_once("*", &msg);
                return report;
            }
        };
        for r in &repo.rejected {
            tracing::debug!(model = ?r.model, entry = %r.entry, reason = %r.reason, "entry in models directory not served");
        }
        let current = self.registry.snapshot();
        let mut next = Snapshot::default();
        let mut table = BTreeMap::new();

        for (name, files) in &repo.models {
            let policy = self.config.policy(name).clone();
            let mut selected = BTreeMap::new();
            let mut statuses = Vec::new();
            for file in files.iter().rev() {
                let wanted = match &policy {
                    VersionPolicy::Latest(n) => selected.len() < *n as usize,
                    VersionPolicy::All => true,
                    VersionPolicy::Specific(list) => list.contains(&file.version),
                };
                if !wanted {
                    statuses.push(idle_status(file, &policy));
                    continue;
                }
                match self.obtain(name, file, &mut report) {
                    Ok(v) => {
                        let mut status = available_status(&v);
                        if let Some(Known::Stale { reason, .. }) = self.known.get(&(name.clone(), file.version)) {
                            status.reason =
                                Some(format!("serving the copy loaded earlier; the changed file: {reason}"));
                        }
                        statuses.push(status);
                        selected.insert(file.version, v);
                    }
                    Err(reason) => statuses.push(file_status(file, VersionState::Failed, reason)),
                }
            }
            let mut warning = None;
            if selected.is_empty() {
                if let Some(previous) = current.models.get(name) {
                    let kept = previous.default_version().map(|v| v.version).unwrap_or_default();
                    let msg = format!(
                        "model {name}: no loadable version on disk (policy {policy}); keeping version {kept} serving"
                    );
                    self.warn_once(name, &msg);
                    warning = Some(msg);
                    keep_previous(previous, &mut statuses);
                    next.models.insert(name.clone(), previous.clone());
                } else {
                    let msg = format!("model {name}: no loadable version on disk (policy {policy}); not served");
                    self.warn_once(name, &msg);
                    warning = Some(msg);
                }
            } else {
                self.warned.remove(name);
                next.models.insert(name.clone(), ServedModel { versions: selected });
            }
            statuses.sort_by_key(|s| std::cmp::Reverse(s.version));
            let serving_version = next.models.get(name).and_then(|m| m.default_version()).map(|v| v.version);
            for s in &mut statuses {
                s.serving = Some(s.version) == serving_version && s.state == VersionState::Available;
            }
            table.insert(
                name.clone(),
                ModelStatus {
                    name: name.clone(),
                    version_policy: policy.to_string(),
                    serving_version,
                    versions: statuses,
                    warning,
                },
            );
        }
        // A served model whose directory disappeared keeps serving.
        for (name, previous) in &current.models {
            if !repo.models.contains_key(name) {
                let kept = previous.default_version().map(|v| v.version).unwrap_or_default();
                let msg = format!("model {name}: directory removed; keeping version {kept} serving");
                self.warn_once(name, &msg);
                let mut statuses = Vec::new();
                keep_previous(previous, &mut statuses);
                table.insert(
                    name.clone(),
                    ModelStatus {
                        name: name.clone(),
                        version_policy: self.config.policy(name).to_string(),
                        serving_version: Some(kept),
                        versions: statuses,
                        warning: Some(msg),
                    },
                );
                next.models.insert(name.clone(), previous.clone());
            }
        }

        // Forget what is neither served nor on disk: retired versions must
        // not be kept alive by this cache.
        self.known.retain(|(name, version), k| match k {
            Known::Loaded { version: v, .. } | Known::Stale { version: v, .. } => {
                next.models.get(name).and_then(|m| m.versions.get(version)).is_some_and(|served| Arc::ptr_eq(served, v))
            }
            Known::Failed { .. } => {
                repo.models.get(name).is_some_and(|files| files.iter().any(|f| f.version == *version))
            }
        });

        report.swapped = changed_models(&current, &next);
        if !report.swapped.is_empty() {
            self.update_gauges(&current, &next);
            for name in &report.swapped {
                let before = current.models.get(name).and_then(|m| m.default_version()).map(|v| v.version);
                let after = next.models.get(name).and_then(|m| m.default_version()).map(|v| v.version);
                let loaded: Vec<u64> =
                    next.models.get(name).map(|m| m.versions.keys().copied().collect()).unwrap_or_default();
                tracing::info!(model = %name, ?before, ?after, ?loaded, "swapped in new model snapshot");
                self.registry.metrics.model_swaps_total.with_label_values(&[name]).inc();
            }
            // The old snapshot is dropped here; each retired version is freed
            // when its last in-flight request ends.
            drop(self.registry.publish(next));
        }
        self.registry.set_status(table);
        report
    }

    /// The loaded version for a file: cached if the file is unchanged,
    /// otherwise loaded now. Unchanged failed files are not retried.
    fn obtain(
        &mut self,
        name: &str,
        file: &VersionEntry,
        report: &mut PassReport,
    ) -> Result<Arc<LoadedVersion>, String> {
        let key = (name.to_string(), file.version);
        match self.known.get(&key) {
            Some(Known::Loaded { fingerprint, version }) if *fingerprint == file.fingerprint => {
                return Ok(version.clone())
            }
            Some(Known::Failed { fingerprint, reason }) if *fingerprint == file.fingerprint => {
                return Err(reason.clone())
            }
            Some(Known::Stale { fingerprint, version, .. }) if *fingerprint == file.fingerprint => {
                return Ok(version.clone())
            }
            _ => {}
        }
        let in_memory = match self.known.get(&key) {
            Some(Known::Loaded { version, .. } | Known::Stale { version, .. }) => Some(version.clone()),
            _ => None,
        };
        self.registry.update_status(|t| {
            if let Some(s) = t.get_mut(name) {
                if let Some(v) = s.versions.iter_mut().find(|v| v.version == file.version) {
                    v.state = VersionState::Loading;
                }
            }
        });
        let metrics = &self.registry.metrics;
        let started = Instant::now();
        let result = LocalDirectory::new(&self.config.models_dir)
            .read(name, file, self.config.max_model_bytes)
            .and_then(|bytes| Model::from_bytes(&bytes));
        let seconds = started.elapsed().as_secs_f64();
        metrics.model_load_duration_seconds.with_label_values(&[name]).observe(seconds);
        match result {
            Ok(model) => {
                metrics.model_loads_total.with_label_values(&[name, "success"]).inc();
                report.loads_succeeded += 1;
                tracing::info!(
                    model = name,
                    version = file.version,
                    path = %file.location,
                    seconds,
                    digest = %model.digest,
                    algorithm = %model.meta.algorithm,
                    "loaded model version"
                );
                let version = Arc::new(LoadedVersion {
                    name: name.to_string(),
                    version: file.version,
                    version_label: file.version.to_string(),
                    path: file.location.clone().into(),
                    model,
                    loaded_at: SystemTime::now(),
                    load_seconds: seconds,
                    metrics: metrics.version(name, file.version),
                });
                self.known.insert(key, Known::Loaded { fingerprint: file.fingerprint, version: version.clone() });
                Ok(version)
            }
            Err(e) => {
                metrics.model_loads_total.with_label_values(&[name, e.kind()]).inc();
                report.loads_failed += 1;
                tracing::warn!(
                    model = name,
                    version = file.version,
                    path = %file.location,
                    result = e.kind(),
                    reason = %e,
                    "model version not loaded; the current version keeps serving; retried when the file changes"
                );
                let reason = e.to_string();
                if let Some(version) = in_memory {
                    tracing::warn!(
                        model = name,
                        version = file.version,
                        "the file of a loaded version changed and does not load; the copy in memory keeps serving"
                    );
                    self.known
                        .insert(key, Known::Stale { fingerprint: file.fingerprint, reason, version: version.clone() });
                    return Ok(version);
                }
                self.known.insert(key, Known::Failed { fingerprint: file.fingerprint, reason: reason.clone() });
                Err(reason)
            }
        }
    }

    fn update_gauges(&self, current: &Snapshot, next: &Snapshot) {
        let m = &self.registry.metrics;
        for (name, model) in &current.models {
            for version in model.versions.keys() {
                let still = next.models.get(name).is_some_and(|n| n.versions.contains_key(version));
                if !still {
                    m.forget_version(name, *version);
                }
            }
        }
        for (name, model) in &next.models {
            let default = model.default_version().map(|v| v.version);
            for version in model.versions.keys() {
                let serving = i64::from(Some(*version) == default);
                m.model_version_serving.with_label_values(&[name, &version.to_string()]).set(serving);
            }
            m.model_versions_loaded.with_label_values(&[name]).set(model.versions.len() as i64);
        }
    }

    fn warn_once(&mut self, key: &str, msg: &str) {
        if self.warned.get(key).map(String::as_str) != Some(msg) {
            tracing::error!("{msg}");
            self.warned.insert(key.to_string(), msg.to_string());
        }
    }
}

fn available_status(v: &LoadedVersion) -> VersionStatus {
    VersionStatus {
        version: v.version,
        state: VersionState::Available,
        reason: None,
        serving: false,
        path: v.path.display().to_string(),
        loaded_at: Some(rfc3339(v.loaded_at)),
        load_seconds: Some(v.load_seconds),
        digest: Some(v.model.digest.clone()),
        model: Some(v.model.meta.clone()),
    }
}

fn idle_status(file: &VersionEntry, policy: &VersionPolicy) -> VersionStatus {
    file_status(file, VersionState::NotLoaded, format!("not selected by version policy {policy}"))
}

/// Status of a version directory that is not loaded (failed or idle).
fn file_status(file: &VersionEntry, state: VersionState, reason: String) -> VersionStatus {
    VersionStatus {
        version: file.version,
        state,
        reason: Some(reason),
        serving: false,
        path: file.location.clone(),
        loaded_at: None,
        load_seconds: None,
        digest: None,
        model: None,
    }
}

/// Status rows for versions kept serving after their files disappeared.
fn keep_previous(previous: &ServedModel, statuses: &mut Vec<VersionStatus>) {
    for v in previous.versions.values() {
        statuses.retain(|s| s.version != v.version);
        let mut s = available_status(v);
        s.reason = Some("kept serving: no other version of this model is loadable".into());
        statuses.push(s);
    }
}

fn changed_models(current: &Snapshot, next: &Snapshot) -> Vec<String> {
    let mut names: Vec<&String> = current.models.keys().chain(next.models.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| {
            let ids = |s: &Snapshot| -> Vec<(u64, usize)> {
                s.models
                    .get(*name)
                    .map(|m| m.versions.iter().map(|(v, lv)| (*v, Arc::as_ptr(lv) as usize)).collect())
                    .unwrap_or_default()
            };
            ids(current) != ids(next)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use std::path::Path;

    fn write(models: &Path, version: u64, bytes: &[u8]) {
        let dir = models.join("m").join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.json"), bytes).unwrap();
    }

    fn loader(models: &Path, policy: VersionPolicy) -> (Loader, Arc<Registry>) {
        let mut config = Config::with_models_dir(models);
        config.default_policy = policy;
        let registry = Arc::new(Registry::new(Arc::new(Metrics::new())));
        (Loader::new(Arc::new(config), registry.clone()), registry)
    }

    fn served(registry: &Registry) -> Vec<u64> {
        registry.snapshot().models.get("m").map(|m| m.versions.keys().copied().collect()).unwrap_or_default()
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
        let status = &r.status_table()["m"];
        assert_eq!(status.serving_version, Some(4));
        assert_eq!(status.versions[0].state, VersionState::Failed);
        assert!(status.versions[0].reason.as_deref().unwrap().contains("incomplete"));
    }

    #[test]
    fn an_unchanged_pass_publishes_nothing_and_reloads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, &encode(&tiny_payload()).unwrap());
        write(dir.path(), 2, b"{\"format\":");
        let (mut l, r) = loader(dir.path(), VersionPolicy::Latest(1));
        let first = l.reconcile();
        assert_eq!((first.swapped, first.loads_succeeded, first.loads_failed), (vec!["m".to_string()], 1, 1));
        let before = r.resolve("m", None).unwrap();
        let second = l.reconcile();
        assert_eq!(second, PassReport::default(), "no reload, no retry of the unchanged broken file, no swap");
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
        let status = &r.status_table()["m"];
        assert_eq!(status.versions[0].state, VersionState::Available);
        assert!(status.versions[0].reason.as_deref().unwrap().contains("incomplete"));
        // Not retried while unchanged; reloaded once the write completes.
        assert_eq!(l.reconcile(), PassReport::default());
        write(dir.path(), 2, &good);
        let report = l.reconcile();
        assert_eq!((report.loads_succeeded, report.swapped.len()), (1, 1));
        assert!(!Arc::ptr_eq(&v2, &r.resolve("m", None).unwrap()));
        assert!(r.status_table()["m"].versions[0].reason.is_none());
    }
}
