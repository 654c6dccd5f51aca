//! `rollout`: the four rollout scenarios of `bench/rollout.sh` against a
//! running riskserve (loopback only) under steady load from many keep-alive
//! clients, each request carrying an `x-request-id` from a fixed pool of
//! keys (so stickiness can be checked):
//!
//! 1. `stable = N` rollback to a warm version, toggled repeatedly:
//!    commit → first response from the new version, and no model load;
//! 2. a good canary at 10 %: observed share, keys that switched version,
//!    then promotion by `stable = M`;
//! 3. bad canaries (all `high_risk`; 20 × slower): time to revert and the
//!    requests they answered;
//! 4. a shadow at full traffic: p99 of real traffic without and with it,
//!    and the agreement it reports against an offline comparison.
//!
//! Prints a table and writes the JSON report; 0 failed requests are
//! expected everywhere (the counts are reported, not asserted).

#![forbid(unsafe_code)]

use bytes::Bytes;
use clap::Parser;
use riskserve::model::estimator::Estimator;
use riskserve::model::format::{decode, encode};
use riskserve::model::Model;
use riskserve::repository::LocalDirectory;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{Client, Method};

#[derive(Debug, Parser)]
#[command(name = "rollout", about = "Rollout scenarios under load: rollback, canary, bad canaries, shadow")]
struct Args {
    /// The server's address, e.g. 127.0.0.1:8080 (loopback only).
    #[arg(long)]
    addr: SocketAddr,
    /// The server's models directory.
    #[arg(long)]
    models_dir: PathBuf,
    #[arg(long, default_value = "credit-risk")]
    model_name: String,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Length of each measured load phase.
    #[arg(long, default_value_t = 10)]
    phase_secs: u64,
    /// Rollback toggles in scenario 1.
    #[arg(long, default_value_t = 20)]
    toggles: usize,
    /// Distinct request keys per client.
    #[arg(long, default_value_t = 200)]
    keys_per_client: usize,
    /// Which scenarios to run, in this order (comma-separated: rollback,
    /// good_canary, bad_canary, shadow); a scenario that needs version 2
    /// publishes it when `rollback` did not run first.
    #[arg(long, value_delimiter = ',', default_value = "rollback,good_canary,bad_canary,shadow")]
    scenarios: Vec<Scenario>,
    /// The server's PID: the shadow scenario then reports CPU time and
    /// context switches per request (from /proc), and the CPU other
    /// processes used meanwhile (how noisy the machine was).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Scenario 4 as an A/A control: the second phase runs without the
    /// shadow too (same steps otherwise), to see how much the p99 moves
    /// between two phases on this machine with nothing changed.
    #[arg(long)]
    shadow_control: bool,
    /// Open loop: the clients together send this many requests a second,
    /// each on its own fixed schedule, and latency counts from the
    /// scheduled send time (no coordinated omission). Without it each
    /// client sends its next request when the last one is answered (closed
    /// loop: the server runs saturated).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum Scenario {
    Rollback,
    GoodCanary,
    BadCanary,
    Shadow,
}

/// One response seen by a client.
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// Receive time since the phase started.
    at: Duration,
    latency: Duration,
    version: u64,
    ok: bool,
    key: u32,
}

struct Bench {
    args: Args,
    repo: LocalDirectory,
    rows: Arc<Vec<Bytes>>,
    base: Vec<u8>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("rollout: only loopback addresses");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rollout: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollout: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let repo = LocalDirectory::new(&args.models_dir);
    let base = std::fs::read(repo.model_file(&args.model_name, 1)).map_err(|e| format!("version 1: {e}"))?;
    let bench = Bench { rows: Arc::new(rows()), repo, base, args };
    let mut report = serde_json::Map::new();
    for scenario in bench.args.scenarios.clone() {
        if scenario != Scenario::Rollback {
            bench.ensure_version_2().await?;
        }
        match scenario {
            Scenario::Rollback => {
                report.insert("rollback".into(), bench.rollback().await?);
            }
            Scenario::GoodCanary => {
                report.insert("good_canary".into(), bench.good_canary().await?);
            }
            Scenario::BadCanary => {
                report.insert(
                    "bad_canary_high_risk".into(),
                    bench.bad_canary(3, bench.with_threshold(1e-9)?, "all high_risk").await?,
                );
                report.insert("bad_canary_slow".into(), bench.bad_canary(4, bench.slower(20)?, "20 x slower").await?);
            }
            Scenario::Shadow => {
                report.insert("shadow".into(), bench.shadow().await?);
            }
        }
    }
    let text = serde_json::to_string_pretty(&Value::Object(report)).map_err(|e| e.to_string())?;
    std::fs::write(&bench.args.out, text).map_err(|e| format!("{}: {e}", bench.args.out.display()))?;
    println!("report: {}", bench.args.out.display());
    Ok(())
}

impl Bench {
    fn write_rollout(&self, text: &str) -> Result<(), String> {
        let dir = self.repo.model_dir(&self.args.model_name);
        let tmp = dir.join(".rollout.toml.bench");
        std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join("rollout.toml")).map_err(|e| e.to_string())
    }

    fn publish(&self, version: u64, bytes: &[u8]) -> Result<(), String> {
        self.repo
            .publish(&self.args.model_name, version, bytes)
            .map(|_| ())
            .map_err(|e| format!("publish {version}: {e}"))
    }

    fn with_threshold(&self, threshold: f64) -> Result<Vec<u8>, String> {
        let (mut payload, _) = decode(&self.base).map_err(|e| e.to_string())?;
        payload.meta.decision.threshold = threshold;
        encode(&payload).map_err(|e| e.to_string())
    }

    /// The base forest with every tree repeated `times`: same scores, `times` × the work.
    fn slower(&self, times: usize) -> Result<Vec<u8>, String> {
        let (mut payload, _) = decode(&self.base).map_err(|e| e.to_string())?;
        let Estimator::RandomForest { trees } = &mut payload.estimator else {
            return Err("the base model is not a forest".into());
        };
        *trees = trees.iter().cloned().cycle().take(trees.len() * times).collect();
        encode(&payload).map_err(|e| e.to_string())
    }

    /// Version 2 (a copy of 1) is what every scenario after the first
    /// names as stable; scenario 1 publishes it, the others do when it ran
    /// alone or not at all.
    async fn ensure_version_2(&self) -> Result<(), String> {
        if self.repo.model_file(&self.args.model_name, 2).exists() {
            return Ok(());
        }
        self.publish(2, &self.base)?;
        self.wait_status("version 2 serving", |s| s["serving_version"] == 2).await?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let mut c = Client::connect(self.args.addr, &self.args.addr.to_string(), Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        let r = c.request(Method::GET, path, &[], Bytes::new()).await.map_err(|e| e.to_string())?;
        if path == "/metrics" {
            return Ok(Value::String(r.text()));
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("{path}: {e}"))
    }

    async fn status(&self) -> Result<Value, String> {
        self.get(&format!("/v1/models/{}", self.args.model_name)).await
    }

    /// Polls the model's status (every 5 ms, at most 30 s) until `check` holds.
    async fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status().await?;
            if check(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}: {s}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        let Value::String(text) = self.get("/metrics").await? else { unreachable!() };
        Ok(testkit::prometheus::value(&text, name, labels).unwrap_or(0.0))
    }

    /// Starts the load; `stop` ends it; returns every client's records.
    fn load(&self, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Rec>> {
        let (addr, clients, keys) = (self.args.addr, self.args.clients, self.args.keys_per_client);
        // Open loop: one request per client every `clients / rate` seconds,
        // the clients' schedules offset so they interleave.
        let every = self.args.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(clients as f64 / r));
        let path = format!("/v1/models/{}/predict", self.args.model_name);
        let rows = self.rows.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|c| {
                    let (stop, rows, path) = (stop.clone(), rows.clone(), path.clone());
                    let pace = every.map(|every| Pace { every, offset: every.mul_f64(c as f64 / clients as f64) });
                    let keys = KeyRange { client: c, keys };
                    tokio::spawn(async move { client(addr, keys, &path, &rows, &stop, started, pace).await })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap_or_default());
            }
            all
        })
    }

    async fn load_for(&self, secs: f64) -> Vec<Rec> {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = self.load(stop.clone());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        handle.await.unwrap_or_default()
    }

    /// Scenario 1: toggles `stable` between two warm versions under load.
    async fn rollback(&self) -> Result<Value, String> {
        self.publish(2, &self.base)?;
        self.wait_status("version 2 serving", |s| s["serving_version"] == 2).await?;
        // Naming 2 keeps it loaded and lets the policy pick 1 as well: both warm.
        self.write_rollout("stable = 2\n")?;
        self.wait_status("versions 1 and 2 loaded", |s| {
            s["versions"].as_array().is_some_and(|v| v.iter().filter(|v| v["state"] == "available").count() == 2)
        })
        .await?;
        let loads_before = self.metric("riskserve_model_loads_total", &[("result", "success")]).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Instant::now();
        let handle = self.load(stop.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut commits = Vec::new();
        for i in 0..self.args.toggles {
            let target = if i % 2 == 0 { 1 } else { 2 };
            let at = phase.elapsed();
            self.write_rollout(&format!("stable = {target}\n"))?;
            commits.push((at, target));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut recs = handle.await.map_err(|e| e.to_string())?;
        recs.sort_by_key(|r| r.at);
        let mut ms: Vec<f64> = commits
            .iter()
            .filter_map(|&(at, target)| {
                recs.iter()
                    .find(|r| r.ok && r.version == target && r.at.saturating_sub(r.latency) >= at)
                    .map(|r| (r.at - at).as_secs_f64() * 1e3)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let loads_after = self.metric("riskserve_model_loads_total", &[("result", "success")]).await?;
        std::fs::remove_file(self.repo.model_dir(&self.args.model_name).join("rollout.toml")).ok();
        let v = json!({
            "toggles": commits.len(), "measured": ms.len(),
            "commit_to_serve_ms_p50": pct(&ms, 0.5), "commit_to_serve_ms_p99": pct(&ms, 0.99),
            "commit_to_serve_ms_max": ms.last(),
            "loads_during": loads_after - loads_before,
            "requests": recs.len(), "failed": recs.iter().filter(|r| !r.ok).count(),
        });
        println!("1. stable rollback (warm):      {v}");
        Ok(v)
    }

    /// Scenario 2: a good canary at 10 %, then promoted.
    async fn good_canary(&self) -> Result<Value, String> {
        self.write_rollout("stable = 1\ncanary = { version = 2, weight = 0.1 }\n")?;
        self.wait_status("canary applied", |s| s["rollout"]["applied"]["canary"]["version"] == 2).await?;
        let recs = self.load_for(self.args.phase_secs as f64).await;
        let ok: Vec<&Rec> = recs.iter().filter(|r| r.ok).collect();
        let share = ok.iter().filter(|r| r.version == 2).count() as f64 / ok.len().max(1) as f64;
        let mut seen: HashMap<u32, (bool, bool)> = HashMap::new();
        for r in &ok {
            let e = seen.entry(r.key).or_default();
            if r.version == 2 {
                e.1 = true
            } else {
                e.0 = true
            }
        }
        let switched = seen.values().filter(|(a, b)| *a && *b).count();
        let canary = self.status().await?["rollout"]["applied"]["canary"].clone();
        let state = json!({"state": canary["state"], "guard": canary["guard"], "reason": canary["reason"],
            "p99_latency_ratio": canary["p99_latency_ratio"], "psi": canary["psi"]});
        self.write_rollout("stable = 2\n")?;
        self.wait_status("promoted", |s| s["serving_version"] == 2).await?;
        let after = self.load_for(2.0).await;
        let v = json!({
            "requests": recs.len(), "failed": recs.len() - ok.len(), "canary_share": share,
            "keys": seen.len(), "keys_that_switched": switched, "canary_state_before_promotion": state,
            "after_promotion_requests": after.len(),
            "after_promotion_not_v2": after.iter().filter(|r| !r.ok || r.version != 2).count(),
        });
        println!("2. good canary 10 % + promote:  {v}");
        Ok(v)
    }

    /// Scenario 3: a bad candidate as canary at 10 % until reverted.
    async fn bad_canary(&self, version: u64, bytes: Vec<u8>, what: &str) -> Result<Value, String> {
        self.publish(version, &bytes)?;
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Instant::now();
        let handle = self.load(stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let committed = phase.elapsed();
        self.write_rollout(&format!("stable = 2\ncanary = {{ version = {version}, weight = 0.1 }}\n"))?;
        let result = self
            .wait_status("reverted", |s| {
                let canary = &s["rollout"]["applied"]["canary"];
                canary["version"] == version && canary["state"] == "reverted"
            })
            .await;
        let reverted_seen = phase.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let recs = handle.await.map_err(|e| e.to_string())?;
        let status = result?;
        let canary = &status["rollout"]["applied"]["canary"];
        let theirs: Vec<&Rec> = recs.iter().filter(|r| r.ok && r.version == version).collect();
        let first = theirs.iter().map(|r| r.at).min();
        let last = theirs.iter().map(|r| r.at).max();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let v = json!({
            "candidate": what, "guard": canary["guard"], "reason": canary["reason"],
            "answered_by_candidate": theirs.len(), "min_requests": canary_min(&status),
            "first_to_last_candidate_answer_ms": first.zip(last).map(|(f, l)| ms(l - f)),
            "commit_to_last_candidate_answer_ms": last.map(|l| ms(l.saturating_sub(committed))),
            "commit_to_revert_seen_ms": ms(reverted_seen - committed),
            "requests": recs.len(), "failed": recs.iter().filter(|r| !r.ok).count(),
        });
        println!("3. bad canary ({what}): {v}");
        Ok(v)
    }

    /// Scenario 4: p99 without and with a shadow at full traffic.
    async fn shadow(&self) -> Result<Value, String> {
        self.write_rollout("stable = 2\n")?;
        self.wait_status("stable 2 alone", |s| s["rollout"]["applied"]["canary"].is_null()).await?;
        // Unmeasured warm-up: in an A/A run (--shadow-control) without it the
        // first phase came out 3-10 % slower than the second.
        self.load_for(2.0).await;
        let before = ProcPoint::now(self.args.server_pid);
        let without = self.load_for(self.args.phase_secs as f64).await;
        let cost_without = ProcPoint::cost(&before, &ProcPoint::now(self.args.server_pid), without.len());
        let candidate = self.with_threshold(0.05)?;
        self.publish(5, &candidate)?;
        let lax = "[guards]\nmax_decision_shift = 1.0\nmax_psi = 1000.0\nmax_latency_ratio = 1000.0\n";
        if self.args.shadow_control {
            self.write_rollout(&format!("stable = 2\n{lax}"))?;
            self.wait_status("version 5 loaded", |s| {
                s["versions"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|v| v["version"] == 5 && v["state"] == "available"))
            })
            .await?;
        } else {
            self.write_rollout(&format!("stable = 2\nshadow = 5\n{lax}"))?;
            self.wait_status("shadow applied", |s| s["rollout"]["applied"]["shadow"]["version"] == 5).await?;
        }
        let before = ProcPoint::now(self.args.server_pid);
        let with = self.load_for(self.args.phase_secs as f64).await;
        let cost_with = ProcPoint::cost(&before, &ProcPoint::now(self.args.server_pid), with.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let name = "riskserve_shadow_predictions_total";
        let m = &self.args.model_name;
        let agree =
            self.metric(name, &[("model", m), ("version", "5"), ("baseline", "2"), ("agreement", "agree")]).await?;
        let disagree =
            self.metric(name, &[("model", m), ("version", "5"), ("baseline", "2"), ("agreement", "disagree")]).await?;
        let dropped = self.metric("riskserve_shadow_dropped_total", &[("model", m), ("version", "5")]).await?;
        // Offline: both versions on the rows, weighted by how often each was sent.
        let (a, b) = (
            Model::from_bytes(&self.base).map_err(|e| e.to_string())?,
            Model::from_bytes(&candidate).map_err(|e| e.to_string())?,
        );
        let mut sent = vec![0u64; self.rows.len()];
        for r in with.iter().filter(|r| r.ok) {
            sent[r.key as usize % self.rows.len()] += 1;
        }
        let (mut agree_w, mut total_w) = (0u64, 0u64);
        for (i, row) in self.rows.iter().enumerate() {
            let ra = riskserve::http::request::decode_with(&a.fields, row).map_err(|e| format!("row {i}: {e:?}"))?;
            let rb = riskserve::http::request::decode_with(&b.fields, row).map_err(|e| format!("row {i}: {e:?}"))?;
            agree_w += sent[i] * u64::from(a.predict(ra.row(0)).decision == b.predict(rb.row(0)).decision);
            total_w += sent[i];
        }
        let quantile = |recs: &[Rec], q: f64| {
            let mut l: Vec<f64> = recs.iter().filter(|r| r.ok).map(|r| r.latency.as_secs_f64() * 1e3).collect();
            l.sort_by(f64::total_cmp);
            pct(&l, q)
        };
        let (p_without, p_with) = (quantile(&without, 0.99), quantile(&with, 0.99));
        std::fs::remove_file(self.repo.model_dir(m).join("rollout.toml")).ok();
        let v = json!({
            "p50_ms_without": quantile(&without, 0.5), "p50_ms_with": quantile(&with, 0.5),
            "p99_ms_without": p_without, "p99_ms_with": p_with,
            "p99_rise": p_with.zip(p_without).map(|(w, o)| w / o - 1.0),
            "rps_without": without.len() as f64 / self.args.phase_secs as f64,
            "rps_with": with.len() as f64 / self.args.phase_secs as f64,
            "compared": agree + disagree, "dropped": dropped,
            "agreement_server": agree / (agree + disagree).max(1.0),
            "agreement_offline": agree_w as f64 / total_w.max(1) as f64,
            "failed": without.iter().chain(&with).filter(|r| !r.ok).count(),
            "cost_without": cost_without, "cost_with": cost_with, "control": self.args.shadow_control,
        });
        println!("4. shadow at full traffic:      {v}");
        Ok(v)
    }
}

/// CPU ticks and context switches at one moment, from /proc.
struct ProcPoint {
    /// The server: all its threads.
    server: u64,
    /// The server's shadow worker thread.
    shadow: u64,
    /// Voluntary + involuntary context switches, summed over the server's threads.
    switches: u64,
    harness: u64,
    /// The whole machine, busy (all of /proc/stat but idle and iowait).
    machine: u64,
}

impl ProcPoint {
    fn now(pid: Option<u32>) -> Option<ProcPoint> {
        let pid = pid?;
        let (mut shadow, mut switches) = (0, 0);
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            if stat.contains("(riskserve-shad") {
                shadow += stat_ticks(&stat).unwrap_or(0);
            }
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            switches += status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        let ticks = |path: &str| std::fs::read_to_string(path).ok().as_deref().and_then(stat_ticks);
        let machine = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
            let f: Vec<u64> = t.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
            Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
        })?;
        Some(ProcPoint {
            server: ticks(&format!("/proc/{pid}/stat"))?,
            shadow,
            switches,
            harness: ticks("/proc/self/stat")?,
            machine,
        })
    }

    /// Per request since `before` (CPU in µs), and the cores the rest of the machine used.
    fn cost(before: &Option<ProcPoint>, now: &Option<ProcPoint>, requests: usize) -> Value {
        let (Some(b), Some(now)) = (before, now) else { return Value::Null };
        // USER_HZ: /proc reports clock ticks of 1/100 s on Linux.
        let us = |ticks: u64| ticks as f64 * 1e4;
        let n = requests.max(1) as f64;
        let other =
            now.machine.saturating_sub(b.machine).saturating_sub(now.server - b.server + now.harness - b.harness);
        json!({
            "server_cpu_us_per_request": us(now.server - b.server) / n,
            "shadow_thread_cpu_us_per_request": us(now.shadow.saturating_sub(b.shadow)) / n,
            "server_context_switches_per_request": now.switches.saturating_sub(b.switches) as f64 / n,
            "harness_cpu_us_per_request": us(now.harness - b.harness) / n,
            "other_processes_cpu_s": us(other) / 1e6,
        })
    }
}

/// `utime + stime` from a `/proc/.../stat` line.
fn stat_ticks(text: &str) -> Option<u64> {
    let f: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn canary_min(status: &Value) -> Value {
    status["rollout"]["applied"]["guards"]["min_requests"].clone()
}

fn pct(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1])
}

/// The request keys one client cycles through: `client * keys ..` the next `keys`.
#[derive(Clone, Copy)]
struct KeyRange {
    client: usize,
    keys: usize,
}

/// An open-loop client's schedule: one request `every`, the first after `offset`.
#[derive(Clone, Copy)]
struct Pace {
    every: Duration,
    offset: Duration,
}

/// One keep-alive client: key `k<client>-<n mod keys>`, row by the key's
/// index; closed loop without a `pace`.
async fn client(
    addr: SocketAddr,
    KeyRange { client: c, keys }: KeyRange,
    path: &str,
    rows: &[Bytes],
    stop: &AtomicBool,
    started: Instant,
    pace: Option<Pace>,
) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut conn = None;
    let mut n = 0usize;
    let mut due = Instant::now() + pace.map(|p| p.offset).unwrap_or_default();
    while !stop.load(Ordering::Relaxed) {
        let k = (c * keys + n % keys) as u32;
        n += 1;
        let key = format!("k{k}");
        // In open loop latency counts from the scheduled time; far behind
        // (a stalled server), the schedule restarts instead of bursting.
        let sent = match pace {
            Some(Pace { every, .. }) => {
                tokio::time::sleep_until(due.into()).await;
                let scheduled = due;
                due = (due + every).max(Instant::now() - Duration::from_secs(1));
                scheduled
            }
            None => Instant::now(),
        };
        if conn.is_none() {
            conn = Client::connect(addr, &addr.to_string(), Duration::from_secs(10)).await.ok();
        }
        let Some(client) = conn.as_mut() else {
            out.push(Rec { at: started.elapsed(), latency: sent.elapsed(), version: 0, ok: false, key: k });
            continue;
        };
        let headers = [("content-type", "application/json"), ("x-request-id", key.as_str())];
        let row = rows[k as usize % rows.len()].clone();
        let rec = match client.request(Method::POST, path, &headers, row).await {
            Ok(r) => {
                let version = r.header("x-model-version").and_then(|v| v.parse().ok()).unwrap_or(0);
                Rec { at: started.elapsed(), latency: sent.elapsed(), version, ok: r.status == 200, key: k }
            }
            Err(_) => {
                conn = None;
                Rec { at: started.elapsed(), latency: sent.elapsed(), version: 0, ok: false, key: k }
            }
        };
        out.push(rec);
    }
    out
}

/// Varied applications (grade, rate, income, debt ratio).
fn rows() -> Vec<Bytes> {
    let mut out = Vec::new();
    for (g, grade) in ["A", "B", "C", "D", "E", "F", "G"].iter().enumerate() {
        for i in 0..12 {
            let rate = 0.05 + 0.02 * g as f64 + 0.004 * i as f64;
            let row = format!(
                r#"{{"loan_amnt":{},"int_rate":{rate:.4},"purpose":"debt_consolidation","grade":"{grade}","annual_inc":{},"revol_util":0.3,"emp_length":"{} years","dti":{:.2},"delinq_2yrs":{},"home_ownership":"{}"}}"#,
                4_000 + 1_000 * i,
                30_000 + 9_000 * i,
                i % 10,
                3.0 + 2.5 * i as f64,
                i % 2,
                ["RENT", "MORTGAGE", "OWN"][i % 3]
            );
            out.push(Bytes::from(row));
        }
    }
    out
}
