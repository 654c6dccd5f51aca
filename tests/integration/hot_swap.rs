//! The product's promise under real concurrent load: 16 keep-alive clients
//! send predictions continuously while 50 versions are committed one after
//! another. Zero non-200 responses, every response names a committed
//! version, and after each commit settles unpinned traffic reaches it.

use crate::common::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const VERSIONS: u64 = 50;

#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    versions: Mutex<BTreeSet<u64>>,
    /// Highest version any response has named.
    newest: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_sixteen_concurrent_clients_fail_no_request() {
    let s = TestServer::start().await;
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (seen, stop, addr) = (seen.clone(), stop.clone(), s.addr);
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.expect("connect");
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match client.request("POST", PREDICT, &[("content-type", "application/json")], ROW.as_bytes()).await {
                    Ok(r) if r.status == 200 => {
                        let v = r.json()["model_version"].as_u64().unwrap_or(0);
                        assert_eq!(r.header("x-model-version"), Some(v.to_string().as_str()));
                        seen.versions.lock().unwrap().insert(v);
                        seen.newest.fetch_max(v, Ordering::Relaxed);
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => seen.failures.lock().unwrap().push(format!("{}: {}", r.status, r.text())),
                    Err(e) => {
                        seen.failures.lock().unwrap().push(e);
                        client = Client::connect(addr).await.expect("reconnect");
                    }
                }
            }
        }));
    }
    eventually("traffic flowing", || async { seen.ok.load(Ordering::Relaxed) > 100 }).await;

    let mut committed = BTreeSet::from([1u64]);
    for version in 2..=VERSIONS + 1 {
        commit(&s.models, MODEL, version, bundled_model());
        committed.insert(version);
        // Settled: the clients' own traffic reaches the new version.
        s.wait_serving(version).await;
        let before = seen.ok.load(Ordering::Relaxed);
        eventually(&format!("clients reach v{version}"), || async {
            seen.newest.load(Ordering::Relaxed) >= version && seen.ok.load(Ordering::Relaxed) > before
        })
        .await;
        // Keep the disk small: the previous version is no longer served.
        if version > 3 {
            remove_version(&s.models, MODEL, version - 2);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(WAIT, c).await.expect("client stops").expect("client task ok");
    }

    let failures = seen.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    let named = seen.versions.lock().unwrap().clone();
    assert!(named.is_subset(&committed), "responses named uncommitted versions: {named:?}");
    assert_eq!(s.serving_version().await, VERSIONS + 1);
    let total = seen.ok.load(Ordering::Relaxed);
    assert!(total > 1000, "only {total} requests during the swaps");
    // Retired versions leave no series behind.
    let text = s.metrics().await;
    let series = text.lines().filter(|l| l.starts_with("riskserve_inference_duration_seconds_count")).count();
    assert_eq!(series, 1, "{text}");
    let swaps = metric(&text, "riskserve_model_swaps_total", &[("model", MODEL)]).unwrap();
    assert!(swaps >= VERSIONS as f64, "{swaps} swaps");
}
