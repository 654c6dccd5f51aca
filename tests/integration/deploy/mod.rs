//! deploy/ checked by the tools that consume it: the linters and validators
//! ([`lint`]), podman building and running the image ([`container`]), and a
//! real Prometheus scraping a real server with the shipped rules and
//! dashboard ([`prometheus`]). Each tool comes from `.ci/setup`
//! (`.ci/setup.d/30-deploy.sh`); a missing one fails the test.

mod container;
mod lint;
pub(crate) mod prometheus;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `<workspace>/deploy`.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Both streams, for failure messages.
    pub fn output(&self) -> String {
        format!("exit: {}\nstdout:\n{}\nstderr:\n{}", self.status, self.stdout, self.stderr)
    }

    /// Panics with the output unless the command succeeded.
    pub fn ok(self, what: &str) -> Ran {
        assert!(self.status.success(), "{what} failed:\n{}", self.output());
        self
    }
}

/// Runs `cmd` to completion, killing it after `timeout` (a panic then):
/// nothing a tool does can hang the suite.
pub fn run(cmd: &mut Command, timeout: Duration) -> Ran {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let reader = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_string(&mut text);
            }
            text
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let Some(status) = wait_for_exit(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{shown} did not finish within {timeout:?}");
    };
    Ran { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// Waits up to `timeout` for `child` to exit; None if it is still running.
pub fn wait_for_exit(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        // std has no wait-with-timeout for a child process: poll.
        std::thread::sleep(Duration::from_millis(20));
    }
}
