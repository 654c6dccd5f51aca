//! A model's rollout at run time: which loaded version an unpinned request
//! gets (stable, or the canary by a sticky hash of its request key), the
//! counters the guards judge, and the one-way transitions of a candidate
//! (active → reverted | promoted).
//!
//! A [`Rollout`] lives in the snapshot next to the versions it names, so a
//! request finds it with the same single `ArcSwap` load. Routing is a hash
//! or an atomic counter and one atomic read of the candidate's outcome: no
//! lock, no allocation. A guard trip sets the outcome once (a `OnceLock`),
//! so reverting needs no new snapshot and no reload; the loader hands the
//! same `Rollout` to the next snapshot while the file and the versions it
//! names are unchanged, so a revert holds until the operator edits the file.

use super::guards::{self, ArmSample, Verdict, LATENCY_BUCKETS, SCORE_BUCKETS};
use super::rollout::{RolloutPolicy, WEIGHT_SCALE};
use super::shadow::{Baseline, ShadowJob, ShadowSender, ShadowTarget};
use super::version::{rfc3339, LoadedVersion};
use crate::metrics::{Metrics, RolloutMetrics};
use crate::model::{Decision, Prediction};
use prometheus::{Histogram, IntCounter};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// The rollout of one model, as applied.
pub struct Rollout {
    pub model: String,
    pub policy: RolloutPolicy,
    /// Takes unpinned traffic not sent to the canary.
    pub stable: Arc<LoadedVersion>,
    pub canary: Option<Candidate>,
    pub shadow: Option<Candidate>,
    /// Spreads requests without a key over the weight scale.
    counter: AtomicU64,
    pub since: SystemTime,
    metrics: Arc<Metrics>,
    shadow_queue: Option<ShadowSender>,
    /// The shadow's metric series, resolved once here rather than per copy.
    shadow_series: Option<ShadowSeries>,
}

impl std::fmt::Debug for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout").field("model", &self.model).field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// What a candidate (canary or shadow) became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateState {
    Active,
    /// A guard tripped: out of traffic until the rollout file changes.
    Reverted,
    /// A clean window: the canary takes all unpinned traffic.
    Promoted,
}

/// The end of a candidate's rollout: set once.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: CandidateState,
    /// The guard that tripped (`error_rate`, `latency`, ...) or `clean_window`.
    pub guard: &'static str,
    pub reason: String,
    pub at: SystemTime,
}

/// A shadow's series against one baseline (`model`, `version`, `baseline` labels).
struct Comparison {
    agree: IntCounter,
    disagree: IntCounter,
    delta: Histogram,
    latency_ratio: Histogram,
}

impl Comparison {
    fn new(m: &RolloutMetrics, model: &str, shadow: &LoadedVersion, baseline: &LoadedVersion) -> Comparison {
        let labels = [model, shadow.version_label.as_str(), baseline.version_label.as_str()];
        let with = |agreement: &str| {
            m.shadow_predictions_total.with_label_values(&[labels[0], labels[1], labels[2], agreement])
        };
        Comparison {
            agree: with("agree"),
            disagree: with("disagree"),
            delta: m.shadow_probability_delta.with_label_values(&labels),
            latency_ratio: m.shadow_latency_ratio.with_label_values(&labels),
        }
    }
}

/// Every series a shadow writes, resolved when its rollout is built.
struct ShadowSeries {
    dropped: IntCounter,
    vs_stable: Comparison,
    /// With a canary: the requests it answered are shadowed too.
    vs_canary: Option<Comparison>,
}

impl ShadowSeries {
    fn new(
        m: &RolloutMetrics,
        model: &str,
        shadow: &LoadedVersion,
        stable: &LoadedVersion,
        canary: Option<&LoadedVersion>,
    ) -> ShadowSeries {
        ShadowSeries {
            dropped: m.shadow_dropped_total.with_label_values(&[model, shadow.version_label.as_str()]),
            vs_stable: Comparison::new(m, model, shadow, stable),
            vs_canary: canary.map(|c| Comparison::new(m, model, shadow, c)),
        }
    }

    fn against(&self, baseline: Baseline) -> Option<&Comparison> {
        match baseline {
            Baseline::Stable => Some(&self.vs_stable),
            Baseline::Canary => self.vs_canary.as_ref(),
        }
    }
}

/// A canary or a shadow: its version, its guard counters and its outcome.
pub struct Candidate {
    pub version: Arc<LoadedVersion>,
    /// Canary share of unpinned traffic, basis points (shadow: 0).
    pub weight_bp: u32,
    /// The versions it is compared with, on the same window.
    baseline: ArmCounters,
    candidate: ArmCounters,
    outcome: OnceLock<Outcome>,
    /// Shadow only: copies dropped because the queue was full.
    dropped: AtomicU64,
    /// Shadow only: applications compared, decisions agreeing, Σ|Δp| in 1e-9.
    compared: AtomicU64,
    agreed: AtomicU64,
    delta_nanos: AtomicU64,
}

impl Candidate {
    fn new(version: Arc<LoadedVersion>, weight_bp: u32) -> Candidate {
        Candidate {
            version,
            weight_bp,
            baseline: ArmCounters::default(),
            candidate: ArmCounters::default(),
            outcome: OnceLock::new(),
            dropped: AtomicU64::new(0),
            compared: AtomicU64::new(0),
            agreed: AtomicU64::new(0),
            delta_nanos: AtomicU64::new(0),
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.get()
    }

    pub fn is_active(&self) -> bool {
        self.outcome.get().is_none()
    }

    pub fn samples(&self) -> (ArmSample, ArmSample) {
        (self.baseline.sample(), self.candidate.sample())
    }
}

/// Which role a candidate plays (a label of transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Canary,
    Shadow,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Canary => "canary",
            Role::Shadow => "shadow",
        }
    }
}

/// Lock-free counters of one arm ([`ArmSample`] once read).
struct ArmCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    apps: AtomicU64,
    high_risk: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
    scores: [AtomicU64; SCORE_BUCKETS],
}

impl Default for ArmCounters {
    fn default() -> ArmCounters {
        ArmCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            apps: AtomicU64::new(0),
            high_risk: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            scores: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl ArmCounters {
    /// One request: its scoring time and its predictions (`None`: it
    /// failed). Returns the requests counted so far, this one included.
    fn record(&self, elapsed: Duration, predictions: Option<&[Prediction]>) -> u64 {
        let requests = self.requests.fetch_add(1, Relaxed) + 1;
        let Some(predictions) = predictions else {
            self.errors.fetch_add(1, Relaxed);
            return requests;
        };
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency[guards::latency_bucket(ns)].fetch_add(1, Relaxed);
        let high = predictions.iter().filter(|p| p.decision == Decision::HighRisk).count() as u64;
        self.apps.fetch_add(predictions.len() as u64, Relaxed);
        self.high_risk.fetch_add(high, Relaxed);
        for p in predictions {
            self.scores[guards::score_bucket(p.probability_late)].fetch_add(1, Relaxed);
        }
        requests
    }

    fn sample(&self) -> ArmSample {
        ArmSample {
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            apps: self.apps.load(Relaxed),
            high_risk: self.high_risk.load(Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Relaxed)),
            scores: std::array::from_fn(|i| self.scores[i].load(Relaxed)),
        }
    }
}

/// The bucket (0..10,000) of a request key for a model: FNV-1a over the
/// model name and the key, then a 64-bit finaliser so that short, similar
/// keys spread evenly. Deterministic across processes and replicas, and
/// independent of the weight, so raising a canary's weight keeps every key
/// already in the canary there.
pub fn key_bucket(model: &str, key: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in model.as_bytes().iter().chain(&[0xff]).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % u64::from(WEIGHT_SCALE)) as u32
}

/// The bucket of the `n`-th request without a key: a stride coprime with
/// 10,000 visits every bucket once per 10,000 requests, so the observed
/// share is exact over any such run, and canary requests are spread out.
pub fn counter_bucket(n: u64) -> u32 {
    (n.wrapping_mul(7_919) % u64::from(WEIGHT_SCALE)) as u32
}

impl Rollout {
    /// Applies `policy` to loaded versions. `versions` must hold every
    /// version it names (the loader checks first).
    pub fn new(
        model: &str,
        policy: RolloutPolicy,
        stable: Arc<LoadedVersion>,
        canary: Option<Arc<LoadedVersion>>,
        shadow: Option<Arc<LoadedVersion>>,
        metrics: Arc<Metrics>,
        shadow_queue: Option<ShadowSender>,
    ) -> Rollout {
        let weight = policy.canary.map_or(0, |c| c.weight_bp);
        let shadow_series =
            shadow.as_ref().map(|s| ShadowSeries::new(&metrics.rollout, model, s, &stable, canary.as_deref()));
        Rollout {
            model: model.to_string(),
            stable,
            canary: canary.map(|v| Candidate::new(v, weight)),
            shadow: shadow.map(|v| Candidate::new(v, 0)),
            policy,
            counter: AtomicU64::new(0),
            since: SystemTime::now(),
            metrics,
            shadow_queue,
            shadow_series,
        }
    }

    /// The version an unpinned request with this key gets.
    pub fn pick(&self, key: Option<&[u8]>) -> &Arc<LoadedVersion> {
        let Some(canary) = &self.canary else { return &self.stable };
        match canary.outcome.get().map(|o| o.state) {
            Some(CandidateState::Promoted) => &canary.version,
            Some(_) => &self.stable,
            None => {
                let bucket = match key {
                    Some(k) => key_bucket(&self.model, k),
                    None => counter_bucket(self.counter.fetch_add(1, Relaxed)),
                };
                if bucket < canary.weight_bp {
                    &canary.version
                } else {
                    &self.stable
                }
            }
        }
    }

    /// The version unpinned traffic defaults to: the stable one, or a promoted canary.
    pub fn default_version(&self) -> &Arc<LoadedVersion> {
        match &self.canary {
            Some(c) if c.outcome.get().is_some_and(|o| o.state == CandidateState::Promoted) => &c.version,
            _ => &self.stable,
        }
    }

    /// Records an unpinned request this rollout routed: counts it for the
    /// canary's guards, and queues it for the shadow (dropped, and counted,
    /// when the queue is full; the request never waits). The applications
    /// and predictions are moved into the shadow's queue, not copied.
    pub fn observe(
        self: &Arc<Self>,
        answered: &Arc<LoadedVersion>,
        rows: crate::model::row::Rows,
        predictions: Option<Vec<Prediction>>,
        elapsed: Duration,
    ) {
        let baseline = if Arc::ptr_eq(answered, &self.stable) {
            Some(Baseline::Stable)
        } else if self.canary.as_ref().is_some_and(|c| Arc::ptr_eq(answered, &c.version)) {
            Some(Baseline::Canary)
        } else {
            None
        };
        if let Some(canary) = self.canary.as_ref().filter(|c| c.is_active()) {
            match baseline {
                Some(Baseline::Canary) => {
                    canary.candidate.record(elapsed, predictions.as_deref());
                    self.judge(canary, Role::Canary);
                }
                Some(Baseline::Stable) => {
                    canary.baseline.record(elapsed, predictions.as_deref());
                }
                None => {}
            }
        }
        let (Some(shadow), Some(queue), Some(series), Some(predictions), Some(baseline)) =
            (&self.shadow, &self.shadow_queue, &self.shadow_series, predictions, baseline)
        else {
            return;
        };
        if !shadow.is_active() {
            return;
        }
        let job = ShadowJob { rollout: self.clone(), baseline, rows, predictions, baseline_elapsed: elapsed };
        if !queue.try_send(job) {
            shadow.dropped.fetch_add(1, Relaxed);
            series.dropped.inc();
        }
    }

    /// Scores a shadow job (on the shadow worker, `scratch` its reused
    /// buffer) and compares it with what the baseline answered. The guards
    /// are judged here only for a copy that failed (so the error-rate guard
    /// trips on the same copy as if judged after every one: only an error
    /// can make it trip) and for the copy that brings the window to
    /// `min_requests`; otherwise once per batch, by the worker
    /// ([`Rollout::judge_shadow`]).
    fn compare_shadow_job(&self, job: &ShadowJob, scratch: &mut Vec<Prediction>) {
        let (Some(shadow), Some(series)) = (self.shadow.as_ref().filter(|s| s.is_active()), &self.shadow_series) else {
            return;
        };
        let started = std::time::Instant::now();
        scratch.clear();
        let answered = match job.baseline {
            Baseline::Canary => self.canary.as_ref().map_or(&self.stable, |c| &c.version),
            Baseline::Stable => &self.stable,
        };
        let rows = shadow.version.scorer.fields().translate(answered.scorer.fields(), &job.rows);
        scratch.extend(rows.iter().map(|row| shadow.version.scorer.predict(row)));
        let elapsed = started.elapsed();
        let mine = scratch.as_slice();
        let failed = mine.iter().any(|p| !p.probability_late.is_finite());
        shadow.baseline.record(job.baseline_elapsed, Some(&job.predictions));
        let requests = shadow.candidate.record(elapsed, (!failed).then_some(mine));
        if !failed {
            // `None` only for a baseline this rollout does not have (not routed here).
            let m = series.against(job.baseline);
            let (mut agreed, mut delta_nanos) = (0u64, 0u64);
            for (theirs, ours) in job.predictions.iter().zip(mine) {
                agreed += u64::from(theirs.decision == ours.decision);
                let d = (theirs.probability_late - ours.probability_late).abs();
                if let Some(m) = m {
                    m.delta.observe(d);
                }
                delta_nanos += (d * 1e9) as u64;
            }
            let n = mine.len() as u64;
            if let Some(m) = m {
                m.agree.inc_by(agreed);
                m.disagree.inc_by(n - agreed);
                let base = job.baseline_elapsed.as_secs_f64();
                if base > 0.0 {
                    m.latency_ratio.observe(elapsed.as_secs_f64() / base);
                }
            }
            shadow.compared.fetch_add(n, Relaxed);
            shadow.agreed.fetch_add(agreed, Relaxed);
            shadow.delta_nanos.fetch_add(delta_nanos, Relaxed);
        }
        if failed || requests == self.policy.guards.min_requests {
            self.judge(shadow, Role::Shadow);
        }
    }

    /// Judges an active shadow's guards (the worker, once per batch).
    fn judge_shadow_guards(&self) {
        if let Some(shadow) = self.shadow.as_ref().filter(|s| s.is_active()) {
            self.judge(shadow, Role::Shadow);
        }
    }

    fn judge(&self, candidate: &Candidate, role: Role) {
        let (baseline, mine) = candidate.samples();
        match guards::evaluate(&self.policy.guards, &baseline, &mine) {
            Verdict::Trip(t) => self.conclude(candidate, role, CandidateState::Reverted, t.guard, t.reason),
            Verdict::Promote if role == Role::Canary => {
                let reason = format!("{} requests without a guard tripping", mine.requests);
                self.conclude(candidate, role, CandidateState::Promoted, "clean_window", reason)
            }
            _ => {}
        }
    }

    /// Sets the candidate's outcome once; logs and counts the transition.
    fn conclude(&self, c: &Candidate, role: Role, state: CandidateState, guard: &'static str, reason: String) {
        let outcome = Outcome { state, guard, reason, at: SystemTime::now() };
        if c.outcome.set(outcome.clone()).is_err() {
            return;
        }
        let to = match state {
            CandidateState::Reverted => "reverted",
            CandidateState::Promoted => "promoted",
            CandidateState::Active => "active",
        };
        self.metrics.rollout.transitions_total.with_label_values(&[&self.model, role.label(), to, guard]).inc();
        if role == Role::Canary {
            // `riskserve_model_version_serving` follows the transition at once, not at the next pass.
            let serving = self.default_version().version;
            for v in [self.stable.version, c.version.version] {
                let gauge = self.metrics.model_version_serving.with_label_values(&[&self.model, &v.to_string()]);
                gauge.set(i64::from(v == serving));
            }
        }
        match state {
            CandidateState::Reverted => tracing::warn!(
                model = %self.model, role = role.label(), version = c.version.version, guard, reason = %outcome.reason,
                "rollout candidate reverted: taken out of traffic until rollout.toml changes"
            ),
            _ => tracing::info!(
                model = %self.model, role = role.label(), version = c.version.version, reason = %outcome.reason,
                "rollout candidate {to}"
            ),
        }
    }

    /// Whether `other` applies the same policy to the same loaded versions
    /// (then the loader keeps this one, with its counters and outcomes).
    pub fn same_as(
        &self,
        policy: &RolloutPolicy,
        stable: &Arc<LoadedVersion>,
        canary: Option<&Arc<LoadedVersion>>,
        shadow: Option<&Arc<LoadedVersion>>,
    ) -> bool {
        let same = |a: Option<&Candidate>, b: Option<&Arc<LoadedVersion>>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(&a.version, b),
            _ => false,
        };
        self.policy == *policy
            && Arc::ptr_eq(&self.stable, stable)
            && same(self.canary.as_ref(), canary)
            && same(self.shadow.as_ref(), shadow)
    }

    /// The live view for `GET /v1/models/{name}`.
    pub fn view(&self) -> RolloutView {
        RolloutView {
            stable: self.stable.version,
            serving: self.default_version().version,
            request_key: self.policy.request_key.to_string(),
            since: rfc3339(self.since),
            canary: self.canary.as_ref().map(|c| candidate_view(c, Role::Canary)),
            shadow: self.shadow.as_ref().map(|c| candidate_view(c, Role::Shadow)),
            guards: self.policy.guards.clone(),
        }
    }
}

fn candidate_view(c: &Candidate, role: Role) -> CandidateView {
    let (baseline, mine) = c.samples();
    let outcome = c.outcome.get();
    let compared = c.compared.load(Relaxed);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    CandidateView {
        version: c.version.version,
        weight: (role == Role::Canary).then(|| f64::from(c.weight_bp) / f64::from(WEIGHT_SCALE)),
        state: outcome.map_or(CandidateState::Active, |o| o.state),
        guard: outcome.map(|o| o.guard),
        reason: outcome.map(|o| o.reason.clone()),
        concluded_at: outcome.map(|o| rfc3339(o.at)),
        requests: mine.requests,
        baseline_requests: baseline.requests,
        error_rate: mine.error_rate(),
        high_risk_share: mine.high_risk_share(),
        baseline_high_risk_share: baseline.high_risk_share(),
        p99_latency_ratio: ratio(mine.p99_ns(), baseline.p99_ns()),
        psi: (mine.apps > 0 && baseline.apps > 0).then(|| guards::psi(&baseline.scores, &mine.scores)),
        compared: (role == Role::Shadow).then_some(compared),
        agreement: (role == Role::Shadow && compared > 0).then(|| c.agreed.load(Relaxed) as f64 / compared as f64),
        mean_abs_delta: (role == Role::Shadow && compared > 0)
            .then(|| c.delta_nanos.load(Relaxed) as f64 / 1e9 / compared as f64),
        dropped: (role == Role::Shadow).then(|| c.dropped.load(Relaxed)),
    }
}

/// A rollout as `GET /v1/models/{name}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub stable: u64,
    /// The version unpinned traffic defaults to (the stable one, or a promoted canary).
    pub serving: u64,
    pub request_key: String,
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CandidateView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<CandidateView>,
    pub guards: guards::Guards,
}

/// A canary or shadow as shown, with its window so far.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    pub state: CandidateState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concluded_at: Option<String>,
    pub requests: u64,
    pub baseline_requests: u64,
    pub error_rate: Option<f64>,
    pub high_risk_share: Option<f64>,
    pub baseline_high_risk_share: Option<f64>,
    pub p99_latency_ratio: Option<f64>,
    pub psi: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_abs_delta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

impl ShadowTarget for Rollout {
    fn model(&self) -> &str {
        &self.model
    }
    fn compare_shadow(&self, job: &ShadowJob, scratch: &mut Vec<Prediction>) {
        self.compare_shadow_job(job, scratch)
    }
    fn judge_shadow(&self) {
        self.judge_shadow_guards()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::model::Model;
    use crate::registry::shadow::{ShadowQueue, BATCH_INTERVAL};

    fn version(metrics: &Metrics, v: u64) -> Arc<LoadedVersion> {
        version_with_threshold(metrics, v, tiny_payload().meta.decision.threshold)
    }

    /// One all-missing row of the loan fields.
    fn one_row() -> crate::model::row::Rows {
        let mut rows = crate::model::row::Rows::new(crate::model::test_support::loan_fields().len());
        rows.push_missing();
        rows
    }

    /// The tiny model (p = 0.02 for a default application) deciding at `threshold`.
    fn version_with_threshold(metrics: &Metrics, v: u64, threshold: f64) -> Arc<LoadedVersion> {
        let mut payload = tiny_payload();
        payload.meta.decision.threshold = threshold;
        loaded(metrics, v, Arc::new(Model::from_bytes(&encode(&payload).unwrap()).unwrap()))
    }

    fn loaded(metrics: &Metrics, v: u64, scorer: Arc<dyn crate::model::Scorer>) -> Arc<LoadedVersion> {
        Arc::new(LoadedVersion::new("m", v, format!("m/{v}/model.json"), scorer, 0.0, metrics.version("m", v, [])))
    }

    fn canary(text: &str) -> (Arc<Rollout>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let policy = super::super::rollout::parse(text.as_bytes()).unwrap();
        let (v1, v2) = (version(&metrics, 1), version(&metrics, 2));
        (Arc::new(Rollout::new("m", policy, v1, Some(v2), None, metrics.clone(), None)), metrics)
    }

    /// Stable 1 and shadow 2 on a real shadow queue; 2 flags everyone
    /// `high_risk` when `flags_everyone`, else it decides like 1.
    fn shadowed(flags_everyone: bool, guards: &str) -> (Arc<Rollout>, Arc<Metrics>, ShadowQueue) {
        let metrics = Arc::new(Metrics::new());
        let policy = super::super::rollout::parse(format!("stable = 1\nshadow = 2\n{guards}").as_bytes()).unwrap();
        let v1 = version(&metrics, 1);
        let v2 = if flags_everyone { version_with_threshold(&metrics, 2, 0.01) } else { version(&metrics, 2) };
        let queue = ShadowQueue::default();
        let r = Rollout::new("m", policy, v1, None, Some(v2), metrics.clone(), queue.sender());
        (Arc::new(r), metrics, queue)
    }

    /// Waits (at most 10 s) until `check` holds.
    fn wait_until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn low() -> Vec<Prediction> {
        vec![Prediction { probability_late: 0.02, decision: Decision::LowRisk }]
    }

    #[test]
    fn a_clean_canary_is_promoted_and_a_failing_one_reverted_for_good() {
        let guards = "[guards]\nmin_requests = 10\npromote_after = 20\nmax_error_rate = 0.1\n";
        let (r, metrics) = canary(&format!("stable = 1\ncanary = {{ version = 2, weight = 0.5 }}\n{guards}"));
        let (stable, cand) = (r.stable.clone(), r.canary.as_ref().unwrap().version.clone());
        let apps = one_row();
        let ms = Duration::from_micros(50);
        for _ in 0..20 {
            r.observe(&stable, apps.clone(), Some(low()), ms);
        }
        for i in 0..20 {
            assert!(r.canary.as_ref().unwrap().is_active(), "promoted early at {i}");
            r.observe(&cand, apps.clone(), Some(low()), ms);
        }
        assert_eq!(r.canary.as_ref().unwrap().outcome().unwrap().state, CandidateState::Promoted);
        assert!((0..100).all(|_| r.pick(None).version == 2) && r.default_version().version == 2);
        let view = r.view();
        assert_eq!((view.serving, view.canary.unwrap().requests), (2, 20));

        let (r, metrics2) = canary(&format!("stable = 1\ncanary = {{ version = 2, weight = 0.5 }}\n{guards}"));
        let cand = r.canary.as_ref().unwrap().version.clone();
        r.observe(&cand, apps.clone(), None, ms);
        assert!(r.canary.as_ref().unwrap().is_active(), "1 error fits the budget of 10 % of 10");
        r.observe(&cand, apps.clone(), None, ms);
        let outcome = r.canary.as_ref().unwrap().outcome().unwrap().clone();
        assert_eq!((outcome.state, outcome.guard), (CandidateState::Reverted, "error_rate"));
        assert!((0..100).all(|_| r.pick(Some(b"any key")).version == 1), "reverted: stable only");
        for _ in 0..30 {
            r.observe(&cand, apps.clone(), Some(low()), ms);
        }
        assert_eq!(r.canary.as_ref().unwrap().outcome().unwrap().state, CandidateState::Reverted, "for good");
        for (m, to, reason) in [(&metrics, "promoted", "clean_window"), (&metrics2, "reverted", "error_rate")] {
            let text = String::from_utf8(m.render()).unwrap();
            let labels = [("model", "m"), ("from", "canary"), ("to", to), ("reason", reason)];
            assert_eq!(testkit::prometheus::value(&text, "riskserve_rollout_transitions_total", &labels), Some(1.0));
            // The serving gauge follows the transition without waiting for a pass.
            let serving = |v: &str| {
                testkit::prometheus::value(&text, "riskserve_model_version_serving", &[("model", "m"), ("version", v)])
            };
            let expected = if to == "promoted" { (Some(0.0), Some(1.0)) } else { (Some(1.0), Some(0.0)) };
            assert_eq!((serving("1"), serving("2")), expected, "{to}");
        }
    }

    #[test]
    fn the_shadow_worker_compares_every_copy_in_bursts_and_after_idling() {
        let (r, metrics, _queue) = shadowed(false, "");
        let stable = r.stable.clone();
        let shadow = r.shadow.as_ref().unwrap();
        let send = |n: usize| {
            for _ in 0..n {
                r.observe(&stable, one_row(), Some(low()), Duration::from_micros(50));
            }
        };
        let compared = || shadow.compared.load(Relaxed);
        send(1);
        wait_until("the idle worker woken by the first copy", || compared() == 1);
        // Long enough for the worker to find the queue empty and park without a timeout.
        std::thread::sleep(BATCH_INTERVAL * 10);
        send(1);
        wait_until("woken again after idling", || compared() == 2);
        send(900);
        wait_until("a burst drained", || compared() == 902);
        let view = r.view().shadow.unwrap();
        assert_eq!((view.compared, view.agreement, view.dropped), (Some(902), Some(1.0), Some(0)));
        assert_eq!((view.requests, view.baseline_requests, view.state), (902, 902, CandidateState::Active));
        let text = String::from_utf8(metrics.render()).unwrap();
        let labels = [("model", "m"), ("version", "2"), ("baseline", "1"), ("agreement", "agree")];
        assert_eq!(testkit::prometheus::value(&text, "riskserve_shadow_predictions_total", &labels), Some(902.0));
        let labels = [("model", "m"), ("version", "2")];
        assert_eq!(testkit::prometheus::value(&text, "riskserve_shadow_dropped_total", &labels), Some(0.0));
    }

    #[test]
    fn a_bad_shadow_is_judged_on_the_copy_that_completes_its_window_even_inside_a_batch() {
        let (r, metrics, _queue) = shadowed(true, "[guards]\nmin_requests = 10\n");
        let stable = r.stable.clone();
        // One burst: the worker takes these in batches larger than the window.
        for _ in 0..300 {
            r.observe(&stable, one_row(), Some(low()), Duration::from_micros(50));
        }
        let shadow = r.shadow.as_ref().unwrap();
        wait_until("the shadow reverted", || !shadow.is_active());
        let outcome = shadow.outcome().unwrap();
        assert_eq!((outcome.state, outcome.guard), (CandidateState::Reverted, "decision_shift"));
        // Judged on the 10th copy, as if after every copy: none scored after the trip.
        assert_eq!(shadow.compared.load(Relaxed), 10);
        assert_eq!(shadow.samples().1.requests, 10);
        let text = String::from_utf8(metrics.render()).unwrap();
        let labels = [("model", "m"), ("from", "shadow"), ("to", "reverted"), ("reason", "decision_shift")];
        assert_eq!(testkit::prometheus::value(&text, "riskserve_rollout_transitions_total", &labels), Some(1.0));
    }

    /// A scorer whose every probability is NaN (a model failing every request).
    #[derive(Debug)]
    struct Failing(crate::model::format::ModelMeta, crate::model::fields::Fields);

    impl crate::model::Scorer for Failing {
        fn fields(&self) -> &crate::model::fields::Fields {
            &self.1
        }
        fn predict(&self, _: crate::model::row::Row<'_>) -> Prediction {
            Prediction { probability_late: f64::NAN, decision: Decision::LowRisk }
        }
        fn meta(&self) -> &crate::model::format::ModelMeta {
            &self.0
        }
        fn digest(&self) -> &str {
            "failing"
        }
    }

    #[test]
    fn a_failing_shadow_trips_the_error_guard_on_the_first_copy_past_its_budget() {
        let metrics = Arc::new(Metrics::new());
        let policy = super::super::rollout::parse(b"stable = 1\nshadow = 2\n").unwrap();
        let v2 = loaded(&metrics, 2, Arc::new(Failing(tiny_payload().meta, crate::model::test_support::loan_fields())));
        let queue = ShadowQueue::default();
        let r = Arc::new(Rollout::new("m", policy, version(&metrics, 1), None, Some(v2), metrics, queue.sender()));
        for _ in 0..300 {
            r.observe(&r.stable, one_row(), Some(low()), Duration::from_micros(50));
        }
        let shadow = r.shadow.as_ref().unwrap();
        wait_until("the shadow reverted", || !shadow.is_active());
        assert_eq!(shadow.outcome().unwrap().guard, "error_rate");
        // The default budget is 1 % of 200 = 2 errors: the 3rd trips, as if judged after every copy.
        let (_, mine) = shadow.samples();
        assert_eq!((mine.requests, mine.errors, shadow.compared.load(Relaxed)), (3, 3, 0));
    }

    #[test]
    fn keys_are_sticky_and_spread_evenly() {
        let buckets: Vec<u32> =
            (0..100_000).map(|i| key_bucket("credit-risk", format!("req-{i}").as_bytes())).collect();
        let again: Vec<u32> = (0..100_000).map(|i| key_bucket("credit-risk", format!("req-{i}").as_bytes())).collect();
        assert_eq!(buckets, again, "deterministic");
        let share = buckets.iter().filter(|&&b| b < 1_000).count() as f64 / buckets.len() as f64;
        assert!((share - 0.10).abs() < 0.005, "10 % weight took {share}");
        let other: Vec<u32> = (0..1000).map(|i| key_bucket("other-model", format!("req-{i}").as_bytes())).collect();
        assert_ne!(&buckets[..1000], &other[..], "another model splits its keys independently");
        assert!(buckets.iter().all(|&b| b < WEIGHT_SCALE));
    }

    #[test]
    fn requests_without_a_key_hit_the_exact_share() {
        for weight in [0, 1, 500, 1_000, 9_999, 10_000] {
            let hits = (0..10_000u64).filter(|&n| counter_bucket(n) < weight).count();
            assert_eq!(hits as u32, weight);
            // Spread out: any 1,000 consecutive requests are within ±1 of the share.
            let window = (1234..2234u64).filter(|&n| counter_bucket(n) < weight).count() as i64;
            assert!((window - i64::from(weight) / 10).abs() <= 1, "{weight}: {window}");
        }
    }
}
