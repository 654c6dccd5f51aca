//! The Open Inference Protocol and the OpenAPI document, checked by clients
//! nobody here wrote (installed by `.ci/setup`): Triton's `tritonclient`
//! (through `tests/clients/oip_client.py`) against riskserve, and the same
//! script against MLServer serving the scikit-learn reference pipeline, side
//! by side; and schemathesis against `/openapi.json`.

use crate::common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::tools::{python, python_in, tool, workspace_root};

/// Bound for one client script run.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for training the reference model and for MLServer to be ready.
const MLSERVER_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for the whole schemathesis run (about a minute on an idle machine).
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(600);

/// A batch with every field present (MLServer's DataFrame path takes no
/// nulls in BYTES tensors, and the client sends FP64 without NaN).
pub(crate) fn batch() -> Vec<Value> {
    let row: Value = serde_json::from_str(ROW).unwrap();
    let variants = [
        json!({}),
        json!({"grade": "F", "int_rate": 0.27, "dti": 35.5, "delinq_2yrs": 4, "home_ownership": "RENT"}),
        json!({"purpose": "credit_card", "grade": "A", "annual_inc": 250000.0, "emp_length": "< 1 year"}),
        json!({"purpose": "small_business", "loan_amnt": 35000, "revol_util": 0.95, "emp_length": "10+ years"}),
        json!({"purpose": "a category no model has seen", "grade": "G", "home_ownership": "OWN"}),
    ];
    variants
        .iter()
        .map(|v| {
            let mut r = row.clone();
            for (k, x) in v.as_object().unwrap() {
                r[k] = x.clone();
            }
            r
        })
        .collect()
}

/// Runs `cmd` to completion within `timeout` (killed past it), its output
/// kept in files under `dir` (so a chatty child cannot fill a pipe).
/// Returns (success, stdout, stderr).
pub(crate) fn run_bounded(mut cmd: Command, dir: &Path, what: &str, timeout: Duration) -> (bool, String, String) {
    let (out, err) = (dir.join(format!("{what}.out")), dir.join(format!("{what}.err")));
    cmd.stdin(Stdio::null()).stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    let mut child = testkit::Child(cmd.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            drop(child);
            panic!("{what} did not finish within {timeout:?}; stderr:\n{}", std::fs::read_to_string(&err).unwrap());
        }
        // std has no wait-with-timeout for a child: poll.
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), std::fs::read_to_string(&out).unwrap(), std::fs::read_to_string(&err).unwrap())
}

/// Runs the client script against `base` (host:port) off the async workers.
async fn client_report(base: String, model: &str, batch_file: PathBuf, binary: bool) -> Value {
    let script = workspace_root().join("tests/clients/oip_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(&base).arg(model).arg(&batch_file);
    if binary {
        cmd.arg("--binary");
    }
    let dir = batch_file.parent().unwrap().to_path_buf();
    let what = format!("client-{}{}", base.replace([':', '.'], "_"), if binary { "-binary" } else { "" });
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_bounded(cmd, &dir, &what, CLIENT_TIMEOUT)).await.unwrap();
    assert!(ok, "the client script failed:\n{err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the client printed no JSON report ({e}):\n{out}\n{err}"))
}

pub(crate) fn write_batch(dir: &Path) -> PathBuf {
    let path = dir.join("batch.json");
    std::fs::write(&path, serde_json::to_vec(&batch()).unwrap()).unwrap();
    path
}

/// Asserts a riskserve report: every step passed, and inference equals `/v1`.
fn check_riskserve_report(report: &Value, v1: &Value) {
    assert_eq!(report["errors"], json!({}), "{report:#}");
    assert_eq!((&report["server_live"], &report["server_ready"]), (&json!(true), &json!(true)));
    assert_eq!(report["server_metadata"]["name"], "riskserve");
    let extensions = report["server_metadata"]["extensions"].as_array().unwrap();
    assert!(extensions.contains(&json!("binary_tensor_data")), "{report:#}");
    assert_eq!(report["model_ready"], true);
    let metadata = &report["model_metadata"];
    assert_eq!((&metadata["name"], &metadata["versions"]), (&json!(MODEL), &json!(["1"])));
    assert_eq!(metadata["inputs"].as_array().unwrap().len(), 10, "{metadata:#}");
    assert_eq!(report["repository_index"], json!([{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]));
    let infer = &report["infer"];
    assert_eq!(
        (&infer["model_name"], &infer["model_version"], &infer["id"]),
        (&json!(MODEL), &json!("1"), &json!("oip-client-1"))
    );
    let predictions = v1["predictions"].as_array().unwrap();
    let probabilities = &infer["outputs"]["probability_late"];
    let decisions = &infer["outputs"]["decision"];
    assert_eq!((&probabilities["datatype"], &probabilities["shape"]), (&json!("FP64"), &json!([predictions.len()])));
    for (i, p) in predictions.iter().enumerate() {
        let (want, got) = (p["probability_late"].as_f64().unwrap(), probabilities["data"][i].as_f64().unwrap());
        assert_eq!(want.to_bits(), got.to_bits(), "row {i}: /v1 {want} vs OIP {got}");
        assert_eq!(p["decision"], decisions["data"][i], "row {i}");
    }
}

pub(crate) async fn v1_answer(s: &TestServer) -> Value {
    let r = s.post(PREDICT, &json!({"instances": batch()}).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_gets_the_v1_answers_with_json_and_binary_tensors() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let batch_file = write_batch(dir.path());
    let v1 = v1_answer(&s).await;
    for binary in [false, true] {
        let report = client_report(s.addr.to_string(), MODEL, batch_file.clone(), binary).await;
        check_riskserve_report(&report, &v1);
    }
    let metrics = s.metrics().await;
    let infer = [("route", "/v2/models/{name}/infer"), ("code", "200")];
    assert_eq!(metric(&metrics, "riskserve_requests_total", &infer), Some(2.0), "{metrics}");
}

/// A port free right now on 127.0.0.1 (MLServer takes no port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where two reports differ, one line per differing step.
fn differences(ours: &Value, theirs: &Value) -> Vec<String> {
    let steps = [
        "server_live",
        "server_ready",
        "server_metadata",
        "model_metadata",
        "model_ready",
        "repository_index",
        "infer",
    ];
    let shown = |r: &Value, step: &str| match r["errors"].get(step) {
        Some(e) => format!("ERROR {e}"),
        None => r[step].to_string(),
    };
    steps
        .iter()
        .filter_map(|step| {
            let (a, b) = (shown(ours, step), shown(theirs, step));
            (a != b).then(|| format!("{step}:\n    riskserve: {a}\n    mlserver:  {b}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_against_mlserver_shows_the_protocols_side_by_side() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let batch_file = write_batch(dir.path());
    let v1 = v1_answer(&s).await;
    let ours = client_report(s.addr.to_string(), MODEL, batch_file.clone(), false).await;
    check_riskserve_report(&ours, &v1);

    // The reference: the peers' scikit-learn pipeline, trained here from the
    // peers' own script and data (nothing of it is kept), served by MLServer.
    let peers = workspace_root().join("../shared/peers");
    let work = dir.path().to_path_buf();
    let model_file = work.join("model.pkl");
    let mut train = Command::new(python_in("mlserver"));
    train.arg(peers.join("train.py")).arg("--out").arg(&model_file).current_dir(&work);
    let w = work.clone();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_bounded(train, &w, "train", MLSERVER_TIMEOUT)).await.unwrap();
    assert!(ok, "training the reference pipeline failed:\n{out}\n{err}");

    let config = work.join("mlserver");
    std::fs::create_dir_all(&config).unwrap();
    let http_port = free_port();
    let settings = json!({"debug": false, "host": "127.0.0.1", "http_port": http_port, "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": 0, "load_models_at_startup": true});
    let model_settings = json!({"name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": model_file, "extra": {"predict_fn": "predict_proba"}}});
    std::fs::write(config.join("settings.json"), settings.to_string()).unwrap();
    std::fs::write(config.join("model-settings.json"), model_settings.to_string()).unwrap();
    let log = work.join("mlserver.log");
    let mut cmd = Command::new(tool("mlserver"));
    cmd.arg("start")
        .arg(&config)
        .current_dir(&work)
        .env("MLSERVER_METRICS_DIR", work.join("metrics"))
        .env("MLSERVER_ENVIRONMENTS_DIR", work.join("envs"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(work.join("mlserver.err")).unwrap());
    let mut mlserver = testkit::Child(cmd.spawn().expect("starting mlserver"));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();
    let started = Instant::now();
    loop {
        // MLServer says nothing we could await: poll its readiness, bounded.
        if let Ok(mut c) = testkit::Client::connect(addr, &addr.to_string(), WAIT).await {
            if c.request(testkit::Method::GET, "/v2/models/credit-risk/ready", &[], bytes::Bytes::new())
                .await
                .is_ok_and(|r| r.status == 200)
            {
                break;
            }
        }
        if let Ok(Some(status)) = mlserver.0.try_wait() {
            panic!("mlserver exited ({status}):\n{}", std::fs::read_to_string(work.join("mlserver.err")).unwrap());
        }
        assert!(
            started.elapsed() < MLSERVER_TIMEOUT,
            "mlserver was not ready within {MLSERVER_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(work.join("mlserver.err")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let startup = started.elapsed();
    let theirs = client_report(addr.to_string(), MODEL, batch_file, false).await;
    let _ = tokio::task::spawn_blocking(move || mlserver.terminate(Duration::from_secs(15))).await;

    let diffs = differences(&ours, &theirs);
    println!("MLServer ready in {startup:?}; where its answers differ from riskserve's:\n{}", diffs.join("\n"));
    // The reference answered the same client: the comparison is real.
    for step in ["server_live", "server_ready", "model_ready"] {
        assert_eq!(theirs[step], true, "mlserver {step}: {theirs:#}");
    }
    assert_eq!(theirs["server_metadata"]["name"], "mlserver", "{theirs:#}");
    let proba = &theirs["infer"]["outputs"]["predict_proba"];
    assert_eq!(proba["shape"], json!([batch().len(), 2]), "{theirs:#}");
    // Both estimate P(late) for the same rows (different models: shown, not compared).
    let theirs_p: Vec<f64> = proba["data"].as_array().unwrap().iter().map(|r| r[1].as_f64().unwrap()).collect();
    let ours_p: Vec<f64> = ours["infer"]["outputs"]["probability_late"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    println!("P(late) per row:\n    riskserve: {ours_p:?}\n    mlserver:  {theirs_p:?}");
    assert!(theirs_p.iter().all(|p| (0.0..=1.0).contains(p)), "{theirs_p:?}");
}

/// `--seed N` from `RISKSERVE_SCHEMATHESIS_SEED` (default 20261206), or
/// none when it is `random`.
fn schemathesis_seed() -> Vec<String> {
    match std::env::var("RISKSERVE_SCHEMATHESIS_SEED").as_deref() {
        Ok("random") => Vec::new(),
        Ok(seed) => vec!["--seed".into(), seed.into()],
        Err(_) => vec!["--seed".into(), "20261206".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_with_every_check() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = workspace_root().join("tests/clients/schemathesis.toml");
    let mut cmd = Command::new(tool("schemathesis"));
    // Every check, both ways: schema-valid requests are accepted
    // (positive_data_acceptance) and schema-invalid ones refused
    // (negative_data_rejection); the config file makes every warning fail
    // the run and says what it expects of load/unload and infer.
    cmd.arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run"])
        .arg(format!("http://{}/openapi.json", s.addr))
        .args(["--checks", "all", "--workers", "2", "--request-timeout", "30", "--generation-database", "none"])
        // A fixed seed, so CI's gate is repeatable; explore with another
        // (RISKSERVE_SCHEMATHESIS_SEED=random lets schemathesis draw one).
        .args(schemathesis_seed())
        .current_dir(dir.path())
        // A workaround for a CPython 3.11.7 bug hit by query parameters
        // (see the module's docstring); it changes no generated case.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", testkit::tools::workspace_root().join("tests/clients"));
    let work = dir.path().to_path_buf();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_bounded(cmd, &work, "schemathesis", SCHEMATHESIS_TIMEOUT))
            .await
            .unwrap();
    let summary: String =
        out.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    println!("{summary}");
    assert!(ok, "schemathesis found problems:\n{out}\n{err}");
    assert!(out.contains(" passed"), "{summary}");
}
