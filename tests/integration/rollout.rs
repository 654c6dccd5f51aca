//! Rollouts over HTTP: `rollout.toml` hot-reloaded by the real watcher —
//! the canary's share and sticky keys, a stable rollback to a warm version
//! without a reload, a bad file that changes nothing, a bad candidate
//! reverted by its guards, and shadow comparisons that match an offline
//! comparison of the two versions on the same inputs.

use crate::common::*;
use riskserve::model::format::encode;
use riskserve::model::{Decision, Model};
use riskserve::registry::Snapshot;
use std::net::SocketAddr;

/// Writes `models/credit-risk/rollout.toml` in one rename (hidden temp first).
fn write_rollout(s: &TestServer, text: &str) {
    let dir = s.models.join(MODEL);
    let tmp = dir.join(".rollout.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("rollout.toml")).unwrap();
}

/// The bundled model with its decision threshold at `threshold`.
fn with_threshold(threshold: f64) -> Vec<u8> {
    let mut payload = bundled_payload();
    payload.meta.decision.threshold = threshold;
    encode(&payload).unwrap()
}

/// Varied applications (grade, rate, income, debt ratio).
fn rows() -> Vec<String> {
    let mut out = Vec::new();
    for (g, grade) in ["A", "B", "C", "D", "E", "F", "G"].iter().enumerate() {
        for i in 0..12 {
            let rate = 0.05 + 0.02 * g as f64 + 0.004 * i as f64;
            let income = 30_000 + 9_000 * i;
            let dti = 3.0 + 2.5 * i as f64;
            let home = ["RENT", "MORTGAGE", "OWN"][i % 3];
            out.push(format!(
                r#"{{"loan_amnt":{},"int_rate":{rate:.4},"purpose":"debt_consolidation","grade":"{grade}","annual_inc":{income},"revol_util":0.3,"emp_length":"{} years","dti":{dti:.2},"delinq_2yrs":{},"home_ownership":"{home}"}}"#,
                4_000 + 1_000 * i,
                i % 10,
                i % 2
            ));
        }
    }
    out
}

/// Predicts `row` with request key `key` on `client`; returns the version
/// that answered, checking the header and the body agree.
async fn predict_keyed(client: &mut Client, key: &str, row: &str) -> u64 {
    let headers = [("content-type", "application/json"), ("x-request-id", key)];
    let r = client.request("POST", PREDICT, &headers, row.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let version = r.json()["model_version"].as_u64().unwrap();
    assert_eq!(r.header("x-model-version"), Some(version.to_string().as_str()), "header and body name one version");
    version
}

async fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr).await.expect("connect")
}

fn canary_state(snapshot: &Snapshot) -> Option<String> {
    let rollout = snapshot.models.get(MODEL)?.rollout.as_ref()?;
    Some(format!("{:?}", rollout.canary.as_ref()?.outcome().map(|o| o.state)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_and_keys_stick_to_their_version() {
    let s = TestServer::start().await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    write_rollout(&s, "stable = 1\ncanary = { version = 2, weight = 0.1 }\n");
    s.wait_for_pass("canary applied", |snap| canary_state(snap).is_some()).await;
    let mut client = connect(s.addr).await;
    let n = 2_000;
    let mut first = Vec::with_capacity(n);
    for i in 0..n {
        first.push(predict_keyed(&mut client, &format!("applicant-{i}"), ROW).await);
    }
    let share = first.iter().filter(|&&v| v == 2).count() as f64 / n as f64;
    assert!((share - 0.10).abs() <= 0.02, "canary share {share}");
    for (i, &version) in first.iter().enumerate().step_by(7) {
        assert_eq!(predict_keyed(&mut client, &format!("applicant-{i}"), ROW).await, version, "key {i} switched");
    }
    let status = s.get("/v1/models/credit-risk").await.json();
    let applied = &status["rollout"]["applied"];
    assert_eq!((applied["stable"].as_u64(), applied["canary"]["version"].as_u64()), (Some(1), Some(2)), "{status}");
    assert_eq!(applied["canary"]["state"], "active");
    assert_eq!(status["serving_version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_rolls_back_to_a_warm_version_without_a_reload() {
    let s = TestServer::start_with(|c| c.default_policy = riskserve::config::VersionPolicy::Latest(2)).await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    let loads = |text: &str| metric(text, "riskserve_model_loads_total", &[("model", MODEL), ("result", "success")]);
    let before = loads(&s.metrics().await);
    let warm = s.server.registry.resolve(MODEL, Some(1)).unwrap();
    write_rollout(&s, "stable = 1\n");
    s.wait_serving(1).await;
    assert_eq!(s.serving_version().await, 1);
    assert_eq!(loads(&s.metrics().await), before, "no load: version 1 was already in memory");
    assert!(std::sync::Arc::ptr_eq(&warm, &s.server.registry.resolve(MODEL, None).unwrap()), "the same loaded copy");
    // And forward again by removing the file.
    std::fs::remove_file(s.models.join(MODEL).join("rollout.toml")).unwrap();
    s.wait_serving(2).await;
    assert_eq!(loads(&s.metrics().await), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rollout_file_changes_nothing_and_says_why() {
    let s = TestServer::start().await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    write_rollout(&s, "stable = 1\n");
    s.wait_serving(1).await;
    for (bad, needle) in [
        ("stable = 1\ncanary = { version = 2, weight = 7 }\n", "between 0 and 1"),
        ("stabel = 2\n", "unknown field"),
        ("stable = 9\n", "version 9 (stable) is not loaded"),
    ] {
        write_rollout(&s, bad);
        s.wait_for_pass(&format!("{bad:?} rejected"), |snap| {
            let status = snap.status.get(MODEL).and_then(|m| m.rollout.as_ref());
            status.and_then(|r| r.error.as_deref()).is_some_and(|e| e.contains(needle))
        })
        .await;
        assert_eq!(s.serving_version().await, 1, "{bad}: the last good rollout still serves");
        let status = s.get("/v1/models/credit-risk").await.json();
        assert!(status["rollout"]["error"].as_str().unwrap().contains(needle), "{status}");
        assert_eq!(status["rollout"]["applied"]["stable"], 1);
    }
    let errors = metric(&s.metrics().await, "riskserve_rollout_file_errors_total", &[("model", MODEL)]);
    assert!(errors >= Some(2.0), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_flags_everyone_is_reverted_by_its_guards() {
    let s = TestServer::start().await;
    // Rows the stable version approves, so "high_risk for everyone" is a shift.
    let stable = Model::from_bytes(bundled_model()).unwrap();
    let approved: Vec<String> = rows()
        .into_iter()
        .filter(|r| {
            let rows = riskserve::http::request::decode_with(&stable.fields, r.as_bytes()).unwrap();
            stable.predict(rows.row(0)).decision == Decision::LowRisk
        })
        .collect();
    assert!(approved.len() >= 10, "fixture: {} approved rows", approved.len());
    commit(&s.models, MODEL, 2, &with_threshold(1e-9));
    s.wait_serving(2).await;
    let min = 60;
    // Latency is left out: a p99 of 60 requests on a busy test machine is noise.
    let guards = format!("[guards]\nmin_requests = {min}\nmax_latency_ratio = 1000.0\n");
    write_rollout(&s, &format!("stable = 1\ncanary = {{ version = 2, weight = 0.2 }}\n{guards}"));
    s.wait_for_pass("canary applied", |snap| canary_state(snap).is_some()).await;
    let mut client = connect(s.addr).await;
    let mut answered_by_candidate = 0;
    let mut sent = 0;
    while canary_state(&s.server.registry.snapshot()).as_deref() == Some("None") {
        assert!(sent < 20_000, "not reverted after {sent} requests");
        let version = predict_keyed(&mut client, &format!("k{sent}"), &approved[sent % approved.len()]).await;
        answered_by_candidate += u64::from(version == 2);
        sent += 1;
    }
    assert!(answered_by_candidate >= min && answered_by_candidate <= min + 5, "{answered_by_candidate} answered");
    let status = s.get("/v1/models/credit-risk").await.json();
    let canary = &status["rollout"]["applied"]["canary"];
    assert_eq!(canary["state"], "reverted", "{status}");
    assert_eq!(canary["guard"], "decision_shift", "{status}");
    assert!(canary["reason"].as_str().unwrap().contains("high_risk share"), "{status}");
    for i in 0..200 {
        assert_eq!(predict_keyed(&mut client, &format!("k{i}"), ROW).await, 1, "reverted: stable only");
    }
    let text = s.metrics().await;
    let labels = [("model", MODEL), ("from", "canary"), ("to", "reverted"), ("reason", "decision_shift")];
    assert_eq!(metric(&text, "riskserve_rollout_transitions_total", &labels), Some(1.0));
    // A pass without a file change keeps the revert.
    s.next_pass().await;
    assert_eq!(canary_state(&s.server.registry.snapshot()).as_deref(), Some("Some(Reverted)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_compared_off_the_request_path_and_matches_an_offline_comparison() {
    let s = TestServer::start().await;
    let candidate_bytes = with_threshold(0.05);
    commit(&s.models, MODEL, 2, &candidate_bytes);
    s.wait_serving(2).await;
    write_rollout(&s, "shadow = 2\n");
    s.wait_serving(1).await;
    let rows = rows();
    let mut client = connect(s.addr).await;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(predict_keyed(&mut client, &format!("s{i}"), row).await, 1, "the shadow never answers");
    }
    // Offline: both versions on the same inputs.
    let (base, cand) = (Model::from_bytes(bundled_model()).unwrap(), Model::from_bytes(&candidate_bytes).unwrap());
    let agree_offline = rows
        .iter()
        .filter(|r| {
            let (a, b) = (
                riskserve::http::request::decode_with(&base.fields, r.as_bytes()).unwrap(),
                riskserve::http::request::decode_with(&cand.fields, r.as_bytes()).unwrap(),
            );
            base.predict(a.row(0)).decision == cand.predict(b.row(0)).decision
        })
        .count() as f64;
    assert!(agree_offline < rows.len() as f64, "fixture: the threshold change must flip some decisions");
    let labels = |a: &'static str| [("model", MODEL), ("version", "2"), ("baseline", "1"), ("agreement", a)];
    let name = "riskserve_shadow_predictions_total";
    let total = rows.len() as f64;
    eventually("every shadow copy compared", || async {
        let text = s.metrics().await;
        metric(&text, name, &labels("agree")).unwrap_or(0.0) + metric(&text, name, &labels("disagree")).unwrap_or(0.0)
            >= total
    })
    .await;
    let text = s.metrics().await;
    assert_eq!(metric(&text, name, &labels("agree")), Some(agree_offline));
    assert_eq!(metric(&text, name, &labels("disagree")), Some(total - agree_offline));
    let delta = [("model", MODEL), ("version", "2"), ("baseline", "1")];
    assert_eq!(
        metric(&text, "riskserve_shadow_probability_delta_bucket", &[delta[0], delta[1], delta[2], ("le", "0.0001")]),
        Some(total),
        "same scores"
    );
    assert!(metric(&text, "riskserve_shadow_latency_ratio_count", &delta) >= Some(total));
    let status = s.get("/v1/models/credit-risk").await.json();
    let shadow = &status["rollout"]["applied"]["shadow"];
    assert_eq!(shadow["compared"].as_f64(), Some(total), "{status}");
    assert!((shadow["agreement"].as_f64().unwrap() - agree_offline / total).abs() < 1e-9, "{status}");
    assert_eq!(shadow["dropped"], 0);
}
