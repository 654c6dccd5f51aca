//! Many replicas, one model store: versions published to an object store
//! (`s3://`, `gs://`, `az://`, `file://`) and synced into each replica's
//! local models directory, with the same commit guarantees as local
//! publishing. See `docs/object-store.md`.
//!
//! - [`manifest`]: the manifest format (model → version → files with size
//!   and SHA-256) and its pure changes.
//! - [`store`]: the object store behind a URL: conditional manifest reads
//!   and writes, content-addressed files.
//! - [`publish`]: upload files, then commit the manifest with
//!   compare-and-swap (`riskserve publish`, `riskserve train --publish-to`).
//! - [`install`]: staging, fsync and rename into the local models
//!   directory; the last applied manifest kept on disk.
//! - [`replica`]: the poll loop (`riskserve serve --sync-from`).
//! - [`revert`]: a guard's revert published to the store for the fleet.
//! - [`gc`]: removing files no recent manifest generation names
//!   (`riskserve publish --gc`).
//! - [`status`]: what the loop shares: the verified set behind
//!   [`SyncedSource`] (the loader's [`crate::repository::ModelSource`]),
//!   `/v1/models`' sync status, the `riskserve_sync_*` metrics.
//!
//! The design: the sync task only *materialises* verified versions in the
//! local directory; the existing local source, watcher and loader swap them
//! in, so every guarantee of local hot reload (load-then-swap, last good
//! version kept, digests checked by the model format) holds unchanged.

pub mod gc;
pub mod install;
pub mod manifest;
pub mod publish;
pub mod replica;
pub mod revert;
pub mod status;
pub mod store;

pub use status::{SyncState, SyncStatus, SyncedSource};
