//! Finds the external programs the tests drive (Prometheus, Chromium, the
//! Python clients, an S3 server...). `.ci/setup` installs them and links each
//! into `<workspace>/.ci/tools/bin/`; a test that needs one calls [`tool`].
//!
//! A missing tool is a test failure with the command that installs it, never
//! a silent skip: a test that cannot fail proves nothing.

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where `.ci/setup` links the tools.
pub fn tools_dir() -> PathBuf {
    workspace_root().join(".ci/tools/bin")
}

/// Looks `name` up in `.ci/tools/bin`, then on `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    let linked = tools_dir().join(name);
    if linked.exists() {
        return Some(linked);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()))
}

/// The path of tool `name`; panics with how to install it when missing.
pub fn tool(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run `.ci/setup` from the repository root \
             (it installs every external tool the tests use into .ci/tools/)"
        )
    })
}

/// The Python interpreter of the tools' virtual environment (`.ci/tools/venv`),
/// where the PyPI clients (tritonclient, schemathesis, moto...) live.
pub fn python() -> PathBuf {
    python_in("venv")
}

/// The Python interpreter of the virtual environment `.ci/tools/<venv>`
/// (a tool with heavy pins of its own, such as MLServer, has its own).
pub fn python_in(venv: &str) -> PathBuf {
    let python = workspace_root().join(".ci/tools").join(venv).join("bin/python");
    if python.exists() {
        return python;
    }
    panic!("the Python environment .ci/tools/{venv} is missing: run `.ci/setup` from the repository root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path_and_names_the_fix_when_missing() {
        assert!(find("sh").is_some(), "sh is on every PATH");
        assert!(find("no-such-tool-riskserve").is_none());
        let err = std::panic::catch_unwind(|| tool("no-such-tool-riskserve")).unwrap_err();
        let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains(".ci/setup"), "{message}");
    }

    #[test]
    fn the_workspace_root_holds_the_ci_script() {
        assert!(workspace_root().join(".ci/run").exists());
    }
}
