//! Reading the model repository layout `<models>/<name>/<version>/model.json`:
//! which model names and integer versions exist, and a fingerprint of each
//! file so unchanged files are not reloaded and failed files are retried
//! only when they change.

use crate::model::format::MODEL_FILE_NAME;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Identity of a file's content as far as the filesystem tells: any write,
/// truncation, replacement or rename-over changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub mtime_ns: i128,
    pub inode: u64,
    pub dev: u64,
}

impl Fingerprint {
    pub fn of(meta: &std::fs::Metadata) -> Fingerprint {
        Fingerprint {
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            inode: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// A version directory holding a `model.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFile {
    pub version: u64,
    pub path: PathBuf,
    pub fingerprint: Fingerprint,
}

/// What a scan found: model name → versions present (ascending).
#[derive(Debug, Default)]
pub struct RepositoryScan {
    pub models: BTreeMap<String, Vec<VersionFile>>,
    /// Entries skipped with the reason (bad names, unreadable dirs).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Scans the models directory. Hidden entries (`.staging-7`, `.tmp`) and
/// non-integer version directories are ignored, so operators can stage a
/// version next to its final place and rename it in.
pub fn scan(models_dir: &Path) -> std::io::Result<RepositoryScan> {
    let mut out = RepositoryScan::default();
    for entry in std::fs::read_dir(models_dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if !valid_model_name(&name) {
            out.skipped.push((entry.path(), "model directory name must be A-Z a-z 0-9 . _ -".into()));
            continue;
        }
        let versions = match std::fs::read_dir(entry.path()) {
            Ok(v) => v,
            Err(e) => {
                out.skipped.push((entry.path(), e.to_string()));
                continue;
            }
        };
        let mut found = Vec::new();
        for v in versions.flatten() {
            let Some(version) = v.file_name().to_str().and_then(parse_version) else {
                continue;
            };
            let path = v.path().join(MODEL_FILE_NAME);
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.is_file() {
                    found.push(VersionFile { version, path, fingerprint: Fingerprint::of(&meta) });
                }
            }
        }
        found.sort_by_key(|v| v.version);
        out.models.insert(name, found);
    }
    Ok(out)
}

/// Model names become URL path segments and directory names.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A version directory name: a positive integer without sign or leading zeros.
pub fn parse_version(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `(name, version)` from a path `.../<name>/<version>/model.json`, if it has that shape.
pub fn name_and_version(path: &Path) -> Option<(String, u64)> {
    let version_dir = path.parent()?;
    let version = parse_version(version_dir.file_name()?.to_str()?)?;
    let name = version_dir.parent()?.file_name()?.to_str()?.to_string();
    valid_model_name(&name).then_some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_integer_versions_and_ignores_staging_and_junk() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["m/1", "m/2", "m/.staging-3", "m/04", "m/abc", "m/5", ".hidden/1", "other/1"] {
            std::fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        for p in ["m/1", "m/2", "m/.staging-3", "m/04", "m/abc", ".hidden/1"] {
            std::fs::write(dir.path().join(p).join("model.json"), "{}").unwrap();
        }
        let scan = scan(dir.path()).unwrap();
        let m: Vec<u64> = scan.models["m"].iter().map(|v| v.version).collect();
        assert_eq!(m, vec![1, 2], "5 has no model.json; staging, 04 and abc are not versions");
        assert!(scan.models["other"].is_empty());
        assert!(!scan.models.contains_key(".hidden"));
    }

    #[test]
    fn version_names_and_paths() {
        assert_eq!(parse_version("12"), Some(12));
        for bad in ["0", "012", "-1", "+1", "1.0", "", "99999999999999999999999"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert_eq!(name_and_version(Path::new("models/credit-risk/3/model.json")), Some(("credit-risk".into(), 3)));
        assert_eq!(name_and_version(Path::new("/tmp/model.json")), None);
        for good in ["credit-risk", "m.v2_b"] {
            assert!(valid_model_name(good), "{good}");
        }
        for bad in ["", ".staging", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_model_name(bad), "{bad}");
        }
    }
}
