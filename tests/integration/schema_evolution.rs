//! Schema evolution never fails a request: under concurrent load, a version
//! with ten inputs is joined by one with twelve (a new number and a new
//! category, both optional), first as a 10 % canary, then promoted, then
//! rolled back by deleting it. Clients sending the old ten fields and
//! clients sending the new twelve get 200 from whichever version answers;
//! a misspelled field is refused with 400 naming it throughout; an optional
//! field left out is imputed and counted.

use crate::common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reference row with the two new fields.
const ROW12: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"debt_consolidation","grade":"C","annual_inc":52000.0,"revol_util":0.226,"emp_length":"9 years","dti":14.39,"delinq_2yrs":1,"home_ownership":"MORTGAGE","term":60,"verification_status":"Not Verified"}"#;
/// The reference row with a typo.
const TYPO: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"debt_consolidation","grade":"C","annual_inc":52000.0,"revol_util":0.226,"emp_length":"9 years","dti":14.39,"delinq_2yrs":1,"home_ownership":"MORTGAGE","trem":60}"#;

#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    /// Answers by (client kind, version).
    by_version: Mutex<BTreeMap<(&'static str, u64), u64>>,
    failures: Mutex<Vec<String>>,
    typos_refused: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_and_twelve_field_clients_get_200_through_canary_promotion_and_rollback() {
    let twelve = twelve_feature_model();
    let s = TestServer::start().await;
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Twelve-field clients start once version 2 is loaded: before that no
    // version declares `term`, and refusing it is the typo rule.
    let twelve_on = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut clients = Vec::new();
    for c in 0..9 {
        let (seen, stop, addr, twelve_on) = (seen.clone(), stop.clone(), s.addr, twelve_on.clone());
        let (kind, body) = match c % 3 {
            0 => ("ten", ROW),
            1 => ("twelve", ROW12),
            _ => ("typo", TYPO),
        };
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.expect("connect");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if kind == "twelve" && !twelve_on.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                n += 1;
                let key = format!("{kind}-{c}-{n}");
                let headers = [("content-type", "application/json"), ("x-request-id", key.as_str())];
                match client.request("POST", PREDICT, &headers, body.as_bytes()).await {
                    Ok(r) if kind == "typo" => {
                        let named = r.json()["fields"].as_array().is_some_and(|f| {
                            f.iter().any(|p| {
                                p["field"] == "trem" && p["problem"].as_str().unwrap_or("").contains("unknown")
                            })
                        });
                        if r.status == 400 && named {
                            seen.typos_refused.fetch_add(1, Ordering::Relaxed);
                        } else {
                            seen.failures.lock().unwrap().push(format!("typo: {}: {}", r.status, r.text()));
                        }
                    }
                    Ok(r) if r.status == 200 => {
                        let v = r.json()["model_version"].as_u64().unwrap_or(0);
                        *seen.by_version.lock().unwrap().entry((kind, v)).or_default() += 1;
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => seen.failures.lock().unwrap().push(format!("{kind}: {}: {}", r.status, r.text())),
                    Err(e) => {
                        seen.failures.lock().unwrap().push(format!("{kind}: {e}"));
                        client = Client::connect(addr).await.expect("reconnect");
                    }
                }
            }
        }));
    }
    let count = |kind: &'static str, v: u64| seen.by_version.lock().unwrap().get(&(kind, v)).copied().unwrap_or(0);
    eventually("traffic on version 1", || async { count("ten", 1) > 50 }).await;

    // The twelve-field version arrives held back, then as a 10 % canary.
    let rollout = s.models.join(MODEL).join("rollout.toml");
    std::fs::write(&rollout, "stable = 1\n").unwrap();
    s.next_pass().await;
    commit(&s.models, MODEL, 2, &twelve);
    s.wait_for_pass("version 2 loaded", |snap| snap.models.get(MODEL).is_some_and(|m| m.versions.contains_key(&2)))
        .await;
    twelve_on.store(true, Ordering::Relaxed);
    eventually("twelve-field clients answered by version 1", || async { count("twelve", 1) > 50 }).await;
    std::fs::write(&rollout, "stable = 1\ncanary = { version = 2, weight = 0.1 }\n[guards]\nmin_requests = 1000000\n")
        .unwrap();
    eventually("both kinds answered by the canary", || async { count("ten", 2) > 20 && count("twelve", 2) > 20 }).await;
    let imputed = s.metrics().await;
    let term = testkit::prometheus::value(
        &imputed,
        "riskserve_imputed_features_total",
        &[("model", MODEL), ("version", "2"), ("feature", "term")],
    );
    assert!(term.unwrap_or(0.0) > 0.0, "ten-field requests to version 2 impute `term`: {term:?}");

    // Promoted: every answer from version 2.
    std::fs::remove_file(&rollout).unwrap();
    s.wait_serving(2).await;
    let before = (count("ten", 2), count("twelve", 2));
    eventually("version 2 takes all traffic", || async {
        count("ten", 2) > before.0 + 100 && count("twelve", 2) > before.1 + 100
    })
    .await;

    // Rolled back by deleting it: version 1 answers twelve-field clients too,
    // ignoring the fields it does not declare.
    remove_version(&s.models, MODEL, 2);
    s.wait_serving(1).await;
    let back = (count("ten", 1), count("twelve", 1));
    eventually("version 1 answers both kinds again", || async {
        count("ten", 1) > back.0 + 100 && count("twelve", 1) > back.1 + 100
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = seen.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), failures.first());
    assert!(seen.typos_refused.load(Ordering::Relaxed) > 100, "the typo was refused throughout");
    let listing = s.get("/v1/models/credit-risk").await.json();
    assert!(listing["versions"][0]["inputs"].as_array().is_some_and(|i| i.len() == 10), "{listing}");
}
