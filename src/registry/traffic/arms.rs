//! A rollout's candidates (canary or shadow) and their counters: each
//! candidate's version, weight, one-way outcome and shadow tallies, and the
//! lock-free per-arm counters the guards judge ([`ArmSample`] once read).

use crate::model::{Decision, Prediction};
use crate::registry::guards::{self, ArmSample, LATENCY_BUCKETS, SCORE_BUCKETS};
use crate::registry::version::LoadedVersion;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

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

/// A canary or a shadow: its version, its guard counters and its outcome.
pub struct Candidate {
    pub version: Arc<LoadedVersion>,
    /// Canary share of unpinned traffic, basis points (shadow: 0).
    pub weight_bp: u32,
    /// The versions it is compared with, on the same window.
    pub(super) baseline: ArmCounters,
    pub(super) candidate: ArmCounters,
    pub(super) outcome: OnceLock<Outcome>,
    /// Shadow only: copies dropped because the queue was full.
    pub(super) dropped: AtomicU64,
    /// Shadow only: applications compared, decisions agreeing, Σ|Δp| in 1e-9.
    pub(super) compared: AtomicU64,
    pub(super) agreed: AtomicU64,
    pub(super) delta_nanos: AtomicU64,
}

impl Candidate {
    pub(super) fn new(version: Arc<LoadedVersion>, weight_bp: u32) -> Candidate {
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
pub(super) struct ArmCounters {
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
    pub(super) fn record(&self, elapsed: Duration, predictions: Option<&[Prediction]>) -> u64 {
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

    pub(super) fn sample(&self) -> ArmSample {
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
