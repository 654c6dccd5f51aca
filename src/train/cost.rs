//! Choosing the decision threshold by expected cost: approving a loan that
//! then pays late costs `false_negative`, declining one that would have paid
//! on time costs `false_positive`. On out-of-fold probabilities, the cut-off
//! that minimises the expected cost per application is chosen; the curve of
//! expected cost over thresholds goes into the report.

use super::evaluation::{threshold_sweep, SweepPoint};
use crate::model::format::DecisionCosts;
use serde::Serialize;

/// Expected cost per 1,000 applications when flagging `p >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostPoint {
    pub threshold: f64,
    pub cost_per_1000: f64,
}

/// The expected cost per 1,000 applications at every distinct threshold
/// (each distinct probability, plus "flag nobody" above the largest),
/// ascending by threshold.
pub fn cost_curve(labels: &[u8], p: &[f64], costs: DecisionCosts) -> Vec<CostPoint> {
    let sweep = threshold_sweep(labels, p);
    // The last threshold flags every row with a finite probability.
    let all = sweep.last().copied();
    let n = all.map_or(0, |s| s.tp + s.fp).max(1) as f64;
    let pos = all.map_or(0, |s| s.tp) as f64;
    // Flag nobody: every late loan is approved.
    let mut out = vec![CostPoint {
        threshold: sweep.first().map_or(1.0, |s| next_up(s.threshold)),
        cost_per_1000: 1000.0 * costs.false_negative * pos / n,
    }];
    for SweepPoint { threshold, tp, fp } in sweep {
        let cost = costs.false_negative * (pos - tp as f64) + costs.false_positive * fp as f64;
        out.push(CostPoint { threshold, cost_per_1000: 1000.0 * cost / n });
    }
    out.reverse();
    out
}

/// The threshold with the least expected cost (the highest such threshold
/// on ties, flagging fewest), clamped inside (0, 1), and its cost per 1,000.
pub fn min_cost_threshold(labels: &[u8], p: &[f64], costs: DecisionCosts) -> CostPoint {
    let best = cost_curve(labels, p, costs)
        .into_iter()
        .fold(None::<CostPoint>, |best, c| match best {
            Some(b) if b.cost_per_1000 < c.cost_per_1000 => Some(b),
            _ => Some(c),
        })
        .unwrap_or(CostPoint { threshold: 0.5, cost_per_1000: f64::NAN });
    CostPoint { threshold: best.threshold.clamp(1e-6, 1.0 - 1e-6), ..best }
}

/// The expected cost per 1,000 applications of flagging `p >= threshold`.
pub fn cost_at(labels: &[u8], p: &[f64], costs: DecisionCosts, threshold: f64) -> f64 {
    let (mut fn_, mut fp) = (0.0, 0.0);
    for (&y, &q) in labels.iter().zip(p) {
        match (y != 0, q >= threshold) {
            (true, false) => fn_ += 1.0,
            (false, true) => fp += 1.0,
            _ => {}
        }
    }
    1000.0 * (costs.false_negative * fn_ + costs.false_positive * fp) / labels.len().max(1) as f64
}

fn next_up(x: f64) -> f64 {
    if x >= 1.0 {
        1.0
    } else {
        f64::from_bits(x.to_bits() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSTS: DecisionCosts = DecisionCosts { false_negative: 5000.0, false_positive: 300.0 };

    #[test]
    fn the_cheapest_threshold_balances_missed_late_loans_against_lost_good_ones() {
        // Four on-time loans at 0.01..0.04, one late at 0.05, one on-time at 0.2.
        let p = [0.01, 0.02, 0.03, 0.04, 0.05, 0.2];
        let y = [0, 0, 0, 0, 1, 0];
        let best = min_cost_threshold(&y, &p, COSTS);
        // Flagging >= 0.05 catches the late loan for one lost good loan (0.2).
        assert_eq!(best.threshold, 0.05);
        assert!((best.cost_per_1000 - 1000.0 * 300.0 / 6.0).abs() < 1e-9);
        assert!((cost_at(&y, &p, COSTS, 0.05) - best.cost_per_1000).abs() < 1e-9);
        let curve = cost_curve(&y, &p, COSTS);
        assert_eq!(curve.len(), 7);
        assert!(curve.windows(2).all(|w| w[0].threshold < w[1].threshold));
        // Flag nobody: the late loan is approved.
        assert!((curve[6].cost_per_1000 - 1000.0 * 5000.0 / 6.0).abs() < 1e-9);
        for c in &curve {
            assert!((cost_at(&y, &p, COSTS, c.threshold) - c.cost_per_1000).abs() < 1e-9, "{c:?}");
        }
    }

    #[test]
    fn with_calibrated_probabilities_the_cut_off_is_near_the_cost_ratio() {
        // p is the true probability: the Bayes cut-off is 300 / 5300 ≈ 0.057.
        let mut rng = crate::train::rng::Rng::new(5);
        let p: Vec<f64> = (0..200_000).map(|_| rng.next_f64() * 0.15).collect();
        let y: Vec<u8> = p.iter().map(|&q| u8::from(rng.next_f64() < q)).collect();
        let best = min_cost_threshold(&y, &p, COSTS);
        assert!((best.threshold - 300.0 / 5300.0).abs() < 0.01, "{best:?}");
    }
}
