//! swapbench harness: load and hot-swap at the same time, and measure both.
//!
//! One implementation shared by the `swapbench` example (the benchmark) and
//! the integration test `swap_harness` (a short, bounded run that guards the
//! zero-failure promise in CI). It owns:
//!
//! - the **clients**: C tokio tasks, each with one HTTP/1.1 keep-alive
//!   connection (hyper's low-level `client::conn::http1`), sending realistic
//!   single-application requests and recording one [`Sample`] per response
//!   (receive time, latency, status, the version it names, failure kind);
//! - the **operator**: a plain thread that plays the person deploying models.
//!   For riskserve it commits versions the documented way (write under
//!   `<name>/.staging-N/`, then rename to `<name>/N/`) and, at a lower rate,
//!   half-writes a version in place, renames in a corrupt one and deletes the
//!   newest (rollback). For the Flask peer it does what its users do: replace
//!   the pickle (write + rename) and send SIGHUP to gunicorn;
//! - the **analysis**: everything is derived after the run from the raw
//!   samples and the operator's timestamped event log, so the hot path does
//!   no bookkeeping beyond a `Vec::push` and two relaxed atomics;
//! - [`ServerProcess`]: spawns `riskserve serve` on 127.0.0.1:0 and kills it
//!   on drop (also when a test panics).
//!
//! Only loopback targets are accepted, every loop is bounded in time, and
//! every wait has a timeout.

// Two targets compile this file (the example and the integration test), and
// each uses a different part of it.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- target --

/// Where the clients send requests: a loopback address and a path.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    pub path: String,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT/path` (also `localhost`, `[::1]`).
    /// Anything that does not resolve to a loopback address is refused: this
    /// tool only ever loads servers on this machine.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e} (give host:port)"))?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| format!("{url}: refusing a non-loopback target"))?;
        Ok(Target { addr, host: authority.to_string(), path: path.to_string() })
    }

    /// The same server, another path.
    pub fn with_path(&self, path: &str) -> Target {
        Target { path: path.to_string(), ..self.clone() }
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

// ------------------------------------------------------------- requests --

/// JSON bodies for single-application requests, one per synthetic row
/// (`riskserve synth` data; missing values are sent as `null`).
pub fn synth_bodies(rows: usize, seed: u64) -> Vec<Bytes> {
    riskserve::train::synth::generate(rows.max(1), seed).iter().map(|(app, _)| application_json(app)).collect()
}

/// JSON bodies from a CSV with the reference columns (blank cells → `null`).
pub fn csv_bodies(path: &Path) -> Result<Vec<Bytes>, String> {
    let data = riskserve::train::dataset::read_csv(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(data.rows.iter().map(application_json).collect())
}

/// One application as a JSON object, keys in CSV order.
pub fn application_json(app: &riskserve::model::input::LoanApplication) -> Bytes {
    use riskserve::model::input::{CATEGORICAL_FEATURES, CSV_FEATURE_ORDER, NUMERIC_FEATURES};
    let mut out = String::with_capacity(256);
    out.push('{');
    for (k, feature) in CSV_FEATURE_ORDER.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(feature);
        out.push_str("\":");
        let value = if let Some(i) = NUMERIC_FEATURES.iter().position(|f| f == feature) {
            app.numeric[i].map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
        } else {
            let i = CATEGORICAL_FEATURES.iter().position(|f| f == feature).unwrap_or(0);
            app.categorical[i].clone().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
        };
        out.push_str(&value.to_string());
    }
    out.push('}');
    Bytes::from(out)
}

// ---------------------------------------------------------------- config --

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
    },
    /// The Flask peer: a pickle that every gunicorn worker loads at start.
    /// `model_path` must contain a version marker (see [`PICKLE_MARKER`]);
    /// each commit patches the marker's digits, writes the pickle next to
    /// `model_path`, renames it over `model_path`, and sends SIGHUP to the
    /// gunicorn master `master_pid` (graceful worker reload).
    FlaskPickle { model_path: PathBuf, master_pid: u32 },
}

/// Marker stored in the peer pickle (`model.bench_version = "RSBENCHVER:0000000001"`),
/// followed by ten digits. Patching the digits in place keeps the pickle valid
/// (same length) and lets the workers name the version they loaded.
pub const PICKLE_MARKER: &[u8] = b"RSBENCHVER:";
const PICKLE_DIGITS: usize = 10;

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
        }
    }
}

// --------------------------------------------------------------- samples --

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    Ok = 0,
    /// Answered with a status other than 200.
    Non200 = 1,
    /// Could not connect (or the handshake failed).
    ConnectError = 2,
    /// The connection failed while the request was in flight, or an idle
    /// keep-alive connection was found closed without the server saying so.
    ConnectionError = 3,
    /// No complete response within the request timeout.
    Timeout = 4,
    /// 200 without a version header (or a body that names another version).
    BadVersion = 5,
}

/// One response (or failure), as recorded by a client.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Receive time, µs since the run started.
    pub t_us: u64,
    pub latency_us: u32,
    /// Version named by the response (0: none).
    pub version: u32,
    pub status: u16,
    pub outcome: Outcome,
}

impl Sample {
    fn start_us(&self) -> u64 {
        self.t_us.saturating_sub(self.latency_us as u64)
    }
}

/// State shared by the clients and the operator; touched with relaxed
/// atomics only.
struct Shared {
    t0: Instant,
    stop: AtomicBool,
    requests: AtomicU64,
    failures: AtomicU64,
    /// Highest version any response has named so far.
    max_seen: AtomicU64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

// --------------------------------------------------------------- clients --

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target, timeout: Duration) -> Result<Sender, String> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target.addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = tokio::time::timeout(timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `"model_version":N` in a riskserve body, if present.
fn body_version(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"model_version\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = body[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn note(errors: &mut BTreeMap<String, u64>, what: String) {
    if errors.len() < 32 || errors.contains_key(&what) {
        *errors.entry(what).or_default() += 1;
    }
}

struct ClientResult {
    samples: Vec<Sample>,
    /// Reconnects after the server announced `Connection: close` (not failures).
    server_closed: u64,
    errors: BTreeMap<String, u64>,
}

async fn client(id: usize, cfg: Arc<BenchConfig>, shared: Arc<Shared>, check_body: bool) -> ClientResult {
    let bodies = cfg.bodies.clone();
    let mut next = (id * 7919) % bodies.len();
    let mut out = ClientResult { samples: Vec::with_capacity(16 * 1024), server_closed: 0, errors: BTreeMap::new() };
    let mut sender: Option<Sender> = None;
    let mut local_max = 0u64;
    // Open-loop pacing (`rate`): each client sends on its own fixed schedule,
    // offset so the clients interleave, and latency counts from the scheduled
    // time (no coordinated omission).
    let interval = cfg.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(cfg.clients as f64 / r));
    let mut due = Instant::now() + interval.map(|i| i.mul_f64(id as f64 / cfg.clients as f64)).unwrap_or_default();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(max) = cfg.max_requests {
            if shared.requests.load(Ordering::Relaxed) >= max {
                break;
            }
        }
        let started = match interval {
            Some(every) => {
                tokio::time::sleep_until(due.into()).await;
                let scheduled = due;
                // Far behind (the server stalled): restart the schedule
                // rather than firing a burst of catch-up requests.
                due = (due + every).max(Instant::now() - Duration::from_secs(1));
                scheduled
            }
            None => Instant::now(),
        };
        let record = |out: &mut ClientResult, outcome: Outcome, status: u16, version: u64| {
            let latency = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
            out.samples.push(Sample {
                t_us: shared.now_us(),
                latency_us: latency,
                version: version.min(u32::MAX as u64) as u32,
                status,
                outcome,
            });
            shared.requests.fetch_add(1, Ordering::Relaxed);
            if outcome != Outcome::Ok {
                shared.failures.fetch_add(1, Ordering::Relaxed);
            }
        };
        if sender.is_none() {
            match connect(&cfg.target, cfg.request_timeout).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    note(&mut out.errors, format!("connect: {e}"));
                    record(&mut out, Outcome::ConnectError, 0, 0);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        match tokio::time::timeout(cfg.request_timeout, s.ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The server closed an idle keep-alive connection without a
                // `Connection: close`: a request sent now would have failed.
                note(&mut out.errors, format!("idle connection closed: {e}"));
                record(&mut out, Outcome::ConnectionError, 0, 0);
                sender = None;
                continue;
            }
            Err(_) => {
                record(&mut out, Outcome::Timeout, 0, 0);
                sender = None;
                continue;
            }
        }
        let body = bodies[next].clone();
        next = (next + 1) % bodies.len();
        let request = Request::builder()
            .method(Method::POST)
            .uri(cfg.target.path.as_str())
            .header(HOST, cfg.target.host.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                note(&mut out.errors, format!("building request: {e}"));
                record(&mut out, Outcome::ConnectionError, 0, 0);
                break;
            }
        };
        let exchange = async {
            let response = s.send_request(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, bytes))
        };
        match tokio::time::timeout(cfg.request_timeout, exchange).await {
            Err(_) => {
                record(&mut out, Outcome::Timeout, 0, 0);
                sender = None;
            }
            Ok(Err(e)) => {
                note(&mut out.errors, format!("request: {e}"));
                record(&mut out, Outcome::ConnectionError, 0, 0);
                sender = None;
            }
            Ok(Ok((parts, bytes))) => {
                let status = parts.status.as_u16();
                let version = parts
                    .headers
                    .get("x-model-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let closing = parts
                    .headers
                    .get(CONNECTION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if status != 200 {
                    note(
                        &mut out.errors,
                        format!("status {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])),
                    );
                    record(&mut out, Outcome::Non200, status, version.unwrap_or(0));
                } else {
                    match version {
                        Some(v) if !check_body || body_version(&bytes) == Some(v) => {
                            if v > local_max {
                                local_max = v;
                                shared.max_seen.fetch_max(v, Ordering::Relaxed);
                            }
                            record(&mut out, Outcome::Ok, status, v);
                        }
                        _ => {
                            note(
                                &mut out.errors,
                                format!("version header {version:?} vs body {:?}", body_version(&bytes)),
                            );
                            record(&mut out, Outcome::BadVersion, status, version.unwrap_or(0));
                        }
                    }
                }
                if closing {
                    out.server_closed += 1;
                    sender = None;
                }
            }
        }
    }
    out
}

// -------------------------------------------------------------- /proc --

fn clock_ticks_per_sec() -> f64 {
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
fn process_tree(root: u32) -> Vec<u32> {
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

/// Memory of a process tree at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySample {
    /// Harness time, seconds since start.
    pub at_s: f64,
    /// Commits made by the operator so far.
    pub commits: usize,
    /// `riskserve_model_swaps_total` at that moment, when scraped.
    pub server_swaps: Option<u64>,
    /// Sum of VmRSS over the tree (shared pages of forked workers counted
    /// once per process).
    pub rss_bytes: u64,
    /// Sum of Pss (shared pages split between the processes sharing them).
    pub pss_bytes: u64,
    pub processes: usize,
    /// Lines of `/metrics` (riskserve), to show label sets do not grow.
    pub metrics_lines: Option<usize>,
    /// `process_resident_memory_bytes` from `/metrics` (riskserve).
    pub metrics_rss_bytes: Option<u64>,
}

fn memory_of(root: u32) -> (u64, u64, usize) {
    let tree = process_tree(root);
    let rss: u64 = tree.iter().filter_map(|p| status_kb(*p, "status", "VmRSS:")).sum();
    let pss: u64 = tree.iter().filter_map(|p| status_kb(*p, "smaps_rollup", "Pss:")).sum();
    (rss * 1024, pss * 1024, tree.len())
}

// -------------------------------------------------------------- metrics --

/// A blocking `GET` over a fresh loopback connection (`Connection: close`).
pub fn http_get(target: &Target, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = StdTcpStream::connect_timeout(&target.addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.path, target.host)
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.take(64 * 1024 * 1024).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    Ok((status, body.to_string()))
}

/// The riskserve metrics the benchmark reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerMetrics {
    pub lines: usize,
    pub swaps_total: Option<u64>,
    pub resident_memory_bytes: Option<u64>,
    /// `riskserve_model_loads_total` by result.
    pub loads: BTreeMap<String, u64>,
    pub load_seconds_sum: Option<f64>,
    pub load_seconds_count: Option<u64>,
}

/// Parses the few series we need from Prometheus text.
pub fn parse_metrics(text: &str, model: &str) -> ServerMetrics {
    let mut m = ServerMetrics { lines: text.lines().count(), ..ServerMetrics::default() };
    let model_label = format!("model=\"{model}\"");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or("");
        let labels = series.find('{').map(|i| &series[i..]).unwrap_or("");
        let for_model = labels.contains(&model_label);
        match name {
            "riskserve_model_swaps_total" if for_model => m.swaps_total = value.parse::<f64>().ok().map(|v| v as u64),
            "process_resident_memory_bytes" => m.resident_memory_bytes = value.parse::<f64>().ok().map(|v| v as u64),
            "riskserve_model_loads_total" if for_model => {
                if let Some(result) = labels.split("result=\"").nth(1).and_then(|r| r.split('"').next()) {
                    m.loads.insert(result.to_string(), value.parse::<f64>().unwrap_or(0.0) as u64);
                }
            }
            "riskserve_model_load_duration_seconds_sum" if for_model => m.load_seconds_sum = value.parse().ok(),
            "riskserve_model_load_duration_seconds_count" if for_model => {
                m.load_seconds_count = value.parse::<f64>().ok().map(|v| v as u64)
            }
            _ => {}
        }
    }
    m
}

// -------------------------------------------------------------- operator --

/// What the operator did, and when (µs since the run started).
#[derive(Debug, Clone, Serialize)]
pub struct OpEvent {
    pub kind: OpKind,
    pub version: u64,
    /// The version that should be served once the server has caught up.
    pub expect: u64,
    /// Just before the step became visible to the server (for commits: just
    /// before the rename / the completing write). A response may name a
    /// committed version only after this.
    pub pre_us: u64,
    /// Just after the step (after the rename / close / delete / HUP).
    pub at_us: u64,
    /// Half-written and corrupt files (riskserve): ms from the step until
    /// `riskserve_model_loads_total{result="incomplete"|"invalid"}` went up,
    /// i.e. the server looked at the file and refused it. The operator waits
    /// for this (bounded) before its next step; None if not seen in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_after_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Written elsewhere, renamed into place: the documented way.
    Commit,
    /// The first half of a version written in place (must not be served).
    HalfWritten,
    /// The rest of that file written: from now on it is a valid version.
    CompletedWrite,
    /// A file with one flipped payload byte renamed into place (must never be served).
    Corrupt,
    /// The newest version deleted: traffic should go back to the previous one.
    Rollback,
}

/// Where the operator writes.
trait Repo {
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

/// A riskserve model repository.
struct DirRepo {
    dir: PathBuf,
    bytes: Vec<u8>,
    open: Option<(u64, std::fs::File)>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// A copy of `bytes` with one digit inside the payload changed: still JSON,
/// but the payload digest no longer matches.
fn flip_payload_byte(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let payload = out.windows(10).position(|w| w == b"\"payload\":").unwrap_or(0);
    let start = payload + (out.len() - payload) / 2;
    if let Some(i) = (start..out.len()).find(|&i| out[i].is_ascii_digit()) {
        out[i] = if out[i] == b'7' { b'3' } else { b'7' };
    }
    out
}

impl Repo for DirRepo {
    fn commit(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String> {
        let staging = self.dir.join(format!(".staging-{version}"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| io("creating", &staging, e))?;
        let file = staging.join("model.json");
        std::fs::write(&file, &self.bytes).map_err(|e| io("writing", &file, e))?;
        let target = self.dir.join(version.to_string());
        let pre = clock();
        std::fs::rename(&staging, &target).map_err(|e| io("renaming into", &target, e))?;
        Ok((pre, clock()))
    }

    fn half_write(&mut self, version: u64) -> Result<(), String> {
        let target = self.dir.join(version.to_string());
        std::fs::create_dir_all(&target).map_err(|e| io("creating", &target, e))?;
        let path = target.join("model.json");
        let mut file = std::fs::File::create(&path).map_err(|e| io("creating", &path, e))?;
        file.write_all(&self.bytes[..self.bytes.len() / 2]).map_err(|e| io("writing", &path, e))?;
        file.flush().map_err(|e| io("writing", &path, e))?;
        self.open = Some((version, file));
        Ok(())
    }

    fn complete_write(&mut self, version: u64, clock: &dyn Fn() -> u64) -> Result<(u64, u64), String> {
        let (v, mut file) = self.open.take().ok_or("no half-written file open")?;
        if v != version {
            return Err(format!("half-written version is {v}, not {version}"));
        }
        let pre = clock();
        file.write_all(&self.bytes[self.bytes.len() / 2..]).map_err(|e| format!("completing version {v}: {e}"))?;
        drop(file); // close: the watcher sees IN_CLOSE_WRITE
        Ok((pre, clock()))
    }

    fn corrupt(&mut self, version: u64) -> Result<(), String> {
        let staging = self.dir.join(format!(".staging-{version}"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| io("creating", &staging, e))?;
        let file = staging.join("model.json");
        std::fs::write(&file, flip_payload_byte(&self.bytes)).map_err(|e| io("writing", &file, e))?;
        let target = self.dir.join(version.to_string());
        std::fs::rename(&staging, &target).map_err(|e| io("renaming into", &target, e))
    }

    fn rollback(&mut self, newest: u64, _previous: u64) -> Result<(), String> {
        let dir = self.dir.join(newest.to_string());
        std::fs::remove_dir_all(&dir).map_err(|e| io("deleting", &dir, e))
    }

    fn prune(&mut self, keep: &BTreeSet<u64>, invalid: &BTreeSet<u64>) -> Result<(), String> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io("listing", &self.dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(v) = name.parse::<u64>() else { continue };
            if !keep.contains(&v) || invalid.contains(&v) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }
}

/// The Flask peer's pickle plus gunicorn's master process.
struct PickleRepo {
    path: PathBuf,
    base: Vec<u8>,
    marker_at: usize,
    master_pid: u32,
}

impl PickleRepo {
    fn open(path: &Path, master_pid: u32) -> Result<(PickleRepo, u64), String> {
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

/// Everything the operator thread measured.
struct OperatorLog {
    /// Versions on disk at start (committed before the run).
    initial: BTreeSet<u64>,
    events: Vec<OpEvent>,
    steady_start_us: u64,
    swap_start_us: u64,
    swap_end_us: u64,
    drained: bool,
    memory: Vec<MemorySample>,
    metrics_after_10: Option<ServerMetrics>,
    metrics_end: Option<ServerMetrics>,
    cpu: Vec<CpuPoint>,
    errors: Vec<String>,
    /// Steps skipped by the peer process-count guard.
    skipped_steps: usize,
}

/// The operator skips a step while the peer's process tree is larger than this.
pub const MAX_PEER_PROCESSES: usize = 64;

fn sleep_until(shared: &Shared, at: Instant) {
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
fn operator(cfg: &BenchConfig, shared: &Shared, repo: &mut dyn Repo, initial: BTreeSet<u64>) -> OperatorLog {
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
    let self_pid = std::process::id();
    let cpu_sample = |log: &mut OperatorLog| {
        let server = cfg.server_pid.and_then(tree_cpu_ticks);
        let me = proc_stat(self_pid).map(|(_, own, _)| own);
        log.cpu.push((clock(), server, me, machine_busy_ticks()));
    };
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
                log.events.push(OpEvent {
                    kind: OpKind::CompletedWrite,
                    version: v,
                    expect: v,
                    pre_us: pre,
                    at_us: at,
                    rejected_after_ms: None,
                });
                return Ok(());
            }
            let bad = cfg.bad_every > 0 && step % cfg.bad_every == 0 && !done;
            if bad {
                let kind = bad_turn % 3;
                bad_turn += 1;
                match kind {
                    0 => {
                        let v = next_version;
                        next_version += 1;
                        let before = load_results("incomplete");
                        let pre = clock();
                        repo.half_write(v)?;
                        half_open = Some(v);
                        last_was_commit = false;
                        let at = clock();
                        let rejected_after_ms = before.and_then(|b| rejected(at, "incomplete", b));
                        log.events.push(OpEvent {
                            kind: OpKind::HalfWritten,
                            version: v,
                            expect: current,
                            pre_us: pre,
                            at_us: at,
                            rejected_after_ms,
                        });
                        return Ok(());
                    }
                    1 => {
                        let v = next_version;
                        next_version += 1;
                        let before = load_results("invalid");
                        let pre = clock();
                        repo.corrupt(v)?;
                        invalid.insert(v);
                        last_was_commit = false;
                        let at = clock();
                        let rejected_after_ms = before.and_then(|b| rejected(at, "invalid", b));
                        log.events.push(OpEvent {
                            kind: OpKind::Corrupt,
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
            log.events.push(OpEvent {
                kind: OpKind::Commit,
                version: v,
                expect: v,
                pre_us: pre,
                at_us: at,
                rejected_after_ms: None,
            });
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
        } else if commits > 0 && commits % 100 == 0 && log.memory.last().is_some_and(|s| s.commits != commits) {
            let m = scrape();
            log.memory.extend(memory(commits, m.as_ref()));
        }
        if let Some(every) = cfg.progress {
            let n = step as u64;
            let per = (every.as_millis() / cfg.commit_every.as_millis().max(1)).max(1) as u64;
            if n % per == 0 {
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

// --------------------------------------------------------------- report --

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

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn spread_us(mut values: Vec<u64>) -> Spread {
    values.sort_unstable();
    let n = values.len();
    let mean = if n == 0 { 0.0 } else { values.iter().sum::<u64>() as f64 / n as f64 / 1000.0 };
    Spread {
        n,
        p50_ms: percentile(&values, 0.50) as f64 / 1000.0,
        p99_ms: percentile(&values, 0.99) as f64 / 1000.0,
        max_ms: values.last().copied().unwrap_or(0) as f64 / 1000.0,
        mean_ms: mean,
    }
}

/// Latency and rate of `in_window` (already selected), over `from_us..to_us`.
fn window(in_window: &[Sample], from_us: u64, to_us: u64) -> Window {
    let mut lat: Vec<u64> =
        in_window.iter().filter(|s| s.outcome == Outcome::Ok).map(|s| s.latency_us as u64).collect();
    lat.sort_unstable();
    let secs = (to_us.saturating_sub(from_us)) as f64 / 1e6;
    let ms = |us: u64| us as f64 / 1000.0;
    Window {
        from_s: from_us as f64 / 1e6,
        to_s: to_us as f64 / 1e6,
        requests: in_window.len() as u64,
        ok: lat.len() as u64,
        req_per_s: if secs > 0.0 { in_window.len() as f64 / secs } else { 0.0 },
        p50_ms: ms(percentile(&lat, 0.50)),
        p99_ms: ms(percentile(&lat, 0.99)),
        p999_ms: ms(percentile(&lat, 0.999)),
        max_ms: ms(lat.last().copied().unwrap_or(0)),
        mean_ms: if lat.is_empty() { 0.0 } else { lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0 },
    }
}

/// Buckets of [`Report::after_commit`].
pub const OFFSET_BUCKETS: usize = 11;

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
    /// [`QUIET_OTHER_CORES`]): what the goals use when the machine was shared.
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

/// Seconds in which other processes used at most this many cores count as quiet.
pub const QUIET_OTHER_CORES: f64 = 0.1;

/// (µs since start, server tree ticks, harness ticks, machine busy ticks).
type CpuPoint = (u64, Option<u64>, Option<u64>, Option<u64>);

fn analyse(
    cfg: &BenchConfig,
    mut samples: Vec<Sample>,
    log: OperatorLog,
    cpu_points: Vec<CpuPoint>,
    server_closed: u64,
    messages: BTreeMap<String, u64>,
) -> Report {
    samples.sort_unstable_by_key(|s| s.t_us);
    let end_us = samples.last().map(|s| s.t_us).unwrap_or(log.swap_end_us);

    // A version may be named from just before its commit became visible on.
    let mut committed_at: BTreeMap<u64, u64> = BTreeMap::new();
    for e in &log.events {
        if matches!(e.kind, OpKind::Commit | OpKind::CompletedWrite) {
            committed_at.insert(e.version, e.pre_us);
        }
    }
    let mut failures = Failures { messages, ..Failures::default() };
    let mut served: BTreeSet<u64> = BTreeSet::new();
    for s in &samples {
        match s.outcome {
            Outcome::Ok => {
                let v = s.version as u64;
                let ok = log.initial.contains(&v) || committed_at.get(&v).is_some_and(|&pre| s.t_us >= pre);
                if ok {
                    served.insert(v);
                } else {
                    failures.uncommitted_version += 1;
                    failures.total += 1;
                    let msg = format!("response named version {v}, not committed when it arrived");
                    if failures.messages.len() < 40 {
                        *failures.messages.entry(msg).or_default() += 1;
                    }
                }
            }
            Outcome::Non200 => {
                *failures.non_200.entry(s.status.to_string()).or_default() += 1;
                failures.total += 1;
            }
            Outcome::ConnectError => {
                failures.connect_error += 1;
                failures.total += 1;
            }
            Outcome::ConnectionError => {
                failures.connection_error += 1;
                failures.total += 1;
            }
            Outcome::Timeout => {
                failures.timeout += 1;
                failures.total += 1;
            }
            Outcome::BadVersion => {
                failures.bad_version += 1;
                failures.total += 1;
            }
        }
    }

    // Time-ordered successful responses for the "first response after" scans.
    // (receive time, version, start time).
    let ok: Vec<(u64, u64, u64)> =
        samples.iter().filter(|s| s.outcome == Outcome::Ok).map(|s| (s.t_us, s.version as u64, s.start_us())).collect();
    // Time from `t` to the first response received after it that satisfies
    // `pred(version, start)`.
    let first_after = |t: u64, pred: &dyn Fn(u64, u64) -> bool| -> Option<u64> {
        let from = ok.partition_point(|(at, _, _)| *at < t);
        ok[from..].iter().find(|(_, v, start)| pred(*v, *start)).map(|(at, _, _)| at - t)
    };
    let mut to_serve = Vec::new();
    let mut completed_to_serve = Vec::new();
    let mut rollback_to_serve = Vec::new();
    let mut unserved = 0;
    let mut stale = 0;
    for e in &log.events {
        match e.kind {
            OpKind::Commit | OpKind::CompletedWrite => {
                let v = e.version;
                match first_after(e.at_us, &|named, _| named >= v) {
                    Some(d) if e.kind == OpKind::Commit => to_serve.push(d),
                    Some(d) => completed_to_serve.push(d),
                    None => unserved += 1,
                }
            }
            OpKind::Rollback => {
                let gone = e.version;
                // Only requests sent after the delete count: one still in
                // flight from before may name an older version any time.
                let at = e.at_us;
                if let Some(d) = first_after(at, &|named, start| named != gone && start >= at) {
                    rollback_to_serve.push(d);
                    let switched = e.at_us + d;
                    // Requests started after the switch should not name the old version.
                    stale += samples
                        .iter()
                        .skip(samples.partition_point(|s| s.t_us < switched))
                        .take_while(|s| s.t_us < switched + 1_000_000)
                        .filter(|s| s.outcome == Outcome::Ok && s.version as u64 == gone && s.start_us() > switched)
                        .count() as u64;
                } else {
                    unserved += 1;
                }
            }
            _ => {}
        }
    }
    let count = |k: OpKind| log.events.iter().filter(|e| e.kind == k).count();
    let committed_versions: BTreeSet<u64> = committed_at.keys().copied().collect();
    let versions_served = committed_versions.intersection(&served).count();
    let metrics_end = log.metrics_end.clone();
    let bad: Vec<&OpEvent> =
        log.events.iter().filter(|e| matches!(e.kind, OpKind::HalfWritten | OpKind::Corrupt)).collect();
    let swaps = Swaps {
        commits: count(OpKind::Commit) + count(OpKind::CompletedWrite),
        renames: count(OpKind::Commit),
        half_written: count(OpKind::CompletedWrite),
        corrupt: count(OpKind::Corrupt),
        rollbacks: count(OpKind::Rollback),
        versions_served,
        versions_never_served: committed_versions.len() - versions_served,
        server_swaps_total: metrics_end.as_ref().and_then(|m| m.swaps_total),
        commit_to_serve: spread_us(to_serve),
        completed_write_to_serve: spread_us(completed_to_serve),
        rollback_to_serve: spread_us(rollback_to_serve),
        unserved_commits: unserved,
        stale_after_rollback: stale,
        drained: log.drained,
        bad_files_refused: bad.iter().filter(|e| e.rejected_after_ms.is_some()).count(),
        bad_files_unconfirmed: bad.iter().filter(|e| e.rejected_after_ms.is_none()).count(),
        bad_file_to_refusal: spread_us(
            bad.iter().filter_map(|e| e.rejected_after_ms).map(|ms| (ms * 1000.0) as u64).collect(),
        ),
    };

    // Steady: started after the warm-up and answered before the first swap.
    // Swapping: everything in flight at any time during the swaps, so a
    // request caught by the first swap counts there, not in steady.
    let (ss, sw, se) = (log.steady_start_us, log.swap_start_us, log.swap_end_us);
    let steady_s: Vec<Sample> = samples.iter().filter(|s| s.start_us() >= ss && s.t_us < sw).copied().collect();
    let in_swap: Vec<Sample> = samples.iter().filter(|s| s.t_us >= sw && s.start_us() < se).copied().collect();
    let steady = window(&steady_s, ss, sw);
    let swapping = window(&in_swap, sw, se);

    // Per second: load, p99 and who used the CPU; then both windows again,
    // restricted to quiet seconds (nothing else running on the machine).
    let ticks = clock_ticks_per_sec();
    let mut seconds = Vec::new();
    let mut by_second: Vec<Vec<u64>> = vec![Vec::new(); cpu_points.len()];
    for s in samples.iter().filter(|s| s.outcome == Outcome::Ok) {
        let i = cpu_points.partition_point(|p| p.0 <= s.start_us());
        if i > 0 && i < cpu_points.len() {
            by_second[i - 1].push(s.latency_us as u64);
        }
    }
    let mut quiet: Vec<(u64, u64)> = Vec::new();
    for (i, pair) in cpu_points.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let secs = (b.0 - a.0) as f64 / 1e6;
        let rate = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?) as f64 / ticks / secs);
        let server = rate(a.1, b.1);
        let harness = rate(a.2, b.2);
        let other = rate(a.3, b.3).map(|m| (m - server.unwrap_or(0.0) - harness.unwrap_or(0.0)).max(0.0));
        let lat = &mut by_second[i];
        lat.sort_unstable();
        seconds.push(Second {
            t_s: a.0 as f64 / 1e6,
            requests: lat.len() as u64,
            p99_ms: percentile(lat, 0.99) as f64 / 1000.0,
            server_cores: server,
            harness_cores: harness,
            other_cores: other,
        });
        if other.is_some_and(|o| o <= QUIET_OTHER_CORES) {
            quiet.push((a.0, b.0));
        }
    }
    let in_quiet = |s: &Sample| {
        let t = s.start_us();
        let i = quiet.partition_point(|q| q.0 <= t);
        i > 0 && t < quiet[i - 1].1
    };
    let quiet_secs = |from: u64, to: u64| -> f64 {
        quiet.iter().map(|q| (q.1.min(to).saturating_sub(q.0.max(from))) as f64 / 1e6).sum()
    };
    let quiet_window = |subset: &[Sample], from: u64, to: u64| {
        let quiet_samples: Vec<Sample> = subset.iter().filter(|s| in_quiet(s)).copied().collect();
        let mut w = window(&quiet_samples, from, to);
        let secs = quiet_secs(from, to);
        w.req_per_s = if secs > 0.0 { w.requests as f64 / secs } else { 0.0 };
        QuietWindow { quiet_seconds: secs, window: w }
    };
    let steady_quiet = quiet_window(&steady_s, ss, sw);
    let swapping_quiet = quiet_window(&in_swap, sw, se);
    // Split the swapping window by distance from the latest commit.
    let commit_times: Vec<u64> = log
        .events
        .iter()
        .filter(|e| matches!(e.kind, OpKind::Commit | OpKind::CompletedWrite | OpKind::Rollback))
        .map(|e| e.at_us)
        .collect();
    let near = |s: &Sample| {
        let t = s.start_us();
        let i = commit_times.partition_point(|c| *c <= t);
        i > 0 && t - commit_times[i - 1] <= 50_000
    };
    let (near_s, away_s): (Vec<Sample>, Vec<Sample>) = in_swap.iter().partition(|s| near(s));
    let mut swapping_near_commit = window(&near_s, log.swap_start_us, log.swap_end_us);
    let mut swapping_away_from_commit = window(&away_s, log.swap_start_us, log.swap_end_us);
    swapping_near_commit.req_per_s = 0.0;
    swapping_away_from_commit.req_per_s = 0.0;
    // Latency by how long after the latest commit a request started, in
    // 10 ms steps: shows when, relative to a commit, any extra latency occurs.
    let mut offsets: Vec<Vec<u64>> = vec![Vec::new(); OFFSET_BUCKETS];
    for s in in_swap.iter().filter(|s| s.outcome == Outcome::Ok) {
        let t = s.start_us();
        let i = commit_times.partition_point(|c| *c <= t);
        if i > 0 {
            let b = ((t - commit_times[i - 1]) / 10_000) as usize;
            offsets[b.min(OFFSET_BUCKETS - 1)].push(s.latency_us as u64);
        }
    }
    let after_commit: Vec<OffsetBucket> = offsets
        .iter_mut()
        .enumerate()
        .map(|(i, lat)| {
            lat.sort_unstable();
            OffsetBucket {
                from_ms: i as u64 * 10,
                to_ms: if i + 1 == OFFSET_BUCKETS { None } else { Some((i as u64 + 1) * 10) },
                requests: lat.len() as u64,
                p50_ms: percentile(lat, 0.5) as f64 / 1000.0,
                p99_ms: percentile(lat, 0.99) as f64 / 1000.0,
                p999_ms: percentile(lat, 0.999) as f64 / 1000.0,
            }
        })
        .collect();

    let cores = |a: usize, b: usize, which: usize| -> Option<f64> {
        let (ta, sa, ha, ma) = log.cpu.get(a)?;
        let (tb, sb, hb, mb) = log.cpu.get(b)?;
        let secs = (tb - ta) as f64 / 1e6;
        let (x, y) = match which {
            0 => ((*sa)?, (*sb)?),
            1 => ((*ha)?, (*hb)?),
            _ => ((*ma)?, (*mb)?),
        };
        (secs > 0.0).then(|| (y.saturating_sub(x)) as f64 / ticks / secs)
    };
    let others = |a: usize, b: usize| -> Option<f64> {
        let machine = cores(a, b, 2)?;
        Some((machine - cores(a, b, 0).unwrap_or(0.0) - cores(a, b, 1).unwrap_or(0.0)).max(0.0))
    };
    let cpu = Cpu {
        server_cores_steady: cores(0, 1, 0),
        server_cores_swapping: cores(1, 2, 0),
        harness_cores_steady: cores(0, 1, 1),
        harness_cores_swapping: cores(1, 2, 1),
        machine_cores_steady: cores(0, 1, 2),
        machine_cores_swapping: cores(1, 2, 2),
        other_cores_steady: others(0, 1),
        other_cores_swapping: others(1, 2),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    };

    let after_10 = log.memory.iter().find(|m| m.commits >= 10).cloned();
    let at_end = log.memory.last().cloned().filter(|m| m.commits >= 10);
    let growth = |f: fn(&MemorySample) -> u64| match (&after_10, &at_end) {
        (Some(a), Some(b)) if f(a) > 0 => Some(100.0 * (f(b) as f64 - f(a) as f64) / f(a) as f64),
        _ => None,
    };
    let memory = Memory {
        rss_growth_pct: growth(|m| m.rss_bytes),
        pss_growth_pct: growth(|m| m.pss_bytes),
        after_10_swaps: after_10,
        at_end,
        series: log.memory.clone(),
    };

    let total_s = (end_us.saturating_sub(log.steady_start_us.min(end_us))) as f64 / 1e6;
    let measured: u64 = samples.iter().filter(|s| s.start_us() >= log.steady_start_us).count() as u64;
    let mut report = Report {
        target: cfg.target.url(),
        deployment: match &cfg.deployment {
            Deployment::Riskserve { models_dir, model_name, .. } => {
                format!("riskserve model repository {}/{model_name}", models_dir.display())
            }
            Deployment::FlaskPickle { model_path, master_pid } => {
                format!("flask/gunicorn, pickle {} + SIGHUP to master {master_pid}", model_path.display())
            }
        },
        clients: cfg.clients,
        rate_per_s: cfg.rate,
        commit_every_ms: cfg.commit_every.as_millis() as u64,
        bad_every: cfg.bad_every,
        requests: samples.len() as u64,
        ok: samples.iter().filter(|s| s.outcome == Outcome::Ok).count() as u64,
        failures,
        reconnects_after_server_close: server_closed,
        duration_s: end_us as f64 / 1e6,
        req_per_s: if total_s > 0.0 { measured as f64 / total_s } else { 0.0 },
        steady,
        swapping,
        swapping_near_commit,
        swapping_away_from_commit,
        steady_quiet,
        after_commit,
        swapping_quiet,
        seconds,
        swaps,
        memory,
        cpu,
        server_metrics_after_10: log.metrics_after_10.filter(|m| m.lines > 0),
        server_metrics_end: metrics_end,
        operator_skipped_steps: log.skipped_steps,
        operator_errors: log.errors,
        events: log.events,
        goals: Vec::new(),
    };
    report.goals = goals(cfg, &report);
    report
}

fn goals(cfg: &BenchConfig, r: &Report) -> Vec<Goal> {
    let swaps = r.swaps.server_swaps_total.map(|s| s as usize).unwrap_or(r.swaps.versions_served);
    // No successful response in a window means no latency to compare: not met.
    let ratio = if r.steady.p99_ms > 0.0 && r.swapping.ok > 0 { r.swapping.p99_ms / r.steady.p99_ms } else { f64::NAN };
    let (qs, qw) = (&r.steady_quiet.window, &r.swapping_quiet.window);
    let quiet_ratio = if qs.p99_ms > 0.0 && qw.ok > 0 { qw.p99_ms / qs.p99_ms } else { f64::NAN };
    let mut g = vec![
        Goal {
            goal: format!("≥ {} swaps under load", cfg.min_swaps),
            measured: format!("{} commits, {swaps} swaps", r.swaps.commits),
            met: r.swaps.commits >= cfg.min_swaps && swaps >= cfg.min_swaps,
        },
        Goal {
            goal: "0 failed requests of any kind".into(),
            measured: format!("{} failed of {}", r.failures.total, r.requests),
            met: r.failures.total == 0,
        },
        Goal {
            goal: "swapping p99 ≤ 1.2 × steady p99".into(),
            measured: format!("{:.3} ms vs {:.3} ms = {ratio:.2}×", r.swapping.p99_ms, r.steady.p99_ms),
            met: ratio <= 1.2,
        },
        Goal {
            goal: "  the same, quiet seconds only".into(),
            measured: format!(
                "{:.3} ms vs {:.3} ms = {quiet_ratio:.2}× ({:.0} of {:.0} s and {:.0} of {:.0} s quiet)",
                r.swapping_quiet.window.p99_ms,
                r.steady_quiet.window.p99_ms,
                r.swapping_quiet.quiet_seconds,
                r.swapping.to_s - r.swapping.from_s,
                r.steady_quiet.quiet_seconds,
                r.steady.to_s - r.steady.from_s,
            ),
            met: quiet_ratio <= 1.2,
        },
        Goal {
            goal: "commit-to-serve p99 ≤ 100 ms".into(),
            measured: format!(
                "p50 {:.1} p99 {:.1} max {:.1} ms (n={})",
                r.swaps.commit_to_serve.p50_ms,
                r.swaps.commit_to_serve.p99_ms,
                r.swaps.commit_to_serve.max_ms,
                r.swaps.commit_to_serve.n
            ),
            met: r.swaps.commit_to_serve.n > 0
                && r.swaps.commit_to_serve.p99_ms <= 100.0
                && r.swaps.unserved_commits == 0,
        },
    ];
    if let (Some(a), Some(b)) = (&r.memory.after_10_swaps, &r.memory.at_end) {
        g.push(Goal {
            goal: "RSS at end within 10 % of RSS after 10 swaps".into(),
            measured: format!(
                "{:.1} MiB → {:.1} MiB ({:+.1}%) after {} commits",
                a.rss_bytes as f64 / 1048576.0,
                b.rss_bytes as f64 / 1048576.0,
                r.memory.rss_growth_pct.unwrap_or(f64::NAN),
                b.commits
            ),
            met: r.memory.rss_growth_pct.is_some_and(|p| p.abs() <= 10.0),
        });
    }
    g
}

// ------------------------------------------------------------------- run --

/// Runs the benchmark (clients on the current tokio runtime, the operator on
/// its own thread) and analyses it.
pub async fn run(cfg: BenchConfig) -> Result<Report, String> {
    if cfg.bodies.is_empty() || cfg.clients == 0 {
        return Err("need at least one request body and one client".into());
    }
    let (mut repo, initial): (Box<dyn Repo + Send>, BTreeSet<u64>) = match &cfg.deployment {
        Deployment::Riskserve { models_dir, model_name, source } => {
            let dir = models_dir.join(model_name);
            let mut versions = BTreeSet::new();
            for e in std::fs::read_dir(&dir).map_err(|e| io("listing", &dir, e))?.flatten() {
                if let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                    if e.path().join("model.json").is_file() {
                        versions.insert(v);
                    }
                }
            }
            let newest =
                versions.iter().next_back().copied().ok_or_else(|| format!("no version under {}", dir.display()))?;
            let source = source.clone().unwrap_or_else(|| dir.join(newest.to_string()).join("model.json"));
            let bytes = std::fs::read(&source).map_err(|e| io("reading", &source, e))?;
            (Box::new(DirRepo { dir, bytes, open: None }), versions)
        }
        Deployment::FlaskPickle { model_path, master_pid } => {
            let (repo, version) = PickleRepo::open(model_path, *master_pid)?;
            (Box::new(repo), BTreeSet::from([version]))
        }
    };
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        max_seen: AtomicU64::new(0),
    });
    let check_body = matches!(cfg.deployment, Deployment::Riskserve { .. });
    let clients: Vec<_> =
        (0..cfg.clients).map(|id| tokio::spawn(client(id, cfg.clone(), shared.clone(), check_body))).collect();

    let op_cfg = cfg.clone();
    let op_shared = shared.clone();
    let operator_thread = std::thread::Builder::new()
        .name("swapbench-operator".into())
        .spawn(move || {
            let log = operator(&op_cfg, &op_shared, repo.as_mut(), initial);
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
            let me = std::process::id();
            let mut points = Vec::new();
            let mut next = Instant::now();
            while !sampler_shared.stop.load(Ordering::Relaxed) && points.len() < 100_000 {
                points.push((
                    sampler_shared.now_us(),
                    sampler_pid.and_then(tree_cpu_ticks),
                    proc_stat(me).map(|(_, own, _)| own),
                    machine_busy_ticks(),
                ));
                next += Duration::from_secs(1);
                sleep_until(&sampler_shared, next);
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
    Ok(analyse(&cfg, samples, log, cpu_points, server_closed, messages))
}

/// [`run`] on a fresh multi-threaded runtime with `threads` workers.
pub fn run_blocking(cfg: BenchConfig, threads: usize) -> Result<Report, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("building the runtime: {e}"))?
        .block_on(run(cfg))
}

// -------------------------------------------------------- server process --

/// A `riskserve serve` child process on 127.0.0.1:0. Dropping it kills the
/// process, so a failing test never leaves a server behind.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
    log: Arc<std::sync::Mutex<Vec<String>>>,
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
        let cwd = models_dir.parent().unwrap_or(models_dir);
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--models-dir")
            .arg(models_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut file = match log_file {
            Some(p) => Some(std::fs::File::create(p).map_err(|e| io("creating", p, e))?),
            None => None,
        };
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("riskserve listening") {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send(addr);
                    }
                }
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(mut l) = lines.lock() {
                    if l.len() < 20_000 {
                        l.push(line);
                    }
                }
            }
        });
        let mut server = ServerProcess { child: Some(child), addr: SocketAddr::from(([127, 0, 0, 1], 0)), pid, log };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) if addr.ip().is_loopback() => {
                server.addr = addr;
                Ok(server)
            }
            Ok(addr) => Err(format!("server listens on non-loopback {addr}")),
            Err(_) => Err(format!("server did not report its address within 60 s; log:\n{}", server.log_tail(30))),
        }
    }

    /// The predict URL of `model`.
    pub fn predict_target(&self, model: &str) -> Target {
        Target { addr: self.addr, host: self.addr.to_string(), path: format!("/v1/models/{model}/predict") }
    }

    /// The last `n` lines the server logged.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Lines the server logged that contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log.lock().map(|l| l.iter().filter(|x| x.contains(needle)).count()).unwrap_or(0)
    }

    /// SIGTERM, then wait (bounded) for a graceful exit; SIGKILL after
    /// `timeout`. Returns whether it exited successfully by itself.
    pub fn stop(mut self, timeout: Duration) -> Result<bool, String> {
        let Some(mut child) = self.child.take() else { return Ok(false) };
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(false)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
