//! `swapbench`: hot-swap models under load and measure what clients see.
//!
//! Drives C keep-alive HTTP/1.1 clients against a server on 127.0.0.1 while
//! an operator commits a new model version every T ms (plus, at a lower
//! rate, a half-written file, a corrupt file and a rollback), then prints a
//! summary and writes the full report as JSON. The logic lives in the
//! `swapbench` library (shared with the `swap_harness` integration test);
//! this file only parses flags. See `bench/README.md`.
//!
//! ```text
//! cargo run --release -p swapbench -- --server-bin target/release/riskserve --models-dir /tmp/m
//! cargo run --release -p swapbench -- --url http://127.0.0.1:8080/v1/models/credit-risk/predict \
//!     --server-pid 1234 --models-dir models
//! cargo run --release -p swapbench -- --peer flask --url http://127.0.0.1:18081/predict \
//!     --peer-model /tmp/peers/bench/model.pkl --peer-pid 5678
//! ```

#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use swapbench::{BenchConfig, Deployment, ServerProcess, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// riskserve: versions are directories under --models-dir.
    Riskserve,
    /// The Flask/gunicorn peer: versions are pickles, reloaded with SIGHUP.
    Flask,
}

#[derive(Debug, Parser)]
#[command(
    name = "swapbench",
    about = "Hot-swap models under load and measure failures, latency, commit-to-serve and RSS"
)]
struct Args {
    /// Predict URL of a running server (loopback only).
    #[arg(long, conflicts_with = "server_bin")]
    url: Option<String>,
    /// Start this riskserve binary on 127.0.0.1:0 instead (killed at the end).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// PID of the running server (or gunicorn master), for RSS and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Extra `serve` flags when using --server-bin (repeatable), e.g. --server-arg=--reload-debounce-ms=20
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Write the spawned server's log here.
    #[arg(long)]
    server_log: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "riskserve")]
    peer: Peer,
    /// riskserve models directory the operator commits into.
    #[arg(long)]
    models_dir: Option<PathBuf>,
    #[arg(long, default_value = "credit-risk")]
    model_name: String,
    /// model.json committed as each new version (default: the newest on disk).
    #[arg(long)]
    source_model: Option<PathBuf>,
    /// A model file committed as every even version instead: a model.json
    /// with other inputs (versions alternate between two schemas), or an
    /// imported file named by its format (xgboost.json, lightgbm.txt:
    /// versions alternate between formats).
    #[arg(long)]
    alternate_model: Option<PathBuf>,
    /// Flask: the pickle gunicorn's workers load (must carry the RSBENCHVER marker).
    #[arg(long)]
    peer_model: Option<PathBuf>,
    /// Flask: gunicorn master PID (receives SIGHUP per commit).
    #[arg(long)]
    peer_pid: Option<u32>,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Tokio worker threads for the clients.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Excluded from the latency windows.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Steady window (load, no swaps) after the warm-up.
    #[arg(long, default_value_t = 30.0)]
    steady_secs: f64,
    /// Total run time including warm-up and steady window; swapping goes on
    /// past it until --min-swaps commits were made (never past --max-secs).
    #[arg(long, default_value_t = 141.0)]
    duration_secs: f64,
    /// Hard limit on the run time.
    #[arg(long, default_value_t = 400.0)]
    max_secs: f64,
    #[arg(long, default_value_t = 1000)]
    min_swaps: usize,
    /// Stop after this many requests in total.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Open loop: total requests per second, paced per client, latency from
    /// the scheduled send time (default: closed loop, i.e. saturation).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 100)]
    commit_every_ms: u64,
    /// Every N-th operator step is a bad one (half-written, corrupt, delete
    /// newest, in turn); 0 = none.
    #[arg(long, default_value_t = 25)]
    bad_every: usize,
    #[arg(long, default_value_t = 3)]
    keep_versions: usize,
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Synthetic rows to draw requests from (`riskserve synth`).
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Draw requests from this CSV instead (a training CSV: `is_late` and
    /// the fields).
    #[arg(long)]
    rows_csv: Option<PathBuf>,
    /// Also draw requests from this CSV (mixed in, one in two): clients
    /// sending another schema's fields.
    #[arg(long)]
    more_rows_csv: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Drive riskserve's gRPC listener (ModelInfer, the same applications)
    /// instead of HTTP: with --server-bin the server is started with
    /// --grpc-listen 127.0.0.1:0; with --url give --grpc-addr.
    #[arg(long)]
    grpc: bool,
    /// The gRPC listener of the running server at --url (implies --grpc).
    #[arg(long)]
    grpc_addr: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swapbench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let mut bodies = match &args.rows_csv {
        Some(path) => swapbench::csv_bodies(path)?,
        None => swapbench::synth_bodies(args.rows, args.seed),
    };
    if let Some(path) = &args.more_rows_csv {
        let more = swapbench::csv_bodies(path)?;
        bodies = bodies.into_iter().zip(more).flat_map(|(a, b)| [a, b]).collect();
    }
    let mut server = None;
    let (target, server_pid) = match (&args.url, &args.server_bin) {
        (Some(url), None) => (Target::parse(url)?, args.server_pid.or(args.peer_pid)),
        (None, Some(bin)) => {
            if args.peer != Peer::Riskserve {
                return Err("--server-bin starts riskserve; use --url for the Flask peer".into());
            }
            let dir = args.models_dir.as_ref().ok_or("--server-bin needs --models-dir")?;
            let mut server_args = args.server_args.clone();
            if args.grpc {
                server_args.push("--grpc-listen=127.0.0.1:0".into());
            }
            let s = ServerProcess::spawn(bin, dir, &server_args, args.server_log.as_deref())?;
            let t = s.predict_target(&args.model_name);
            let pid = s.pid;
            server = Some(s);
            (t, Some(pid))
        }
        _ => return Err("give --url or --server-bin".into()),
    };
    let deployment = match args.peer {
        Peer::Riskserve => Deployment::Riskserve {
            models_dir: args.models_dir.clone().ok_or("--models-dir is required")?,
            model_name: args.model_name.clone(),
            source: args.source_model.clone(),
            alternate: args.alternate_model.clone(),
        },
        Peer::Flask => Deployment::FlaskPickle {
            model_path: args.peer_model.clone().ok_or("--peer flask needs --peer-model")?,
            master_pid: args.peer_pid.ok_or("--peer flask needs --peer-pid")?,
        },
    };
    let mut cfg = BenchConfig::new(target.clone(), deployment, bodies);
    cfg.server_pid = server_pid;
    cfg.metrics = (args.peer == Peer::Riskserve).then(|| target.with_path("/metrics"));
    cfg.clients = args.clients;
    cfg.warmup = Duration::from_secs_f64(args.warmup_secs);
    cfg.steady = Duration::from_secs_f64(args.steady_secs);
    cfg.duration = Duration::from_secs_f64(args.duration_secs);
    cfg.max_duration = Duration::from_secs_f64(args.max_secs.max(args.duration_secs));
    cfg.min_swaps = args.min_swaps;
    cfg.max_requests = args.max_requests;
    cfg.rate = args.rate;
    cfg.commit_every = Duration::from_millis(args.commit_every_ms.max(1));
    cfg.bad_every = args.bad_every;
    cfg.keep_versions = args.keep_versions;
    cfg.request_timeout = Duration::from_millis(args.request_timeout_ms);
    cfg.progress = (!args.quiet).then_some(Duration::from_secs(10));
    cfg.grpc = match (&server, args.grpc_addr) {
        (_, Some(addr)) => Some(addr),
        (Some(s), None) if args.grpc => Some(s.grpc_addr().ok_or("the server logged no gRPC address")?),
        (None, None) if args.grpc => return Err("--grpc with --url needs --grpc-addr".into()),
        _ => None,
    };

    eprintln!(
        "swapbench: {} clients → {} ; warm-up {}s, steady {}s, run {}s (≥ {} commits, one per {} ms, bad step every {})",
        cfg.clients,
        target.url(),
        args.warmup_secs,
        args.steady_secs,
        args.duration_secs,
        cfg.min_swaps,
        args.commit_every_ms,
        cfg.bad_every
    );
    let report = swapbench::run_blocking(cfg, args.client_threads)?;
    print!("{}", report.summary());
    if let Some(out) = &args.out {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("writing {}: {e}", out.display()))?;
        eprintln!("swapbench: report written to {}", out.display());
    }
    if let Some(s) = server {
        match s.stop(Duration::from_secs(30)) {
            Ok(true) => {}
            Ok(false) => eprintln!("swapbench: the server did not exit cleanly on SIGTERM"),
            Err(e) => eprintln!("swapbench: stopping the server: {e}"),
        }
    }
    Ok(if report.goals.iter().all(|g| g.met) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
