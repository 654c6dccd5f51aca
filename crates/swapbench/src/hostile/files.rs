//! The hostile-files case: what a careless or malicious neighbour can leave
//! in the models directory — a FIFO as a version's `model.json`, a
//! `model.json` symlinked to a file outside the directory, a truncated
//! file, a corrupt file (digest mismatch), and a burst of junk model
//! directories created then deleted. Paths come from
//! `riskserve::repository::LocalDirectory` (the one owner of the layout);
//! everything planted is removed again by [`Planted::remove`].

use crate::operator::flip_payload_byte;
use riskserve::repository::LocalDirectory;
use std::path::{Path, PathBuf};

/// Why planting failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("mkfifo {0}: failed")]
    Fifo(PathBuf),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FilesError + 'a {
    move |source| FilesError::Io { what, path: path.to_path_buf(), source }
}

/// What was planted, to check and to remove.
#[derive(Debug, Default)]
pub struct Planted {
    /// Version directories of `model` (FIFO, symlink, truncated, corrupt).
    pub versions: Vec<PathBuf>,
    /// The version whose `model.json` links outside the models directory.
    pub symlink_version: Option<u64>,
    /// The link's target, outside the models directory.
    pub outside: Option<PathBuf>,
    pub junk_dirs: usize,
}

/// Plants the bad versions above `latest` (FIFO, symlink, truncated,
/// corrupt, in that order) and creates then deletes `junk` junk model
/// directories. `good` is a valid model file's bytes.
pub fn plant(repo: &LocalDirectory, model: &str, latest: u64, good: &[u8], junk: usize) -> Result<Planted, FilesError> {
    let mut planted = Planted::default();
    let mut version = latest;
    let mut next_dir = |planted: &mut Planted| -> Result<(u64, PathBuf), FilesError> {
        version += 1;
        let dir = repo.version_dir(model, version);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        planted.versions.push(dir);
        Ok((version, repo.model_file(model, version)))
    };

    let (_, fifo) = next_dir(&mut planted)?;
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().map_err(io("running mkfifo for", &fifo))?;
    if !made.success() {
        return Err(FilesError::Fifo(fifo));
    }

    // A valid model outside the directory: if it were followed, it would be served.
    let outside = std::env::temp_dir().join(format!("hostile-outside-{}.json", std::process::id()));
    std::fs::write(&outside, good).map_err(io("writing", &outside))?;
    planted.outside = Some(outside.clone());
    let (v, link) = next_dir(&mut planted)?;
    std::os::unix::fs::symlink(&outside, &link).map_err(io("linking", &link))?;
    planted.symlink_version = Some(v);

    let (_, truncated) = next_dir(&mut planted)?;
    std::fs::write(&truncated, &good[..good.len() / 2]).map_err(io("writing", &truncated))?;
    let (_, corrupt) = next_dir(&mut planted)?;
    std::fs::write(&corrupt, flip_payload_byte(good)).map_err(io("writing", &corrupt))?;

    let junk_dirs: Vec<PathBuf> = (0..junk).map(|i| repo.model_file(&format!("hostile-junk-{i}"), 1)).collect();
    for file in &junk_dirs {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        std::fs::write(file, b"{ not a model").map_err(io("writing", file))?;
        planted.junk_dirs += 1;
    }
    for i in 0..junk {
        let dir = repo.model_dir(&format!("hostile-junk-{i}"));
        std::fs::remove_dir_all(&dir).map_err(io("removing", &dir))?;
    }
    Ok(planted)
}

impl Planted {
    /// Removes the bad versions and the outside file (best effort; the
    /// first error is returned after trying everything).
    pub fn remove(&self) -> Result<(), FilesError> {
        let mut first = None;
        for dir in &self.versions {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                first.get_or_insert(FilesError::Io { what: "removing", path: dir.clone(), source: e });
            }
        }
        if let Some(outside) = &self.outside {
            let _ = std::fs::remove_file(outside);
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plants_and_removes_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("models");
        let repo = LocalDirectory::new(&dir);
        repo.publish("m", 1, br#"{"payload":"123456"}"#).unwrap();
        let planted = plant(&repo, "m", 1, br#"{"payload":"123456"}"#, 5).unwrap();
        assert_eq!(planted.versions.len(), 4);
        assert_eq!(planted.symlink_version, Some(3));
        assert_eq!(planted.junk_dirs, 5);
        assert!(std::fs::symlink_metadata(repo.model_file("m", 3)).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(repo.model_file("m", 4)).unwrap().len(), 10);
        assert_ne!(std::fs::read(repo.model_file("m", 5)).unwrap(), br#"{"payload":"123456"}"#);
        assert_eq!(repo.latest_version("m").unwrap(), 5);
        planted.remove().unwrap();
        assert_eq!(repo.latest_version("m").unwrap(), 1);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["m"]);
        assert!(!planted.outside.unwrap().exists());
    }
}
