//! Test support: a real server on 127.0.0.1:0 over a temp model repository
//! (in-process, or the binary as a child process), bounded waits and model
//! fixtures. The child process, the HTTP/1.1 client and the Prometheus text
//! reader come from `testkit` (shared with `swapbench`); the repository
//! layout from `riskserve::repository`. Every wait has a timeout; nothing
//! uses a fixed port.

use riskserve::config::Config;
use riskserve::model::format::{decode, encode, ModelPayload};
use riskserve::registry::Snapshot;
use riskserve::repository::LocalDirectory;
use riskserve::server::{start_with, Components, RunningServer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
pub use testkit::prometheus::value as metric;
pub use testkit::{Reply, Spawned};

pub const MODEL: &str = "credit-risk";
pub const ROW: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"debt_consolidation","grade":"C","annual_inc":52000.0,"revol_util":0.226,"emp_length":"9 years","dti":14.39,"delinq_2yrs":1,"home_ownership":"MORTGAGE"}"#;
pub const PREDICT: &str = "/v1/models/credit-risk/predict";
/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// The bundled model's bytes (a real 100-tree forest).
pub fn bundled_model() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/credit-risk/1/model.json"))
            .expect("bundled model present")
    })
}

pub fn bundled_payload() -> ModelPayload {
    decode(bundled_model()).expect("bundled model decodes").0
}

/// The bundled model with another drift reference than its own, built as an
/// importer would: synthetic loans decoded with its schema and scored by it.
pub fn bundled_with_reference() -> Vec<u8> {
    use riskserve::model::reference::Reference;
    let model = riskserve::model::Model::from_bytes(bundled_model()).unwrap();
    let apps: Vec<_> = riskserve::train::synth::generate(2_000, 7).into_iter().map(|(app, _)| app).collect();
    let rows = model.fields.loan_rows(&apps);
    let mut scores = Vec::new();
    model.predict_many(rows.view(), &mut scores);
    let scores: Vec<f64> = scores.iter().map(|p| p.probability_late).collect();
    let mut payload = bundled_payload();
    payload.reference = Some(Reference::build(&model.fields, rows.view(), &scores));
    encode(&payload).unwrap()
}

/// A correctly digested file whose schema is not valid (a feature
/// declared twice).
pub fn wrong_schema_model() -> Vec<u8> {
    let mut payload = bundled_payload();
    let first = payload.schema.features[0].clone();
    payload.schema.features.push(first);
    encode(&payload).unwrap()
}

/// The bundled model with one digit of the payload changed: still JSON,
/// but a digest mismatch.
pub fn corrupt_model() -> Vec<u8> {
    let mut bytes = bundled_model().to_vec();
    let at = (bytes.len() / 2..bytes.len()).find(|&i| bytes[i].is_ascii_digit()).expect("a digit past the middle");
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    bytes
}

/// Writes `bytes` as `<dir>/<name>/<version>/model.json` the way operators
/// should: into a hidden staging directory, then one rename.
pub fn commit(models: &Path, name: &str, version: u64, bytes: &[u8]) {
    LocalDirectory::new(models).publish(name, version, bytes).unwrap();
}

pub fn remove_version(models: &Path, name: &str, version: u64) {
    std::fs::remove_dir_all(LocalDirectory::new(models).version_dir(name, version)).unwrap();
}

/// A server over its own temp model repository.
pub struct TestServer {
    pub server: RunningServer,
    pub addr: SocketAddr,
    pub models: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Serves a repository holding the bundled model as `credit-risk` v1.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with_components(tweak, |_, _| {}).await
    }

    /// With the production components, changed by `swap_parts` (a stand-in
    /// scorer, another source).
    pub async fn start_with_components(
        tweak: impl FnOnce(&mut Config),
        swap_parts: impl FnOnce(&Config, &mut Components),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        commit(&models, MODEL, 1, bundled_model());
        let mut config = test_config(&models);
        tweak(&mut config);
        let mut components = Components::production(&config);
        swap_parts(&config, &mut components);
        let server = start_with(config, components).await.expect("server starts");
        TestServer { addr: server.addr, server, models, _dir: dir }
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        send(self.addr, "POST", path, &[("content-type", "application/json")], body.as_bytes()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.addr, "GET", path, &[], b"").await
    }

    pub async fn metrics(&self) -> String {
        String::from_utf8(self.get("/metrics").await.body.to_vec()).unwrap()
    }

    /// The version unpinned traffic gets right now.
    pub async fn serving_version(&self) -> u64 {
        let r = self.post(PREDICT, ROW).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["model_version"].as_u64().unwrap()
    }

    /// Waits (bounded by [`WAIT`]) until `check` holds, checking now and
    /// after each completed reload pass: no polling, no sleeps.
    pub async fn wait_for_pass(&self, what: &str, check: impl Fn(&Snapshot) -> bool) {
        let mut passes = self.server.reloader.passes();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            passes.borrow_and_update();
            if check(&self.server.registry.snapshot()) {
                return;
            }
            match tokio::time::timeout_at(deadline, passes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("the reload task ended while waiting for: {what}"),
                Err(_) => panic!("no reload pass brought this within {WAIT:?}: {what}"),
            }
        }
    }

    /// Triggers a pass and waits until it has completed.
    pub async fn next_pass(&self) {
        let seq = self.server.reloader.passes().borrow().seq;
        self.server.reloader.trigger();
        let passes = self.server.reloader.passes();
        self.wait_for_pass("the triggered pass", move |_| passes.borrow().seq > seq).await;
    }

    /// Waits until unpinned traffic gets `version`.
    pub async fn wait_serving(&self, version: u64) {
        self.wait_for_pass(&format!("version {version} serving"), |s| s.serving_version(MODEL) == Some(version)).await;
    }

    /// Waits until a metric reaches at least `at_least`.
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], at_least: f64) {
        let what = format!("{name}{labels:?} >= {at_least}");
        let metrics = &self.server.registry.metrics;
        self.wait_for_pass(&what, |_| {
            metric(&String::from_utf8_lossy(&metrics.render()), name, labels).unwrap_or(0.0) >= at_least
        })
        .await;
    }
}

pub fn test_config(models: &Path) -> Config {
    let mut c = Config::with_models_dir(models);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.rescan_interval = Duration::from_secs(2);
    c.shutdown_timeout = Duration::from_secs(10);
    c
}

/// One keep-alive HTTP/1.1 connection; every exchange bounded by [`WAIT`].
pub struct Client(testkit::Client);

impl Client {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        testkit::Client::connect(addr, &addr.to_string(), WAIT).await.map(Client).map_err(std::io::Error::other)
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        let method = testkit::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let body = bytes::Bytes::copy_from_slice(body);
        self.0.request(method.clone(), path, headers, body).await.map_err(|e| format!("{method} {path}: {e}"))
    }
}

/// One request on a fresh connection; panics on transport errors.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut client = Client::connect(addr).await.expect("connect");
    client.request(method, path, headers, body).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `check` every 10 ms until it is true; panics after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out after {WAIT:?} waiting for: {what}");
}

/// Starts `riskserve serve` on 127.0.0.1:0 over `models` (info logs);
/// panics if it does not print its address within [`WAIT`].
pub fn spawn_binary(models: &Path, args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut cmd = testkit::serve_command(Path::new(env!("CARGO_BIN_EXE_riskserve")), models);
    cmd.args(args).envs(env.iter().copied()).env("RUST_LOG", "info");
    testkit::spawn(cmd, WAIT, None).unwrap_or_else(|e| panic!("riskserve serve: {e}"))
}

/// A gate a stand-in (scorer, source) waits at, bounded by [`WAIT`], until
/// the test releases it; `entered` counts who reached it.
pub struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    pub entered: tokio::sync::watch::Sender<usize>,
}

impl Gate {
    pub fn new() -> std::sync::Arc<Gate> {
        std::sync::Arc::new(Gate {
            open: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
            entered: tokio::sync::watch::channel(0).0,
        })
    }

    pub fn pass(&self) {
        self.entered.send_modify(|n| *n += 1);
        let open = self.open.lock().unwrap();
        let _unused = self.opened.wait_timeout_while(open, WAIT, |open| !*open).unwrap();
    }

    pub fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

/// A twelve-feature model trained from a CSV, as `riskserve train --data
/// loans.csv --optional term,verification_status` makes it (fewer trees).
pub fn twelve_feature_model() -> Vec<u8> {
    use riskserve::repository::LocalDirectory;
    use riskserve::train::dataset::{write_csv, CsvOptions};
    use riskserve::train::fit::{Algorithm, TrainOptions};
    use riskserve::train::pipeline::{train, Silent, ThresholdChoice, TrainPlan};
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("loans.csv");
    let rows = riskserve::train::synth::generate(3_000, 12);
    write_csv(&csv, &rows, &riskserve::train::synth::extra_features(&rows, 12)).unwrap();
    let mut options = TrainOptions::new(Algorithm::Forest, 3);
    options.trees = 10;
    let plan = TrainPlan {
        data: csv,
        columns: CsvOptions { optional: vec!["term".into(), "verification_status".into()], ..CsvOptions::default() },
        model_name: MODEL.into(),
        destination: LocalDirectory::new(dir.path().join("models")),
        options,
        folds: 2,
        threshold: ThresholdChoice::Fixed(0.05),
        bands: None,
    };
    let outcome = train(&plan, &Silent).unwrap();
    std::fs::read(outcome.path).unwrap()
}
