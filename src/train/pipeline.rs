//! The training pipeline as library calls: a typed [`TrainPlan`] in, a
//! [`TrainOutcome`] out (check inputs → read the CSV → cross-validate →
//! choose the threshold → fit → publish atomically → re-load the file as the
//! server will), and likewise [`EvaluatePlan`] → [`EvaluateOutcome`].
//!
//! Nothing here prints: progress goes to an [`Observer`] (the CLI draws bars,
//! tests pass [`Silent`]) and everything worth showing is in the outcome.

use super::assess::Assessment;
use super::cost::min_cost_threshold;
use super::cv::{cross_validate, youden_threshold, CvReport, FoldResult};
use super::dataset::{read_csv, CsvOptions, Dataset, DatasetError};
use super::fit::{fit, progress_units, recode, Fitted, TrainOptions};
use super::{build_payload, encode_io, PayloadParts};
use crate::model::format::{
    Bands, DecisionCosts, DecisionRule, EvaluationMetrics, LoadError, MeanStd, DEFAULT_MAX_MODEL_BYTES,
};
use crate::model::reference::Reference;
use crate::model::Model;
use crate::repository::layout::check_model_name;
use crate::repository::{local, LocalDirectory, Rejected};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the decision threshold on `probability_late` is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdChoice {
    /// Maximise Youden's J on the out-of-fold predictions.
    YoudenOutOfFold,
    /// A fixed value inside (0, 1).
    Fixed(f64),
    /// Minimise the expected cost on the (calibrated) out-of-fold predictions.
    MinExpectedCost(DecisionCosts),
}

impl ThresholdChoice {
    fn check(self) -> Result<(), TrainError> {
        match self {
            ThresholdChoice::Fixed(t) if !(t > 0.0 && t < 1.0) => Err(TrainError::Threshold(t)),
            ThresholdChoice::MinExpectedCost(c)
                if !(c.false_negative.is_finite() && c.false_positive.is_finite())
                    || c.false_negative <= 0.0
                    || c.false_positive <= 0.0 =>
            {
                Err(TrainError::Costs(c.false_negative, c.false_positive))
            }
            _ => Ok(()),
        }
    }

    /// The decision rule for the served (calibrated) out-of-fold
    /// probabilities `p`.
    fn decide(self, p: &[f64], labels: &[u8]) -> DecisionRule {
        match self {
            ThresholdChoice::Fixed(threshold) => {
                DecisionRule { threshold, strategy: "fixed".into(), ..Default::default() }
            }
            ThresholdChoice::YoudenOutOfFold => DecisionRule {
                threshold: youden_threshold(labels, p),
                strategy: "youden_j_out_of_fold".into(),
                ..Default::default()
            },
            ThresholdChoice::MinExpectedCost(costs) => {
                let best = min_cost_threshold(labels, p, costs);
                DecisionRule {
                    threshold: best.threshold,
                    strategy: "min_expected_cost_out_of_fold".into(),
                    costs: Some(costs),
                    expected_cost_per_1000: Some(best.cost_per_1000),
                    bands: None,
                }
            }
        }
    }
}

/// Everything `train` needs: what to learn from, how, and where to publish.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    /// Training CSV.
    pub data: PathBuf,
    /// Which of its columns are the target and the features.
    pub columns: CsvOptions,
    pub model_name: String,
    /// The repository the next version is published into.
    pub destination: LocalDirectory,
    pub options: TrainOptions,
    /// Folds for the cross-validated metrics (and the out-of-fold threshold).
    pub folds: usize,
    pub threshold: ThresholdChoice,
    /// Optional decision bands recorded in the file.
    pub bands: Option<Bands>,
}

/// What was learned from and published.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub model_name: String,
    pub version: u64,
    /// The `model.json` now in place.
    pub path: PathBuf,
    /// Algorithm name as recorded in the file.
    pub algorithm: &'static str,
    pub data: DataSummary,
    pub fit_seconds: f64,
    pub decision: DecisionRule,
    /// Cross-validated metrics, as recorded in the file.
    pub metrics: EvaluationMetrics,
    /// The out-of-fold assessment: calibration chosen, before and after.
    pub assessment: Assessment,
    /// Payload digest of the published file, as the server reports it.
    pub digest: String,
    pub file_bytes: u64,
    /// Entries in the model's directory the server ignores (e.g. `007`).
    pub ignored: Vec<Rejected>,
}

/// What `evaluate` needs: data, candidate settings (one per algorithm), folds.
#[derive(Debug, Clone)]
pub struct EvaluatePlan {
    pub data: PathBuf,
    /// Which of its columns are the target and the features.
    pub columns: CsvOptions,
    pub candidates: Vec<TrainOptions>,
    pub folds: usize,
    /// Fold-assignment seeds: the cross-validation is repeated once per
    /// seed (empty = each candidate's own seed only).
    pub seeds: Vec<u64>,
}

/// Cross-validated results of every candidate, in plan order.
#[derive(Debug, Clone)]
pub struct EvaluateOutcome {
    pub data: DataSummary,
    pub results: Vec<CandidateResult>,
}

/// One candidate's cross-validation.
#[derive(Debug, Clone)]
pub struct CandidateResult {
    pub options: TrainOptions,
    pub algorithm: &'static str,
    pub summary: EvaluationMetrics,
    pub fit_seconds: MeanStd,
    pub predict_seconds: MeanStd,
    pub folds: Vec<FoldResult>,
    /// One assessment per seed (the first is the run `summary` describes).
    pub assessments: Vec<Assessment>,
}

/// The data a pipeline read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSummary {
    /// The path as given.
    pub path: PathBuf,
    /// File name, as recorded in model files.
    pub source: String,
    pub rows: usize,
    pub positives: usize,
}

impl DataSummary {
    fn of(path: &Path, data: &Dataset) -> DataSummary {
        DataSummary {
            path: path.to_path_buf(),
            source: data.source.clone(),
            rows: data.labels.len(),
            positives: data.positives(),
        }
    }

    /// Share of rows labelled late.
    pub fn late_rate(&self) -> f64 {
        self.positives as f64 / self.rows as f64
    }
}

/// Receives progress while a pipeline runs. Every method defaults to doing nothing.
pub trait Observer: Sync {
    /// The data has been read.
    fn data_loaded(&self, _data: &DataSummary) {}
    /// A stage of `units` units of work starts (`cv random_forest`, `fit logistic_regression`).
    fn stage_started(&self, _label: &str, _units: u64) {}
    /// `units` more units of the current stage are done; called from worker threads.
    fn advanced(&self, _units: u64) {}
    /// The current stage is over.
    fn stage_finished(&self) {}
}

/// An [`Observer`] that ignores everything.
pub struct Silent;

impl Observer for Silent {}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    ModelName(String),
    #[error("threshold {0} must be inside (0, 1)")]
    Threshold(f64),
    #[error("costs must be positive amounts (false negative {0}, false positive {1})")]
    Costs(f64, f64),
    #[error("{0}")]
    Bands(String),
    #[error("cross-validation needs at least 2 folds, got {0}")]
    Folds(usize),
    #[error("nothing to evaluate: no algorithm given")]
    NoCandidates,
    #[error("reading {path}")]
    Data { path: String, source: DatasetError },
    #[error(transparent)]
    CrossValidation(#[from] super::cv::CvError),
    #[error(transparent)]
    Fit(#[from] super::fit::FitError),
    #[error("publishing under {root}")]
    Publish { root: String, source: std::io::Error },
    #[error("the file just written does not load")]
    Verify(#[source] LoadError),
}

impl TrainPlan {
    /// Checks the plan without touching the disk.
    pub fn check(&self) -> Result<(), TrainError> {
        check_model_name(&self.model_name).map_err(TrainError::ModelName)?;
        self.threshold.check()?;
        if let Some(bands) = &self.bands {
            bands.validate().map_err(TrainError::Bands)?;
        }
        check_folds(self.folds)
    }
}

impl EvaluatePlan {
    /// Checks the plan without touching the disk.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.candidates.is_empty() {
            return Err(TrainError::NoCandidates);
        }
        check_folds(self.folds)
    }
}

fn check_folds(folds: usize) -> Result<(), TrainError> {
    if folds < 2 {
        return Err(TrainError::Folds(folds));
    }
    Ok(())
}

/// Trains on `plan.data`, publishes the next version of `plan.model_name`
/// and checks the published file loads exactly as the server will load it.
pub fn train(plan: &TrainPlan, observer: &dyn Observer) -> Result<TrainOutcome, TrainError> {
    plan.check()?;
    let ignored = plan.destination.rejected_entries(&plan.model_name);
    let (data, summary) = load(&plan.data, &plan.columns, observer)?;
    let options = &plan.options;
    let report = run_cv(options, &data, plan.folds, observer)?;
    let assessment = Assessment::of(options.seed, &report, &data.labels);
    let mut metrics = report.summary(&data.labels);
    metrics.calibration = Some(assessment.summary());
    let mut decision = plan.threshold.decide(&assessment.calibration.calibrated, &data.labels);
    decision.bands = plan.bands.clone();

    let started = Instant::now();
    let fitted = stage(observer, &format!("fit {}", options.algorithm.name()), progress_units(options), |tick| {
        fit(options, &data.schema, &data.rows, &data.labels, tick)
    })?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let reference = training_reference(&data, &fitted, &assessment.calibration.calibrated);

    let published = plan
        .destination
        .publish_next(&plan.model_name, &|version| {
            encode_io(&build_payload(PayloadParts {
                model_name: &plan.model_name,
                version,
                options,
                data: &data,
                fitted: &fitted,
                decision: decision.clone(),
                metrics: Some(metrics.clone()),
                calibration: assessment.calibration.calibration.clone(),
                reference: Some(reference.clone()),
            }))
        })
        .map_err(|source| TrainError::Publish { root: plan.destination.root().display().to_string(), source })?;
    let bytes = local::read_file(&published.path, DEFAULT_MAX_MODEL_BYTES).map_err(TrainError::Verify)?;
    let model = Model::from_bytes(&bytes).map_err(TrainError::Verify)?;
    Ok(TrainOutcome {
        model_name: plan.model_name.clone(),
        version: published.version,
        path: published.path,
        algorithm: options.algorithm.name(),
        data: summary,
        fit_seconds,
        decision,
        metrics,
        assessment,
        digest: model.digest,
        file_bytes: bytes.len() as u64,
        ignored,
    })
}

/// The training population's bins recorded for drift monitoring: the
/// rows as the fitted schema decodes them, and as the score the calibrated
/// out-of-fold probabilities (what the model says of applications it was
/// not fitted on, as it will of new ones; in-sample scores of a forest are
/// more extreme than any it gives when serving).
fn training_reference(data: &Dataset, fitted: &Fitted, scores: &[f64]) -> Reference {
    let rows = recode(&data.schema, &fitted.schema, &data.rows);
    let (fields, _) = fitted.encoding();
    Reference::build(&fields, rows.view(), scores)
}

/// Cross-validates every candidate of `plan` on the same folds.
pub fn evaluate(plan: &EvaluatePlan, observer: &dyn Observer) -> Result<EvaluateOutcome, TrainError> {
    plan.check()?;
    let (data, summary) = load(&plan.data, &plan.columns, observer)?;
    let mut results = Vec::with_capacity(plan.candidates.len());
    for options in &plan.candidates {
        let seeds = if plan.seeds.is_empty() { vec![options.seed] } else { plan.seeds.clone() };
        let mut first = None;
        let mut assessments = Vec::with_capacity(seeds.len());
        for seed in seeds {
            let seeded = TrainOptions { seed, ..options.clone() };
            let report = run_cv(&seeded, &data, plan.folds, observer)?;
            assessments.push(Assessment::of(seed, &report, &data.labels));
            first.get_or_insert(report);
        }
        let Some(report) = first else { continue };
        let (fit_seconds, predict_seconds) = report.timing();
        let mut summary = report.summary(&data.labels);
        summary.calibration = assessments.first().map(Assessment::summary);
        results.push(CandidateResult {
            options: options.clone(),
            algorithm: report.algorithm,
            summary,
            fit_seconds,
            predict_seconds,
            folds: report.folds,
            assessments,
        });
    }
    Ok(EvaluateOutcome { data: summary, results })
}

fn load(path: &Path, columns: &CsvOptions, observer: &dyn Observer) -> Result<(Dataset, DataSummary), TrainError> {
    let data =
        read_csv(path, columns).map_err(|source| TrainError::Data { path: path.display().to_string(), source })?;
    let summary = DataSummary::of(path, &data);
    observer.data_loaded(&summary);
    Ok((data, summary))
}

fn run_cv(
    options: &TrainOptions,
    data: &Dataset,
    folds: usize,
    observer: &dyn Observer,
) -> Result<CvReport, TrainError> {
    let units = progress_units(options) * folds as u64;
    let report = stage(observer, &format!("cv {}", options.algorithm.name()), units, |tick| {
        cross_validate(options, data, folds, options.seed, tick)
    })?;
    Ok(report)
}

/// The progress callback `fit` and `cross_validate` take.
type Tick<'a> = &'a (dyn Fn(u64) + Sync);

/// Runs `work` as one observed stage, handing it the tick callback.
fn stage<T>(observer: &dyn Observer, label: &str, units: u64, work: impl FnOnce(Tick<'_>) -> T) -> T {
    observer.stage_started(label, units);
    let out = work(&|n| observer.advanced(n));
    observer.stage_finished();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dataset::write_csv;
    use crate::train::fit::Algorithm;
    use crate::train::synth;
    use std::sync::Mutex;

    /// Records what the pipeline reports, to check the stages are observed.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<String>>,
    }

    impl Observer for Recorder {
        fn data_loaded(&self, data: &DataSummary) {
            self.events.lock().unwrap().push(format!("data {}", data.rows));
        }
        fn stage_started(&self, label: &str, _units: u64) {
            self.events.lock().unwrap().push(label.to_string());
        }
    }

    fn small_options(algorithm: Algorithm) -> TrainOptions {
        let mut options = TrainOptions::new(algorithm, 7);
        options.trees = 5;
        options
    }

    fn csv(dir: &Path) -> PathBuf {
        let path = dir.join("loans.csv");
        write_csv(&path, &synth::generate(2_000, 3), &[]).unwrap();
        path
    }

    #[test]
    fn trains_publishes_consecutive_versions_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("credit-risk/007")).unwrap();
        let mut plan = TrainPlan {
            data: csv(dir.path()),
            columns: CsvOptions::default(),
            model_name: "credit-risk".into(),
            destination: LocalDirectory::new(&models),
            options: small_options(Algorithm::Forest),
            folds: 2,
            threshold: ThresholdChoice::YoudenOutOfFold,
            bands: None,
        };
        let recorder = Recorder::default();
        let first = train(&plan, &recorder).unwrap();
        assert_eq!(first.version, 1, "007 is not version 7");
        assert_eq!(first.path, models.join("credit-risk/1/model.json"));
        assert_eq!(*recorder.events.lock().unwrap(), ["data 2000", "cv random_forest", "fit random_forest"]);
        let ignored: Vec<&str> = first.ignored.iter().map(|r| r.entry.as_str()).collect();
        assert_eq!(ignored, ["007"]);
        assert!(first.ignored[0].reason.contains("leading zeros"));
        assert_eq!(first.algorithm, "random_forest");
        assert_eq!((first.data.rows, first.data.source.as_str()), (2_000, "loans.csv"));
        assert_eq!(first.decision.strategy, "youden_j_out_of_fold");
        assert!(first.decision.threshold > 0.0 && first.decision.threshold < 1.0);
        assert_eq!((first.metrics.folds, first.metrics.method.as_str()), (2, "stratified_2_fold"));
        assert!(first.metrics.roc_auc.mean > 0.5, "{:?}", first.metrics);

        let bytes = std::fs::read(&first.path).unwrap();
        assert_eq!(bytes.len() as u64, first.file_bytes);
        let model = Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.digest, first.digest);
        let reference = model.reference.as_ref().expect("train records a reference");
        assert_eq!((reference.rows, reference.features.len()), (2_000, model.fields.len()));
        assert_eq!(reference.score.counts.iter().sum::<u64>(), 2_000);
        assert!(reference.score.edges.len() >= 5, "score deciles: {:?}", reference.score.edges);
        assert_eq!((model.meta.model_name.as_str(), model.meta.model_version), ("credit-risk", 1));
        assert_eq!(model.meta.metrics.as_ref(), Some(&first.metrics));
        assert_eq!(model.meta.decision, first.decision);

        plan.options = small_options(Algorithm::Logistic);
        plan.threshold = ThresholdChoice::Fixed(0.25);
        let second = train(&plan, &Silent).unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(second.decision, DecisionRule { threshold: 0.25, strategy: "fixed".into(), ..Default::default() });
        let model = Model::from_bytes(&std::fs::read(&second.path).unwrap()).unwrap();
        assert_eq!((model.meta.model_version, model.meta.algorithm.as_str()), (2, "logistic_regression"));
        assert!(model.meta.metrics.is_some());
    }

    #[test]
    fn a_cost_based_threshold_the_calibration_and_bands_are_recorded_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let costs = DecisionCosts { false_negative: 5000.0, false_positive: 300.0 };
        let bands =
            Bands { names: vec!["approve".into(), "review".into(), "decline".into()], cutoffs: vec![0.01, 0.05] };
        let plan = TrainPlan {
            data: csv(dir.path()),
            columns: CsvOptions::default(),
            model_name: "credit-risk".into(),
            destination: LocalDirectory::new(dir.path().join("models")),
            options: small_options(Algorithm::Forest),
            folds: 3,
            threshold: ThresholdChoice::MinExpectedCost(costs),
            bands: Some(bands.clone()),
        };
        let out = train(&plan, &Silent).unwrap();
        assert_eq!(out.decision.strategy, "min_expected_cost_out_of_fold");
        assert_eq!(out.decision.costs, Some(costs));
        let p = &out.assessment.calibration.calibrated;
        let cost = out.decision.expected_cost_per_1000.unwrap();
        // The recorded cost is the cost at the recorded threshold, and no
        // other threshold on the same predictions is cheaper.
        let at = |t| crate::train::cost::cost_at(&out.assessment.labels, p, costs, t);
        assert!((at(out.decision.threshold) - cost).abs() < 1e-6, "{cost} vs {}", at(out.decision.threshold));
        for t in [0.001, 0.01, 0.03, 0.1, 0.3] {
            assert!(at(t) >= cost - 1e-6, "threshold {t} costs {} < {cost}", at(t));
        }
        let model = Model::from_bytes(&std::fs::read(&out.path).unwrap()).unwrap();
        assert_eq!(model.meta.decision.bands, Some(bands));
        let summary = model.meta.metrics.as_ref().and_then(|m| m.calibration.clone()).unwrap();
        assert_eq!(summary.brier_after, out.assessment.calibration.after.brier);
        assert!(summary.brier_after <= summary.brier_before, "{summary:?}");
        let bad = TrainPlan {
            threshold: ThresholdChoice::MinExpectedCost(DecisionCosts { false_negative: -1.0, ..costs }),
            ..plan
        };
        assert!(matches!(train(&bad, &Silent), Err(TrainError::Costs(..))));
    }

    #[test]
    fn bad_plans_fail_before_reading_anything() {
        let dir = tempfile::tempdir().unwrap();
        let plan = TrainPlan {
            data: dir.path().join("absent.csv"),
            columns: CsvOptions::default(),
            model_name: "credit-risk".into(),
            destination: LocalDirectory::new(dir.path().join("models")),
            options: small_options(Algorithm::Logistic),
            folds: 2,
            threshold: ThresholdChoice::YoudenOutOfFold,
            bands: None,
        };
        let error = |plan: TrainPlan| train(&plan, &Silent).unwrap_err().to_string();
        assert!(error(TrainPlan { model_name: "../x".into(), ..plan.clone() }).contains("model name"));
        for bad in [0.0, 1.0, -0.5, f64::NAN] {
            let e = error(TrainPlan { threshold: ThresholdChoice::Fixed(bad), ..plan.clone() });
            assert!(e.contains("must be inside (0, 1)"), "{e}");
        }
        assert!(error(TrainPlan { folds: 1, ..plan.clone() }).contains("at least 2 folds"));
        assert!(matches!(train(&plan, &Silent), Err(TrainError::Data { .. })), "the plan itself is fine");
        assert!(!dir.path().join("models").exists(), "nothing published");
        let eval = EvaluatePlan {
            data: plan.data.clone(),
            columns: CsvOptions::default(),
            candidates: vec![],
            folds: 2,
            seeds: vec![],
        };
        assert!(matches!(evaluate(&eval, &Silent), Err(TrainError::NoCandidates)));
    }

    #[test]
    fn evaluates_each_candidate_on_the_same_data() {
        let dir = tempfile::tempdir().unwrap();
        let plan = EvaluatePlan {
            data: csv(dir.path()),
            columns: CsvOptions::default(),
            candidates: vec![small_options(Algorithm::Logistic), small_options(Algorithm::Forest)],
            folds: 2,
            seeds: vec![],
        };
        let outcome = evaluate(&plan, &Silent).unwrap();
        assert_eq!(outcome.data.rows, 2_000);
        let names: Vec<&str> = outcome.results.iter().map(|r| r.algorithm).collect();
        assert_eq!(names, ["logistic_regression", "random_forest"]);
        for r in &outcome.results {
            assert_eq!(r.folds.len(), 2);
            assert_eq!(r.summary.folds, 2);
            assert!(r.summary.roc_auc.mean > 0.5, "{:?}", r.summary);
        }
    }
}
