//! The pipeline's last step, the binary classifier, over the columns
//! [`super::columns`] worked out: `TreeEnsembleClassifier` /
//! `TreeEnsembleRegressor` (opsets 1 and 3) become library trees
//! ([`super::super::lower::Node`]) whose leaves ONNX Runtime adds up in
//! `float` ([`Scoring::FloatSum`]); `LinearClassifier` becomes a logistic
//! regression over derived columns ([`Scoring::Linear`]).
//!
//! P(late) is what ONNX Runtime writes as the probability of the class
//! labelled 1: the sum of the leaves' class-1 weights, or, when a binary
//! forest carries weights for one class only (skl2onnx's random forests),
//! the sum of those, which ONNX Runtime reports as the second class's.

use super::super::super::encoder::Derived;
use super::super::super::limits::MAX_TREES;
use super::super::lower::{member_bits, Node, Side, Test};
use super::super::Scoring;
use super::attrs::Attrs;
use super::columns::{Col, Scalar};
use std::collections::HashMap;

/// A string input's categories (its schema's, in code order), for
/// turning a column's table into category codes.
pub struct Categories<'a> {
    pub of_feature: &'a [Vec<String>],
}

impl Categories<'_> {
    /// A string column's value per category code, for a missing value (the
    /// empty string, skl2onnx's missing marker) and for any other string.
    fn values(&self, col: &Col) -> Result<(usize, Vec<f64>, f64, f64), String> {
        let Col::Mapped { feature: Some(f), otherwise, .. } = col else {
            return Err("reads a constant column".into());
        };
        let float = |v: Option<Scalar>| match v {
            Some(Scalar::Float(x)) => Ok(f64::from(x)),
            other => Err(format!("reads {other:?}, not a float")),
        };
        let codes = self.of_feature[*f].iter().map(|c| float(col.at(c.as_bytes()))).collect::<Result<_, _>>()?;
        let other = match otherwise {
            super::columns::Otherwise::Value(v) => float(Some(v.clone()))?,
            super::columns::Otherwise::Input => return Err("reads a string".into()),
        };
        Ok((*f, codes, float(col.at(b""))?, other))
    }
}

/// ONNX Runtime's node modes riskserve reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Leaf,
}

impl Mode {
    fn parse(s: &[u8]) -> Result<Mode, String> {
        Ok(match s {
            b"BRANCH_LEQ" => Mode::Leq,
            b"BRANCH_LT" => Mode::Lt,
            b"BRANCH_GTE" => Mode::Gte,
            b"BRANCH_GT" => Mode::Gt,
            b"LEAF" => Mode::Leaf,
            other => return Err(format!("node mode {} is not one riskserve reads", String::from_utf8_lossy(other))),
        })
    }

    /// Whether ONNX Runtime takes the true branch for `x` (NaN: only when
    /// the node tracks missing values to it).
    fn holds(self, x: f64, t: f64, nan_true: bool) -> bool {
        if x.is_nan() {
            return nan_true;
        }
        match self {
            Mode::Leq => x <= t,
            Mode::Lt => x < t,
            Mode::Gte => x >= t,
            Mode::Gt => x > t,
            Mode::Leaf => unreachable!("a leaf tests nothing"),
        }
    }
}

/// The trees of a tree ensemble node over `cols`, whose leaves add up
/// (in `float`, [`Scoring::FloatSum`]) to P(late).
pub fn tree_ensemble(op: &str, attrs: &Attrs, cols: &[Col], cats: &Categories) -> Result<Vec<Vec<Node>>, String> {
    let (prefix, weight_of) = if op == "TreeEnsembleClassifier" {
        let labels = attrs.ints("classlabels_int64s");
        if labels != [0, 1] {
            return Err(format!(
                "classlabels_int64s is {labels:?}{}: riskserve serves binary classifiers with labels [0, 1]",
                if attrs.has("classlabels_strings") { " (string labels)" } else { "" }
            ));
        }
        ("class", "class_ids")
    } else {
        if attrs.int("n_targets").unwrap_or(1) != 1 {
            return Err("a regressor with more than one target".into());
        }
        let aggregate = attrs.string("aggregate_function").unwrap_or(b"SUM");
        if aggregate != b"SUM" {
            return Err(format!("aggregate_function {} (riskserve reads SUM)", String::from_utf8_lossy(aggregate)));
        }
        ("target", "target_ids")
    };
    let post = attrs.string("post_transform").unwrap_or(b"NONE");
    if post != b"NONE" {
        return Err(format!("post_transform {} (riskserve reads NONE)", String::from_utf8_lossy(post)));
    }
    if attrs.reals("base_values")?.iter().any(|&b| b != 0.0) {
        return Err("base_values other than 0".into());
    }
    let tree_ids = attrs.ints("nodes_treeids");
    let node_ids = attrs.ints("nodes_nodeids");
    let features = attrs.ints("nodes_featureids");
    let modes = attrs.strings("nodes_modes");
    // For float inputs ONNX Runtime keeps thresholds and weights as
    // `float`, whatever type an `*_as_tensor` attribute has.
    let values = as_f32(attrs.reals("nodes_values")?);
    let trues = attrs.ints("nodes_truenodeids");
    let falses = attrs.ints("nodes_falsenodeids");
    let tracks = attrs.ints("nodes_missing_value_tracks_true");
    let hitrates = attrs.reals("nodes_hitrates")?;
    let n = tree_ids.len();
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
    ] {
        if len != n {
            return Err(format!("has {n} nodes_treeids but {len} {name}"));
        }
    }
    if !(tracks.is_empty() || tracks.len() == n) || !(hitrates.is_empty() || hitrates.len() == n) {
        return Err("nodes_missing_value_tracks_true or nodes_hitrates has the wrong length".into());
    }
    // Trees in the order their first node appears, as ONNX Runtime sums them.
    let mut tree_index: HashMap<i64, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut at: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        let t = *tree_index.entry(tree_ids[i]).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        if members.len() > MAX_TREES {
            return Err(format!("has more than {MAX_TREES} trees (max_trees)"));
        }
        if at.insert((tree_ids[i], node_ids[i]), members[t].len()).is_some() {
            return Err(format!("tree {} has node {} twice", tree_ids[i], node_ids[i]));
        }
        members[t].push(i);
    }
    // Leaf weights of the class P(late) reads: label 1's, or the only class's.
    let w_trees = attrs.ints(&format!("{prefix}_treeids"));
    let w_nodes = attrs.ints(&format!("{prefix}_nodeids"));
    let w_ids = attrs.ints(weight_of);
    let weights = as_f32(attrs.reals(&format!("{prefix}_weights"))?);
    if [w_nodes.len(), w_ids.len(), weights.len()] != [w_trees.len(); 3] {
        return Err(format!("its {prefix}_* lists have different lengths"));
    }
    let class = if w_ids.contains(&1) { 1 } else { 0 };
    if w_ids.iter().any(|&c| c != 0 && c != 1) {
        return Err(format!("a leaf weight for {weight_of} other than 0 or 1"));
    }
    let mut leaf: HashMap<usize, f64> = HashMap::new();
    for k in 0..w_trees.len() {
        if w_ids[k] != class {
            continue;
        }
        let i = at.get(&(w_trees[k], w_nodes[k])).map(|&j| members[tree_index[&w_trees[k]]][j]).ok_or_else(|| {
            format!("a weight for node {} of tree {}, which has no such node", w_nodes[k], w_trees[k])
        })?;
        if leaf.insert(i, weights[k]).is_some() {
            return Err(format!("node {} of tree {} has two weights for one class", w_nodes[k], w_trees[k]));
        }
    }
    let mut trees = Vec::with_capacity(members.len());
    for (t, nodes) in members.iter().enumerate() {
        let mut out = Vec::with_capacity(nodes.len());
        let tree = tree_ids[nodes[0]];
        let local = |id: i64| at.get(&(tree, id)).copied().ok_or_else(|| format!("tree {tree}: no node {id}"));
        for &i in nodes {
            let cover = hitrates.get(i).copied().filter(|h| *h > 0.0).unwrap_or(1.0);
            let mode = Mode::parse(&modes[i]).map_err(|e| format!("tree {tree}: {e}"))?;
            if mode == Mode::Leaf {
                out.push(Node::Leaf { value: leaf.get(&i).copied().unwrap_or(0.0), cover });
                continue;
            }
            let col = usize::try_from(features[i])
                .ok()
                .and_then(|f| cols.get(f))
                .ok_or_else(|| format!("tree {tree}: feature {} is outside the {} columns", features[i], cols.len()))?;
            let nan_true = tracks.get(i).is_some_and(|&v| v != 0);
            let (test, swap) = split(mode, values[i], nan_true, col, cats).map_err(|e| format!("tree {tree}: {e}"))?;
            let (yes, no) = (local(trues[i])?, local(falses[i])?);
            let (left, right) = if swap { (no, yes) } else { (yes, no) };
            out.push(Node::Split { test, left, right, cover });
        }
        // The library tree's root is its node 0: put the tree's root first.
        trees.push(root_first(out).map_err(|e| format!("tree {t}: {e}"))?);
    }
    Ok(trees)
}

/// Values rounded to `float` (exact for values that already are).
fn as_f32(values: Vec<f64>) -> Vec<f64> {
    values.into_iter().map(|v| f64::from(v as f32)).collect()
}

/// The tree with its root (the node no other node points to) at index 0.
fn root_first(mut nodes: Vec<Node>) -> Result<Vec<Node>, String> {
    let mut has_parent = vec![false; nodes.len()];
    for n in &nodes {
        if let Node::Split { left, right, .. } = n {
            for c in [left, right] {
                has_parent[*c] = true;
            }
        }
    }
    let root = has_parent.iter().position(|p| !p).ok_or("has no root (every node has a parent)")?;
    if root != 0 {
        nodes.swap(0, root);
        for n in &mut nodes {
            if let Node::Split { left, right, .. } = n {
                for c in [left, right] {
                    *c = if *c == 0 {
                        root
                    } else if *c == root {
                        0
                    } else {
                        *c
                    };
                }
            }
        }
    }
    Ok(nodes)
}

/// A split of ONNX Runtime's as a library test, and whether the test's
/// left side is ONNX's false branch.
fn split(mode: Mode, t: f64, nan_true: bool, col: &Col, cats: &Categories) -> Result<(Test, bool), String> {
    let nan_side = |left_is_true: bool| if nan_true == left_is_true { Side::Left } else { Side::Right };
    match col {
        // The column holds exact floats (or NaN), so `x < t` is `x <= the
        // f64 below t`.
        Col::Number { feature, steps } => {
            let steps = steps.clone().into_boxed_slice();
            let (le, swap) = match mode {
                Mode::Leq => (t, false),
                Mode::Lt => (t.next_down(), false),
                Mode::Gte => (t.next_down(), true),
                Mode::Gt => (t, true),
                Mode::Leaf => unreachable!("a leaf tests nothing"),
            };
            Ok((Test::Float { feature: *feature, steps, le, missing: nan_side(!swap) }, swap))
        }
        mapped => {
            let (feature, codes, missing, other) = cats.values(mapped)?;
            let side = |x: f64| if mode.holds(x, t, nan_true) { Side::Left } else { Side::Right };
            let set = (0..codes.len() as u32).filter(|&c| side(codes[c as usize]) == Side::Right).collect();
            Ok((Test::Member { feature, set, inside: Side::Right, missing: side(missing), unseen: side(other) }, false))
        }
    }
}

/// A binary `LinearClassifier` (LOGISTIC, or SOFTMAX over two rows) as a
/// logistic regression over derived columns.
pub fn linear(attrs: &Attrs, cols: &[Col], cats: &Categories) -> Result<Scoring, String> {
    let labels = attrs.ints("classlabels_ints");
    if labels != [0, 1] {
        return Err(format!("classlabels_ints is {labels:?}: riskserve serves binary classifiers with labels [0, 1]"));
    }
    let coefficients = attrs.floats("coefficients");
    let intercepts = attrs.floats("intercepts");
    let n = cols.len();
    if coefficients.len() != 2 * n || intercepts.len() != 2 {
        return Err(format!(
            "has {} coefficients and {} intercepts for 2 classes over {n} columns",
            coefficients.len(),
            intercepts.len()
        ));
    }
    let (row0, row1) = coefficients.split_at(n);
    let post = attrs.string("post_transform").unwrap_or(b"NONE");
    // LOGISTIC: P(1) = sigmoid(z1); SOFTMAX: sigmoid(z1 - z0).
    let (weights, mut intercept): (Vec<f64>, f64) = match post {
        b"LOGISTIC" => (row1.iter().map(|&c| f64::from(c)).collect(), f64::from(intercepts[1])),
        b"SOFTMAX" => (
            row0.iter().zip(row1).map(|(&a, &b)| f64::from(b) - f64::from(a)).collect(),
            f64::from(intercepts[1]) - f64::from(intercepts[0]),
        ),
        other => {
            return Err(format!(
                "post_transform {} (riskserve reads LOGISTIC or SOFTMAX)",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let mut columns = Vec::with_capacity(n);
    let mut coefs = Vec::with_capacity(n);
    for (col, w) in cols.iter().zip(weights) {
        match col {
            Col::Number { feature, steps } => {
                columns.push(Derived::Float { feature: *feature, steps: steps.clone().into(), negate: false });
                coefs.push(w);
            }
            Col::Mapped { feature: None, .. } => match col.at(b"") {
                Some(Scalar::Float(x)) => intercept += w * f64::from(x),
                other => return Err(format!("reads a constant {other:?}")),
            },
            mapped => {
                let (feature, codes, missing, other) = cats.values(mapped)?;
                let bit = |x: f64| match x {
                    0.0 => Ok(0),
                    1.0 => Ok(1),
                    x => Err(format!("reads a category column worth {x}; riskserve reads one-hot columns (0 or 1)")),
                };
                let set: Vec<u32> = (0..codes.len() as u32).filter(|&c| codes[c as usize] == 1.0).collect::<Vec<_>>();
                for &x in &codes {
                    bit(x)?;
                }
                columns.push(Derived::Member {
                    feature,
                    set: member_bits(&set),
                    inside: 1,
                    missing: bit(missing)?,
                    unseen: bit(other)?,
                });
                coefs.push(w);
            }
        }
    }
    Ok(Scoring::Linear { columns, intercept, coefficients: coefs })
}
