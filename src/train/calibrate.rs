//! Calibrating the probability on out-of-fold predictions, and measuring
//! calibration.
//!
//! [`choose`] fits both isotonic regression (pool-adjacent-violators) and
//! Platt scaling (logistic regression on the log-odds) and picks the one with
//! the lower *cross-fitted* Brier score (log loss breaks ties): each fold's
//! out-of-fold predictions are calibrated by a map fitted on the other
//! folds' only, so the comparison never scores a map on the rows it was
//! fitted on. The chosen method is then refitted on all out-of-fold
//! predictions and stored in the model file. When neither beats the raw
//! probability, none is stored.
//!
//! Calibration is measured by Brier score, log loss, and the expected
//! calibration error over [`BINS`] equal-count bins of predicted
//! probability (equal-width bins would put nearly every loan of a 1.4 %
//! base rate into the first bin and hide miscalibration).

use crate::model::calibration::{logit, Calibration};
use crate::model::estimator::sigmoid;
use crate::train::evaluation::brier;
use serde::Serialize;

/// Reliability bins (equal-count) used for ECE and the reliability diagram.
pub const BINS: usize = 10;

/// Log loss clips probabilities this far from 0 and 1 (scikit-learn's eps).
const LOG_LOSS_EPS: f64 = 1e-15;

/// One reliability bin: how many rows, their mean predicted probability and
/// their observed late rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub rows: usize,
    pub predicted: f64,
    pub observed: f64,
}

/// Calibration of a set of probabilities against labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationMetrics {
    pub brier: f64,
    pub log_loss: f64,
    /// Expected calibration error: Σ (rows in bin / rows) · |predicted − observed|.
    pub ece: f64,
    pub bins: Vec<ReliabilityBin>,
}

impl CalibrationMetrics {
    pub fn of(labels: &[u8], p: &[f64]) -> CalibrationMetrics {
        let bins = reliability(labels, p, BINS);
        let n = labels.len().max(1) as f64;
        let ece = bins.iter().map(|b| b.rows as f64 / n * (b.predicted - b.observed).abs()).sum();
        CalibrationMetrics { brier: brier(labels, p), log_loss: log_loss(labels, p), ece, bins }
    }
}

/// What [`choose`] decided and measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationChoice {
    /// The map to store (fitted on all out-of-fold predictions), if any
    /// beat the raw probability.
    pub calibration: Option<Calibration>,
    /// Cross-fitted Brier score of each candidate: `none`, `isotonic`, `platt`.
    pub candidates: Vec<(&'static str, f64, f64)>,
    /// The out-of-fold probabilities before calibration.
    pub before: CalibrationMetrics,
    /// The cross-fitted calibrated out-of-fold probabilities.
    pub after: CalibrationMetrics,
    /// Cross-fitted calibrated out-of-fold probability of every row (the raw
    /// one when no calibration was chosen): what the threshold is chosen on.
    #[serde(skip)]
    pub calibrated: Vec<f64>,
}

/// The calibration methods `choose` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Isotonic,
    Platt,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Isotonic => "isotonic",
            Method::Platt => "platt",
        }
    }

    pub fn fit(self, scores: &[f64], labels: &[u8]) -> Calibration {
        match self {
            Method::Isotonic => fit_isotonic(scores, labels),
            Method::Platt => fit_platt(scores, labels),
        }
    }
}

/// Chooses and fits the calibration from out-of-fold probabilities `oof`,
/// their labels and the fold each row was tested in.
pub fn choose(oof: &[f64], labels: &[u8], fold_of: &[usize]) -> CalibrationChoice {
    let before = CalibrationMetrics::of(labels, oof);
    let mut candidates = vec![("none", before.brier, before.log_loss)];
    let mut best: Option<(Method, Vec<f64>, f64, f64)> = None;
    for method in [Method::Isotonic, Method::Platt] {
        let p = cross_fitted(method, oof, labels, fold_of);
        let (b, l) = (brier(labels, &p), log_loss(labels, &p));
        candidates.push((method.name(), b, l));
        let better = match &best {
            None => true,
            Some((_, _, bb, bl)) => b < *bb || (b == *bb && l < *bl),
        };
        if better {
            best = Some((method, p, b, l));
        }
    }
    match best {
        Some((method, p, b, _)) if b < before.brier => CalibrationChoice {
            calibration: Some(method.fit(oof, labels)),
            candidates,
            after: CalibrationMetrics::of(labels, &p),
            before,
            calibrated: p,
        },
        _ => {
            CalibrationChoice { calibration: None, candidates, after: before.clone(), before, calibrated: oof.to_vec() }
        }
    }
}

/// Each fold's rows calibrated by a map fitted on the other folds' rows.
pub fn cross_fitted(method: Method, oof: &[f64], labels: &[u8], fold_of: &[usize]) -> Vec<f64> {
    let folds = fold_of.iter().copied().max().map_or(0, |m| m + 1);
    let mut out = oof.to_vec();
    for k in 0..folds {
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for ((&p, &l), &f) in oof.iter().zip(labels).zip(fold_of) {
            if f != k {
                s.push(p);
                y.push(l);
            }
        }
        if s.is_empty() {
            continue;
        }
        let map = method.fit(&s, &y);
        for (o, &f) in out.iter_mut().zip(fold_of) {
            if f == k {
                *o = map.apply(*o);
            }
        }
    }
    out
}

/// Isotonic regression by pool-adjacent-violators over the scores sorted
/// ascending (ties pooled first). Each block keeps its lowest and highest
/// score as breakpoints, so the map is flat inside a block and linear
/// between blocks.
pub fn fit_isotonic(scores: &[f64], labels: &[u8]) -> Calibration {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Blocks: (sum of labels, rows, lowest score, highest score).
    let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
    for &i in &order {
        let (s, y) = (scores[i], f64::from(labels[i].min(1)));
        match blocks.last_mut() {
            Some(last) if last.3 == s => {
                last.0 += y;
                last.1 += 1.0;
            }
            _ => blocks.push((y, 1.0, s, s)),
        }
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (a, b) = (blocks[n - 2], blocks[n - 1]);
            if a.0 / a.1 <= b.0 / b.1 {
                break;
            }
            blocks[n - 2] = (a.0 + b.0, a.1 + b.1, a.2, b.3);
            blocks.pop();
        }
    }
    let (mut x, mut y) = (Vec::with_capacity(blocks.len() * 2), Vec::with_capacity(blocks.len() * 2));
    for (sum, rows, lo, hi) in blocks {
        let v = sum / rows;
        x.push(lo);
        y.push(v);
        if hi > lo {
            x.push(hi);
            y.push(v);
        }
    }
    if x.is_empty() {
        return Calibration::Platt { a: 1.0, b: 0.0 };
    }
    Calibration::Isotonic { x, y }
}

/// Platt scaling: `sigmoid(a · logit(score) + b)` fitted by Newton's method
/// on the log loss, with Platt's smoothed targets ((N₊ + 1) / (N₊ + 2) and
/// 1 / (N₋ + 2)) so a separable fold cannot push the parameters to infinity.
pub fn fit_platt(scores: &[f64], labels: &[u8]) -> Calibration {
    let pos = labels.iter().filter(|&&y| y != 0).count() as f64;
    let neg = labels.len() as f64 - pos;
    let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let z: Vec<f64> = scores.iter().map(|&s| logit(s)).collect();
    let t: Vec<f64> = labels.iter().map(|&y| if y != 0 { t_pos } else { t_neg }).collect();
    let (mut a, mut b) = (1.0, 0.0);
    for _ in 0..100 {
        // Gradient and Hessian of the mean log loss in (a, b).
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&zi, &ti) in z.iter().zip(&t) {
            let p = sigmoid(a * zi + b);
            let (d, w) = (p - ti, (p * (1.0 - p)).max(1e-12));
            ga += d * zi;
            gb += d;
            haa += w * zi * zi;
            hab += w * zi;
            hbb += w;
        }
        // A small ridge keeps the 2×2 solve well conditioned.
        let (haa, hbb) = (haa + 1e-9, hbb + 1e-9);
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-300 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    if !(a.is_finite() && b.is_finite()) || a < 0.0 {
        return Calibration::Platt { a: 1.0, b: 0.0 };
    }
    Calibration::Platt { a, b }
}

/// Mean negative log-likelihood, probabilities clipped to [eps, 1 − eps].
pub fn log_loss(labels: &[u8], p: &[f64]) -> f64 {
    if labels.is_empty() || labels.len() != p.len() {
        return f64::NAN;
    }
    let sum: f64 = labels
        .iter()
        .zip(p)
        .map(|(&y, &q)| {
            let q = q.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y != 0 {
                -q.ln()
            } else {
                -(1.0 - q).ln()
            }
        })
        .sum();
    sum / labels.len() as f64
}

/// `bins` equal-count bins of the rows sorted by probability (the last
/// takes the remainder); empty bins are left out.
pub fn reliability(labels: &[u8], p: &[f64], bins: usize) -> Vec<ReliabilityBin> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let per = p.len() / bins.max(1);
    let mut out = Vec::with_capacity(bins);
    for k in 0..bins {
        let end = if k + 1 == bins { p.len() } else { (k + 1) * per };
        let rows = &order[(k * per).min(end)..end];
        if rows.is_empty() {
            continue;
        }
        let n = rows.len() as f64;
        out.push(ReliabilityBin {
            rows: rows.len(),
            predicted: rows.iter().map(|&i| p[i]).sum::<f64>() / n,
            observed: rows.iter().filter(|&&i| labels[i] != 0).count() as f64 / n,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::rng::Rng;

    /// Scores whose true late probability is `truth(score)`.
    fn sample(n: usize, seed: u64, truth: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<u8>) {
        let mut rng = Rng::new(seed);
        let mut s = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let score = rng.next_f64() * 0.2;
            s.push(score);
            y.push(u8::from(rng.next_f64() < truth(score)));
        }
        (s, y)
    }

    #[test]
    fn isotonic_is_monotone_and_fixes_a_miscalibrated_score() {
        // The score is twice the true probability.
        let (s, y) = sample(20_000, 1, |score| score / 2.0);
        let c = fit_isotonic(&s, &y);
        c.validate().unwrap();
        let before = CalibrationMetrics::of(&y, &s);
        let p: Vec<f64> = s.iter().map(|&v| c.apply(v)).collect();
        let after = CalibrationMetrics::of(&y, &p);
        assert!(after.ece < before.ece / 3.0, "{} -> {}", before.ece, after.ece);
        assert!(after.brier < before.brier);
        assert!((c.apply(0.1) - 0.05).abs() < 0.02, "{}", c.apply(0.1));
    }

    #[test]
    fn pav_pools_violators() {
        let c = fit_isotonic(&[0.1, 0.2, 0.3, 0.4], &[0, 1, 0, 1]);
        let Calibration::Isotonic { x, y } = &c else { panic!("isotonic") };
        assert_eq!(x, &[0.1, 0.2, 0.3, 0.4]);
        assert_eq!(y, &[0.0, 0.5, 0.5, 1.0]);
    }

    #[test]
    fn platt_recovers_a_known_log_odds_map() {
        // True probability: sigmoid(0.8 · logit(score) − 0.5).
        let (s, y) = sample(50_000, 2, |score| sigmoid(0.8 * logit(score) - 0.5));
        let Calibration::Platt { a, b } = fit_platt(&s, &y) else { panic!("platt") };
        assert!((a - 0.8).abs() < 0.1 && (b + 0.5).abs() < 0.35, "a = {a}, b = {b}");
    }

    #[test]
    fn choose_compares_cross_fitted_candidates_and_keeps_a_calibrated_score_raw_if_nothing_helps() {
        let (s, y) = sample(20_000, 3, |score| score / 2.0);
        let folds: Vec<usize> = (0..s.len()).map(|i| i % 5).collect();
        let choice = choose(&s, &y, &folds);
        assert!(choice.calibration.is_some());
        assert_eq!(choice.candidates.len(), 3);
        assert!(choice.after.brier < choice.before.brier);
        assert!(choice.after.ece < 0.005, "{}", choice.after.ece);
        assert_eq!(choice.calibrated.len(), s.len());
        // A perfectly calibrated score on few rows: neither map is kept
        // unless it beats the raw probability out of fold.
        let (s, y) = sample(400, 4, |score| score);
        let folds: Vec<usize> = (0..s.len()).map(|i| i % 5).collect();
        let choice = choose(&s, &y, &folds);
        let best = choice.candidates.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        assert_eq!(choice.calibration.is_none(), best == choice.before.brier, "{:?}", choice.candidates);
    }

    #[test]
    fn reliability_bins_are_equal_count_and_ece_is_their_weighted_gap() {
        let p = [0.1, 0.1, 0.2, 0.2, 0.9, 0.9];
        let y = [0, 0, 0, 1, 1, 1];
        let bins = reliability(&y, &p, 3);
        assert_eq!(bins.iter().map(|b| b.rows).collect::<Vec<_>>(), [2, 2, 2]);
        assert_eq!(bins[1].observed, 0.5);
        let m = CalibrationMetrics::of(&y, &p);
        assert!(m.log_loss > 0.0 && m.brier > 0.0);
        let perfect = CalibrationMetrics::of(&[0, 1], &[0.0, 1.0]);
        assert_eq!((perfect.brier, perfect.ece), (0.0, 0.0));
        assert!(perfect.log_loss < 1e-12);
    }
}
