//! Publishing and syncing versions: the publish protocol on moto, three
//! replicas converging under load, rclone's read path, `train --publish-to`,
//! and a fresh replica while the newest object is junk.

use super::support::*;
use crate::common::{bundled_payload, metric, MODEL, WAIT};
use riskserve::model::format::encode;
use riskserve::repository::LocalDirectory;
use riskserve::sync::manifest::FileEntry;
use riskserve::sync::publish::{publish_files, unpublish, PublishError};
use riskserve::sync::store::{ManifestRead, Store, StoreError};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_publish_protocol_and_a_manifest_race_between_two_publish_commands() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let dir = tempfile::tempdir().unwrap();
    let env = aws_env(s3.addr);
    let publish = |models: &Path, version: u64| {
        std::process::Command::new(env!("CARGO_BIN_EXE_riskserve"))
            .args(["publish", "--to", &url()])
            .arg(LocalDirectory::new(models).version_dir(MODEL, version))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    };
    let a = dir.path().join("a/models");
    let b = dir.path().join("b/models");
    LocalDirectory::new(&a).publish(MODEL, 1, &model_bytes(1)).unwrap();
    let out = publish(&a, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("manifest generation 1"), "{text}");
    let out = publish(&a, 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already published"), "idempotent");

    // Moto honours If-Match: a write on a stale ETag is refused.
    let ManifestRead::Found { manifest, etag, .. } = store.read_manifest(None).await.unwrap() else { panic!() };
    let stale = etag.expect("moto gives ETags");
    publish_files(&store, MODEL, 2, file(2)).await.unwrap();
    assert!(matches!(store.replace_manifest(&manifest, Some(&stale)).await, Err(StoreError::Changed { .. })));
    // And If-None-Match: an unchanged manifest is not downloaded again.
    let ManifestRead::Found { etag, .. } = store.read_manifest(None).await.unwrap() else { panic!() };
    assert!(matches!(store.read_manifest(etag.as_deref()).await.unwrap(), ManifestRead::Unchanged));

    // Two publishers race for version 3 with different bytes: one wins, the
    // other is told it lost; the manifest holds the winner's bytes.
    let mut other = bundled_payload();
    other.meta.model_version = 3;
    other.meta.created_at = "2001-01-01T00:00:00Z".into();
    LocalDirectory::new(&a).publish(MODEL, 3, &model_bytes(3)).unwrap();
    LocalDirectory::new(&b).publish(MODEL, 3, &encode(&other).unwrap()).unwrap();
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| publish(&a, 3));
        let tb = s.spawn(|| publish(&b, 3));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(ra.status.success() != rb.status.success(), "exactly one publisher wins");
    let (winner, loser, winner_dir) = if ra.status.success() { (ra, rb, &a) } else { (rb, ra, &b) };
    let told = String::from_utf8_lossy(&loser.stderr);
    assert!(told.contains("another publisher"), "the loser is told it lost: {told}");
    assert!(String::from_utf8_lossy(&winner.stdout).contains("generation 3"));
    let ManifestRead::Found { manifest, .. } = store.read_manifest(None).await.unwrap() else { panic!() };
    let won = std::fs::read(LocalDirectory::new(winner_dir).model_file(MODEL, 3)).unwrap();
    assert!(manifest.version(MODEL, 3).unwrap().files["model.json"].matches(&won));
    assert_eq!(manifest.generation, 3);
}

/// The issue's scenario: three replicas under steady load, 20 versions
/// published (some uploads interrupted midway, one race between two
/// publishers), the store stopped for a while mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_converge_under_load_through_races_interruptions_and_an_outage() {
    let outage_for =
        Duration::from_secs(std::env::var("RISKSERVE_SYNC_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let proxy = Outage::forward_to(s3.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let mut published = std::collections::BTreeMap::new();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    published.insert(1, model_bytes(1));
    let replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), &format!("r{i}"), proxy.addr)).collect();
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.proc.addr).collect();
    let loads: Vec<Load> = replicas.iter().map(Load::start).collect();
    for l in &loads {
        l.wait_serving(1, "first version").await;
    }

    let mut convergence = Vec::new();
    for version in 2..=21u64 {
        if version % 5 == 0 {
            // An upload interrupted midway: half the bytes under the
            // version's content address, no manifest update. Replicas must
            // not notice; the re-run publish repairs the object.
            let bytes = model_bytes(version);
            let entry = FileEntry::for_bytes(&bytes);
            let half = bytes::Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
            store.inner().put(&store.full_key(&entry.path), half.into()).await.unwrap();
        }
        // Convergence is counted from before the publish starts (uploads
        // included), so it can only be overstated.
        let started = Instant::now();
        if version == 12 {
            // Two publishers race for this version with different bytes.
            let mut other = bundled_payload();
            other.meta.model_version = version;
            other.meta.created_at = "2001-01-01T00:00:00Z".into();
            let theirs = vec![("model.json".to_string(), bytes::Bytes::from(encode(&other).unwrap()))];
            let (mine, their) = tokio::join!(
                publish_files(&store, MODEL, version, file(version)),
                publish_files(&store, MODEL, version, theirs.clone())
            );
            let (won, lost) = match (mine, their) {
                (Ok(w), Err(l)) => {
                    published.insert(version, model_bytes(version));
                    (w, l)
                }
                (Err(l), Ok(w)) => {
                    published.insert(version, theirs[0].1.to_vec());
                    (w, l)
                }
                other => panic!("exactly one of two racing publishers wins: {other:?}"),
            };
            assert!(matches!(lost, PublishError::LostRace { .. } | PublishError::AlreadyDifferent { .. }), "{lost}");
            assert!(lost.to_string().contains("another publisher"), "{lost}");
            assert!(won.changed);
        } else {
            publish_files(&store, MODEL, version, file(version)).await.unwrap();
            published.insert(version, model_bytes(version));
        }
        for l in &loads {
            let t = l.wait_serving(version, "convergence").await;
            convergence.push(t.saturating_duration_since(started));
        }
    }

    // The store goes away. Serving goes on, sync says it is stale.
    proxy.stop();
    let stopped = Instant::now();
    for addr in &addrs {
        let deadline = Instant::now() + WAIT;
        while metric(&metrics_of(*addr).await, "riskserve_sync_stale", &[]) != Some(1.0) {
            assert!(Instant::now() < deadline, "stale sync not reported within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(crate::common::send(*addr, "GET", "/v2/health/ready", &[], b"").await.status, 200, "still ready");
        let status = get_json(*addr, "/v1/models").await;
        assert_eq!(status["sync"]["stale"], true, "{status}");
    }
    // A version published while the replicas cannot reach the store.
    publish_files(&store, MODEL, 22, file(22)).await.unwrap();
    published.insert(22, model_bytes(22));
    tokio::time::sleep(outage_for.saturating_sub(stopped.elapsed())).await; // the outage itself
    for l in &loads {
        assert!(l.first_serving(22).is_none(), "nothing new arrives while the store is down");
    }
    proxy.start();
    let back = Instant::now();
    let mut after_outage = Vec::new();
    for l in &loads {
        after_outage.push(l.wait_serving(22, "convergence after the outage").await.saturating_duration_since(back));
    }

    // Nothing changes for a while: polls are 304s and download nothing.
    let before: Vec<String> = futures::future::join_all(addrs.iter().map(|a| metrics_of(*a))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<String> = futures::future::join_all(addrs.iter().map(|a| metrics_of(*a))).await;
    let mut unchanged_polls = 0.0;
    let mut manifest_bytes = 0.0;
    for (b, a) in before.iter().zip(&after) {
        let polls = |t: &str| metric(t, "riskserve_sync_polls_total", &[("outcome", "unchanged")]).unwrap_or(0.0);
        let bytes =
            |t: &str| metric(t, "riskserve_sync_downloaded_bytes_total", &[("kind", "manifest")]).unwrap_or(0.0);
        unchanged_polls += polls(a) - polls(b);
        manifest_bytes += bytes(a) - bytes(b);
    }
    assert!(unchanged_polls >= 3.0, "replicas keep polling: {unchanged_polls}");
    assert_eq!(manifest_bytes, 0.0, "an unchanged poll downloads no manifest");

    // Removal: version 1 leaves the manifest, then each local copy goes.
    let generation = unpublish(&store, MODEL, 1).await.unwrap().generation;
    for r in &replicas {
        let gone = LocalDirectory::new(&r.models).version_dir(MODEL, 1);
        let deadline = Instant::now() + WAIT;
        while gone.exists() {
            assert!(Instant::now() < deadline, "{} not removed within {WAIT:?}", gone.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (r, addr) in replicas.iter().zip(&addrs) {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = get_json(*addr, "/v1/models").await;
            if status["sync"]["generation"] == generation {
                assert_eq!(status["sync"]["stale"], false);
                break;
            }
            assert!(Instant::now() < deadline, "replica not on generation {generation}: {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check_bytes(r, *addr, &published).await;
    }

    let (requests, failures) = finish_all(loads).await;
    convergence.sort();
    after_outage.sort();
    println!(
        "three replicas: {} convergences, p50 {:?} p99 {:?} max {:?}; after a {:?} outage: max {:?}; \
         {requests} requests, {} failed; manifest bytes per unchanged poll {}",
        convergence.len(),
        percentile(&convergence, 0.5),
        percentile(&convergence, 0.99),
        convergence.last().unwrap(),
        outage_for,
        after_outage.last().unwrap(),
        failures.len(),
        manifest_bytes / unchanged_polls,
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(requests > 100, "steady load: {requests}");
}

/// rclone's S3 server as the read path: versions published into the
/// directory it serves (through `file://`, the shared-mount protocol) reach a
/// replica that syncs over S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rclone_serves_the_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3root");
    let shared = Store::open(&format!("file://{}/{BUCKET}/{PREFIX}", root.display())).unwrap();
    publish_files(&shared, MODEL, 1, file(1)).await.unwrap();
    let s3 = S3Server::rclone(&root).await;
    let r = replica(dir.path(), "r", s3.addr);
    let load = Load::start(&r);
    load.wait_serving(1, "rclone: first version").await;
    let status = get_json(r.proc.addr, "/v1/models").await;
    assert_eq!(status["sync"]["generation"], 1, "on the generation of the first sync: {status}");
    assert_eq!(status["sync"]["source"], url());
    publish_files(&shared, MODEL, 2, file(2)).await.unwrap();
    load.wait_serving(2, "rclone: second version").await;
    unpublish(&shared, MODEL, 1).await.unwrap();
    let gone = LocalDirectory::new(&r.models).version_dir(MODEL, 1);
    let deadline = Instant::now() + WAIT;
    while gone.exists() {
        assert!(Instant::now() < deadline, "version 1 not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = std::collections::BTreeMap::from([(2, model_bytes(2))]);
    check_bytes(&r, r.proc.addr, &published).await;
    let text = metrics_of(r.proc.addr).await;
    assert!(metric(&text, "riskserve_sync_polls_total", &[("outcome", "updated")]).unwrap() >= 3.0, "{text}");
    assert_eq!(metric(&text, "riskserve_sync_manifest_generation", &[]), Some(3.0));
    let (requests, failures) = load.finish().await;
    assert!(failures.is_empty() && requests > 0, "{failures:?}");
}

/// `train --publish-to` and `publish --remove` through the binary, on a
/// `file://` store (a shared mount).
#[tokio::test]
async fn train_publishes_to_a_store_and_publish_removes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store_url = format!("file://{}/shared/credit", d.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskserve"))
            .args(args)
            .current_dir(d)
            .env("CI", "true")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    assert!(run(&["synth", "--rows", "800", "--seed", "2", "--out", "loans.csv"]).0);
    let (ok, text) = run(&["train", "--data", "loans.csv", "--algorithm", "logistic", "--publish-to", &store_url]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("published credit-risk version 1 to {store_url}: manifest generation 1")), "{text}");
    let store = Store::open(&store_url).unwrap();
    let ManifestRead::Found { manifest, .. } = store.read_manifest(None).await.unwrap() else { panic!("{text}") };
    let local = std::fs::read(d.join("models/credit-risk/1/model.json")).unwrap();
    assert!(manifest.version(MODEL, 1).unwrap().files["model.json"].matches(&local));

    let (ok, text) = run(&["publish", "--to", &store_url, "--remove", "credit-risk/1"]);
    assert!(ok && text.contains("removed credit-risk version 1") && text.contains("generation 2"), "{text}");
    let (ok, text) = run(&["publish", "--to", &store_url, "--remove", "credit-risk/1"]);
    assert!(!ok && text.contains("not published"), "{text}");
    let (ok, text) = run(&["publish", "--to", &store_url, "--remove", "credit-risk/07"]);
    assert!(!ok && text.contains("<model>/<version>"), "{text}");
    let (ok, text) = run(&["publish", "--to", "ftp://x/y", "models/credit-risk/1"]);
    assert!(!ok && text.contains("unsupported scheme"), "{text}");
}

/// The issue's first case: three replicas under load serve version 2, then
/// version 2's object in the store is overwritten with junk. A fourth
/// replica starts anyway, ready on version 1 within 5 s, reports version 2
/// as failed, and serves it once a good object is published again; no
/// request fails anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_replica_starts_on_the_newest_valid_version_while_the_newest_object_is_junk() {
    let s3 = S3Server::moto().await;
    let store = s3_store(s3.addr);
    let dir = tempfile::tempdir().unwrap();
    publish_files(&store, MODEL, 1, file(1)).await.unwrap();
    let replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), &format!("r{i}"), s3.addr)).collect();
    let mut loads: Vec<Load> = replicas.iter().map(Load::start).collect();
    publish_files(&store, MODEL, 2, file(2)).await.unwrap();
    for l in &loads {
        l.wait_serving(2, "version 2 on the first three replicas").await;
    }
    let junk = FileEntry::for_bytes(&model_bytes(2));
    store.inner().put(&store.full_key(&junk.path), bytes::Bytes::from_static(b"junk").into()).await.unwrap();

    let started = Instant::now();
    let fourth = replica(dir.path(), "r3", s3.addr);
    let ready_after = started.elapsed();
    let ready = crate::common::send(fourth.proc.addr, "GET", "/v2/health/ready", &[], b"").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(ready_after < Duration::from_secs(5), "ready after {ready_after:?}; log:\n{}", fourth.proc.log.tail(30));
    let status = get_json(fourth.proc.addr, &format!("/v1/models/{MODEL}")).await;
    let row = |status: &serde_json::Value, v: u64| {
        status["versions"].as_array().unwrap().iter().find(|r| r["version"] == v).cloned().unwrap_or_default()
    };
    assert_eq!(status["serving_version"], 1, "{status}");
    assert_eq!(row(&status, 1)["state"], "available", "{status}");
    assert_eq!(row(&status, 2)["state"], "failed", "{status}");
    assert!(row(&status, 2)["reason"].as_str().unwrap().contains("digest mismatch"), "{status}");
    let sync = get_json(fourth.proc.addr, "/v1/models").await["sync"].clone();
    assert_eq!(sync["failed"], serde_json::json!([format!("{MODEL}/2")]), "{sync}");
    assert!(sync["last_error"].as_str().unwrap().contains("does not match the manifest"), "{sync}");
    loads.push(Load::start(&fourth));
    loads[3].wait_serving(1, "the fourth replica serves version 1").await;

    // The publisher re-runs the publish: the object is whole again.
    let repaired = publish_files(&store, MODEL, 2, file(2)).await.unwrap();
    assert_eq!((repaired.changed, repaired.uploaded), (false, 1), "the manifest stands; the object is re-uploaded");
    let repaired_at = Instant::now();
    let healed = loads[3].wait_serving(2, "the fourth replica serves the repaired version").await;
    let status = get_json(fourth.proc.addr, &format!("/v1/models/{MODEL}")).await;
    assert_eq!(row(&status, 2)["state"], "available", "{status}");
    let sync = get_json(fourth.proc.addr, "/v1/models").await["sync"].clone();
    assert!(sync.get("failed").is_none() && sync.get("last_error").is_none(), "{sync}");

    let (requests, failures) = finish_all(loads).await;
    println!(
        "fresh replica with a junk newest object: ready on version 1 after {ready_after:?}; serving version 2 {:?} \
         after the repair; {requests} requests on 4 replicas, {} failed",
        healed.saturating_duration_since(repaired_at),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}
