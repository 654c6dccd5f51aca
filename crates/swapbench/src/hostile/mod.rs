//! `hostile`: abuse cases against a running riskserve under steady good
//! traffic, and whether it shrugs them off (see `bench/README.md`).
//!
//! [`run`] starts the good clients ([`good`]), then for each [`Case`]:
//! a baseline window, the case for `case_time` (network abuse from
//! [`attack`], or planted files from [`files`]) while the server's RSS is
//! sampled, a commit of a new version (`LocalDirectory::publish`) timed to
//! the moment `GET /v1/models/<model>` names it, and a bounded wait for RSS
//! to settle. Good-traffic outcomes are assigned to the cases afterwards by
//! time; [`report`] holds the rows, goals and table. Loopback only, every
//! loop bounded in time, every socket operation under a timeout.

pub mod attack;
pub mod files;
pub mod good;
pub mod grpc;
pub mod report;

use crate::process::memory_of;
use crate::report::Goal;
use crate::scrape::http_get;
use crate::target::Target;
use attack::{Ctx, Observed};
use bytes::Bytes;
use good::{GoodSample, Tally};
use report::{CaseRow, HostileReport, RSS_GOAL_PCT};
use riskserve::repository::LocalDirectory;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{prometheus, Client, Method};

/// The abuse cases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    HugeBatch,
    BigBatches,
    Overload,
    Slowloris,
    PipelineNoRead,
    BigHeaders,
    ConnectionFlood,
    HostileFiles,
    GrpcRapidReset,
    GrpcTooManyStreams,
    GrpcBigMetadata,
    GrpcNoWindow,
    GrpcSlowSender,
}

impl Case {
    pub const ALL: [Case; 13] = [
        Case::HugeBatch,
        Case::BigBatches,
        Case::Overload,
        Case::Slowloris,
        Case::PipelineNoRead,
        Case::BigHeaders,
        Case::ConnectionFlood,
        Case::HostileFiles,
        Case::GrpcRapidReset,
        Case::GrpcTooManyStreams,
        Case::GrpcBigMetadata,
        Case::GrpcNoWindow,
        Case::GrpcSlowSender,
    ];

    /// The cases against the gRPC listener (they need its address).
    pub fn is_grpc(self) -> bool {
        matches!(
            self,
            Case::GrpcRapidReset
                | Case::GrpcTooManyStreams
                | Case::GrpcBigMetadata
                | Case::GrpcNoWindow
                | Case::GrpcSlowSender
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Case::HugeBatch => "huge-batch",
            Case::BigBatches => "big-batches",
            Case::Overload => "overload",
            Case::Slowloris => "slowloris",
            Case::PipelineNoRead => "pipeline-no-read",
            Case::BigHeaders => "big-headers",
            Case::ConnectionFlood => "connection-flood",
            Case::HostileFiles => "hostile-files",
            Case::GrpcRapidReset => "grpc-rapid-reset",
            Case::GrpcTooManyStreams => "grpc-too-many-streams",
            Case::GrpcBigMetadata => "grpc-big-metadata",
            Case::GrpcNoWindow => "grpc-no-window",
            Case::GrpcSlowSender => "grpc-slow-sender",
        }
    }

    pub fn parse(name: &str) -> Result<Case, String> {
        Case::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| format!("unknown case `{name}`; cases: {}", Case::ALL.map(Case::name).join(", ")))
    }
}

/// How hard each case pushes.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// huge-batch: connections, and the body size (the server's body limit).
    pub huge_conns: usize,
    pub huge_body_bytes: usize,
    /// big-batches: connections and rows per batch.
    pub batch_conns: usize,
    pub batch_rows: usize,
    pub overload_conns: usize,
    /// slowloris: header-drip and body-drip connections, and the drip period.
    pub slow_header_conns: usize,
    pub slow_body_conns: usize,
    pub drip_every: Duration,
    /// pipeline-no-read: connections and requests written on each.
    pub pipeline_conns: usize,
    pub pipeline_requests: usize,
    pub header_conns: usize,
    pub header_bytes: usize,
    pub flood_conns: usize,
    pub junk_dirs: usize,
    /// The gRPC cases: connections each.
    pub grpc_conns: usize,
}

impl Default for Sizes {
    fn default() -> Sizes {
        Sizes {
            huge_conns: 4,
            huge_body_bytes: 1024 * 1024,
            batch_conns: 8,
            batch_rows: 1000,
            overload_conns: 512,
            slow_header_conns: 500,
            slow_body_conns: 200,
            drip_every: Duration::from_millis(100),
            pipeline_conns: 20,
            pipeline_requests: 5000,
            header_conns: 4,
            header_bytes: 64 * 1024,
            flood_conns: 2000,
            junk_dirs: 500,
            grpc_conns: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HostileConfig {
    /// The server's predict URL for `model` (loopback).
    pub target: Target,
    pub server_pid: u32,
    pub models_dir: PathBuf,
    pub model: String,
    pub cases: Vec<Case>,
    /// Valid single-application bodies.
    pub bodies: Arc<Vec<Bytes>>,
    pub good_clients: usize,
    pub warmup: Duration,
    pub baseline: Duration,
    pub case_time: Duration,
    /// Good requests and every abusive socket operation.
    pub request_timeout: Duration,
    /// Longest wait for a commit to be served.
    pub serve_timeout: Duration,
    /// Longest wait for RSS to come back within the goal after a case.
    pub rss_settle: Duration,
    /// hostile-files: `/metrics` may differ by this many lines afterwards.
    pub metrics_line_slack: usize,
    pub sizes: Sizes,
    /// riskserve's gRPC listener, for the `grpc-*` cases.
    pub grpc: Option<std::net::SocketAddr>,
}

/// Soft open-file limit of a process (`/proc/<pid>/limits`).
pub fn fd_limit(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// `(metrics line count, sum of riskserve_requests_shed_total)`; None when
/// the scrape failed or the metric is absent.
async fn scrape(target: &Target, timeout: Duration) -> (Option<usize>, Option<u64>) {
    let metrics = target.with_path("/metrics");
    let got = tokio::task::spawn_blocking(move || http_get(&metrics, timeout)).await;
    match got {
        Ok(Ok((200, text))) => {
            let shed: Vec<f64> = prometheus::series(&text)
                .filter(|s| s.name == "riskserve_requests_shed_total")
                .map(|s| s.value)
                .collect();
            (Some(prometheus::line_count(&text)), (!shed.is_empty()).then(|| shed.iter().sum::<f64>() as u64))
        }
        _ => (None, None),
    }
}

/// `serving_version` of `GET /v1/models/<model>` (None on any failure).
async fn serving_version(conn: &mut Option<Client>, target: &Target, model: &str, timeout: Duration) -> Option<u64> {
    if conn.is_none() {
        *conn = Client::connect(target.addr, &target.host, timeout).await.ok();
    }
    let c = conn.as_mut()?;
    match c.request(Method::GET, &format!("/v1/models/{model}"), &[], Bytes::new()).await {
        Ok(reply) if reply.status == 200 => {
            let v: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
            v["serving_version"].as_u64()
        }
        _ => {
            *conn = None;
            None
        }
    }
}

/// Publishes `bytes` as the next version and times commit→serve: from just
/// before staging until `/v1/models/<model>` names it (None: not within
/// `serve_timeout`).
async fn commit_and_time(cfg: &HostileConfig, bytes: Arc<Vec<u8>>) -> Result<(u64, Option<f64>), String> {
    let (dir, model) = (cfg.models_dir.clone(), cfg.model.clone());
    let started = Instant::now();
    let version = tokio::task::spawn_blocking(move || {
        let repo = LocalDirectory::new(dir);
        let version = repo.latest_version(&model)? + 1;
        repo.publish(&model, version, &bytes).map(|_| version)
    })
    .await
    .map_err(|e| format!("publish task: {e}"))?
    .map_err(|e| format!("publishing: {e}"))?;
    let mut conn = None;
    while started.elapsed() < cfg.serve_timeout {
        if serving_version(&mut conn, &cfg.target, &cfg.model, cfg.request_timeout).await == Some(version) {
            return Ok((version, Some(started.elapsed().as_secs_f64() * 1000.0)));
        }
        // Polling: the server has no "serving changed" push.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((version, None))
}

/// The abusive tasks of a network case (hostile-files has none).
fn start_attack(
    case: Case,
    ctx: &Ctx,
    cfg: &HostileConfig,
    cap: usize,
    notes: &mut Vec<String>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let s = &cfg.sizes;
    let mut capped = |what: &str, n: usize| {
        if n > cap {
            notes.push(format!("{what} capped at {cap} by the open-file limit"));
        }
        n.min(cap)
    };
    match case {
        Case::HugeBatch => {
            attack::hammer(ctx, s.huge_conns, Arc::new(vec![attack::empty_items_batch(s.huge_body_bytes)]))
        }
        Case::BigBatches => {
            let mut tasks =
                attack::hammer(ctx, s.batch_conns, Arc::new(vec![attack::batch_of(&cfg.bodies, s.batch_rows)]));
            tasks.push(attack::live_probe(ctx, Duration::from_millis(50)));
            tasks
        }
        Case::Overload => attack::hammer(ctx, capped("connections", s.overload_conns), cfg.bodies.clone()),
        Case::Slowloris => {
            let (endless, body_head) = attack::slowloris_parts(ctx);
            let n = capped("connections", s.slow_header_conns + s.slow_body_conns);
            let headers = n * s.slow_header_conns / (s.slow_header_conns + s.slow_body_conns).max(1);
            let mut tasks = attack::drip(ctx, headers, Bytes::new(), endless, s.drip_every);
            tasks.extend(attack::drip(ctx, n - headers, body_head, Bytes::from_static(b" "), s.drip_every));
            tasks
        }
        Case::PipelineNoRead => {
            let request = attack::predict_request(ctx, &cfg.bodies[0]);
            attack::pipeline_no_read(ctx, s.pipeline_conns, request, s.pipeline_requests)
        }
        Case::BigHeaders => {
            attack::one_shot_requests(ctx, s.header_conns, attack::big_headers_request(ctx, s.header_bytes))
        }
        Case::ConnectionFlood => attack::idle_flood(ctx, capped("idle connections", s.flood_conns)),
        Case::HostileFiles => Vec::new(),
        grpc_case => {
            let Some(addr) = cfg.grpc else {
                notes.push("no gRPC listener given (--grpc-addr): not run".into());
                return Vec::new();
            };
            let (limits, conns) = (riskserve::grpc::server::MAX_HEADER_LIST_BYTES, s.grpc_conns);
            let streams = riskserve::grpc::server::MAX_STREAMS;
            match grpc_case {
                Case::GrpcRapidReset => grpc::rapid_reset(ctx, addr, conns),
                Case::GrpcTooManyStreams => grpc::too_many_streams(ctx, addr, conns, streams),
                Case::GrpcBigMetadata => grpc::big_metadata(ctx, addr, conns, limits),
                Case::GrpcNoWindow => {
                    let message = match crate::requests::infer_messages(&cfg.bodies, &cfg.model) {
                        Ok(messages) => messages[0].clone(),
                        Err(e) => {
                            notes.push(e);
                            return Vec::new();
                        }
                    };
                    grpc::no_window(ctx, addr, conns, streams, message)
                }
                _ => grpc::slow_sender(ctx, addr, conns, s.drip_every),
            }
        }
    }
}

/// Time windows of one case (µs since the run started: baseline start,
/// case start, case end, checks end) and what was measured live; the
/// good-traffic tallies are filled in at the end.
struct Pending {
    case: Case,
    windows: [u64; 4],
    row: CaseRow,
    /// Extra goals (hostile-files).
    extra: Vec<Goal>,
}

/// What every case needs from the run.
struct RunState<'a> {
    cfg: &'a HostileConfig,
    t0: Instant,
    rss_start: u64,
    /// Sockets the harness may still open.
    cap: usize,
    /// A valid model file, committed after every case.
    good_bytes: Arc<Vec<u8>>,
    errors: Vec<String>,
}

impl RunState<'_> {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn rss(&self) -> u64 {
        memory_of(self.cfg.server_pid).0
    }

    /// hostile-files: plants the files (see [`files::plant`]).
    async fn plant(&mut self) -> Option<files::Planted> {
        let cfg = self.cfg;
        let (dir, model, bytes, junk) =
            (cfg.models_dir.clone(), cfg.model.clone(), self.good_bytes.clone(), cfg.sizes.junk_dirs);
        let planted = tokio::task::spawn_blocking(move || {
            let repo = LocalDirectory::new(dir);
            let latest = repo.latest_version(&model).map_err(|e| e.to_string())?;
            files::plant(&repo, &model, latest, &bytes, junk).map_err(|e| e.to_string())
        })
        .await;
        match planted {
            Ok(Ok(p)) => Some(p),
            Ok(Err(e)) => {
                self.errors.push(format!("hostile-files: {e}"));
                None
            }
            Err(e) => {
                self.errors.push(format!("hostile-files task: {e}"));
                None
            }
        }
    }

    /// hostile-files, at the end of the case: the symlinked version must not
    /// be served; then everything planted is removed.
    async fn unplant(&mut self, p: &files::Planted, notes: &mut Vec<String>) -> Goal {
        let cfg = self.cfg;
        let serving = serving_version(&mut None, &cfg.target, &cfg.model, cfg.request_timeout).await;
        notes.push(format!("{} junk dirs created and deleted", p.junk_dirs));
        if let Err(e) = p.remove() {
            self.errors.push(format!("hostile-files cleanup: {e}"));
        }
        Goal {
            goal: "model.json linked outside the models dir is not served".into(),
            measured: format!("serving {serving:?}, link at version {:?}", p.symlink_version),
            met: serving.is_some() && serving != p.symlink_version,
        }
    }

    /// One case: baseline, the case with RSS sampled, commit→serve, RSS settle.
    async fn case(&mut self, case: Case) -> Pending {
        let cfg = self.cfg;
        eprintln!("hostile: {} (baseline {:?}, case {:?})", case.name(), cfg.baseline, cfg.case_time);
        let b0 = self.now_us();
        tokio::time::sleep(cfg.baseline).await;
        let (lines_before, shed_before) = scrape(&cfg.target, cfg.request_timeout).await;
        let rss_case_start = self.rss();
        let c0 = self.now_us();
        let deadline = Instant::now() + cfg.case_time;
        let ctx = Ctx {
            target: cfg.target.clone(),
            deadline,
            io_timeout: cfg.request_timeout,
            seen: Arc::new(Mutex::new(Observed::default())),
        };
        let mut notes = Vec::new();
        let mut extra = Vec::new();
        let tasks = start_attack(case, &ctx, cfg, self.cap, &mut notes);
        let planted = if case == Case::HostileFiles { self.plant().await } else { None };
        let mut rss_max = rss_case_start;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())))
                .await;
            rss_max = rss_max.max(self.rss());
        }
        let mut stragglers = 0;
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(cfg.request_timeout + Duration::from_secs(2), task).await.is_err() {
                abort.abort();
                stragglers += 1;
            }
        }
        if stragglers > 0 {
            notes.push(format!("{stragglers} abusive tasks aborted after the deadline"));
        }
        let c1 = self.now_us();
        if let Some(p) = &planted {
            extra.push(self.unplant(p, &mut notes).await);
        }
        let (commit_version, commit_to_serve_ms) = match commit_and_time(cfg, self.good_bytes.clone()).await {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(format!("{}: {e}", case.name()));
                (0, None)
            }
        };
        // RSS may take a moment to come down (freed buffers, allocator trim).
        let settle_until = Instant::now() + cfg.rss_settle;
        let mut rss_after = self.rss();
        while report::pct_change(self.rss_start, rss_after).abs() > RSS_GOAL_PCT && Instant::now() < settle_until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            rss_after = self.rss();
        }
        let (lines_after, shed_after) = scrape(&cfg.target, cfg.request_timeout).await;
        let shed_delta = shed_before.zip(shed_after).map(|(b, a)| a.saturating_sub(b));
        let observed = ctx.seen.lock().map(|o| o.clone()).unwrap_or_default();
        if let Some(ms) = observed.live_max_ms {
            notes.push(format!("live max {ms:.0} ms over {} probes", observed.live_probes));
        }
        if let Some(n) = shed_delta {
            notes.push(format!("shed {n}"));
        }
        if case == Case::HostileFiles {
            let (b, a) = (lines_before.unwrap_or(0), lines_after.unwrap_or(usize::MAX));
            notes.push(format!("/metrics {b} → {a} lines"));
            extra.push(Goal {
                goal: format!("/metrics line count back within ±{}", cfg.metrics_line_slack),
                measured: format!("{lines_before:?} → {lines_after:?}"),
                met: lines_before.is_some() && a.abs_diff(b) <= cfg.metrics_line_slack,
            });
        }
        let mut seen: Vec<_> = observed.counts.iter().collect();
        seen.sort_by(|a, b| b.1.cmp(a.1));
        if !seen.is_empty() {
            notes.push(seen.iter().take(4).map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
        }
        let row = CaseRow {
            case: case.name().to_string(),
            before: Tally::default(),
            during: Tally::default(),
            after: Tally::default(),
            rss_start_bytes: self.rss_start,
            rss_case_start_bytes: rss_case_start,
            rss_max_during_bytes: rss_max,
            rss_after_bytes: rss_after,
            commit_version,
            commit_to_serve_ms,
            shed_delta,
            metrics_lines: (lines_before, lines_after),
            observed,
            notes,
            goals: Vec::new(),
        };
        Pending { case, windows: [b0, c0, c1, self.now_us()], row, extra }
    }
}

/// Runs every case in `cfg.cases` under good traffic.
pub async fn run(cfg: HostileConfig) -> Result<HostileReport, String> {
    if cfg.bodies.is_empty() {
        return Err("need at least one request body".into());
    }
    let repo = LocalDirectory::new(&cfg.models_dir);
    let latest = repo.latest_version(&cfg.model).map_err(|e| format!("listing {}: {e}", cfg.models_dir.display()))?;
    if latest == 0 {
        return Err(format!("no version of {} under {}", cfg.model, cfg.models_dir.display()));
    }
    let good_file = repo.model_file(&cfg.model, latest);
    let good_bytes = Arc::new(std::fs::read(&good_file).map_err(|e| format!("reading {}: {e}", good_file.display()))?);

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..cfg.good_clients)
        .map(|id| {
            let (target, bodies, stop) = (cfg.target.clone(), cfg.bodies.clone(), stop.clone());
            tokio::spawn(good::client(id, target, bodies, cfg.request_timeout, t0, stop))
        })
        .collect();
    tokio::time::sleep(cfg.warmup).await;
    let fd_limits = (fd_limit("self"), fd_limit(&cfg.server_pid.to_string()));
    let mut state = RunState {
        cfg: &cfg,
        t0,
        rss_start: memory_of(cfg.server_pid).0,
        // The harness's open-file limit, less the good clients and some headroom.
        cap: fd_limits.0.map_or(usize::MAX, |l| (l as usize).saturating_sub(cfg.good_clients + 200)),
        good_bytes,
        errors: Vec::new(),
    };
    let mut pending = Vec::new();
    for &case in &cfg.cases {
        pending.push(state.case(case).await);
    }
    let mut errors = state.errors;

    stop.store(true, Ordering::Relaxed);
    let mut samples: Vec<GoodSample> = Vec::new();
    for client in clients {
        let abort = client.abort_handle();
        match tokio::time::timeout(cfg.request_timeout * 2 + Duration::from_secs(2), client).await {
            Ok(Ok(s)) => samples.extend(s),
            Ok(Err(e)) => errors.push(format!("a good client failed: {e}")),
            Err(_) => {
                abort.abort();
                errors.push("a good client did not stop within its deadline".into());
            }
        }
    }
    let cases = pending
        .into_iter()
        .map(|Pending { case, windows: [b0, c0, c1, a1], mut row, extra }| {
            row.before = Tally::of(&samples, b0, c0);
            row.during = Tally::of(&samples, c0, c1);
            row.after = Tally::of(&samples, c1, a1);
            // Shedding is fine where this case drove admission control to shed.
            let may_shed = case == Case::Overload || row.shed_delta.is_some_and(|n| n > 0);
            row.judge(may_shed, extra);
            row
        })
        .collect();
    Ok(HostileReport {
        target: cfg.target.url(),
        good_clients: cfg.good_clients,
        case_secs: cfg.case_time.as_secs_f64(),
        baseline_secs: cfg.baseline.as_secs_f64(),
        fd_limits,
        cases,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip() {
        for case in Case::ALL {
            assert_eq!(Case::parse(case.name()), Ok(case));
        }
        assert!(Case::parse("nope").unwrap_err().contains("huge-batch"));
        assert!(fd_limit("self").is_some_and(|l| l > 0));
    }
}
