//! The report: what one run measured, as JSON (`--out`, every field below)
//! and as the summary text the CLI prints. Filled in by
//! [`crate::analysis`]; nothing here measures anything.

use crate::record::{MemorySample, OpEvent};
use crate::scrape::ServerMetrics;
use serde::Serialize;
use std::collections::BTreeMap;

/// Latency summary of one window (successful responses, by request start).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OffsetBucket {
    pub from_ms: u64,
    /// None: open-ended.
    pub to_ms: Option<u64>,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QuietWindow {
    pub quiet_seconds: f64,
    #[serde(flatten)]
    pub window: Window,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Failures {
    pub total: u64,
    /// Responses with a status other than 200, by status.
    pub non_200: BTreeMap<String, u64>,
    pub connect_error: u64,
    pub connection_error: u64,
    pub timeout: u64,
    /// 200 without a usable version (no header, or body and header disagree).
    pub bad_version: u64,
    /// 200 naming a version that was not (yet) committed when it arrived:
    /// a half-written, corrupt or unknown version. Counted in `total`.
    pub uncommitted_version: u64,
    /// First few distinct error messages, with counts.
    pub messages: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Swaps {
    /// Versions published the documented way (rename) plus completed half-writes.
    pub commits: usize,
    pub renames: usize,
    pub half_written: usize,
    pub corrupt: usize,
    pub rollbacks: usize,
    /// Committed versions that some response named.
    pub versions_served: usize,
    /// Committed versions no response ever named (superseded before served).
    pub versions_never_served: usize,
    /// `riskserve_model_swaps_total` at the end (riskserve only).
    pub server_swaps_total: Option<u64>,
    /// Rename → first response naming that version (or a newer one).
    pub commit_to_serve: Spread,
    /// Completing write of a half-written file → first response naming it.
    pub completed_write_to_serve: Spread,
    /// Delete of the newest version → first response naming another version.
    pub rollback_to_serve: Spread,
    /// Commits whose version (or a newer one) was never named by a response.
    pub unserved_commits: usize,
    /// Responses naming a rolled-back version after the rollback had been served.
    pub stale_after_rollback: u64,
    /// The last commit was served before the run ended.
    pub drained: bool,
    /// Half-written and corrupt files the server was seen to refuse
    /// (riskserve `/metrics`), and those it was not seen to look at in time.
    pub bad_files_refused: usize,
    pub bad_files_unconfirmed: usize,
    /// Step → refusal visible in `/metrics`.
    pub bad_file_to_refusal: Spread,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    /// Server (whole process tree) CPU, in cores, per window.
    pub server_cores_steady: Option<f64>,
    pub server_cores_swapping: Option<f64>,
    /// This harness process (clients + operator), in cores.
    pub harness_cores_steady: Option<f64>,
    pub harness_cores_swapping: Option<f64>,
    /// Whole machine (all of /proc/stat but idle and iowait), in cores.
    pub machine_cores_steady: Option<f64>,
    pub machine_cores_swapping: Option<f64>,
    /// Machine minus server minus harness: anything else that ran (kernel
    /// threads, other people's builds). Well above 0.05 means a noisy run.
    pub other_cores_steady: Option<f64>,
    pub other_cores_swapping: Option<f64>,
    pub cores: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub after_10_swaps: Option<MemorySample>,
    pub at_end: Option<MemorySample>,
    /// (end − after 10) / after 10, in percent, of RSS (sum over the tree).
    pub rss_growth_pct: Option<f64>,
    pub pss_growth_pct: Option<f64>,
    pub series: Vec<MemorySample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub deployment: String,
    pub clients: usize,
    /// Open-loop request rate (None: closed loop, saturation).
    pub rate_per_s: Option<f64>,
    pub commit_every_ms: u64,
    pub bad_every: usize,
    pub requests: u64,
    pub ok: u64,
    pub failures: Failures,
    /// Reconnects after a `Connection: close` response (not failures;
    /// gunicorn's sync workers close every connection).
    pub reconnects_after_server_close: u64,
    pub duration_s: f64,
    pub req_per_s: f64,
    pub steady: Window,
    pub swapping: Window,
    /// Requests of the swapping window that started within 50 ms after a
    /// commit, and the rest: where a p99 difference comes from.
    pub swapping_near_commit: Window,
    pub swapping_away_from_commit: Window,
    /// The two windows restricted to quiet seconds (other processes ≤
    /// [`crate::analysis::QUIET_OTHER_CORES`]): what the goals use when the machine was shared.
    pub steady_quiet: QuietWindow,
    /// Swapping-window latency by time from the latest commit to the
    /// request's start (10 ms buckets, the last one open-ended).
    pub after_commit: Vec<OffsetBucket>,
    pub swapping_quiet: QuietWindow,
    pub seconds: Vec<Second>,
    pub swaps: Swaps,
    pub memory: Memory,
    pub cpu: Cpu,
    pub server_metrics_after_10: Option<ServerMetrics>,
    pub server_metrics_end: Option<ServerMetrics>,
    pub operator_errors: Vec<String>,
    /// Operator steps skipped because the peer's process tree was too large.
    pub operator_skipped_steps: usize,
    pub events: Vec<OpEvent>,
    pub goals: Vec<Goal>,
}

impl Report {
    /// A short human-readable summary.
    pub fn summary(&self) -> String {
        let f = &self.failures;
        let s = &self.swaps;
        let mut out = String::new();
        let mut line = |t: String| {
            out.push_str(&t);
            out.push('\n');
        };
        line(format!("target          {} ({})", self.target, self.deployment));
        line(format!(
            "requests        {} in {:.1} s = {:.0} req/s, {} clients, {}",
            self.requests,
            self.duration_s,
            self.req_per_s,
            self.clients,
            self.rate_per_s.map(|r| format!("open loop at {r:.0} req/s")).unwrap_or_else(|| "closed loop".into())
        ));
        line(format!(
            "failures        {} (non-200 {:?}, connect {}, connection {}, timeout {}, bad version {}, uncommitted version {})",
            f.total, f.non_200, f.connect_error, f.connection_error, f.timeout, f.bad_version, f.uncommitted_version
        ));
        for (name, w) in [
            ("steady", &self.steady),
            ("swapping", &self.swapping),
            ("  ≤50ms after commit", &self.swapping_near_commit),
            ("  other", &self.swapping_away_from_commit),
            ("steady (quiet)", &self.steady_quiet.window),
            ("swapping (quiet)", &self.swapping_quiet.window),
        ] {
            line(format!(
                "{name:<15} {:>7.1}-{:<7.1}s {:>8} req {:>8.0} req/s  p50 {:>7.3}  p99 {:>7.3}  p99.9 {:>7.3}  max {:>8.3} ms",
                w.from_s, w.to_s, w.requests, w.req_per_s, w.p50_ms, w.p99_ms, w.p999_ms, w.max_ms
            ));
        }
        let buckets: Vec<String> = self
            .after_commit
            .iter()
            .map(|b| format!("{}{}:{:.2}", b.from_ms, if b.to_ms.is_none() { "+" } else { "" }, b.p99_ms))
            .collect();
        line(format!("p99 ms by start after commit (10 ms buckets) {}", buckets.join(" ")));
        line(format!(
            "swaps           {} commits ({} renames, {} completed half-writes), {} corrupt, {} rollbacks; server swaps_total {:?}; {} versions served, {} never served",
            s.commits, s.renames, s.half_written, s.corrupt, s.rollbacks, s.server_swaps_total, s.versions_served, s.versions_never_served
        ));
        for (name, d) in [
            ("commit→serve", &s.commit_to_serve),
            ("half→serve", &s.completed_write_to_serve),
            ("rollback→serve", &s.rollback_to_serve),
            ("bad→refused", &s.bad_file_to_refusal),
        ] {
            line(format!(
                "{name:<15} n={:<5} p50 {:>8.2}  p99 {:>8.2}  max {:>8.2}  mean {:>8.2} ms",
                d.n, d.p50_ms, d.p99_ms, d.max_ms, d.mean_ms
            ));
        }
        let mem = |m: &Option<MemorySample>| {
            m.as_ref()
                .map(|m| {
                    format!(
                        "RSS {:.1} MiB / PSS {:.1} MiB ({} proc, {} commits, server swaps {:?}, /metrics lines {:?})",
                        m.rss_bytes as f64 / 1048576.0,
                        m.pss_bytes as f64 / 1048576.0,
                        m.processes,
                        m.commits,
                        m.server_swaps,
                        m.metrics_lines
                    )
                })
                .unwrap_or_else(|| "-".into())
        };
        line(format!("memory @10      {}", mem(&self.memory.after_10_swaps)));
        line(format!(
            "memory @end     {}  growth RSS {:+.1}% PSS {:+.1}%",
            mem(&self.memory.at_end),
            self.memory.rss_growth_pct.unwrap_or(f64::NAN),
            self.memory.pss_growth_pct.unwrap_or(f64::NAN)
        ));
        let c = &self.cpu;
        let o = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        line(format!(
            "cpu (cores)     steady: server {} harness {} other {}   swapping: server {} harness {} other {}   (of {})",
            o(c.server_cores_steady),
            o(c.harness_cores_steady),
            o(c.other_cores_steady),
            o(c.server_cores_swapping),
            o(c.harness_cores_swapping),
            o(c.other_cores_swapping),
            c.cores
        ));
        for e in &self.operator_errors {
            line(format!("operator error  {e}"));
        }
        for g in &self.goals {
            line(format!("goal {} {:<48} {}", if g.met { "MET   " } else { "MISSED" }, g.goal, g.measured));
        }
        out
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Start of the second, s since the run started.
    pub t_s: f64,
    /// Requests that started in it, and their p99 latency (200s).
    pub requests: u64,
    pub p99_ms: f64,
    pub server_cores: Option<f64>,
    pub harness_cores: Option<f64>,
    /// Everything else on the machine.
    pub other_cores: Option<f64>,
}
