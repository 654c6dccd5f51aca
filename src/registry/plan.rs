//! Deciding, separated from doing: given what the source lists, what has
//! been loaded or has failed before, what serves now and the version
//! policy, the next step of a reload pass is a pure function.
//!
//! [`next_step`] either asks for versions to be loaded ([`Step::Load`]) or,
//! once every version the policy wants has an outcome, returns the complete
//! [`Plan`]: the next serving set and the state of every version. The
//! loader repeats it until it gets a plan: each load records an outcome for
//! the fingerprint it was asked about, so the loop ends. Generic over the
//! loaded-version handle `V`, so unit tests drive it with plain values.
//!
//! Rules it owns:
//! - the version policy (`latest = N` counts only versions that load;
//!   `all`; `specific = [..]`);
//! - versions a model's rollout names (stable, canary, shadow) are wanted
//!   whatever the policy, and the policy selects among the others
//!   (`latest = 1` with `shadow = 5` loads 5 and the highest other version);
//! - an unchanged file is never read twice: a loaded one is reused, a failed
//!   one stays failed until its fingerprint changes, except a *transient*
//!   failure (I/O error, timeout), which is retried at its `retry_at`;
//! - a served version whose file changed and no longer loads keeps serving
//!   from memory (`Stale`);
//! - availability first: a model with nothing loadable keeps its previous
//!   serving versions, also when its directory disappeared.

use crate::config::VersionPolicy;
use crate::repository::{Fingerprint, Listing, Rejected, VersionEntry};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// What is known about one `(model, version)` from earlier loads.
#[derive(Debug, Clone)]
pub enum Known<V> {
    Loaded {
        fingerprint: Fingerprint,
        version: V,
    },
    Failed {
        fingerprint: Fingerprint,
        /// Public wording (shown in `/v1/models`).
        reason: String,
        /// The full error, for the log and the operator view.
        detail: String,
        /// For transient failures: when to try again (with backoff).
        retry_at: Option<Instant>,
        /// Consecutive transient failures, for the backoff.
        attempts: u32,
    },
    /// The file of a loaded version changed and the new content failed to
    /// load: the copy in memory keeps serving until the file changes again.
    Stale {
        fingerprint: Fingerprint,
        reason: String,
        detail: String,
        version: V,
    },
}

impl<V> Known<V> {
    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            Known::Loaded { fingerprint, .. }
            | Known::Failed { fingerprint, .. }
            | Known::Stale { fingerprint, .. } => *fingerprint,
        }
    }

    /// The full error of the last failed load, if it failed.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Known::Failed { detail, .. } | Known::Stale { detail, .. } => Some(detail),
            Known::Loaded { .. } => None,
        }
    }

    /// The copy in memory, if any.
    pub fn in_memory(&self) -> Option<&V> {
        match self {
            Known::Loaded { version, .. } | Known::Stale { version, .. } => Some(version),
            Known::Failed { .. } => None,
        }
    }
}

/// Outcomes of earlier loads, by `(model, version)`.
pub type KnownVersions<V> = HashMap<(String, u64), Known<V>>;

/// A version the loader must read and compile before the plan can finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    pub model: String,
    pub entry: VersionEntry,
}

/// The next thing a pass must do.
#[derive(Debug)]
pub enum Step<V> {
    Load(Vec<LoadRequest>),
    Publish(Plan<V>),
}

/// The next serving set and the state of every version, by model.
#[derive(Debug)]
pub struct Plan<V> {
    pub models: BTreeMap<String, ModelPlan<V>>,
    /// The earliest time a transient failure should be retried.
    pub next_retry: Option<Instant>,
}

/// One model's part of a [`Plan`].
#[derive(Debug)]
pub struct ModelPlan<V> {
    pub policy: String,
    /// Versions that serve; empty when the model is not served.
    pub serving: BTreeMap<u64, V>,
    /// Every version, descending.
    pub versions: Vec<PlannedVersion<V>>,
    /// Entries of this model's directory that the source does not offer.
    pub ignored: Vec<Rejected>,
    /// A condition an operator should act on.
    pub warning: Option<String>,
}

#[derive(Debug)]
pub struct PlannedVersion<V> {
    pub version: u64,
    pub location: String,
    pub state: Planned<V>,
}

/// The state of one version in a plan.
#[derive(Debug)]
pub enum Planned<V> {
    /// Loaded and selected by the policy.
    Serving(V),
    /// Selected, serving the copy loaded earlier; its changed file fails.
    ServingStale {
        version: V,
        reason: String,
    },
    /// Kept serving although no longer listed or loadable, because nothing
    /// else of the model is.
    Kept(V),
    Failed(String),
    NotSelected(String),
}

/// Decides the next step of a pass.
pub fn next_step<V: Clone>(
    listing: &Listing,
    known: &KnownVersions<V>,
    serving_now: &BTreeMap<String, BTreeMap<u64, V>>,
    policy_of: &dyn Fn(&str) -> VersionPolicy,
    pinned_of: &dyn Fn(&str) -> Vec<u64>,
    now: Instant,
) -> Step<V> {
    let mut loads = Vec::new();
    let mut next_retry: Option<Instant> = None;
    let mut models = BTreeMap::new();
    for (name, entries) in &listing.models {
        let policy = policy_of(name);
        let pinned = pinned_of(name);
        let mut serving = BTreeMap::new();
        let mut versions = Vec::new();
        // Versions the policy selected that loaded or are being loaded.
        let mut selected = 0usize;
        for entry in entries.iter().rev() {
            let is_pinned = pinned.contains(&entry.version);
            let by_policy = !is_pinned
                && match &policy {
                    VersionPolicy::Latest(n) => selected < *n as usize,
                    VersionPolicy::All => true,
                    VersionPolicy::Specific(list) => list.contains(&entry.version),
                };
            let wanted = by_policy || is_pinned;
            let state = if !wanted {
                Planned::NotSelected(format!("not selected by version policy {policy}"))
            } else {
                match known.get(&(name.clone(), entry.version)).filter(|k| k.fingerprint() == entry.fingerprint) {
                    Some(Known::Loaded { version, .. }) => {
                        selected += usize::from(by_policy);
                        serving.insert(entry.version, version.clone());
                        Planned::Serving(version.clone())
                    }
                    Some(Known::Stale { version, reason, .. }) => {
                        selected += usize::from(by_policy);
                        serving.insert(entry.version, version.clone());
                        Planned::ServingStale { version: version.clone(), reason: reason.clone() }
                    }
                    Some(Known::Failed { reason, retry_at, .. }) if retry_at.is_none_or(|t| t > now) => {
                        if let Some(t) = retry_at {
                            next_retry = Some(next_retry.map_or(*t, |n| n.min(*t)));
                        }
                        Planned::Failed(reason.clone())
                    }
                    _ => {
                        loads.push(LoadRequest { model: name.clone(), entry: entry.clone() });
                        selected += usize::from(by_policy);
                        continue;
                    }
                }
            };
            versions.push(PlannedVersion { version: entry.version, location: entry.location.clone(), state });
        }
        let ignored = listing.rejected.iter().filter(|r| r.model.as_deref() == Some(name)).cloned().collect();
        let mut plan = ModelPlan { policy: policy.to_string(), serving, versions, ignored, warning: None };
        if plan.serving.is_empty() {
            let why = format!("no loadable version on disk (policy {policy})");
            keep_previous(name, &why, serving_now.get(name), &mut plan);
        }
        models.insert(name.clone(), plan);
    }
    if !loads.is_empty() {
        return Step::Load(loads);
    }
    // A served model whose directory disappeared keeps serving.
    for (name, previous) in serving_now {
        if !listing.models.contains_key(name) {
            let mut plan = ModelPlan {
                policy: policy_of(name).to_string(),
                serving: BTreeMap::new(),
                versions: Vec::new(),
                ignored: Vec::new(),
                warning: None,
            };
            keep_previous(name, "directory removed", Some(previous), &mut plan);
            models.insert(name.clone(), plan);
        }
    }
    Step::Publish(Plan { models, next_retry })
}

/// Availability first: a model with nothing to serve keeps what served before.
fn keep_previous<V: Clone>(name: &str, why: &str, previous: Option<&BTreeMap<u64, V>>, plan: &mut ModelPlan<V>) {
    let Some(previous) = previous.filter(|p| !p.is_empty()) else {
        plan.warning = Some(format!("model {name}: {why}; not served"));
        return;
    };
    let kept = previous.keys().next_back().copied().unwrap_or_default();
    plan.warning = Some(format!("model {name}: {why}; keeping version {kept} serving"));
    let locations: HashMap<u64, String> = plan.versions.iter().map(|v| (v.version, v.location.clone())).collect();
    plan.versions.retain(|v| !previous.contains_key(&v.version));
    for (version, v) in previous {
        let location = locations.get(version).cloned().unwrap_or_default();
        plan.versions.push(PlannedVersion { version: *version, location, state: Planned::Kept(v.clone()) });
    }
    plan.versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    plan.serving = previous.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u64) -> Fingerprint {
        Fingerprint { len: n, token: n }
    }

    fn listing(versions: &[(u64, u64)]) -> Listing {
        let entries = versions
            .iter()
            .map(|&(version, f)| VersionEntry {
                version,
                file: "model.json",
                fingerprint: fp(f),
                location: format!("m/{version}"),
            })
            .collect();
        Listing { models: BTreeMap::from([("m".to_string(), entries)]), ..Listing::default() }
    }

    type K = KnownVersions<&'static str>;

    fn loaded(known: &mut K, version: u64, f: u64, v: &'static str) {
        known.insert(("m".into(), version), Known::Loaded { fingerprint: fp(f), version: v });
    }

    fn failed(known: &mut K, version: u64, f: u64) {
        known.insert(
            ("m".into(), version),
            Known::Failed {
                fingerprint: fp(f),
                reason: "bad".into(),
                detail: String::new(),
                retry_at: None,
                attempts: 0,
            },
        );
    }

    fn step(
        l: &Listing,
        known: &K,
        now: &BTreeMap<String, BTreeMap<u64, &'static str>>,
        p: VersionPolicy,
    ) -> Step<&'static str> {
        next_step(l, known, now, &|_| p.clone(), &|_| Vec::new(), Instant::now())
    }

    fn loads(s: Step<&'static str>) -> Vec<u64> {
        match s {
            Step::Load(l) => l.into_iter().map(|r| r.entry.version).collect(),
            Step::Publish(p) => panic!("expected loads, got {p:?}"),
        }
    }

    fn plan(s: Step<&'static str>) -> ModelPlan<&'static str> {
        match s {
            Step::Publish(mut p) => p.models.remove("m").expect("model m planned"),
            Step::Load(l) => panic!("expected a plan, got loads {l:?}"),
        }
    }

    #[test]
    fn latest_n_asks_for_the_top_n_then_walks_down_past_failures() {
        let l = listing(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let none = BTreeMap::new();
        let mut known = K::new();
        assert_eq!(loads(step(&l, &known, &none, VersionPolicy::Latest(2))), vec![4, 3]);
        failed(&mut known, 4, 4);
        loaded(&mut known, 3, 3, "v3");
        assert_eq!(loads(step(&l, &known, &none, VersionPolicy::Latest(2))), vec![2], "4 failed: one more");
        loaded(&mut known, 2, 2, "v2");
        let p = plan(step(&l, &known, &none, VersionPolicy::Latest(2)));
        assert_eq!(p.serving, BTreeMap::from([(2, "v2"), (3, "v3")]));
        let states: Vec<String> = p.versions.iter().map(|v| format!("{}:{:?}", v.version, v.state)).collect();
        assert_eq!(
            states,
            [
                "4:Failed(\"bad\")",
                "3:Serving(\"v3\")",
                "2:Serving(\"v2\")",
                "1:NotSelected(\"not selected by version policy latest=2\")"
            ]
        );
        assert!(p.warning.is_none());
    }

    #[test]
    fn versions_a_rollout_names_stay_loaded_outside_the_policy_without_counting_towards_it() {
        let l = listing(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let none = BTreeMap::new();
        let pinned = |_: &str| vec![1, 3];
        let go = |known: &K| next_step(&l, known, &none, &|_| VersionPolicy::Latest(1), &pinned, Instant::now());
        let mut known = K::new();
        assert_eq!(loads(go(&known)), vec![4, 3, 1], "latest=1 still takes 4; 3 and 1 are named");
        loaded(&mut known, 4, 4, "v4");
        loaded(&mut known, 3, 3, "v3");
        loaded(&mut known, 1, 1, "v1");
        let p = plan(go(&known));
        assert_eq!(p.serving, BTreeMap::from([(1, "v1"), (3, "v3"), (4, "v4")]));
        assert!(matches!(p.versions[2].state, Planned::NotSelected(_)), "2 is neither latest nor named");
        // A named version is not the policy's pick: latest=1 takes the highest other.
        let only_top = |_: &str| vec![4];
        let l2 = listing(&[(3, 3), (4, 4)]);
        let p = plan(next_step(&l2, &known, &none, &|_| VersionPolicy::Latest(1), &only_top, Instant::now()));
        assert_eq!(p.serving, BTreeMap::from([(3, "v3"), (4, "v4")]));
        // A named version that fails does not pull an unnamed one in.
        failed(&mut known, 3, 3);
        let p = plan(go(&known));
        assert_eq!(p.serving, BTreeMap::from([(1, "v1"), (4, "v4")]));
        assert!(matches!(p.versions[1].state, Planned::Failed(_)));
    }

    #[test]
    fn specific_and_all() {
        let l = listing(&[(1, 1), (2, 2), (3, 3)]);
        let none = BTreeMap::new();
        let known = K::new();
        assert_eq!(loads(step(&l, &known, &none, VersionPolicy::Specific(vec![1, 3, 9]))), vec![3, 1]);
        assert_eq!(loads(step(&l, &known, &none, VersionPolicy::All)), vec![3, 2, 1]);
    }

    #[test]
    fn a_changed_fingerprint_is_loaded_again_and_an_unchanged_failure_is_not() {
        let none = BTreeMap::new();
        let mut known = K::new();
        loaded(&mut known, 1, 1, "v1");
        failed(&mut known, 2, 2);
        let p = plan(step(&listing(&[(1, 1), (2, 2)]), &known, &none, VersionPolicy::Latest(1)));
        assert_eq!(p.serving, BTreeMap::from([(1, "v1")]), "unchanged failed 2 is not retried");
        assert_eq!(loads(step(&listing(&[(1, 1), (2, 3)]), &known, &none, VersionPolicy::Latest(1))), vec![2]);
        assert_eq!(loads(step(&listing(&[(1, 9)]), &known, &none, VersionPolicy::Latest(1))), vec![1]);
    }

    #[test]
    fn a_transient_failure_is_retried_at_its_time_without_a_change_of_fingerprint() {
        let l = listing(&[(1, 1)]);
        let none = BTreeMap::new();
        let t0 = Instant::now();
        let retry_at = t0 + std::time::Duration::from_secs(2);
        let mut known = K::new();
        known.insert(
            ("m".into(), 1),
            Known::Failed {
                fingerprint: fp(1),
                reason: "permission denied".into(),
                detail: "cannot read m/1/model.json: Permission denied (os error 13)".into(),
                retry_at: Some(retry_at),
                attempts: 1,
            },
        );
        let policy = |_: &str| VersionPolicy::Latest(1);
        let Step::Publish(p) = next_step(&l, &known, &none, &policy, &|_| Vec::new(), t0) else { panic!("not yet") };
        assert_eq!(p.next_retry, Some(retry_at), "the loader is told when to come back");
        assert_eq!(loads(next_step(&l, &known, &none, &policy, &|_| Vec::new(), retry_at)), vec![1]);
    }

    #[test]
    fn a_stale_copy_keeps_serving() {
        let none = BTreeMap::new();
        let mut known = K::new();
        known.insert(
            ("m".into(), 2),
            Known::Stale { fingerprint: fp(5), reason: "incomplete".into(), detail: String::new(), version: "v2" },
        );
        let p = plan(step(&listing(&[(1, 1), (2, 5)]), &known, &none, VersionPolicy::Latest(1)));
        assert_eq!(p.serving, BTreeMap::from([(2, "v2")]));
        assert!(matches!(&p.versions[0].state, Planned::ServingStale { reason, .. } if reason == "incomplete"));
    }

    #[test]
    fn nothing_loadable_keeps_the_previous_versions_and_says_so() {
        let now = BTreeMap::from([("m".to_string(), BTreeMap::from([(3, "v3")]))]);
        let mut known = K::new();
        failed(&mut known, 4, 4);
        let p = plan(step(&listing(&[(4, 4)]), &known, &now, VersionPolicy::Latest(1)));
        assert_eq!(p.serving, BTreeMap::from([(3, "v3")]));
        assert!(p.warning.as_deref().unwrap().contains("keeping version 3 serving"));
        assert!(matches!(p.versions[1].state, Planned::Kept("v3")));
        // The directory gone entirely.
        let gone = Listing::default();
        let Step::Publish(mut all) =
            next_step(&gone, &known, &now, &|_| VersionPolicy::Latest(1), &|_| Vec::new(), Instant::now())
        else {
            panic!()
        };
        let p = all.models.remove("m").unwrap();
        assert_eq!(p.serving, BTreeMap::from([(3, "v3")]));
        assert!(p.warning.unwrap().contains("directory removed"));
        // Never served and nothing loadable: not served, with a warning.
        let p = plan(step(&listing(&[(4, 4)]), &known, &BTreeMap::new(), VersionPolicy::Latest(1)));
        assert!(p.serving.is_empty());
        assert!(p.warning.unwrap().contains("not served"));
    }

    #[test]
    fn rejected_entries_are_reported_with_their_model() {
        let mut l = listing(&[(1, 1)]);
        l.rejected.push(Rejected { model: Some("m".into()), entry: "007".into(), reason: "leading zeros".into() });
        let mut known = K::new();
        loaded(&mut known, 1, 1, "v1");
        let p = plan(step(&l, &known, &BTreeMap::new(), VersionPolicy::Latest(1)));
        assert_eq!(p.ignored.len(), 1);
        assert_eq!(p.ignored[0].entry, "007");
    }
}
