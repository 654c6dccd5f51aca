//! One cross-validation run assessed as a risk team reads it: ranking
//! (ROC-AUC, PR-AUC) and calibration (Brier, log loss, ECE) of the raw and
//! the calibrated out-of-fold probabilities, the calibration chosen, and
//! feature importance. The HTML report and `evaluate --seeds` are built
//! from these.

use super::calibrate::{choose, CalibrationChoice, CalibrationMetrics};
use super::cv::CvReport;
use super::evaluation::{average_precision, mean_std, roc_auc};
use crate::model::format::{CalibrationSummary, MeanStd};
use serde::Serialize;

/// Ranking and calibration of one set of out-of-fold probabilities.
/// ROC-AUC and PR-AUC are means over folds (as everywhere else); Brier, log
/// loss and ECE are over all out-of-fold rows pooled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    pub log_loss: f64,
    pub ece: f64,
}

impl Scores {
    fn of(labels: &[u8], p: &[f64], fold_of: &[usize], pooled: &CalibrationMetrics) -> Scores {
        let folds = fold_of.iter().copied().max().map_or(0, |m| m + 1);
        let (mut aucs, mut aps) = (Vec::new(), Vec::new());
        for k in 0..folds {
            let (mut y, mut q) = (Vec::new(), Vec::new());
            for ((&l, &v), &f) in labels.iter().zip(p).zip(fold_of) {
                if f == k {
                    y.push(l);
                    q.push(v);
                }
            }
            aucs.extend(roc_auc(&y, &q));
            aps.extend(average_precision(&y, &q));
        }
        Scores {
            roc_auc: mean_std(&aucs).0,
            pr_auc: mean_std(&aps).0,
            brier: pooled.brier,
            log_loss: pooled.log_loss,
            ece: pooled.ece,
        }
    }
}

/// One seed's cross-validation, assessed.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub seed: u64,
    pub algorithm: &'static str,
    pub raw: Scores,
    pub calibrated: Scores,
    pub calibration: CalibrationChoice,
    /// Mean absolute contribution per feature, in schema order.
    pub importance: Vec<f64>,
    /// The features' names, in schema order.
    pub features: Vec<String>,
    #[serde(skip)]
    pub labels: Vec<u8>,
    #[serde(skip)]
    pub fold_of: Vec<usize>,
    /// Raw out-of-fold probabilities.
    #[serde(skip)]
    pub out_of_fold: Vec<f64>,
}

impl Assessment {
    pub fn of(seed: u64, report: &CvReport, labels: &[u8]) -> Assessment {
        let calibration = choose(&report.out_of_fold, labels, &report.fold_of);
        let raw = Scores::of(labels, &report.out_of_fold, &report.fold_of, &calibration.before);
        let calibrated = Scores::of(labels, &calibration.calibrated, &report.fold_of, &calibration.after);
        Assessment {
            seed,
            algorithm: report.algorithm,
            raw,
            calibrated,
            calibration,
            importance: report.importance.clone(),
            features: report.features.clone(),
            labels: labels.to_vec(),
            fold_of: report.fold_of.clone(),
            out_of_fold: report.out_of_fold.clone(),
        }
    }

    /// What the model file records about calibration.
    pub fn summary(&self) -> CalibrationSummary {
        let c = &self.calibration;
        CalibrationSummary {
            method: c.calibration.as_ref().map_or("none", |m| m.method()).to_string(),
            brier_before: c.before.brier,
            brier_after: c.after.brier,
            log_loss_before: c.before.log_loss,
            log_loss_after: c.after.log_loss,
            ece_before: c.before.ece,
            ece_after: c.after.ece,
        }
    }
}

/// Mean ± std across seeds of one score.
pub fn across_seeds(runs: &[Assessment], f: impl Fn(&Assessment) -> f64) -> MeanStd {
    let (mean, std) = mean_std(&runs.iter().map(f).collect::<Vec<_>>());
    MeanStd { mean, std }
}
