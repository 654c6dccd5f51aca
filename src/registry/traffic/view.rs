//! The live view of a rollout for `GET /v1/models/{name}`: each
//! candidate's state and its window so far (rates, ratios, PSI, and the
//! shadow's agreement).

use super::{Candidate, CandidateState, Role, Rollout};
use crate::registry::guards;
use crate::registry::rollout::WEIGHT_SCALE;
use crate::registry::version::rfc3339;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

impl Rollout {
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
