//! A server as a child process on 127.0.0.1:0: its stderr is read on a
//! thread (kept for later, optionally copied to a file, and streamed to
//! whoever wants the rest), its listening address is taken from its log
//! within a deadline, and it is killed when the handle is dropped, also
//! when a test panics. A child that never prints its address cannot hang
//! the caller.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The log line a server prints once it accepts connections.
pub const LISTENING: &str = "riskserve listening";

/// Log lines kept in memory at most (the rest are still streamed and copied).
const KEPT_LINES: usize = 20_000;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("starting {bin}: {source}")]
    Start { bin: String, source: std::io::Error },
    #[error("creating the log file {path}: {source}")]
    LogFile { path: PathBuf, source: std::io::Error },
    #[error("the server did not print its address within {timeout:?}; log so far:\n{log}")]
    NoAddress { timeout: Duration, log: String },
    #[error("the server exited before printing its address; log:\n{log}")]
    Exited { log: String },
    #[error("the server listens on {0}, which is not a loopback address")]
    NotLoopback(SocketAddr),
}

/// `bin serve --listen 127.0.0.1:0 --models-dir <models_dir>`, run in the
/// directory's parent (so no stray config file in the caller's directory is
/// read), stdin and stdout closed. Add flags and environment with the usual
/// [`Command`] methods, then [`spawn`] it.
pub fn serve_command(bin: &Path, models_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--models-dir"])
        .arg(models_dir)
        .current_dir(models_dir.parent().unwrap_or(models_dir))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// A child process; killed (and reaped) on drop if still running.
#[derive(Debug)]
pub struct Child(pub std::process::Child);

impl Child {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit; SIGKILL
    /// after that. The exit status if it exited by itself, None if killed.
    pub fn terminate(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let _ = Command::new("kill").args(["-TERM", &self.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            // std offers no wait-with-timeout for a child: poll.
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        Ok(None)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every line the child wrote to stderr so far (the first
/// [`KEPT_LINES`]); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Log {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    /// The last `n` lines, joined with newlines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The first line that contains `needle`.
    pub fn first(&self, needle: &str) -> Option<String> {
        self.lines.lock().ok()?.iter().find(|x| x.contains(needle)).cloned()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines.lock().map(|l| l.iter().filter(|x| x.contains(needle)).count()).unwrap_or(0)
    }

    fn push(&self, line: &str) {
        if let Ok(mut l) = self.lines.lock() {
            if l.len() < KEPT_LINES {
                l.push(line.to_string());
            }
        }
    }
}

/// The child's stderr after its start-up lines, as bytes (one `\n` per
/// line); end of file when the child closes stderr (usually: exits).
#[derive(Debug)]
pub struct LogStream {
    lines: Receiver<String>,
    pending: Vec<u8>,
    at: usize,
}

impl Read for LogStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.pending.len() {
            let Ok(line) = self.lines.recv() else { return Ok(0) };
            self.pending = line.into_bytes();
            self.pending.push(b'\n');
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A server child process that is listening.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    /// The rest of its log, as it comes (drop it if nobody reads it).
    pub stderr: LogStream,
    /// The log lines up to and including the [`LISTENING`] line.
    pub startup_log: Vec<String>,
    /// All of its log so far.
    pub log: Log,
}

/// Starts `cmd` with stderr piped and waits at most `timeout` for its
/// [`LISTENING`] line. Log lines are also appended to `log_file` if given.
/// On any error the child is killed.
pub fn spawn(mut cmd: Command, timeout: Duration, log_file: Option<&Path>) -> Result<Spawned, SpawnError> {
    let mut file = match log_file {
        Some(path) => Some(
            std::fs::File::create(path).map_err(|source| SpawnError::LogFile { path: path.to_path_buf(), source })?,
        ),
        None => None,
    };
    cmd.stderr(Stdio::piped());
    let bin = cmd.get_program().to_string_lossy().into_owned();
    let mut child = Child(cmd.spawn().map_err(|source| SpawnError::Start { bin, source })?);
    let stderr = child.0.stderr.take().ok_or_else(|| SpawnError::Exited { log: "(no stderr pipe)".into() })?;
    let log = Log::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = log.clone();
    // Ends at the child's end of stderr; never joined, so it cannot block anyone.
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw).trim_end_matches(['\n', '\r']).to_string();
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            kept.push(&line);
            let _ = tx.send(line); // nobody listening: fine
        }
    });

    let deadline = Instant::now() + timeout;
    let mut startup_log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let addr = line.contains(LISTENING).then(|| listening_addr(&line)).flatten();
                startup_log.push(line);
                if let Some(addr) = addr {
                    if !addr.ip().is_loopback() {
                        return Err(SpawnError::NotLoopback(addr));
                    }
                    let stderr = LogStream { lines: rx, pending: Vec::new(), at: 0 };
                    return Ok(Spawned { child, addr, stderr, startup_log, log });
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(SpawnError::NoAddress { timeout, log: startup_log.join("\n") });
            }
            Err(RecvTimeoutError::Disconnected) => return Err(SpawnError::Exited { log: startup_log.join("\n") }),
        }
    }
}

/// The address in a listening line: text logs say `addr=127.0.0.1:1234`,
/// JSON logs `"addr":"127.0.0.1:1234"`.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("addr").nth(1)?;
    rest.trim_start_matches(['=', '"', ':']).split(['"', ' ', ',', '}']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_from_text_and_json_logs() {
        let text =
            "2024-01-01T00:00:00Z  INFO riskserve::http::server: riskserve listening addr=127.0.0.1:4321 models=3";
        assert_eq!(listening_addr(text), Some("127.0.0.1:4321".parse().unwrap()));
        let json = r#"{"level":"INFO","message":"riskserve listening","addr":"127.0.0.1:55"}"#;
        assert_eq!(listening_addr(json), Some("127.0.0.1:55".parse().unwrap()));
        assert_eq!(listening_addr(r#"{"addr":"[::1]:8080"}"#), Some("[::1]:8080".parse().unwrap()));
        assert_eq!(listening_addr("riskserve listening"), None);
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stdin(Stdio::null()).stdout(Stdio::null());
        cmd
    }

    #[test]
    fn a_child_that_never_prints_its_address_times_out_and_is_killed() {
        let started = Instant::now();
        let err = spawn(sh("echo starting >&2; exec sleep 30"), Duration::from_millis(300), None).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        match err {
            SpawnError::NoAddress { log, .. } => assert_eq!(log, "starting"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_child_that_exits_early_is_reported_with_its_log() {
        let err = spawn(sh("echo 'bad flag' >&2; exit 2"), Duration::from_secs(20), None).unwrap_err();
        assert!(matches!(&err, SpawnError::Exited { log } if log == "bad flag"), "{err}");
    }

    #[test]
    fn address_log_and_the_rest_of_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.log");
        let script = "echo one >&2; echo 'riskserve listening addr=127.0.0.1:9' >&2; echo after >&2";
        let mut s = spawn(sh(script), Duration::from_secs(20), Some(&file)).unwrap();
        assert_eq!(s.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(s.startup_log, ["one", "riskserve listening addr=127.0.0.1:9"]);
        let mut rest = String::new();
        s.stderr.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "after\n");
        assert_eq!(s.log.count("listening"), 1);
        assert!(s.log.tail(2).ends_with("addr=127.0.0.1:9\nafter"), "{}", s.log.tail(2));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\nriskserve listening addr=127.0.0.1:9\nafter\n");
        assert!(s.child.terminate(Duration::from_secs(10)).unwrap().is_some());
    }

    #[test]
    fn a_non_loopback_address_is_refused() {
        let err = spawn(sh("echo 'riskserve listening addr=10.1.2.3:80' >&2"), Duration::from_secs(20), None);
        assert!(matches!(err, Err(SpawnError::NotLoopback(_))));
    }
}
