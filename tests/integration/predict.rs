//! Predictions, listings, health, metrics and the web form over real HTTP.

use crate::common::*;
use riskserve::model::Model;

fn reference_probability() -> f64 {
    let model = Model::from_bytes(bundled_model()).unwrap();
    let rows = riskserve::http::request::decode_with(&model.fields, ROW.as_bytes()).unwrap();
    model.predict(rows.row(0)).probability_late
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_prediction_names_model_and_version_and_matches_the_model_file() {
    let s = TestServer::start().await;
    let r = s.post(PREDICT, ROW).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-model-version"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["model_name"], "credit-risk");
    assert_eq!(v["model_version"], 1);
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 1);
    let p = preds[0]["probability_late"].as_f64().unwrap();
    assert_eq!(p, reference_probability());
    let threshold = bundled_payload().meta.decision.threshold;
    let expected = if p >= threshold { "high_risk" } else { "low_risk" };
    assert_eq!(preds[0]["decision"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_carry_the_features_that_raised_the_risk_most() {
    let s = TestServer::start().await;
    let r = s.post(PREDICT, ROW).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let reasons = v["predictions"][0]["reasons"].as_array().unwrap().clone();
    assert!((1..=4).contains(&reasons.len()), "{v}");
    for reason in &reasons {
        assert!(riskserve::model::input::FEATURES.contains(&reason["feature"].as_str().unwrap()), "{reason}");
        assert_eq!(reason["imputed"], false, "the row has every value: {reason}");
        assert!(reason["contribution"].as_f64().unwrap() > 0.0, "only features that raised the risk: {reason}");
    }
    let listing = s.get("/v1/models/credit-risk").await.json();
    let explain = &listing["versions"][0]["explain"];
    assert_eq!(explain["method"], "saabas", "{listing}");
    let all = s.post(&format!("{PREDICT}?reasons=10"), ROW).await.json();
    let contributions: Vec<f64> = all["predictions"][0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["contribution"].as_f64().unwrap())
        .collect();
    assert!(contributions.windows(2).all(|w| w[0] >= w[1]), "ranked: {all}");
    assert!(contributions.len() >= reasons.len(), "{all}");
    let p = all["predictions"][0]["probability_late"].as_f64().unwrap();
    let plain = s.post(&format!("{PREDICT}?explain=false"), ROW).await.json();
    assert!(plain["predictions"][0].get("reasons").is_none(), "{plain}");
    assert_eq!(plain["predictions"][0]["probability_late"].as_f64(), Some(p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_prediction_answers_each_instance_in_order() {
    let s = TestServer::start().await;
    let risky = ROW.replace("\"grade\":\"C\"", "\"grade\":\"G\"").replace("0.1356", "0.29").replace("14.39", "39.5");
    let blank = ROW.replace("\"9 years\"", "null").replace("0.226", "\"\"");
    let body = format!("{{\"instances\":[{ROW},{risky},{blank}]}}");
    let r = s.post(PREDICT, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let preds = r.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(preds.len(), 3);
    assert_eq!(preds[0]["probability_late"].as_f64().unwrap(), reference_probability());
    for p in &preds {
        let prob = p["probability_late"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&prob));
    }
    // A big batch goes through the blocking-thread path and still answers in order.
    let big = format!("{{\"instances\":[{}]}}", vec![ROW; 500].join(","));
    let r = s.post(PREDICT, &big).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let preds = r.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(preds.len(), 500);
    assert!(preds.iter().all(|p| p["probability_late"].as_f64() == Some(reference_probability())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_versions_are_served_and_missing_ones_name_what_is_loaded() {
    let s = TestServer::start_with(|c| c.default_policy = riskserve::config::VersionPolicy::All).await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    for v in [1, 2] {
        let r = s.post(&format!("/v1/models/credit-risk/versions/{v}/predict"), ROW).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["model_version"], v);
        assert_eq!(r.header("x-model-version"), Some(v.to_string().as_str()));
    }
    let r = s.post("/v1/models/credit-risk/versions/7/predict", ROW).await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("version 7") && r.error().contains("loaded versions: 1, 2"), "{}", r.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_listing_shows_state_digest_load_time_and_training_metrics() {
    let s = TestServer::start().await;
    let all = s.get("/v1/models").await;
    assert_eq!(all.status, 200);
    let models = all.json()["models"].as_array().unwrap().clone();
    assert_eq!(models.len(), 1);
    let one = s.get("/v1/models/credit-risk").await.json();
    assert_eq!(one["name"], "credit-risk");
    assert_eq!(one["serving_version"], 1);
    assert_eq!(one["version_policy"], "latest=1");
    let v = &one["versions"][0];
    assert_eq!(v["state"], "available");
    assert_eq!(v["serving"], true);
    assert_eq!(v["digest"].as_str().unwrap().len(), 64);
    assert!(v["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert!(v["model"]["metrics"]["roc_auc"]["mean"].as_f64().unwrap() > 0.5);
    assert_eq!(v["model"]["algorithm"], "random_forest");
    let missing = s.get("/v1/models/nope").await;
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("credit-risk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_web_form() {
    let s = TestServer::start().await;
    let live = s.get("/v2/health/live").await;
    assert_eq!((live.status, live.json()["live"].as_bool()), (200, Some(true)));
    let ready = s.get("/v2/health/ready").await;
    assert_eq!((ready.status, ready.json()["ready"].as_bool()), (200, Some(true)));

    for _ in 0..3 {
        assert_eq!(s.post(PREDICT, ROW).await.status, 200);
    }
    assert_eq!(s.post(PREDICT, "{").await.status, 400);
    let text = s.metrics().await;
    let route = ("route", "/v1/models/{name}/predict");
    assert_eq!(metric(&text, "riskserve_requests_total", &[route, ("code", "200")]), Some(3.0));
    assert_eq!(metric(&text, "riskserve_requests_total", &[route, ("code", "400")]), Some(1.0));
    let version = [("model", "credit-risk"), ("version", "1")];
    assert_eq!(metric(&text, "riskserve_inference_duration_seconds_count", &version), Some(3.0));
    assert_eq!(metric(&text, "riskserve_model_version_serving", &version), Some(1.0));
    let decisions = metric(&text, "riskserve_predictions_total", &[version[0], version[1], ("decision", "low_risk")])
        .unwrap_or(0.0)
        + metric(&text, "riskserve_predictions_total", &[version[0], version[1], ("decision", "high_risk")])
            .unwrap_or(0.0);
    assert_eq!(decisions, 3.0);
    assert_eq!(
        metric(&text, "riskserve_model_loads_total", &[("model", "credit-risk"), ("result", "success")]),
        Some(1.0)
    );
    assert!(metric(&text, "riskserve_request_duration_seconds_count", &[route]).is_some());
    assert!(metric(&text, "riskserve_model_load_duration_seconds_count", &[("model", "credit-risk")]).is_some());
    // The scrape itself is in flight while it renders.
    assert_eq!(metric(&text, "riskserve_inflight_requests", &[]), Some(1.0));
    assert!(metric(&text, "process_resident_memory_bytes", &[]).unwrap() > 0.0);

    let form = s.get("/").await;
    assert_eq!(form.status, 200);
    assert!(form.header("content-type").unwrap().starts_with("text/html"));
    assert!(form.text().contains("/v1/models/") && form.text().contains("name=\"loan_amnt\""));
}

/// The binary's allocator (jemalloc) reports its memory as
/// `riskserve_allocator_*_bytes`, as consistent as jemalloc documents them
/// to be: allocated ≤ active ≤ mapped, active ≤ resident. (Not against the
/// process's RSS: jemalloc's `resident` is an upper bound that counts
/// allocated pages never touched, so it can exceed it.)
#[test]
fn the_binary_exports_its_allocators_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    commit(&models, MODEL, 1, bundled_model());
    let server = spawn_binary(&models, &[], &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reply = runtime.block_on(send(server.addr, "GET", "/metrics", &[], b""));
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let bytes = |name: &str| {
        metric(&text, &format!("riskserve_allocator_{name}_bytes"), &[])
            .unwrap_or_else(|| panic!("riskserve_allocator_{name}_bytes missing:\n{text}"))
    };
    let (allocated, active, metadata) = (bytes("allocated"), bytes("active"), bytes("metadata"));
    let (resident, mapped, retained) = (bytes("resident"), bytes("mapped"), bytes("retained"));
    // The compiled bundled model alone is over 256 KiB of nodes.
    assert!(allocated > 256.0 * 1024.0, "allocated {allocated}");
    assert!(allocated <= active && active <= mapped, "allocated {allocated}, active {active}, mapped {mapped}");
    assert!(active <= resident, "active {active}, resident {resident}");
    assert!(metadata > 0.0 && retained >= 0.0);
}
