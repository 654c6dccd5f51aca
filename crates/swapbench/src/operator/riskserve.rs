//! The operator's riskserve model repository. Every layout rule (version
//! directory names, the staging directory, the stage-then-rename commit)
//! comes from `riskserve::repository`; this file only decides *what* to
//! write: good versions, a half-written one, a corrupt one, deletions.

use super::{io, Repo};
use riskserve::model::import::Format;
use riskserve::repository::layout::{parse_version, MODEL_FILE_NAME};
use riskserve::repository::{LocalDirectory, ModelSource};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

/// A riskserve model repository and the model the operator publishes.
pub(super) struct DirRepo {
    repo: LocalDirectory,
    model: String,
    /// Bytes of every version the operator publishes (odd versions, when
    /// there is an alternate).
    bytes: Vec<u8>,
    /// Even versions: a model with other inputs, or in another format
    /// (its file name, such as `xgboost.json`, and bytes).
    alternate: Option<(&'static str, Vec<u8>)>,
    /// The half-written version's file, still open.
    open: Option<(u64, std::fs::File)>,
}

impl DirRepo {
    /// Opens `<models_dir>/<model>`: the versions the server would list, and
    /// the bytes to publish (`source`, or the newest version's file).
    pub(super) fn open(
        models_dir: &Path,
        model: &str,
        source: Option<&Path>,
        alternate: Option<&Path>,
    ) -> Result<(DirRepo, BTreeSet<u64>), String> {
        let repo = LocalDirectory::new(models_dir);
        let listing = repo.list().map_err(|e| e.to_string())?;
        let versions: BTreeSet<u64> =
            listing.models.get(model).into_iter().flatten().map(|entry| entry.version).collect();
        let newest = versions
            .iter()
            .next_back()
            .copied()
            .ok_or_else(|| format!("no version under {}", repo.model_dir(model).display()))?;
        let source = source.map(Path::to_path_buf).unwrap_or_else(|| repo.model_file(model, newest));
        let bytes = std::fs::read(&source).map_err(|e| io("reading", &source, e))?;
        let alternate = alternate
            .map(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let file = Format::of_file(&name).unwrap_or(Format::Riskserve).file_name();
                std::fs::read(p).map(|b| (file, b)).map_err(|e| io("reading", p, e))
            })
            .transpose()?;
        Ok((DirRepo { repo, model: model.to_string(), bytes, alternate, open: None }, versions))
    }

    /// What version `version` is made of: its model file's name and bytes.
    fn file_of(&self, version: u64) -> (&'static str, &[u8]) {
        match &self.alternate {
            Some((file, alternate)) if version.is_multiple_of(2) => (file, alternate),
            _ => (MODEL_FILE_NAME, &self.bytes),
        }
    }

    fn bytes_of(&self, version: u64) -> &[u8] {
        self.file_of(version).1
    }

    fn publish(&self, version: u64, file: &str, bytes: &[u8]) -> Result<(), String> {
        let target = self.repo.version_dir(&self.model, version);
        self.repo
            .publish_files(&self.model, version, &[(file, bytes)])
            .map(drop)
            .map_err(|e| io("publishing", &target, e))
    }
}

/// A copy of `bytes` with one digit inside the payload changed: still JSON,
/// but the payload digest no longer matches.
pub(crate) fn flip_payload_byte(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let payload = out.windows(10).position(|w| w == b"\"payload\":").unwrap_or(0);
    let start = payload + (out.len() - payload) / 2;
    if let Some(i) = (start..out.len()).find(|&i| out[i].is_ascii_digit()) {
        out[i] = if out[i] == b'7' { b'3' } else { b'7' };
    }
    out
}

impl Repo for DirRepo {
    /// `pre` is taken before staging starts: `publish` stages, fsyncs and
    /// renames in one call, and the version becomes visible at the rename.
    fn commit(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String> {
        let pre = clock();
        let (file, bytes) = self.file_of(version);
        self.publish(version, file, bytes)?;
        Ok((pre, clock()))
    }

    /// Deliberately not the documented way: written in place, left open.
    fn half_write(&mut self, version: u64) -> Result<(), String> {
        let target = self.repo.version_dir(&self.model, version);
        std::fs::create_dir_all(&target).map_err(|e| io("creating", &target, e))?;
        let path = target.join(self.file_of(version).0);
        let mut file = std::fs::File::create(&path).map_err(|e| io("creating", &path, e))?;
        let bytes = self.bytes_of(version);
        file.write_all(&bytes[..bytes.len() / 2]).map_err(|e| io("writing", &path, e))?;
        file.flush().map_err(|e| io("writing", &path, e))?;
        self.open = Some((version, file));
        Ok(())
    }

    fn complete_write(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String> {
        let (v, mut file) = self.open.take().ok_or("no half-written file open")?;
        if v != version {
            return Err(format!("half-written version is {v}, not {version}"));
        }
        let pre = clock();
        let bytes = self.bytes_of(version);
        file.write_all(&bytes[bytes.len() / 2..]).map_err(|e| format!("completing version {v}: {e}"))?;
        drop(file); // close: the watcher sees IN_CLOSE_WRITE
        Ok((pre, clock()))
    }

    fn corrupt(&mut self, version: u64) -> Result<(), String> {
        // Always a model.json: its payload digest is what refuses it.
        self.publish(version, MODEL_FILE_NAME, &flip_payload_byte(&self.bytes))
    }

    fn rollback(&mut self, newest: u64, _previous: u64) -> Result<(), String> {
        let dir = self.repo.version_dir(&self.model, newest);
        std::fs::remove_dir_all(&dir).map_err(|e| io("deleting", &dir, e))
    }

    fn prune(&mut self, keep: &BTreeSet<u64>, invalid: &BTreeSet<u64>) -> Result<(), String> {
        let dir = self.repo.model_dir(&self.model);
        let entries = std::fs::read_dir(&dir).map_err(|e| io("listing", &dir, e))?;
        for e in entries.flatten() {
            let Some(v) = e.file_name().to_str().and_then(parse_version) else { continue };
            if !keep.contains(&v) || invalid.contains(&v) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/credit-risk/1/model.json");

    fn repo() -> (tempfile::TempDir, DirRepo, BTreeSet<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let bytes = std::fs::read(BUNDLED).unwrap();
        LocalDirectory::new(&models).publish("m", 3, &bytes).unwrap();
        let (repo, versions) = DirRepo::open(&models, "m", None, None).unwrap();
        (dir, repo, versions)
    }

    fn versions_on_disk(repo: &DirRepo) -> Vec<u64> {
        let listing = repo.repo.list().unwrap();
        listing.models["m"].iter().map(|e| e.version).collect()
    }

    #[test]
    fn every_step_leaves_the_layout_the_server_expects() {
        let (_dir, mut repo, versions) = repo();
        assert_eq!(versions, BTreeSet::from([3]));
        let clock = || 1;
        assert_eq!(repo.commit(4, &clock).unwrap(), (1, 1));
        let good = std::fs::read(repo.repo.model_file("m", 4)).unwrap();
        assert!(riskserve::model::Model::from_bytes(&good).is_ok());

        repo.corrupt(5).unwrap();
        let bad = std::fs::read(repo.repo.model_file("m", 5)).unwrap();
        assert_eq!(bad.len(), good.len());
        assert!(riskserve::model::Model::from_bytes(&bad).is_err(), "the digest catches the flipped byte");

        repo.half_write(6).unwrap();
        assert!(riskserve::model::Model::from_bytes(&std::fs::read(repo.repo.model_file("m", 6)).unwrap()).is_err());
        repo.complete_write(6, &clock).unwrap();
        assert_eq!(std::fs::read(repo.repo.model_file("m", 6)).unwrap(), good);

        repo.rollback(6, 4).unwrap();
        assert_eq!(versions_on_disk(&repo), [3, 4, 5]);
        repo.prune(&BTreeSet::from([4]), &BTreeSet::from([5])).unwrap();
        assert_eq!(versions_on_disk(&repo), [4]);
        assert!(repo.commit(4, &clock).is_err(), "a version is never overwritten");
        let names: Vec<String> = std::fs::read_dir(repo.repo.model_dir("m"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["4"], "no staging leftovers");
    }
}
