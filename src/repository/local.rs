//! The local-directory source: `<root>/<model>/<version>/model.json` on a
//! local (or mounted) filesystem, and atomic publishing into it.
//!
//! Publishing writes the file under a hidden staging directory next to its
//! target (same filesystem), fsyncs the file and the directory, renames the
//! directory into place and fsyncs the parent: a reader sees either no
//! version directory or a complete one, never a half-written `model.json`.
//!
//! [`validate_file`] checks one file as the server would before loading it.

use super::layout::{
    self, classify_version_entry, VersionEntryName, MODEL_FILE_NAME, ROLLOUT_FILE_NAME, STAGING_PREFIX,
};
use super::source::{Fingerprint, ListError, Listing, ModelSource, Rejected, RolloutEntry, VersionEntry};
use crate::model::format::LoadError;
use crate::model::import::settings::SETTINGS_FILE_NAME;
use crate::model::import::{Format, VersionBytes};
use crate::model::limits::ModelLimits;
use crate::model::Model;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A model repository in a local directory.
///
/// **Symlinks:** a model name, version directory or `model.json` may be a
/// symlink (Kubernetes volumes are built from them) as long as what it
/// resolves to is inside the models directory. A file that resolves outside
/// it is refused, so a link to `/etc/shadow` is never read, unless
/// [`LocalDirectory::follow_links_outside`] says otherwise.
#[derive(Debug, Clone)]
pub struct LocalDirectory {
    root: PathBuf,
    links_outside: bool,
}

/// A version written by [`LocalDirectory::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: u64,
    /// The model file now in place.
    pub path: PathBuf,
}

impl LocalDirectory {
    pub fn new(root: impl Into<PathBuf>) -> LocalDirectory {
        LocalDirectory { root: root.into(), links_outside: false }
    }

    /// Whether symlinks may resolve outside the models directory.
    pub fn follow_links_outside(mut self, allow: bool) -> LocalDirectory {
        self.links_outside = allow;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<model>`.
    pub fn model_dir(&self, model: &str) -> PathBuf {
        self.root.join(model)
    }

    /// `<root>/<model>/<version>`.
    pub fn version_dir(&self, model: &str, version: u64) -> PathBuf {
        self.model_dir(model).join(version.to_string())
    }

    /// `<root>/<model>/<version>/model.json`.
    pub fn model_file(&self, model: &str, version: u64) -> PathBuf {
        self.version_dir(model, version).join(MODEL_FILE_NAME)
    }

    /// A hidden staging directory for `version`, unique to this process.
    pub fn staging_dir(&self, model: &str, version: u64) -> PathBuf {
        self.model_dir(model).join(format!("{STAGING_PREFIX}{version}-{}", std::process::id()))
    }

    /// Highest valid version directory of `model` (0 if none). Rejected
    /// names such as `007` do not count, exactly as for the server.
    pub fn latest_version(&self, model: &str) -> std::io::Result<u64> {
        let mut max = 0;
        match fs::read_dir(self.model_dir(model)) {
            Ok(entries) => {
                for entry in entries {
                    if let VersionEntryName::Version(v) = classify_version_entry(&entry?.file_name().to_string_lossy())
                    {
                        max = max.max(v);
                    }
                }
                Ok(max)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` as `model`'s `version`, atomically. Fails with
    /// `AlreadyExists` if that version directory exists.
    pub fn publish(&self, model: &str, version: u64, bytes: &[u8]) -> std::io::Result<PathBuf> {
        self.publish_files(model, version, &[(MODEL_FILE_NAME, bytes)])
    }

    /// [`Self::publish`] for a version of several files (an imported model
    /// file and its `model.toml`): all of them appear at once. Returns the
    /// first file's path.
    pub fn publish_files(&self, model: &str, version: u64, files: &[(&str, &[u8])]) -> std::io::Result<PathBuf> {
        layout::check_model_name(model).map_err(std::io::Error::other)?;
        if version == 0 {
            return Err(std::io::Error::other("versions start at 1"));
        }
        let model_dir = self.model_dir(model);
        fs::create_dir_all(&model_dir)?;
        let staging = self.staging_dir(model, version);
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging)?;
        let written = (|| {
            for (name, bytes) in files {
                let mut f = fs::File::create(staging.join(name))?;
                f.write_all(bytes)?;
                f.sync_all()?;
            }
            fs::File::open(&staging)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let target = self.version_dir(model, version);
        // rename(2) of a directory onto an existing non-empty directory
        // fails, so two publishers cannot both claim one version.
        if target.exists() {
            let _ = fs::remove_dir_all(&staging);
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", target.display()),
            ));
        }
        if let Err(e) = fs::rename(&staging, &target) {
            let _ = fs::remove_dir_all(&staging);
            return Err(if target.exists() {
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("{} already exists", target.display()))
            } else {
                e
            });
        }
        fs::File::open(&model_dir)?.sync_all()?;
        Ok(target.join(files.first().map_or(MODEL_FILE_NAME, |f| f.0)))
    }

    /// Publishes the bytes `encode(version)` returns as the next version of
    /// `model` (one above the highest valid version), retrying a bounded
    /// number of times if another publisher takes the number first.
    pub fn publish_next(
        &self,
        model: &str,
        encode: &dyn Fn(u64) -> std::io::Result<Vec<u8>>,
    ) -> std::io::Result<Published> {
        self.claim_next(model, &|version| self.publish(model, version, &encode(version)?))
    }

    /// [`Self::publish_files`] as the next version of `model` (as
    /// [`Self::publish_next`] does).
    pub fn publish_next_files(&self, model: &str, files: &[(&str, &[u8])]) -> std::io::Result<Published> {
        self.claim_next(model, &|version| self.publish_files(model, version, files))
    }

    /// Calls `publish` with the next free version number until one is not
    /// taken by another publisher first (a bounded number of times).
    fn claim_next(&self, model: &str, publish: &dyn Fn(u64) -> std::io::Result<PathBuf>) -> std::io::Result<Published> {
        for _ in 0..100 {
            let version = self.latest_version(model)? + 1;
            match publish(version) {
                Ok(path) => return Ok(Published { version, path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("could not claim a free version number after 100 attempts"))
    }

    /// Entries in `model`'s directory that are not served, with the reason
    /// (what `train` warns about and the server reports).
    pub fn rejected_entries(&self, model: &str) -> Vec<Rejected> {
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(self.model_dir(model)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let VersionEntryName::Rejected(reason) = classify_version_entry(&name) {
                    out.push(Rejected { model: Some(model.to_string()), entry: name, reason });
                }
            }
        }
        out.sort_by(|a, b| a.entry.cmp(&b.entry));
        out
    }
}

impl LocalDirectory {
    /// Refuses a file that resolves outside the models directory (unless allowed).
    fn check_inside(&self, path: &Path, shown: &str) -> Result<(), LoadError> {
        if self.links_outside {
            return Ok(());
        }
        let io = |e: std::io::Error| LoadError::Io { path: path.display().to_string(), reason: e.to_string() };
        let root = fs::canonicalize(&self.root).map_err(io)?;
        if !fs::canonicalize(path).map_err(io)?.starts_with(&root) {
            return Err(LoadError::Invalid(format!(
                "{shown} is a symlink that resolves outside the models directory; \
                 refused (see follow_symlinks_outside_models_dir)"
            )));
        }
        Ok(())
    }
}

/// A version directory's model file (the one of [`Format::ALL`] present)
/// and the version's fingerprint: the model file's, combined with its
/// `model.toml`'s when there is one (a changed setting is a changed
/// version). `None` while no model file is there; an error when more than
/// one is.
pub fn version_file(dir: &Path) -> Result<Option<(&'static str, Fingerprint)>, String> {
    let files: Vec<(&'static str, fs::Metadata)> = Format::ALL
        .iter()
        .filter_map(|f| fs::metadata(dir.join(f.file_name())).ok().map(|m| (f.file_name(), m)))
        .collect();
    match files.as_slice() {
        [] => Ok(None),
        [(file, meta)] => {
            let mut fp = fingerprint(meta);
            if let Ok(settings) = fs::metadata(dir.join(SETTINGS_FILE_NAME)) {
                let s = fingerprint(&settings);
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (fp.token, s.len, s.token).hash(&mut h);
                fp.token = h.finish();
            }
            Ok(Some((file, fp)))
        }
        more => {
            let names = more.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ");
            Err(format!("holds more than one model file ({names}); a version holds one"))
        }
    }
}

/// The fingerprint of a file from its metadata: size, mtime, ctime (a
/// `chmod` or `chown` changes it), inode and device.
pub fn fingerprint(meta: &fs::Metadata) -> Fingerprint {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec(), meta.ino(), meta.dev()).hash(&mut h);
    Fingerprint { len: meta.len(), token: h.finish() }
}

impl ModelSource for LocalDirectory {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    /// Hidden entries are skipped silently; other entries that break the
    /// naming rules are listed as rejected. A version directory without a
    /// `model.json` is not listed (it is probably being prepared).
    fn list(&self) -> Result<Listing, ListError> {
        let fail = |e: std::io::Error| ListError { source_name: self.describe(), reason: e.to_string() };
        let mut out = Listing::default();
        for entry in fs::read_dir(&self.root).map_err(fail)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if let Err(reason) = layout::check_model_name(&name) {
                out.rejected.push(Rejected { model: None, entry: name, reason });
                continue;
            }
            let versions = match fs::read_dir(entry.path()) {
                Ok(v) => v,
                // Deleted while we listed: simply gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    out.rejected.push(Rejected { model: None, entry: name, reason: e.to_string() });
                    continue;
                }
            };
            let mut found = Vec::new();
            for v in versions.flatten() {
                let entry_name = v.file_name().to_string_lossy().into_owned();
                let version = match classify_version_entry(&entry_name) {
                    VersionEntryName::Version(n) => n,
                    VersionEntryName::Hidden => continue,
                    VersionEntryName::Rollout => {
                        if let Ok(meta) = fs::metadata(v.path()) {
                            let location = format!("{name}/{ROLLOUT_FILE_NAME}");
                            out.rollouts
                                .insert(name.clone(), RolloutEntry { fingerprint: fingerprint(&meta), location });
                        }
                        continue;
                    }
                    VersionEntryName::Rejected(reason) => {
                        out.rejected.push(Rejected { model: Some(name.clone()), entry: entry_name, reason });
                        continue;
                    }
                };
                match version_file(&v.path()) {
                    Ok(None) => {}
                    Ok(Some((file, fingerprint))) => found.push(VersionEntry {
                        version,
                        file,
                        fingerprint,
                        location: format!("{name}/{entry_name}/{file}"),
                    }),
                    Err(reason) => out.rejected.push(Rejected { model: Some(name.clone()), entry: entry_name, reason }),
                }
            }
            found.sort_by_key(|v| v.version);
            out.models.insert(name, found);
        }
        Ok(out)
    }

    fn read_rollout(&self, model: &str, entry: &RolloutEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
        let path = self.model_dir(model).join(ROLLOUT_FILE_NAME);
        self.check_inside(&path, &entry.location)?;
        read_file(&path, max_bytes).map_err(|e| match e {
            LoadError::Io { reason, .. } => LoadError::Io { path: entry.location.clone(), reason },
            e => e,
        })
    }

    fn read(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
        let path = self.version_dir(model, entry.version).join(entry.file);
        self.check_inside(&path, &format!("{model}/{}/{}", entry.version, entry.file))?;
        // Errors name the file relative to the models directory only.
        read_file(&path, max_bytes).map_err(|e| match e {
            LoadError::Io { reason, .. } => LoadError::Io { path: entry.location.clone(), reason },
            e => e,
        })
    }

    fn read_settings(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Option<Vec<u8>>, LoadError> {
        self.settings_of(model, entry, max_bytes)
    }
}

impl LocalDirectory {
    /// `model.toml` beside an imported model file, if there is one.
    fn settings_of(&self, model: &str, entry: &VersionEntry, max_bytes: u64) -> Result<Option<Vec<u8>>, LoadError> {
        if entry.file == MODEL_FILE_NAME {
            return Ok(None);
        }
        let path = self.version_dir(model, entry.version).join(SETTINGS_FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let shown = format!("{model}/{}/{SETTINGS_FILE_NAME}", entry.version);
        self.check_inside(&path, &shown)?;
        read_file(&path, max_bytes).map(Some).map_err(|e| match e {
            LoadError::Io { reason, .. } => LoadError::Io { path: shown, reason },
            e => e,
        })
    }
}

/// Reads a model file without ever blocking on what it is: the file is
/// opened non-blocking (a FIFO or device cannot stall the loader), the
/// opened descriptor must be a regular file, files larger than `max_bytes`
/// are refused before reading, and a file that changes while it is read is
/// `Incomplete` (still being written), never `Invalid`.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, LoadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| LoadError::Io { path: path.display().to_string(), reason: e.to_string() };
    let file = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io)?;
    let before = file.metadata().map_err(io)?;
    if !before.is_file() {
        let file = path.file_name().map_or_else(|| MODEL_FILE_NAME.into(), |n| n.to_string_lossy());
        return Err(LoadError::Invalid(format!("{file} is not a regular file")));
    }
    let size = before.len();
    if size > max_bytes {
        return Err(LoadError::Invalid(format!("file is {size} bytes, above the limit of {max_bytes}")));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow while we read it: never read past the limit.
    (&file).take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(LoadError::Invalid(format!("file grew above the limit of {max_bytes} bytes while being read")));
    }
    let after = file.metadata().map_err(io)?;
    if fingerprint(&after) != fingerprint(&before) || bytes.len() as u64 != after.len() {
        return Err(LoadError::Incomplete("the file changed while it was being read".into()));
    }
    Ok(bytes)
}

/// A model file that loads, and how the server would serve it.
#[derive(Debug)]
pub struct ValidatedFile {
    /// The `model.json` checked (a version directory given resolves to its file).
    pub path: PathBuf,
    pub model: Model,
    /// `(name, version)` from its directories, `None` outside a repository layout.
    pub served_as: Option<(String, u64)>,
}

/// Why [`validate_file`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{path}: {source}")]
    Load { path: String, source: LoadError },
    #[error("{path}: the file is valid, but the server will not serve it: {reason}")]
    NotServed { path: String, reason: String },
}

/// Checks a model file (or a version directory) exactly as the server does
/// before loading it: size limit, digest, schema, compilation, and whether
/// its directory names follow the layout rules.
pub fn validate_file(path: &Path, max_bytes: u64) -> Result<ValidatedFile, ValidateError> {
    let path = if path.is_dir() {
        let found = Format::ALL.iter().map(|f| path.join(f.file_name())).find(|p| p.exists());
        found.unwrap_or_else(|| path.join(MODEL_FILE_NAME))
    } else {
        path.to_path_buf()
    };
    let shown = || path.display().to_string();
    let format = path.file_name().and_then(|n| Format::of_file(&n.to_string_lossy())).unwrap_or(Format::Riskserve);
    let settings_path = path.with_file_name(SETTINGS_FILE_NAME);
    let load = || {
        let bytes = read_file(&path, max_bytes)?;
        let settings = match format {
            Format::Riskserve => None,
            _ if settings_path.exists() => Some(read_file(&settings_path, max_bytes)?),
            _ => None,
        };
        Model::load(&VersionBytes { file: format.file_name(), bytes, settings }, ModelLimits::default())
    };
    let model = load().map_err(|source| ValidateError::Load { path: shown(), source })?;
    let served_as =
        layout::name_and_version(&path).map_err(|reason| ValidateError::NotServed { path: shown(), reason })?;
    Ok(ValidatedFile { path, model, served_as })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollout_file_is_listed_with_a_fingerprint_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("m/1")).unwrap();
        fs::write(dir.path().join("m/1/model.json"), "{}").unwrap();
        let repo = LocalDirectory::new(dir.path());
        assert!(repo.list().unwrap().rollouts.is_empty());
        fs::write(dir.path().join("m/rollout.toml"), "stable = 1\n").unwrap();
        let listing = repo.list().unwrap();
        assert!(listing.rejected.is_empty(), "not junk: {:?}", listing.rejected);
        let entry = listing.rollouts["m"].clone();
        assert_eq!(entry.location, "m/rollout.toml");
        assert_eq!(repo.read_rollout("m", &entry, 1024).unwrap(), b"stable = 1\n");
        assert!(repo.read_rollout("m", &entry, 3).unwrap_err().to_string().contains("above the limit"));
        fs::write(dir.path().join("m/rollout.toml"), "stable = 1\n# changed\n").unwrap();
        assert_ne!(repo.list().unwrap().rollouts["m"].fingerprint, entry.fingerprint);
    }

    #[test]
    fn lists_canonical_versions_and_rejects_lookalikes() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["m/1", "m/2", "m/.staging-3", "m/04", "m/abc", "m/5", ".hidden/1", "other/1", "bad name/1"] {
            fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        for p in ["m/1", "m/2", "m/.staging-3", "m/04", "m/abc", ".hidden/1"] {
            fs::write(dir.path().join(p).join("model.json"), "{}").unwrap();
        }
        let listing = LocalDirectory::new(dir.path()).list().unwrap();
        let m: Vec<u64> = listing.models["m"].iter().map(|v| v.version).collect();
        assert_eq!(m, vec![1, 2], "5 has no model.json; staging, 04 and abc are not versions");
        assert!(listing.models["other"].is_empty());
        assert!(!listing.models.contains_key(".hidden"));
        let mut rejected: Vec<&str> = listing.rejected.iter().map(|r| r.entry.as_str()).collect();
        rejected.sort();
        assert_eq!(rejected, vec!["04", "abc", "bad name"]);
    }

    #[test]
    fn the_fingerprint_changes_with_content_and_with_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "a").unwrap();
        let before = fingerprint(&fs::metadata(&path).unwrap());
        assert_eq!(before, fingerprint(&fs::metadata(&path).unwrap()));
        // ctime moves at the next tick of the filesystem clock; wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut mode = 0o600;
        loop {
            mode ^= 0o040;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            if fingerprint(&fs::metadata(&path).unwrap()) != before {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "chmod never changed the fingerprint");
            std::thread::yield_now();
        }
    }

    #[test]
    fn publish_next_counts_up_past_rejected_names_and_leaves_no_staging() {
        let dir = tempfile::tempdir().unwrap();
        let repo = LocalDirectory::new(dir.path());
        fs::create_dir_all(dir.path().join("m/7")).unwrap();
        fs::create_dir_all(dir.path().join("m/not-a-version")).unwrap();
        fs::create_dir_all(dir.path().join("m/0099")).unwrap();
        let encode = |v: u64| Ok(format!("v{v}").into_bytes());
        let p = repo.publish_next("m", &encode).unwrap();
        assert_eq!(p.version, 8, "0099 is not version 99");
        assert_eq!(fs::read_to_string(&p.path).unwrap(), "v8");
        assert_eq!(repo.publish_next("m", &encode).unwrap().version, 9);
        let leftovers = fs::read_dir(dir.path().join("m"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(leftovers, 0);
        let err = repo.publish("m", 9, b"again").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(repo.model_file("m", 9)).unwrap(), "v9", "an existing version is never replaced");
        assert!(repo.publish("bad/name", 1, b"x").is_err());
        let rejected: Vec<String> = repo.rejected_entries("m").into_iter().map(|r| r.entry).collect();
        assert_eq!(rejected, vec!["0099", "not-a-version"]);
    }

    #[test]
    fn read_refuses_oversized_and_non_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_file(&path, 10).unwrap().len(), 10);
        assert!(read_file(&path, 9).unwrap_err().to_string().contains("above the limit"));
        assert_eq!(read_file(&dir.path().join("absent"), 10).unwrap_err().kind(), "io_error");
        assert!(read_file(dir.path(), 10).is_err(), "a directory is not a model file");
    }

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("model.json");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let started = std::time::Instant::now();
        let err = read_file(&fifo, 1 << 20).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn symlinks_outside_the_models_directory_are_refused_unless_allowed() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, b"password=hunter2").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("m/1")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("m/1/model.json")).unwrap();
        fs::create_dir_all(dir.path().join("m/2")).unwrap();
        fs::write(dir.path().join("m/real.json"), b"inside").unwrap();
        std::os::unix::fs::symlink(dir.path().join("m/real.json"), dir.path().join("m/2/model.json")).unwrap();
        let repo = LocalDirectory::new(dir.path());
        let listing = repo.list().unwrap();
        let entry = |v: u64| listing.models["m"].iter().find(|e| e.version == v).unwrap().clone();
        let err = repo.read("m", &entry(1), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), "invalid");
        assert!(err.to_string().contains("outside the models directory"), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(repo.read("m", &entry(2), 1 << 20).unwrap(), b"inside");
        let trusting = repo.clone().follow_links_outside(true);
        assert_eq!(trusting.read("m", &entry(1), 1 << 20).unwrap(), b"password=hunter2");
    }

    #[test]
    fn validate_file_loads_and_says_how_the_server_sees_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let bundled = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/credit-risk/1/model.json")).unwrap();
        for v in ["3", "007"] {
            fs::create_dir_all(dir.path().join("m").join(v)).unwrap();
            fs::write(dir.path().join("m").join(v).join(MODEL_FILE_NAME), &bundled).unwrap();
        }
        let ok = validate_file(&dir.path().join("m/3"), u64::MAX).unwrap();
        assert_eq!(ok.path, dir.path().join("m/3/model.json"), "a version directory resolves to its file");
        assert_eq!(ok.served_as, Some(("m".to_string(), 3)));
        assert!(!ok.model.digest.is_empty());
        let e = validate_file(&dir.path().join("m/007/model.json"), u64::MAX).unwrap_err();
        assert!(matches!(e, ValidateError::NotServed { .. }));
        assert!(e.to_string().contains("will not serve it") && e.to_string().contains("leading zeros"), "{e}");
        let e = validate_file(&dir.path().join("m/3"), 10).unwrap_err();
        assert!(e.to_string().contains("above the limit"), "{e}");
    }
}
