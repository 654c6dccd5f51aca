//! The ten loan-application fields of riskserve's reference data: their
//! kinds, canonical order, documented ranges and units, and
//! [`LoanApplication`], the typed row the synthetic generator makes and
//! tests use. Models declare their own inputs ([`super::schema`]); these are
//! what format-1 and format-2 files, the bundled model and `synth` have.

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

/// The accepted range of one numeric loan field: finite, `0 ..= max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericRule {
    pub feature: &'static str,
    /// The sane maximum, inclusive: far above any real application, so only
    /// absurd values (a unit mistake, `1e300`) are refused.
    pub max: f64,
    /// The unit, when it is easy to get wrong (a percentage sent where a
    /// fraction is expected is the usual mistake).
    pub unit: Option<&'static str>,
    /// What the web form says under the field.
    pub help: Option<&'static str>,
}

/// The rule of each numeric loan field, in the order of [`NUMERIC_FEATURES`].
///
/// The maxima were set against the reference sample (loan_amnt 1,000–40,000,
/// int_rate ≤ 0.31, annual_inc ≤ 987,000, revol_util ≤ 1.05, dti < 40,
/// delinq_2yrs ≤ 18) and `riskserve synth` (annual_inc up to 2,000,000,
/// delinq_2yrs up to 21), leaving room for the wider public Lending Club
/// data (revol_util near 9, i.e. 900 %; dti up to 999 for joint
/// applications; delinquency counts in the tens). `train` gives these
/// fields these ranges whatever the data (other columns get a range from
/// the training data).
pub const NUMERIC_RULES: [NumericRule; 6] = [
    NumericRule { feature: "loan_amnt", max: 10_000_000.0, unit: None, help: Some("Amount requested, in dollars.") },
    NumericRule {
        feature: "int_rate",
        max: 1.0,
        unit: Some("fraction"),
        help: Some("Interest rate as a fraction: 0.1356 for 13.56 %."),
    },
    NumericRule { feature: "annual_inc", max: 1_000_000_000.0, unit: None, help: Some("Yearly income, in dollars.") },
    NumericRule {
        feature: "revol_util",
        max: 10.0,
        unit: Some("fraction"),
        help: Some("Revolving credit used, as a fraction of the limit: 0.226 for 22.6 %."),
    },
    NumericRule {
        feature: "dti",
        max: 1_000.0,
        unit: Some("percent"),
        help: Some("Debt-to-income ratio in percent: 14.39 for 14.39 %."),
    },
    NumericRule { feature: "delinq_2yrs", max: 100.0, unit: None, help: Some("Delinquencies in the past two years.") },
];

/// The numeric loan fields as schema features with their rules (no
/// imputed value): what `train` gives these columns.
pub fn loan_schema_rules() -> Vec<super::schema::Feature> {
    NUMERIC_RULES
        .iter()
        .map(|r| {
            let mut f = super::schema::Feature::number(r.feature, 0.0, r.max, r.unit, None);
            f.help = r.help.map(str::to_string);
            f
        })
        .collect()
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
        let names: Vec<&str> = NUMERIC_RULES.iter().map(|r| r.feature).collect();
        assert_eq!(names, NUMERIC_FEATURES.to_vec());
    }

    #[test]
    fn the_maxima_are_as_documented() {
        let max: Vec<f64> = NUMERIC_RULES.iter().map(|r| r.max).collect();
        assert_eq!(max, [10_000_000.0, 1.0, 1_000_000_000.0, 10.0, 1_000.0, 100.0]);
    }
}
