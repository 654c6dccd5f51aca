//! The model-source interface: what the loader needs from wherever versions
//! live. A source *lists* models and versions, each with a fingerprint that
//! changes whenever the version's bytes may have changed, and *reads* one
//! version's bytes under a size limit. It never interprets the bytes: that
//! is the model format's job, so every source gets the same verification.
//!
//! The local directory ([`super::LocalDirectory`]) is the first source. The
//! contract, for whoever writes the next one, is in `docs/model-sources.md`.

use crate::model::format::LoadError;
use std::collections::BTreeMap;

/// Identity of a version's content as far as the source can tell cheaply:
/// equal fingerprints mean "unchanged, no need to read again". For a local
/// file it covers size, mtime, ctime (so a `chmod` counts), inode and device;
/// an object store would use the object's size and ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Size in bytes.
    pub len: u64,
    /// Hash of everything else the source knows about the content.
    pub token: u64,
}

/// One version a source offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub version: u64,
    /// The model file's name, which selects its format (`model.json`,
    /// `xgboost.json`, `lightgbm.txt`, `model.onnx`; see [`crate::model::import::Format`]).
    pub file: &'static str,
    pub fingerprint: Fingerprint,
    /// Where it is, for logs and the operator view (a path or a URL).
    pub location: String,
}

/// An entry the source found but will not offer, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The model it belongs to, if it is inside a model.
    pub model: Option<String>,
    /// The entry's name as found (e.g. `007`).
    pub entry: String,
    pub reason: String,
}

/// What a source holds right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Model name → its versions, ascending. A model with no versions is
    /// listed with an empty vector (its directory exists).
    pub models: BTreeMap<String, Vec<VersionEntry>>,
    pub rejected: Vec<Rejected>,
    /// Model name → its rollout file (`rollout.toml`), for the models that
    /// have one. A source that does not carry rollout files leaves it empty.
    pub rollouts: BTreeMap<String, RolloutEntry>,
}

/// A model's rollout file as listed: read again only when the fingerprint changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutEntry {
    pub fingerprint: Fingerprint,
    /// Where it is, for logs (`credit-risk/rollout.toml`).
    pub location: String,
}

/// Why a source could not be listed at all (the whole repository, not one
/// version: that is a [`LoadError`] from [`ModelSource::read`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot list model source {source_name}: {reason}")]
pub struct ListError {
    pub source_name: String,
    pub reason: String,
}

/// Where model versions come from. Implementations are called from the
/// loader's blocking thread, one call at a time, and must never block
/// without bound.
pub trait ModelSource: Send + Sync + 'static {
    /// A short description for logs (`directory models`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
    /// Every model and version present, with fingerprints.
    fn list(&self) -> Result<Listing, ListError>;
    /// The bytes of one version as listed, refusing more than `max_bytes`.
    fn read(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError>;
    /// The bytes of the version's `model.toml`, if it has one (imported
    /// formats only). Sources without settings files need not implement it.
    fn read_settings(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Option<Vec<u8>>, LoadError> {
        let _ = (model, entry, max_bytes);
        Ok(None)
    }
    /// The bytes of one model's rollout file as listed in
    /// [`Listing::rollouts`], refusing more than `max_bytes`. Sources that
    /// never list rollout files need not implement it.
    fn read_rollout(&self, model: &str, entry: &RolloutEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
        let _ = (model, max_bytes);
        Err(LoadError::Io {
            path: entry.location.clone(),
            reason: format!("{} does not carry rollout files", self.describe()),
        })
    }
}
