//! The server's process: [`ServerProcess`] starts `riskserve serve` on
//! 127.0.0.1:0 (through [`testkit::process`]) and kills it on drop, also
//! when a test panics; the `/proc` readers measure CPU and memory of a
//! process tree (a riskserve server, or gunicorn's master and workers).

use crate::target::Target;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub(crate) fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `(ppid, utime+stime, cutime+cstime)` in clock ticks.
fn proc_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm) ": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14.
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((n(1)? as u32, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// Busy clock ticks of the whole machine (`/proc/stat`: all but idle and iowait).
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = text.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = f.iter().take(8).sum();
    Some(total - f.get(3)? - f.get(4)?)
}

/// A PID and all its descendants.
pub(crate) fn process_tree(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some((ppid, _, _)) = proc_stat(pid) {
                    parent_of.push((pid, ppid));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() && tree.len() < 10_000 {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// CPU seconds used by a process tree so far: the root's own and reaped
/// children's time, plus each live descendant's own time.
fn tree_cpu_ticks(root: u32) -> Option<u64> {
    let (_, own, reaped) = proc_stat(root)?;
    let live: u64 = process_tree(root).iter().skip(1).filter_map(|p| proc_stat(*p)).map(|(_, o, _)| o).sum();
    Some(own + reaped + live)
}

fn status_kb(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `(RSS bytes, PSS bytes, processes)` of a process tree: sums over its processes.
pub(crate) fn memory_of(root: u32) -> (u64, u64, usize) {
    let tree = process_tree(root);
    let rss: u64 = tree.iter().filter_map(|p| status_kb(*p, "status", "VmRSS:")).sum();
    let pss: u64 = tree.iter().filter_map(|p| status_kb(*p, "smaps_rollup", "Pss:")).sum();
    (rss * 1024, pss * 1024, tree.len())
}

/// CPU use at one moment: (µs since the run started, server tree ticks,
/// this harness's own ticks, machine busy ticks).
pub(crate) type CpuPoint = (u64, Option<u64>, Option<u64>, Option<u64>);

/// A [`CpuPoint`] taken now.
pub(crate) fn cpu_point(at_us: u64, server_pid: Option<u32>) -> CpuPoint {
    let me = proc_stat(std::process::id()).map(|(_, own, _)| own);
    (at_us, server_pid.and_then(tree_cpu_ticks), me, machine_busy_ticks())
}

/// A `riskserve serve` child process on 127.0.0.1:0. Dropping it kills the
/// process, so a failing test never leaves a server behind.
pub struct ServerProcess {
    child: testkit::Child,
    pub addr: std::net::SocketAddr,
    pub pid: u32,
    log: testkit::Log,
}

impl ServerProcess {
    /// Starts `bin serve --models-dir DIR --listen 127.0.0.1:0 ARGS...` in
    /// `DIR`'s parent (so no stray config file is read), and waits (bounded)
    /// for its `riskserve listening ... addr=` log line. Server log lines are
    /// kept in memory and appended to `log_file` if given.
    pub fn spawn(
        bin: &Path,
        models_dir: &Path,
        extra: &[String],
        log_file: Option<&Path>,
    ) -> Result<ServerProcess, String> {
        let mut cmd = testkit::serve_command(bin, models_dir);
        cmd.args(extra);
        // Nobody reads the rest of the log as a stream: `stderr` is dropped.
        let testkit::Spawned { child, addr, log, .. } =
            testkit::spawn(cmd, Duration::from_secs(60), log_file).map_err(|e| e.to_string())?;
        Ok(ServerProcess { pid: child.id(), child, addr, log })
    }

    /// The predict URL of `model`.
    pub fn predict_target(&self, model: &str) -> Target {
        Target { addr: self.addr, host: self.addr.to_string(), path: format!("/v1/models/{model}/predict") }
    }

    /// The gRPC listener's address (`--grpc-listen`), from the server's
    /// `riskserve gRPC listening grpc_addr=...` log line.
    pub fn grpc_addr(&self) -> Option<std::net::SocketAddr> {
        let line = self.log.first("riskserve gRPC listening")?;
        let at = line.find("grpc_addr=")? + "grpc_addr=".len();
        let text: String = line[at..].chars().take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',').collect();
        text.parse().ok()
    }

    /// The last `n` lines the server logged.
    pub fn log_tail(&self, n: usize) -> String {
        self.log.tail(n)
    }

    /// SIGTERM, then wait (bounded) for a graceful exit; SIGKILL after
    /// `timeout`. Returns whether it exited successfully by itself.
    pub fn stop(mut self, timeout: Duration) -> Result<bool, String> {
        let status = self.child.terminate(timeout).map_err(|e| e.to_string())?;
        Ok(status.is_some_and(|s| s.success()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        let (ppid, _, _) = proc_stat(me).expect("own /proc/<pid>/stat");
        assert!(ppid > 0);
        assert_eq!(process_tree(me)[0], me);
        let (rss, _, processes) = memory_of(me);
        assert!(rss > 0 && processes >= 1);
        assert!(tree_cpu_ticks(me).is_some());
        let (_, _, own, busy) = cpu_point(7, None);
        assert!(own.is_some() && busy.is_some());
        assert!(clock_ticks_per_sec() > 0.0);
    }
}
