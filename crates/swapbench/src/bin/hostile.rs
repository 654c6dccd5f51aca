//! `hostile`: abuse cases against a running riskserve under steady good
//! traffic. Prints one table row per case and writes the full report as
//! JSON; exits 0 when every goal is met, 1 when one is missed (listed), 2 on
//! a harness error. The logic is `swapbench::hostile`; this file only
//! parses flags. See `bench/README.md` and `bench/hostile.sh`.
//!
//! ```text
//! hostile --url http://127.0.0.1:8080 --server-pid 1234 --models-dir /tmp/m --case-secs 2
//! ```

#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use swapbench::hostile::{Case, HostileConfig, Sizes};
use swapbench::Target;

#[derive(Debug, Parser)]
#[command(name = "hostile", about = "Abuse cases under steady good traffic: failures, p99, RSS, commit→serve")]
struct Args {
    /// Base URL of the running server (loopback only), e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// PID of the server, for RSS.
    #[arg(long)]
    server_pid: u32,
    /// The server's models directory (commits and planted files go here).
    #[arg(long)]
    models_dir: PathBuf,
    #[arg(long, default_value = "credit-risk")]
    model_name: String,
    /// Comma-separated cases to run (default: all, in order).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    #[arg(long, default_value_t = 16)]
    good_clients: usize,
    /// Tokio worker threads for the harness.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Good traffic alone just before each case.
    #[arg(long, default_value_t = 3.0)]
    baseline_secs: f64,
    /// How long each case runs (a quick check: 2).
    #[arg(long, default_value_t = 10.0)]
    case_secs: f64,
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Longest wait for a commit to be served.
    #[arg(long, default_value_t = 10.0)]
    serve_timeout_secs: f64,
    /// Longest wait for RSS to come back within 10 % after a case.
    #[arg(long, default_value_t = 5.0)]
    rss_settle_secs: f64,
    /// hostile-files: allowed difference in /metrics lines afterwards.
    #[arg(long, default_value_t = 25)]
    metrics_line_slack: usize,
    /// huge-batch body size (the server's --max-body-bytes).
    #[arg(long, default_value_t = 1024 * 1024)]
    huge_body_bytes: usize,
    #[arg(long, default_value_t = 512)]
    overload_conns: usize,
    #[arg(long, default_value_t = 2000)]
    flood_conns: usize,
    #[arg(long, default_value_t = 500)]
    junk_dirs: usize,
    /// Synthetic rows to draw good requests from.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The server's gRPC listener (`--grpc-listen`): the `grpc-*` cases
    /// run against it; without it they are left out of the default list.
    #[arg(long)]
    grpc_addr: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hostile: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let base = Target::parse(&args.url)?;
    let cases = if args.cases.is_empty() {
        Case::ALL.into_iter().filter(|c| args.grpc_addr.is_some() || !c.is_grpc()).collect()
    } else {
        args.cases.iter().map(|c| Case::parse(c.trim())).collect::<Result<_, _>>()?
    };
    let cfg = HostileConfig {
        target: base.with_path(&format!("/v1/models/{}/predict", args.model_name)),
        server_pid: args.server_pid,
        models_dir: args.models_dir,
        model: args.model_name,
        cases,
        bodies: Arc::new(swapbench::synth_bodies(args.rows, args.seed)),
        good_clients: args.good_clients.max(1),
        warmup: Duration::from_secs_f64(args.warmup_secs),
        baseline: Duration::from_secs_f64(args.baseline_secs),
        case_time: Duration::from_secs_f64(args.case_secs),
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        serve_timeout: Duration::from_secs_f64(args.serve_timeout_secs),
        rss_settle: Duration::from_secs_f64(args.rss_settle_secs),
        metrics_line_slack: args.metrics_line_slack,
        sizes: Sizes {
            huge_body_bytes: args.huge_body_bytes,
            overload_conns: args.overload_conns,
            flood_conns: args.flood_conns,
            junk_dirs: args.junk_dirs,
            ..Sizes::default()
        },
        grpc: args.grpc_addr,
    };
    let report = swapbench::runtime(args.client_threads)?.block_on(swapbench::hostile::run(cfg))?;
    print!("{}", report.table());
    if let Some(out) = &args.out {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("writing {}: {e}", out.display()))?;
        eprintln!("hostile: report written to {}", out.display());
    }
    Ok(if report.all_met() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
