//! Object-store sync against real S3-compatible servers started here on
//! 127.0.0.1 free ports: `moto_server` for the publish protocol (conditional
//! GET/PUT) and three replicas under load, and `rclone serve s3` as a
//! second, independent implementation of the read path. Replicas are the
//! real binary (`riskserve serve --sync-from`), each with the standard
//! `AWS_*` variables; the test publishes through the library.

use crate::common::{bundled_payload, metric, spawn_binary, Client, Spawned, MODEL, PREDICT, ROW, WAIT};
use object_store::aws::AmazonS3Builder;
use riskserve::model::format::{decode, encode};
use riskserve::repository::LocalDirectory;
use riskserve::sync::manifest::{sha256_hex, FileEntry};
use riskserve::sync::publish::{publish_files, unpublish, PublishError};
use riskserve::sync::store::{ManifestRead, Store, StoreError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUCKET: &str = "models";
const PREFIX: &str = "team/risk";

/// The model file of `version`: the bundled forest, recorded as trained as
/// that version, so every version has its own bytes and digest.
fn model_bytes(version: u64) -> Vec<u8> {
    let mut payload = bundled_payload();
    payload.meta.model_version = version;
    encode(&payload).unwrap()
}

fn payload_digest(bytes: &[u8]) -> String {
    decode(bytes).unwrap().1
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An S3-compatible server as a child process, killed on drop.
struct S3Server {
    _child: testkit::Child,
    addr: SocketAddr,
}

impl S3Server {
    async fn moto() -> S3Server {
        let port = free_port();
        let child = std::process::Command::new(testkit::tools::tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { _child: testkit::Child(child), addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        wait_listening(server.addr, "moto_server").await;
        // moto accepts an unsigned bucket creation.
        let reply = crate::common::send(server.addr, "PUT", &format!("/{BUCKET}"), &[], b"").await;
        assert_eq!(reply.status, 200, "create bucket: {}", reply.text());
        server
    }

    /// `rclone serve s3` over `dir` (each subdirectory is a bucket).
    async fn rclone(dir: &Path) -> S3Server {
        let port = free_port();
        let child = std::process::Command::new(testkit::tools::tool("rclone"))
            // rclone caches directory entries for 5 min by default: a
            // rewritten manifest.json would be served with its old size.
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}"), "--auth-key", "test,test"])
            .args(["--dir-cache-time", "0s"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rclone serve s3");
        let server = S3Server { _child: testkit::Child(child), addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        wait_listening(server.addr, "rclone serve s3").await;
        server
    }
}

/// The `AWS_*` environment a replica gets for `endpoint`.
fn aws_env(endpoint: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), format!("http://{endpoint}")),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// The test's own client of the store (the publisher), configured explicitly.
fn s3_store(endpoint: SocketAddr) -> Store {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(format!("http://{endpoint}"))
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .unwrap();
    Store::from_parts(Arc::new(s3), PREFIX, &format!("s3://{BUCKET}/{PREFIX}"))
}

fn url() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

fn file(version: u64) -> Vec<(String, bytes::Bytes)> {
    vec![("model.json".to_string(), bytes::Bytes::from(model_bytes(version)))]
}

/// A replica: `riskserve serve --sync-from` over its own empty models directory.
struct Replica {
    proc: Spawned,
    models: PathBuf,
}

fn replica(dir: &Path, name: &str, endpoint: SocketAddr) -> Replica {
    let models = dir.join(name).join("models");
    std::fs::create_dir_all(&models).unwrap();
    let env = aws_env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let proc = spawn_binary(&models, &["--sync-from", &url(), "--sync-interval-ms", "200"], &env);
    Replica { proc, models }
}

async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let reply = crate::common::send(addr, "GET", path, &[], b"").await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

async fn metrics_of(addr: SocketAddr) -> String {
    crate::common::send(addr, "GET", "/metrics", &[], b"").await.text()
}

/// Steady load on one replica: one keep-alive connection, requests back to
/// back; every answer's version and time recorded, every failure counted.
struct Load {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    /// (when, version served) each time the served version changed.
    changes: Arc<Mutex<Vec<(Instant, u64)>>>,
    /// Answers per version.
    answers: Arc<Mutex<std::collections::BTreeMap<u64, u64>>>,
    task: tokio::task::JoinHandle<()>,
    /// The replica's log, shown when a wait fails.
    log: testkit::Log,
}

impl Load {
    fn start(replica: &Replica) -> Load {
        Load::start_paced(replica, Duration::ZERO)
    }

    /// [`Load::start`] with `pause` between requests (a lighter steady load).
    fn start_paced(replica: &Replica, pause: Duration) -> Load {
        let (addr, log) = (replica.proc.addr, replica.proc.log.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let (s, r, f, c, a) = (stop.clone(), requests.clone(), failures.clone(), changes.clone(), answers.clone());
        let task = tokio::spawn(async move {
            let mut client = Client::connect(addr).await.expect("connect");
            let mut last = 0;
            while !s.load(Ordering::Relaxed) {
                let reply =
                    client.request("POST", PREDICT, &[("content-type", "application/json")], ROW.as_bytes()).await;
                r.fetch_add(1, Ordering::Relaxed);
                match reply {
                    Ok(reply) if reply.status == 200 => {
                        let v = reply.json()["model_version"].as_u64().unwrap_or(0);
                        *a.lock().unwrap().entry(v).or_insert(0) += 1;
                        if v != last {
                            c.lock().unwrap().push((Instant::now(), v));
                            last = v;
                        }
                    }
                    Ok(reply) => f.lock().unwrap().push(format!("{}: {}", reply.status, reply.text())),
                    Err(e) => {
                        f.lock().unwrap().push(e);
                        match Client::connect(addr).await {
                            Ok(c) => client = c,
                            Err(e) => {
                                f.lock().unwrap().push(format!("reconnect: {e}"));
                                return;
                            }
                        }
                    }
                }
                if pause.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(pause).await;
                }
            }
        });
        Load { stop, requests, failures, changes, answers, task, log }
    }

    /// When this replica first served `version` (or a newer one).
    fn first_serving(&self, version: u64) -> Option<Instant> {
        self.changes.lock().unwrap().iter().find(|(_, v)| *v >= version).map(|(t, _)| *t)
    }

    async fn wait_serving(&self, version: u64, what: &str) -> Instant {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = self.first_serving(version) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: version {version} not served within {WAIT:?}; replica log:\n{}",
                self.log.tail(30)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Answers given by `version` so far.
    fn answered_by(&self, version: u64) -> u64 {
        self.answers.lock().unwrap().get(&version).copied().unwrap_or(0)
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (self.requests.load(Ordering::Relaxed), self.failures.lock().unwrap().clone())
    }
}

/// A TCP forwarder between the replicas and the store that the test can
/// take down (every connection refused and every open one cut) and bring back.
struct Outage {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Outage {
    async fn forward_to(target: SocketAddr) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Outage { addr, down, conns, _accept: accept }
    }

    fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn start(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Every version a replica lists as available has the digest of the bytes
/// published for it, and every local copy is exactly those bytes.
async fn check_bytes(r: &Replica, addr: SocketAddr, published: &std::collections::BTreeMap<u64, Vec<u8>>) {
    let models = get_json(addr, &format!("/v1/models/{MODEL}")).await;
    for v in models["versions"].as_array().unwrap() {
        if v["state"] == "available" {
            let version = v["version"].as_u64().unwrap();
            let expected = published.get(&version).map(|b| payload_digest(b));
            assert_eq!(v["digest"].as_str(), expected.as_deref(), "version {version}");
        }
    }
    let local = LocalDirectory::new(&r.models);
    for (version, bytes) in published {
        if let Ok(local) = std::fs::read(local.model_file(MODEL, *version)) {
            assert_eq!(sha256_hex(&local), sha256_hex(bytes), "local copy of {version}");
        }
    }
}

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

    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
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

    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
    println!(
        "fresh replica with a junk newest object: ready on version 1 after {ready_after:?}; serving version 2 {:?} \
         after the repair; {requests} requests on 4 replicas, {} failed",
        healed.saturating_duration_since(repaired_at),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}

/// Runs the `riskserve` binary with the store's `AWS_*` environment.
fn cli(endpoint: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskserve"))
        .args(args)
        .envs(aws_env(endpoint).iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The model's status on each replica, polled until `check` holds for all;
/// returns when the last one did, from `since`.
async fn wait_all(
    addrs: &[SocketAddr],
    what: &str,
    since: Instant,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let mut last = Duration::ZERO;
    for addr in addrs {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = get_json(*addr, &format!("/v1/models/{MODEL}")).await;
            if check(&status) {
                last = last.max(since.elapsed());
                break;
            }
            assert!(Instant::now() < deadline, "{what}: not on {addr} within {WAIT:?}: {status}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    last
}

/// The version that answers a request with this key on `addr`.
async fn version_for_key(client: &mut Client, key: &str) -> u64 {
    let headers = [("content-type", "application/json"), ("x-request-id", key)];
    let reply = client.request("POST", PREDICT, &headers, ROW.as_bytes()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["model_version"].as_u64().unwrap()
}

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

    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
    println!(
        "published rollout: applied on all 3 replicas {applied_in:?} after the publish command started, \
         ended {ended_in:?} after --remove started (poll interval 200 ms); {canary_keys} of {keys} keys on the \
         canary, the same on every replica; {requests} requests, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}

/// The model file of `version` with its decision threshold at 1e-9: it
/// declares every applicant high risk.
fn everyone_high_risk(version: u64) -> Vec<(String, bytes::Bytes)> {
    let mut payload = bundled_payload();
    payload.meta.model_version = version;
    payload.meta.decision.threshold = 1e-9;
    vec![("model.json".to_string(), bytes::Bytes::from(encode(&payload).unwrap()))]
}

/// When each replica stopped sending traffic to the canary, watched every
/// 5 ms, and how: its own guard reverted it (`true`), or a published
/// revert removed it (`false`).
async fn canary_off_times(addrs: &[SocketAddr]) -> Vec<(Instant, bool)> {
    let watch = addrs.iter().map(|addr| async move {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = get_json(*addr, &format!("/v1/models/{MODEL}")).await;
            let canary = &status["rollout"]["applied"]["canary"];
            if canary.is_null() || canary["state"] != "active" {
                return (Instant::now(), canary["state"] == "reverted");
            }
            assert!(Instant::now() < deadline, "canary still active on {addr} after {WAIT:?}: {status}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    futures::future::join_all(watch).await
}

/// The issue's second case: a 10 % canary that declares everyone high risk,
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

    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
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

/// The issue's third case: the store goes down in the middle of a rollout.
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
    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
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
    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
    println!(
        "revert with the store down: held locally; the other replicas followed {followed:?} after the store \
         returned; {requests} requests, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{} failed requests: {:?}", failures.len(), &failures[..failures.len().min(5)]);
}
