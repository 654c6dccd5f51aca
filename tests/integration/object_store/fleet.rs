//! The fleet acting as one: published rollout files, a guard's revert
//! reaching every replica, a store outage mid-rollout or mid-revert, and
//! `publish --gc`.

use super::support::*;
use crate::common::{metric, Client, MODEL, WAIT};
use riskserve::sync::manifest::FileEntry;
use riskserve::sync::publish::{publish_files, unpublish};
use riskserve::sync::store::ManifestRead;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A rollout file published to the store (`riskserve publish --to URL
/// models/<name>/rollout.toml`) reaches three replicas under load: the
/// canary and its sticky keys are the same on every replica, a bad file
/// keeps the last good rollout everywhere, and `--remove` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_rollout_file_reaches_every_replica_and_keys_stick_across_replicas() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let dir = tempfile::tempdir().unwrap();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    publish_files(&store, MODEL, 2, file(2)).await.unwrap();
    let replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), &format!("r{i}"), s3.addr)).collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.proc.addr).collect();
    let loads: Vec<Load> = replicas.iter().map(Load::start).collect();
    for l in &loads {
        l.wait_serving(2, "version 2").await;
    }

    // The operator's file, checked, then published.
    let local = dir.path().join("publisher/models");
    std::fs::create_dir_all(local.join(MODEL)).unwrap();
    let rollout = local.join(MODEL).join("rollout.toml");
    std::fs::write(
        &rollout,
        "stable = 1\ncanary = { version = 2, weight = 0.1 }\n[guards]\nmax_latency_ratio = 50.0\n",
    )
    .unwrap();
    let path = rollout.to_str().unwrap();
    let (ok, text) = cli(s3.addr, &["validate", path]);
    assert!(
        ok && text.contains("OK (rollout of credit-risk)") && text.contains("canary          version 2 at 10 %"),
        "{text}"
    );
    assert!(text.contains("version(s) 1, 2 not in"), "names what is not beside it: {text}");
    let published = Instant::now();
    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), path]);
    assert!(ok && text.contains("published credit-risk/rollout.toml to") && text.contains("generation 3"), "{text}");
    let canary_on = |s: &serde_json::Value| {
        s["rollout"]["applied"]["stable"] == 1 && s["rollout"]["applied"]["canary"]["version"] == 2
    };
    let applied_in = wait_all(&addrs, "the canary applied", published, canary_on).await;
    for r in &replicas {
        assert!(r.models.join(MODEL).join("rollout.toml").is_file());
    }

    // Sticky across replicas: each key gets one version whichever replica answers.
    let mut clients = Vec::new();
    for addr in &addrs {
        clients.push(Client::connect(*addr).await.unwrap());
    }
    let keys = 400;
    let mut canary_keys = 0;
    for i in 0..keys {
        let key = format!("applicant-{i}");
        let mut seen = Vec::new();
        for c in &mut clients {
            seen.push(version_for_key(c, &key).await);
        }
        assert!(seen.iter().all(|v| *v == seen[0]), "{key} got {seen:?} on the three replicas");
        canary_keys += u64::from(seen[0] == 2);
    }
    assert!((20..=60).contains(&canary_keys), "about 10 % of {keys} keys on the canary: {canary_keys}");

    // A bad file (published without the CLI's check) keeps the last good rollout everywhere.
    let bad = bytes::Bytes::from_static(b"stable = 1\ncanary = { version = 2, weight = 7 }\n");
    let entry = FileEntry::for_bytes(&bad);
    store.put_blob(&entry.path, bad).await.unwrap();
    let change = riskserve::sync::manifest::Change::SetFile {
        model: MODEL.into(),
        name: "rollout.toml".into(),
        file: entry,
        expected: None,
    };
    riskserve::sync::publish::commit_change(&store, &change).await.unwrap();
    let kept = |s: &serde_json::Value| {
        s["rollout"]["error"].as_str().is_some_and(|e| e.contains("canary.weight")) && canary_on(s)
    };
    wait_all(&addrs, "the bad file reported, the last good rollout kept", Instant::now(), kept).await;
    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), path]);
    assert!(ok, "{text}");
    wait_all(&addrs, "the good file again", Instant::now(), |s| s["rollout"].get("error").is_none() && canary_on(s))
        .await;

    // --remove ends the rollout on every replica.
    let removed = Instant::now();
    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), "--remove", "credit-risk/rollout.toml"]);
    assert!(ok && text.contains("removed credit-risk/rollout.toml"), "{text}");
    let ended_in = wait_all(&addrs, "the rollout ended", removed, |s| s.get("rollout").is_none()).await;
    for r in &replicas {
        assert!(!r.models.join(MODEL).join("rollout.toml").exists());
    }
    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), "--remove", "credit-risk/rollout.toml"]);
    assert!(!ok && text.contains("not published"), "{text}");
    let bad_local = local.join(MODEL).join("rollout.toml");
    std::fs::write(&bad_local, "canary = 2\n").unwrap();
    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), bad_local.to_str().unwrap()]);
    assert!(!ok && text.contains("rollout file"), "a bad file is refused before upload: {text}");
    let (ok, text) = cli(s3.addr, &["validate", bad_local.to_str().unwrap()]);
    assert!(!ok && text.contains("rollout file"), "{text}");

    let (requests, failures) = finish_all(loads).await;
    println!(
        "published rollout: applied on all 3 replicas {applied_in:?} after the publish command started, \
         ended {ended_in:?} after --remove started (poll interval 200 ms); {canary_keys} of {keys} keys on the \
         canary, the same on every replica; {requests} requests, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}

/// The second case: a 10 % canary that declares everyone high risk,
/// published to three replicas under load. The first replica whose guard
/// fires publishes the revert; every replica stops sending traffic to the
/// candidate; exactly one revert is published; no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guard_revert_on_one_replica_reverts_the_fleet() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let dir = tempfile::tempdir().unwrap();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    publish_files(&store, MODEL, 2, everyone_high_risk(2)).await.unwrap();
    let stable = riskserve::sync::publish::publish_rollout(&store, MODEL, "stable = 1\n".into()).await.unwrap();
    let replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), &format!("r{i}"), s3.addr)).collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.proc.addr).collect();
    wait_all(&addrs, "stable 1 pinned", Instant::now(), |s| s["rollout"]["applied"]["stable"] == 1).await;
    // Steady load on all three, heaviest on the first: its guard has the
    // window it needs first, and the others learn of the revert from the store.
    let loads: Vec<Load> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| if i == 0 { Load::start(r) } else { Load::start_paced(r, Duration::from_millis(5)) })
        .collect();
    for l in &loads {
        l.wait_serving(1, "version 1").await;
    }

    let canary = "stable = 1\ncanary = { version = 2, weight = 0.1 }\n";
    riskserve::sync::publish::publish_rollout(&store, MODEL, canary.into()).await.unwrap();
    // The canary applied everywhere (it may already be reverted where the guard fired).
    wait_all(&addrs, "the canary applied", Instant::now(), |s| s["rollout"]["applied"]["canary"]["version"] == 2).await;
    let off_how = canary_off_times(&addrs).await;
    let off: Vec<Instant> = off_how.iter().map(|(t, _)| *t).collect();
    let how: Vec<&str> =
        off_how.iter().map(|(_, own)| if *own { "its own guard" } else { "the published revert" }).collect();
    let first = *off.iter().min().unwrap();
    let last = *off.iter().max().unwrap();
    let spread = last - first;
    assert!(how.contains(&"the published revert"), "some replica followed the store: {how:?}");

    // The published file: the canary gone, stable pinned, who and why in a comment.
    let deadline = Instant::now() + WAIT;
    let manifest = loop {
        let ManifestRead::Found { manifest, .. } = store.read_manifest(None).await.unwrap() else { panic!() };
        if manifest.generation > stable.generation + 1 {
            break manifest;
        }
        assert!(Instant::now() < deadline, "no revert published within {WAIT:?}; {}", replicas[0].proc.log.tail(30));
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let entry = manifest.models[MODEL].files["rollout.toml"].clone();
    let text = String::from_utf8(store.get_blob(&entry.path, 1 << 16).await.unwrap().to_vec()).unwrap();
    let policy = riskserve::registry::rollout::parse(text.as_bytes()).unwrap();
    assert_eq!((policy.stable, policy.canary), (Some(1), None), "{text}");
    assert!(text.contains("reverted this rollout") && text.contains("canary version 2 reverted"), "{text}");
    wait_all(&addrs, "the published revert applied", Instant::now(), |s| {
        s["rollout"]["applied"]["stable"] == 1 && s["rollout"]["applied"].get("canary").is_none()
    })
    .await;
    let mut published = 0.0;
    for addr in &addrs {
        let text = metrics_of(*addr).await;
        published += metric(&text, "riskserve_sync_fleet_reverts_total", &[("outcome", "published")]).unwrap_or(0.0);
        let serving = |v: &str| metric(&text, "riskserve_model_version_serving", &[("model", MODEL), ("version", v)]);
        assert_eq!(serving("1"), Some(1.0), "{text}");
    }
    assert_eq!(published, 1.0, "one replica publishes the revert");

    // No answer from the candidate after the fleet reverted.
    let candidate_before: u64 = loads.iter().map(|l| l.answered_by(2)).sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let candidate_after: u64 = loads.iter().map(|l| l.answered_by(2)).sum();
    assert_eq!(candidate_before, candidate_after, "the candidate answers nothing once reverted everywhere");

    let (requests, failures) = finish_all(loads).await;
    println!(
        "fleet revert (3 replicas, 200 ms polls, 10 % canary declaring everyone high risk): first revert to last \
         replica reverted {spread:?} (per replica, from the first: {:?}, by {how:?}); the candidate answered \
         {candidate_after} requests fleet-wide; {requests} requests, {} failed",
        off.iter().map(|t| *t - first).collect::<Vec<_>>(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(spread < Duration::from_secs(2), "the fleet follows within a few polls: {spread:?}");
}

/// The third case: the store goes down in the middle of a rollout.
/// Nothing unloads and no request fails while it is down; the rollout in
/// force stays; a rollout published meanwhile reaches every replica when
/// the store returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_in_the_middle_of_a_rollout_changes_nothing_until_it_returns() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let proxy = Outage::forward_to(s3.addr).await;
    let dir = tempfile::tempdir().unwrap();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    publish_files(&store, MODEL, 2, file(2)).await.unwrap();
    let canary = "stable = 1\ncanary = { version = 2, weight = 0.1 }\n[guards]\nmax_latency_ratio = 50.0\n";
    riskserve::sync::publish::publish_rollout(&store, MODEL, canary.into()).await.unwrap();
    let replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), &format!("r{i}"), proxy.addr)).collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.proc.addr).collect();
    let loads: Vec<Load> = replicas.iter().map(Load::start).collect();
    let canary_active = |s: &serde_json::Value| {
        s["rollout"]["applied"]["stable"] == 1 && s["rollout"]["applied"]["canary"]["state"] == "active"
    };
    wait_all(&addrs, "the canary running", Instant::now(), canary_active).await;

    proxy.stop();
    for addr in &addrs {
        let deadline = Instant::now() + WAIT;
        while metric(&metrics_of(*addr).await, "riskserve_sync_stale", &[]) != Some(1.0) {
            assert!(Instant::now() < deadline, "stale sync not reported within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The operator promotes while the replicas cannot reach the store.
    riskserve::sync::publish::publish_rollout(&store, MODEL, "stable = 2\n".into()).await.unwrap();
    for addr in &addrs {
        let status = get_json(*addr, &format!("/v1/models/{MODEL}")).await;
        assert!(canary_active(&status), "the rollout in force stays: {status}");
        let mut available: Vec<u64> = status["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["state"] == "available")
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        available.sort();
        assert_eq!(available, [1, 2], "nothing unloads: {status}");
        assert_eq!(crate::common::send(*addr, "GET", "/v2/health/ready", &[], b"").await.status, 200);
    }
    for l in &loads {
        assert!(l.answered_by(2) > 0, "the canary keeps its share during the outage");
    }

    proxy.start();
    let back = Instant::now();
    let converged = wait_all(&addrs, "the promotion after the outage", back, |s| {
        s["rollout"]["applied"]["stable"] == 2 && s["rollout"]["applied"].get("canary").is_none()
    })
    .await;
    let (requests, failures) = finish_all(loads).await;
    println!(
        "store outage mid-rollout: 3 replicas kept the canary and both versions; converged on the rollout published \
         during the outage {converged:?} after the store returned; {requests} requests, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}

/// `riskserve publish --to URL --gc` on the real S3 server: within the
/// grace period nothing a recent generation named goes (a replica fetching
/// an older generation's files is not broken: see `sync::gc`'s tests);
/// after it, the unreferenced file goes and a fresh replica still starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_gc_removes_only_files_no_recent_generation_names() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let dir = tempfile::tempdir().unwrap();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    publish_files(&store, MODEL, 2, file(2)).await.unwrap();
    unpublish(&store, MODEL, 1).await.unwrap();
    let one = FileEntry::for_bytes(&model_bytes(1));

    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), "--gc", "--older-than", "1h"]);
    assert!(ok && text.contains("removed 0 unreferenced file(s); kept 2 named by generation(s) [3, 2, 1]"), "{text}");
    assert!(store.get_blob(&one.path, 1 << 24).await.is_ok(), "generation 2 named it less than 1 h ago");

    // Object times have a resolution of a second: let every write be in the past.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (ok, text) = cli(s3.addr, &["publish", "--to", &url(), "--gc", "--older-than", "0s"]);
    assert!(ok && text.contains("removed 1 unreferenced file(s); kept 1 named by generation(s) [3]"), "{text}");
    assert!(store.get_blob(&one.path, 1 << 24).await.is_err(), "version 1's file is gone");
    let r = replica(dir.path(), "fresh", s3.addr);
    let load = Load::start(&r);
    load.wait_serving(2, "a fresh replica after the collection").await;
    let (requests, failures) = load.finish().await;
    assert!(failures.is_empty() && requests > 0, "{failures:?}");

    for (args, needle) in [
        (vec!["--gc", "--older-than", "soon"], "unit"),
        (vec!["--gc", "models/credit-risk/3"], "cannot be used with"),
        (vec!["--older-than", "1h", "models/credit-risk/3"], "--gc"),
    ] {
        let mut all = vec!["publish", "--to", url().leak()];
        all.extend(args);
        let (ok, text) = cli(s3.addr, &all);
        assert!(!ok && text.contains(needle), "{all:?}: {text}");
    }
}

/// The store is unreachable when the first replica's guard fires: that
/// replica reverts at once anyway, counts the publish as an error, and the
/// others keep the canary; when the store returns, the revert is published
/// and every replica follows. No request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revert_while_the_store_is_down_holds_locally_and_reaches_the_fleet_when_it_returns() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let proxy = Outage::forward_to(s3.addr).await;
    let dir = tempfile::tempdir().unwrap();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    publish_files(&store, MODEL, 2, everyone_high_risk(2)).await.unwrap();
    let replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), &format!("r{i}"), proxy.addr)).collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.proc.addr).collect();
    let loads: Vec<Load> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| if i == 0 { Load::start(r) } else { Load::start_paced(r, Duration::from_millis(5)) })
        .collect();
    let canary = "stable = 1\ncanary = { version = 2, weight = 0.1 }\n";
    riskserve::sync::publish::publish_rollout(&store, MODEL, canary.into()).await.unwrap();
    wait_all(&addrs, "the canary applied", Instant::now(), |s| s["rollout"]["applied"]["canary"]["version"] == 2).await;
    proxy.stop();

    // The first replica's guard fires: reverted locally, the publish fails.
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics_of(addrs[0]).await;
        if metric(&text, "riskserve_sync_fleet_reverts_total", &[("outcome", "error")]).unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no failed revert publish on r0: {}", replicas[0].proc.log.tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r0 = get_json(addrs[0], &format!("/v1/models/{MODEL}")).await;
    assert_eq!(r0["rollout"]["applied"]["canary"]["state"], "reverted", "the local revert holds: {r0}");
    for addr in &addrs[1..] {
        let s = get_json(*addr, &format!("/v1/models/{MODEL}")).await;
        assert_eq!(s["rollout"]["applied"]["canary"]["state"], "active", "the others keep the canary: {s}");
    }

    proxy.start();
    let back = Instant::now();
    let followed = wait_all(&addrs[1..], "the revert after the store returned", back, |s| {
        s["rollout"]["applied"]["stable"] == 1 && s["rollout"]["applied"].get("canary").is_none()
    })
    .await;
    let mut published = 0.0;
    for addr in &addrs {
        let text = metrics_of(*addr).await;
        published += metric(&text, "riskserve_sync_fleet_reverts_total", &[("outcome", "published")]).unwrap_or(0.0);
    }
    assert_eq!(published, 1.0, "the revert was published once the store was back");
    let (requests, failures) = finish_all(loads).await;
    println!(
        "revert with the store down: held locally; the other replicas followed {followed:?} after the store \
         returned; {requests} requests, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}
