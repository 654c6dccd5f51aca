//! Fitting estimators with smartcore and converting them into the model
//! format's estimator.
//!
//! - Random forest: smartcore's `RandomForestClassifier`, trained in
//!   fixed-size chunks of trees on all cores (chunk seeds depend only on the
//!   seed, so the result is identical for any thread count). smartcore's trees
//!   only vote a class, so each leaf's probability is re-estimated as the late
//!   rate of the training rows that reach it; this gives a forest probability
//!   that ranks finely and is close to calibrated.
//! - Logistic regression: smartcore's L2-regularised `LogisticRegression` on
//!   standardised numeric columns, folded back into raw-unit coefficients.
//!
//! Class imbalance (about 1.4 % late) is handled by the decision threshold
//! (chosen on out-of-fold predictions, see `cv`), not by re-weighting: the
//! probabilities stay calibrated, which is what a lender prices with.

use crate::model::encoder::Encoder;
use crate::model::estimator::Estimator;
use crate::model::fields::Fields;
use crate::model::input::MISSING_CATEGORY;
use crate::model::preprocess::median;
use crate::model::row::{Rows, Value as Cell};
use crate::model::schema::{Kind, Schema};
use crate::model::tree::Tree;
use crate::train::rng::Rng;
use serde_json::{json, Map, Value};
use smartcore::ensemble::random_forest_classifier::{RandomForestClassifier, RandomForestClassifierParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The estimators `--algorithm` can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// Random forest (the reference model; 100 trees by default).
    Forest,
    /// L2-regularised logistic regression on standardised numerics.
    Logistic,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Forest, Algorithm::Logistic];

    /// Name recorded in model files.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Forest => "random_forest",
            Algorithm::Logistic => "logistic_regression",
        }
    }
}

/// Hyper-parameters for training.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub algorithm: Algorithm,
    pub seed: u64,
    /// Forest: number of trees.
    pub trees: u16,
    /// Forest: minimum rows per leaf.
    pub min_samples_leaf: usize,
    /// Forest: maximum depth (None = unlimited).
    pub max_depth: Option<u16>,
    /// Forest: features tried per split (None = half the encoded columns; see
    /// [`default_max_features`]).
    pub max_features: Option<usize>,
    /// Forest: rows each chunk of trees is grown on (a seeded random subset
    /// when the data has more; None = all rows). Leaf probabilities always use
    /// every training row.
    pub max_samples: Option<usize>,
    /// Logistic regression: L2 penalty.
    pub alpha: f64,
    /// Worker threads for forest training.
    pub threads: usize,
}

impl TrainOptions {
    pub fn new(algorithm: Algorithm, seed: u64) -> Self {
        TrainOptions {
            algorithm,
            seed,
            trees: 100,
            min_samples_leaf: 20,
            max_depth: None,
            max_features: None,
            max_samples: Some(DEFAULT_MAX_SAMPLES),
            alpha: 1.0,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    /// The hyper-parameters that matter for this algorithm, as recorded in the file.
    pub fn hyperparameters(&self) -> Map<String, Value> {
        let v = match self.algorithm {
            Algorithm::Forest => json!({
                "n_trees": self.trees,
                "min_samples_leaf": self.min_samples_leaf,
                "max_depth": self.max_depth,
                "max_features": self.max_features.map(|m| json!(m)).unwrap_or(json!("half")),
                "criterion": "gini",
                "bootstrap": true,
                "max_samples": self.max_samples,
                "trees_per_subsample": TREES_PER_CHUNK,
                "leaf_probability": "late rate of all training rows reaching the leaf",
                "seed": self.seed,
                "trainer": "smartcore RandomForestClassifier",
            }),
            Algorithm::Logistic => json!({
                "alpha": self.alpha,
                "standardize_numeric": true,
                "solver": "lbfgs",
                "trainer": "smartcore LogisticRegression",
            }),
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("training data needs both classes (late and not late); found {positives} late of {rows}")]
    OneClass { rows: usize, positives: usize },
    #[error("smartcore failed: {0}")]
    Smartcore(String),
    #[error("could not read smartcore's fitted trees: {0}")]
    TreeExtraction(String),
    #[error("the fitted schema is not valid: {0}")]
    Schema(String),
}

/// A fitted model: the schema with its imputations and categories, and
/// the estimator over its one-hot encoding.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub schema: Schema,
    pub estimator: Estimator,
}

impl Fitted {
    /// The fitted schema compiled, and its encoder.
    pub fn encoding(&self) -> (Fields, Encoder) {
        let fields = Fields::new(self.schema.clone()).expect("a fitted schema is valid");
        let encoder = Encoder::new(&fields);
        (fields, encoder)
    }
}

/// Fits the imputations and category lists of `base` (a data set's schema)
/// on training `rows` (decoded with `base`), as the reference pipeline
/// does: a number's missing values take the training median; a category
/// lists the ones present in these rows (sorted), plus `missing` when a
/// value is missing, which is what a missing value is taken as. Returns
/// the fitted schema and the rows re-coded for it.
pub fn fit_schema(base: &Schema, rows: &Rows) -> Result<(Schema, Rows), FitError> {
    let mut schema = base.clone();
    for (i, feature) in schema.features.iter_mut().enumerate() {
        match &mut feature.kind {
            Kind::Number { imputed_with, .. } => {
                let mut values: Vec<f64> = rows.view().numbers(i).collect();
                *imputed_with = Some(median(&mut values));
            }
            Kind::Category { categories, imputed_with } => {
                let mut seen = vec![false; categories.len()];
                let mut missing = false;
                for r in rows.iter() {
                    match r.get(i) {
                        Cell::Category(c) => seen[c as usize] = true,
                        _ => missing = true,
                    }
                }
                let mut kept: Vec<String> =
                    categories.iter().zip(&seen).filter(|(_, s)| **s).map(|(c, _)| c.clone()).collect();
                if missing && !kept.iter().any(|c| c == MISSING_CATEGORY) {
                    kept.push(MISSING_CATEGORY.to_string());
                }
                kept.sort_unstable();
                *categories = kept;
                *imputed_with = Some(MISSING_CATEGORY.to_string());
            }
        }
    }
    Fields::new(schema.clone()).map_err(|e| FitError::Schema(e.to_string()))?;
    let fitted_rows = recode(base, &schema, rows);
    Ok((schema, fitted_rows))
}

/// `rows` decoded with `base`, re-coded for `fitted` (the same features,
/// category lists that may differ) as serving translates a shadow's rows
/// ([`Fields::translate`]): a category `fitted` lacks becomes unseen (it
/// encodes to zeros, as an unseen category does when serving).
pub fn recode(base: &Schema, fitted: &Schema, rows: &Rows) -> Rows {
    let compiled = |s: &Schema| Fields::new(s.clone()).expect("a data set's and a fitted schema are valid");
    compiled(fitted).translate(&compiled(base), rows).into_owned()
}

/// Default rows each chunk of trees is grown on.
///
/// smartcore's tree builder scans every training row at every node, so its
/// cost grows with rows × nodes: 100 trees on 100k rows took 434 s on two
/// cores. Growing each chunk on a 20k-row subset (scikit-learn's
/// `max_samples`) keeps that near 20k-row cost while the leaf probabilities
/// still see all rows.
pub const DEFAULT_MAX_SAMPLES: usize = 20_000;

/// Trees trained per smartcore call; fixed so results do not depend on the
/// number of threads.
const TREES_PER_CHUNK: u16 = 5;

/// Fits the schema's imputations ([`fit_schema`]) and the estimator on the
/// rows (decoded with `base`). `progress(done)` is called as work
/// completes (forest: per chunk of trees).
pub fn fit(
    opts: &TrainOptions,
    base: &Schema,
    rows: &Rows,
    labels: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Fitted, FitError> {
    let positives = labels.iter().filter(|&&y| y == 1).count();
    if positives == 0 || positives == labels.len() {
        return Err(FitError::OneClass { rows: labels.len(), positives });
    }
    let (schema, rows) = fit_schema(base, rows)?;
    let fields = Fields::new(schema.clone()).map_err(|e| FitError::Schema(e.to_string()))?;
    let encoder = Encoder::new(&fields);
    let width = encoder.width();
    let numbers = fields.features().iter().filter(|f| f.is_number()).count();
    let x = encoder.encode_rows(rows.view());
    let estimator = match opts.algorithm {
        Algorithm::Forest => fit_forest(opts, &x, width, labels, progress)?,
        Algorithm::Logistic => {
            let e = fit_logistic(opts, &x, width, numbers, labels)?;
            progress(1);
            e
        }
    };
    Ok(Fitted { schema, estimator })
}

/// Units of progress `fit` reports in total.
pub fn progress_units(opts: &TrainOptions) -> u64 {
    match opts.algorithm {
        Algorithm::Forest => opts.trees.div_ceil(TREES_PER_CHUNK) as u64,
        Algorithm::Logistic => 1,
    }
}

fn fit_forest(
    opts: &TrainOptions,
    x: &[f64],
    width: usize,
    labels: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Estimator, FitError> {
    let n = labels.len();
    let subsample = opts.max_samples.filter(|&m| m > 0 && m < n);
    let full = match subsample {
        None => Some(DenseMatrix::new(n, width, x.to_vec(), false).map_err(|e| FitError::Smartcore(e.to_string()))?),
        Some(_) => None,
    };
    let y_all: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
    let chunks = opts.trees.div_ceil(TREES_PER_CHUNK) as usize;
    let next = AtomicUsize::new(0);
    type ChunkSlot = Option<Result<Vec<Tree>, FitError>>;
    let results: Mutex<Vec<ChunkSlot>> = Mutex::new((0..chunks).map(|_| None).collect());
    let threads = opts.threads.clamp(1, chunks.max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                let in_chunk = (opts.trees - c as u16 * TREES_PER_CHUNK).min(TREES_PER_CHUNK);
                let params = RandomForestClassifierParameters {
                    n_trees: in_chunk,
                    min_samples_leaf: opts.min_samples_leaf,
                    max_depth: opts.max_depth,
                    m: Some(opts.max_features.unwrap_or_else(|| default_max_features(width)).clamp(1, width)),
                    seed: opts.seed.wrapping_mul(1_000_003).wrapping_add(c as u64 * 10_007),
                    ..Default::default()
                };
                let result = grow_chunk(&full, subsample, x, width, &y_all, opts.seed, c, params)
                    .and_then(|rf| extract_trees(&rf))
                    .map(|trees| trees.into_iter().map(|t| with_leaf_rates(t, x, width, labels)).collect());
                if let Ok(mut slots) = results.lock() {
                    slots[c] = Some(result);
                }
                progress(1);
            });
        }
    });
    let slots = results.into_inner().map_err(|_| FitError::Smartcore("a training thread panicked".into()))?;
    let mut trees = Vec::with_capacity(opts.trees as usize);
    for slot in slots {
        trees.extend(slot.ok_or_else(|| FitError::Smartcore("a chunk of trees was not trained".into()))??);
    }
    Ok(Estimator::RandomForest { trees })
}

/// Grows one chunk of trees with smartcore, on all rows or on a seeded
/// random subset of `subsample` rows.
#[allow(clippy::too_many_arguments)]
fn grow_chunk(
    full: &Option<DenseMatrix<f64>>,
    subsample: Option<usize>,
    x: &[f64],
    width: usize,
    y: &[u32],
    seed: u64,
    chunk: usize,
    params: RandomForestClassifierParameters,
) -> Result<RandomForestClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>, FitError> {
    let smartcore = |e: smartcore::error::Failed| FitError::Smartcore(e.to_string());
    match (full, subsample) {
        (Some(matrix), _) => RandomForestClassifier::fit(matrix, &y.to_vec(), params).map_err(smartcore),
        (None, Some(m)) => {
            let mut rng = Rng::new(seed ^ 0x5EED_0000_0000 ^ chunk as u64);
            let mut idx: Vec<usize> = (0..y.len()).collect();
            rng.shuffle(&mut idx);
            idx.truncate(m);
            idx.sort_unstable();
            let mut values = Vec::with_capacity(m * width);
            for &i in &idx {
                values.extend_from_slice(&x[i * width..(i + 1) * width]);
            }
            let sub_y: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
            let matrix = DenseMatrix::new(m, width, values, false).map_err(smartcore)?;
            RandomForestClassifier::fit(&matrix, &sub_y, params).map_err(smartcore)
        }
        (None, None) => Err(FitError::Smartcore("no training matrix".into())),
    }
}

/// Features tried per split by default: half the encoded columns.
///
/// Not scikit-learn's sqrt: smartcore only considers a split point where both
/// the feature value and the label change between neighbouring sorted rows.
/// With ~1.4 % positives that almost never happens on a 0/1 one-hot column,
/// so a node whose sqrt(41) = 6 candidates are all one-hot columns (about a
/// third of them) cannot split, and many trees stay a single leaf. With half
/// the columns a numeric feature is nearly always a candidate. Measured on
/// the 6,843-row reference sample (5-fold ROC-AUC): sqrt 0.708, half 0.741.
pub fn default_max_features(width: usize) -> usize {
    width.div_ceil(2).max(1)
}

/// Reads the tree structure out of smartcore's (private) node arrays through
/// its serde representation: `trees[i].nodes[j] = {split_feature, split_value,
/// true_child, false_child, ...}`; `x <= split_value` goes to `true_child`.
fn extract_trees(rf: &RandomForestClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>) -> Result<Vec<Tree>, FitError> {
    let bad = |m: &str| FitError::TreeExtraction(m.to_string());
    let value = serde_json::to_value(rf).map_err(|e| FitError::TreeExtraction(e.to_string()))?;
    let trees = value.get("trees").and_then(Value::as_array).ok_or_else(|| bad("no `trees` array"))?;
    let mut out = Vec::with_capacity(trees.len());
    for tree in trees {
        let nodes = tree.get("nodes").and_then(Value::as_array).ok_or_else(|| bad("tree without `nodes`"))?;
        let n = nodes.len();
        let mut t = Tree {
            feature: vec![-1; n],
            threshold: vec![0.0; n],
            left: vec![0; n],
            right: vec![0; n],
            value: vec![0.0; n],
            samples: vec![],
        };
        for (i, node) in nodes.iter().enumerate() {
            let child = |k: &str| node.get(k).and_then(Value::as_u64);
            if let (Some(l), Some(r)) = (child("true_child"), child("false_child")) {
                let feature =
                    node.get("split_feature").and_then(Value::as_u64).ok_or_else(|| bad("split without feature"))?;
                let split =
                    node.get("split_value").and_then(Value::as_f64).ok_or_else(|| bad("split without value"))?;
                t.feature[i] = feature as i32;
                t.threshold[i] = split;
                t.left[i] = l as u32;
                t.right[i] = r as u32;
            }
        }
        out.push(t);
    }
    Ok(out)
}

/// Sets each node's value to the late rate of the training rows reaching it
/// (a leaf's is its probability) and records how many rows reached each
/// node (`samples`, which weights node means when explaining).
fn with_leaf_rates(mut tree: Tree, x: &[f64], width: usize, labels: &[u8]) -> Tree {
    let n = tree.feature.len();
    let mut count = vec![0u32; n];
    let mut late = vec![0u32; n];
    for (row, &y) in x.chunks_exact(width).zip(labels) {
        for i in tree.path(row) {
            count[i] += 1;
            late[i] += y as u32;
        }
    }
    let prior = labels.iter().map(|&y| y as f64).sum::<f64>() / labels.len().max(1) as f64;
    for i in 0..n {
        tree.value[i] = if count[i] == 0 { prior } else { late[i] as f64 / count[i] as f64 };
    }
    tree.samples = count;
    tree
}

/// `k`: the number columns, which come first in the encoding.
fn fit_logistic(opts: &TrainOptions, x: &[f64], width: usize, k: usize, labels: &[u8]) -> Result<Estimator, FitError> {
    let n = labels.len();
    // Standardise the numeric columns so the L2 penalty treats them alike.
    let mut mean = vec![0.0; k];
    let mut scale = vec![1.0; k];
    for j in 0..k {
        let col = x.chunks_exact(width).map(|r| r[j]);
        let m = col.clone().sum::<f64>() / n as f64;
        let var = col.map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
        mean[j] = m;
        scale[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
    }
    let mut z = x.to_vec();
    for row in z.chunks_exact_mut(width) {
        for j in 0..k {
            row[j] = (row[j] - mean[j]) / scale[j];
        }
    }
    let matrix = DenseMatrix::new(n, width, z, false).map_err(|e| FitError::Smartcore(e.to_string()))?;
    let y: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
    let params = LogisticRegressionParameters::default().with_alpha(opts.alpha);
    let lr = LogisticRegression::fit(&matrix, &y, params).map_err(|e| FitError::Smartcore(e.to_string()))?;
    use smartcore::linalg::basic::arrays::Array;
    let mut coefficients: Vec<f64> = (0..width).map(|j| *lr.coefficients().get((0, j))).collect();
    let mut intercept = *lr.intercept().get((0, 0));
    // Fold the standardisation into raw-unit coefficients.
    for j in 0..k {
        coefficients[j] /= scale[j];
        intercept -= coefficients[j] * mean[j];
    }
    // Every encoded column's training mean: the reference explanations
    // measure deviations from (one-hot means are category frequencies).
    let mut column_means = vec![0.0; width];
    for row in x.chunks_exact(width) {
        for (m, v) in column_means.iter_mut().zip(row) {
            *m += v;
        }
    }
    column_means.iter_mut().for_each(|m| *m /= n as f64);
    Ok(Estimator::LogisticRegression { intercept, coefficients, column_means: Some(column_means) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dataset::Dataset;
    use crate::train::synth::generate;

    fn data(rows: usize) -> Dataset {
        Dataset::of_loans(&generate(rows, 3), "synth.csv")
    }

    #[test]
    fn a_fixed_seed_gives_the_same_forest_for_any_thread_count() {
        let d = data(1500);
        let mut opts = TrainOptions::new(Algorithm::Forest, 9);
        opts.trees = 12;
        opts.threads = 1;
        let one = fit(&opts, &d.schema, &d.rows, &d.labels, &|_| {}).unwrap();
        opts.threads = 3;
        let three = fit(&opts, &d.schema, &d.rows, &d.labels, &|_| {}).unwrap();
        assert_eq!(one.estimator, three.estimator);
        opts.seed = 10;
        let other = fit(&opts, &d.schema, &d.rows, &d.labels, &|_| {}).unwrap();
        assert_ne!(one.estimator, other.estimator, "the seed must matter");
        let Estimator::RandomForest { trees } = &one.estimator else { panic!("not a forest") };
        assert_eq!(trees.len(), 12);
        assert!(trees.iter().any(|t| t.feature.len() > 1), "trees must split");
    }

    #[test]
    fn forest_and_logistic_probabilities_are_probabilities_that_rank() {
        let d = data(4000);
        let labels = &d.labels;
        for algorithm in Algorithm::ALL {
            let mut opts = TrainOptions::new(algorithm, 1);
            opts.trees = 20;
            let fitted = fit(&opts, &d.schema, &d.rows, &d.labels, &|_| {}).unwrap();
            let (_, encoder) = fitted.encoding();
            let compiled = fitted.estimator.compile(encoder.width()).unwrap();
            let x = encoder.encode_rows(recode(&d.schema, &fitted.schema, &d.rows).view());
            let p: Vec<f64> = x.chunks_exact(encoder.width()).map(|r| compiled.probability(r)).collect();
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            let auc = crate::train::evaluation::roc_auc(labels, &p).unwrap();
            assert!(auc > 0.6, "{algorithm:?} training AUC {auc}");
            let mean = p.iter().sum::<f64>() / p.len() as f64;
            let rate = labels.iter().map(|&y| y as f64).sum::<f64>() / labels.len() as f64;
            assert!((mean - rate).abs() < 0.01, "{algorithm:?}: mean p {mean} vs base rate {rate}");
        }
    }

    #[test]
    fn one_class_data_is_a_clear_error() {
        let d = data(50);
        let err = fit(&TrainOptions::new(Algorithm::Logistic, 1), &d.schema, &d.rows, &[0; 50], &|_| {}).unwrap_err();
        assert!(err.to_string().contains("both classes"), "{err}");
    }
}
