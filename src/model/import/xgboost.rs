//! `xgboost.json`: an XGBoost 2.x or 3.x model saved as JSON
//! (`Booster.save_model("xgboost.json")`), objective `binary:logistic` or
//! `binary:logitraw`, read into library trees ([`super::lower::Node`]) with
//! XGBoost's own rules: `(float)x < split_condition` goes left, a missing
//! value goes where `default_left` says, a category split sends the
//! categories it lists right (and missing values the default way), the
//! margin starts from `base_score` (logit of it for `binary:logistic`,
//! computed in `float` as XGBoost does). With XGBoost ≥ 3.1's category
//! encoder (`cats`), category features take their names, so requests send
//! strings; without it a category feature reads its code as a number.

use super::super::format::LoadError;
use super::super::schema::Feature;
use super::lower::{f32_below, Node, Side, Test};
use super::{number_feature, Imported, Scoring};
use crate::model::encoder::MissingRule;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    learner: Learner,
    #[serde(default)]
    version: Vec<u32>,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    #[serde(default)]
    feature_types: Vec<String>,
    gradient_booster: Booster,
    learner_model_param: ModelParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct ModelParam {
    base_score: String,
    #[serde(default)]
    num_class: Option<String>,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct Booster {
    name: String,
    /// gbtree.
    #[serde(default)]
    model: Option<GbTree>,
    /// dart: the trees, and a weight per tree.
    #[serde(default)]
    gbtree: Option<DartTrees>,
    #[serde(default)]
    weight_drop: Vec<f64>,
}

#[derive(Deserialize)]
struct DartTrees {
    model: GbTree,
}

#[derive(Deserialize)]
struct GbTree {
    trees: Vec<XTree>,
    #[serde(default)]
    cats: Option<Cats>,
}

#[derive(Deserialize)]
struct XTree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f32>,
    default_left: Vec<Flag>,
    #[serde(default)]
    split_type: Vec<u8>,
    #[serde(default)]
    categories: Vec<i64>,
    #[serde(default)]
    categories_nodes: Vec<i64>,
    #[serde(default)]
    categories_segments: Vec<i64>,
    #[serde(default)]
    categories_sizes: Vec<i64>,
    #[serde(default)]
    sum_hessian: Vec<f64>,
}

/// `default_left` is 0/1 in current files, `true`/`false` in older ones.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Int(i64),
    Bool(bool),
}

impl Flag {
    fn on(&self) -> bool {
        matches!(self, Flag::Int(1) | Flag::Bool(true))
    }
}

#[derive(Deserialize)]
struct Cats {
    enc: Vec<CatColumn>,
}

/// One feature's categories: UTF-8 bytes cut at `offsets` (strings), or
/// integers; a number feature has an empty string list.
#[derive(Deserialize)]
#[serde(untagged)]
enum CatColumn {
    Strings { offsets: Vec<i64>, values: Vec<i64> },
    Integers { values: Vec<i64> },
}

fn invalid(e: impl std::fmt::Display) -> LoadError {
    LoadError::Invalid(format!("xgboost.json: {e}"))
}

/// Reads an XGBoost JSON model.
pub fn read(bytes: &[u8]) -> Result<Imported, LoadError> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            LoadError::Incomplete(format!("xgboost.json ends early: {e}"))
        } else {
            invalid(e)
        }
    })?;
    let l = file.learner;
    let objective = l.objective.name.as_str();
    let logistic = match objective {
        "binary:logistic" => true,
        "binary:logitraw" => false,
        other => {
            return Err(invalid(format!(
                "objective `{other}` is not a binary classifier riskserve serves (binary:logistic, binary:logitraw)"
            )))
        }
    };
    let param = &l.learner_model_param;
    for (key, v) in [("num_class", &param.num_class), ("num_target", &param.num_target)] {
        if let Some(v) = v.as_deref().filter(|v| !matches!(*v, "0" | "1")) {
            return Err(invalid(format!("{key} is {v}: a multiclass or multi-target model, not a binary classifier")));
        }
    }
    let n_features: usize = param.num_feature.parse().map_err(|_| invalid("num_feature is not a number"))?;
    let (trees, weights) = match (l.gradient_booster.name.as_str(), l.gradient_booster.model, l.gradient_booster.gbtree)
    {
        ("gbtree", Some(m), _) => (m, None),
        ("dart", _, Some(d)) => (d.model, Some(l.gradient_booster.weight_drop)),
        (other, _, _) => {
            return Err(invalid(format!("booster `{other}` is not a tree booster riskserve serves (gbtree, dart)")))
        }
    };
    let features = schema(&l.feature_names, &l.feature_types, trees.cats.as_ref(), n_features)?;
    let base = base_margin(&param.base_score, logistic)?;
    let mut out = Vec::with_capacity(trees.trees.len());
    for (t, tree) in trees.trees.iter().enumerate() {
        crate::model::pacing::checkpoint();
        out.push(nodes(tree, n_features).map_err(|e| invalid(format!("tree {t}: {e}")))?);
    }
    let scales = match weights {
        Some(w) if w.len() != out.len() => {
            return Err(invalid(format!("dart has {} tree weights for {} trees", w.len(), out.len())))
        }
        Some(w) => w,
        None => vec![1.0; out.len()],
    };
    let mut hyperparameters = serde_json::Map::new();
    hyperparameters.insert("objective".into(), objective.into());
    hyperparameters.insert("trees".into(), out.len().into());
    if !file.version.is_empty() {
        let v = file.version.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
        hyperparameters.insert("xgboost_version".into(), v.into());
    }
    Ok(Imported {
        algorithm: "xgboost",
        features,
        trees: out,
        tree_scales: scales,
        scoring: Scoring::Boosted { base_margin: base, link_scale: 1.0 },
        hyperparameters,
    })
}

/// The margin the trees' sum starts from: `base_score` as saved (`"5E-1"`
/// or `"[5E-1]"`), through XGBoost's `float` logit for `binary:logistic`.
fn base_margin(text: &str, logistic: bool) -> Result<f64, LoadError> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.contains(',') {
        return Err(invalid(format!("base_score `{text}` has more than one value: not a binary classifier")));
    }
    let v: f32 = inner.trim().parse().map_err(|_| invalid(format!("base_score `{text}` is not a number")))?;
    if !v.is_finite() {
        return Err(invalid(format!("base_score `{text}` is not finite")));
    }
    if !logistic {
        return Ok(f64::from(v));
    }
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(format!("base_score {v} is not a probability, as binary:logistic needs")));
    }
    // XGBoost's LogisticProbToMargin: clamp to [kRtEps, 1 − kRtEps], then
    // −log(1/p − 1), in float.
    const RT_EPS: f32 = 1e-6;
    let p = v.clamp(RT_EPS, 1.0 - RT_EPS);
    Ok(f64::from(-((1.0f32 / p - 1.0f32).ln())))
}

fn schema(names: &[String], types: &[String], cats: Option<&Cats>, n: usize) -> Result<Vec<Feature>, LoadError> {
    if !names.is_empty() && names.len() != n {
        return Err(invalid(format!("{} feature names for num_feature {n}", names.len())));
    }
    (0..n)
        .map(|i| {
            let name = names.get(i).cloned().unwrap_or_else(|| format!("f{i}"));
            let is_category = types.get(i).is_some_and(|t| t == "c");
            let categories = match cats.and_then(|c| c.enc.get(i)) {
                Some(CatColumn::Strings { offsets, values }) if is_category && !offsets.is_empty() => {
                    Some(strings(offsets, values).map_err(|e| invalid(format!("feature `{name}`: {e}")))?)
                }
                Some(CatColumn::Integers { values }) if is_category => {
                    Some(values.iter().map(i64::to_string).collect())
                }
                _ => None,
            };
            Ok(match categories {
                Some(categories) => Feature::category(&name, categories, None),
                None => number_feature(&name),
            })
        })
        .collect()
}

/// Category names from UTF-8 bytes (saved as signed bytes) cut at `offsets`.
fn strings(offsets: &[i64], values: &[i64]) -> Result<Vec<String>, String> {
    let bytes: Vec<u8> = values.iter().map(|&b| b as u8).collect();
    offsets
        .windows(2)
        .map(|w| {
            let (a, b) = (usize::try_from(w[0]).ok(), usize::try_from(w[1]).ok());
            let slice = match (a, b) {
                (Some(a), Some(b)) if a <= b && b <= bytes.len() => &bytes[a..b],
                _ => return Err("category offsets out of range".to_string()),
            };
            String::from_utf8(slice.to_vec()).map_err(|_| "a category name is not UTF-8".to_string())
        })
        .collect()
}

fn nodes(t: &XTree, n_features: usize) -> Result<Vec<Node>, String> {
    let n = t.left_children.len();
    if [t.right_children.len(), t.split_indices.len(), t.split_conditions.len(), t.default_left.len()] != [n; 4]
        || !(t.split_type.is_empty() || t.split_type.len() == n)
        || !(t.sum_hessian.is_empty() || t.sum_hessian.len() == n)
    {
        return Err("its arrays have different lengths".into());
    }
    let cover = |i: usize| t.sum_hessian.get(i).copied().unwrap_or(1.0);
    let index = |v: i64, what: &str, i: usize| {
        usize::try_from(v).ok().filter(|&c| c < n).ok_or_else(|| format!("node {i} has {what} {v}, outside the tree"))
    };
    (0..n)
        .map(|i| {
            if t.left_children[i] == -1 {
                let value = f64::from(t.split_conditions[i]);
                return Ok(Node::Leaf { value, cover: cover(i) });
            }
            let left = index(t.left_children[i], "left child", i)?;
            let right = index(t.right_children[i], "right child", i)?;
            let feature = usize::try_from(t.split_indices[i])
                .ok()
                .filter(|&f| f < n_features)
                .ok_or_else(|| format!("node {i} splits on feature {}, outside 0..{n_features}", t.split_indices[i]))?;
            let missing = if t.default_left[i].on() { Side::Left } else { Side::Right };
            let test = if t.split_type.get(i) == Some(&1) {
                let k = t
                    .categories_nodes
                    .iter()
                    .position(|&c| c == i as i64)
                    .ok_or_else(|| format!("category split {i} has no categories"))?;
                let (start, size) = (t.categories_segments.get(k), t.categories_sizes.get(k));
                let set = match (start, size) {
                    (Some(&s), Some(&z)) if s >= 0 && z >= 0 && (s + z) as usize <= t.categories.len() => {
                        &t.categories[s as usize..(s + z) as usize]
                    }
                    _ => return Err(format!("category split {i} has its categories out of range")),
                };
                let set = set
                    .iter()
                    .map(|&c| u32::try_from(c).ok().filter(|&c| c < super::MAX_CATEGORY_CODE))
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| {
                        format!("category split {i} lists a category outside 0..{}", super::MAX_CATEGORY_CODE)
                    })?;
                // Listed categories go right; a category the model does not
                // know (XGBoost refuses it) goes where a missing one does.
                Test::Member { feature, set, inside: Side::Right, missing, unseen: missing }
            } else {
                let c = t.split_conditions[i];
                if c.is_nan() {
                    return Err(format!("node {i} has a NaN split condition"));
                }
                Test::Number { feature, rule: MissingRule::Nan, le: f32_below(c), missing }
            };
            Ok(Node::Split { test, left, right, cover: cover(i) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_score_reads_both_spellings_through_the_float_logit() {
        assert_eq!(base_margin("5E-1", true).unwrap(), 0.0);
        assert_eq!(base_margin("[5E-1]", true).unwrap(), 0.0);
        let m = base_margin("[1.38828E-2]", true).unwrap();
        assert!((m - (0.0138828f64 / (1.0 - 0.0138828)).ln()).abs() < 1e-6);
        assert_eq!(base_margin("-1.5", false).unwrap(), -1.5);
        assert!(base_margin("[0.2,0.3]", true).is_err());
        assert!(base_margin("2", true).is_err());
    }

    #[test]
    fn refuses_what_it_cannot_serve_naming_it() {
        let file = |objective: &str, classes: &str| {
            format!(
                r#"{{"learner":{{"gradient_booster":{{"name":"gbtree","model":{{"trees":[]}}}},
                "learner_model_param":{{"base_score":"5E-1","num_class":"{classes}","num_feature":"1"}},
                "objective":{{"name":"{objective}"}}}}}}"#
            )
        };
        let err = |o, c| read(file(o, c).as_bytes()).err().unwrap().to_string();
        assert!(err("multi:softprob", "3").contains("multi:softprob"));
        assert!(err("binary:logistic", "3").contains("multiclass"));
        assert!(err("reg:squarederror", "0").contains("reg:squarederror"));
        let whole = file("binary:logistic", "0");
        let cut = read(&whole.as_bytes()[..whole.len() / 2]).err().unwrap();
        assert_eq!(cut.kind(), "incomplete");
    }
}
