//! The model repository: where model versions come from.
//!
//! - [`layout`] owns the naming rules every party shares: a model name, a
//!   version directory (a positive integer without leading zeros), the file
//!   name `model.json`, and what counts as staging.
//! - [`source`] is the small interface the loader reads through: list the
//!   models and versions with a change fingerprint each, and read one
//!   version's bytes. See `docs/model-sources.md`.
//! - [`local`] is the first source, a directory on local disk, and owns
//!   atomic publishing into it (stage, fsync, rename).
//!
//! The server, `train`, `validate`, the swap harness and the tests all use
//! these rules; nobody else parses a version directory name.

pub mod layout;
pub mod local;
pub mod source;

pub use local::LocalDirectory;
pub use source::{Fingerprint, ListError, Listing, ModelSource, Rejected, RolloutEntry, VersionEntry};
