//! The `pattern`s of `/openapi.json` for text the field rules read
//! ([`crate::model::field_rules`]): a numeric string (`parse_number`) and a
//! category (`check_category`). Both are written in the common subset of
//! ECMA-262 and Python `re` (what OpenAPI names and what schemathesis runs),
//! with every class spelled out: `\s` and `\d` mean other things in each.
//!
//! A category is exact: at most `max_len` characters once the white space
//! `str::trim` removes is taken off, or blank.
//!
//! A numeric string is blank (missing), or a number Rust's `f64` parser
//! reads (an optional sign, digits with an optional point, an optional
//! exponent) whose value is finite and in `0..=max`, with white space
//! around it. A regular expression cannot compare an exponent with a count
//! of digits, so the pattern takes exponents from −[`EXPONENTS`] to
//! +[`EXPONENTS`] exactly (a mantissa at most `max` scaled by the exponent),
//! any exponent on a zero, and smaller exponents with a mantissa up to
//! `max · 10^(EXPONENTS+1)`. Everything it matches is accepted; what the
//! server accepts beyond it needs a value rounding into range from
//! outside (17 or more significant digits: `1.00000000000000001` for a
//! maximum of 1, or a negative value under 1e-300 that rounds to −0) or a
//! mantissa over `max · 10^(EXPONENTS+1)` with an exponent below
//! −[`EXPONENTS`].

/// The white space `str::trim` removes (Unicode `White_Space`).
const SPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Exponents written out exactly, in both directions.
const EXPONENTS: i32 = 10;

/// Text that reads as a number in `0..=max` (`max` finite, not negative),
/// or blank, with white space around it; unanchored (the caller adds `^…$`).
pub fn numeric_text_body(max: f64) -> String {
    let (int, frac) = decimal_digits(max);
    let mut alternatives = vec![r"[+-]?(?:0+(?:\.0*)?|\.0+)(?:[eE][+-]?[0-9]+)?".to_string()];
    for exponent in -EXPONENTS..=EXPONENTS {
        let (i, f) = shifted(&int, &frac, -exponent);
        if i.is_empty() && f.is_empty() && exponent != 0 {
            continue; // only zero, matched above
        }
        alternatives.push(format!(r"\+?{}{}", mantissa_at_most(&i, &f), exponent_of(exponent)));
    }
    let (i, f) = shifted(&int, &frac, EXPONENTS + 1);
    alternatives.push(format!(r"\+?{}[eE]-0*{}", mantissa_at_most(&i, &f), integer_above(EXPONENTS)));
    format!("[{SPACE}]*(?:(?:{})[{SPACE}]*)?", alternatives.join("|"))
}

/// Text of at most `max_len` characters (`max_len` ≥ 2) once trimmed, or
/// blank; unanchored.
pub fn category_text_body(max_len: usize) -> String {
    format!("[{SPACE}]*(?:[^{SPACE}](?:[\\s\\S]{{0,{}}}[^{SPACE}])?)?[{SPACE}]*", max_len - 2)
}

/// The digits of `x` (finite, not negative) before and after the point,
/// without leading or trailing zeros: `123.45` → (`123`, `45`), `0.5` →
/// (``, `5`). `Display` for `f64` writes no exponent.
fn decimal_digits(x: f64) -> (String, String) {
    let text = x.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    (int.trim_start_matches('0').to_string(), frac.trim_end_matches('0').to_string())
}

/// The digits of `int.frac × 10^shift`, as [`decimal_digits`] gives them.
fn shifted(int: &str, frac: &str, shift: i32) -> (String, String) {
    let digits = format!("{int}{frac}");
    let point = int.len() as i32 + shift;
    let (int, frac) = if point <= 0 {
        (String::new(), format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        let (i, f) = digits.split_at(point as usize);
        (i.to_string(), f.to_string())
    };
    (int.trim_start_matches('0').to_string(), frac.trim_end_matches('0').to_string())
}

/// A plain decimal (no sign, no exponent; leading zeros allowed) at most
/// `int.frac`, as [`decimal_digits`] gives it.
fn mantissa_at_most(int: &str, frac: &str) -> String {
    let mut alternatives = Vec::new();
    if int.is_empty() {
        // Below 1: the fraction decides.
        alternatives.push(format!(r"0+(?:\.{})?|\.{}", fraction_at_most(frac, false), fraction_at_most(frac, true)));
    } else {
        alternatives.push(r"0+(?:\.[0-9]*)?|\.[0-9]+".to_string());
        alternatives.extend(integer_below(int).into_iter().map(|i| format!(r"0*{i}(?:\.[0-9]*)?")));
        alternatives.push(format!(r"0*{int}(?:\.{})?", fraction_at_most(frac, false)));
    }
    format!("(?:{})", alternatives.join("|"))
}

/// Fraction digits `y` with `0.y ≤ 0.frac`, possibly none (or at least one
/// if `nonempty`).
fn fraction_at_most(frac: &str, nonempty: bool) -> String {
    let Some(first) = frac.chars().next() else {
        return if nonempty { "0+" } else { "0*" }.to_string();
    };
    let rest = fraction_at_most(&frac[1..], false);
    let inner = match digits_below(first, '0') {
        Some(below) => format!("(?:{below}[0-9]*|{first}{rest})"),
        None => format!("(?:{first}{rest})"),
    };
    if nonempty {
        inner
    } else {
        format!("{inner}?")
    }
}

/// Alternatives for the integers (no leading zero) below `int` (digits, no
/// leading zero).
fn integer_below(int: &str) -> Vec<String> {
    let n = int.len();
    let mut alternatives = Vec::new();
    if n >= 2 {
        alternatives.push(format!("[1-9]{}", any_digits(0, n - 2)));
    }
    for (j, digit) in int.char_indices() {
        if let Some(below) = digits_below(digit, if j == 0 { '1' } else { '0' }) {
            alternatives.push(format!("{}{below}{}", &int[..j], any_digits(n - j - 1, n - j - 1)));
        }
    }
    alternatives
}

/// The integers above `k` (≥ 0), written without leading zeros.
fn integer_above(k: i32) -> String {
    let text = k.to_string();
    let n = text.len();
    let mut alternatives = vec![format!("[1-9][0-9]{{{n},}}")];
    for (j, digit) in text.char_indices() {
        if digit != '9' {
            let above = (digit as u8 + 1) as char;
            alternatives.push(format!("{}[{above}-9]{}", &text[..j], any_digits(n - j - 1, n - j - 1)));
        }
    }
    format!("(?:{})", alternatives.join("|"))
}

/// An exponent of exactly `e` (leading zeros allowed); none at all for 0.
fn exponent_of(e: i32) -> String {
    match e {
        0 => r"(?:[eE][+-]?0+)?".to_string(),
        e if e > 0 => format!(r"[eE]\+?0*{e}"),
        e => format!("[eE]-0*{}", -e),
    }
}

/// The class of the digits from `lowest` up to below `digit`, if any.
fn digits_below(digit: char, lowest: char) -> Option<String> {
    let top = (digit as u8).checked_sub(1).map(char::from).filter(|&top| top >= lowest)?;
    Some(if top == lowest { top.to_string() } else { format!("[{lowest}-{top}]") })
}

/// `[0-9]` repeated `from..=to` times.
fn any_digits(from: usize, to: usize) -> String {
    match (from, to) {
        (_, 0) => String::new(),
        (1, 1) => "[0-9]".to_string(),
        (f, t) if f == t => format!("[0-9]{{{f}}}"),
        (f, t) => format!("[0-9]{{{f},{t}}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::field_rules::{check_category, parse_number, MAX_CATEGORY_LEN};
    use crate::model::input::{loan_schema_rules, NUMERIC_RULES};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    /// `cases` strings the pattern `body` generates.
    fn generated(body: &str, cases: usize) -> Vec<String> {
        let strategy = proptest::string::string_regex(body).unwrap();
        let mut runner = TestRunner::deterministic();
        (0..cases).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
    }

    #[test]
    fn the_digits_of_a_maximum_and_its_scalings() {
        assert_eq!(decimal_digits(10_000_000.0), ("10000000".into(), "".into()));
        assert_eq!(decimal_digits(123.45), ("123".into(), "45".into()));
        assert_eq!(decimal_digits(0.5), ("".into(), "5".into()));
        assert_eq!(decimal_digits(0.0), ("".into(), "".into()));
        assert_eq!(shifted("123", "45", -4), ("".into(), "012345".into()));
        assert_eq!(shifted("123", "45", 3), ("123450".into(), "".into()));
        assert_eq!(shifted("", "5", 1), ("5".into(), "".into()));
        assert_eq!(shifted("1", "", -1), ("".into(), "1".into()));
        assert_eq!(integer_below("120"), ["[1-9][0-9]{0,1}", "1[0-1][0-9]"]);
        assert_eq!(integer_above(10), "(?:[1-9][0-9]{2,}|[2-9][0-9]|1[1-9])");
        assert_eq!(fraction_at_most("05", false), "(?:0(?:[0-4][0-9]*|50*)?)?");
    }

    /// Every string a numeric pattern allows is one the server reads,
    /// and in range: the exponents, signs, zeros and white space included.
    #[test]
    fn numeric_text_the_pattern_allows_is_accepted() {
        for (feature, rule) in loan_schema_rules().iter().zip(NUMERIC_RULES) {
            for text in generated(&numeric_text_body(rule.max), 3000) {
                assert!(parse_number(feature, &text).is_ok(), "{}: {text:?}", rule.feature);
            }
        }
        // Maxima that are not powers of ten, and zero.
        for max in [123.45, 0.5, 0.0, 1e-3] {
            for text in generated(&numeric_text_body(max), 3000) {
                let t = text.trim();
                let in_range = |v: f64| v.is_finite() && v >= 0.0 && v <= max;
                assert!(t.is_empty() || t.parse::<f64>().is_ok_and(in_range), "{max}: {text:?}");
            }
        }
    }

    #[test]
    fn category_text_the_pattern_allows_is_accepted() {
        for text in generated(&category_text_body(MAX_CATEGORY_LEN), 3000) {
            assert!(check_category(&text).is_ok(), "{text:?}");
        }
    }

    /// The white-space class is `char::is_whitespace`, which `str::trim` uses.
    #[test]
    fn the_space_class_is_unicode_white_space() {
        let spaces: String = generated(&format!("[{SPACE}]{{64}}"), 200).concat();
        assert!(spaces.chars().all(char::is_whitespace));
        let mut listed: Vec<char> = spaces.chars().collect();
        listed.sort_unstable();
        listed.dedup();
        let all: Vec<char> = (0..=0x10ffff).filter_map(char::from_u32).filter(|c| c.is_whitespace()).collect();
        assert_eq!(listed, all, "every white-space character is in the class");
    }
}
