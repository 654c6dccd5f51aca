//! Materialising verified versions in the local models directory, by the
//! same rules as [`crate::repository::LocalDirectory::publish`]: write into
//! a hidden staging directory beside the target, fsync every file and the
//! directory, rename into `<models>/<name>/<version>/`, fsync the parent.
//! Also: checking a local copy against the manifest, removing a retired
//! version, and keeping the last applied manifest on disk
//! (`<models>/.sync/manifest.json`, hidden, so no source lists it) so a
//! replica restarted during a store outage still knows what it may serve.
//! A model's `rollout.toml` is written the same way (hidden temporary file,
//! fsync, rename over the old one), so the loader reads either the old
//! file or the new one, never half of one.

use super::manifest::{Manifest, VersionFiles};
use crate::repository::layout::ROLLOUT_FILE_NAME;
use crate::repository::local::{fingerprint, version_file};
use crate::repository::{Fingerprint, LocalDirectory};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Hidden directory (under the models directory) of the sync state.
pub const STATE_DIR: &str = ".sync";

/// Prefix of the sync task's staging directories.
pub const STAGING: &str = ".staging-sync-";

/// Prefix of a rollout file being written.
const ROLLOUT_STAGING: &str = ".rollout.toml.sync-";

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The fingerprint of `<models>/<name>/<version>` as a listing sees it
/// ([`version_file`]: its model file, and `model.toml` if any).
pub fn local_fingerprint(local: &LocalDirectory, model: &str, version: u64) -> Option<Fingerprint> {
    version_file(&local.version_dir(model, version)).ok().flatten().map(|(_, fp)| fp)
}

/// Whether the local copy of a version is exactly the files the manifest
/// names (sizes and SHA-256). Its fingerprint if so.
pub fn verify_local(local: &LocalDirectory, model: &str, version: u64, files: &VersionFiles) -> Option<Fingerprint> {
    let dir = local.version_dir(model, version);
    for (name, entry) in &files.files {
        let meta = fs::metadata(dir.join(name)).ok()?;
        if meta.len() != entry.size || !entry.matches(&fs::read(dir.join(name)).ok()?) {
            return None;
        }
    }
    local_fingerprint(local, model, version)
}

/// Installs `files` (already verified) as `model`'s `version`. An existing
/// directory of that version (a local copy with other bytes) is moved
/// aside first and deleted after; the loaded copy in memory is unaffected.
/// Returns the installed version's fingerprint ([`local_fingerprint`]).
pub fn install(
    local: &LocalDirectory,
    model: &str,
    version: u64,
    files: &[(String, bytes::Bytes)],
) -> std::io::Result<Fingerprint> {
    let model_dir = local.model_dir(model);
    fs::create_dir_all(&model_dir)?;
    let staging = model_dir.join(format!("{STAGING}{version}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging)?;
    let written = (|| {
        for (name, bytes) in files {
            write_synced(&staging.join(name), bytes)?;
        }
        fs::File::open(&staging)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    let target = local.version_dir(model, version);
    let aside = target.exists().then(|| model_dir.join(format!(".replaced-{version}-{}", std::process::id())));
    if let Some(aside) = &aside {
        let _ = fs::remove_dir_all(aside);
        fs::rename(&target, aside)?;
    }
    if let Err(e) = fs::rename(&staging, &target) {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    fs::File::open(&model_dir)?.sync_all()?;
    if let Some(aside) = aside {
        let _ = fs::remove_dir_all(aside);
    }
    match version_file(&target) {
        Ok(Some((_, fp))) => Ok(fp),
        Ok(None) => Err(std::io::Error::other(format!("{} has no model file", target.display()))),
        Err(reason) => Err(std::io::Error::other(reason)),
    }
}

/// The fingerprint of `<models>/<name>/rollout.toml` as a listing sees it.
pub fn rollout_fingerprint(local: &LocalDirectory, model: &str) -> Option<Fingerprint> {
    fs::metadata(local.model_dir(model).join(ROLLOUT_FILE_NAME)).ok().map(|m| fingerprint(&m))
}

/// The local `rollout.toml`'s fingerprint if its bytes are exactly `entry`.
pub fn verify_rollout(local: &LocalDirectory, model: &str, entry: &super::manifest::FileEntry) -> Option<Fingerprint> {
    let bytes = fs::read(local.model_dir(model).join(ROLLOUT_FILE_NAME)).ok()?;
    entry.matches(&bytes).then(|| rollout_fingerprint(local, model)).flatten()
}

/// Writes `bytes` (already verified) as `model`'s `rollout.toml`, atomically.
pub fn install_rollout(local: &LocalDirectory, model: &str, bytes: &[u8]) -> std::io::Result<Fingerprint> {
    let model_dir = local.model_dir(model);
    fs::create_dir_all(&model_dir)?;
    let tmp = model_dir.join(format!("{ROLLOUT_STAGING}{}", std::process::id()));
    if let Err(e) = write_synced(&tmp, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, model_dir.join(ROLLOUT_FILE_NAME))?;
    fs::File::open(&model_dir)?.sync_all()?;
    fs::metadata(model_dir.join(ROLLOUT_FILE_NAME)).map(|m| fingerprint(&m))
}

/// Removes `model`'s `rollout.toml` (and an emptied model directory).
pub fn remove_rollout(local: &LocalDirectory, model: &str) -> std::io::Result<()> {
    match fs::remove_file(local.model_dir(model).join(ROLLOUT_FILE_NAME)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let _ = fs::remove_dir(local.model_dir(model));
    Ok(())
}

/// Removes a retired version's directory (and an emptied model directory).
pub fn remove(local: &LocalDirectory, model: &str, version: u64) -> std::io::Result<()> {
    match fs::remove_dir_all(local.version_dir(model, version)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Only succeeds when nothing (not even a staging directory) is left.
    let _ = fs::remove_dir(local.model_dir(model));
    Ok(())
}

/// Staging directories left by a replica that died mid-download.
pub fn clean_staging(local: &LocalDirectory) {
    let Ok(models) = fs::read_dir(local.root()) else { return };
    for model in models.flatten() {
        let Ok(entries) = fs::read_dir(model.path()) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING) || name.starts_with(".replaced-") {
                let _ = fs::remove_dir_all(entry.path());
            } else if name.starts_with(ROLLOUT_STAGING) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn state_file(local: &LocalDirectory) -> PathBuf {
    local.root().join(STATE_DIR).join("manifest.json")
}

/// Keeps `manifest` as the last applied one (atomically: temp file, fsync, rename).
pub fn save_applied(local: &LocalDirectory, manifest: &Manifest) -> std::io::Result<()> {
    let dir = local.root().join(STATE_DIR);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".manifest.json.{}", std::process::id()));
    write_synced(&tmp, &manifest.to_bytes())?;
    fs::rename(&tmp, state_file(local))?;
    fs::File::open(&dir)?.sync_all()
}

/// The last applied manifest, if one was saved and still parses.
pub fn load_applied(local: &LocalDirectory) -> Option<Manifest> {
    let bytes = fs::read(state_file(local)).ok()?;
    match Manifest::parse(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the saved sync manifest");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::layout::MODEL_FILE_NAME;
    use crate::sync::manifest::FileEntry;
    use std::collections::BTreeMap;

    #[test]
    fn install_verify_replace_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDirectory::new(dir.path());
        let files = |b: &'static [u8]| vec![(MODEL_FILE_NAME.to_string(), bytes::Bytes::from_static(b))];
        let entry =
            |b: &[u8]| VersionFiles { files: BTreeMap::from([(MODEL_FILE_NAME.into(), FileEntry::for_bytes(b))]) };
        let fp = install(&local, "m", 3, &files(b"three")).unwrap();
        assert_eq!(verify_local(&local, "m", 3, &entry(b"three")), Some(fp));
        assert_eq!(verify_local(&local, "m", 3, &entry(b"other")), None);
        assert_eq!(verify_local(&local, "m", 4, &entry(b"three")), None);
        // A local copy with other bytes is replaced whole.
        let fp2 = install(&local, "m", 3, &files(b"THREE!")).unwrap();
        assert_ne!(fp, fp2);
        assert_eq!(fs::read(local.model_file("m", 3)).unwrap(), b"THREE!");
        let hidden: Vec<_> = fs::read_dir(local.model_dir("m"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "no staging or replaced directory left: {hidden:?}");
        remove(&local, "m", 3).unwrap();
        assert!(!local.model_dir("m").exists(), "an emptied model directory goes too");
        remove(&local, "m", 3).unwrap();
    }

    #[test]
    fn a_rollout_file_is_written_whole_verified_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDirectory::new(dir.path());
        let fp = install_rollout(&local, "m", b"stable = 1\n").unwrap();
        assert_eq!(fs::read(dir.path().join("m/rollout.toml")).unwrap(), b"stable = 1\n");
        assert_eq!(verify_rollout(&local, "m", &FileEntry::for_bytes(b"stable = 1\n")), Some(fp));
        assert_eq!(verify_rollout(&local, "m", &FileEntry::for_bytes(b"stable = 2\n")), None);
        install_rollout(&local, "m", b"stable = 2\n").unwrap();
        assert_eq!(fs::read_dir(dir.path().join("m")).unwrap().count(), 1, "no temporary file left");
        remove_rollout(&local, "m").unwrap();
        assert!(!dir.path().join("m").exists());
        remove_rollout(&local, "m").unwrap();
    }

    #[test]
    fn the_applied_manifest_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalDirectory::new(dir.path());
        assert_eq!(load_applied(&local), None);
        let mut m = Manifest::empty();
        m.generation = 9;
        save_applied(&local, &m).unwrap();
        assert_eq!(load_applied(&local), Some(m));
        fs::create_dir_all(dir.path().join("m/.staging-sync-4-1")).unwrap();
        clean_staging(&local);
        assert_eq!(fs::read_dir(dir.path().join("m")).unwrap().count(), 0);
    }
}
