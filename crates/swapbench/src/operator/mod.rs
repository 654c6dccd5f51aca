//! The operator: a plain thread that plays the person deploying models.
//! After the warm-up and the steady window it takes one step every
//! `commit_every`: a commit the documented way, or (every `bad_every`-th
//! step, in turn) a half-written file, a corrupt file, or a rollback of the
//! newest version. Every step is logged with timestamps ([`OpEvent`]), and
//! memory, CPU and `/metrics` are sampled along the way.
//!
//! Where it writes is a [`Repo`]: a riskserve model repository
//! ([`riskserve`], through `riskserve::repository`) or the Flask peer's
//! pickle plus SIGHUP ([`flask`]).

mod flask;
mod riskserve;

pub use flask::PICKLE_MARKER;
pub(crate) use riskserve::flip_payload_byte;

use crate::process::{cpu_point, memory_of, process_tree, CpuPoint};
use crate::record::{MemorySample, OpEvent, OpKind};
use crate::scrape::{http_get, parse_metrics, ServerMetrics};
use crate::{BenchConfig, Deployment, Shared};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Where the operator writes.
pub(crate) trait Repo {
    /// Publishes a valid version the documented way; returns (pre, at).
    fn commit(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String>;
    /// Writes the first half of `version` in place and leaves it open.
    fn half_write(&mut self, version: u64) -> Result<(), String>;
    /// Finishes the half-written version; returns (pre, at).
    fn complete_write(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String>;
    /// Publishes a corrupt `version` the documented way.
    fn corrupt(&mut self, version: u64) -> Result<(), String>;
    /// Takes `newest` away so that `previous` is served again.
    fn rollback(&mut self, newest: u64, previous: u64) -> Result<(), String>;
    /// Deletes versions that are no longer needed.
    fn prune(&mut self, keep: &BTreeSet<u64>, invalid: &BTreeSet<u64>) -> Result<(), String>;
}

/// Opens the repository `deployment` names: the repo and the versions
/// already in it.
pub(crate) fn open_repo(deployment: &Deployment) -> Result<(Box<dyn Repo + Send>, BTreeSet<u64>), String> {
    match deployment {
        Deployment::Riskserve { models_dir, model_name, source, alternate } => {
            let (repo, versions) =
                riskserve::DirRepo::open(models_dir, model_name, source.as_deref(), alternate.as_deref())?;
            Ok((Box::new(repo), versions))
        }
        Deployment::FlaskPickle { model_path, master_pid } => {
            let (repo, version) = flask::PickleRepo::open(model_path, *master_pid)?;
            Ok((Box::new(repo), BTreeSet::from([version])))
        }
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// Everything the operator thread measured.
pub(crate) struct OperatorLog {
    /// Versions on disk at start (committed before the run).
    pub initial: BTreeSet<u64>,
    pub events: Vec<OpEvent>,
    pub steady_start_us: u64,
    pub swap_start_us: u64,
    pub swap_end_us: u64,
    pub drained: bool,
    pub memory: Vec<MemorySample>,
    pub metrics_after_10: Option<ServerMetrics>,
    pub metrics_end: Option<ServerMetrics>,
    /// At the start of the steady window, of the swapping window, and at its end.
    pub cpu: Vec<CpuPoint>,
    pub errors: Vec<String>,
    /// Steps skipped by the peer process-count guard.
    pub skipped_steps: usize,
}

/// The operator skips a step while the peer's process tree is larger than this.
pub const MAX_PEER_PROCESSES: usize = 64;

/// Sleeps until `at`, waking early when the run stops.
pub(crate) fn sleep_until(shared: &Shared, at: Instant) {
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= at {
            return;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(50)));
    }
}

fn model_name_of(deployment: &Deployment) -> &str {
    match deployment {
        Deployment::Riskserve { model_name, .. } => model_name,
        Deployment::FlaskPickle { .. } => "flask",
    }
}

/// The operator: steady window, then one step every `commit_every` until the
/// run is over; samples memory, CPU and metrics along the way.
pub(crate) fn operator(cfg: &BenchConfig, shared: &Shared, repo: &mut dyn Repo, initial: BTreeSet<u64>) -> OperatorLog {
    let t0 = shared.t0;
    let clock = || shared.now_us();
    let mut log = OperatorLog {
        initial: initial.clone(),
        events: Vec::new(),
        steady_start_us: 0,
        swap_start_us: 0,
        swap_end_us: 0,
        drained: false,
        memory: Vec::new(),
        metrics_after_10: None,
        metrics_end: None,
        cpu: Vec::new(),
        errors: Vec::new(),
        skipped_steps: 0,
    };
    let cpu_sample = |log: &mut OperatorLog| log.cpu.push(cpu_point(clock(), cfg.server_pid));
    let scrape = || -> Option<ServerMetrics> {
        let target = cfg.metrics.as_ref()?;
        match http_get(target, Duration::from_secs(5)) {
            Ok((200, body)) => Some(parse_metrics(&body, model_name_of(&cfg.deployment))),
            _ => None,
        }
    };
    let memory = |commits: usize, metrics: Option<&ServerMetrics>| -> Option<MemorySample> {
        let pid = cfg.server_pid?;
        let (rss, pss, processes) = memory_of(pid);
        Some(MemorySample {
            at_s: clock() as f64 / 1e6,
            commits,
            server_swaps: metrics.and_then(|m| m.swaps_total),
            rss_bytes: rss,
            pss_bytes: pss,
            processes,
            metrics_lines: metrics.map(|m| m.lines),
            metrics_rss_bytes: metrics.and_then(|m| m.resident_memory_bytes),
        })
    };

    // riskserve's count of failed loads with this result, if scraped.
    let load_results = |result: &str| scrape().map(|m| m.loads.get(result).copied().unwrap_or(0));
    // Waits (bounded) until that count exceeds `before`; ms since `at_us`.
    let rejected = |at_us: u64, result: &str, before: u64| -> Option<f64> {
        let deadline = Instant::now() + (cfg.commit_every * 20).max(Duration::from_secs(2));
        while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
            if load_results(result).is_some_and(|n| n > before) {
                return Some(clock().saturating_sub(at_us) as f64 / 1000.0);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    };

    sleep_until(shared, t0 + cfg.warmup);
    log.steady_start_us = clock();
    cpu_sample(&mut log);
    sleep_until(shared, t0 + cfg.warmup + cfg.steady);
    let m = scrape();
    log.memory.extend(memory(0, m.as_ref()));
    log.swap_start_us = clock();
    cpu_sample(&mut log);

    let mut valid = initial; // valid versions on disk, ascending
    let mut invalid = BTreeSet::new(); // corrupt versions on disk
    let mut next_version = valid.iter().next_back().copied().unwrap_or(0) + 1;
    let mut commits = 0usize;
    let mut step = 0usize;
    let mut bad_turn = 0usize;
    let mut half_open: Option<u64> = None;
    let mut last_was_commit = true;
    let hard_stop = t0 + cfg.max_duration;
    let mut tick = Instant::now();
    loop {
        let elapsed_total = t0.elapsed();
        let done = (elapsed_total >= cfg.duration && commits >= cfg.min_swaps) || Instant::now() >= hard_stop;
        if shared.stop.load(Ordering::Relaxed) || (done && half_open.is_none() && last_was_commit) {
            break;
        }
        if log.errors.len() > 20 {
            log.errors.push("too many operator errors; stopping the operator".into());
            break;
        }
        step += 1;
        // Safety for the Flask peer: every SIGHUP forks new workers; if they
        // pile up faster than gunicorn retires them, stop sending more.
        if let (Deployment::FlaskPickle { .. }, Some(pid)) = (&cfg.deployment, cfg.server_pid) {
            let n = process_tree(pid).len();
            if n > MAX_PEER_PROCESSES {
                if log.skipped_steps == 0 {
                    log.errors.push(format!("step {step}: skipped, the server tree has {n} processes"));
                }
                log.skipped_steps += 1;
                tick = (tick + cfg.commit_every).max(Instant::now() - cfg.commit_every / 2);
                sleep_until(shared, tick);
                continue;
            }
        }
        let current = valid.iter().next_back().copied().unwrap_or(0);
        let result: Result<(), String> = (|| {
            if let Some(v) = half_open.take() {
                let (pre, at) = repo.complete_write(v, &clock)?;
                valid.insert(v);
                commits += 1;
                last_was_commit = true;
                log.events.push(OpEvent::served(OpKind::CompletedWrite, v, pre, at));
                return Ok(());
            }
            let bad = cfg.bad_every > 0 && step.is_multiple_of(cfg.bad_every) && !done;
            if bad {
                let kind = bad_turn % 3;
                bad_turn += 1;
                match kind {
                    0 | 1 => {
                        // A file the server must look at and refuse.
                        let (kind, result) =
                            if kind == 0 { (OpKind::HalfWritten, "incomplete") } else { (OpKind::Corrupt, "invalid") };
                        let v = next_version;
                        next_version += 1;
                        let before = load_results(result);
                        let pre = clock();
                        if kind == OpKind::HalfWritten {
                            repo.half_write(v)?;
                            half_open = Some(v);
                        } else {
                            repo.corrupt(v)?;
                            invalid.insert(v);
                        }
                        last_was_commit = false;
                        let at = clock();
                        let rejected_after_ms = before.and_then(|b| rejected(at, result, b));
                        log.events.push(OpEvent {
                            kind,
                            version: v,
                            expect: current,
                            pre_us: pre,
                            at_us: at,
                            rejected_after_ms,
                        });
                        return Ok(());
                    }
                    _ => {
                        // Roll back only a version that is already being
                        // served, so the measured time is a real swap back:
                        // wait for it (bounded) if the server is behind.
                        let previous = valid.range(..current).next_back().copied();
                        let wait_until = Instant::now() + (cfg.commit_every * 20).max(Duration::from_secs(2));
                        while shared.max_seen.load(Ordering::Relaxed) < current
                            && Instant::now() < wait_until
                            && !shared.stop.load(Ordering::Relaxed)
                        {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        let served = shared.max_seen.load(Ordering::Relaxed) >= current;
                        if let (Some(previous), true) = (previous, served) {
                            let pre = clock();
                            repo.rollback(current, previous)?;
                            valid.remove(&current);
                            last_was_commit = false;
                            log.events.push(OpEvent {
                                kind: OpKind::Rollback,
                                version: current,
                                expect: previous,
                                pre_us: pre,
                                at_us: clock(),
                                rejected_after_ms: None,
                            });
                            return Ok(());
                        }
                    }
                }
            }
            // A commit: first drop versions no longer needed (same burst of
            // filesystem events as the commit itself).
            let keep: BTreeSet<u64> = valid.iter().rev().take(cfg.keep_versions.max(2) - 1).copied().collect();
            repo.prune(&keep, &invalid)?;
            valid.retain(|v| keep.contains(v));
            invalid.clear();
            let v = next_version;
            next_version += 1;
            let (pre, at) = repo.commit(v, &clock)?;
            valid.insert(v);
            commits += 1;
            last_was_commit = true;
            log.events.push(OpEvent::served(OpKind::Commit, v, pre, at));
            Ok(())
        })();
        if let Err(e) = result {
            log.errors.push(format!("step {step}: {e}"));
        }
        if commits == 10 && log.metrics_after_10.is_none() {
            // RSS "after 10 swaps": give the 10th commit one period to be served.
            std::thread::sleep(cfg.commit_every);
            let m = scrape();
            log.memory.extend(memory(commits, m.as_ref()));
            log.metrics_after_10 = m.or(Some(ServerMetrics::default()));
        } else if commits > 0 && commits.is_multiple_of(100) && log.memory.last().is_some_and(|s| s.commits != commits)
        {
            let m = scrape();
            log.memory.extend(memory(commits, m.as_ref()));
        }
        if let Some(every) = cfg.progress {
            let n = step as u64;
            let per = (every.as_millis() / cfg.commit_every.as_millis().max(1)).max(1) as u64;
            if n.is_multiple_of(per) {
                eprintln!(
                    "swapbench: t={:>6.1}s requests={} failures={} commits={} max_version_seen={}",
                    t0.elapsed().as_secs_f64(),
                    shared.requests.load(Ordering::Relaxed),
                    shared.failures.load(Ordering::Relaxed),
                    commits,
                    shared.max_seen.load(Ordering::Relaxed)
                );
            }
        }
        tick = (tick + cfg.commit_every).max(Instant::now() - cfg.commit_every / 2);
        // Never sleep past the end of the run (long --commit-every-ms).
        let end = if commits >= cfg.min_swaps { (t0 + cfg.duration).min(hard_stop) } else { hard_stop };
        sleep_until(shared, tick.min(end));
    }
    log.swap_end_us = clock();
    cpu_sample(&mut log);

    // Drain: wait (bounded) until the last committed version is served.
    let last = log.events.iter().rev().find(|e| e.kind == OpKind::Commit || e.kind == OpKind::CompletedWrite);
    let deadline = Instant::now() + cfg.drain_timeout;
    if let Some(last) = last {
        while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
            if shared.max_seen.load(Ordering::Relaxed) >= last.version {
                log.drained = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // A short tail so in-flight requests finish on the final version.
        std::thread::sleep(Duration::from_millis(100).min(cfg.drain_timeout));
    } else {
        log.drained = true;
    }
    let m = scrape();
    log.memory.extend(memory(commits, m.as_ref()));
    log.metrics_end = m;
    log
}
