//! Hot reload through the real notify watcher: new versions, half-written,
//! corrupt, wrong-schema and too costly files, rollback by deletion, an emptied
//! repository, and start-up errors. Asserted through HTTP and `/metrics`.

use crate::common::*;
use riskserve::model::estimator::Estimator;
use riskserve::model::format::encode;
use std::io::Write;
use std::sync::Arc;

fn loads(text: &str, result: &str) -> f64 {
    metric(text, "riskserve_model_loads_total", &[("model", MODEL), ("result", result)]).unwrap_or(0.0)
}

/// Waits until the model's status carries an operator warning containing `needle`.
async fn wait_for_warning(s: &TestServer, needle: &str) {
    s.wait_for_pass(&format!("warning containing {needle:?}"), |snapshot| {
        snapshot.status.get(MODEL).and_then(|m| m.warning.as_deref()).is_some_and(|w| w.contains(needle))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_is_swapped_in_and_the_old_one_is_freed_and_forgotten() {
    let s = TestServer::start().await;
    let v1 = s.server.registry.resolve(MODEL, None).unwrap();
    let weak_v1 = Arc::downgrade(&v1);
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    // A request that took v1 before the swap still holds it...
    assert_eq!(v1.version, 1);
    assert!(weak_v1.upgrade().is_some());
    // ...and v1 is freed when that last holder is done.
    drop(v1);
    assert!(weak_v1.upgrade().is_none(), "retired version still alive");

    let text = s.metrics().await;
    assert_eq!(metric(&text, "riskserve_model_version_serving", &[("model", MODEL), ("version", "2")]), Some(1.0));
    assert!(!text.contains("version=\"1\""), "series of retired v1 remain:\n{text}");
    assert_eq!(loads(&text, "success"), 2.0);
    assert!(metric(&text, "riskserve_model_swaps_total", &[("model", MODEL)]).unwrap() >= 2.0);
    let status = s.get("/v1/models/credit-risk").await.json();
    assert_eq!(status["serving_version"], 2);
    assert_eq!(status["versions"][1]["state"], "not_loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_file_is_never_served_and_loads_once_complete() {
    let s = TestServer::start().await;
    let bytes = bundled_model();
    let dir = s.models.join(MODEL).join("2");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::File::create(dir.join("model.json")).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    f.flush().unwrap();
    // The pause: the server sees the half file, rejects it as incomplete.
    s.wait_metric("riskserve_model_loads_total", &[("model", MODEL), ("result", "incomplete")], 1.0).await;
    assert_eq!(s.serving_version().await, 1);
    let status = s.get("/v1/models/credit-risk").await.json();
    assert_eq!(status["versions"][0]["state"], "failed");
    assert!(status["versions"][0]["reason"].as_str().unwrap().contains("incomplete"));
    // The rest arrives: retried because the file changed, then served.
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    s.wait_serving(2).await;
    assert_eq!(loads(&s.metrics().await, "success"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_wrong_schema_files_keep_the_current_version_and_are_retried_when_fixed() {
    let s = TestServer::start().await;
    commit(&s.models, MODEL, 2, &corrupt_model());
    s.wait_metric("riskserve_model_loads_total", &[("model", MODEL), ("result", "invalid")], 1.0).await;
    assert_eq!(s.serving_version().await, 1);
    commit(&s.models, MODEL, 3, &wrong_schema_model());
    s.wait_metric("riskserve_model_loads_total", &[("model", MODEL), ("result", "invalid")], 2.0).await;
    assert_eq!(s.serving_version().await, 1);
    let status = s.get("/v1/models/credit-risk").await.json();
    let reason = |i: usize| status["versions"][i]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason(0).contains("schema"), "{}", reason(0));
    assert!(reason(1).contains("digest mismatch"), "{}", reason(1));
    assert_eq!(status["serving_version"], 1);
    // Unchanged failed files are not retried on every pass.
    s.next_pass().await;
    assert_eq!(loads(&s.metrics().await, "invalid"), 2.0);
    // Fixing v3 in place makes it load.
    std::fs::write(s.models.join(MODEL).join("3").join("model.json"), bundled_model()).unwrap();
    s.wait_serving(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_over_the_prediction_cost_budget_is_invalid_and_the_current_one_keeps_serving() {
    // The bundled model costs 1,727 node visits per row; twice its trees cost twice that.
    let s = TestServer::start_with(|c| c.max_prediction_cost = 2_000).await;
    let mut payload = bundled_payload();
    let Estimator::RandomForest { trees } = &mut payload.estimator else { panic!("the bundled model is a forest") };
    trees.extend(trees.clone());
    commit(&s.models, MODEL, 2, &encode(&payload).unwrap());
    s.wait_metric("riskserve_model_loads_total", &[("model", MODEL), ("result", "invalid")], 1.0).await;
    assert_eq!(s.serving_version().await, 1);
    let status = s.get("/v1/models/credit-risk").await.json();
    let reason = status["versions"][0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("3454 tree nodes") && reason.contains("max_prediction_cost"), "{status}");
    assert_eq!(status["serving_version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_version_rolls_back_and_deleting_all_keeps_the_last_good() {
    let s = TestServer::start().await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    remove_version(&s.models, MODEL, 2);
    s.wait_serving(1).await;
    remove_version(&s.models, MODEL, 1);
    wait_for_warning(&s, "keeping version 1").await;
    assert_eq!(s.serving_version().await, 1);
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
    // The model's whole directory gone: still serving.
    std::fs::remove_dir_all(s.models.join(MODEL)).unwrap();
    wait_for_warning(&s, "directory removed").await;
    assert_eq!(s.serving_version().await, 1);
    // And a version dropped in again takes over.
    commit(&s.models, MODEL, 5, bundled_model());
    s.wait_serving(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_without_a_valid_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let err = riskserve::server::start(test_config(&models)).await.err().expect("empty repo must fail").to_string();
    assert!(err.contains("no valid model"), "{err}");
    commit(&models, MODEL, 1, &corrupt_model());
    let err = riskserve::server::start(test_config(&models)).await.err().expect("corrupt repo must fail").to_string();
    assert!(err.contains("digest mismatch"), "{err}");
    let err = riskserve::server::start(test_config(&dir.path().join("absent"))).await.err().unwrap().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

/// `007` is not version 7 for anyone: the server ignores it and says why
/// (as `train` and `validate` do; see `cli.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_directory_with_leading_zeros_is_ignored_and_reported() {
    let s = TestServer::start().await;
    let dir = s.models.join(MODEL).join("007");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.json"), bundled_model()).unwrap();
    s.wait_for_pass("007 reported", |snapshot| snapshot.status[MODEL].ignored.iter().any(|i| i.entry == "007")).await;
    assert_eq!(s.serving_version().await, 1);
    let status = s.get("/v1/models/credit-risk").await.json();
    assert_eq!(status["ignored"][0]["entry"], "007");
    let reason = status["ignored"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("leading zeros") && reason.contains("`7`"), "{reason}");
    assert_eq!(status["versions"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(loads(&s.metrics().await, "success"), 1.0, "007 was never read");
}
