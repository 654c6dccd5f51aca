//! The population stability index: how far a distribution over fixed bins
//! (recent applications) has moved from a reference one (training),
//!
//! ```text
//! PSI = Σ_i (a_i − e_i) · ln(a_i / e_i)
//! ```
//!
//! with `a_i`, `e_i` the shares of bin `i` in the recent and the reference
//! counts. A share of zero (an empty bin: a category never seen in
//! training, a value range nobody sends any more) is replaced by
//! [`EPSILON`] so the index stays finite; the other shares are left as
//! they are. Read as the industry does: below 0.1 stable, 0.1–0.25 watch,
//! above 0.25 act.

use crate::model::reference::{Reference, Tally};

/// The share an empty bin is taken to have (0.01 %).
pub const EPSILON: f64 = 1e-4;
/// Below this the population is stable.
pub const WATCH: f64 = 0.1;
/// Above this it has moved enough to act.
pub const ACT: f64 = 0.25;

/// PSI of `actual` counts against `expected` counts over the same bins;
/// `None` when either has no rows (or the bins differ in number).
pub fn psi(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (e_total, a_total) = (expected.iter().sum::<u64>(), actual.iter().sum::<u64>());
    if e_total == 0 || a_total == 0 || expected.len() != actual.len() {
        return None;
    }
    let share = |count: u64, total: u64| (count as f64 / total as f64).max(EPSILON);
    Some(
        expected
            .iter()
            .zip(actual)
            .map(|(&e, &a)| {
                let (e, a) = (share(e, e_total), share(a, a_total));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// How a tally compares with its reference: PSI of the score and of each
/// feature (in the reference's order); `None` for an empty tally.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub score: Option<f64>,
    pub features: Vec<Option<f64>>,
}

/// Compares `now` (counted in `reference`'s bins) with `reference`.
pub fn compare(reference: &Reference, now: &Tally) -> Comparison {
    Comparison {
        score: psi(&reference.score.counts, &now.score),
        features: reference.features.iter().zip(&now.features).map(|(f, counts)| psi(&f.counts, counts)).collect(),
    }
}

/// `stable`, `watch` or `act`, for a PSI.
pub fn reading(psi: f64) -> &'static str {
    if psi > ACT {
        "act"
    } else if psi >= WATCH {
        "watch"
    } else {
        "stable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fields::Fields;
    use crate::model::row::{Rows, Value};
    use crate::model::schema::{Feature, Schema};

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("a PSI");
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn psi_matches_hand_computed_values() {
        close(psi(&[50, 50], &[50, 50]), 0.0);
        close(psi(&[5, 5], &[500, 500]), 0.0);
        // 0.15 ln 1.6 + 0.05 ln 1.2 + 0.05 ln 1.25 + 0.15 ln 2.5
        close(psi(&[25, 25, 25, 25], &[40, 30, 20, 10]), 0.2282174);
        // It is symmetric in the two shares.
        close(psi(&[40, 30, 20, 10], &[25, 25, 25, 25]), 0.2282174);
    }

    #[test]
    fn empty_bins_are_smoothed_to_epsilon_and_stay_finite() {
        // Reference bin 3 empty: 0.1 ln 0.8 (...) + (0.1 − 1e-4) ln(0.1 / 1e-4)
        close(psi(&[50, 50, 0], &[50, 40, 10]), 0.0223144 + 0.0999 * 1000f64.ln());
        // Both empty in one bin: that bin adds nothing.
        close(psi(&[50, 50, 0], &[50, 50, 0]), 0.0);
        // A bin emptied now: (1e-4 − 0.5) ln(1e-4 / 0.5) + (1 − 0.5) ln 2
        close(psi(&[50, 50], &[0, 10]), (1e-4 - 0.5) * (1e-4f64 / 0.5).ln() + 0.5 * 2f64.ln());
        assert_eq!(psi(&[1, 2], &[0, 0]), None, "no rows: no index");
        assert_eq!(psi(&[0, 0], &[1, 2]), None);
        assert_eq!(psi(&[1, 2], &[1, 2, 3]), None);
    }

    #[test]
    fn unseen_categories_count_as_other_against_an_empty_reference_bin() {
        let fields =
            Fields::new(Schema { features: vec![Feature::category("c", vec!["a".into(), "b".into()], None)] }).unwrap();
        let mut train = Rows::new(1);
        for k in 0..100 {
            train.push_missing()[0] = Value::Category(k % 2);
        }
        let reference = Reference::build(&fields, train.view(), &vec![0.5; 100]);
        assert_eq!(reference.features[0].counts, [50, 50, 0, 0]);
        let mut now = Rows::new(1);
        for k in 0..90 {
            now.push_missing()[0] = Value::Category(k % 2);
        }
        for _ in 0..10 {
            let v = now.unseen("new-partner");
            now.push_missing()[0] = v;
        }
        let tally = reference.tally(now.view(), &vec![0.5; 100]);
        assert_eq!(tally.features[0], [45, 45, 10, 0]);
        let c = compare(&reference, &tally);
        // 2 × (−0.05 ln 0.9) + (0.1 − 1e-4) ln(0.1 / 1e-4); the missing bin
        // is empty on both sides.
        close(c.features[0], 2.0 * 0.05 * -(0.9f64.ln()) + 0.0999 * 1000f64.ln());
        close(c.score, 0.0);
        let empty = compare(&reference, &reference.empty_tally());
        assert_eq!(empty, Comparison { score: None, features: vec![None] });
    }

    #[test]
    fn readings_follow_the_usual_thresholds() {
        assert_eq!([reading(0.05), reading(0.1), reading(0.25), reading(0.26)], ["stable", "watch", "watch", "act"]);
    }
}
