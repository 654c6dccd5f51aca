//! The shadow comparison: the series a shadow writes (resolved once per
//! rollout), scoring a shadow copy and comparing it with what the baseline
//! answered, and the [`ShadowTarget`] impl the shadow worker drives.

use super::{Role, Rollout};
use crate::metrics::RolloutMetrics;
use crate::model::Prediction;
use crate::registry::shadow::{Baseline, ShadowJob, ShadowTarget};
use crate::registry::version::LoadedVersion;
use prometheus::{Histogram, IntCounter};
use std::sync::atomic::Ordering::Relaxed;

/// A shadow's series against one baseline (`model`, `version`, `baseline` labels).
pub(super) struct Comparison {
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
pub(super) struct ShadowSeries {
    pub(super) dropped: IntCounter,
    vs_stable: Comparison,
    /// With a canary: the requests it answered are shadowed too.
    vs_canary: Option<Comparison>,
}

impl ShadowSeries {
    pub(super) fn new(
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

    pub(super) fn against(&self, baseline: Baseline) -> Option<&Comparison> {
        match baseline {
            Baseline::Stable => Some(&self.vs_stable),
            Baseline::Canary => self.vs_canary.as_ref(),
        }
    }
}

impl Rollout {
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
