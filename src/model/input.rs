//! The input: the ten loan-application features, their kinds and their
//! canonical order, and [`LoanApplication`], the one input type shared by
//! training (CSV rows), serving (JSON requests) and the synthetic generator.

/// Numeric features, in the order used everywhere (arrays, encoded columns).
pub const NUMERIC_FEATURES: [&str; 6] = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"];

/// Categorical features, in the order used everywhere.
pub const CATEGORICAL_FEATURES: [&str; 4] = ["purpose", "grade", "emp_length", "home_ownership"];

/// All ten features: the numeric ones, then the categorical ones. A *field
/// index* is a position in this list (numeric index `k` is field `k`,
/// categorical index `k` is field `NUMERIC_FEATURES.len() + k`).
pub const FEATURES: [&str; 10] = [
    "loan_amnt",
    "int_rate",
    "annual_inc",
    "revol_util",
    "dti",
    "delinq_2yrs",
    "purpose",
    "grade",
    "emp_length",
    "home_ownership",
];

/// The field index of a feature name, if it is one of the ten.
pub fn feature_index(name: &str) -> Option<usize> {
    feature_index_bytes(name.as_bytes())
}

/// [`feature_index`] of a name's bytes (the names are ASCII).
pub fn feature_index_bytes(name: &[u8]) -> Option<usize> {
    // A match, not a search of `FEATURES`: the compiler compares the length
    // first, so a request's keys cost one or two comparisons each.
    let i = match name {
        b"loan_amnt" => 0,
        b"int_rate" => 1,
        b"annual_inc" => 2,
        b"revol_util" => 3,
        b"dti" => 4,
        b"delinq_2yrs" => 5,
        b"purpose" => 6,
        b"grade" => 7,
        b"emp_length" => 8,
        b"home_ownership" => 9,
        _ => return None,
    };
    debug_assert_eq!(FEATURES[i].as_bytes(), name);
    Some(i)
}

/// The column order of the training CSV (without the target), as in the
/// reference data set.
pub const CSV_FEATURE_ORDER: [&str; 10] = [
    "loan_amnt",
    "int_rate",
    "purpose",
    "grade",
    "annual_inc",
    "revol_util",
    "emp_length",
    "dti",
    "delinq_2yrs",
    "home_ownership",
];

/// Name of the 0/1 target column.
pub const TARGET: &str = "is_late";

/// The category that stands for a missing categorical value (the reference
/// pipeline's `SimpleImputer(strategy="constant", fill_value="missing")`).
pub const MISSING_CATEGORY: &str = "missing";

/// Index of each numeric feature in [`LoanApplication::numeric`].
pub mod num {
    pub const LOAN_AMNT: usize = 0;
    pub const INT_RATE: usize = 1;
    pub const ANNUAL_INC: usize = 2;
    pub const REVOL_UTIL: usize = 3;
    pub const DTI: usize = 4;
    pub const DELINQ_2YRS: usize = 5;
}

/// Index of each categorical feature in [`LoanApplication::categorical`].
pub mod cat {
    pub const PURPOSE: usize = 0;
    pub const GRADE: usize = 1;
    pub const EMP_LENGTH: usize = 2;
    pub const HOME_OWNERSHIP: usize = 3;
}

/// One loan application: the ten features, each possibly missing.
///
/// `None` means "missing" and is imputed by the model's preprocessing (the
/// training median for numeric features, the `missing` category for
/// categorical ones). Values are raw, exactly as in the CSV or the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoanApplication {
    /// In the order of [`NUMERIC_FEATURES`].
    pub numeric: [Option<f64>; 6],
    /// In the order of [`CATEGORICAL_FEATURES`].
    pub categorical: [Option<String>; 4],
}

impl LoanApplication {
    /// The value of a feature by name, formatted as it would appear in a CSV
    /// cell (empty when missing). Used by the CSV writer and diagnostics.
    pub fn cell(&self, feature: &str) -> Option<String> {
        if let Some(i) = NUMERIC_FEATURES.iter().position(|f| *f == feature) {
            return Some(self.numeric[i].map(|v| v.to_string()).unwrap_or_default());
        }
        let i = CATEGORICAL_FEATURES.iter().position(|f| *f == feature)?;
        Some(self.categorical[i].clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_the_numeric_then_the_categorical_ones() {
        let joined: Vec<&str> = NUMERIC_FEATURES.iter().chain(CATEGORICAL_FEATURES.iter()).copied().collect();
        assert_eq!(FEATURES.to_vec(), joined);
        let mut csv = CSV_FEATURE_ORDER.to_vec();
        csv.sort_unstable();
        let mut all = FEATURES.to_vec();
        all.sort_unstable();
        assert_eq!(csv, all);
        assert_eq!(feature_index("dti"), Some(4));
        assert_eq!(feature_index("grade"), Some(NUMERIC_FEATURES.len() + cat::GRADE));
        assert_eq!(feature_index("loan_amount"), None);
        for (i, f) in FEATURES.iter().enumerate() {
            assert_eq!(feature_index(f), Some(i));
        }
    }
}
