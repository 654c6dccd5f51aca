//! Publishing a model version atomically: the file is written under a
//! temporary directory next to the target (same filesystem), fsynced, and the
//! directory renamed to `<models>/<name>/<version>/`. A watcher never sees a
//! half-written `model.json` under a version directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Highest integer version directory under `model_dir` (0 if none).
pub fn latest_version(model_dir: &Path) -> std::io::Result<u64> {
    let mut max = 0;
    match fs::read_dir(model_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if let Some(v) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                    max = max.max(v);
                }
            }
            Ok(max)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes the file that `encode(version)` returns as the next version of the
/// model, atomically. Returns the version and the path of the file.
pub fn publish_next_version(
    models_dir: &Path,
    model_name: &str,
    encode: &dyn Fn(u64) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<(u64, PathBuf)> {
    let model_dir = models_dir.join(model_name);
    fs::create_dir_all(&model_dir)?;
    // Another trainer may take the same number: retry a bounded number of times.
    for _ in 0..100 {
        let version = latest_version(&model_dir)? + 1;
        let staging = model_dir.join(format!(".staging-{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging)?;
        let file = staging.join(crate::model::format::MODEL_FILE_NAME);
        let written = (|| {
            let mut f = fs::File::create(&file)?;
            f.write_all(&encode(version)?)?;
            f.sync_all()?;
            fs::File::open(&staging)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let target = model_dir.join(version.to_string());
        if target.exists() {
            let _ = fs::remove_dir_all(&staging);
            continue;
        }
        match fs::rename(&staging, &target) {
            Ok(()) => {
                fs::File::open(&model_dir)?.sync_all()?;
                return Ok((version, target.join(crate::model::format::MODEL_FILE_NAME)));
            }
            Err(_) if target.exists() => {
                let _ = fs::remove_dir_all(&staging);
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
    }
    Err(std::io::Error::other("could not claim a free version number after 100 attempts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_and_staging_directories_are_left_behind_by_nobody() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("m/7")).unwrap();
        fs::create_dir_all(dir.path().join("m/not-a-version")).unwrap();
        let (v, path) = publish_next_version(dir.path(), "m", &|v| Ok(format!("v{v}").into_bytes())).unwrap();
        assert_eq!(v, 8);
        assert_eq!(fs::read_to_string(path).unwrap(), "v8");
        let (v, _) = publish_next_version(dir.path(), "m", &|v| Ok(format!("v{v}").into_bytes())).unwrap();
        assert_eq!(v, 9);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("m"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
