//! The guards of a rollout as a pure function: two samples of counters (the
//! baseline arm and the candidate arm, since the rollout started) and the
//! limits in, a [`Verdict`] out. No clocks, no atomics, no I/O, so every
//! rule is unit-tested with plain numbers; [`super::traffic`] keeps the
//! counters and acts on the verdict.
//!
//! Rules, checked in this order:
//! 1. **error rate**: candidate errors / requests above `max_error_rate`
//!    (checked from the first request against the budget of the minimum
//!    window, so a candidate that fails everything trips early);
//! 2. nothing else before the candidate has `min_requests` requests;
//! 3. with at least `min_requests` baseline requests too: **p99 latency**
//!    ratio candidate / baseline above `max_latency_ratio` (and the median
//!    ratio too, so a few requests preempted on a busy machine are not a
//!    regression); **decision
//!    shift**, |share of `high_risk` candidate − baseline| above
//!    `max_decision_shift`; **PSI** of the score distributions above `max_psi`;
//! 4. `promote_after` candidate requests without a trip → promote (0 = never).

use serde::Serialize;

/// Latency buckets: bucket `i` holds durations in `[2^(i/4), 2^((i+1)/4))` ns
/// (19 % wide), up to about 2^32 ns = 4.3 s; slower lands in the last.
pub const LATENCY_BUCKETS: usize = 128;
/// Score buckets for PSI: ten equal-width bins of `probability_late`.
pub const SCORE_BUCKETS: usize = 10;

/// The limits of one rollout (the `[guards]` table, defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guards {
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_latency_ratio: f64,
    pub max_decision_shift: f64,
    pub max_psi: f64,
    /// Promote the canary after this many candidate requests without a trip; 0 = never.
    pub promote_after: u64,
}

impl Default for Guards {
    /// `max_latency_ratio` is 5, not 2: a canary at a low weight scores with
    /// its trees colder in the CPU caches, and an identical model measured
    /// 2–3 × the stable version's time at 10 % (`bench/rollout.sh`).
    fn default() -> Guards {
        Guards {
            min_requests: 200,
            max_error_rate: 0.01,
            max_latency_ratio: 5.0,
            max_decision_shift: 0.10,
            max_psi: 0.25,
            promote_after: 0,
        }
    }
}

/// Counters of one arm over the rollout's window.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmSample {
    /// Requests answered (or failed) by this arm.
    pub requests: u64,
    /// Requests that failed inside the model (a non-finite probability).
    pub errors: u64,
    /// Applications scored.
    pub apps: u64,
    /// Applications decided `high_risk`.
    pub high_risk: u64,
    /// Scoring time per request, see [`latency_bucket`].
    pub latency: [u64; LATENCY_BUCKETS],
    /// `probability_late` per application, see [`score_bucket`].
    pub scores: [u64; SCORE_BUCKETS],
}

impl Default for ArmSample {
    fn default() -> ArmSample {
        ArmSample {
            requests: 0,
            errors: 0,
            apps: 0,
            high_risk: 0,
            latency: [0; LATENCY_BUCKETS],
            scores: [0; SCORE_BUCKETS],
        }
    }
}

/// The latency bucket of a duration in nanoseconds.
pub fn latency_bucket(ns: u64) -> usize {
    if ns <= 1 {
        return 0;
    }
    ((ns as f64).log2() * 4.0).floor().clamp(0.0, (LATENCY_BUCKETS - 1) as f64) as usize
}

/// The upper bound of a latency bucket, in nanoseconds.
pub fn latency_upper_ns(bucket: usize) -> f64 {
    2f64.powf((bucket + 1) as f64 / 4.0)
}

/// The score bucket of a probability (out-of-range values clamp).
pub fn score_bucket(p: f64) -> usize {
    ((p * SCORE_BUCKETS as f64).floor().max(0.0) as usize).min(SCORE_BUCKETS - 1)
}

impl ArmSample {
    /// The `q` quantile of scoring time (bucket upper bound), ns.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(latency_upper_ns(i));
            }
        }
        Some(latency_upper_ns(LATENCY_BUCKETS - 1))
    }

    /// The 99th percentile scoring time, ns.
    pub fn p99_ns(&self) -> Option<f64> {
        self.quantile_ns(0.99)
    }

    /// Share of applications decided `high_risk`.
    pub fn high_risk_share(&self) -> Option<f64> {
        (self.apps > 0).then(|| self.high_risk as f64 / self.apps as f64)
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// Population stability index of `actual` against `expected` (bin counts),
/// with empty bins smoothed so one empty bin does not make it infinite.
pub fn psi(expected: &[u64], actual: &[u64]) -> f64 {
    let (te, ta) = (expected.iter().sum::<u64>() as f64, actual.iter().sum::<u64>() as f64);
    if te == 0.0 || ta == 0.0 {
        return 0.0;
    }
    const FLOOR: f64 = 1e-4;
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = ((e as f64 / te).max(FLOOR), (a as f64 / ta).max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Which guard tripped, and why in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// `error_rate`, `latency`, `decision_shift` or `psi` (a metric label).
    pub guard: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough requests yet.
    Wait,
    /// Inside every limit so far.
    Healthy,
    Trip(Trip),
    /// A clean window of `promote_after` requests.
    Promote,
}

/// Judges the candidate against the baseline.
pub fn evaluate(g: &Guards, baseline: &ArmSample, candidate: &ArmSample) -> Verdict {
    let budget = g.max_error_rate * candidate.requests.max(g.min_requests) as f64;
    if candidate.errors as f64 > budget {
        let rate = candidate.error_rate().unwrap_or(0.0);
        return Verdict::Trip(Trip {
            guard: "error_rate",
            reason: format!(
                "error rate {:.2} % ({} of {} requests) above the limit of {:.2} %",
                rate * 100.0,
                candidate.errors,
                candidate.requests,
                g.max_error_rate * 100.0
            ),
        });
    }
    if candidate.requests < g.min_requests {
        return Verdict::Wait;
    }
    if baseline.requests >= g.min_requests {
        let median_ratio = candidate.quantile_ns(0.5).zip(baseline.quantile_ns(0.5)).map(|(c, b)| c / b);
        if let (Some(c), Some(b)) = (candidate.p99_ns(), baseline.p99_ns()) {
            let ratio = c / b;
            // A few preempted requests move a p99 of microseconds by
            // multiples on a busy machine: the median must have moved too.
            if ratio > g.max_latency_ratio && median_ratio.is_some_and(|m| m > g.max_latency_ratio) {
                return Verdict::Trip(Trip {
                    guard: "latency",
                    reason: format!(
                        "p99 inference latency {:.0} µs is {ratio:.1} × the baseline's {:.0} µs, above the limit of {} ×",
                        c / 1e3,
                        b / 1e3,
                        g.max_latency_ratio
                    ),
                });
            }
        }
        if let (Some(c), Some(b)) = (candidate.high_risk_share(), baseline.high_risk_share()) {
            if (c - b).abs() > g.max_decision_shift {
                return Verdict::Trip(Trip {
                    guard: "decision_shift",
                    reason: format!(
                        "high_risk share {:.1} % against the baseline's {:.1} %, a shift above the limit of {:.1} points",
                        c * 100.0,
                        b * 100.0,
                        g.max_decision_shift * 100.0
                    ),
                });
            }
        }
        let index = psi(&baseline.scores, &candidate.scores);
        if index > g.max_psi {
            return Verdict::Trip(Trip {
                guard: "psi",
                reason: format!("population stability index of the scores {index:.3} above the limit of {}", g.max_psi),
            });
        }
    }
    if g.promote_after > 0 && candidate.requests >= g.promote_after {
        return Verdict::Promote;
    }
    Verdict::Healthy
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` requests of one application each, each taking `ns`, with
    /// `high` of them high risk at p = 0.9 and the rest at p = 0.05.
    fn arm(n: u64, ns: u64, high: u64, errors: u64) -> ArmSample {
        let mut s = ArmSample { requests: n, errors, apps: n - errors, high_risk: high, ..Default::default() };
        s.latency[latency_bucket(ns)] = n - errors;
        s.scores[score_bucket(0.9)] = high;
        s.scores[score_bucket(0.05)] = n - errors - high;
        s
    }

    fn guard(v: Verdict) -> &'static str {
        match v {
            Verdict::Trip(t) => t.guard,
            Verdict::Wait => "wait",
            Verdict::Healthy => "healthy",
            Verdict::Promote => "promote",
        }
    }

    #[test]
    fn buckets_cover_the_range_and_order() {
        assert_eq!(latency_bucket(0), 0);
        assert!(latency_bucket(1_000) < latency_bucket(2_000));
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        let b = latency_bucket(50_000);
        assert!(latency_upper_ns(b) > 50_000.0 && latency_upper_ns(b) < 50_000.0 * 1.2);
        assert_eq!((score_bucket(0.0), score_bucket(0.999), score_bucket(1.0), score_bucket(-1.0)), (0, 9, 9, 0));
    }

    #[test]
    fn a_like_candidate_waits_for_its_window_then_is_healthy() {
        let g = Guards::default();
        let base = arm(2000, 20_000, 200, 0);
        assert_eq!(guard(evaluate(&g, &base, &arm(199, 20_000, 20, 0))), "wait");
        assert_eq!(guard(evaluate(&g, &base, &arm(200, 22_000, 25, 1))), "healthy");
        let promoting = Guards { promote_after: 500, ..g.clone() };
        assert_eq!(guard(evaluate(&promoting, &base, &arm(499, 20_000, 50, 0))), "healthy");
        assert_eq!(guard(evaluate(&promoting, &base, &arm(500, 20_000, 50, 0))), "promote");
    }

    #[test]
    fn each_guard_trips_on_its_own_regression() {
        let g = Guards::default();
        let base = arm(2000, 20_000, 200, 0);
        assert_eq!(guard(evaluate(&g, &base, &arm(300, 20_000, 30, 4))), "error_rate");
        let slow = evaluate(&g, &base, &arm(300, 400_000, 30, 0));
        assert_eq!(guard(slow.clone()), "latency");
        let Verdict::Trip(t) = slow else { unreachable!() };
        assert!(t.reason.contains("× the baseline"), "{}", t.reason);
        assert_eq!(guard(evaluate(&g, &base, &arm(300, 20_000, 300, 0))), "decision_shift", "approves no one");
        // A tail of preempted requests alone is noise, not a slower model.
        let mut noisy = arm(300, 20_000, 30, 0);
        noisy.latency[latency_bucket(20_000)] = 290;
        noisy.latency[latency_bucket(400_000)] = 10;
        assert_eq!(guard(evaluate(&g, &base, &noisy)), "healthy");
        // Same decisions, different scores: only the PSI sees it.
        let mut shifted = arm(300, 20_000, 30, 0);
        shifted.scores = [0; SCORE_BUCKETS];
        shifted.scores[score_bucket(0.35)] = 270;
        shifted.scores[score_bucket(0.9)] = 30;
        assert_eq!(guard(evaluate(&g, &base, &shifted)), "psi");
    }

    #[test]
    fn errors_trip_before_the_window_is_full_and_comparisons_need_a_baseline() {
        let g = Guards::default();
        let base = arm(2000, 20_000, 200, 0);
        assert_eq!(guard(evaluate(&g, &base, &arm(10, 20_000, 1, 2))), "wait", "2 errors are within 1 % of 200");
        assert_eq!(guard(evaluate(&g, &base, &arm(10, 20_000, 0, 3))), "error_rate", "3 cannot fit any more");
        let thin = arm(50, 20_000, 5, 0);
        assert_eq!(guard(evaluate(&g, &thin, &arm(300, 400_000, 300, 0))), "healthy", "no baseline to compare");
    }

    #[test]
    fn psi_is_zero_for_equal_distributions_and_grows_with_the_shift() {
        assert_eq!(psi(&[10, 20, 30], &[1, 2, 3]), 0.0);
        assert_eq!(psi(&[0, 0], &[1, 2]), 0.0, "no data, no verdict");
        let small = psi(&[50, 50], &[55, 45]);
        let large = psi(&[50, 50], &[90, 10]);
        assert!(small > 0.0 && small < 0.05 && large > 0.5, "{small} {large}");
    }
}
