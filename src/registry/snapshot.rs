//! What one swap publishes: the versions that serve traffic *and* the status
//! of every version the source lists, in one immutable [`Snapshot`], so
//! `GET /v1/models` can never disagree with the traffic being served.

use super::traffic::{Rollout, RolloutView};
pub use super::version::{rfc3339, LoadedVersion};
use crate::model::fields::NameTable;
use crate::repository::Rejected;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The loaded versions of one model.
#[derive(Debug, Clone)]
pub struct ServedModel {
    /// Ascending by version; never empty.
    pub versions: BTreeMap<u64, Arc<LoadedVersion>>,
    /// The applied `rollout.toml`, if any (its versions are all in `versions`).
    pub rollout: Option<Arc<Rollout>>,
    /// Every feature name a version of this model loaded since start
    /// declares: a request field one of them names is accepted (and
    /// ignored by a version that does not declare it); any other is
    /// refused.
    pub known: Arc<NameTable>,
}

impl ServedModel {
    /// The names `versions` declare together with those `previous` knew,
    /// shared with `previous` when nothing is new.
    pub fn known_names(versions: &BTreeMap<u64, Arc<LoadedVersion>>, previous: Option<&ServedModel>) -> Arc<NameTable> {
        let mut names: BTreeSet<&str> = previous.map(|p| p.known.names().collect()).unwrap_or_default();
        let before = names.len();
        for v in versions.values() {
            names.extend(v.scorer.fields().schema().names());
        }
        match previous {
            Some(p) if names.len() == before => p.known.clone(),
            _ => Arc::new(NameTable::new(names)),
        }
    }

    /// The version that takes unpinned traffic by default: the rollout's
    /// stable version (or promoted canary), else the highest loaded.
    pub fn default_version(&self) -> Option<&Arc<LoadedVersion>> {
        match &self.rollout {
            Some(r) => Some(r.default_version()),
            None => self.versions.values().next_back(),
        }
    }
}

/// An immutable view of everything being served and why.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Models with at least one version serving.
    pub models: BTreeMap<String, ServedModel>,
    /// Every model the source lists or that still serves, by name.
    pub status: BTreeMap<String, ModelStatus>,
}

impl Snapshot {
    /// The version unpinned traffic of `model` gets.
    pub fn serving_version(&self, model: &str) -> Option<u64> {
        self.models.get(model).and_then(ServedModel::default_version).map(|v| v.version)
    }
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
    /// The model exists in the source but none of its versions loaded.
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

/// Status of one version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    pub version: u64,
    pub state: VersionState,
    /// Why it is not available (or serves an older copy), in public words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The full error, only when the operator view is enabled
    /// (`operator_view`): it may quote the file or name paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// True for the version taking unpinned traffic.
    pub serving: bool,
    /// Where the version is, relative to the model source (`credit-risk/3/model.json`).
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How predictions of this version are explained (`reasons`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<crate::model::explain::ExplainInfo>,
    /// What the file records: trained-as name/version, algorithm, threshold,
    /// training data fingerprint and metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::model::format::ModelMeta>,
    /// What a request may send to this version: each feature's kind, range
    /// or trained categories, and the value imputed when it is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<crate::model::schema::Feature>>,
    /// Drift of its recent applications from its training reference
    /// (latest PSI per feature, top movers), read when the status is
    /// written; absent without a reference or with monitoring off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::LiveDrift>,
}

impl VersionStatus {
    /// The row of a loaded version.
    pub fn available(v: &LoadedVersion) -> VersionStatus {
        VersionStatus {
            version: v.version,
            state: VersionState::Available,
            reason: None,
            detail: None,
            serving: false,
            path: v.location.clone(),
            loaded_at: Some(rfc3339(v.loaded_at)),
            load_seconds: Some(v.load_seconds),
            digest: Some(v.scorer.digest().to_string()),
            explain: v.scorer.explain_info(),
            model: Some(v.scorer.meta().clone()),
            inputs: Some(crate::model::schema::inputs(v.scorer.fields().schema())),
            drift: v.drift.clone().map(crate::drift::LiveDrift),
        }
    }

    /// The row of a version that is not loaded (failed, idle or loading).
    pub fn unloaded(version: u64, location: &str, state: VersionState, reason: Option<String>) -> VersionStatus {
        VersionStatus {
            version,
            state,
            reason,
            detail: None,
            serving: false,
            path: location.to_string(),
            loaded_at: None,
            load_seconds: None,
            digest: None,
            explain: None,
            model: None,
            inputs: None,
            drift: None,
        }
    }
}

/// An entry of the model's directory the source does not offer.
#[derive(Debug, Clone, Serialize)]
pub struct IgnoredEntry {
    pub entry: String,
    pub reason: String,
}

impl From<&Rejected> for IgnoredEntry {
    fn from(r: &Rejected) -> IgnoredEntry {
        IgnoredEntry { entry: r.entry.clone(), reason: r.reason.clone() }
    }
}

/// Status of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<u64>,
    /// Descending by version.
    pub versions: Vec<VersionStatus>,
    /// Entries next to the versions that are not served (e.g. `007`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredEntry>,
    /// A warning an operator should act on (e.g. every version removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The model's `rollout.toml`, when it has one: live state of the rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// A model's rollout file and what it does now.
#[derive(Debug, Clone)]
pub struct RolloutStatus {
    /// Where the file is (`credit-risk/rollout.toml`).
    pub file: String,
    /// Why the current file is not applied (the last good rollout, if any,
    /// stays in force).
    pub error: Option<String>,
    /// The rollout in force.
    pub applied: Option<Arc<Rollout>>,
}

impl Serialize for RolloutStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            file: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
            applied: Option<RolloutView>,
        }
        Shown { file: &self.file, error: self.error.as_deref(), applied: self.applied.as_ref().map(|r| r.view()) }
            .serialize(serializer)
    }
}
