//! Stratified k-fold cross-validation: per-fold ROC-AUC, PR-AUC, Brier and
//! timings, the out-of-fold probabilities, and the decision threshold chosen
//! on them.

use super::dataset::Dataset;
use super::evaluation::{average_precision, brier, mean_std, roc_auc, stratified_folds, threshold_sweep};
use super::fit::{fit, recode, TrainOptions};
use crate::model::format::{EvaluationMetrics, MeanStd};
use serde::Serialize;
use std::time::Instant;

/// Metrics of one fold.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    pub fit_seconds: f64,
    /// Time to score the whole test fold with the compiled estimator.
    pub predict_seconds: f64,
    pub test_rows: usize,
}

/// The outcome of cross-validating one algorithm.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    pub algorithm: &'static str,
    pub folds: Vec<FoldResult>,
    /// Out-of-fold P(late) for every row of the data set.
    #[serde(skip)]
    pub out_of_fold: Vec<f64>,
    /// The fold each row was tested in.
    #[serde(skip)]
    pub fold_of: Vec<usize>,
    /// Feature importance: the mean absolute path contribution (Saabas) or
    /// linear contribution of each feature over the test rows, on the
    /// estimator's own scale, averaged over folds; in schema order.
    pub importance: Vec<f64>,
    /// The features' names, in schema order.
    pub features: Vec<String>,
}

impl CvReport {
    pub fn summary(&self, labels: &[u8]) -> EvaluationMetrics {
        let rate = labels.iter().map(|&y| y as f64).sum::<f64>() / labels.len().max(1) as f64;
        EvaluationMetrics {
            method: format!("stratified_{}_fold", self.folds.len()),
            folds: self.folds.len() as u32,
            roc_auc: self.over_folds(|f| f.roc_auc),
            pr_auc: self.over_folds(|f| f.pr_auc),
            brier: self.over_folds(|f| f.brier),
            brier_base_rate: rate * (1.0 - rate),
            calibration: None,
        }
    }

    /// Fit and predict seconds, mean ± std over folds.
    pub fn timing(&self) -> (MeanStd, MeanStd) {
        (self.over_folds(|f| f.fit_seconds), self.over_folds(|f| f.predict_seconds))
    }

    fn over_folds(&self, f: fn(&FoldResult) -> f64) -> MeanStd {
        let (mean, std) = mean_std(&self.folds.iter().map(f).collect::<Vec<_>>());
        MeanStd { mean, std }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CvError {
    #[error("{0}")]
    Folds(String),
    #[error("fold {fold}: {source}")]
    Fit { fold: usize, source: super::fit::FitError },
    #[error("fold {fold}: fitted estimator does not compile: {message}")]
    Compile { fold: usize, message: String },
}

/// Runs stratified k-fold CV. `progress(n)` is called as units complete
/// (`folds * fit::progress_units(opts)` in total).
pub fn cross_validate(
    opts: &TrainOptions,
    data: &Dataset,
    folds: usize,
    seed: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CvReport, CvError> {
    let test_sets = stratified_folds(&data.labels, folds, seed).map_err(CvError::Folds)?;
    let mut out_of_fold = vec![f64::NAN; data.labels.len()];
    let mut fold_of = vec![0; data.labels.len()];
    let mut importance = vec![0.0; data.schema.features.len()];
    let mut results = Vec::with_capacity(folds);
    for (fold, test) in test_sets.iter().enumerate() {
        let mut in_test = vec![false; data.labels.len()];
        test.iter().for_each(|&i| in_test[i] = true);
        let train: Vec<usize> = (0..data.labels.len()).filter(|&i| !in_test[i]).collect();
        let (train_rows, train_labels) = data.subset(&train);
        let started = Instant::now();
        let fitted = fit(opts, &data.schema, &train_rows, &train_labels, progress)
            .map_err(|source| CvError::Fit { fold, source })?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let (test_rows, _) = data.subset(test);
        let test_rows = recode(&data.schema, &fitted.schema, &test_rows);

        let started = Instant::now();
        let (_, encoder) = fitted.encoding();
        let width = encoder.width();
        let compiled =
            fitted.estimator.compile(width).map_err(|e| CvError::Compile { fold, message: e.to_string() })?;
        let mut x = vec![0.0; width];
        let probs: Vec<f64> = test_rows
            .iter()
            .map(|row| {
                encoder.encode_into(row, &mut x);
                compiled.probability(&x)
            })
            .collect();
        let predict_seconds = started.elapsed().as_secs_f64();
        let column_feature = encoder.column_features();
        let mut cols = vec![0.0; width];
        for row in test_rows.iter() {
            encoder.encode_into(row, &mut x);
            cols.fill(0.0);
            compiled.contributions(&x, &mut cols);
            for (c, &f) in cols.iter().zip(column_feature) {
                importance[f as usize] += c.abs() / (test.len() * folds) as f64;
            }
        }

        let y: Vec<u8> = test.iter().map(|&i| data.labels[i]).collect();
        for (&i, &p) in test.iter().zip(&probs) {
            out_of_fold[i] = p;
            fold_of[i] = fold;
        }
        results.push(FoldResult {
            roc_auc: roc_auc(&y, &probs).unwrap_or(f64::NAN),
            pr_auc: average_precision(&y, &probs).unwrap_or(f64::NAN),
            brier: brier(&y, &probs),
            fit_seconds,
            predict_seconds,
            test_rows: test.len(),
        });
    }
    let features = data.schema.names().map(str::to_string).collect();
    Ok(CvReport { algorithm: opts.algorithm.name(), folds: results, out_of_fold, fold_of, importance, features })
}

/// The threshold that maximises Youden's J (TPR − FPR) over the scores:
/// the decision a class-balanced classifier would make, while the
/// probabilities themselves stay calibrated. Clamped into (0, 1).
pub fn youden_threshold(labels: &[u8], scores: &[f64]) -> f64 {
    let pos = labels.iter().filter(|&&y| y != 0).count() as f64;
    let neg = labels.len() as f64 - pos;
    let (mut best_j, mut best_t) = (f64::NEG_INFINITY, 0.5);
    for s in threshold_sweep(labels, scores) {
        let j = s.tp as f64 / pos.max(1.0) - s.fp as f64 / neg.max(1.0);
        if j > best_j {
            best_j = j;
            best_t = s.threshold;
        }
    }
    best_t.clamp(1e-6, 1.0 - 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youden_picks_the_score_that_separates_best() {
        let y = [0, 0, 0, 1, 1, 0];
        let s = [0.01, 0.02, 0.03, 0.2, 0.3, 0.25];
        // Flagging >= 0.2 catches both positives with one false positive: J = 1 - 1/4.
        assert_eq!(youden_threshold(&y, &s), 0.2);
    }
}
