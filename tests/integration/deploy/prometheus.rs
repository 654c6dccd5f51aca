//! A real Prometheus (1 s scrapes and rule evaluations, the shipped rule
//! files) scraping a real server under traffic while a new version is
//! committed: per-version p99 from `riskserve_inference_duration_seconds_bucket`
//! has series for both versions, every Grafana panel's PromQL parses and
//! returns data, every template variable finds its values, the rules evaluate
//! without error, and a broken model raises the load-failure alert.

use super::deploy_dir;
use crate::common::{bundled_with_reference, commit, corrupt_model, Client, TestServer, MODEL, PREDICT, ROW};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::tools::tool;

/// Bound on anything waited for from Prometheus (scrapes are 1 s apart).
const PROM_WAIT: Duration = Duration::from_secs(90);

/// Grafana's template variables, as the test fills them in: the one job,
/// every replica, the served model, every version, a 1-minute rate window.
const VARIABLES: &[(&str, &str)] =
    &[("$__rate_interval", "1m"), ("$instance", ".*"), ("$version", ".*"), ("$model", MODEL), ("$job", "riskserve")];

fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for (name, value) in VARIABLES {
        out = out.replace(&format!("${{{}}}", &name[1..]), value).replace(name, value);
    }
    assert!(!out.contains('$'), "a template variable is left in: {out}");
    out
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A real Prometheus scraping one server (also used by `crate::drift`).
pub(crate) struct Prometheus {
    addr: SocketAddr,
    _child: testkit::Child,
}

impl Prometheus {
    /// Starts Prometheus on a free 127.0.0.1 port scraping `target`, with
    /// the rule files of deploy/prometheus/, and waits until it is ready.
    pub(crate) async fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let rules = deploy_dir().join("prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: riskserve\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.join("riskserve-recording.rules.yml").display(),
            rules.join("riskserve-alerts.rules.yml").display(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port: bind :0, read it, release it (Prometheus reports no
        // address of its own when given :0).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { addr, _child: testkit::Child(child) };
        let deadline = Instant::now() + PROM_WAIT;
        loop {
            if let Some(r) = prometheus.try_get("/-/ready").await {
                if r.status == 200 {
                    return prometheus;
                }
            }
            let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "Prometheus not ready within {PROM_WAIT:?}; log:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_get(&self, path: &str) -> Option<testkit::Reply> {
        let mut client = Client::connect(self.addr).await.ok()?;
        client.request("GET", path, &[], b"").await.ok()
    }

    /// A GET of the HTTP API; its `data` (panics unless status is success).
    pub(crate) async fn api(&self, path: &str) -> Value {
        let r = self.try_get(path).await.unwrap_or_else(|| panic!("Prometheus did not answer {path}"));
        let body = r.json();
        assert_eq!(body["status"], "success", "{path}: {}", r.text());
        body["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(promql))).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Re-runs `promql` until `done` accepts its result; panics after PROM_WAIT.
    pub(crate) async fn wait_for(&self, what: &str, promql: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PROM_WAIT;
        loop {
            let result = self.query(promql).await;
            if done(&result) {
                return result;
            }
            assert!(Instant::now() < deadline, "{what}: not within {PROM_WAIT:?}; last result of {promql}: {result:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or_default()
}

fn versions(result: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = result.iter().map(|s| label(s, "version").to_string()).collect();
    v.sort();
    v
}

/// Keeps predictions going on one keep-alive connection until stopped or a
/// transport error; returns (answered, the failures).
fn traffic(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let mut client = Client::connect(addr).await.expect("connect");
        let (mut answered, mut failed) = (0, Vec::new());
        let batch = format!("{{\"instances\":[{}]}}", vec![ROW; 16].join(","));
        while !stop.load(Ordering::Relaxed) {
            let body = if answered % 4 == 3 { batch.as_str() } else { ROW };
            match client.request("POST", PREDICT, &[("content-type", "application/json")], body.as_bytes()).await {
                Ok(r) if r.status == 200 => answered += 1,
                Ok(r) => failed.push(format!("{}: {}", r.status, r.text())),
                Err(e) => {
                    failed.push(e);
                    break;
                }
            }
        }
        (answered, failed)
    })
}

/// Every PromQL expression in the dashboard: (where, expression).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            out.push((format!("panel {title:?} {}", t["refId"]), expr.to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_both_versions_and_every_dashboard_panel_has_data() {
    let started = Instant::now();
    // The allocator panel needs `riskserve_allocator_*_bytes`, which a server
    // exports once a reader is installed (the binary installs this one at
    // start-up). This process runs on the system allocator, so the values
    // describe jemalloc's idle heap; the panel's queries are what is checked.
    #[cfg(unix)]
    riskserve::metrics::allocator::install(riskserve::metrics::allocator::jemalloc);
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path(), s.addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(s.addr, stop.clone());

    let p99 = format!(
        "histogram_quantile(0.99, sum by (version, le) (rate(riskserve_inference_duration_seconds_bucket{{job=\"riskserve\", model=\"{MODEL}\"}}[1m])))"
    );
    prom.wait_for("a p99 for version 1", &p99, |r| versions(r) == ["1"]).await;

    // A new version (with a drift reference, for the drift panels) under
    // traffic, and a model that cannot load.
    commit(&s.models, MODEL, 2, &bundled_with_reference());
    commit(&s.models, "broken", 1, &corrupt_model());
    s.wait_serving(2).await;
    let swapped = Instant::now();
    let both = prom.wait_for("a p99 for versions 1 and 2", &p99, |r| versions(r) == ["1", "2"]).await;
    for sample in &both {
        let seconds: f64 = sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        assert!(seconds > 0.0 && seconds < 1.0, "p99 of version {}: {seconds}", label(sample, "version"));
    }
    eprintln!("prometheus: both versions' p99 {:?} after the swap: {both:?}", swapped.elapsed());
    let recorded = prom
        .wait_for(
            "the recording rule's p99 for both versions",
            "model_version:riskserve_inference_duration_seconds:p99_5m",
            |r| versions(r) == ["1", "2"],
        )
        .await;
    assert!(recorded.iter().all(|s| label(s, "model") == MODEL), "{recorded:?}");

    // The alert rules: loaded, evaluated without error, and the broken
    // model raises RiskserveModelLoadFailures (no `for`) and, pending its
    // minute, RiskserveModelUnavailable.
    let deadline = Instant::now() + PROM_WAIT;
    loop {
        let alerts = prom.api("/api/v1/alerts").await;
        let alerts = alerts["alerts"].as_array().cloned().unwrap_or_default();
        let state = |name: &str| {
            alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["labels"]["model"] == "broken")
                .and_then(|a| a["state"].as_str().map(str::to_string))
        };
        let (failures, unavailable) = (state("RiskserveModelLoadFailures"), state("RiskserveModelUnavailable"));
        if failures.as_deref() == Some("firing") && unavailable.is_some() {
            // The traffic is one application over and over: drift by
            // definition (tests/integration/drift.rs checks those alerts).
            let drift = |a: &Value| a["labels"]["alertname"].as_str().is_some_and(|n| n.starts_with("RiskserveDrift"));
            let others: Vec<&Value> = alerts.iter().filter(|a| a["labels"]["model"] != "broken" && !drift(a)).collect();
            assert!(others.is_empty(), "alerts for a healthy server: {others:?}");
            break;
        }
        assert!(Instant::now() < deadline, "alerts for the broken model did not come: {alerts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let groups = prom.api("/api/v1/rules").await;
    let rules: Vec<Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(rules.len(), 15, "{groups}");
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "rule {} does not evaluate: {}", rule["name"], rule["lastError"]);
    }

    // The dashboard: every panel's query parses and returns data, every
    // template variable finds values, every annotation query parses.
    let text = std::fs::read_to_string(deploy_dir().join("grafana/riskserve-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 9, "{queries:?}");
    for (what, expr) in &queries {
        let promql = substitute(expr);
        prom.wait_for(&format!("{what} returns data"), &promql, |r| !r.is_empty()).await;
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(q) = variable["query"]["query"].as_str() else { continue };
        let (selector, name) = q
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')')?.rsplit_once(", "))
            .unwrap_or_else(|| panic!("variable {}: not label_values(selector, label): {q}", variable["name"]));
        let series = prom.api(&format!("/api/v1/series?match[]={}", encode(&substitute(selector)))).await;
        let values: Vec<&str> = series.as_array().unwrap().iter().filter_map(|s| s[name].as_str()).collect();
        assert!(!values.is_empty(), "variable {} finds no values for {q}", variable["name"]);
    }
    for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
        let expr = annotation["expr"].as_str().expect("annotation expr");
        prom.query(&substitute(expr)).await; // panics unless it parses and runs
    }

    stop.store(true, Ordering::Relaxed);
    let (answered, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        answered,
        &failed[..failed.len().min(5)]
    );
    eprintln!(
        "prometheus: {answered} predictions, 0 failed, {} dashboard queries with data; {:?} in all",
        queries.len(),
        started.elapsed()
    );
}
