//! The operator's Flask peer: a pickle every gunicorn worker loads at
//! start, replaced the way its users do it (write next to it, rename over
//! it) followed by SIGHUP to the gunicorn master (graceful worker reload).
//! The pickle carries a version marker whose digits are patched per version.

use super::{io, Repo};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Marker stored in the peer pickle (`model.bench_version = "RSBENCHVER:0000000001"`),
/// followed by ten digits. Patching the digits in place keeps the pickle valid
/// (same length) and lets the workers name the version they loaded.
pub const PICKLE_MARKER: &[u8] = b"RSBENCHVER:";
const PICKLE_DIGITS: usize = 10;

/// The Flask peer's pickle plus gunicorn's master process.
pub(super) struct PickleRepo {
    path: PathBuf,
    base: Vec<u8>,
    marker_at: usize,
    master_pid: u32,
}

impl PickleRepo {
    pub(super) fn open(path: &Path, master_pid: u32) -> Result<(PickleRepo, u64), String> {
        let base = std::fs::read(path).map_err(|e| io("reading", path, e))?;
        let marker_at = base.windows(PICKLE_MARKER.len()).position(|w| w == PICKLE_MARKER).ok_or_else(|| {
            format!("{}: no {} marker (see bench/README.md)", path.display(), String::from_utf8_lossy(PICKLE_MARKER))
        })? + PICKLE_MARKER.len();
        let digits = base.get(marker_at..marker_at + PICKLE_DIGITS).ok_or("marker truncated")?;
        let version =
            std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).ok_or("marker digits unreadable")?;
        Ok((PickleRepo { path: path.to_path_buf(), base, marker_at, master_pid }, version))
    }

    fn bytes(&self, version: u64) -> Vec<u8> {
        let mut out = self.base.clone();
        let digits = format!("{version:0width$}", width = PICKLE_DIGITS);
        out[self.marker_at..self.marker_at + PICKLE_DIGITS].copy_from_slice(digits.as_bytes());
        out
    }

    fn replace(&self, bytes: &[u8]) -> Result<(), String> {
        let staging = self.path.with_extension("pkl.staging");
        std::fs::write(&staging, bytes).map_err(|e| io("writing", &staging, e))?;
        std::fs::rename(&staging, &self.path).map_err(|e| io("renaming over", &self.path, e))
    }

    fn hup(&self) -> Result<(), String> {
        let status = Command::new("kill")
            .args(["-HUP", &self.master_pid.to_string()])
            .status()
            .map_err(|e| format!("kill -HUP: {e}"))?;
        status.success().then_some(()).ok_or_else(|| format!("kill -HUP {} failed", self.master_pid))
    }
}

impl Repo for PickleRepo {
    fn commit(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String> {
        let bytes = self.bytes(version);
        let staging = self.path.with_extension("pkl.staging");
        std::fs::write(&staging, &bytes).map_err(|e| io("writing", &staging, e))?;
        let pre = clock();
        std::fs::rename(&staging, &self.path).map_err(|e| io("renaming over", &self.path, e))?;
        self.hup()?;
        Ok((pre, clock()))
    }

    fn half_write(&mut self, version: u64) -> Result<(), String> {
        let bytes = self.bytes(version);
        std::fs::write(&self.path, &bytes[..bytes.len() / 2]).map_err(|e| io("writing", &self.path, e))?;
        self.hup()
    }

    fn complete_write(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String> {
        let bytes = self.bytes(version);
        let pre = clock();
        std::fs::write(&self.path, &bytes).map_err(|e| io("writing", &self.path, e))?;
        self.hup()?;
        Ok((pre, clock()))
    }

    fn corrupt(&mut self, version: u64) -> Result<(), String> {
        let mut bytes = self.bytes(version);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        self.replace(&bytes)?;
        self.hup()
    }

    fn rollback(&mut self, _newest: u64, previous: u64) -> Result<(), String> {
        self.replace(&self.bytes(previous))?;
        self.hup()
    }

    fn prune(&mut self, _keep: &BTreeSet<u64>, _invalid: &BTreeSet<u64>) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_digits_are_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.pkl");
        std::fs::write(&path, b"\x80\x04pickle RSBENCHVER:0000000007 rest").unwrap();
        let (repo, version) = PickleRepo::open(&path, 1).unwrap();
        assert_eq!(version, 7);
        assert_eq!(repo.bytes(12), b"\x80\x04pickle RSBENCHVER:0000000012 rest");
        std::fs::write(&path, b"no marker").unwrap();
        let Err(e) = PickleRepo::open(&path, 1) else { panic!("a pickle without a marker opened") };
        assert!(e.contains("no RSBENCHVER: marker"), "{e}");
    }
}
