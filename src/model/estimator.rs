//! Fitted estimators: the form stored in a model file ([`Estimator`]) and the
//! form compiled from it at load time ([`CompiledEstimator`]) that answers
//! requests.
//!
//! A forest is stored as one set of parallel arrays per tree (scikit-learn's
//! `tree_` layout) and compiled into a single flat node array for all trees,
//! so scoring walks contiguous memory and never allocates. Compilation also
//! checks every index, so a hostile file cannot make scoring loop forever or
//! read out of bounds: children must point strictly forward. It measures each
//! tree's depth (iteratively, so a deep chain cannot overflow the stack) and
//! the forest's worst-case cost per prediction, and enforces the limits of
//! [`super::limits`].

use super::forest::{CompiledForest, ForestError};
use super::limits::{bounded_seq, MAX_TREES};
use super::tree::Tree;
use serde::{Deserialize, Deserializer, Serialize};

pub use super::forest::MAX_TOTAL_NODES;

fn forest_trees<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Tree>>, D::Error> {
    bounded_seq(d, MAX_TREES, "trees in the forest", "max_trees").map(Some)
}

/// The fitted estimator, as stored in the model file:
/// `{"kind": "random_forest", "trees": [...]}` or
/// `{"kind": "logistic_regression", "intercept": ..., "coefficients": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EstimatorRepr", into = "EstimatorRepr")]
pub enum Estimator {
    /// Average of the trees' leaf probabilities.
    RandomForest { trees: Vec<Tree> },
    /// `sigmoid(intercept + coefficients · x)` over the raw encoded columns
    /// (any standardisation used in training is folded into the coefficients).
    /// `column_means`: each encoded column's training mean, the reference
    /// point explanations measure deviations from (absent in older files:
    /// the all-missing application is the reference then).
    LogisticRegression { intercept: f64, coefficients: Vec<f64>, column_means: Option<Vec<f64>> },
}

/// The estimator's on-disk shape as one plain struct. (Not serde's
/// internally tagged enum: that buffers the whole value, every tree node,
/// before deserialising it, which more than doubled model load time.)
#[derive(Serialize, Deserialize)]
struct EstimatorRepr {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "forest_trees")]
    trees: Option<Vec<Tree>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intercept: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    coefficients: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    column_means: Option<Vec<f64>>,
}

impl TryFrom<EstimatorRepr> for Estimator {
    type Error = String;
    fn try_from(r: EstimatorRepr) -> Result<Self, String> {
        let EstimatorRepr { kind, trees, intercept, coefficients, column_means } = r;
        let missing = |field: &str| format!("estimator of kind `{kind}` needs `{field}`");
        match kind.as_str() {
            "random_forest" => Ok(Estimator::RandomForest { trees: trees.ok_or_else(|| missing("trees"))? }),
            "logistic_regression" => Ok(Estimator::LogisticRegression {
                intercept: intercept.ok_or_else(|| missing("intercept"))?,
                coefficients: coefficients.ok_or_else(|| missing("coefficients"))?,
                column_means,
            }),
            other => Err(format!("unknown estimator kind `{other}` (expected random_forest or logistic_regression)")),
        }
    }
}

impl From<Estimator> for EstimatorRepr {
    fn from(e: Estimator) -> Self {
        let kind = e.kind().to_string();
        match e {
            Estimator::RandomForest { trees } => {
                EstimatorRepr { kind, trees: Some(trees), intercept: None, coefficients: None, column_means: None }
            }
            Estimator::LogisticRegression { intercept, coefficients, column_means } => EstimatorRepr {
                kind,
                trees: None,
                intercept: Some(intercept),
                coefficients: Some(coefficients),
                column_means,
            },
        }
    }
}

/// Why an estimator cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimatorError {
    #[error(transparent)]
    Forest(#[from] ForestError),
    #[error("logistic regression has {found} coefficients but the schema encodes {expected} columns")]
    CoefficientCount { expected: usize, found: usize },
    #[error("logistic regression has a non-finite parameter")]
    NonFinite,
    #[error("logistic regression has {found} column means but {expected} coefficients")]
    MeanCount { expected: usize, found: usize },
}

/// The estimator, compiled for scoring.
#[derive(Debug, Clone)]
pub enum CompiledEstimator {
    /// See [`CompiledForest`].
    Forest(CompiledForest),
    /// `reference`: the encoded row explanations measure deviations from.
    Linear { intercept: f64, coefficients: Vec<f64>, reference: Vec<f64> },
    /// Boosted trees ([`super::import`]): the forest's score is a margin
    /// (its base plus the leaves' sum) and the probability is
    /// `sigmoid(scale × margin)`.
    Boosted { forest: CompiledForest, scale: f64 },
}

impl Estimator {
    /// Checks the estimator against the encoded width and compiles it.
    /// `fallback_reference` is the encoded row a linear model is explained
    /// against when the file records no column means.
    pub fn compile_with(
        &self,
        width: usize,
        fallback_reference: impl FnOnce() -> Vec<f64>,
    ) -> Result<CompiledEstimator, EstimatorError> {
        match self {
            Estimator::RandomForest { trees } => Ok(CompiledEstimator::Forest(CompiledForest::compile(trees, width)?)),
            Estimator::LogisticRegression { intercept, coefficients, column_means } => {
                if coefficients.len() != width {
                    return Err(EstimatorError::CoefficientCount { expected: width, found: coefficients.len() });
                }
                if let Some(m) = column_means.as_ref().filter(|m| m.len() != width) {
                    return Err(EstimatorError::MeanCount { expected: width, found: m.len() });
                }
                let reference = column_means.clone().unwrap_or_else(fallback_reference);
                let finite = |v: &[f64]| v.iter().all(|c| c.is_finite());
                if !intercept.is_finite() || !finite(coefficients) || !finite(&reference) || reference.len() != width {
                    return Err(EstimatorError::NonFinite);
                }
                Ok(CompiledEstimator::Linear { intercept: *intercept, coefficients: coefficients.clone(), reference })
            }
        }
    }

    /// [`Estimator::compile_with`] explaining a linear model against the
    /// all-zero row when the file records no column means.
    pub fn compile(&self, width: usize) -> Result<CompiledEstimator, EstimatorError> {
        self.compile_with(width, || vec![0.0; width])
    }

    /// P(late) for one encoded row (see [`crate::model::preprocess`]),
    /// computed the straightforward way from the arrays as stored: each tree
    /// walked node by node from its root (`x[feature] <= threshold` → left),
    /// the leaf values averaged in tree order; for a linear model, the
    /// sigmoid of the dot product. The compiled form must give the same
    /// answers; tests hold it to that. Assumes an estimator that compiled.
    pub fn reference_probability(&self, x: &[f64]) -> f64 {
        match self {
            Estimator::RandomForest { trees } => {
                let mut sum = 0.0;
                for tree in trees {
                    sum += tree.value[tree.path(x).last().unwrap_or(0)];
                }
                sum / trees.len() as f64
            }
            Estimator::LogisticRegression { intercept, coefficients, .. } => {
                sigmoid(intercept + coefficients.iter().zip(x).map(|(c, v)| c * v).sum::<f64>())
            }
        }
    }

    /// Short name of the estimator kind, as used in the file and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Estimator::RandomForest { .. } => "random_forest",
            Estimator::LogisticRegression { .. } => "logistic_regression",
        }
    }
}

impl CompiledEstimator {
    /// Number of encoded columns a row has.
    pub fn width(&self) -> usize {
        match self {
            CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } => f.width(),
            CompiledEstimator::Linear { coefficients, .. } => coefficients.len(),
        }
    }

    /// P(late) for one encoded row (`x[..width]`). Copies the row into a
    /// buffer with the padding column a forest reads; the request path uses
    /// [`Self::probability_in`] on a buffer that already has it.
    pub fn probability(&self, x: &[f64]) -> f64 {
        with_padding(&x[..self.width()], |x| self.probability_in(x))
    }

    /// P(late) for one encoded row in `x[..width]`, where `x` has at least
    /// one more element, the padding column a forest sets to −∞ and reads
    /// at its leaves ([`super::forest`]). Allocation-free.
    #[inline]
    pub fn probability_in(&self, x: &mut [f64]) -> f64 {
        match self {
            CompiledEstimator::Forest(f) => f.probability_in(x),
            CompiledEstimator::Boosted { forest, scale } => sigmoid(scale * forest.probability_in(x)),
            CompiledEstimator::Linear { intercept, coefficients, .. } => {
                let z = intercept + coefficients.iter().zip(x.iter()).map(|(c, v)| c * v).sum::<f64>();
                sigmoid(z)
            }
        }
    }

    /// The stride rows for [`Self::probabilities_in`] are best laid out
    /// with: a forest walks rows at its [`CompiledForest::batch_stride`] in
    /// place; a linear model takes the width plus the padding column.
    pub fn batch_stride(&self) -> usize {
        match self {
            CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } => f.batch_stride(),
            CompiledEstimator::Linear { .. } => self.width() + 1,
        }
    }

    /// P(late) for `out.len()` encoded rows, row `r` in `rows[r * stride..]`
    /// (`stride` > width, for the padding column): a forest walks them tree
    /// by tree, rows side by side ([`CompiledForest::probabilities_in`]).
    /// Each answer has the bits of [`Self::probability_in`] on that row.
    pub fn probabilities_in(&self, rows: &mut [f64], stride: usize, out: &mut [f64]) {
        match self {
            CompiledEstimator::Forest(f) => f.probabilities_in(rows, stride, out),
            CompiledEstimator::Boosted { forest, scale } => {
                forest.probabilities_in(rows, stride, out);
                for o in out.iter_mut() {
                    *o = sigmoid(scale * *o);
                }
            }
            CompiledEstimator::Linear { .. } => {
                for (o, row) in out.iter_mut().zip(rows.chunks_mut(stride)) {
                    *o = self.probability_in(row);
                }
            }
        }
    }

    /// Exact additive attribution of one encoded row, on the estimator's
    /// own scale (probability for a forest, log-odds for a linear model):
    /// adds each column's contribution to `out` (length = the encoded width)
    /// and returns the score; the score equals [`Self::base_score`] plus the
    /// sum of what was added. Forest: per-tree path contributions (Saabas),
    /// each split crossed credits its column with the change of the node
    /// mean, averaged over trees; the score has the bits of
    /// [`Self::probability`]. Linear: `coefficient × (x − reference)`, i.e.
    /// the standardised coefficient times the standardised deviation.
    pub fn contributions(&self, x: &[f64], out: &mut [f64]) -> f64 {
        with_padding(&x[..self.width()], |x| self.contributions_in(x, out))
    }

    /// Prepares per-feature explanations: a forest computes each leaf's
    /// path contributions by feature once (`column_feature[column]`), so
    /// [`Self::feature_contributions_in`] is the scoring walk plus a few
    /// adds per tree. Nothing to do for a linear model.
    pub fn index_features(&mut self, column_feature: &[u16]) {
        if let CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } = self {
            f.index_leaves(column_feature);
        }
    }

    /// [`Self::contributions_in`] summed by feature (`column_feature[column]`)
    /// into `out`: the same score and, up to rounding, the same sums. A
    /// forest indexed by [`Self::index_features`] adds each reached leaf's
    /// precomputed terms; otherwise the columns' contributions are
    /// computed and summed. Allocation-free.
    pub fn feature_contributions_in(&self, x: &mut [f64], column_feature: &[u16], out: &mut [f64]) -> f64 {
        if let CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } = self {
            if let Some(score) = f.group_contributions_in(x, out) {
                return score;
            }
        }
        let mut cols = [0.0f64; super::encoder::MAX_ENCODED_WIDTH];
        let cols = &mut cols[..self.width()];
        let score = self.contributions_in(x, cols);
        for (c, &f) in cols.iter().zip(column_feature) {
            out[f as usize] += c;
        }
        score
    }

    /// [`Self::contributions`] for a row with room for the padding column,
    /// as [`Self::probability_in`]. Allocation-free.
    pub fn contributions_in(&self, x: &mut [f64], out: &mut [f64]) -> f64 {
        match self {
            CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } => f.contributions_in(x, out),
            CompiledEstimator::Linear { intercept, coefficients, reference } => {
                let mut dot = 0.0;
                for (j, ((c, v), r)) in coefficients.iter().zip(x.iter()).zip(reference).enumerate() {
                    dot += c * v;
                    out[j] += c * (v - r);
                }
                intercept + dot
            }
        }
    }

    /// The score of the reference point explanations start from: the
    /// forest's mean root value (the training late rate, for counted
    /// trees), or the linear score at the reference row.
    pub fn base_score(&self) -> f64 {
        match self {
            CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } => f.base_score(),
            CompiledEstimator::Linear { intercept, coefficients, reference } => {
                intercept + coefficients.iter().zip(reference).map(|(c, r)| c * r).sum::<f64>()
            }
        }
    }

    /// Maps a score of [`Self::contributions`] to a probability.
    pub fn score_to_probability(&self, score: f64) -> f64 {
        match self {
            CompiledEstimator::Forest(_) => score,
            CompiledEstimator::Boosted { scale, .. } => sigmoid(scale * score),
            CompiledEstimator::Linear { .. } => sigmoid(score),
        }
    }

    /// `saabas` for a forest, `linear` for a linear model.
    pub fn explain_method(&self) -> &'static str {
        match self {
            CompiledEstimator::Forest(_) | CompiledEstimator::Boosted { .. } => "saabas",
            CompiledEstimator::Linear { .. } => "linear",
        }
    }

    /// Worst-case work for one row: tree nodes visited (the sum over trees
    /// of depth + 1), or one multiply-add per coefficient for a linear model.
    pub fn cost(&self) -> u64 {
        match self {
            CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } => f.cost(),
            CompiledEstimator::Linear { coefficients, .. } => coefficients.len() as u64,
        }
    }

    /// Number of compiled tree nodes (0 for linear models); for diagnostics.
    pub fn node_count(&self) -> usize {
        match self {
            CompiledEstimator::Forest(f) | CompiledEstimator::Boosted { forest: f, .. } => f.node_count(),
            CompiledEstimator::Linear { .. } => 0,
        }
    }
}

/// Calls `f` with `row` followed by one more (padding) column.
fn with_padding<R>(row: &[f64], f: impl FnOnce(&mut [f64]) -> R) -> R {
    const STACK: usize = 64;
    if row.len() < STACK {
        let mut buf = [0.0; STACK];
        buf[..row.len()].copy_from_slice(row);
        f(&mut buf)
    } else {
        let mut buf = Vec::with_capacity(row.len() + 1);
        buf.extend_from_slice(row);
        buf.push(0.0);
        f(&mut buf)
    }
}

/// Numerically stable logistic function.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::limits::{MAX_NODES_PER_TREE, MAX_TREE_DEPTH};
    use crate::model::test_support::small_tree;

    #[test]
    fn forest_averages_leaf_probabilities() {
        let leaf = Tree {
            feature: vec![-1],
            threshold: vec![0.0],
            left: vec![0],
            right: vec![0],
            value: vec![0.3],
            samples: vec![],
        };
        let est = Estimator::RandomForest { trees: vec![small_tree(), leaf] };
        let c = est.compile(2).unwrap();
        assert!((c.probability(&[0.0, 0.0]) - (0.1 + 0.3) / 2.0).abs() < 1e-12);
        assert!((c.probability(&[1.0, 2.0]) - (0.4 + 0.3) / 2.0).abs() < 1e-12);
        assert!((c.probability(&[1.0, 3.0]) - (0.9 + 0.3) / 2.0).abs() < 1e-12);
        assert_eq!(c.node_count(), 6);
    }

    #[test]
    fn backward_or_self_pointing_children_are_rejected_so_scoring_always_ends() {
        let mut t = small_tree();
        t.right[2] = 0; // cycle back to the root
        let err = Estimator::RandomForest { trees: vec![t] }.compile(2).unwrap_err();
        assert!(err.to_string().contains("children"), "{err}");
    }

    #[test]
    fn out_of_range_columns_lengths_and_leaf_values_are_rejected() {
        let mut t = small_tree();
        t.feature[0] = 7;
        assert!(Estimator::RandomForest { trees: vec![t] }.compile(2).unwrap_err().to_string().contains("column 7"));
        let mut t = small_tree();
        t.value.pop();
        assert!(Estimator::RandomForest { trees: vec![t] }.compile(2).is_err());
        let mut t = small_tree();
        t.value[4] = 1.5;
        assert!(Estimator::RandomForest { trees: vec![t] }.compile(2).is_err());
        assert_eq!(
            Estimator::RandomForest { trees: vec![] }.compile(2).unwrap_err(),
            EstimatorError::Forest(ForestError::NoTrees)
        );
    }

    /// A chain of `depth` splits on column 0: internal node 2i has its leaf
    /// at 2i+1 and continues at 2i+2; the last node is a leaf.
    fn chain(depth: usize) -> Tree {
        let n = 2 * depth + 1;
        let mut t = Tree {
            feature: vec![-1; n],
            threshold: vec![0.0; n],
            left: vec![0; n],
            right: vec![0; n],
            value: vec![0.5; n],
            samples: vec![],
        };
        for i in (0..depth).map(|k| 2 * k) {
            t.feature[i] = 0;
            t.left[i] = (i + 2) as u32;
            t.right[i] = (i + 1) as u32;
        }
        t
    }

    fn forest(trees: Vec<Tree>) -> Result<CompiledEstimator, EstimatorError> {
        Estimator::RandomForest { trees }.compile(2)
    }

    #[test]
    fn cost_is_the_sum_over_trees_of_depth_plus_one() {
        let leaf = chain(0);
        assert_eq!(forest(vec![small_tree(), leaf.clone()]).unwrap().cost(), 3 + 1);
        assert_eq!(forest(vec![chain(MAX_TREE_DEPTH), leaf]).unwrap().cost(), MAX_TREE_DEPTH as u64 + 2);
        // An unreachable node does not count at all.
        let mut t = small_tree();
        t.feature[2] = -1; // nodes 3 and 4 are now unreachable
        assert_eq!(forest(vec![t]).unwrap().cost(), 2);
        let linear = Estimator::LogisticRegression { intercept: 0.0, coefficients: vec![1.0; 7], column_means: None };
        assert_eq!(linear.compile(7).unwrap().cost(), 7);
    }

    #[test]
    fn a_tree_deeper_than_the_limit_is_refused_without_recursion() {
        let err = forest(vec![chain(MAX_TREE_DEPTH + 1)]).unwrap_err();
        assert_eq!(err, EstimatorError::Forest(ForestError::TreeTooDeep { tree: 0, node: 2 * MAX_TREE_DEPTH }));
        assert!(err.to_string().contains("max_tree_depth"), "{err}");
        // A chain far deeper than any stack could recurse through.
        let err = forest(vec![chain(0), chain(400_000)]).unwrap_err();
        assert!(matches!(err, EstimatorError::Forest(ForestError::TreeTooDeep { tree: 1, .. })), "{err}");
        // Depth only counts reachable nodes: an unreachable deep chain is harmless.
        let mut t = chain(MAX_TREE_DEPTH + 10);
        t.feature[0] = -1;
        assert_eq!(forest(vec![t]).unwrap().cost(), 1);
    }

    #[test]
    fn too_many_trees_or_nodes_per_tree_are_refused_naming_the_limit() {
        let err = forest(vec![chain(0); MAX_TREES + 1]).unwrap_err();
        assert_eq!(err, EstimatorError::Forest(ForestError::TooManyTrees(MAX_TREES + 1)));
        assert!(err.to_string().contains("max_trees"), "{err}");
        assert!(forest(vec![chain(0); MAX_TREES]).is_ok());

        let mut wide = chain(0);
        for v in [&mut wide.threshold, &mut wide.value] {
            v.resize(MAX_NODES_PER_TREE + 1, 0.0);
        }
        wide.feature.resize(MAX_NODES_PER_TREE + 1, -1);
        wide.left.resize(MAX_NODES_PER_TREE + 1, 0);
        wide.right.resize(MAX_NODES_PER_TREE + 1, 0);
        let err = forest(vec![wide.clone()]).unwrap_err();
        assert_eq!(err, EstimatorError::Forest(ForestError::TreeTooLarge { tree: 0, nodes: MAX_NODES_PER_TREE + 1 }));
        assert!(err.to_string().contains("max_nodes_per_tree"), "{err}");

        // While decoding, over-long lists are refused before they are held.
        let text = serde_json::to_string(&Estimator::RandomForest { trees: vec![wide] }).unwrap();
        let err = serde_json::from_str::<Estimator>(&text).unwrap_err().to_string();
        assert!(err.contains("max_nodes_per_tree"), "{err}");
        let text = serde_json::to_string(&Estimator::RandomForest { trees: vec![chain(0); MAX_TREES + 1] }).unwrap();
        let err = serde_json::from_str::<Estimator>(&text).unwrap_err().to_string();
        assert!(err.contains("max_trees"), "{err}");
    }

    #[test]
    fn logistic_is_sigmoid_of_linear_score_and_checks_its_width() {
        let est = Estimator::LogisticRegression { intercept: -1.0, coefficients: vec![2.0, 0.5], column_means: None };
        let c = est.compile(2).unwrap();
        assert!((c.probability(&[1.0, 2.0]) - sigmoid(2.0)).abs() < 1e-12);
        assert!(est.compile(3).is_err());
        let nan =
            Estimator::LogisticRegression { intercept: f64::NAN, coefficients: vec![0.0, 0.0], column_means: None };
        assert_eq!(nan.compile(2).unwrap_err(), EstimatorError::NonFinite);
    }

    #[test]
    fn a_compiled_node_is_24_bytes_as_the_memory_bound_in_the_docs_assumes() {
        // docs/model-format.md, "Limits": a node needs >= 10 bytes of JSON
        // and compiles to 24 bytes (16 for scoring, 8 for its explanation mean).
        let forest = CompiledForest::compile(&[chain(3)], 1).unwrap();
        assert_eq!(forest.node_bytes(), 16 * (forest.node_count() + 1).next_power_of_two(), "filler, padding");
        let one_node = serde_json::to_string(&chain(0)).unwrap();
        let two_nodes = serde_json::to_string(&Tree {
            feature: vec![-1, -1],
            threshold: vec![0.0, 0.0],
            left: vec![0, 0],
            right: vec![0, 0],
            value: vec![0.5, 0.5],
            samples: vec![],
        })
        .unwrap();
        assert!(two_nodes.len() - one_node.len() >= 10, "{one_node} / {two_nodes}");
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn the_on_disk_shape_is_kind_plus_fields_and_bad_shapes_are_named() {
        let est = Estimator::LogisticRegression { intercept: -1.0, coefficients: vec![2.0], column_means: None };
        let text = serde_json::to_string(&est).unwrap();
        assert_eq!(text, r#"{"kind":"logistic_regression","intercept":-1.0,"coefficients":[2.0]}"#);
        assert_eq!(serde_json::from_str::<Estimator>(&text).unwrap(), est);
        let forest = Estimator::RandomForest { trees: vec![small_tree()] };
        let back: Estimator = serde_json::from_str(&serde_json::to_string(&forest).unwrap()).unwrap();
        assert_eq!(back, forest);
        let err = serde_json::from_str::<Estimator>(r#"{"kind":"random_forest"}"#).unwrap_err().to_string();
        assert!(err.contains("needs `trees`"), "{err}");
        let err = serde_json::from_str::<Estimator>(r#"{"kind":"pickle","trees":[]}"#).unwrap_err().to_string();
        assert!(err.contains("unknown estimator kind `pickle`"), "{err}");
    }
}
