//! The feature schema of format-1 and format-2 files: the ten loan fields'
//! training medians and category sets (the reference pipeline's median
//! imputation and one-hot encoding with a `missing` category). Read only:
//! such a file loads as a [`super::schema::Schema`] built from it
//! ([`super::schema::Schema::from_legacy`]); new files declare their
//! schema directly.

use super::limits::{bounded_seq, MAX_CATEGORIES_PER_FEATURE, MAX_SCHEMA_FEATURES};
use serde::{Deserialize, Deserializer, Serialize};

/// A numeric feature in a legacy schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericFeature {
    pub name: String,
    /// Training median, used for missing values.
    pub median: f64,
}

/// A categorical feature in a legacy schema.
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

/// The `schema` of a format-1 or format-2 file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    #[serde(deserialize_with = "features")]
    pub numeric: Vec<NumericFeature>,
    #[serde(deserialize_with = "features")]
    pub categorical: Vec<CategoricalFeature>,
    /// The category that missing categorical values are imputed with.
    pub missing_category: String,
}

/// Median as scikit-learn's `SimpleImputer(strategy="median")` computes it
/// (mean of the two middle values for an even count). 0 when there are no
/// values at all.
pub fn median(values: &mut [f64]) -> f64 {
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

    #[test]
    fn median_matches_simple_imputer_for_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn too_many_categories_are_refused_while_decoding_naming_the_limit() {
        let many: Vec<String> = (0..=MAX_CATEGORIES_PER_FEATURE).map(|i| i.to_string()).collect();
        let text = serde_json::json!({"numeric": [], "categorical": [{"name": "grade", "categories": many}],
            "missing_category": "missing"})
        .to_string();
        let err = serde_json::from_str::<Preprocessor>(&text).unwrap_err().to_string();
        assert!(err.contains("max_categories_per_feature"), "{err}");
    }
}
