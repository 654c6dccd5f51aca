//! Imported models (issue 26) answer as their own libraries do: models
//! trained by the real XGBoost and LightGBM (`tests/oracle/native_models.py`,
//! on data `riskserve synth` generates, with missing numbers and
//! categories) are dropped into the repository as `xgboost.json` and
//! `lightgbm.txt` and served; every row's probability, and every edge row
//! (each threshold exactly and one step either side, ±0, missing values, a
//! category never seen, one declared but absent in training), must equal the
//! library's `predict_proba` within 1e-6. A bad native file is refused with
//! its reason while the previous version keeps serving.

use crate::common::*;
use riskserve::repository::LocalDirectory;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The oracle's directory: models and the libraries' answers, made once,
/// on twelve-input loans (with missing numbers and categories).
fn oracle() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| made_by("native_models.py", &["--extra-features"])).1
}

/// The same on the ten loan fields, so the bundled model's clients can
/// score the native models too.
fn ten_field_oracle() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| made_by("native_models.py", &[])).1
}

/// The ONNX oracle's directory (`tests/oracle/onnx_models.py`): pipelines
/// exported by skl2onnx and the answers of ONNX Runtime and scikit-learn.
fn onnx_oracle() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| made_by("onnx_models.py", &["--extra-features"])).1
}

/// The real sample the seed project was built on, beside the repository
/// (`../shared/data`, which CI has too), read where it is, never copied.
fn real_sample() -> PathBuf {
    let path = testkit::tools::workspace_root().join("../shared/data/peerLoanTest.csv");
    assert!(path.exists(), "{} is missing: the real sample sits beside the repository", path.display());
    path
}

/// A directory with synthetic loans (`synth` with `synth_args`: missing
/// numbers and categories with `--extra-features`) and what the oracle
/// `script` made of them.
fn made_by(script: &str, synth_args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("loans.csv");
    let synth = Command::new(env!("CARGO_BIN_EXE_riskserve"))
        .args(["synth", "--rows", "4000", "--seed", "7"])
        .args(synth_args)
        .arg("--out")
        .arg(&data)
        .output()
        .unwrap();
    assert!(synth.status.success(), "{}", String::from_utf8_lossy(&synth.stderr));
    made_from(script, dir, &data)
}

/// What the oracle `script` made of `data`, in `dir`.
fn made_from(script: &str, dir: tempfile::TempDir, data: &Path) -> (tempfile::TempDir, PathBuf) {
    let script = testkit::tools::workspace_root().join("tests/oracle").join(script);
    let out = Command::new(testkit::tools::tool("oracle-python"))
        .arg(&script)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn publish(models: &Path, name: &str, version: u64, files: &[(&str, &[u8])]) {
    LocalDirectory::new(models).publish_files(name, version, files).unwrap();
}

async fn version_state(s: &TestServer, name: &str, version: u64) -> Option<serde_json::Value> {
    let status = s.get(&format!("/v1/models/{name}")).await.json();
    status["versions"].as_array()?.iter().find(|v| v["version"] == version).cloned()
}

async fn wait_state(s: &TestServer, name: &str, version: u64, state: &str) -> serde_json::Value {
    eventually(&format!("{name} v{version} {state}"), || async {
        version_state(s, name, version).await.is_some_and(|v| v["state"] == state)
    })
    .await;
    version_state(s, name, version).await.unwrap()
}

/// Waits for `name` `version` to fail with a reason of `kind` that says `names`.
async fn failed_with(s: &TestServer, name: &str, version: u64, what: &str, kind: &str, names: &str) {
    let v = wait_state(s, name, version, "failed").await;
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with(kind) && reason.contains(names), "{what}: {v}");
}

/// `name` still answers `row` with version 1.
async fn still_serves_v1(s: &TestServer, name: &str, row: &str, what: &str) {
    let r = s.post(&format!("/v1/models/{name}/predict"), row).await;
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(r.json()["model_version"], 1, "{what}: version 1 keeps serving");
}

/// Waits for `name` v1 to be served as `algorithm`, with `fields` among its inputs.
async fn serves_every_field(s: &TestServer, name: &str, algorithm: &str, fields: &[&str]) {
    let v = wait_state(s, name, 1, "available").await;
    assert_eq!(v["model"]["algorithm"], algorithm, "{v}");
    let inputs: Vec<&str> = v["inputs"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(fields.iter().all(|f| inputs.contains(f)), "{inputs:?}");
}

/// Holds `name` to the answers in `dir`'s `expected` file (from `library`)
/// on every row (more than the 4,000 rows of data), and says how close.
async fn agrees_on_every_row(dir: &Path, s: &TestServer, name: &str, expected: &str, library: &str) {
    let (worst, rows) = largest_difference(dir, s, name, expected).await;
    assert!(rows > 4000, "{rows} rows compared");
    eprintln!("{name}: largest difference from {library} over {rows} rows: {worst:e}");
}

/// Largest |served − library| over every row of `dir`, and how many rows.
async fn largest_difference(dir: &Path, s: &TestServer, name: &str, expected: &str) -> (f64, usize) {
    let rows = std::fs::read_to_string(dir.join("rows.jsonl")).unwrap();
    let expected: Vec<f64> =
        std::fs::read_to_string(dir.join(expected)).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), expected.len());
    let mut worst = (0.0f64, 0);
    for (start, chunk) in rows.chunks(500).enumerate() {
        let body = format!("{{\"instances\":[{}]}}", chunk.join(","));
        let r = s.post(&format!("/v1/models/{name}/predict?explain=false"), &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json();
        let predictions = json["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), chunk.len());
        for (i, p) in predictions.iter().enumerate() {
            let row = start * 500 + i;
            let d = (p["probability_late"].as_f64().unwrap() - expected[row]).abs();
            assert!(d <= 1e-6, "{name} row {row} ({}): served {p}, the library says {}", rows[row], expected[row]);
            worst.0 = worst.0.max(d);
        }
        worst.1 += chunk.len();
    }
    worst
}

/// Largest |served SHAP value − library's| over every feature and the
/// base value of every row (`?explain=shap`), and how many rows.
async fn largest_shap_difference(o: &Path, s: &TestServer, name: &str, expected: &str) -> (f64, usize) {
    let rows = std::fs::read_to_string(o.join("rows.jsonl")).unwrap();
    let rows: Vec<&str> = rows.lines().collect();
    let expected: Vec<Vec<f64>> = std::fs::read_to_string(o.join(expected))
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), expected.len());
    // The library's columns are the model's features in schema order.
    let status = version_state(s, name, 1).await.unwrap();
    let names: Vec<String> =
        status["inputs"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect();
    let mut worst = 0.0f64;
    for (start, chunk) in rows.chunks(500).enumerate() {
        let body = format!("{{\"instances\":[{}]}}", chunk.join(","));
        let r = s.post(&format!("/v1/models/{name}/predict?explain=shap"), &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json();
        for (i, p) in json["predictions"].as_array().unwrap().iter().enumerate() {
            let row = start * 500 + i;
            let shap = &p["shap"];
            assert_eq!(shap["scale"], "log_odds");
            let mut got: Vec<f64> = names.iter().map(|n| shap["values"][n].as_f64().unwrap()).collect();
            got.push(shap["base_value"].as_f64().unwrap());
            assert_eq!(got.len(), expected[row].len(), "{name} row {row}: {shap}");
            for (k, (g, e)) in got.iter().zip(&expected[row]).enumerate() {
                let d = (g - e).abs();
                assert!(d <= 1e-5, "{name} row {row} ({}) value {k}: served {g}, the library says {e}", rows[row]);
                worst = worst.max(d);
            }
        }
    }
    (worst, rows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xgboost_and_lightgbm_models_answer_as_their_libraries_on_every_row() {
    native_models_agree(oracle(), &["verification_status", "term"]).await;
}

/// The same on the real sample (ten fields, missing `emp_length` and
/// `revol_util`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xgboost_and_lightgbm_models_answer_as_their_libraries_on_the_real_sample() {
    let (dir, path) = made_from("native_models.py", tempfile::tempdir().unwrap(), &real_sample());
    native_models_agree(&path, &["emp_length", "revol_util"]).await;
    drop(dir);
}

/// Serves the oracle's `xgboost.json` and `lightgbm.txt` from `o` and holds
/// their probabilities and SHAP values to the libraries' on every row.
async fn native_models_agree(o: &Path, fields: &[&str]) {
    let s = TestServer::start().await;
    let xgb = std::fs::read(o.join("xgboost.json")).unwrap();
    let lgbm = std::fs::read(o.join("lightgbm.txt")).unwrap();
    publish(&s.models, "xgb", 1, &[("xgboost.json", &xgb)]);
    publish(&s.models, "lgbm", 1, &[("lightgbm.txt", &lgbm)]);
    for (name, algorithm) in [("xgb", "xgboost"), ("lgbm", "lightgbm")] {
        serves_every_field(&s, name, algorithm, fields).await;
    }
    for (name, expected) in [("xgb", "xgboost.expected"), ("lgbm", "lightgbm.expected")] {
        agrees_on_every_row(o, &s, name, expected, "the library").await;
    }

    // Exact SHAP values on request, as the libraries compute them.
    for (name, expected) in [("xgb", "xgboost.shap"), ("lgbm", "lightgbm.shap")] {
        let (worst, rows) = largest_shap_difference(o, &s, name, expected).await;
        assert!(rows > 4000, "{rows} rows compared");
        eprintln!("{name}: largest SHAP difference from the library over {rows} rows: {worst:e}");
    }

    // The default request explains itself: reasons in probability points.
    let row = std::fs::read_to_string(o.join("rows.jsonl")).unwrap().lines().next().unwrap().to_string();
    for name in ["xgb", "lgbm"] {
        let r = s.post(&format!("/v1/models/{name}/predict"), &row).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json();
        assert!(json["predictions"][0]["reasons"].is_array(), "{json}");
        // A misspelled field is still refused, naming it.
        let typo = row.replacen("\"dti\"", "\"dtii\"", 1);
        let r = s.post(&format!("/v1/models/{name}/predict"), &typo).await;
        assert_eq!(r.status, 400);
        assert!(r.text().contains("dtii"), "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_native_file_is_refused_with_its_reason_and_the_previous_version_keeps_serving() {
    let o = oracle();
    let s = TestServer::start().await;
    let xgb = std::fs::read_to_string(o.join("xgboost.json")).unwrap();
    let lgbm = std::fs::read_to_string(o.join("lightgbm.txt")).unwrap();
    publish(&s.models, "xgb", 1, &[("xgboost.json", xgb.as_bytes())]);
    wait_state(&s, "xgb", 1, "available").await;
    let row = std::fs::read_to_string(o.join("rows.jsonl")).unwrap().lines().next().unwrap().to_string();
    let multiclass = xgb.replacen("binary:logistic", "multi:softprob", 1);
    let wrong_digest = format!("sha256 = \"{}\"\n", "0".repeat(64));
    // (what, the version's files, the reason's kind, words it must say);
    // no kind: not a version at all.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, &'a str, &'a str);
    let bad: [Case; 5] = [
        ("truncated", vec![("xgboost.json", &xgb.as_bytes()[..xgb.len() / 2])], "incomplete", ""),
        ("multiclass", vec![("xgboost.json", multiclass.as_bytes())], "invalid", "objective is not binary"),
        ("digest", vec![("xgboost.json", xgb.as_bytes()), ("model.toml", wrong_digest.as_bytes())], "incomplete", ""),
        ("half lightgbm", vec![("lightgbm.txt", &lgbm.as_bytes()[..lgbm.len() / 2])], "incomplete", ""),
        ("two files", vec![("xgboost.json", xgb.as_bytes()), ("lightgbm.txt", lgbm.as_bytes())], "", ""),
    ];
    for (k, (what, files, kind, names)) in bad.into_iter().enumerate() {
        let version = k as u64 + 2;
        publish(&s.models, "xgb", version, &files);
        if kind.is_empty() {
            // Not a version at all: listed as rejected, with the reason.
            eventually(what, || async { s.get("/v1/models/xgb").await.text().contains("more than one model file") })
                .await;
        } else {
            failed_with(&s, "xgb", version, what, kind, names).await;
        }
        still_serves_v1(&s, "xgb", &row, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_pipelines_answer_as_onnx_runtime_and_scikit_learn_on_every_row() {
    onnx_pipelines_agree(onnx_oracle(), &["verification_status", "term"]).await;
}

/// The same on the real sample (`../shared/data/peerLoanTest.csv`: ten
/// fields, missing `emp_length` and `revol_util`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_pipelines_answer_as_onnx_runtime_and_scikit_learn_on_the_real_sample() {
    let (dir, path) = made_from("onnx_models.py", tempfile::tempdir().unwrap(), &real_sample());
    onnx_pipelines_agree(&path, &["emp_length", "revol_util"]).await;
    drop(dir);
}

/// Serves the oracle's `rf.onnx` and `lr.onnx` from `o` and holds them to
/// ONNX Runtime's and scikit-learn's answers on every row.
async fn onnx_pipelines_agree(o: &Path, fields: &[&str]) {
    let s = TestServer::start().await;
    for name in ["rf", "lr"] {
        let onnx = std::fs::read(o.join(format!("{name}.onnx"))).unwrap();
        publish(&s.models, name, 1, &[("model.onnx", &onnx)]);
    }
    for (name, algorithm) in [("rf", "onnx_tree_ensemble"), ("lr", "onnx_linear_classifier")] {
        serves_every_field(&s, name, algorithm, fields).await;
    }
    for name in ["rf", "lr"] {
        for library in ["ort", "sklearn"] {
            agrees_on_every_row(o, &s, name, &format!("{name}.{library}.expected"), library).await;
        }
    }
    let row = std::fs::read_to_string(o.join("rows.jsonl")).unwrap().lines().next().unwrap().to_string();
    for name in ["rf", "lr"] {
        let r = s.post(&format!("/v1/models/{name}/predict"), &row).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["predictions"][0]["reasons"].is_array(), "{}", r.text());
    }
}

/// `model.onnx` with the first `from` replaced by `to` (same length, so
/// the protobuf's lengths stay right).
fn patched(onnx: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = onnx.windows(from.len()).position(|w| w == from).expect("the pattern is in the file");
    let mut out = onnx.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_onnx_file_is_refused_with_its_reason_and_the_previous_version_keeps_serving() {
    let o = onnx_oracle();
    let onnx = std::fs::read(o.join("rf.onnx")).unwrap();
    // Every cut of the file is refused, never served.
    for k in (1..64).map(|k| onnx.len() * k / 64).chain([onnx.len() - 1, onnx.len() - 2, 1]) {
        let version =
            riskserve::model::import::VersionBytes { file: "model.onnx", bytes: onnx[..k].to_vec(), settings: None };
        let err = riskserve::model::Model::load(&version, Default::default()).err();
        let kind = err.as_ref().map(|e| e.kind());
        assert!(matches!(kind, Some("incomplete" | "invalid")), "cut at {k} of {}: {err:?}", onnx.len());
    }
    let s = TestServer::start().await;
    publish(&s.models, "rf", 1, &[("model.onnx", &onnx)]);
    wait_state(&s, "rf", 1, "available").await;
    let row = std::fs::read_to_string(o.join("rows.jsonl")).unwrap().lines().next().unwrap().to_string();
    // A node's op_type (field 4) and domain (field 7), tag and length included.
    let unknown = patched(&onnx, b"\x22\x06ZipMap", b"\x22\x06ZapMap");
    let custom = patched(&onnx, b"\x3a\x0aai.onnx.ml", b"\x3a\x0aai.evil.ml");
    let bad: [(&str, Vec<u8>, &str, &str); 3] = [
        ("truncated", onnx[..onnx.len() / 2].to_vec(), "incomplete", ""),
        ("unknown operator", unknown, "invalid", "an operator riskserve does not read"),
        ("custom domain", custom, "invalid", "custom domain"),
    ];
    // The log (the error itself) names what was refused.
    for (bytes, names) in [(&bad[1].1, "ZapMap"), (&bad[2].1, "`ai.evil.ml`")] {
        let version =
            riskserve::model::import::VersionBytes { file: "model.onnx", bytes: bytes.clone(), settings: None };
        let err = riskserve::model::Model::load(&version, Default::default()).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains(names), "{err}");
    }
    for (k, (what, bytes, kind, names)) in bad.into_iter().enumerate() {
        let version = k as u64 + 2;
        publish(&s.models, "rf", version, &[("model.onnx", &bytes)]);
        failed_with(&s, "rf", version, what, kind, names).await;
        still_serves_v1(&s, "rf", &row, what).await;
    }
}

#[test]
fn import_checks_records_the_digest_and_publishes_the_next_version() {
    let o = oracle();
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_riskserve")).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let models_arg = models.to_str().unwrap();
    let data = o.join("loans.csv");
    for (file, version) in [("xgboost.json", 1), ("lightgbm.txt", 2)] {
        let path = o.join(file);
        let (ok, text) = run(&[
            "import",
            path.to_str().unwrap(),
            "--model-name",
            "imported",
            "--models-dir",
            models_arg,
            "--reference",
            data.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        assert!(text.contains(&format!("as imported version {version}")), "{text}");
        assert!(text.contains("4000 rows scored"), "{text}");
        let version_dir = models.join(format!("imported/{version}"));
        let settings = std::fs::read_to_string(version_dir.join("model.toml")).unwrap();
        let digest = riskserve::model::format::sha256_hex(&std::fs::read(&path).unwrap());
        assert!(settings.contains(&digest), "{settings}");
        // The reference's bins, for drift: every feature and the score.
        assert!(
            settings.contains("[reference.score]") && settings.contains("name = \"verification_status\""),
            "{settings}"
        );
        assert_eq!(std::fs::read(version_dir.join(file)).unwrap(), std::fs::read(&path).unwrap());
        let (ok, text) = run(&["validate", version_dir.to_str().unwrap()]);
        assert!(ok && text.contains("OK"), "{text}");
    }
    // Code is never imported: a pickle is not a model riskserve reads.
    let pickle = dir.path().join("model.pkl");
    std::fs::write(&pickle, b"\x80\x04\x95\x10\x00\x00\x00cos\nsystem\n").unwrap();
    let (ok, text) = run(&["import", pickle.to_str().unwrap(), "--model-name", "imported", "--models-dir", models_arg]);
    assert!(!ok && text.contains("not a model riskserve imports"), "{text}");
    // A settings file with a typo is refused, naming it.
    let typo = dir.path().join("model.toml");
    std::fs::write(&typo, "[decision]\nthreshhold = 0.1\n").unwrap();
    let xgb = o.join("xgboost.json");
    let (ok, text) = run(&[
        "import",
        xgb.to_str().unwrap(),
        "--model-name",
        "imported",
        "--models-dir",
        models_arg,
        "--settings",
        typo.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("threshhold"), "{text}");
    assert!(!models.join("imported/3").exists());
}

/// An XGBoost version replacing a riskserve forest, and back, every
/// other commit, under load: the swap harness (`swapbench`, as in
/// `swap_harness.rs`) with the XGBoost file as its alternate model.
#[test]
fn an_xgboost_version_replacing_a_forest_and_back_under_load_fails_no_request() {
    use std::time::Duration;
    use swapbench::{BenchConfig, Deployment, ServerProcess};
    let o = ten_field_oracle();
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    commit(&models, MODEL, 1, bundled_model());
    let server = ServerProcess::spawn(Path::new(env!("CARGO_BIN_EXE_riskserve")), &models, &[], None)
        .expect("riskserve serve starts on 127.0.0.1:0");
    let source = models.join(MODEL).join("1/model.json");
    let mut cfg = BenchConfig::new(
        server.predict_target(MODEL),
        Deployment::Riskserve {
            models_dir: models.clone(),
            model_name: MODEL.into(),
            source: Some(source),
            alternate: Some(o.join("xgboost.json")),
        },
        swapbench::synth_bodies(500, 11),
    );
    cfg.server_pid = Some(server.pid);
    crate::swap_harness::bounded(&mut cfg);
    cfg.steady = Duration::from_millis(300);
    cfg.min_swaps = 20;
    // Good versions only: the bad files are swap_harness.rs's.
    cfg.bad_every = 1000;
    let report = swapbench::run_blocking(cfg, 2).expect("the benchmark runs");
    let context = format!("{}\nserver log tail:\n{}", report.summary(), server.log_tail(20));
    assert_eq!(report.failures.total, 0, "failures of any kind:\n{context}");
    assert!(report.operator_errors.is_empty(), "operator errors:\n{context}");
    assert!(report.swaps.commits >= 20, "commits:\n{context}");
    assert_eq!(report.swaps.unserved_commits, 0, "a commit never reached traffic:\n{context}");
    // Both formats served: even versions are XGBoost files.
    let listing = std::fs::read_dir(models.join(MODEL))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("xgboost.json").exists())
        .count();
    assert!(listing >= 1, "no XGBoost version left on disk:\n{context}");
    assert!(server.stop(Duration::from_secs(20)).expect("stop"), "riskserve exits 0 on SIGTERM");
}

/// `import --publish-to` puts an imported version (its file and model.toml)
/// in an object store (`file://`, a shared mount), and a replica syncing
/// from it serves the XGBoost file with the library's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_version_published_to_a_store_reaches_a_replica() {
    let o = oracle();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}/store/credit", dir.path().display());
    let xgb = o.join("xgboost.json");
    let out = Command::new(env!("CARGO_BIN_EXE_riskserve"))
        .args(["import", xgb.to_str().unwrap(), "--model-name", "credit-risk", "--publish-to", &store, "--models-dir"])
        .arg(dir.path().join("staged"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("published credit-risk version 1"), "{text}");
    let replica_models = dir.path().join("replica");
    std::fs::create_dir_all(&replica_models).unwrap();
    let replica = spawn_binary(&replica_models, &["--sync-from", &store], &[]);
    let row = std::fs::read_to_string(o.join("rows.jsonl")).unwrap().lines().next().unwrap().to_string();
    let expected: f64 =
        std::fs::read_to_string(o.join("xgboost.expected")).unwrap().lines().next().unwrap().parse().unwrap();
    eventually("the replica serves the imported version", || async {
        let r = send(replica.addr, "POST", PREDICT, &[("content-type", "application/json")], row.as_bytes()).await;
        r.status == 200 && (r.json()["predictions"][0]["probability_late"].as_f64().unwrap() - expected).abs() < 1e-6
    })
    .await;
    let settings = replica_models.join("credit-risk/1/model.toml");
    assert!(std::fs::read_to_string(settings).unwrap().contains("sha256"));
}
