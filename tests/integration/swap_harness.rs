//! The swap benchmark, short and bounded, so CI guards its promise: the
//! release-style server binary (`riskserve serve` as a child process on
//! 127.0.0.1:0) keeps answering 8 keep-alive clients with zero failures of
//! any kind while the operator commits ~30 versions, half-writes one, renames
//! in a corrupt one and deletes the newest — and every response names a
//! version that had been committed when it arrived.
//!
//! The same run drives the gRPC listener's ModelInfer instead.
//!
//! This runs the `swapbench` library (the benchmark's one implementation);
//! the full benchmark with its latency, commit-to-serve and RSS goals is
//! `bench/swap_under_load.sh`.

use crate::common::{bundled_model, commit, MODEL};
use std::path::Path;
use std::time::{Duration, Instant};
use swapbench::{BenchConfig, Deployment, OpKind, ServerProcess};

#[test]
fn swaps_under_load_with_bad_files_and_a_rollback_fail_no_request() {
    swaps_under_load(false);
}

/// The same, the clients calling ModelInfer on the gRPC listener.
#[test]
fn swaps_under_grpc_load_fail_no_call() {
    swaps_under_load(true);
}

/// The short, bounded run CI affords: 8 clients, a commit every 80 ms for
/// about 3 s (at most 20), 10 s to drain.
pub fn bounded(cfg: &mut BenchConfig) {
    cfg.clients = 8;
    cfg.warmup = Duration::from_millis(200);
    cfg.duration = Duration::from_secs(3);
    cfg.max_duration = Duration::from_secs(20);
    cfg.commit_every = Duration::from_millis(80);
    cfg.drain_timeout = Duration::from_secs(10);
}

fn swaps_under_load(grpc: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    commit(&models, MODEL, 1, bundled_model());

    // Dropping `server` (also on a panic below) kills the child process.
    let args = if grpc { vec!["--grpc-listen=127.0.0.1:0".to_string()] } else { vec![] };
    let server = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_riskserve")), &models, &args, None)
        .expect("riskserve serve starts on 127.0.0.1:0");
    let mut cfg = BenchConfig::new(
        server.predict_target(MODEL),
        Deployment::Riskserve { models_dir: models.clone(), model_name: MODEL.into(), source: None, alternate: None },
        swapbench::synth_bodies(500, 11),
    );
    cfg.server_pid = Some(server.pid);
    cfg.metrics = Some(server.predict_target(MODEL).with_path("/metrics"));
    bounded(&mut cfg);
    cfg.steady = Duration::from_millis(500);
    // At least 26 steps, so the rollback at step 24 always happens, however
    // slowly a loaded machine runs the debug build (bounded by max_duration).
    cfg.min_swaps = 26;
    // Steps 8, 16, 24: half-written (completed at the next step), corrupt, rollback.
    cfg.bad_every = 8;
    cfg.grpc = grpc.then(|| server.grpc_addr().expect("the gRPC listener's address is logged"));

    let started = Instant::now();
    let report = swapbench::run_blocking(cfg, 2).expect("the benchmark runs");
    eprintln!("{}", report.summary());
    let context = format!("{}\nserver log tail:\n{}", report.summary(), server.log_tail(20));
    assert!(started.elapsed() < Duration::from_secs(60), "bounded run took {:?}", started.elapsed());

    assert_eq!(report.failures.total, 0, "failures of any kind:\n{context}");
    assert_eq!(report.failures.uncommitted_version, 0, "a response named an uncommitted version:\n{context}");
    assert!(report.operator_errors.is_empty(), "operator errors:\n{context}");
    assert!(report.ok > 1000, "too little load to mean anything:\n{context}");
    assert!(report.swaps.commits >= 20, "commits:\n{context}");
    assert!(report.swaps.half_written >= 1, "a half-written file was completed:\n{context}");
    assert!(report.swaps.corrupt >= 1, "a corrupt file was dropped in:\n{context}");
    assert!(report.swaps.rollbacks >= 1, "the newest version was deleted:\n{context}");
    assert!(report.swaps.drained, "the last commit was never served:\n{context}");
    assert_eq!(report.swaps.unserved_commits, 0, "a commit or rollback never reached traffic:\n{context}");
    assert_eq!(report.swaps.stale_after_rollback, 0, "the deleted version kept serving:\n{context}");

    // The server looked at the half-written and the corrupt file, refused
    // both (its load-failure counters went up) and kept serving.
    assert!(report.swaps.bad_files_refused >= 2, "bad files not seen refused:\n{context}");
    assert_eq!(report.swaps.bad_files_unconfirmed, 0, "a bad file was not seen refused:\n{context}");
    let metrics = report.server_metrics_end.as_ref().expect("metrics scraped");
    for result in ["incomplete", "invalid"] {
        assert!(metrics.loads.get(result).copied().unwrap_or(0) >= 1, "no {result} load counted:\n{context}");
    }
    assert!(report.events.iter().any(|e| e.kind == OpKind::Corrupt));

    assert!(server.stop(Duration::from_secs(20)).expect("stop"), "riskserve exits 0 on SIGTERM");
}
