//! Publishing a version to an object store so that nobody ever sees it half
//! done: upload every file of the version under its content address, then
//! write the manifest, last and conditionally. Until the manifest names the
//! version, replicas do not know it exists; once it does, every byte it
//! names is already in the store.
//!
//! **Races.** The manifest write is If-Match on the ETag read (create-if-
//! absent for the first publish). If another publisher wrote the manifest
//! in between, the write fails and the manifest is read again: a change
//! that does not touch the same version (another model, another version) is
//! re-applied on top, a bounded number of times; a change to the same
//! version is refused with [`PublishError::LostRace`].
//!
//! A model's `rollout.toml` is published the same way (validated first, by
//! the rules the loader applies): its bytes under their content address,
//! then the manifest names it as the model's file. [`publish_rollout_if`]
//! makes the write conditional on the file the caller last saw as well, so
//! two replicas reverting the same canary at once cannot lose an update.

use super::manifest::{history_key, Change, Conflict, FileEntry, Manifest, VersionFiles};
use super::store::{ManifestRead, Store, StoreError};
use crate::model::format::DEFAULT_MAX_MODEL_BYTES;
use crate::registry::rfc3339;
use crate::registry::rollout::{self, MAX_ROLLOUT_FILE_BYTES};
use crate::repository::layout::ROLLOUT_FILE_NAME;
use crate::repository::layout::{self, MODEL_FILE_NAME};
use crate::repository::local;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::Path;

/// Manifest writes retried after losing to a non-conflicting publish.
pub const MAX_ATTEMPTS: usize = 10;

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}: {reason}")]
    Local { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "manifest changed since read: another publisher won ({model} version {version} is now published with \
         sha256 {sha256}); re-run publish with another version number"
    )]
    LostRace { model: String, version: u64, sha256: String },
    #[error(
        "{model} version {version} is already published with other bytes (sha256 {sha256}) by another publisher; \
         versions are immutable: publish a new version number"
    )]
    AlreadyDifferent { model: String, version: u64, sha256: String },
    #[error("{model} version {version} is not published; nothing to remove")]
    NotPublished { model: String, version: u64 },
    #[error(
        "manifest changed since read {MAX_ATTEMPTS} times in a row: other publishers keep winning; re-run publish"
    )]
    TooBusy,
    #[error("{model}/{name} is not published; nothing to remove")]
    NoFile { model: String, name: String },
    #[error("{model}/{name} changed in the store since it was read (another replica or operator changed it first)")]
    FileChanged { model: String, name: String },
}

/// What a manifest commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The manifest generation that includes the change (or already did).
    pub generation: u64,
    /// False when the manifest already said exactly this.
    pub changed: bool,
    /// Manifest writes lost to other publishers and redone.
    pub retries: usize,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub model: String,
    pub version: u64,
    /// The manifest generation that includes the change (or already did).
    pub generation: u64,
    /// False when exactly these files were already published as this version.
    pub changed: bool,
    /// Files uploaded (files already present under their address are not).
    pub uploaded: usize,
    /// Manifest writes lost to other publishers and redone.
    pub retries: usize,
}

/// File name and bytes of each file of a version.
pub type VersionContents = Vec<(String, Bytes)>;

/// The files of a version directory `<…>/<model>/<version>/`: its
/// `model.json` (checked exactly as the server would load it) and any other
/// plain files beside it. Returns `(model, version, files)`.
pub fn read_version_dir(dir: &Path) -> Result<(String, u64, VersionContents), PublishError> {
    let local = |reason: String| PublishError::Local { path: dir.display().to_string(), reason };
    let file = local::version_file(dir).map_err(local)?.map_or(MODEL_FILE_NAME, |(file, _)| file);
    let model_file = dir.join(file);
    let (model, version) = layout::name_and_version(&model_file)
        .map_err(local)?
        .ok_or_else(|| local("expected a version directory <models>/<name>/<version>".into()))?;
    local::validate_file(&model_file, DEFAULT_MAX_MODEL_BYTES).map_err(|e| local(format!("not publishable: {e}")))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| local(e.to_string()))? {
        let entry = entry.map_err(|e| local(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| local(format!("{name}: {e}")))?;
        files.push((name, Bytes::from(bytes)));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((model, version, files))
}

/// Publishes a version directory: uploads, then commits the manifest.
pub async fn publish_dir(store: &Store, dir: &Path) -> Result<Published, PublishError> {
    let (model, version, files) = read_version_dir(dir)?;
    publish_files(store, &model, version, files).await
}

/// Publishes `files` as `model`'s `version`.
pub async fn publish_files(
    store: &Store,
    model: &str,
    version: u64,
    files: VersionContents,
) -> Result<Published, PublishError> {
    let mut entries = BTreeMap::new();
    let mut uploaded = 0;
    for (name, bytes) in files {
        let entry = FileEntry::for_bytes(&bytes);
        if store.put_blob(&entry.path, bytes).await? {
            uploaded += 1;
        }
        entries.insert(name, entry);
    }
    let change = Change::Add { model: model.to_string(), version, files: VersionFiles { files: entries } };
    let mut published = commit(store, &change).await?;
    published.uploaded = uploaded;
    Ok(published)
}

/// Removes `model`'s `version` from the manifest. Replicas retire it once
/// they serve something else; its files stay in the store (other versions
/// may share them).
pub async fn unpublish(store: &Store, model: &str, version: u64) -> Result<Published, PublishError> {
    commit(store, &Change::Remove { model: model.to_string(), version }).await
}

/// Applies `change` to the manifest with compare-and-swap, re-reading and
/// re-applying after a lost write as long as the change does not conflict.
pub async fn commit(store: &Store, change: &Change) -> Result<Published, PublishError> {
    let (model, version) = match change {
        Change::Add { model, version, .. } | Change::Remove { model, version } => (model.clone(), *version),
        Change::SetFile { model, .. } | Change::RemoveFile { model, .. } => (model.clone(), 0),
    };
    let c = commit_change(store, change).await?;
    Ok(Published { model, version, generation: c.generation, changed: c.changed, uploaded: 0, retries: c.retries })
}

/// [`commit`], for any change.
pub async fn commit_change(store: &Store, change: &Change) -> Result<Committed, PublishError> {
    let model = match change {
        Change::Add { model, .. }
        | Change::Remove { model, .. }
        | Change::SetFile { model, .. }
        | Change::RemoveFile { model, .. } => model.clone(),
    };
    for retries in 0..MAX_ATTEMPTS {
        let (current, etag) = match store.read_manifest(None).await? {
            ManifestRead::Found { manifest, etag, .. } => (manifest, etag),
            ManifestRead::Absent => (Manifest::empty(), None),
            // Not asked with an ETag, so a store cannot answer "unchanged".
            ManifestRead::Unchanged => continue,
        };
        let next = match current.apply(change, rfc3339(std::time::SystemTime::now())) {
            Ok(next) => next,
            Err(Conflict::AlreadyPublished) => {
                return Ok(Committed { generation: current.generation, changed: false, retries })
            }
            Err(Conflict::Different { model, version, sha256 }) if retries > 0 => {
                return Err(PublishError::LostRace { model, version, sha256 })
            }
            Err(Conflict::Different { model, version, sha256 }) => {
                return Err(PublishError::AlreadyDifferent { model, version, sha256 })
            }
            Err(Conflict::NotPublished { model, version }) => {
                return Err(PublishError::NotPublished { model, version })
            }
            Err(Conflict::NoFile { model, name }) => return Err(PublishError::NoFile { model, name }),
            Err(Conflict::FileChanged { model, name }) => return Err(PublishError::FileChanged { model, name }),
        };
        match store.replace_manifest(&next, etag.as_deref()).await {
            Ok(()) => {
                // The history copy garbage collection reads (see `super::gc`).
                let key = history_key(next.generation);
                if let Err(e) = store.put_object(&key, Bytes::from(next.to_bytes())).await {
                    tracing::warn!(error = %e, "manifest committed, but its history copy was not written: `publish --gc` will refuse to run until this generation is older than its grace period");
                }
                return Ok(Committed { generation: next.generation, changed: true, retries });
            }
            Err(StoreError::Changed { .. }) => {
                tracing::info!(%model, "manifest changed since read; re-reading");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PublishError::TooBusy)
}

/// Checks rollout file bytes as the loader will (`what` names them in the error).
pub fn check_rollout(what: &str, bytes: &[u8]) -> Result<rollout::RolloutPolicy, PublishError> {
    if bytes.len() as u64 > MAX_ROLLOUT_FILE_BYTES {
        return Err(PublishError::Local {
            path: what.to_string(),
            reason: format!("larger than the {MAX_ROLLOUT_FILE_BYTES} bytes a rollout file may be"),
        });
    }
    rollout::parse(bytes).map_err(|e| PublishError::Local { path: what.to_string(), reason: e.to_string() })
}

/// Publishes `bytes` as `model`'s `rollout.toml` (validated first).
pub async fn publish_rollout(store: &Store, model: &str, bytes: Bytes) -> Result<Committed, PublishError> {
    publish_rollout_if(store, model, bytes, None).await
}

/// [`publish_rollout`], only if the model's published rollout file is still
/// `expected` (`Some(None)`: none is published); otherwise
/// [`PublishError::FileChanged`].
pub async fn publish_rollout_if(
    store: &Store,
    model: &str,
    bytes: Bytes,
    expected: Option<Option<FileEntry>>,
) -> Result<Committed, PublishError> {
    layout::check_model_name(model).map_err(|reason| PublishError::Local { path: model.to_string(), reason })?;
    check_rollout(&format!("{model}/{ROLLOUT_FILE_NAME}"), &bytes)?;
    let file = FileEntry::for_bytes(&bytes);
    store.put_blob(&file.path, bytes).await?;
    let change = Change::SetFile { model: model.to_string(), name: ROLLOUT_FILE_NAME.to_string(), file, expected };
    commit_change(store, &change).await
}

/// Takes `model`'s `rollout.toml` out of the manifest: replicas delete
/// their copy and the rollout ends (the highest loaded version serves).
pub async fn unpublish_rollout(store: &Store, model: &str) -> Result<Committed, PublishError> {
    commit_change(store, &Change::RemoveFile { model: model.to_string(), name: ROLLOUT_FILE_NAME.to_string() }).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::manifest::sha256_hex;
    use std::sync::Arc;

    fn memory() -> Store {
        Store::from_parts(Arc::new(object_store::memory::InMemory::new()), "prefix", "memory://bucket/prefix")
    }

    fn file(bytes: &'static [u8]) -> Vec<(String, Bytes)> {
        vec![(MODEL_FILE_NAME.to_string(), Bytes::from_static(bytes))]
    }

    async fn manifest(store: &Store) -> Manifest {
        match store.read_manifest(None).await.unwrap() {
            ManifestRead::Found { manifest, .. } => manifest,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn files_go_up_before_the_manifest_names_them() {
        let store = memory();
        let p = publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        assert_eq!((p.generation, p.changed, p.uploaded), (1, true, 1));
        let m = manifest(&store).await;
        let entry = &m.version("m", 1).unwrap().files[MODEL_FILE_NAME];
        assert_eq!(store.get_blob(&entry.path, 100).await.unwrap(), Bytes::from_static(b"one"));
        // Publishing the same bytes again changes nothing.
        let again = publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        assert_eq!((again.generation, again.changed, again.uploaded), (1, false, 0));
        // Other bytes for a published version are refused.
        let err = publish_files(&store, "m", 1, file(b"uno")).await.unwrap_err();
        assert!(matches!(err, PublishError::AlreadyDifferent { .. }), "{err}");
        assert!(err.to_string().contains("immutable"), "{err}");
        let p = unpublish(&store, "m", 1).await.unwrap();
        assert_eq!(p.generation, 2);
        assert!(manifest(&store).await.models.is_empty());
        assert!(matches!(unpublish(&store, "m", 1).await, Err(PublishError::NotPublished { .. })));
    }

    /// Two publishers read the same generation; the other one commits first.
    /// This one's write fails; on re-reading it loses (clearly) on the same
    /// version and merges a change to another version.
    #[tokio::test]
    async fn a_lost_manifest_write_is_redone_only_when_it_does_not_conflict() {
        let store = memory();
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        let lost = commit_after_losing(&store, add("m", 2, b"two-loser"), add("m", 2, b"two-winner")).await;
        let text = lost.unwrap_err().to_string();
        assert!(text.contains("manifest changed since read: another publisher won"), "{text}");
        assert!(text.contains(&sha256_hex(b"two-winner")), "names what won: {text}");
        // A change to another version is merged on top instead.
        let merged = commit_after_losing(&store, add("m", 3, b"three"), add("m", 4, b"four")).await.unwrap();
        assert_eq!((merged.generation, merged.retries, merged.changed), (4, 1, true));
        let m = manifest(&store).await;
        assert_eq!(m.versions().map(|(_, v, _)| v).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(m.version("m", 2).unwrap().files[MODEL_FILE_NAME].matches(b"two-winner"));
    }

    #[tokio::test]
    async fn a_rollout_file_is_checked_published_conditionally_and_removed() {
        let store = memory();
        let bad = publish_rollout(&store, "m", Bytes::from_static(b"canary = 3")).await.unwrap_err();
        assert!(bad.to_string().starts_with("m/rollout.toml: rollout file"), "{bad}");
        assert!(matches!(store.read_manifest(None).await.unwrap(), ManifestRead::Absent), "nothing published");
        let c = publish_rollout(&store, "m", Bytes::from_static(b"stable = 1\n")).await.unwrap();
        assert_eq!((c.generation, c.changed), (1, true));
        let entry = manifest(&store).await.models["m"].files[ROLLOUT_FILE_NAME].clone();
        assert_eq!(store.get_blob(&entry.path, 100).await.unwrap(), Bytes::from_static(b"stable = 1\n"));
        let again = publish_rollout(&store, "m", Bytes::from_static(b"stable = 1\n")).await.unwrap();
        assert!(!again.changed);
        // Two replicas revert over the same file: the second is told.
        let revert =
            |text: &'static [u8]| publish_rollout_if(&store, "m", Bytes::from_static(text), Some(Some(entry.clone())));
        assert!(revert(b"stable = 1\n# reverted\n").await.unwrap().changed);
        assert!(matches!(revert(b"stable = 1\n# reverted too\n").await, Err(PublishError::FileChanged { .. })));
        assert_eq!(unpublish_rollout(&store, "m").await.unwrap().generation, 3);
        let err = unpublish_rollout(&store, "m").await.unwrap_err();
        assert!(err.to_string().contains("m/rollout.toml is not published"), "{err}");
    }

    fn add(model: &str, version: u64, bytes: &[u8]) -> Change {
        let files =
            VersionFiles { files: BTreeMap::from([(MODEL_FILE_NAME.to_string(), FileEntry::for_bytes(bytes))]) };
        Change::Add { model: model.into(), version, files }
    }

    /// `commit(change)` while another publisher commits `winner` between
    /// this one's read and its conditional write.
    async fn commit_after_losing(store: &Store, change: Change, winner: Change) -> Result<Published, PublishError> {
        let current = manifest(store).await;
        let won = current.apply(&winner, "t".into()).unwrap();
        let losing =
            LoseFirstWrite { inner: store.inner().clone(), winner: std::sync::Mutex::new(Some(won.to_bytes())) };
        commit(&Store::from_parts(Arc::new(losing), "prefix", "memory://x"), &change).await
    }

    /// Wraps a store; its first conditional write fails as if another
    /// publisher had written first.
    #[derive(Debug)]
    struct LoseFirstWrite {
        inner: Arc<dyn object_store::ObjectStore>,
        /// The other publisher's manifest, written just before our first write.
        winner: std::sync::Mutex<Option<Vec<u8>>>,
    }

    impl std::fmt::Display for LoseFirstWrite {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("LoseFirstWrite")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for LoseFirstWrite {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            if !matches!(opts.mode, object_store::PutMode::Overwrite) {
                let winner = self.winner.lock().unwrap().take();
                if let Some(winner) = winner {
                    self.inner.put(location, winner.into()).await?;
                    return Err(object_store::Error::Precondition {
                        path: location.to_string(),
                        source: "lost".into(),
                    });
                }
            }
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }
        async fn delete(&self, location: &object_store::path::Path) -> object_store::Result<()> {
            self.inner.delete(location).await
        }
        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
        ) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }
        async fn copy_if_not_exists(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
        ) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }
}
