//! Garbage collection of the store's content-addressed files
//! (`riskserve publish --to URL --gc [--older-than DURATION]`).
//!
//! A file may be deleted only when no replica can still need it. A replica
//! downloads the files of the manifest generation it read, and may still be
//! fetching them a while after a newer generation replaced it; a publisher
//! uploads files *before* the manifest names them. So a file is kept when:
//! 1. the current manifest names it; or
//! 2. a generation replaced less than `older_than` ago names it (every
//!    committed generation is copied to `manifests/<generation>.json`, and
//!    its replacement time is when the next generation was written); or
//! 3. it was written less than `older_than` ago (an upload whose manifest
//!    commit is still to come).
//!
//! Everything else in `blobs/sha256/` is deleted, and history copies older
//! than the oldest generation kept go too. If a generation inside the grace
//! period has no history copy (published by an older riskserve, or its copy
//! failed to write), nothing is deleted and the error says when to retry.

use super::manifest::{history_generation, history_key, Manifest, BLOB_DIR, HISTORY_DIR, MANIFEST_KEY};
use super::store::{ManifestRead, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Why garbage collection did not run.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("nothing is published at {0}: nothing to collect")]
    NothingPublished(String),
    #[error(
        "manifest generation {generation} was replaced less than {older_than:?} ago, but its history copy \
         {key} is missing (published by an older riskserve, or the copy failed to write): the files it names \
         cannot be known, so nothing was removed; run again once it is older than the grace period"
    )]
    HistoryMissing { generation: u64, key: String, older_than: Duration },
    #[error("history copy {key}: {reason}")]
    History { key: String, reason: String },
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Generations whose files were kept (the current one first).
    pub generations_kept: Vec<u64>,
    /// Files kept because a kept generation names them.
    pub kept_referenced: usize,
    /// Unreferenced files kept because they are younger than the grace period.
    pub kept_recent: usize,
    /// Files deleted (their keys).
    pub removed: Vec<String>,
    /// History copies deleted.
    pub history_removed: usize,
}

/// Collects the store's unreferenced files older than `older_than`, as of
/// `now` (Unix seconds).
pub async fn collect(store: &Store, older_than: Duration, now: i64) -> Result<GcReport, GcError> {
    let current = match store.read_manifest(None).await? {
        ManifestRead::Found { manifest, .. } => manifest,
        _ => return Err(GcError::NothingPublished(store.url().to_string())),
    };
    let cutoff = now.saturating_sub(i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX));
    let history: BTreeMap<u64, (String, i64)> = store
        .list(HISTORY_DIR)
        .await?
        .into_iter()
        .filter_map(|(key, at)| Some((history_generation(&key)?, (key, at))))
        .collect();
    let manifest_written = store.list("").await?.into_iter().find(|(k, _)| k == MANIFEST_KEY).map_or(now, |(_, at)| at);
    let mut keep: BTreeSet<String> = current.blob_keys().map(str::to_string).collect();
    let mut report = GcReport { generations_kept: vec![current.generation], ..GcReport::default() };
    let mut generation = current.generation;
    while generation > 1 {
        generation -= 1;
        // Replaced when the next generation was written: the nearest copy
        // above bounds that from above (the current manifest, if none).
        let replaced = history.range(generation + 1..current.generation).next().map_or(manifest_written, |(_, c)| c.1);
        if replaced < cutoff {
            break;
        }
        let Some((key, _)) = history.get(&generation) else {
            return Err(GcError::HistoryMissing { generation, key: history_key(generation), older_than });
        };
        let bytes = store.get_blob(key, super::manifest::MAX_MANIFEST_BYTES as u64).await?;
        let old = Manifest::parse(&bytes).map_err(|e| GcError::History { key: key.clone(), reason: e.to_string() })?;
        keep.extend(old.blob_keys().map(str::to_string));
        report.generations_kept.push(generation);
    }
    let oldest_kept = *report.generations_kept.last().unwrap_or(&current.generation);
    for (key, at) in store.list(BLOB_DIR).await? {
        if keep.contains(&key) {
            report.kept_referenced += 1;
        } else if at >= cutoff {
            report.kept_recent += 1;
        } else {
            store.delete(&key).await?;
            tracing::info!(%key, "unreferenced file removed");
            report.removed.push(key);
        }
    }
    for (generation, (key, _)) in history.range(..oldest_kept) {
        if *generation < oldest_kept {
            store.delete(key).await?;
            report.history_removed += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::layout::MODEL_FILE_NAME;
    use crate::sync::manifest::FileEntry;
    use crate::sync::publish::{publish_files, unpublish};
    use bytes::Bytes;
    use std::sync::Arc;

    fn memory() -> Store {
        Store::from_parts(Arc::new(object_store::memory::InMemory::new()), "p", "memory://b/p")
    }

    fn file(bytes: &'static [u8]) -> Vec<(String, Bytes)> {
        vec![(MODEL_FILE_NAME.to_string(), Bytes::from_static(bytes))]
    }

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// A replica read generation 2 and is about to fetch version 1's file
    /// when version 1 is unpublished and a collection runs: within the
    /// grace period the file stays and the download succeeds; once the
    /// replacement is older than the grace period, it goes.
    #[tokio::test]
    async fn a_download_of_an_older_generation_is_never_broken_and_old_files_go_after_the_grace_period() {
        let store = memory();
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        publish_files(&store, "m", 2, file(b"two")).await.unwrap();
        let ManifestRead::Found { manifest: read_by_replica, .. } = store.read_manifest(None).await.unwrap() else {
            panic!()
        };
        unpublish(&store, "m", 1).await.unwrap();
        // A stray upload whose manifest commit has not happened yet.
        let stray = FileEntry::for_bytes(b"in flight");
        store.put_blob(&stray.path, Bytes::from_static(b"in flight")).await.unwrap();

        let report = collect(&store, HOUR, now()).await.unwrap();
        assert_eq!(report.generations_kept, [3, 2, 1]);
        assert_eq!((report.kept_referenced, report.kept_recent, report.removed.len()), (2, 1, 0));
        // The replica's download of generation 2's files goes through.
        let one = &read_by_replica.version("m", 1).unwrap().files[MODEL_FILE_NAME];
        assert_eq!(store.get_blob(&one.path, 100).await.unwrap(), Bytes::from_static(b"one"));

        // Later: everything replaced more than the grace period ago goes.
        let later = collect(&store, HOUR, now() + 2 * 3600).await.unwrap();
        assert_eq!(later.generations_kept, [3]);
        let mut removed = later.removed.clone();
        removed.sort();
        let mut expected = vec![one.path.clone(), stray.path.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(later.history_removed, 2);
        assert!(store.get_blob(&one.path, 100).await.is_err());
        let two = FileEntry::for_bytes(b"two");
        assert_eq!(store.get_blob(&two.path, 100).await.unwrap(), Bytes::from_static(b"two"), "current stays");
        assert_eq!(collect(&store, HOUR, now() + 2 * 3600).await.unwrap().removed.len(), 0, "idempotent");
    }

    #[tokio::test]
    async fn a_generation_in_the_grace_period_without_its_history_copy_stops_the_collection() {
        let store = memory();
        publish_files(&store, "m", 1, file(b"one")).await.unwrap();
        unpublish(&store, "m", 1).await.unwrap();
        store.delete(&history_key(1)).await.unwrap();
        let err = collect(&store, HOUR, now()).await.unwrap_err();
        assert!(matches!(err, GcError::HistoryMissing { generation: 1, .. }), "{err}");
        assert!(err.to_string().contains("nothing was removed"), "{err}");
        assert!(store.get_blob(&FileEntry::for_bytes(b"one").path, 100).await.is_ok());
        let err = collect(&memory(), HOUR, now()).await.unwrap_err();
        assert!(err.to_string().contains("nothing is published"), "{err}");
    }
}
