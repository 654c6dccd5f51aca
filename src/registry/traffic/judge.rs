//! Guards → verdicts → transitions: judging a candidate's window with the
//! pure evaluator, and concluding it once (reverted or promoted), with the
//! transition logged, counted and the serving gauge updated at once.

use super::{Candidate, CandidateState, Outcome, Role, Rollout};
use crate::registry::guards::{self, Verdict};
use std::time::SystemTime;

impl Rollout {
    pub(super) fn judge(&self, candidate: &Candidate, role: Role) {
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
    pub(super) fn conclude(
        &self,
        c: &Candidate,
        role: Role,
        state: CandidateState,
        guard: &'static str,
        reason: String,
    ) {
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
}
