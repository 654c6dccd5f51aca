//! The object store behind a sync URL (`s3://`, `gs://`, `az://`, `file://`)
//! and the four operations the protocol needs: read the manifest
//! conditionally (If-None-Match), replace it conditionally (If-Match on its
//! ETag, or create-if-absent), upload a content-addressed file, and read one.
//!
//! Credentials and endpoints come only from each cloud's standard
//! environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`; see
//! `docs/object-store.md`), never from the config file.

use super::manifest::{Manifest, ManifestError, MANIFEST_KEY, MAX_MANIFEST_BYTES};
use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{GetOptions, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use std::sync::Arc;
use std::time::Duration;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{key}: {source}")]
    Store { key: String, source: object_store::Error },
    #[error("{key}: {source}")]
    Manifest { key: String, source: ManifestError },
    /// The manifest is not the one read: someone else wrote it meanwhile.
    #[error("{key} changed since it was read")]
    Changed { key: String },
    #[error("{key} is {size} bytes, more than the {limit} accepted")]
    TooLarge { key: String, size: u64, limit: u64 },
}

/// The manifest as read.
#[derive(Debug)]
pub enum ManifestRead {
    /// Same ETag as the one given: nothing downloaded (HTTP 304).
    Unchanged,
    /// No manifest yet (nothing ever published).
    Absent,
    Found {
        manifest: Manifest,
        /// The ETag to condition the next read or write on.
        etag: Option<String>,
        /// Body bytes downloaded.
        bytes: u64,
    },
}

/// A store and the prefix the protocol lives under.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// How long one request to the store may take, and how hard the client
/// retries by itself. Kept short: the sync loop has its own backoff, and a
/// poll must not hang for minutes while the store is down.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

impl Store {
    /// Opens `url`: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (credentials and endpoint from the
    /// environment) or `file:///absolute/dir`.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let bad = |reason: String| StoreError::Url { url: url.to_string(), reason };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            bad("expected s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir".into())
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        let bucket_url = format!("{scheme}://{bucket}");
        let built = |r: object_store::Result<Arc<dyn ObjectStore>>| r.map_err(|e| bad(e.to_string()));
        let (inner, prefix) = match scheme {
            "s3" | "s3a" => (
                built(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_url(bucket_url)
                        .with_retry(retry())
                        .build()
                        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
                )?,
                prefix,
            ),
            "gs" => (
                built(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(bucket_url)
                        .with_retry(retry())
                        .build()
                        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
                )?,
                prefix,
            ),
            "az" | "azure" | "abfs" => (
                built(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_url(bucket_url)
                        .with_retry(retry())
                        .build()
                        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
                )?,
                prefix,
            ),
            "file" => {
                if !bucket.is_empty() {
                    return Err(bad("a file URL has no host: file:///absolute/dir".into()));
                }
                let dir = format!("/{prefix}");
                std::fs::create_dir_all(&dir).map_err(|e| bad(format!("creating {dir}: {e}")))?;
                let local =
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
                (Arc::new(local) as Arc<dyn ObjectStore>, String::new())
            }
            other => return Err(bad(format!("unsupported scheme `{other}`: use s3, gs, az or file"))),
        };
        Ok(Store { inner, prefix, url: url.trim_end_matches('/').to_string() })
    }

    /// A store over `inner` (tests use `object_store::memory::InMemory`).
    pub fn from_parts(inner: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Store {
        Store { inner, prefix: prefix.trim_matches('/').to_string(), url: url.to_string() }
    }

    /// The URL, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn key(&self, relative: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(relative)
        } else {
            Key::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn fail(&self, relative: &str, source: object_store::Error) -> StoreError {
        StoreError::Store { key: format!("{}/{relative}", self.url), source }
    }

    /// Reads the manifest; with `if_none_match`, an unchanged manifest is
    /// [`ManifestRead::Unchanged`] and costs no body.
    pub async fn read_manifest(&self, if_none_match: Option<&str>) -> Result<ManifestRead, StoreError> {
        let options = GetOptions { if_none_match: if_none_match.map(str::to_string), ..GetOptions::default() };
        let got = match self.inner.get_opts(&self.key(MANIFEST_KEY), options).await {
            Ok(got) => got,
            Err(object_store::Error::NotModified { .. }) => return Ok(ManifestRead::Unchanged),
            Err(object_store::Error::NotFound { .. }) => return Ok(ManifestRead::Absent),
            Err(e) => return Err(self.fail(MANIFEST_KEY, e)),
        };
        // A store that ignores If-None-Match answers 200 with the same ETag.
        let etag = got.meta.e_tag.clone();
        if etag.is_some() && etag.as_deref() == if_none_match {
            return Ok(ManifestRead::Unchanged);
        }
        if got.meta.size > MAX_MANIFEST_BYTES as u64 {
            return Err(StoreError::TooLarge {
                key: format!("{}/{MANIFEST_KEY}", self.url),
                size: got.meta.size,
                limit: MAX_MANIFEST_BYTES as u64,
            });
        }
        let body = got.bytes().await.map_err(|e| self.fail(MANIFEST_KEY, e))?;
        let manifest = Manifest::parse(&body)
            .map_err(|source| StoreError::Manifest { key: format!("{}/{MANIFEST_KEY}", self.url), source })?;
        Ok(ManifestRead::Found { manifest, etag, bytes: body.len() as u64 })
    }

    /// Writes `next` as the manifest only if the stored one is still the one
    /// read: its ETag `expected`, or absent when `expected` is `None`
    /// (create-if-absent). [`StoreError::Changed`] if another writer got there first.
    pub async fn replace_manifest(&self, next: &Manifest, expected: Option<&str>) -> Result<(), StoreError> {
        let mode = match expected {
            Some(e_tag) => PutMode::Update(UpdateVersion { e_tag: Some(e_tag.to_string()), version: None }),
            None => PutMode::Create,
        };
        let key = self.key(MANIFEST_KEY);
        let payload = PutPayload::from(next.to_bytes());
        match self.inner.put_opts(&key, payload.clone(), PutOptions::from(mode)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                Err(StoreError::Changed { key: format!("{}/{MANIFEST_KEY}", self.url) })
            }
            // The local filesystem has no If-Match: compare and swap under a lock object.
            Err(object_store::Error::NotImplemented) => self.replace_under_lock(payload, expected).await,
            Err(e) => Err(self.fail(MANIFEST_KEY, e)),
        }
    }

    /// If-Match for stores without it (a `file://` shared mount): create a
    /// lock object exclusively, compare the ETag, write, drop the lock. A
    /// lock left by a crashed publisher is broken after [`LOCK_STALE_AFTER`].
    async fn replace_under_lock(&self, payload: PutPayload, expected: Option<&str>) -> Result<(), StoreError> {
        const LOCK: &str = "manifest.json.lock";
        let lock = self.key(LOCK);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.inner.put_opts(&lock, PutPayload::from_static(b"lock"), PutOptions::from(PutMode::Create)).await
            {
                Ok(_) => break,
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if let Ok(meta) = self.inner.head(&lock).await {
                        let age = age_of(meta.last_modified.timestamp());
                        if age > LOCK_STALE_AFTER {
                            tracing::warn!(lock = %lock, ?age, "breaking a stale manifest lock");
                            let _ = self.inner.delete(&lock).await;
                            continue;
                        }
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(StoreError::Changed { key: format!("{}/{MANIFEST_KEY}", self.url) });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(self.fail(LOCK, e)),
            }
        }
        let result = async {
            let current = match self.inner.head(&self.key(MANIFEST_KEY)).await {
                Ok(meta) => Some(meta.e_tag),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(self.fail(MANIFEST_KEY, e)),
            };
            let unchanged = match (current, expected) {
                (None, None) => true,
                (Some(Some(now)), Some(expected)) => now == expected,
                _ => false,
            };
            if !unchanged {
                return Err(StoreError::Changed { key: format!("{}/{MANIFEST_KEY}", self.url) });
            }
            self.inner.put(&self.key(MANIFEST_KEY), payload).await.map(|_| ()).map_err(|e| self.fail(MANIFEST_KEY, e))
        }
        .await;
        let _ = self.inner.delete(&lock).await;
        result
    }

    /// Uploads `bytes` under `relative` unless an object of that size is
    /// already there (content-addressed keys never change meaning). Returns
    /// whether it uploaded.
    pub async fn put_blob(&self, relative: &str, bytes: Bytes) -> Result<bool, StoreError> {
        let key = self.key(relative);
        if let Ok(meta) = self.inner.head(&key).await {
            if meta.size == bytes.len() as u64 {
                return Ok(false);
            }
        }
        self.inner.put(&key, PutPayload::from(bytes)).await.map_err(|e| self.fail(relative, e))?;
        Ok(true)
    }

    /// Reads the object `relative`, refusing more than `max_bytes`.
    pub async fn get_blob(&self, relative: &str, max_bytes: u64) -> Result<Bytes, StoreError> {
        let got = self.inner.get(&self.key(relative)).await.map_err(|e| self.fail(relative, e))?;
        if got.meta.size > max_bytes {
            return Err(StoreError::TooLarge {
                key: format!("{}/{relative}", self.url),
                size: got.meta.size,
                limit: max_bytes,
            });
        }
        got.bytes().await.map_err(|e| self.fail(relative, e))
    }

    /// The objects directly in the directory `relative`: each key relative
    /// to the prefix and when it was last written (Unix seconds).
    pub async fn list(&self, relative: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let dir = self.key(relative);
        let found = self.inner.list_with_delimiter(Some(&dir)).await.map_err(|e| self.fail(relative, e))?;
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        Ok(found
            .objects
            .into_iter()
            .map(|m| {
                let key = m.location.to_string();
                (key.strip_prefix(&strip).unwrap_or(&key).to_string(), m.last_modified.timestamp())
            })
            .collect())
    }

    /// Writes the object `relative` (overwriting).
    pub async fn put_object(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&self.key(relative), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.fail(relative, e))
    }

    /// Deletes the object `relative` (already gone is fine).
    pub async fn delete(&self, relative: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.key(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(relative, e)),
        }
    }

    /// The raw store (tests interrupt uploads through it).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The full key of `relative` (tests).
    pub fn full_key(&self, relative: &str) -> Key {
        self.key(relative)
    }
}

/// A manifest lock older than this was left by a publisher that died.
pub const LOCK_STALE_AFTER: Duration = Duration::from_secs(60);

/// How long ago a Unix time (seconds) was; zero if in the future.
fn age_of(unix_seconds: i64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Duration::from_secs(now.saturating_sub(u64::try_from(unix_seconds).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::manifest::{Change, FileEntry, VersionFiles};
    use std::collections::BTreeMap;

    fn add(version: u64, bytes: &[u8]) -> Change {
        let files = VersionFiles { files: BTreeMap::from([("model.json".to_string(), FileEntry::for_bytes(bytes))]) };
        Change::Add { model: "m".into(), version, files }
    }

    async fn conditional_writes(store: Store) {
        assert!(matches!(store.read_manifest(None).await.unwrap(), ManifestRead::Absent));
        let m1 = Manifest::empty().apply(&add(1, b"one"), "t".into()).unwrap();
        store.replace_manifest(&m1, None).await.unwrap();
        // A second create-if-absent loses.
        assert!(matches!(store.replace_manifest(&m1, None).await, Err(StoreError::Changed { .. })));
        let ManifestRead::Found { manifest, etag, bytes } = store.read_manifest(None).await.unwrap() else {
            panic!("the manifest was written")
        };
        assert_eq!((manifest, bytes), (m1.clone(), m1.to_bytes().len() as u64));
        let etag = etag.expect("stores give ETags");
        assert!(matches!(store.read_manifest(Some(&etag)).await.unwrap(), ManifestRead::Unchanged));
        // Two writers read the same ETag: the first wins, the second is told.
        let m2a = m1.apply(&add(2, b"two-a"), "t".into()).unwrap();
        let m2b = m1.apply(&add(2, b"two-b"), "t".into()).unwrap();
        store.replace_manifest(&m2a, Some(&etag)).await.unwrap();
        assert!(matches!(store.replace_manifest(&m2b, Some(&etag)).await, Err(StoreError::Changed { .. })));
        let ManifestRead::Found { manifest, .. } = store.read_manifest(Some(&etag)).await.unwrap() else {
            panic!("changed since the ETag")
        };
        assert_eq!(manifest, m2a);
    }

    #[tokio::test]
    async fn the_manifest_is_replaced_only_if_unchanged_in_memory() {
        let store = Store::from_parts(Arc::new(object_store::memory::InMemory::new()), "team/models", "memory://x");
        conditional_writes(store).await;
    }

    #[tokio::test]
    async fn a_file_url_gets_the_same_guarantees_through_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/store", dir.path().display());
        conditional_writes(Store::open(&url).unwrap()).await;
        assert!(!dir.path().join("store/manifest.json.lock").exists(), "the lock is released");
    }

    #[tokio::test]
    async fn blobs_are_uploaded_once_and_read_under_a_limit() {
        let store = Store::from_parts(Arc::new(object_store::memory::InMemory::new()), "p", "memory://x");
        assert!(store.put_blob("blobs/sha256/ab", Bytes::from_static(b"abc")).await.unwrap());
        assert!(!store.put_blob("blobs/sha256/ab", Bytes::from_static(b"abc")).await.unwrap());
        assert_eq!(store.get_blob("blobs/sha256/ab", 3).await.unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(store.get_blob("blobs/sha256/ab", 2).await, Err(StoreError::TooLarge { .. })));
        assert!(store.inner().head(&Key::from("p/blobs/sha256/ab")).await.is_ok(), "under the prefix");
    }

    #[test]
    fn urls_name_what_is_wrong() {
        for (url, why) in
            [("models", "expected s3://"), ("ftp://host/x", "unsupported scheme"), ("file://host/x", "no host")]
        {
            let err = Store::open(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
