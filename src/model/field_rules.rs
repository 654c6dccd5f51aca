//! The per-field input rules, one set for every reader: the JSON request
//! parser and the training CSV reader both call these, so a model is never
//! trained on a row the server would refuse, and the server never accepts a
//! value training would reject.
//!
//! Owned here, for each of the ten features: its kind ([`FieldKind`]), its
//! bounds (numeric values are finite and in `0 ..= max`, with a generous
//! *sane maximum* per field in [`NUMERIC_RULES`]; categorical values are at
//! most [`MAX_CATEGORY_LEN`] characters), and the message for each violation
//! ([`Violation`]). Blank text means "missing" for both kinds. No HTTP here:
//! readers map a [`FieldError`] to their own error, adding where it was
//! (`instances[2].loan_amnt`, `line 17`).

use super::input::{CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES};
use std::fmt;

/// Longest categorical value accepted, in characters, after trimming.
pub const MAX_CATEGORY_LEN: usize = 100;

/// The kind of a field, with its index among the features of that kind
/// (the index into [`super::input::LoanApplication::numeric`] or
/// [`super::input::LoanApplication::categorical`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Numeric(usize),
    Categorical(usize),
}

impl FieldKind {
    /// The kind of field index `i` (a position in [`FEATURES`]); `None`
    /// past the ten.
    pub fn of(i: usize) -> Option<FieldKind> {
        if i < NUMERIC_FEATURES.len() {
            Some(FieldKind::Numeric(i))
        } else if i < FEATURES.len() {
            Some(FieldKind::Categorical(i - NUMERIC_FEATURES.len()))
        } else {
            None
        }
    }
}

/// The accepted range of one numeric feature: finite, `0 ..= max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericRule {
    pub feature: &'static str,
    /// The sane maximum, inclusive: far above any real application, so only
    /// absurd values (a unit mistake, `1e300`) are refused.
    pub max: f64,
    /// The unit, said when a value is too large (a percentage sent where a
    /// fraction is expected is the usual mistake).
    pub unit: Option<&'static str>,
}

/// The rule of each numeric feature, in the order of [`NUMERIC_FEATURES`].
///
/// The maxima were set against the reference sample (loan_amnt 1,000–40,000,
/// int_rate ≤ 0.31, annual_inc ≤ 987,000, revol_util ≤ 1.05, dti < 40,
/// delinq_2yrs ≤ 18) and `riskserve synth` (annual_inc up to 2,000,000,
/// delinq_2yrs up to 21), leaving room for the wider public Lending Club
/// data (revol_util near 9, i.e. 900 %; dti up to 999 for joint
/// applications; delinquency counts in the tens).
pub const NUMERIC_RULES: [NumericRule; 6] = [
    NumericRule { feature: "loan_amnt", max: 10_000_000.0, unit: None },
    NumericRule { feature: "int_rate", max: 1.0, unit: Some("is a fraction (0.1356 for 13.56 %)") },
    NumericRule { feature: "annual_inc", max: 1_000_000_000.0, unit: None },
    NumericRule { feature: "revol_util", max: 10.0, unit: Some("is a fraction (0.226 for 22.6 %)") },
    NumericRule { feature: "dti", max: 1_000.0, unit: Some("is a percentage (14.39 for 14.39 %)") },
    NumericRule { feature: "delinq_2yrs", max: 100.0, unit: None },
];

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Violation {
    /// Text that does not parse as a number (shown truncated to 40 characters).
    #[error("must be a number, got the string {0:?}")]
    NotANumber(String),
    #[error("must be a finite number (not NaN or infinity)")]
    NotFinite,
    #[error("must not be negative, got {}", Shown(*.0))]
    Negative(f64),
    #[error("{}", TooLarge { max: *.max, got: *.got, unit: *.unit })]
    TooLarge { max: f64, got: f64, unit: Option<&'static str> },
    #[error("is longer than {MAX_CATEGORY_LEN} characters")]
    TooLong,
}

/// A value that breaks its field's rule: the field and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {violation}")]
pub struct FieldError {
    pub field: &'static str,
    pub violation: Violation,
}

/// Checks numeric feature `k` (an index into [`NUMERIC_FEATURES`], such as
/// [`super::input::num::LOAN_AMNT`]): finite, not negative, at most its
/// maximum. Both bounds are inclusive. Panics if `k` is not a numeric index.
pub fn check_numeric(k: usize, v: f64) -> Result<f64, FieldError> {
    let rule = &NUMERIC_RULES[k];
    let fail = |violation| Err(FieldError { field: rule.feature, violation });
    if !v.is_finite() {
        fail(Violation::NotFinite)
    } else if v < 0.0 {
        fail(Violation::Negative(v))
    } else if v > rule.max {
        fail(Violation::TooLarge { max: rule.max, got: v, unit: rule.unit })
    } else {
        Ok(v)
    }
}

/// Reads numeric feature `k` from text (a CSV cell, or a numeric string in
/// JSON): blank is missing, anything else must parse and pass
/// [`check_numeric`].
pub fn parse_numeric(k: usize, text: &str) -> Result<Option<f64>, FieldError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) => check_numeric(k, v).map(Some),
        Err(_) => Err(FieldError {
            field: NUMERIC_FEATURES[k],
            violation: Violation::NotANumber(text.chars().take(40).collect()),
        }),
    }
}

/// Checks categorical feature `k` (an index into [`CATEGORICAL_FEATURES`]):
/// the value, trimmed, or `None` when blank (missing). At most
/// [`MAX_CATEGORY_LEN`] characters. Any category is allowed otherwise: one
/// the model has not seen encodes to zeros. Panics if `k` is not a
/// categorical index.
pub fn check_category(k: usize, text: &str) -> Result<Option<&str>, FieldError> {
    // Every whitespace character `trim` removes starts with a byte of
    // 0x20 or below or a non-ASCII byte: a value that begins and ends with
    // visible ASCII (most do) has nothing to trim.
    let visible = |b: Option<&u8>| b.is_some_and(|&b| (0x21..0x7f).contains(&b));
    let t = if visible(text.as_bytes().first()) && visible(text.as_bytes().last()) { text } else { text.trim() };
    if t.is_empty() {
        Ok(None)
    } else if t.len() > MAX_CATEGORY_LEN && t.chars().count() > MAX_CATEGORY_LEN {
        Err(FieldError { field: CATEGORICAL_FEATURES[k], violation: Violation::TooLong })
    } else {
        Ok(Some(t))
    }
}

/// The too-large message: the unit when there is one, then the maximum.
struct TooLarge {
    max: f64,
    got: f64,
    unit: Option<&'static str>,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (max, got) = (Shown(self.max), Shown(self.got));
        match self.unit {
            Some(unit) => write!(f, "{unit}, at most {max}, got {got}"),
            None => write!(f, "must be at most {max}, got {got}"),
        }
    }
}

/// A number as a person would write it: plain, or in exponent form when it
/// is huge or tiny (`1e300`, not three hundred zeros).
struct Shown(f64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let a = self.0.abs();
        if a != 0.0 && !(1e-6..1e15).contains(&a) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::{cat, num};

    proptest::proptest! {
        /// The shortcut for values with nothing to trim gives `trim`'s answer.
        #[test]
        fn a_category_is_trimmed_as_str_trim_does(text in "[ \t\n\r\u{b}\u{c}\u{1f}\u{85}\u{a0}\u{3000}aZ~!é]{0,8}") {
            let want = Some(text.trim()).filter(|t| !t.is_empty());
            proptest::prop_assert_eq!(check_category(0, &text).unwrap(), want);
        }
    }

    fn violation(k: usize, v: f64) -> Violation {
        check_numeric(k, v).unwrap_err().violation
    }

    #[test]
    fn the_rules_follow_the_numeric_feature_order() {
        let names: Vec<&str> = NUMERIC_RULES.iter().map(|r| r.feature).collect();
        assert_eq!(names, NUMERIC_FEATURES.to_vec());
        for r in NUMERIC_RULES {
            assert!(r.max.is_finite() && r.max > 0.0, "{r:?}");
        }
    }

    #[test]
    fn field_kinds_split_numeric_then_categorical() {
        assert_eq!(FieldKind::of(num::DTI), Some(FieldKind::Numeric(num::DTI)));
        assert_eq!(FieldKind::of(NUMERIC_FEATURES.len() + cat::GRADE), Some(FieldKind::Categorical(cat::GRADE)));
        assert_eq!(FieldKind::of(FEATURES.len()), None);
    }

    #[test]
    fn zero_and_each_maximum_are_accepted_inclusively() {
        for (k, r) in NUMERIC_RULES.iter().enumerate() {
            assert_eq!(check_numeric(k, 0.0), Ok(0.0), "{}", r.feature);
            assert_eq!(check_numeric(k, r.max), Ok(r.max), "{}", r.feature);
            let above = violation(k, r.max * (1.0 + 1e-12));
            assert!(matches!(above, Violation::TooLarge { .. }), "{}: {above}", r.feature);
        }
    }

    #[test]
    fn the_maxima_are_as_documented() {
        let max = |k: usize| NUMERIC_RULES[k].max;
        assert_eq!(max(num::LOAN_AMNT), 10_000_000.0);
        assert_eq!(max(num::INT_RATE), 1.0);
        assert_eq!(max(num::ANNUAL_INC), 1_000_000_000.0);
        assert_eq!(max(num::REVOL_UTIL), 10.0);
        assert_eq!(max(num::DTI), 1_000.0);
        assert_eq!(max(num::DELINQ_2YRS), 100.0);
    }

    #[test]
    fn each_violation_names_the_field_and_the_problem() {
        let msg = |k: usize, v: f64| check_numeric(k, v).unwrap_err().to_string();
        assert_eq!(msg(num::LOAN_AMNT, -5.0), "loan_amnt: must not be negative, got -5");
        assert_eq!(msg(num::LOAN_AMNT, 1e300), "loan_amnt: must be at most 10000000, got 1e300");
        assert_eq!(msg(num::INT_RATE, 13.56), "int_rate: is a fraction (0.1356 for 13.56 %), at most 1, got 13.56");
        assert_eq!(msg(num::REVOL_UTIL, 85.0), "revol_util: is a fraction (0.226 for 22.6 %), at most 10, got 85");
        assert_eq!(msg(num::DTI, 1500.0), "dti: is a percentage (14.39 for 14.39 %), at most 1000, got 1500");
        assert_eq!(msg(num::DELINQ_2YRS, f64::NAN), "delinq_2yrs: must be a finite number (not NaN or infinity)");
        assert_eq!(violation(num::ANNUAL_INC, f64::INFINITY), Violation::NotFinite);
        assert_eq!(violation(num::DTI, f64::NEG_INFINITY), Violation::NotFinite);
        assert_eq!(violation(num::DTI, -1e-9), Violation::Negative(-1e-9));
        // -0.0 is zero, not negative.
        assert!(check_numeric(num::DTI, -0.0).is_ok());
    }

    #[test]
    fn text_is_trimmed_blank_is_missing_and_junk_is_not_a_number() {
        assert_eq!(parse_numeric(num::LOAN_AMNT, " 5000 "), Ok(Some(5000.0)));
        assert_eq!(parse_numeric(num::LOAN_AMNT, "  "), Ok(None));
        assert_eq!(
            parse_numeric(num::DTI, "abc").unwrap_err().to_string(),
            "dti: must be a number, got the string \"abc\""
        );
        assert_eq!(parse_numeric(num::INT_RATE, "NaN").unwrap_err().violation, Violation::NotFinite);
        assert_eq!(parse_numeric(num::INT_RATE, "inf").unwrap_err().violation, Violation::NotFinite);
        assert_eq!(parse_numeric(num::INT_RATE, "-0.1").unwrap_err().violation, Violation::Negative(-0.1));
        let long = "x".repeat(500);
        assert_eq!(parse_numeric(num::DTI, &long).unwrap_err().violation, Violation::NotANumber("x".repeat(40)));
    }

    #[test]
    fn categories_are_trimmed_blank_is_missing_and_length_is_bounded_inclusively() {
        assert_eq!(check_category(cat::GRADE, " B "), Ok(Some("B")));
        assert_eq!(check_category(cat::GRADE, ""), Ok(None));
        assert_eq!(check_category(cat::EMP_LENGTH, " \t"), Ok(None));
        let longest = "é".repeat(MAX_CATEGORY_LEN);
        assert_eq!(check_category(cat::PURPOSE, &longest), Ok(Some(longest.as_str())));
        let err = check_category(cat::PURPOSE, &format!("{longest}x")).unwrap_err();
        assert_eq!(err.to_string(), "purpose: is longer than 100 characters");
    }
}
