//! The per-value input rules, one set for every reader: the JSON request
//! parsers, OIP tensors and the training CSV reader all call these, so a
//! model is never trained on a row the server would refuse, and the server
//! never accepts a value training would reject.
//!
//! A number must be finite and inside its feature's declared range (both
//! bounds inclusive); a category is trimmed and at most
//! [`MAX_CATEGORY_LEN`] characters; blank text means "missing" for both
//! kinds. Each violation has its message ([`Violation`]). No HTTP here:
//! readers map a [`FieldError`] to their own error, adding where it was
//! (`instances[2].loan_amnt`, `line 17`).

use super::schema::{Feature, Kind};
use std::fmt;

/// Longest categorical value accepted, in characters, after trimming.
pub const MAX_CATEGORY_LEN: usize = 100;

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
    #[error("must be at least {}, got {}", Shown(*.min), Shown(*.got))]
    TooSmall { min: f64, got: f64 },
    #[error("{}", TooLarge { max: *max, got: *got, unit: unit.as_deref() })]
    TooLarge { max: f64, got: f64, unit: Option<String> },
    #[error("is longer than {MAX_CATEGORY_LEN} characters")]
    TooLong,
}

/// A value that breaks its field's rule: the field and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {violation}")]
pub struct FieldError {
    pub field: String,
    pub violation: Violation,
}

/// Checks a number against `feature`'s range: finite, `min ..= max`.
/// A feature that is not a number accepts any finite value.
pub fn check_number(feature: &Feature, v: f64) -> Result<f64, Violation> {
    let (min, max, unit) = match &feature.kind {
        Kind::Number { min, max, unit, .. } => (*min, *max, unit.as_deref()),
        Kind::Category { .. } => (f64::MIN, f64::MAX, None),
    };
    if !v.is_finite() {
        Err(Violation::NotFinite)
    } else if v < min {
        Err(if min == 0.0 { Violation::Negative(v) } else { Violation::TooSmall { min, got: v } })
    } else if v > max {
        Err(Violation::TooLarge { max, got: v, unit: unit.map(str::to_string) })
    } else {
        Ok(v)
    }
}

/// Reads a number from text (a CSV cell, or a numeric string in JSON):
/// blank is missing, anything else must parse and pass [`check_number`].
pub fn parse_number(feature: &Feature, text: &str) -> Result<Option<f64>, Violation> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) => check_number(feature, v).map(Some),
        Err(_) => Err(Violation::NotANumber(text.chars().take(40).collect())),
    }
}

/// Checks a category: the value, trimmed, or `None` when blank (missing).
/// At most [`MAX_CATEGORY_LEN`] characters. Any category is allowed
/// otherwise: one the model has not seen encodes as unseen.
pub fn check_category(text: &str) -> Result<Option<&str>, Violation> {
    // Every whitespace character `trim` removes starts with a byte of
    // 0x20 or below or a non-ASCII byte: a value that begins and ends with
    // visible ASCII (most do) has nothing to trim.
    let visible = |b: Option<&u8>| b.is_some_and(|&b| (0x21..0x7f).contains(&b));
    let t = if visible(text.as_bytes().first()) && visible(text.as_bytes().last()) { text } else { text.trim() };
    if t.is_empty() {
        Ok(None)
    } else if t.len() > MAX_CATEGORY_LEN && t.chars().count() > MAX_CATEGORY_LEN {
        Err(Violation::TooLong)
    } else {
        Ok(Some(t))
    }
}

/// The too-large message: what the unit means when it is easy to get
/// wrong, then the maximum.
struct TooLarge<'a> {
    max: f64,
    got: f64,
    unit: Option<&'a str>,
}

impl fmt::Display for TooLarge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (max, got) = (Shown(self.max), Shown(self.got));
        match self.unit {
            Some("fraction") => write!(f, "is a fraction (0.1356 for 13.56 %), at most {max}, got {got}"),
            Some("percent") => write!(f, "is a percentage (14.39 for 14.39 %), at most {max}, got {got}"),
            Some(unit) => write!(f, "must be at most {max} ({unit}), got {got}"),
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
    use crate::model::input::{loan_schema_rules, NUMERIC_RULES};

    proptest::proptest! {
        /// The shortcut for values with nothing to trim gives `trim`'s answer.
        #[test]
        fn a_category_is_trimmed_as_str_trim_does(text in "[ \t\n\r\u{b}\u{c}\u{1f}\u{85}\u{a0}\u{3000}aZ~!é]{0,8}") {
            let want = Some(text.trim()).filter(|t| !t.is_empty());
            proptest::prop_assert_eq!(check_category(&text).unwrap(), want);
        }
    }

    fn rules() -> Vec<Feature> {
        loan_schema_rules()
    }

    fn msg(k: usize, v: f64) -> String {
        format!("{}: {}", NUMERIC_RULES[k].feature, check_number(&rules()[k], v).unwrap_err())
    }

    #[test]
    fn zero_and_each_maximum_are_accepted_inclusively() {
        for (f, r) in rules().iter().zip(NUMERIC_RULES) {
            assert_eq!(check_number(f, 0.0), Ok(0.0), "{}", r.feature);
            assert_eq!(check_number(f, r.max), Ok(r.max), "{}", r.feature);
            let above = check_number(f, r.max * (1.0 + 1e-12)).unwrap_err();
            assert!(matches!(above, Violation::TooLarge { .. }), "{}: {above}", r.feature);
        }
    }

    #[test]
    fn each_violation_names_the_problem() {
        assert_eq!(msg(0, -5.0), "loan_amnt: must not be negative, got -5");
        assert_eq!(msg(0, 1e300), "loan_amnt: must be at most 10000000, got 1e300");
        assert_eq!(msg(1, 13.56), "int_rate: is a fraction (0.1356 for 13.56 %), at most 1, got 13.56");
        assert_eq!(msg(4, 1500.0), "dti: is a percentage (14.39 for 14.39 %), at most 1000, got 1500");
        assert_eq!(msg(5, f64::NAN), "delinq_2yrs: must be a finite number (not NaN or infinity)");
        assert!(check_number(&rules()[4], -0.0).is_ok(), "-0.0 is zero, not negative");
        let term = Feature::number("term", 12.0, 60.0, Some("months"), None);
        assert_eq!(check_number(&term, 6.0).unwrap_err().to_string(), "must be at least 12, got 6");
        assert_eq!(check_number(&term, 72.0).unwrap_err().to_string(), "must be at most 60 (months), got 72");
    }

    #[test]
    fn text_is_trimmed_blank_is_missing_and_junk_is_not_a_number() {
        let f = &rules()[0];
        assert_eq!(parse_number(f, " 5000 "), Ok(Some(5000.0)));
        assert_eq!(parse_number(f, "  "), Ok(None));
        assert_eq!(parse_number(f, "abc").unwrap_err().to_string(), "must be a number, got the string \"abc\"");
        assert_eq!(parse_number(f, "NaN").unwrap_err(), Violation::NotFinite);
        assert_eq!(parse_number(f, "inf").unwrap_err(), Violation::NotFinite);
        assert_eq!(parse_number(f, "-0.1").unwrap_err(), Violation::Negative(-0.1));
        let long = "x".repeat(500);
        assert_eq!(parse_number(f, &long).unwrap_err(), Violation::NotANumber("x".repeat(40)));
    }

    #[test]
    fn categories_are_trimmed_blank_is_missing_and_length_is_bounded_inclusively() {
        assert_eq!(check_category(" B "), Ok(Some("B")));
        assert_eq!(check_category(""), Ok(None));
        assert_eq!(check_category(" \t"), Ok(None));
        let longest = "é".repeat(MAX_CATEGORY_LEN);
        assert_eq!(check_category(&longest), Ok(Some(longest.as_str())));
        assert_eq!(check_category(&format!("{longest}x")).unwrap_err().to_string(), "is longer than 100 characters");
    }
}
