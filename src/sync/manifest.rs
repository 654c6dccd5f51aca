//! The manifest: the one small object (`<prefix>/manifest.json`) that says
//! which model versions an object store offers, and the content-addressed
//! keys their files live under. Publishers upload files first and write the
//! manifest last, conditionally; replicas serve only what it lists, after
//! checking each file's size and SHA-256 against it. Pure data and pure
//! changes here; talking to the store is [`super::store`]'s job.
//!
//! The format is documented in `docs/object-store.md`.

use crate::model::import::Format;
use crate::repository::layout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lower-case hex SHA-256 (the model format's: one definition).
pub use crate::model::format::sha256_hex;

/// The names a version's model file may have, for errors.
fn model_file_names() -> String {
    Format::ALL.iter().map(|f| f.file_name()).collect::<Vec<_>>().join(", ")
}

/// The `format` field of every manifest this code writes and reads.
pub const FORMAT: &str = "riskserve-manifest/1";

/// Object key of the manifest, under the prefix.
pub const MANIFEST_KEY: &str = "manifest.json";

/// Directory (under the prefix) of the content-addressed files.
pub const BLOB_DIR: &str = "blobs/sha256";

/// Directory (under the prefix) of a copy of every manifest generation
/// committed, kept for garbage collection (`manifests/<generation>.json`).
pub const HISTORY_DIR: &str = "manifests";

/// The key of the history copy of `generation`.
pub fn history_key(generation: u64) -> String {
    format!("{HISTORY_DIR}/{generation:020}.json")
}

/// The generation a history key names, if it is one.
pub fn history_generation(key: &str) -> Option<u64> {
    key.strip_prefix(HISTORY_DIR)?.strip_prefix('/')?.strip_suffix(".json")?.parse().ok()
}

/// Largest manifest accepted, so a hostile or broken store cannot make a
/// replica buffer without bound.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// Incremented by one by every publish; replicas report the one they are on.
    pub generation: u64,
    /// RFC 3339 time of the publish that wrote this generation.
    pub updated_at: String,
    /// Model name → what is published for it.
    #[serde(default)]
    pub models: BTreeMap<String, ModelEntry>,
}

/// One model's published versions, and room for per-model files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Version (decimal, canonical) → its files.
    #[serde(default)]
    pub versions: BTreeMap<u64, VersionFiles>,
    /// Files that belong to the model rather than to one version, by file
    /// name. Replicas materialise `rollout.toml` (written to
    /// `<models>/<name>/rollout.toml`, where the loader applies it); other
    /// names are carried along and ignored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileEntry>,
}

/// The files of one version, by file name inside the version directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFiles {
    pub files: BTreeMap<String, FileEntry>,
}

impl VersionFiles {
    /// The version's model files (`model.json`, `xgboost.json`, …): a
    /// version has exactly one.
    pub fn model_files(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.files.iter().filter(|(name, _)| Format::of_file(name).is_some()).map(|(n, f)| (n.as_str(), f))
    }
}

/// One file: where its bytes are (relative to the prefix) and what they must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl FileEntry {
    /// The entry for `bytes`, stored under its content address.
    pub fn for_bytes(bytes: &[u8]) -> FileEntry {
        let sha256 = sha256_hex(bytes);
        FileEntry { path: blob_key(&sha256), size: bytes.len() as u64, sha256 }
    }

    /// Whether `bytes` are exactly this file.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.size && sha256_hex(bytes) == self.sha256
    }
}

/// The content-addressed key of a file with this digest.
pub fn blob_key(sha256: &str) -> String {
    format!("{BLOB_DIR}/{sha256}")
}

/// Why a manifest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Parse(String),
    #[error("manifest format {found:?} is not {FORMAT:?}: this riskserve cannot read it")]
    Format { found: String },
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest entry {at}: {problem}")]
    Entry { at: String, problem: String },
}

impl Manifest {
    /// An empty manifest at generation 0 (nothing published yet).
    pub fn empty() -> Manifest {
        Manifest { format: FORMAT.into(), generation: 0, updated_at: String::new(), models: BTreeMap::new() }
    }

    /// Parses and checks a manifest: format, model names, versions, file
    /// names, and that every file path is a content address matching its digest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if m.format != FORMAT {
            return Err(ManifestError::Format { found: m.format });
        }
        for (name, model) in &m.models {
            let entry = |problem: String| ManifestError::Entry { at: name.clone(), problem };
            layout::check_model_name(name).map_err(entry)?;
            for (version, files) in &model.versions {
                let at = format!("{name}/{version}");
                let entry = |problem: String| ManifestError::Entry { at: at.clone(), problem };
                if *version == 0 {
                    return Err(entry("versions start at 1".into()));
                }
                match files.model_files().count() {
                    1 => {}
                    0 => return Err(entry(format!("has no model file ({})", model_file_names()))),
                    _ => return Err(entry(format!("has more than one model file ({})", model_file_names()))),
                }
                for (file, f) in &files.files {
                    check_file(file, f).map_err(entry)?;
                }
            }
            for (file, f) in &model.files {
                check_file(file, f).map_err(entry)?;
            }
        }
        Ok(m)
    }

    /// The manifest as stored (pretty JSON: it is small, and people read it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The files of `model`'s `version`, if published.
    pub fn version(&self, model: &str, version: u64) -> Option<&VersionFiles> {
        self.models.get(model)?.versions.get(&version)
    }

    /// The content addresses of every file it names.
    pub fn blob_keys(&self) -> impl Iterator<Item = &str> {
        self.models.values().flat_map(|m| {
            m.versions.values().flat_map(|v| v.files.values()).chain(m.files.values()).map(|f| f.path.as_str())
        })
    }

    /// Every published `(model, version)`.
    pub fn versions(&self) -> impl Iterator<Item = (&str, u64, &VersionFiles)> {
        self.models.iter().flat_map(|(name, m)| m.versions.iter().map(move |(v, f)| (name.as_str(), *v, f)))
    }

    /// Applies `change` to a copy of this manifest as the next generation,
    /// or says why it conflicts with what is already published.
    pub fn apply(&self, change: &Change, now: String) -> Result<Manifest, Conflict> {
        let mut next = self.clone();
        match change {
            Change::Add { model, version, files } => match self.version(model, *version) {
                Some(existing) if existing == files => return Err(Conflict::AlreadyPublished),
                Some(existing) => {
                    return Err(Conflict::Different {
                        model: model.clone(),
                        version: *version,
                        sha256: existing.model_files().next().map(|(_, f)| f.sha256.clone()).unwrap_or_default(),
                    })
                }
                None => {
                    next.models.entry(model.clone()).or_default().versions.insert(*version, files.clone());
                }
            },
            Change::SetFile { model, name, file, expected } => {
                let current = self.models.get(model).and_then(|m| m.files.get(name));
                if let Some(expected) = expected {
                    if current != expected.as_ref() {
                        return Err(Conflict::FileChanged { model: model.clone(), name: name.clone() });
                    }
                }
                if current == Some(file) {
                    return Err(Conflict::AlreadyPublished);
                }
                next.models.entry(model.clone()).or_default().files.insert(name.clone(), file.clone());
            }
            Change::RemoveFile { model, name } => {
                let Some(entry) = next.models.get_mut(model).filter(|m| m.files.contains_key(name)) else {
                    return Err(Conflict::NoFile { model: model.clone(), name: name.clone() });
                };
                entry.files.remove(name);
                if entry.versions.is_empty() && entry.files.is_empty() {
                    next.models.remove(model);
                }
            }
            Change::Remove { model, version } => {
                let Some(entry) = next.models.get_mut(model) else {
                    return Err(Conflict::NotPublished { model: model.clone(), version: *version });
                };
                if entry.versions.remove(version).is_none() {
                    return Err(Conflict::NotPublished { model: model.clone(), version: *version });
                }
                if entry.versions.is_empty() && entry.files.is_empty() {
                    next.models.remove(model);
                }
            }
        }
        next.format = FORMAT.into();
        next.generation = self.generation + 1;
        next.updated_at = now;
        Ok(next)
    }
}

fn check_file(name: &str, f: &FileEntry) -> Result<(), String> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !plain {
        return Err(format!("file name {name:?} must be a plain name (A-Z a-z 0-9 . _ -, not starting with `.`)"));
    }
    if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("{name}: sha256 must be 64 lower-case hex digits"));
    }
    if f.path != blob_key(&f.sha256) {
        return Err(format!("{name}: path {:?} is not the content address {:?}", f.path, blob_key(&f.sha256)));
    }
    Ok(())
}

/// One publish: what it adds to or removes from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add {
        model: String,
        version: u64,
        files: VersionFiles,
    },
    Remove {
        model: String,
        version: u64,
    },
    /// Sets a per-model file (`rollout.toml`). With `expected`, only if the
    /// file is still exactly that (`Some(None)`: still absent): a
    /// compare-and-swap on the file, on top of the one on the manifest.
    SetFile {
        model: String,
        name: String,
        file: FileEntry,
        expected: Option<Option<FileEntry>>,
    },
    RemoveFile {
        model: String,
        name: String,
    },
}

/// Why a change cannot be applied to the manifest as it now is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Exactly these files are already published as that version: nothing to do.
    AlreadyPublished,
    /// That version is published with other bytes.
    Different { model: String, version: u64, sha256: String },
    /// Removing a version that is not published.
    NotPublished { model: String, version: u64 },
    /// Removing a per-model file that is not published.
    NoFile { model: String, name: String },
    /// A conditional [`Change::SetFile`] found the file changed.
    FileChanged { model: String, name: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(model: &str, version: u64, bytes: &[u8]) -> Change {
        let files = VersionFiles { files: BTreeMap::from([("model.json".to_string(), FileEntry::for_bytes(bytes))]) };
        Change::Add { model: model.into(), version, files }
    }

    #[test]
    fn changes_make_the_next_generation_and_conflicts_are_named() {
        let m0 = Manifest::empty();
        let m1 = m0.apply(&add("credit-risk", 7, b"seven"), "t1".into()).unwrap();
        assert_eq!((m1.generation, m1.updated_at.as_str()), (1, "t1"));
        assert_eq!(m1.version("credit-risk", 7).unwrap().files["model.json"].size, 5);
        assert_eq!(m1.apply(&add("credit-risk", 7, b"seven"), "t2".into()), Err(Conflict::AlreadyPublished));
        let Err(Conflict::Different { version: 7, sha256, .. }) =
            m1.apply(&add("credit-risk", 7, b"other"), "t".into())
        else {
            panic!("a different file for a published version is a conflict")
        };
        assert_eq!(sha256, sha256_hex(b"seven"));
        let m2 = m1.apply(&add("credit-risk", 8, b"eight"), "t2".into()).unwrap();
        assert_eq!(m2.versions().map(|(n, v, _)| (n, v)).collect::<Vec<_>>(), [("credit-risk", 7), ("credit-risk", 8)]);
        let m3 = m2.apply(&Change::Remove { model: "credit-risk".into(), version: 7 }, "t3".into()).unwrap();
        assert_eq!((m3.generation, m3.version("credit-risk", 7)), (3, None));
        let m4 = m3.apply(&Change::Remove { model: "credit-risk".into(), version: 8 }, "t4".into()).unwrap();
        assert!(m4.models.is_empty(), "a model with nothing left is dropped");
        assert!(matches!(
            m4.apply(&Change::Remove { model: "credit-risk".into(), version: 8 }, "t".into()),
            Err(Conflict::NotPublished { .. })
        ));
    }

    #[test]
    fn a_manifest_round_trips_and_bad_ones_are_refused_with_the_reason() {
        let m = Manifest::empty().apply(&add("credit-risk", 3, b"three"), "t".into()).unwrap();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.contains("\"3\": {") && text.contains(BLOB_DIR), "{text}");
        let bad =
            |from: &str, to: &str| Manifest::parse(text.replacen(from, to, 1).as_bytes()).unwrap_err().to_string();
        assert!(bad(FORMAT, "riskserve-manifest/9").contains("cannot read it"));
        assert!(bad("\"credit-risk\"", "\"../etc\"").contains("model name"));
        assert!(bad("\"3\": {", "\"0\": {").contains("versions start at 1"));
        assert!(check_file("../x", &FileEntry::for_bytes(b"x")).unwrap_err().contains("plain name"));
        assert!(bad(BLOB_DIR, "elsewhere").contains("content address"));
        assert!(bad("\"generation\"", "\"generations\"").contains("expected shape"));
        assert!(Manifest::parse(&vec![b' '; MAX_MANIFEST_BYTES + 1]).is_err());
        // Room for per-model files (e.g. a rollout.toml) without a format change.
        let with_files = text.replacen("\"versions\"", "\"files\": {\"rollout.toml\": {\"path\": \"blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000\", \"size\": 1, \"sha256\": \"0000000000000000000000000000000000000000000000000000000000000000\"}}, \"versions\"", 1);
        assert_eq!(Manifest::parse(with_files.as_bytes()).unwrap().models["credit-risk"].files.len(), 1);
    }

    #[test]
    fn per_model_files_are_set_conditionally_and_removed() {
        let set = |bytes: &[u8], expected: Option<Option<FileEntry>>| Change::SetFile {
            model: "m".into(),
            name: "rollout.toml".into(),
            file: FileEntry::for_bytes(bytes),
            expected,
        };
        let remove = Change::RemoveFile { model: "m".into(), name: "rollout.toml".into() };
        let m1 = Manifest::empty().apply(&set(b"stable = 1", None), "t1".into()).unwrap();
        assert_eq!(m1.models["m"].files["rollout.toml"], FileEntry::for_bytes(b"stable = 1"));
        assert!(m1.models["m"].versions.is_empty(), "a rollout may come before its versions");
        assert_eq!(Manifest::parse(&m1.to_bytes()).unwrap(), m1);
        assert_eq!(m1.apply(&set(b"stable = 1", None), "t".into()), Err(Conflict::AlreadyPublished));
        // Conditional: only over the file expected.
        let stale = Some(Some(FileEntry::for_bytes(b"other")));
        assert!(matches!(m1.apply(&set(b"stable = 2", stale), "t".into()), Err(Conflict::FileChanged { .. })));
        assert!(matches!(m1.apply(&set(b"stable = 2", Some(None)), "t".into()), Err(Conflict::FileChanged { .. })));
        let current = Some(Some(FileEntry::for_bytes(b"stable = 1")));
        let m2 = m1.apply(&set(b"stable = 2", current), "t2".into()).unwrap();
        assert_eq!(m2.generation, 2);
        let m3 = m2.apply(&remove, "t3".into()).unwrap();
        assert!(m3.models.is_empty(), "nothing left of the model");
        assert!(matches!(m3.apply(&remove, "t".into()), Err(Conflict::NoFile { .. })));
    }

    #[test]
    fn file_entries_check_size_and_digest() {
        let f = FileEntry::for_bytes(b"abc");
        assert_eq!(f.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(f.matches(b"abc"));
        assert!(!f.matches(b"abd") && !f.matches(b"abcd"));
    }
}
