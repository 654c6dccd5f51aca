//! Evaluation metrics for the binary `is_late` target — ROC-AUC, average
//! precision, Brier score, mean/std aggregation, the threshold sweep that
//! ROC, precision–recall and cost curves are read from — and the seeded
//! stratified k-fold splitter used by cross-validation. Semantics match scikit-learn
//! (`roc_auc_score`, `average_precision_score`, `np.std` with `ddof=0`).
//!
//! Labels are `u8`; any non-zero label counts as the positive class.

use crate::train::rng::Rng;

/// Input checks shared by the ranking metrics: equal, non-zero lengths and
/// finite scores (scikit-learn rejects NaN/inf scores too).
fn valid_scores(y: &[u8], p: &[f64]) -> bool {
    !y.is_empty() && y.len() == p.len() && p.iter().all(|v| v.is_finite())
}

/// Indices of `p` sorted by score, ascending.
fn order_by_score(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    idx
}

/// One threshold of a [`threshold_sweep`]: flagging every score
/// `>= threshold` flags `tp` positives and `fp` negatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPoint {
    pub threshold: f64,
    pub tp: usize,
    pub fp: usize,
}

/// The decision thresholds over the finite scores, from the highest down:
/// one point per distinct score, with the positives and negatives flagged
/// at it. Tied scores are one threshold and enter together, whatever their
/// order in `p` (as scikit-learn's `roc_curve`, before it drops collinear
/// points); `0.0` and `-0.0` are tied, and the point's threshold is the
/// first of the tie in descending `total_cmp` order. Non-finite scores are
/// left out, so the last point counts every row with a finite score.
pub fn threshold_sweep(y: &[u8], p: &[f64]) -> Vec<SweepPoint> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let (mut tp, mut fp) = (0, 0);
    order
        .chunk_by(|&a, &b| p[a] == p[b])
        .map(|tie| {
            let positives = tie.iter().filter(|&&i| y[i] != 0).count();
            tp += positives;
            fp += tie.len() - positives;
            SweepPoint { threshold: p[tie[0]], tp, fp }
        })
        .collect()
}

/// Area under the ROC curve, as `sklearn.metrics.roc_auc_score`: the
/// Mann–Whitney U statistic with average ranks for tied scores, divided by
/// `n_pos * n_neg`.
///
/// `None` if either class is absent, the lengths differ or are zero, or a
/// score is not finite.
pub fn roc_auc(y: &[u8], p: &[f64]) -> Option<f64> {
    if !valid_scores(y, p) {
        return None;
    }
    let n_pos = y.iter().filter(|&&v| v != 0).count();
    let n_neg = y.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let idx = order_by_score(p);
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && p[idx[j]] == p[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j (1-based) share their average.
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let pos_in_group = idx[i..j].iter().filter(|&&k| y[k] != 0).count();
        rank_sum_pos += avg_rank * pos_in_group as f64;
        i = j;
    }
    let (np, nn) = (n_pos as f64, n_neg as f64);
    let u = rank_sum_pos - np * (np + 1.0) / 2.0;
    Some(u / (np * nn))
}

/// Average precision, as `sklearn.metrics.average_precision_score`: scores
/// sorted descending, tied scores form a single threshold, and
/// `AP = Σ_n (R_n − R_{n−1}) · P_n` over thresholds (step-wise, no
/// interpolation).
///
/// `None` if there are no positives (scikit-learn warns and returns 0 or NaN
/// depending on version), the lengths differ or are zero, or a score is not
/// finite.
pub fn average_precision(y: &[u8], p: &[f64]) -> Option<f64> {
    if !valid_scores(y, p) {
        return None;
    }
    let n_pos = y.iter().filter(|&&v| v != 0).count();
    if n_pos == 0 {
        return None;
    }
    let total = n_pos as f64;
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for SweepPoint { tp, fp, .. } in threshold_sweep(y, p) {
        let recall = tp as f64 / total;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Brier score: mean of `(p_i − y_i)²`. NaN if the slices are empty or their
/// lengths differ.
pub fn brier(y: &[u8], p: &[f64]) -> f64 {
    if y.is_empty() || y.len() != p.len() {
        return f64::NAN;
    }
    let sum: f64 = y
        .iter()
        .zip(p)
        .map(|(&t, &q)| {
            let t = if t != 0 { 1.0 } else { 0.0 };
            (q - t) * (q - t)
        })
        .sum();
    sum / y.len() as f64
}

/// Mean and population standard deviation (`ddof = 0`, numpy's `np.std`
/// default). `(NaN, NaN)` for an empty slice, like numpy.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Stratified k-fold test sets: `k` disjoint index sets covering `0..y.len()`.
///
/// Classes are taken in ascending label order (0 then non-zero labels by
/// value); each class's indices are shuffled with one shared `Rng::new(seed)`
/// and dealt round-robin to the folds. The dealer continues from where the
/// previous class stopped, so every fold gets `⌊n_c/k⌋` or `⌈n_c/k⌉` rows of
/// each class *and* fold sizes differ by at most one overall. Indices within
/// each fold are sorted ascending. Deterministic for a given `(y, k, seed)`.
///
/// Errors if `k < 2` or `k > y.len()`. Unlike scikit-learn it does not reject
/// a class with fewer than `k` members; such folds simply lack that class.
pub fn stratified_folds(y: &[u8], k: usize, seed: u64) -> Result<Vec<Vec<usize>>, String> {
    if k < 2 {
        return Err(format!("stratified_folds: need at least 2 folds, got k = {k}"));
    }
    if k > y.len() {
        return Err(format!("stratified_folds: cannot make k = {k} folds from {} rows", y.len()));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (i, &label) in y.iter().enumerate() {
        by_class[usize::from(label)].push(i);
    }
    let mut rng = Rng::new(seed);
    let mut folds: Vec<Vec<usize>> = vec![Vec::with_capacity(y.len() / k + 1); k];
    let mut next = 0usize;
    for members in by_class.iter_mut().filter(|m| !m.is_empty()) {
        rng.shuffle(members);
        for &i in members.iter() {
            folds[next].push(i);
            next = (next + 1) % k;
        }
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    Ok(folds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_and_ap_simple_case() {
        let y = [0, 0, 1, 1];
        let p = [0.1, 0.4, 0.35, 0.8];
        assert!(close(roc_auc(&y, &p).unwrap(), 0.75));
        // Thresholds 0.8 (P=1, R=.5), 0.4 (P=.5, R=.5), 0.35 (P=2/3, R=1).
        assert!(close(average_precision(&y, &p).unwrap(), 0.5 + 0.5 * 2.0 / 3.0));
    }

    #[test]
    fn ties_share_a_rank_and_a_threshold() {
        let y = [0, 1, 0, 1];
        let p = [0.5, 0.5, 0.2, 0.9];
        // Pairs (pos, neg): (0.5 vs 0.5) = 1/2, (0.5 vs 0.2) = 1, (0.9 vs both) = 2.
        assert!(close(roc_auc(&y, &p).unwrap(), 0.875));
        // Thresholds 0.9 (P=1, R=.5), 0.5 (P=2/3, R=1).
        assert!(close(average_precision(&y, &p).unwrap(), 0.5 + 0.5 * 2.0 / 3.0));
        // All scores tied: AUC 0.5, AP = prevalence.
        assert!(close(roc_auc(&[0, 1, 1], &[0.3; 3]).unwrap(), 0.5));
        assert!(close(average_precision(&[0, 1, 1], &[0.3; 3]).unwrap(), 2.0 / 3.0));
    }

    #[test]
    fn the_sweep_takes_a_tie_as_one_threshold_whatever_its_order() {
        let points = |y: &[u8], p: &[f64]| -> Vec<(f64, usize, usize)> {
            threshold_sweep(y, p).into_iter().map(|s| (s.threshold, s.tp, s.fp)).collect()
        };
        let y = [0, 1, 0, 1, 1, 0, 1];
        let p = [0.5, 0.9, f64::NAN, 0.5, 0.2, 0.5, f64::INFINITY];
        // Highest first; the three at 0.5 enter together; NaN and ∞ are left out.
        let want = vec![(0.9, 1, 0), (0.5, 2, 2), (0.2, 3, 2)];
        assert_eq!(points(&y, &p), want);
        let (mut ry, mut rp) = (y, p);
        ry.reverse();
        rp.reverse();
        assert_eq!(points(&ry, &rp), want);
        // 0.0 and -0.0 are one threshold, named by 0.0 (first in descending total order).
        for (y, p) in [([1, 0], [-0.0, 0.0]), ([0, 1], [0.0, -0.0])] {
            let sweep = threshold_sweep(&y, &p);
            assert_eq!(sweep.iter().map(|s| (s.tp, s.fp)).collect::<Vec<_>>(), [(1, 1)]);
            assert!(sweep[0].threshold.is_sign_positive());
        }
        assert!(threshold_sweep(&[1, 0], &[f64::NAN, f64::NEG_INFINITY]).is_empty());
    }

    #[test]
    fn matches_sklearn_on_random_cases() {
        // Expected values computed with scikit-learn 1.x
        // (roc_auc_score / average_precision_score) on these exact inputs.
        for (y, p, auc, ap) in sklearn_cases() {
            let got_auc = roc_auc(&y, &p).unwrap();
            let got_ap = average_precision(&y, &p).unwrap();
            assert!((got_auc - auc).abs() < 1e-12, "auc {got_auc} vs {auc}");
            assert!((got_ap - ap).abs() < 1e-12, "ap {got_ap} vs {ap}");
        }
    }

    #[allow(clippy::type_complexity)]
    fn sklearn_cases() -> Vec<(Vec<u8>, Vec<f64>, f64, f64)> {
        SKLEARN_CASES.iter().map(|(y, p, auc, ap)| (y.to_vec(), p.to_vec(), *auc, *ap)).collect()
    }

    // Generated with scikit-learn 1.9.1 (random labels, scores rounded to force ties).
    const SKLEARN_CASES: &[(&[u8], &[f64], f64, f64)] = &[
        (
            &[1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[
                0.9, 0.5, 0.7, 0.3, 0.4, 0.1, 0.2, 0.2, 0.5, 0.2, 0.2, 0.3, 0.8, 0.2, 0.4, 0.7, 0.5, 0.6, 0.2, 0.3,
                0.5, 0.3, 0.4, 0.4, 0.2,
            ],
            0.935,
            0.8769230769230769,
        ),
        (
            &[
                0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
                1, 1, 0, 0, 0, 0,
            ],
            &[
                0.535, 0.771, 0.106, 0.81, 0.192, 0.45, 0.535, 0.327, 0.541, 0.707, 0.226, 0.445, 0.57, 0.044, 0.138,
                0.611, 0.567, 0.126, 0.681, 0.554, 0.868, 0.104, 0.293, 0.779, 0.399, 0.352, 0.671, 0.487, 0.357,
                0.487, 0.363, 0.018, 0.065, 0.108, 0.719, 0.3, 0.169, 0.109, 0.062, 0.514,
            ],
            0.8575498575498577,
            0.8395787545787543,
        ),
        (
            &[
                0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0,
                0, 0, 0, 1, 0, 1,
            ],
            &[
                0.5, 0.3, 0.6, 0.1, 0.0, 0.5, 0.6, 0.2, 0.1, 0.5, 0.6, 0.6, 0.4, 0.1, 0.8, 0.4, 0.6, 0.9, 0.6, 0.1,
                0.7, 0.8, 0.8, 0.8, 0.2, 0.1, 0.6, 0.3, 0.1, 0.4, 0.6, 0.9, 0.4, 0.2, 0.3, 0.5, 0.6, 0.6, 0.1, 0.6,
            ],
            0.9173333333333333,
            0.8364413364413364,
        ),
        (
            &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1],
            &[
                0.228, 0.391, 0.158, 0.311, 0.391, 0.171, 0.323, 0.865, 0.459, 0.303, 0.278, 0.169, 0.448, 0.311,
                0.743, 0.573, 0.578, 0.547, 0.288, 0.519, 0.019, 0.387, 0.717, 0.453, 0.842,
            ],
            0.9298245614035088,
            0.8617424242424241,
        ),
        (&[0, 1, 0, 0, 1, 0, 1, 0], &[0.2, 0.8, 0.1, 0.5, 0.6, 0.1, 0.6, 0.2], 1.0, 1.0),
        (
            &[1, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1],
            &[
                0.779, 0.154, 0.828, 0.329, 0.422, 0.444, 0.415, 0.488, 0.705, 0.439, 0.015, 0.37, 0.066, 0.254, 0.552,
                0.585, 0.166, 0.216, 0.509, 0.289, 0.706, 0.269, 0.331, 0.019, 0.847,
            ],
            0.9666666666666668,
            0.9587412587412587,
        ),
    ];

    #[test]
    fn degenerate_inputs() {
        assert_eq!(roc_auc(&[1, 1], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[0, 0], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[], &[]), None);
        assert_eq!(roc_auc(&[0, 1], &[0.1]), None);
        assert_eq!(roc_auc(&[0, 1], &[0.1, f64::NAN]), None);
        assert_eq!(average_precision(&[0, 0], &[0.1, 0.2]), None);
        assert!(close(average_precision(&[1, 1], &[0.1, 0.2]).unwrap(), 1.0));
        assert!(brier(&[], &[]).is_nan());
        assert!(brier(&[1], &[0.5, 0.5]).is_nan());
        let (m, s) = mean_std(&[]);
        assert!(m.is_nan() && s.is_nan());
    }

    #[test]
    fn brier_and_mean_std() {
        assert!(close(brier(&[0, 1, 1], &[0.2, 0.6, 1.0]), (0.04 + 0.16) / 3.0));
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!(close(m, 5.0));
        assert!(close(s, 2.0)); // population std; ddof=1 would give 2.138...
        assert_eq!(mean_std(&[3.5]), (3.5, 0.0));
    }

    fn labels(n: usize, every: usize) -> Vec<u8> {
        (0..n).map(|i| u8::from(i % every == 0)).collect()
    }

    #[test]
    fn folds_cover_disjointly_and_are_sorted() {
        let y = labels(1003, 37);
        let folds = stratified_folds(&y, 5, 9).unwrap();
        assert_eq!(folds.len(), 5);
        let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..y.len()).collect::<Vec<_>>());
        for f in &folds {
            assert!(f.windows(2).all(|w| w[0] < w[1]));
        }
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 1, "{sizes:?}");
    }

    #[test]
    fn folds_are_stratified() {
        let y: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 13 % 3) as u8).collect();
        for k in [2, 3, 5, 7, 10] {
            let folds = stratified_folds(&y, k, 1).unwrap();
            for class in 0..3u8 {
                let n_c = y.iter().filter(|&&v| v == class).count();
                for f in &folds {
                    let c = f.iter().filter(|&&i| y[i] == class).count();
                    assert!(c == n_c / k || c == n_c.div_ceil(k), "k={k} class={class} c={c}");
                }
            }
        }
        // A rare class (fewer than k members) lands in distinct folds.
        let mut y = vec![0u8; 50];
        y[3] = 1;
        y[40] = 1;
        let folds = stratified_folds(&y, 5, 3).unwrap();
        let with_pos = folds.iter().filter(|f| f.iter().any(|&i| y[i] == 1)).count();
        assert_eq!(with_pos, 2);
    }

    #[test]
    fn folds_are_deterministic_and_seed_dependent() {
        let y = labels(500, 10);
        let a = stratified_folds(&y, 5, 42).unwrap();
        assert_eq!(a, stratified_folds(&y, 5, 42).unwrap());
        assert_ne!(a, stratified_folds(&y, 5, 43).unwrap());
    }

    #[test]
    fn folds_reject_bad_k() {
        let y = labels(10, 2);
        assert!(stratified_folds(&y, 0, 1).is_err());
        assert!(stratified_folds(&y, 1, 1).is_err());
        assert!(stratified_folds(&y, 11, 1).is_err());
        assert!(stratified_folds(&[], 2, 1).is_err());
        let folds = stratified_folds(&y, 10, 1).unwrap();
        assert!(folds.iter().all(|f| f.len() == 1));
    }
}
