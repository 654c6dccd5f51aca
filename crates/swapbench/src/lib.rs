//! swapbench: load and hot-swap at the same time, and measure both.
//!
//! One implementation shared by the `swapbench` binary (the benchmark, see
//! `bench/README.md`) and the integration test `swap_harness` (a short,
//! bounded run that guards the zero-failure promise in CI). By concern:
//!
//! - [`load`]: C tokio tasks, each with one keep-alive HTTP/1.1 connection,
//!   recording one [`load::Sample`] per response; bodies from [`requests`],
//!   sent to a loopback [`Target`];
//! - [`operator`]: a plain thread that plays the person deploying models
//!   (riskserve: commits through `riskserve::repository`, plus a
//!   half-written file, a corrupt file and a rollback at a lower rate;
//!   the Flask peer: a new pickle and SIGHUP);
//! - [`analysis`]: everything derived after the run from the raw samples and
//!   the operator's timestamped event log: windows, percentiles, goals;
//! - [`record`]: what the run records for the report, the operator's
//!   events ([`OpEvent`]) and memory samples;
//! - [`report`]: the [`Report`] (JSON) and its summary text;
//! - [`process`]: [`ServerProcess`] (a `riskserve serve` child on
//!   127.0.0.1:0, killed on drop) and the `/proc` CPU and memory readers;
//! - [`scrape`]: riskserve's `/metrics`;
//! - [`hostile`]: the `hostile` binary's abuse cases under good traffic
//!   (`bench/hostile.sh`), built from the pieces above.
//!
//! This file holds the configuration and [`run`]: start the clients, the
//! operator and the CPU sampler, collect, analyse. Only loopback targets are
//! accepted, every loop is bounded in time, and every wait has a timeout.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod hostile;
pub mod load;
pub mod operator;
pub mod process;
pub mod record;
pub mod report;
pub mod requests;
pub mod scrape;
pub mod target;

pub use operator::PICKLE_MARKER;
pub use process::ServerProcess;
pub use record::{OpEvent, OpKind};
pub use report::Report;
pub use requests::{csv_bodies, synth_bodies};
pub use target::Target;

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the operator does to publish versions.
#[derive(Debug, Clone)]
pub enum Deployment {
    /// A riskserve model repository: `<models_dir>/<model_name>/<version>/model.json`.
    Riskserve {
        models_dir: PathBuf,
        model_name: String,
        /// Bytes committed as every new version (default: the newest version
        /// on disk at start). The directory name is the version.
        source: Option<PathBuf>,
        /// Committed instead of `source` as every other version (even
        /// numbers): a model with other inputs, so the run swaps between two
        /// schemas (schema evolution under load).
        alternate: Option<PathBuf>,
    },
    /// The Flask peer: a pickle that every gunicorn worker loads at start.
    /// `model_path` must contain a version marker (see [`PICKLE_MARKER`]);
    /// each commit patches the marker's digits, writes the pickle next to
    /// `model_path`, renames it over `model_path`, and sends SIGHUP to the
    /// gunicorn master `master_pid` (graceful worker reload).
    FlaskPickle { model_path: PathBuf, master_pid: u32 },
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub target: Target,
    /// Server (or gunicorn master) PID, for RSS and CPU. Its whole process
    /// tree is measured.
    pub server_pid: Option<u32>,
    /// riskserve `/metrics` is scraped when set.
    pub metrics: Option<Target>,
    pub deployment: Deployment,
    pub bodies: Arc<Vec<Bytes>>,
    pub clients: usize,
    /// Excluded from both latency windows (failures still count).
    pub warmup: Duration,
    /// Steady window: load, no operator activity.
    pub steady: Duration,
    /// Total run length, steady window included. Swapping continues past it
    /// until `min_swaps` commits were made, but never past `max_duration`.
    pub duration: Duration,
    pub max_duration: Duration,
    pub min_swaps: usize,
    /// Stop after this many requests (all clients together), if set.
    pub max_requests: Option<u64>,
    /// Open loop: this many requests per second in total, spread over the
    /// clients, latency measured from each request's scheduled time. None:
    /// closed loop (each client sends its next request as soon as the last
    /// one is answered, i.e. saturation).
    pub rate: Option<f64>,
    pub commit_every: Duration,
    /// Every N-th operator step is a bad one (rotating: half-written file,
    /// corrupt file, delete newest); 0 disables them.
    pub bad_every: usize,
    /// Valid versions kept on disk (older ones are deleted); at least 2.
    pub keep_versions: usize,
    pub request_timeout: Duration,
    /// After the last commit, how long to wait for it to be served.
    pub drain_timeout: Duration,
    /// Print a progress line every this often (None: quiet).
    pub progress: Option<Duration>,
    /// riskserve's gRPC listener: the clients call `ModelInfer` there (the
    /// same applications as `bodies`, as typed tensors) instead of POSTing
    /// to `target`, which still serves `/metrics`.
    pub grpc: Option<std::net::SocketAddr>,
}

impl BenchConfig {
    /// Defaults: 64 clients, 10 s steady + 110 s swapping at one commit per
    /// 100 ms, a bad step every 25 (the CLI and scripts default to a 30 s
    /// steady window).
    pub fn new(target: Target, deployment: Deployment, bodies: Vec<Bytes>) -> BenchConfig {
        BenchConfig {
            target,
            server_pid: None,
            metrics: None,
            deployment,
            bodies: Arc::new(bodies),
            clients: 64,
            warmup: Duration::from_secs(1),
            steady: Duration::from_secs(10),
            duration: Duration::from_secs(121),
            max_duration: Duration::from_secs(360),
            min_swaps: 1000,
            max_requests: None,
            rate: None,
            commit_every: Duration::from_millis(100),
            bad_every: 25,
            keep_versions: 3,
            request_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            progress: None,
            grpc: None,
        }
    }
}

/// State shared by the clients and the operator; touched with relaxed
/// atomics only.
pub(crate) struct Shared {
    pub t0: Instant,
    pub stop: AtomicBool,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    /// Highest version any response has named so far.
    pub max_seen: AtomicU64,
}

impl Shared {
    /// µs since the run started.
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

/// Runs the benchmark (clients on the current tokio runtime, the operator on
/// its own thread) and analyses it.
pub async fn run(cfg: BenchConfig) -> Result<Report, String> {
    if cfg.bodies.is_empty() || cfg.clients == 0 {
        return Err("need at least one request body and one client".into());
    }
    let (mut repo, initial) = operator::open_repo(&cfg.deployment)?;
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        max_seen: AtomicU64::new(0),
    });
    let check_body = matches!(cfg.deployment, Deployment::Riskserve { .. });
    let clients: Vec<_> = match (cfg.grpc, &cfg.deployment) {
        (Some(addr), Deployment::Riskserve { model_name, .. }) => {
            let messages = Arc::new(requests::infer_messages(&cfg.bodies, model_name)?);
            (0..cfg.clients)
                .map(|id| tokio::spawn(load::grpc_client(id, cfg.clone(), shared.clone(), addr, messages.clone())))
                .collect()
        }
        (Some(_), _) => return Err("gRPC is riskserve's: the Flask peer has none".into()),
        (None, _) => {
            (0..cfg.clients).map(|id| tokio::spawn(load::client(id, cfg.clone(), shared.clone(), check_body))).collect()
        }
    };

    let op_cfg = cfg.clone();
    let op_shared = shared.clone();
    let operator_thread = std::thread::Builder::new()
        .name("swapbench-operator".into())
        .spawn(move || {
            let log = operator::operator(&op_cfg, &op_shared, repo.as_mut(), initial);
            op_shared.stop.store(true, Ordering::Relaxed);
            log
        })
        .map_err(|e| format!("starting the operator thread: {e}"))?;
    // CPU of server, harness and everything else, once a second, to tell
    // quiet seconds from seconds when something else ran on the machine.
    let sampler_shared = shared.clone();
    let sampler_pid = cfg.server_pid;
    let sampler = std::thread::Builder::new()
        .name("swapbench-cpu".into())
        .spawn(move || {
            let mut points = Vec::new();
            let mut next = Instant::now();
            while !sampler_shared.stop.load(Ordering::Relaxed) && points.len() < 100_000 {
                points.push(process::cpu_point(sampler_shared.now_us(), sampler_pid));
                next += Duration::from_secs(1);
                operator::sleep_until(&sampler_shared, next);
            }
            points
        })
        .map_err(|e| format!("starting the sampler thread: {e}"))?;
    // If the requests cap ends the run first, tell the operator.
    let watcher_shared = shared.clone();
    let max_requests = cfg.max_requests;
    let watcher = tokio::spawn(async move {
        while !watcher_shared.stop.load(Ordering::Relaxed) {
            if max_requests.is_some_and(|m| watcher_shared.requests.load(Ordering::Relaxed) >= m) {
                watcher_shared.stop.store(true, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let log = tokio::task::spawn_blocking(move || operator_thread.join())
        .await
        .map_err(|e| format!("operator join: {e}"))?
        .map_err(|_| "the operator thread panicked".to_string())?;
    shared.stop.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    let cpu_points = tokio::task::spawn_blocking(move || sampler.join().unwrap_or_default())
        .await
        .map_err(|e| format!("sampler join: {e}"))?;

    let mut samples = Vec::new();
    let mut server_closed = 0;
    let mut messages = BTreeMap::new();
    let deadline = cfg.request_timeout * 2 + Duration::from_secs(2);
    for handle in clients {
        let abort = handle.abort_handle();
        match tokio::time::timeout(deadline, handle).await {
            Ok(Ok(r)) => {
                samples.extend(r.samples);
                server_closed += r.server_closed;
                for (k, v) in r.errors {
                    *messages.entry(k).or_insert(0) += v;
                }
            }
            Ok(Err(e)) => return Err(format!("a client task failed: {e}")),
            Err(_) => {
                abort.abort();
                return Err("a client did not stop within its deadline".into());
            }
        }
    }
    Ok(analysis::analyse(&cfg, samples, log, cpu_points, server_closed, messages))
}

/// A fresh multi-threaded runtime with `threads` workers (the harness's
/// share of the machine).
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("building the runtime: {e}"))
}

/// [`run`] on a fresh [`runtime`] with `threads` workers.
pub fn run_blocking(cfg: BenchConfig, threads: usize) -> Result<Report, String> {
    runtime(threads)?.block_on(run(cfg))
}
