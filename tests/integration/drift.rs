//! Drift monitoring end to end (issue 29): a model trained by the real
//! pipeline (which records its reference), served, sent 5,000 applications
//! drawn like its training data, then 5,000 with `int_rate` raised by 8
//! points and `annual_inc` halved. Unshifted, every PSI stays below 0.1;
//! shifted, `int_rate`, `annual_inc` and the score go above 0.25 while the
//! others stay below 0.1, in `GET /v1/models/{name}`, in `/metrics`, and
//! as the critical alert of a real Prometheus scraping the server with the
//! shipped rules.

use crate::common::{bundled_with_reference, commit, TestServer, MODEL, PREDICT, ROW};
use crate::deploy::prometheus::Prometheus;
use riskserve::model::input::{num, LoanApplication, CATEGORICAL_FEATURES, NUMERIC_FEATURES};
use riskserve::train::synth;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Applications per request.
const BATCH: usize = 500;

/// A forest trained on synthetic loans by `riskserve train`'s pipeline.
fn trained_model() -> Vec<u8> {
    use riskserve::repository::LocalDirectory;
    use riskserve::train::dataset::{write_csv, CsvOptions};
    use riskserve::train::fit::{Algorithm, TrainOptions};
    use riskserve::train::pipeline::{train, Silent, ThresholdChoice, TrainPlan};
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("loans.csv");
    write_csv(&csv, &synth::generate(6_000, 29), &[]).unwrap();
    let mut options = TrainOptions::new(Algorithm::Forest, 29);
    options.trees = 20;
    let plan = TrainPlan {
        data: csv,
        columns: CsvOptions::default(),
        model_name: MODEL.into(),
        destination: LocalDirectory::new(dir.path().join("models")),
        options,
        folds: 3,
        threshold: ThresholdChoice::YoudenOutOfFold,
        bands: None,
    };
    std::fs::read(train(&plan, &Silent).unwrap().path).unwrap()
}

/// One application as a request's JSON object (missing values as null).
fn instance(app: &LoanApplication) -> Value {
    let mut object = Map::new();
    for (name, v) in NUMERIC_FEATURES.iter().zip(&app.numeric) {
        object.insert(name.to_string(), v.map_or(Value::Null, Value::from));
    }
    for (name, v) in CATEGORICAL_FEATURES.iter().zip(&app.categorical) {
        object.insert(name.to_string(), v.clone().map_or(Value::Null, Value::from));
    }
    Value::Object(object)
}

/// Interest rates 8 points higher, incomes halved.
fn shifted(apps: Vec<LoanApplication>) -> Vec<LoanApplication> {
    apps.into_iter()
        .map(|mut app| {
            app.numeric[num::INT_RATE] = app.numeric[num::INT_RATE].map(|r| r + 0.08);
            app.numeric[num::ANNUAL_INC] = app.numeric[num::ANNUAL_INC].map(|i| (i / 2.0).round());
            app
        })
        .collect()
}

async fn score(s: &TestServer, apps: &[LoanApplication]) {
    for chunk in apps.chunks(BATCH) {
        let body = json!({"instances": chunk.iter().map(instance).collect::<Vec<_>>()}).to_string();
        let r = s.post(&format!("{PREDICT}?explain=false"), &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// Version 2's `drift` in the model's status.
async fn drift(s: &TestServer) -> Value {
    let status = s.get(&format!("/v1/models/{MODEL}")).await.json();
    let versions = status["versions"].as_array().unwrap();
    let v2 = versions.iter().find(|v| v["version"] == 2).unwrap_or_else(|| panic!("no version 2: {status}"));
    v2["drift"].clone()
}

/// Each PSI of a `drift` status, by feature (`score` for the score).
fn psi(drift: &Value) -> BTreeMap<String, f64> {
    let shown = drift["psi"].as_array().unwrap_or_else(|| panic!("no psi: {drift}"));
    shown
        .iter()
        .map(|p| {
            let value = p["psi"].as_f64().unwrap_or_else(|| panic!("no value: {drift}"));
            (p["feature"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_applications_move_the_psi_of_what_moved_and_fire_the_critical_alert() {
    let model = trained_model();
    let s = TestServer::start_with(|c| c.drift_window = 5_000).await;
    commit(&s.models, MODEL, 2, &model);
    s.wait_serving(2).await;
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path(), s.addr).await;
    assert_eq!(drift(&s).await["window"]["predictions"], 0);

    // Drawn like the training data (another seed): every PSI < 0.1.
    let recent: Vec<LoanApplication> = synth::generate(5_000, 2_929).into_iter().map(|(app, _)| app).collect();
    score(&s, &recent).await;
    let before = drift(&s).await;
    // The window keeps 90-100 % of drift_window: the last 4,500 here.
    assert_eq!(before["window"], json!({"predictions": 4_500, "max_predictions": 5_000, "max_seconds": 3_600}));
    let unshifted = psi(&before);
    eprintln!("drift: PSI of 5,000 applications like the training data: {unshifted:?}");
    assert_eq!(unshifted.len(), 11, "the score and ten features: {before}");
    for (feature, value) in &unshifted {
        assert!(*value < 0.1, "{feature}: PSI {value} of an unshifted population: {before}");
    }

    // Rates up 8 points, incomes halved: those two and the score > 0.25.
    score(&s, &shifted(recent)).await;
    let after = drift(&s).await;
    let moved = psi(&after);
    eprintln!("drift: PSI after the shift: {moved:?}");
    for (feature, value) in &moved {
        if ["int_rate", "annual_inc", "score"].contains(&feature.as_str()) {
            assert!(*value > 0.25, "{feature}: PSI {value} after the shift: {after}");
        } else {
            assert!(*value < 0.1, "{feature}: PSI {value}, which did not move: {after}");
        }
    }
    let top: Vec<&str> =
        after["top_movers"].as_array().unwrap().iter().map(|m| m["feature"].as_str().unwrap()).collect();
    assert_eq!(
        &top[..2].iter().copied().collect::<std::collections::BTreeSet<_>>(),
        &["annual_inc", "int_rate"].into()
    );
    assert_eq!(after["top_movers"][0]["reading"], "act");
    let share = after["high_risk_share"].as_f64().unwrap();
    let share_before = before["high_risk_share"].as_f64().unwrap();
    assert!(share > share_before, "riskier applicants, more high_risk: {share_before} -> {share}");

    let metrics = s.metrics().await;
    let gauge = |feature: &str| {
        crate::common::metric(
            &metrics,
            "riskserve_drift_psi",
            &[("model", MODEL), ("version", "2"), ("feature", feature)],
        )
    };
    assert!(gauge("int_rate").is_some_and(|v| v > 0.25), "{metrics}");
    assert!(gauge("grade").is_some_and(|v| v < 0.1), "{metrics}");

    // Prometheus scrapes it and the shipped rule fires for exactly the
    // three that moved.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let alerts = prom.api("/api/v1/alerts").await;
        let alerts = alerts["alerts"].as_array().cloned().unwrap_or_default();
        let firing = |name: &str| {
            let mut features: Vec<String> = alerts
                .iter()
                .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
                .map(|a| a["labels"]["feature"].as_str().unwrap_or_default().to_string())
                .collect();
            features.sort();
            features
        };
        if firing("RiskserveDriftCritical") == ["annual_inc", "int_rate", "score"] {
            assert!(firing("RiskserveDriftWarning").is_empty(), "{alerts:?}");
            let critical = alerts.iter().find(|a| a["labels"]["alertname"] == "RiskserveDriftCritical").unwrap();
            assert_eq!((&critical["labels"]["model"], &critical["labels"]["version"]), (&json!(MODEL), &json!("2")));
            break;
        }
        assert!(Instant::now() < deadline, "the critical drift alert did not fire for the three: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The window's predictions of version `v`, from `/metrics`.
async fn window(s: &TestServer, v: &str) -> Option<f64> {
    crate::common::metric(&s.metrics().await, "riskserve_drift_window_predictions", &[("model", MODEL), ("version", v)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scored_row_counts_once_whatever_the_protocol_and_monitoring_can_be_off() {
    let s = TestServer::start().await;
    // The bundled model records its training reference: an empty window.
    assert_eq!(window(&s, "1").await, Some(0.0), "the bundled model's drift series");
    assert!(s.get(&format!("/v1/models/{MODEL}")).await.json()["versions"][0].get("drift").is_some());
    commit(&s.models, MODEL, 2, &bundled_with_reference());
    s.wait_serving(2).await;
    assert_eq!(window(&s, "2").await, Some(0.0));

    let batch = format!("{{\"instances\":[{ROW},{ROW},{ROW}]}}");
    assert_eq!(s.post(PREDICT, &batch).await.status, 200);
    assert_eq!(s.post(PREDICT, ROW).await.status, 200);
    let column = |name: &str, datatype: &str, v: Value| json!({"name": name, "datatype": datatype, "shape": [2], "data": [v.clone(), v]});
    let row: Value = serde_json::from_str(ROW).unwrap();
    let inputs: Vec<Value> = row
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| column(name, if v.is_string() { "BYTES" } else { "FP64" }, v.clone()))
        .collect();
    let oip = s.post(&format!("/v2/models/{MODEL}/infer"), &json!({"inputs": inputs}).to_string()).await;
    assert_eq!(oip.status, 200, "{}", oip.text());
    assert_eq!(window(&s, "2").await, Some(6.0), "3 + 1 over /v1, 2 over OIP");
    let status = drift(&s).await;
    assert_eq!(status["window"]["predictions"], 6);
    // Six copies of one application: its bins are all the window has.
    assert!(psi(&status).values().all(|p| *p > 0.25), "{status}");

    let off = TestServer::start_with(|c| c.drift = false).await;
    commit(&off.models, MODEL, 2, &bundled_with_reference());
    off.wait_serving(2).await;
    assert_eq!(off.post(PREDICT, ROW).await.status, 200);
    assert_eq!(window(&off, "2").await, None, "drift = false: no series");
    assert!(drift(&off).await.is_null(), "drift = false: no drift in the status");
}
