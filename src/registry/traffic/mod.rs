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
//! names are unchanged, so a revert holds until the operator edits the file.//!
//! This file holds the [`Rollout`] and routing (the sticky pick, and
//! recording what a routed request did). The rest lives by job: `arms`
//! (candidates and their lock-free counters), `judge` (guards → verdicts →
//! one-way transitions), `shadow_compare` (scoring and comparing shadow
//! copies, the [`ShadowTarget`](super::shadow::ShadowTarget) impl) and
//! `view` (the [`RolloutView`] of `/v1/models`).

mod arms;
mod judge;
mod shadow_compare;
mod view;

pub use arms::{Candidate, CandidateState, Outcome, Role};
pub use view::{CandidateView, RolloutView};

use super::rollout::{RolloutPolicy, WEIGHT_SCALE};
use super::shadow::{Baseline, ShadowJob, ShadowSender};
use super::version::LoadedVersion;
use crate::metrics::Metrics;
use crate::model::Prediction;
use shadow_compare::ShadowSeries;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::model::Decision;
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
