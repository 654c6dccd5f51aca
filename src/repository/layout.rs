//! The repository layout `<root>/<model-name>/<version>/model.json`, and the
//! one place its naming rules live.
//!
//! - A **model name** is 1–128 characters of `A-Z a-z 0-9 . _ -`, not
//!   starting with `.`: it becomes a URL path segment and a directory name.
//! - A **version directory** is a positive integer in canonical form: `7`,
//!   never `07`, `007`, `+7` or `0`.
//! - **Staging** entries start with `.` (`.staging-7-1234`): operators and
//!   `train` write there and rename into place, and nobody reads them.
//! - A **rollout file** `rollout.toml` directly in a model directory
//!   declares how its versions take traffic (stable, canary, shadow,
//!   guards; see `docs/rollouts.md`). It is listed, never rejected.
//! - Anything else in a model directory is *rejected*: not served, and
//!   reported with the reason (a `007` next to `7` is a mistake to show,
//!   not a version to guess at).

/// File name of a model inside its version directory.
pub const MODEL_FILE_NAME: &str = "model.json";

/// File name of a model's rollout declaration, inside the model directory
/// (`<root>/<model>/rollout.toml`, next to the version directories).
pub const ROLLOUT_FILE_NAME: &str = "rollout.toml";

/// Longest model name accepted.
pub const MAX_MODEL_NAME_LEN: usize = 128;

/// Prefix of the staging directories `train` and [`crate::repository::LocalDirectory::publish`] use.
pub const STAGING_PREFIX: &str = ".staging-";

/// Whether `name` may be a model name.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODEL_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// [`valid_model_name`] with the message a user sees.
pub fn check_model_name(name: &str) -> Result<(), String> {
    if valid_model_name(name) {
        Ok(())
    } else {
        Err(format!(
            "model name {name:?} must be 1-{MAX_MODEL_NAME_LEN} characters of A-Z a-z 0-9 . _ - and not start with `.`"
        ))
    }
}

/// A version directory name: a positive integer without sign or leading zeros.
pub fn parse_version(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What an entry inside a model directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionEntryName {
    /// A version directory.
    Version(u64),
    /// A hidden entry: staging, editor files, `.DS_Store`. Silently ignored.
    Hidden,
    /// The model's rollout file ([`ROLLOUT_FILE_NAME`]).
    Rollout,
    /// Not a valid version name; the reason says why (and what to do).
    Rejected(String),
}

/// Classifies one entry name inside a model directory.
pub fn classify_version_entry(name: &str) -> VersionEntryName {
    if name.starts_with('.') {
        return VersionEntryName::Hidden;
    }
    if name == ROLLOUT_FILE_NAME {
        return VersionEntryName::Rollout;
    }
    if let Some(v) = parse_version(name) {
        return VersionEntryName::Version(v);
    }
    let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
    let reason = if digits && name.bytes().all(|b| b == b'0') {
        "version 0 is not allowed: versions start at 1".to_string()
    } else if digits && name.starts_with('0') {
        let canonical = name.trim_start_matches('0');
        format!("version directory `{name}` has leading zeros; name it `{canonical}` to serve it")
    } else if digits {
        format!("version directory `{name}` is too large a number")
    } else {
        format!(
            "`{name}` is not a version: version directories are positive integers; stage work in a hidden directory such as `.staging-{name}`"
        )
    };
    VersionEntryName::Rejected(reason)
}

/// `(name, version)` from a path `.../<name>/<version>/model.json`.
/// `Err` when the path has that shape but a name or version breaks the rules
/// (so `validate` can say what the server will do), `Ok(None)` when it is a
/// file outside any repository layout.
pub fn name_and_version(path: &std::path::Path) -> Result<Option<(String, u64)>, String> {
    let Some(version_dir) = path.parent() else { return Ok(None) };
    let Some(dir_name) = version_dir.file_name().and_then(|n| n.to_str()) else { return Ok(None) };
    let Some(model) = version_dir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    match classify_version_entry(dir_name) {
        VersionEntryName::Version(v) => {
            check_model_name(model)?;
            Ok(Some((model.to_string(), v)))
        }
        VersionEntryName::Rejected(reason) if dir_name.bytes().all(|b| b.is_ascii_digit()) => Err(reason),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn version_names() {
        assert_eq!(parse_version("12"), Some(12));
        for bad in ["0", "012", "-1", "+1", "1.0", "", "99999999999999999999999"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert_eq!(classify_version_entry("7"), VersionEntryName::Version(7));
        assert_eq!(classify_version_entry(".staging-7"), VersionEntryName::Hidden);
        assert_eq!(classify_version_entry("rollout.toml"), VersionEntryName::Rollout);
        assert!(matches!(classify_version_entry("rollout.yaml"), VersionEntryName::Rejected(_)));
        let VersionEntryName::Rejected(why) = classify_version_entry("007") else { panic!() };
        assert!(why.contains("leading zeros") && why.contains("`7`"), "{why}");
        let VersionEntryName::Rejected(why) = classify_version_entry("0") else { panic!() };
        assert!(why.contains("start at 1"), "{why}");
        let VersionEntryName::Rejected(why) = classify_version_entry("staging") else { panic!() };
        assert!(why.contains("not a version"), "{why}");
    }

    #[test]
    fn model_names() {
        for good in ["credit-risk", "m.v2_b"] {
            assert!(valid_model_name(good), "{good}");
        }
        for bad in ["", ".staging", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!valid_model_name(bad), "{bad}");
            assert!(check_model_name(bad).is_err());
        }
    }

    #[test]
    fn paths_in_and_out_of_the_layout() {
        let p = |s: &str| name_and_version(Path::new(s));
        assert_eq!(p("models/credit-risk/3/model.json"), Ok(Some(("credit-risk".into(), 3))));
        assert_eq!(p("/tmp/model.json"), Ok(None));
        assert_eq!(p("/tmp/export/model.json"), Ok(None));
        assert!(p("models/credit-risk/007/model.json").unwrap_err().contains("leading zeros"));
    }
}
