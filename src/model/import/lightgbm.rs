//! `lightgbm.txt`: a LightGBM text model (`Booster.save_model`), objective
//! `binary`, read into library trees ([`super::lower::Node`]) with
//! LightGBM's own rules (`Tree::NumericalDecision`, `CategoricalDecision`):
//! `x <= threshold` goes left in `double`; per node, `decision_type`
//! says whether the split is on categories (a bitset of codes that go
//! left; missing and unknown ones go right), which way missing values go,
//! and what counts as missing (`None`: NaN reads as 0; `Zero`: 0 and NaN;
//! `NaN`: NaN). The probability is `1 / (1 + exp(−sigmoid × Σ leaves))`,
//! the sum averaged over trees for `average_output` (random-forest mode).
//! `pandas_categorical` names the categories, so requests send strings.
//!
//! A file is complete when it has as many trees as `tree_sizes` lists,
//! `end of trees` (and `end of parameters`, when there are parameters) is
//! there, and the file ends with a newline; anything less is `incomplete`.

use super::super::format::LoadError;
use super::super::schema::Feature;
use super::lower::{Node, Side, Test};
use super::{number_feature, Imported, Scoring};
use crate::model::encoder::MissingRule;
use std::collections::HashMap;

fn invalid(e: impl std::fmt::Display) -> LoadError {
    LoadError::Invalid(format!("lightgbm.txt: {e}"))
}

fn incomplete(e: impl std::fmt::Display) -> LoadError {
    LoadError::Incomplete(format!("lightgbm.txt: {e}"))
}

/// `key=value` lines of one block.
fn pairs(block: &str) -> HashMap<&str, &str> {
    block.lines().filter_map(|l| l.split_once('=')).collect()
}

fn numbers<T: std::str::FromStr>(block: &HashMap<&str, &str>, key: &str, n: usize) -> Result<Vec<T>, String> {
    let Some(text) = block.get(key) else {
        return if n == 0 { Ok(Vec::new()) } else { Err(format!("has no {key}")) };
    };
    let v: Vec<T> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{key} has a value that is not a number"))?;
    if v.len() != n {
        return Err(format!("{key} has {} values, expected {n}", v.len()));
    }
    Ok(v)
}

/// Reads a LightGBM text model.
pub fn read(bytes: &[u8]) -> Result<Imported, LoadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text"))?;
    if !text.ends_with('\n') {
        return Err(incomplete("does not end with a newline"));
    }
    let Some((head, rest)) = text.split_once("\nTree=") else {
        return Err(if text.starts_with("tree\n") {
            incomplete("has no trees yet")
        } else {
            invalid("not a LightGBM text model (no `Tree=` block)")
        });
    };
    let Some((trees_text, tail)) = rest.split_once("\nend of trees") else {
        return Err(incomplete("has no `end of trees`"));
    };
    if tail.contains("\nparameters:") && !tail.contains("\nend of parameters") {
        return Err(incomplete("has parameters without `end of parameters`"));
    }
    if !head.starts_with("tree\n") {
        return Err(invalid("not a LightGBM text model (it does not start with `tree`)"));
    }
    let header = pairs(head);
    let get = |k: &str| header.get(k).copied();
    if let Some(v) = get("num_class").filter(|v| *v != "1") {
        return Err(invalid(format!("num_class is {v}: a multiclass model, not a binary classifier")));
    }
    if let Some(v) = get("num_tree_per_iteration").filter(|v| *v != "1") {
        return Err(invalid(format!("num_tree_per_iteration is {v}: not a binary classifier")));
    }
    let objective = get("objective").unwrap_or("");
    let mut words = objective.split_whitespace();
    if words.next() != Some("binary") {
        return Err(invalid(format!("objective `{objective}` is not a binary classifier riskserve serves (binary)")));
    }
    let sigmoid = words
        .find_map(|w| w.strip_prefix("sigmoid:"))
        .map_or(Ok(1.0), |s| s.parse::<f64>().map_err(|_| invalid(format!("sigmoid `{s}` is not a number"))))?;
    if !(sigmoid.is_finite() && sigmoid > 0.0) {
        return Err(invalid(format!("sigmoid {sigmoid} is not a positive number")));
    }
    let names: Vec<&str> =
        get("feature_names").ok_or_else(|| invalid("has no feature_names"))?.split_whitespace().collect();
    let average = head.lines().any(|l| l.trim() == "average_output");

    // Each tree's block; as many as `tree_sizes` lists, when the header
    // lists them.
    let blocks: Vec<&str> = trees_text.split("\nTree=").collect();
    if let Some(sizes) = get("tree_sizes") {
        let sizes: Vec<usize> = sizes.split_whitespace().filter_map(|s| s.parse().ok()).collect();
        if sizes.len() != blocks.len() {
            return Err(incomplete(format!("tree_sizes lists {} trees, the file has {}", sizes.len(), blocks.len())));
        }
    }
    let categorical = categorical_features(tail, names.len())?;
    let pandas = pandas_categorical(tail)?;
    let features = schema(&names, &categorical, pandas.as_deref())?;
    let mut trees = Vec::with_capacity(blocks.len());
    for (t, block) in blocks.iter().enumerate() {
        crate::model::pacing::checkpoint();
        trees.push(tree(block, names.len()).map_err(|e| invalid(format!("tree {t}: {e}")))?);
    }
    let scale = if average { 1.0 / trees.len().max(1) as f64 } else { 1.0 };
    let mut hyperparameters = serde_json::Map::new();
    hyperparameters.insert("objective".into(), objective.into());
    hyperparameters.insert("trees".into(), trees.len().into());
    if let Some(v) = get("version") {
        hyperparameters.insert("lightgbm_format".into(), v.into());
    }
    Ok(Imported {
        algorithm: "lightgbm",
        features,
        tree_scales: vec![scale; trees.len()],
        trees,
        scoring: Scoring::Boosted { base_margin: 0.0, link_scale: sigmoid },
        hyperparameters,
    })
}

/// `[categorical_feature: 2,3,6,9]` from the parameters, as a flag per feature.
fn categorical_features(tail: &str, n: usize) -> Result<Vec<bool>, LoadError> {
    let mut flags = vec![false; n];
    let Some(list) = tail.lines().find_map(|l| l.strip_prefix("[categorical_feature:")) else {
        return Ok(flags);
    };
    for s in list.trim_end_matches(']').split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let i: usize = s.parse().map_err(|_| invalid(format!("categorical_feature `{s}` is not a feature index")))?;
        *flags.get_mut(i).ok_or_else(|| invalid(format!("categorical_feature {i} is outside 0..{n}")))? = true;
    }
    Ok(flags)
}

/// The `pandas_categorical:` line: the categories of each categorical
/// column, in column order (`null` when trained without pandas categories).
fn pandas_categorical(tail: &str) -> Result<Option<Vec<Vec<serde_json::Value>>>, LoadError> {
    let Some(json) = tail.lines().find_map(|l| l.strip_prefix("pandas_categorical:")) else {
        return Ok(None);
    };
    serde_json::from_str(json).map_err(|e| invalid(format!("pandas_categorical: {e}")))
}

fn schema(
    names: &[&str],
    categorical: &[bool],
    pandas: Option<&[Vec<serde_json::Value>]>,
) -> Result<Vec<Feature>, LoadError> {
    let mut lists = pandas.unwrap_or_default().iter();
    let features: Vec<Feature> = names
        .iter()
        .zip(categorical)
        .map(|(name, &is_category)| match (is_category, pandas) {
            (true, Some(_)) => {
                let list = lists
                    .next()
                    .ok_or_else(|| invalid("pandas_categorical lists fewer columns than categorical_feature"))?;
                let categories = list
                    .iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                Ok(Feature::category(name, categories, None))
            }
            _ => Ok(number_feature(name)),
        })
        .collect::<Result<_, LoadError>>()?;
    if lists.next().is_some() {
        return Err(invalid("pandas_categorical lists more columns than categorical_feature"));
    }
    Ok(features)
}

fn tree(block: &str, n_features: usize) -> Result<Vec<Node>, String> {
    let b = pairs(block);
    let leaves: usize = b.get("num_leaves").and_then(|v| v.parse().ok()).ok_or("has no num_leaves")?;
    if leaves == 0 {
        return Err("has no leaves".into());
    }
    if b.get("is_linear").is_some_and(|v| *v != "0") {
        return Err("is a linear tree (linear_tree=true), which riskserve does not serve".into());
    }
    let inner = leaves - 1;
    let leaf_value: Vec<f64> = numbers(&b, "leaf_value", leaves)?;
    let leaf_count: Vec<f64> = numbers(&b, "leaf_count", leaves).unwrap_or_else(|_| vec![1.0; leaves]);
    let mut nodes = Vec::with_capacity(2 * leaves - 1);
    if inner == 0 {
        nodes.push(Node::Leaf { value: leaf_value[0], cover: leaf_count[0] });
        return Ok(nodes);
    }
    let feature: Vec<usize> = numbers(&b, "split_feature", inner)?;
    let threshold: Vec<f64> = numbers(&b, "threshold", inner)?;
    let decision: Vec<u8> = numbers(&b, "decision_type", inner)?;
    let left: Vec<i64> = numbers(&b, "left_child", inner)?;
    let right: Vec<i64> = numbers(&b, "right_child", inner)?;
    let count: Vec<f64> = numbers(&b, "internal_count", inner).unwrap_or_else(|_| vec![1.0; inner]);
    let num_cat: usize = b.get("num_cat").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (bounds, words): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let bounds: Vec<usize> = numbers(&b, "cat_boundaries", num_cat + 1)?;
        let total = *bounds.last().unwrap_or(&0);
        (bounds, numbers(&b, "cat_threshold", total)?)
    } else {
        (Vec::new(), Vec::new())
    };
    // Internal node i is node i; leaf j (a child written ~j) is inner + j.
    let child = |c: i64, i: usize| -> Result<usize, String> {
        let k = if c >= 0 { c as usize } else { inner + (!c) as usize };
        if (c >= 0 && k >= inner) || k >= inner + leaves {
            return Err(format!("node {i} has child {c}, outside the tree"));
        }
        Ok(k)
    };
    for i in 0..inner {
        if feature[i] >= n_features {
            return Err(format!("node {i} splits on feature {}, outside 0..{n_features}", feature[i]));
        }
        let d = decision[i];
        let missing = if d & 2 != 0 { Side::Left } else { Side::Right };
        let test = if d & 1 != 0 {
            let k = threshold[i] as usize;
            if threshold[i] < 0.0 || k + 1 >= bounds.len() || bounds[k] > bounds[k + 1] {
                return Err(format!("category split {i} has no bitset {}", threshold[i]));
            }
            let set = words[bounds[k]..bounds[k + 1]]
                .iter()
                .enumerate()
                .flat_map(|(w, bits)| (0..32).filter(move |b| bits >> b & 1 == 1).map(move |b| (w * 32 + b) as u32))
                .collect();
            Test::Member { feature: feature[i], set, inside: Side::Left, missing: Side::Right, unseen: Side::Right }
        } else {
            let rule = match (d >> 2) & 3 {
                0 => MissingRule::NanAsZero,
                1 => MissingRule::ZeroAsNan,
                2 => MissingRule::Nan,
                m => return Err(format!("node {i} has missing type {m}, which LightGBM does not define")),
            };
            if threshold[i].is_nan() {
                return Err(format!("node {i} has a NaN threshold"));
            }
            Test::Number { feature: feature[i], rule, le: threshold[i], missing }
        };
        nodes.push(Node::Split { test, left: child(left[i], i)?, right: child(right[i], i)?, cover: count[i] });
    }
    nodes.extend(leaf_value.iter().zip(&leaf_count).map(|(&value, &cover)| Node::Leaf { value, cover }));
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n\
objective=binary sigmoid:1\nfeature_names=a g\nfeature_infos=[0:1] -1:0:1\ntree_sizes=1\n\n\
Tree=0\nnum_leaves=3\nnum_cat=1\nsplit_feature=0 1\nthreshold=0.5 0\ndecision_type=10 1\n\
left_child=-1 -2\nright_child=1 -3\nleaf_value=-1 0.5 2\nleaf_count=1 1 1\ninternal_count=3 2\n\
cat_boundaries=0 1\ncat_threshold=2\nis_linear=0\nshrinkage=1\n\n\nend of trees\n\nparameters:\n\
[categorical_feature: 1]\nend of parameters\n\npandas_categorical:[[\"x\", \"y\"]]\n";

    #[test]
    fn reads_a_small_model_with_a_category_bitset() {
        let m = read(TINY.as_bytes()).unwrap();
        assert_eq!(m.features[1].categories(), ["x", "y"]);
        assert_eq!(m.trees.len(), 1);
        match &m.trees[0][1] {
            Node::Split { test: Test::Member { set, inside: Side::Left, .. }, .. } => assert_eq!(set, &[1]),
            other => panic!("{other:?}"),
        }
        match &m.trees[0][0] {
            Node::Split {
                test: Test::Number { rule: MissingRule::Nan, missing: Side::Left, le, .. }, left, ..
            } => {
                assert_eq!((*le, *left), (0.5, 2), "leaf 0 comes after the two inner nodes");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        for cut in [TINY.len() - 1, TINY.find("end of trees").unwrap(), TINY.find("end of parameters").unwrap() + 3] {
            assert_eq!(read(&TINY.as_bytes()[..cut]).err().unwrap().kind(), "incomplete", "cut at {cut}");
        }
        let multi = TINY.replace("num_class=1", "num_class=3");
        assert!(read(multi.as_bytes()).err().unwrap().to_string().contains("multiclass"));
        let regression = TINY.replace("objective=binary sigmoid:1", "objective=regression");
        assert!(read(regression.as_bytes()).err().unwrap().to_string().contains("`regression`"));
    }
}
