//! The common prediction body parsed without serde, straight into rows of
//! the answering version's schema: one application object, or
//! `{"instances": [...]}` of them, whose keys are the version's feature
//! names (each at most once, every required one present; a name another
//! version declares is skipped) and whose values are `null`, numbers or
//! strings without escapes, each valid for its feature. That is what
//! clients send; serde's visitor path costs about four times as much for it
//! (5,900 instructions of a 61,000-instruction request, callgrind).
//!
//! Anything else — whitespace aside — makes [`parse`] answer `None`: an
//! escape, a boolean or nested value, an unknown or repeated key, a missing
//! required field, a value its feature refuses, an empty batch or one over
//! the limit, a syntax error, trailing bytes.
//! The caller then parses with serde, which gives the exact answer or the
//! exact error it always gave. Where this parser answers, its answer is the
//! one serde gives, value for value (a property test holds it to that):
//! integers are read as `u64` and converted as serde converts them, other
//! numbers with the standard library's correctly rounded `f64` parser, as
//! serde_json's `float_roundtrip` does.

use super::Decoder;
use crate::model::row::{Rows, Value};

/// `Some(rows)` when `body` has the common shape (see the module doc);
/// `None` to let serde decide.
pub(super) fn parse(body: &[u8], decoder: Decoder<'_>) -> Option<Rows> {
    let mut p = Parser { bytes: body, at: 0 };
    let mut rows = Rows::new(decoder.fields.len());
    p.expect(b'{')?;
    if p.peek_key() == Some(b"instances".as_slice()) {
        p.key()?;
        p.expect(b'[')?;
        loop {
            if rows.len() == decoder.max_batch {
                return None;
            }
            p.expect(b'{')?;
            p.application(decoder, &mut rows)?;
            if !p.eat(b',') {
                p.expect(b']')?;
                break;
            }
        }
        p.expect(b'}')?;
    } else {
        p.application(decoder, &mut rows)?;
    }
    p.skip_ws();
    (p.at == body.len()).then_some(rows)
}

/// How many bytes of `text` precede its first `"`, `\\` or control
/// character (all of it when there is none). Eight bytes are looked at a
/// time: the byte-at-a-time loop was the parser's largest cost.
fn string_length(text: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// The high bit of each byte of `x` below `n` (≤ 0x80); exact up to the
    /// first such byte, which is all the caller looks at.
    fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS
    }
    let mut done = 0;
    while let Some(chunk) = text.get(done..done + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let stop =
            below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1) | below(word, 0x20);
        if stop != 0 {
            return done + stop.trailing_zeros() as usize / 8;
        }
        done += 8;
    }
    let rest = &text[done..];
    done + rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(rest.len())
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then takes `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    /// The bytes of a string without escapes or control characters; the
    /// opening quote is next (after whitespace).
    fn string_bytes(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        let end = start + string_length(self.bytes.get(start..)?);
        if self.bytes.get(end) != Some(&b'"') {
            return None; // an escape, a control character, or no closing quote
        }
        self.at = end + 1;
        Some(&self.bytes[start..end])
    }

    /// The next key, without taking it, if a string is next.
    fn peek_key(&mut self) -> Option<&'a [u8]> {
        let at = self.at;
        let key = self.string_bytes();
        self.at = at;
        key
    }

    /// A key (compared as bytes) and its colon.
    fn key(&mut self) -> Option<&'a [u8]> {
        let key = self.string_bytes()?;
        self.expect(b':')?;
        Some(key)
    }

    /// The members of an application object whose `{` was taken, through
    /// its `}`, as a new row of `rows`.
    fn application(&mut self, decoder: Decoder<'_>, rows: &mut Rows) -> Option<()> {
        let fields = decoder.fields;
        let r = rows.len();
        rows.push_missing();
        // Features seen so far (a schema has at most 64).
        let mut seen = 0u64;
        if !self.eat(b'}') {
            loop {
                let key = self.key()?;
                match fields.index(key) {
                    Some(i) => {
                        let bit = 1u64 << i;
                        if seen & bit != 0 {
                            return None;
                        }
                        seen |= bit;
                        let value = self.value(decoder, i, rows)?;
                        rows.row_mut(r)[i] = value;
                    }
                    None if decoder.ignored(key) => self.skip_value()?,
                    None => return None,
                }
                if !self.eat(b',') {
                    self.expect(b'}')?;
                    break;
                }
            }
        }
        (fields.required_mask() & !seen == 0).then_some(())
    }

    /// The value of feature `i`, valid for it.
    fn value(&mut self, decoder: Decoder<'_>, i: usize, rows: &mut Rows) -> Option<Value> {
        self.skip_ws();
        match *self.bytes.get(self.at)? {
            b'"' => {
                let text = std::str::from_utf8(self.string_bytes()?).ok()?;
                decoder.fields.text(i, text, rows).ok()
            }
            b'n' => self.null().then_some(Value::Missing),
            b'0'..=b'9' | b'-' if decoder.fields.feature(i).is_number() => {
                let v = self.number()?;
                decoder.fields.number(i, v).ok()
            }
            _ => None,
        }
    }

    /// Skips a `null`, a number or a string without escapes.
    fn skip_value(&mut self) -> Option<()> {
        self.skip_ws();
        match *self.bytes.get(self.at)? {
            b'"' => self.string_bytes().map(|_| ()),
            b'n' => self.null().then_some(()),
            b'0'..=b'9' | b'-' => self.number().map(|_| ()),
            _ => None,
        }
    }

    /// Takes `null`.
    fn null(&mut self) -> bool {
        let rest = self.bytes.get(self.at..self.at + 4);
        self.at += 4;
        rest == Some(b"null".as_slice())
    }

    /// A JSON number, as serde_json reads it (a negative one is the
    /// negation of its digits, as serde_json's is): digits alone
    /// are an integer (`u64`, then `as f64`); with a fraction or an exponent
    /// it is the correctly rounded `f64`: directly when the digits fit in
    /// 2^53 and the power of ten is exact (one rounding, as Clinger's fast
    /// path), else by the standard library's parser.
    fn number(&mut self) -> Option<f64> {
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
            return self.unsigned().map(|v| -v);
        }
        self.unsigned()
    }

    fn unsigned(&mut self) -> Option<f64> {
        const EXACT_POWERS: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
            1e19, 1e20, 1e21, 1e22,
        ];
        let start = self.at;
        // The digits as one integer (None once they overflow), and how many
        // of them follow the decimal point.
        let mut mantissa = Some(0u64);
        let digits = |p: &mut Self, mantissa: &mut Option<u64>| {
            let from = p.at;
            while let Some(d) = p.bytes.get(p.at).filter(|b| b.is_ascii_digit()) {
                *mantissa = mantissa.and_then(|m| m.checked_mul(10)).and_then(|m| m.checked_add(u64::from(d - b'0')));
                p.at += 1;
            }
            p.at - from
        };
        let int = digits(self, &mut mantissa);
        if int > 1 && self.bytes[start] == b'0' {
            return None; // a leading zero: not JSON
        }
        let mut float = false;
        let mut scale = 0i64;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            let fraction = digits(self, &mut mantissa);
            if fraction == 0 {
                return None;
            }
            scale = -(fraction as i64);
            float = true;
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            let negative = match self.bytes.get(self.at) {
                Some(b'-') => {
                    self.at += 1;
                    true
                }
                Some(b'+') => {
                    self.at += 1;
                    false
                }
                _ => false,
            };
            let mut exponent = Some(0u64);
            if digits(self, &mut exponent) == 0 {
                return None;
            }
            let exponent = exponent.and_then(|e| i64::try_from(e).ok()).unwrap_or(i64::MAX / 2);
            scale += if negative { -exponent } else { exponent };
            float = true;
        }
        if !float {
            // Past u64, serde reads the digits as f64; leave that to it.
            return mantissa.map(|m| m as f64);
        }
        if let Some(m) = mantissa.filter(|&m| m <= 1 << 53) {
            if let Some(&power) = EXACT_POWERS.get(scale.unsigned_abs() as usize) {
                return Some(if scale >= 0 { m as f64 * power } else { m as f64 / power });
            }
        }
        // JSON number text is ASCII, so this is valid UTF-8. serde_json
        // refuses a number out of range; Rust would read it as infinity.
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fields::{Fields, NameTable};
    use crate::model::input::LoanApplication;
    use crate::model::test_support::loan_fields;

    /// The loan fields, every one optional and any number in range, so
    /// the tests below exercise the parsing alone.
    fn lenient() -> Fields {
        let mut schema = loan_fields().schema().clone();
        for f in &mut schema.features {
            f.required = false;
            if let crate::model::schema::Kind::Number { min, max, .. } = &mut f.kind {
                (*min, *max) = (-f64::MAX, f64::MAX);
            }
        }
        Fields::new(schema).unwrap()
    }

    fn with<R>(max_batch: usize, f: impl FnOnce(Decoder<'_>, &Fields) -> R) -> R {
        let fields = lenient();
        let known = NameTable::new(["term"]);
        f(Decoder { fields: &fields, known: &known, max_batch }, &fields)
    }

    /// What the fast parser gives for `body`, as loan applications.
    fn fast(body: &str, max_batch: usize) -> Option<Vec<LoanApplication>> {
        with(max_batch, |d, fields| {
            parse(body.as_bytes(), d).map(|rows| rows.iter().map(|r| fields.loan_of(r)).collect())
        })
    }

    /// What serde's path gives for `body`.
    fn serde(body: &str, max_batch: usize) -> Option<Vec<LoanApplication>> {
        with(max_batch, |d, fields| {
            super::super::parse_with_serde(body.as_bytes(), d)
                .and_then(|b| super::super::validate(b, fields))
                .ok()
                .map(|rows| rows.iter().map(|r| fields.loan_of(r)).collect())
        })
    }

    #[test]
    fn the_common_shapes_parse_as_serde_parses_them() {
        for body in [
            r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"car","grade":"B","annual_inc":52000.0,"revol_util":0.2,"emp_length":"9 years","dti":14.4,"delinq_2yrs":0,"home_ownership":"RENT"}"#,
            r#" { "dti" : 1e2 , "grade" : null, "loan_amnt": "12000", "purpose": "débt" } "#,
            r#"{}"#,
            r#"{"loan_amnt":-1,"dti":-0,"int_rate":-1.5e-3,"term":36,"annual_inc":-18446744073709551615}"#,
            r#"{"instances":[{"dti":1.5E-3},{},{"int_rate":0.30000000000000004,"annual_inc":18446744073709551615}]}"#,
            r#"{"dti":9007199254740993.5,"loan_amnt":9007199254740993,"int_rate":123456789.123456789e-12,"annual_inc":5e22,"revol_util":1e23,"delinq_2yrs":0.1e-400}"#,
        ] {
            let fast = fast(body, 10);
            assert!(fast.is_some(), "{body}");
            assert_eq!(fast, serde(body, 10), "{body}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for body in [
            r#"{"instances":[]}"#,
            r#"{"term":[1]}"#,
            r#"{"loan_amnt":"-"}"#,
            r#"{"grade":1}"#,
            r#"{"loan_amnt":01}"#,
            r#"{"loan_amnt":1.}"#,
            r#"{"loan_amnt":true}"#,
            r#"{"loan_amnt":[1]}"#,
            r#"{"loan_amnt":1,"loan_amnt":2}"#,
            r#"{"loan":1}"#,
            r#"{"grade":"B\u0041"}"#,
            r#"{"grade":"B"} x"#,
            r#"{"grade":"B",}"#,
            r#"{"grade":nul}"#,
            r#"{"annual_inc":123456789012345678901234}"#,
            r#"{"annual_inc":1e999}"#,
            r#"{"instances":[{}],"dti":1}"#,
            r#"{"instances":[{},{},{}]}"#,
            r#"{"instances":[{}]"#,
            "",
            "[]",
        ] {
            assert_eq!(fast(body, 2), None, "{body}");
        }
        // A required field left out is for serde to name.
        let fields = loan_fields();
        let known = NameTable::default();
        let d = Decoder { fields: &fields, known: &known, max_batch: 2 };
        assert!(parse(br#"{"dti":1}"#, d).is_none());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::model::fuzz::config())]

            /// The word-at-a-time scan stops where a byte-at-a-time one
            /// does, whatever the bytes (quotes, backslashes, control and
            /// non-ASCII bytes, at any offset).
            #[test]
            fn strings_end_where_a_byte_scan_ends(
                text in proptest::collection::vec(prop_oneof![
                    40 => 0x20u8..0x7f, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20, 1 => 0x7fu8..=0xff,
                ], 0..40),
            ) {
                let bytewise = text.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(text.len());
                prop_assert_eq!(string_length(&text), bytewise);
            }

            /// Any spelling of a non-negative number reads as serde reads it.
            #[test]
            fn numbers_read_as_serde_reads_them(
                int in "(0|[1-9][0-9]{0,24})",
                fraction in proptest::option::of("[0-9]{1,24}"),
                exponent in proptest::option::of(("[eE]", "[+-]?", "[0-9]{1,3}")),
                float in 0.0..1e300f64,
            ) {
                let mut text = int;
                if let Some(f) = fraction {
                    text += &format!(".{f}");
                }
                if let Some((e, sign, digits)) = exponent {
                    text += &format!("{e}{sign}{digits}");
                }
                for number in [text, float.to_string(), format!("{float:e}"), serde_json::to_string(&float).unwrap()] {
                    for body in [format!(r#"{{"dti":{number}}}"#), format!(r#"{{"dti":-{number}}}"#)] {
                        if let Some(fast) = fast(&body, 1) {
                            prop_assert_eq!(Some(fast), serde(&body, 1), "{}", number);
                        }
                    }
                }
            }
        }
    }
}
