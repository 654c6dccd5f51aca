//! Preprocessing of the reference pipeline: numeric features imputed with the
//! training median, categorical features imputed with the constant `missing`
//! category and one-hot encoded; a category not seen in training encodes to
//! all zeros (scikit-learn's `handle_unknown="ignore"`), never an error.
//!
//! The encoded layout is `[numeric features..., one-hot of purpose...,
//! one-hot of grade..., ...]`, categories sorted as scikit-learn sorts them.
//! Encoding writes into a caller-provided slice, so the request path does not
//! allocate.

use super::input::{LoanApplication, CATEGORICAL_FEATURES, MISSING_CATEGORY, NUMERIC_FEATURES};
use super::limits::{bounded_seq, MAX_CATEGORIES_PER_FEATURE, MAX_SCHEMA_FEATURES};
use serde::{Deserialize, Deserializer, Serialize};

/// Upper bound on the encoded width a model may declare. Requests encode
/// into a stack buffer of this size.
pub const MAX_ENCODED_WIDTH: usize = 512;

/// A numeric feature in the model's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericFeature {
    pub name: String,
    /// Training median, used for missing values.
    pub median: f64,
}

/// A categorical feature in the model's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalFeature {
    pub name: String,
    /// Categories seen in training (sorted), one encoded column each.
    /// Includes `missing` if training had missing values. At most
    /// [`MAX_CATEGORIES_PER_FEATURE`] (refused while decoding beyond that).
    #[serde(deserialize_with = "categories")]
    pub categories: Vec<String>,
}

fn categories<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded_seq(d, MAX_CATEGORIES_PER_FEATURE, "categories in one feature", "max_categories_per_feature")
}

fn features<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    bounded_seq(d, MAX_SCHEMA_FEATURES, "features of one kind", "max_schema_features")
}

/// The fitted preprocessing: what the model file stores as its feature schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    #[serde(deserialize_with = "features")]
    pub numeric: Vec<NumericFeature>,
    #[serde(deserialize_with = "features")]
    pub categorical: Vec<CategoricalFeature>,
    /// The category that missing categorical values are imputed with.
    pub missing_category: String,
}

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessorError {
    #[error("schema must list numeric features {expected:?} in this order, found {found:?}")]
    NumericFeatures { expected: Vec<String>, found: Vec<String> },
    #[error("schema must list categorical features {expected:?} in this order, found {found:?}")]
    CategoricalFeatures { expected: Vec<String>, found: Vec<String> },
    #[error("median of `{0}` is not a finite number")]
    BadMedian(String),
    #[error("categorical feature `{0}` has no categories")]
    NoCategories(String),
    #[error(
        "categorical feature `{feature}` has {count} categories, more than the limit of \
         {MAX_CATEGORIES_PER_FEATURE} (max_categories_per_feature)"
    )]
    TooManyCategories { feature: String, count: usize },
    #[error("categorical feature `{feature}` lists category `{category}` twice")]
    DuplicateCategory { feature: String, category: String },
    #[error("encoded width {0} exceeds the limit of {MAX_ENCODED_WIDTH} columns (max_encoded_width)")]
    TooWide(usize),
}

impl Preprocessor {
    /// Fits the preprocessing on training rows (medians and category sets).
    pub fn fit(rows: &[LoanApplication]) -> Self {
        let numeric = NUMERIC_FEATURES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut values: Vec<f64> = rows.iter().filter_map(|r| r.numeric[i]).collect();
                NumericFeature { name: (*name).to_string(), median: median(&mut values) }
            })
            .collect();
        let categorical = CATEGORICAL_FEATURES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut categories: Vec<String> = rows
                    .iter()
                    .map(|r| r.categorical[i].clone().unwrap_or_else(|| MISSING_CATEGORY.to_string()))
                    .collect();
                categories.sort_unstable();
                categories.dedup();
                CategoricalFeature { name: (*name).to_string(), categories }
            })
            .collect();
        Preprocessor { numeric, categorical, missing_category: MISSING_CATEGORY.to_string() }
    }

    /// Checks that the schema matches this server's input type and limits.
    pub fn validate(&self) -> Result<(), PreprocessorError> {
        let names = |it: &mut dyn Iterator<Item = &String>| it.cloned().collect::<Vec<_>>();
        let found = names(&mut self.numeric.iter().map(|f| &f.name));
        if found.iter().map(String::as_str).ne(NUMERIC_FEATURES) {
            return Err(PreprocessorError::NumericFeatures {
                expected: NUMERIC_FEATURES.iter().map(|s| s.to_string()).collect(),
                found,
            });
        }
        let found = names(&mut self.categorical.iter().map(|f| &f.name));
        if found.iter().map(String::as_str).ne(CATEGORICAL_FEATURES) {
            return Err(PreprocessorError::CategoricalFeatures {
                expected: CATEGORICAL_FEATURES.iter().map(|s| s.to_string()).collect(),
                found,
            });
        }
        if let Some(f) = self.numeric.iter().find(|f| !f.median.is_finite()) {
            return Err(PreprocessorError::BadMedian(f.name.clone()));
        }
        for f in &self.categorical {
            if f.categories.is_empty() {
                return Err(PreprocessorError::NoCategories(f.name.clone()));
            }
            if f.categories.len() > MAX_CATEGORIES_PER_FEATURE {
                return Err(PreprocessorError::TooManyCategories {
                    feature: f.name.clone(),
                    count: f.categories.len(),
                });
            }
            let mut seen: Vec<&str> = f.categories.iter().map(String::as_str).collect();
            seen.sort_unstable();
            if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                return Err(PreprocessorError::DuplicateCategory {
                    feature: f.name.clone(),
                    category: w[0].to_string(),
                });
            }
        }
        let width = self.width();
        if width > MAX_ENCODED_WIDTH {
            return Err(PreprocessorError::TooWide(width));
        }
        Ok(())
    }

    /// Number of encoded columns.
    pub fn width(&self) -> usize {
        self.numeric.len() + self.categorical.iter().map(|f| f.categories.len()).sum::<usize>()
    }

    /// Human-readable names of the encoded columns (`grade=C`, `dti`, ...).
    pub fn column_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.numeric.iter().map(|f| f.name.clone()).collect();
        for f in &self.categorical {
            names.extend(f.categories.iter().map(|c| format!("{}={c}", f.name)));
        }
        names
    }

    /// The field index (position in `FEATURES`) of each encoded column:
    /// numeric columns are their feature, each one-hot block belongs to its
    /// categorical feature.
    pub fn column_features(&self) -> Vec<u8> {
        let mut out: Vec<u8> = (0..self.numeric.len() as u8).collect();
        for (k, f) in self.categorical.iter().enumerate() {
            out.extend(std::iter::repeat_n((self.numeric.len() + k) as u8, f.categories.len()));
        }
        out
    }

    /// Encodes one application into `out` (length [`Self::width`]).
    ///
    /// Never fails: missing values are imputed, unseen categories encode to
    /// zeros. Allocation-free.
    pub fn encode_into(&self, app: &LoanApplication, out: &mut [f64]) {
        debug_assert_eq!(out.len(), self.width());
        for (i, f) in self.numeric.iter().enumerate() {
            out[i] = app.numeric[i].unwrap_or(f.median);
        }
        let mut offset = self.numeric.len();
        for (i, f) in self.categorical.iter().enumerate() {
            let block = &mut out[offset..offset + f.categories.len()];
            block.fill(0.0);
            let value = app.categorical[i].as_deref().unwrap_or(&self.missing_category);
            if let Some(k) = f.categories.iter().position(|c| c == value) {
                block[k] = 1.0;
            }
            offset += f.categories.len();
        }
    }

    /// Encodes many rows into one row-major matrix (training).
    pub fn encode_rows(&self, rows: &[LoanApplication]) -> Vec<f64> {
        let width = self.width();
        let mut out = vec![0.0; rows.len() * width];
        for (row, chunk) in rows.iter().zip(out.chunks_exact_mut(width)) {
            self.encode_into(row, chunk);
        }
        out
    }
}

/// Median as scikit-learn's `SimpleImputer(strategy="median")` computes it
/// (mean of the two middle values for an even count). 0 when there are no
/// values at all.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::{cat, num};

    fn app(amount: Option<f64>, grade: Option<&str>) -> LoanApplication {
        let mut a = LoanApplication::default();
        a.numeric[num::LOAN_AMNT] = amount;
        a.categorical[cat::GRADE] = grade.map(str::to_string);
        a
    }

    #[test]
    fn median_matches_simple_imputer_for_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn missing_numeric_is_imputed_with_training_median_ignoring_missing_rows() {
        let rows = vec![app(Some(100.0), Some("A")), app(None, Some("B")), app(Some(300.0), Some("A"))];
        let schema = Preprocessor::fit(&rows);
        assert_eq!(schema.numeric[num::LOAN_AMNT].median, 200.0);
        let mut out = vec![f64::NAN; schema.width()];
        schema.encode_into(&app(None, Some("A")), &mut out);
        assert_eq!(out[num::LOAN_AMNT], 200.0);
        assert!(out.iter().all(|v| v.is_finite()), "every column imputed: {out:?}");
    }

    #[test]
    fn missing_category_is_its_own_column_when_seen_in_training() {
        let rows = vec![app(Some(1.0), Some("B")), app(Some(1.0), None), app(Some(1.0), Some("A"))];
        let schema = Preprocessor::fit(&rows);
        let grades = &schema.categorical[cat::GRADE].categories;
        assert_eq!(grades, &["A", "B", "missing"]);
        let names = schema.column_names();
        let mut out = vec![0.0; schema.width()];
        schema.encode_into(&app(Some(1.0), None), &mut out);
        let hot: Vec<&str> = names.iter().zip(&out).filter(|(_, v)| **v == 1.0).map(|(n, _)| n.as_str()).collect();
        assert!(hot.contains(&"grade=missing"), "{hot:?}");
    }

    #[test]
    fn unseen_category_encodes_to_all_zeros_not_an_error() {
        let rows = vec![app(Some(1.0), Some("A")), app(Some(2.0), Some("B"))];
        let schema = Preprocessor::fit(&rows);
        let mut out = vec![9.0; schema.width()];
        schema.encode_into(&app(Some(1.0), Some("Z")), &mut out);
        let names = schema.column_names();
        for (name, v) in names.iter().zip(&out) {
            if name.starts_with("grade=") {
                assert_eq!(*v, 0.0, "{name}");
            }
        }
        // Missing grade was never seen in training either: also all zeros.
        schema.encode_into(&app(Some(1.0), None), &mut out);
        assert!(names.iter().zip(&out).filter(|(n, _)| n.starts_with("grade=")).all(|(_, v)| *v == 0.0));
    }

    #[test]
    fn validate_rejects_reordered_features_duplicates_and_bad_medians() {
        let schema = Preprocessor::fit(&[app(Some(1.0), Some("A"))]);
        assert!(schema.validate().is_ok());
        let mut s = schema.clone();
        s.numeric.swap(0, 1);
        assert!(matches!(s.validate(), Err(PreprocessorError::NumericFeatures { .. })));
        let mut s = schema.clone();
        s.numeric[2].median = f64::NAN;
        assert_eq!(s.validate(), Err(PreprocessorError::BadMedian("annual_inc".into())));
        let mut s = schema.clone();
        s.categorical[1].categories = vec!["A".into(), "A".into()];
        assert!(matches!(s.validate(), Err(PreprocessorError::DuplicateCategory { .. })));
        let mut s = schema;
        let many = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        s.categorical[0].categories = many(MAX_CATEGORIES_PER_FEATURE);
        s.categorical[2].categories = many(MAX_CATEGORIES_PER_FEATURE);
        assert!(matches!(s.validate(), Err(PreprocessorError::TooWide(_))));
        assert!(s.validate().unwrap_err().to_string().contains("max_encoded_width"));
    }

    #[test]
    fn a_feature_with_too_many_categories_is_refused_naming_the_limit() {
        let mut s = Preprocessor::fit(&[app(Some(1.0), Some("A"))]);
        s.categorical[1].categories = (0..=MAX_CATEGORIES_PER_FEATURE).map(|i| i.to_string()).collect();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("257 categories") && err.contains("max_categories_per_feature"), "{err}");
        // While decoding, the list is refused before it is held in memory.
        let text = serde_json::to_string(&s).unwrap();
        let err = serde_json::from_str::<Preprocessor>(&text).unwrap_err().to_string();
        assert!(err.contains("max_categories_per_feature"), "{err}");
    }
}
