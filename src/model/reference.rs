//! A version's reference population for drift monitoring (the optional
//! `reference` of a format-3 model file): how the training population was
//! spread over fixed bins, for the score and for each feature, so serving
//! can count recent applications in the same bins and compare
//! (`docs/drift.md`).
//!
//! Bins, per feature in schema order:
//!
//! - a number: the deciles of its training values as `edges` (equal edges
//!   merged), bin `k` holding values in `(edges[k-1], edges[k]]` (the first
//!   from −∞, the last up to +∞), then one bin for a missing value;
//! - a category: one bin per declared category (in the schema's order),
//!   then `other` (a category the schema does not know), then `missing`;
//! - the score (`probability_late`): the deciles of the training scores as
//!   `edges`, no missing bin.
//!
//! [`Reference::build`] makes one from decoded rows and their scores (what
//! `train` records, and what an importer can call); [`Reference::tally`]
//! counts other rows in the same bins; [`Reference::validate`] is what a
//! load checks.

use super::fields::Fields;
use super::row::{RowsView, Value};
use super::schema::{Kind, Schema};
use serde::{Deserialize, Serialize};

/// Deciles: at most nine edges, ten value bins.
pub const QUANTILES: usize = 10;
/// Most edges a file may give one feature or the score.
pub const MAX_EDGES: usize = 64;

/// The training population's spread over fixed bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Rows it was built from.
    pub rows: u64,
    /// The score's bins (no missing bin).
    pub score: Binned,
    /// One per feature of the schema, in its order.
    pub features: Vec<FeatureBins>,
}

/// Bins over numbers: `counts[k]` for `(edges[k-1], edges[k]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binned {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// One feature's bins: `edges` for a number (its value bins, then
/// `missing`), none for a category (one bin per category, `other`,
/// `missing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBins {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<Vec<f64>>,
    pub counts: Vec<u64>,
}

/// Counts of some rows in a reference's bins: the score's, then each
/// feature's, in the reference's layout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tally {
    pub rows: u64,
    pub score: Vec<u64>,
    pub features: Vec<Vec<u64>>,
}

impl Binned {
    /// Bin of `v`: the number of edges below it.
    #[inline]
    pub fn bin(&self, v: f64) -> usize {
        bin_of(&self.edges, v)
    }
}

/// The number of `edges` (ascending) strictly below `v`.
#[inline]
pub fn bin_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|&e| e < v)
}

impl FeatureBins {
    /// Bin of one decoded value.
    #[inline]
    pub fn bin(&self, v: Value) -> usize {
        let last = self.counts.len().saturating_sub(1);
        match (&self.edges, v) {
            (_, Value::Missing) => last,
            (Some(edges), Value::Number(x)) => bin_of(edges, x),
            // A number feature never decodes to a category; should one,
            // it counts as missing.
            (Some(_), _) => last,
            (None, Value::Category(c)) if (c as usize) < last.saturating_sub(1) => c as usize,
            (None, _) => last.saturating_sub(1),
        }
    }

    /// The bins' names, for reports: `≤ edge` / `> edge` and `missing`
    /// for a number, the categories, `other` and `missing` for a category.
    pub fn labels(&self, categories: &[String]) -> Vec<String> {
        match &self.edges {
            Some(edges) => {
                let mut out = edge_labels(edges);
                out.push("missing".into());
                out
            }
            None => categories.iter().cloned().chain(["other".into(), "missing".into()]).collect(),
        }
    }
}

/// `≤ e` for each edge, then `> last` (one label per value bin).
pub fn edge_labels(edges: &[f64]) -> Vec<String> {
    let mut out: Vec<String> = edges.iter().map(|e| format!("≤ {}", short(*e))).collect();
    out.push(edges.last().map_or_else(|| "all".into(), |e| format!("> {}", short(*e))));
    out
}

/// A number in at most four significant digits.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e7 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Decile edges of `values` (sorted in place): the 10 %, …, 90 % quantiles,
/// each the smallest value with at least that share of values at or below
/// it, equal edges merged.
pub fn decile_edges(values: &mut [f64]) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mut edges: Vec<f64> = Vec::with_capacity(QUANTILES - 1);
    if n == 0 {
        return edges;
    }
    for q in 1..QUANTILES {
        let at = (q * n).div_ceil(QUANTILES).saturating_sub(1);
        let e = values[at];
        if edges.last() != Some(&e) {
            edges.push(e);
        }
    }
    // A top edge equal to the largest value leaves its bin empty forever.
    if edges.last() == values.last() {
        edges.pop();
    }
    edges
}

impl Reference {
    /// The reference of `rows` (decoded with `fields`) and their scores
    /// (`probability_late`, one per row): decile edges of each number
    /// feature and of the scores, and every row counted in its bins.
    pub fn build(fields: &Fields, rows: RowsView<'_>, scores: &[f64]) -> Reference {
        let mut scores_sorted = scores.to_vec();
        let score = Binned { edges: decile_edges(&mut scores_sorted), counts: Vec::new() };
        let features = fields
            .features()
            .iter()
            .enumerate()
            .map(|(i, f)| match &f.kind {
                Kind::Number { .. } => {
                    let mut values: Vec<f64> = rows.numbers(i).collect();
                    let edges = decile_edges(&mut values);
                    FeatureBins { name: f.name.clone(), counts: vec![0; edges.len() + 2], edges: Some(edges) }
                }
                Kind::Category { categories, .. } => {
                    FeatureBins { name: f.name.clone(), edges: None, counts: vec![0; categories.len() + 2] }
                }
            })
            .collect();
        let mut reference =
            Reference { rows: 0, score: Binned { counts: vec![0; score.edges.len() + 1], ..score }, features };
        let tally = reference.tally(rows, scores);
        reference.rows = tally.rows;
        reference.score.counts = tally.score;
        for (f, counts) in reference.features.iter_mut().zip(tally.features) {
            f.counts = counts;
        }
        reference
    }

    /// Counts `rows` (decoded with this reference's schema) and their
    /// scores in its bins.
    pub fn tally(&self, rows: RowsView<'_>, scores: &[f64]) -> Tally {
        let mut t = self.empty_tally();
        for (row, &p) in rows.iter().zip(scores) {
            t.rows += 1;
            t.score[self.score.bin(p)] += 1;
            for (i, f) in self.features.iter().enumerate() {
                t.features[i][f.bin(row.get(i))] += 1;
            }
        }
        t
    }

    /// A tally of nothing, in this reference's layout.
    pub fn empty_tally(&self) -> Tally {
        Tally {
            rows: 0,
            score: vec![0; self.score.counts.len()],
            features: self.features.iter().map(|f| vec![0; f.counts.len()]).collect(),
        }
    }

    /// The reference's own counts as a tally.
    pub fn counts(&self) -> Tally {
        Tally {
            rows: self.rows,
            score: self.score.counts.clone(),
            features: self.features.iter().map(|f| f.counts.clone()).collect(),
        }
    }

    /// Checks the reference fits `schema`: one entry per feature, same
    /// names and order, edges for numbers only (finite, increasing, at
    /// most [`MAX_EDGES`]), as many counts as bins, score edges in [0, 1].
    pub fn validate(&self, schema: &Schema) -> Result<(), String> {
        check_edges("the score", &self.score.edges)?;
        if self.score.edges.iter().any(|e| !(0.0..=1.0).contains(e)) {
            return Err("the score's edges must be inside [0, 1]".into());
        }
        if self.score.counts.len() != self.score.edges.len() + 1 {
            return Err(format!(
                "the score has {} counts for {} edges (expected one more count than edges)",
                self.score.counts.len(),
                self.score.edges.len()
            ));
        }
        if self.features.len() != schema.features.len() {
            return Err(format!("{} features, the schema declares {}", self.features.len(), schema.features.len()));
        }
        for (r, f) in self.features.iter().zip(&schema.features) {
            if r.name != f.name {
                return Err(format!("feature `{}` where the schema declares `{}`", r.name, f.name));
            }
            let bins = match (&f.kind, &r.edges) {
                (Kind::Number { .. }, Some(edges)) => {
                    check_edges(&format!("feature `{}`", f.name), edges)?;
                    edges.len() + 2
                }
                (Kind::Category { categories, .. }, None) => categories.len() + 2,
                (Kind::Number { .. }, None) => return Err(format!("number feature `{}` has no edges", f.name)),
                (Kind::Category { .. }, Some(_)) => return Err(format!("category feature `{}` has edges", f.name)),
            };
            if r.counts.len() != bins {
                return Err(format!("feature `{}` has {} counts for {bins} bins", f.name, r.counts.len()));
            }
        }
        Ok(())
    }
}

fn check_edges(what: &str, edges: &[f64]) -> Result<(), String> {
    if edges.len() > MAX_EDGES {
        return Err(format!("{what} has {} edges, more than {MAX_EDGES}", edges.len()));
    }
    if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{what}: edges must be finite and strictly increasing"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::row::Rows;
    use crate::model::schema::Feature;

    fn fields() -> Fields {
        Fields::new(Schema {
            features: vec![
                Feature::number("x", 0.0, 100.0, None, Some(1.0)),
                Feature::category("c", vec!["a".into(), "b".into()], None),
            ],
        })
        .unwrap()
    }

    #[test]
    fn decile_edges_are_the_smallest_values_covering_each_tenth_merged() {
        let mut v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(decile_edges(&mut v), [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]);
        let mut skewed = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0];
        assert_eq!(decile_edges(&mut skewed), [0.0, 1.0], "equal edges merged, 2 is the top bin");
        assert!(decile_edges(&mut [5.0; 7]).is_empty(), "one value: one bin");
        assert!(decile_edges(&mut []).is_empty());
    }

    #[test]
    fn values_fall_in_their_bins_with_missing_other_and_unseen() {
        let fields = fields();
        let mut rows = Rows::new(2);
        for (x, c) in [(1.0, 0), (2.0, 0), (3.0, 1), (4.0, 1)] {
            let row = rows.push_missing();
            row[0] = Value::Number(x);
            row[1] = Value::Category(c);
        }
        rows.push_missing()[1] = Value::Category(1);
        let unseen = rows.unseen("z");
        rows.push_missing()[1] = unseen;
        let r = Reference::build(&fields, rows.view(), &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        r.validate(fields.schema()).unwrap();
        assert_eq!(r.rows, 6);
        let x = &r.features[0];
        assert_eq!(x.edges.as_deref(), Some(&[1.0, 2.0, 3.0][..]));
        assert_eq!(x.counts, [1, 1, 1, 1, 2], "≤1, ≤2, ≤3, >3, missing");
        assert_eq!(r.features[1].counts, [2, 3, 1, 0], "a, b, other, missing");
        assert_eq!(r.score.edges, [0.1, 0.2, 0.3, 0.4, 0.5]);
        assert_eq!(r.score.counts, [1, 1, 1, 1, 1, 1]);
        assert_eq!(x.bin(Value::Number(0.5)), 0);
        assert_eq!(x.bin(Value::Number(2.5)), 2);
        assert_eq!(x.bin(Value::Number(99.0)), 3);
        assert_eq!(r.features[1].bin(Value::Missing), 3);
        assert_eq!(r.features[1].bin(Value::Category(7)), 2, "a code the reference lacks is other");
        assert_eq!(x.labels(&[]), ["≤ 1", "≤ 2", "≤ 3", "> 3", "missing"]);
        assert_eq!(r.counts().features[1], r.features[1].counts);
    }

    #[test]
    fn a_reference_that_does_not_fit_the_schema_is_named() {
        let fields = fields();
        let r = Reference::build(&fields, Rows::new(2).view(), &[]);
        r.validate(fields.schema()).unwrap();
        let bad = |change: fn(&mut Reference)| {
            let mut r = r.clone();
            change(&mut r);
            r.validate(fields.schema()).unwrap_err()
        };
        assert!(bad(|r| {
            r.features.pop();
        })
        .contains("1 features, the schema declares 2"));
        assert!(bad(|r| r.features[0].name = "y".into()).contains("feature `y` where the schema declares `x`"));
        assert!(bad(|r| r.features[0].edges = None).contains("number feature `x` has no edges"));
        assert!(bad(|r| r.features[1].edges = Some(vec![])).contains("category feature `c` has edges"));
        assert!(bad(|r| r.features[1].counts.push(0)).contains("feature `c` has 5 counts for 4 bins"));
        assert!(bad(|r| r.features[0].edges = Some(vec![2.0, 1.0])).contains("strictly increasing"));
        assert!(bad(|r| r.score.edges = vec![1.5]).contains("inside [0, 1]"));
        assert!(bad(|r| r.score.counts.push(1)).contains("expected one more count"));
    }
}
