//! What the object-store tests share: the S3-compatible servers they
//! start, replicas (the real binary), steady load, outages, and the small
//! helpers the scenarios use.

use crate::common::{bundled_payload, spawn_binary, Client, Spawned, MODEL, PREDICT, ROW, WAIT};
use object_store::aws::AmazonS3Builder;
use riskserve::model::format::{decode, encode};
use riskserve::repository::LocalDirectory;
use riskserve::sync::manifest::sha256_hex;
use riskserve::sync::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "models";
pub const PREFIX: &str = "team/risk";

/// The model file of `version`: the bundled forest, recorded as trained as
/// that version, so every version has its own bytes and digest.
pub fn model_bytes(version: u64) -> Vec<u8> {
    let mut payload = bundled_payload();
    payload.meta.model_version = version;
    encode(&payload).unwrap()
}

pub fn payload_digest(bytes: &[u8]) -> String {
    decode(bytes).unwrap().1
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An S3-compatible server as a child process, killed on drop.
pub struct S3Server {
    pub _child: testkit::Child,
    pub addr: SocketAddr,
}

impl S3Server {
    pub async fn moto() -> S3Server {
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
    pub async fn rclone(dir: &Path) -> S3Server {
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
pub fn aws_env(endpoint: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), format!("http://{endpoint}")),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// The test's own client of the store (the publisher), configured explicitly.
pub fn s3_store(endpoint: SocketAddr) -> Store {
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

pub fn url() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

pub fn file(version: u64) -> Vec<(String, bytes::Bytes)> {
    vec![("model.json".to_string(), bytes::Bytes::from(model_bytes(version)))]
}

/// A replica: `riskserve serve --sync-from` over its own empty models directory.
pub struct Replica {
    pub proc: Spawned,
    pub models: PathBuf,
}

pub fn replica(dir: &Path, name: &str, endpoint: SocketAddr) -> Replica {
    let models = dir.join(name).join("models");
    std::fs::create_dir_all(&models).unwrap();
    let env = aws_env(endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let proc = spawn_binary(&models, &["--sync-from", &url(), "--sync-interval-ms", "200"], &env);
    Replica { proc, models }
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let reply = crate::common::send(addr, "GET", path, &[], b"").await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json()
}

pub async fn metrics_of(addr: SocketAddr) -> String {
    crate::common::send(addr, "GET", "/metrics", &[], b"").await.text()
}

/// Steady load on one replica: one keep-alive connection, requests back to
/// back; every answer's version and time recorded, every failure counted.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<String>>>,
    /// (when, version served) each time the served version changed.
    pub changes: Arc<Mutex<Vec<(Instant, u64)>>>,
    /// Answers per version.
    pub answers: Arc<Mutex<std::collections::BTreeMap<u64, u64>>>,
    pub task: tokio::task::JoinHandle<()>,
    /// The replica's log, shown when a wait fails.
    pub log: testkit::Log,
}

impl Load {
    pub fn start(replica: &Replica) -> Load {
        Load::start_paced(replica, Duration::ZERO)
    }

    /// [`Load::start`] with `pause` between requests (a lighter steady load).
    pub fn start_paced(replica: &Replica, pause: Duration) -> Load {
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
    pub fn first_serving(&self, version: u64) -> Option<Instant> {
        self.changes.lock().unwrap().iter().find(|(_, v)| *v >= version).map(|(t, _)| *t)
    }

    pub async fn wait_serving(&self, version: u64, what: &str) -> Instant {
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
    pub fn answered_by(&self, version: u64) -> u64 {
        self.answers.lock().unwrap().get(&version).copied().unwrap_or(0)
    }

    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (self.requests.load(Ordering::Relaxed), self.failures.lock().unwrap().clone())
    }
}

/// A TCP forwarder between the replicas and the store that the test can
/// take down (every connection refused and every open one cut) and bring back.
pub struct Outage {
    pub addr: SocketAddr,
    pub down: Arc<AtomicBool>,
    pub conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    pub _accept: tokio::task::JoinHandle<()>,
}

impl Outage {
    pub async fn forward_to(target: SocketAddr) -> Outage {
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

    pub fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn start(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Every version a replica lists as available has the digest of the bytes
/// published for it, and every local copy is exactly those bytes.
pub async fn check_bytes(r: &Replica, addr: SocketAddr, published: &std::collections::BTreeMap<u64, Vec<u8>>) {
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

/// Runs the `riskserve` binary with the store's `AWS_*` environment.
pub fn cli(endpoint: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskserve"))
        .args(args)
        .envs(aws_env(endpoint).iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The model's status on each replica, polled until `check` holds for all;
/// returns when the last one did, from `since`.
pub async fn wait_all(
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
pub async fn version_for_key(client: &mut Client, key: &str) -> u64 {
    let headers = [("content-type", "application/json"), ("x-request-id", key)];
    let reply = client.request("POST", PREDICT, &headers, ROW.as_bytes()).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["model_version"].as_u64().unwrap()
}

/// The model file of `version` with its decision threshold at 1e-9: it
/// declares every applicant high risk.
pub fn everyone_high_risk(version: u64) -> Vec<(String, bytes::Bytes)> {
    let mut payload = bundled_payload();
    payload.meta.model_version = version;
    payload.meta.decision.threshold = 1e-9;
    vec![("model.json".to_string(), bytes::Bytes::from(encode(&payload).unwrap()))]
}

/// When each replica stopped sending traffic to the canary, watched every
/// 5 ms, and how: its own guard reverted it (`true`), or a published
/// revert removed it (`false`).
pub async fn canary_off_times(addrs: &[SocketAddr]) -> Vec<(Instant, bool)> {
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

/// Stops every load and adds up what they saw: requests sent, and the
/// failures, in order.
pub async fn finish_all(loads: impl IntoIterator<Item = Load>) -> (u64, Vec<String>) {
    let mut requests = 0;
    let mut failures = Vec::new();
    for l in loads {
        let (n, f) = l.finish().await;
        requests += n;
        failures.extend(f);
    }
    (requests, failures)
}
