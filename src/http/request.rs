//! Prediction request bodies: one application object, or
//! `{"instances": [ ... ]}`, decoded with the schema of the version that
//! will score them ([`Decoder`]): the request's version is resolved first.
//!
//! Two parsers give the same answers: [`fast`] reads the common shape
//! straight into [`Rows`] (keys looked up in the version's name table,
//! categories into codes, no string per value) and gives up on anything
//! else; serde's visitors then read the body into raw per-field values
//! without losing which field was what, and [`validate`] names every
//! problem.
//!
//! What is JSON-specific lives here: every required feature must be
//! present; `null` or `""` means "missing" and is imputed by the model (so
//! does leaving out an optional feature); numbers take JSON numbers (or
//! numeric strings, as CSV-minded clients send); categories take strings.
//! A field no version of the model declares is refused, so a typo is not
//! silently imputed; one another loaded version declares is accepted and
//! ignored (a client sending a newer model's fields keeps working through
//! a rollback). Batches are bounded. The rules for the values themselves
//! (ranges, lengths, messages) are the schema's ([`Fields`]), shared with
//! OIP tensors and the CSV reader.

mod fast;
mod visitor;

pub use visitor::{PredictBody, RawApplication, Scalar};

use super::error::ApiError;
use crate::model::fields::{Fields, NameTable};
use crate::model::row::{Rows, Value};
use visitor::{parse_with_serde, validate};

/// What a body is decoded with: the answering version's inputs, the names
/// other versions of the model declare (accepted and ignored), and the
/// batch limit.
#[derive(Clone, Copy)]
pub struct Decoder<'a> {
    pub fields: &'a Fields,
    pub known: &'a NameTable,
    pub max_batch: usize,
}

impl Decoder<'_> {
    /// Whether `key` is a field some other version of the model declares.
    fn ignored(&self, key: &[u8]) -> bool {
        self.known.get(key).is_some()
    }
}

/// Parses and validates a body into rows of the decoder's schema, refusing
/// a batch of more than `max_batch` applications as soon as the parser
/// reaches one too many. Syntax and shape errors are 400 with serde's
/// position; a batch over the limit is 400 naming `instances`; invalid
/// fields are 400 naming each.
pub fn decode(body: &[u8], decoder: Decoder<'_>) -> Result<Rows, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed_json(
            "request body is empty; send one application object or {\"instances\": [...]}",
        ));
    }
    match fast::parse(body, decoder) {
        Some(rows) => Ok(rows),
        None => validate(parse_with_serde(body, decoder)?, decoder.fields),
    }
}

/// [`decode`] with `fields` alone (no other version's names, a batch of up
/// to 1,000): how tools and tests read a body the way a version would.
pub fn decode_with(fields: &Fields, body: &[u8]) -> Result<Rows, ApiError> {
    let known = NameTable::default();
    decode(body, Decoder { fields, known: &known, max_batch: 1000 })
}

/// One JSON value for feature `i`: the JSON type is checked here, the value
/// by the feature's rule. Shared with OIP tensor elements.
pub(crate) fn element(fields: &Fields, i: usize, value: Scalar, rows: &mut Rows) -> Result<Value, String> {
    let number = fields.feature(i).is_number();
    match value {
        Scalar::Null => Ok(Value::Missing),
        Scalar::Number(v) if number => fields.number(i, v).map_err(|e| e.to_string()),
        Scalar::Text(s) => fields.text(i, &s, rows).map_err(|e| e.to_string()),
        other if number => Err(format!("must be a number, got {}", kind(&other))),
        other => Err(format!("must be a string, got {}", kind(&other))),
    }
}

fn kind(v: &Scalar) -> &'static str {
    match v {
        Scalar::Null => "null",
        Scalar::Number(_) => "a number",
        Scalar::Text(_) => "a string",
        Scalar::Bool => "a boolean",
        Scalar::Array => "an array",
        Scalar::Object => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::FieldProblem;
    use crate::model::input::{cat, num, LoanApplication};
    use crate::model::test_support::loan_fields;
    use hyper::StatusCode;

    const ROW: &str = r#"{"loan_amnt":5000,"int_rate":0.1356,"purpose":"debt_consolidation","grade":"C","annual_inc":52000.0,"revol_util":0.226,"emp_length":"9 years","dti":14.39,"delinq_2yrs":1,"home_ownership":"MORTGAGE"}"#;

    /// Decodes with the loan fields and a batch limit of 10, as loan
    /// applications.
    fn apps(body: &str) -> Result<Vec<LoanApplication>, ApiError> {
        decode_loans(body.as_bytes(), 10)
    }

    fn decode_loans(body: &[u8], max_batch: usize) -> Result<Vec<LoanApplication>, ApiError> {
        let fields = loan_fields();
        let known = NameTable::default();
        let rows = decode(body, Decoder { fields: &fields, known: &known, max_batch })?;
        Ok(rows.iter().map(|r| fields.loan_of(r)).collect())
    }

    /// The body through each parser, as loan applications (`None` where
    /// the fast one gives up, or serde's path refuses).
    fn both(body: &[u8], max_batch: usize) -> (Option<Vec<LoanApplication>>, Option<Vec<LoanApplication>>) {
        let fields = loan_fields();
        let known = NameTable::default();
        let decoder = Decoder { fields: &fields, known: &known, max_batch };
        let loans = |rows: Rows| rows.iter().map(|r| fields.loan_of(r)).collect();
        let fast = fast::parse(body, decoder).map(loans);
        let serde = parse_with_serde(body, decoder).and_then(|b| validate(b, &fields)).ok().map(loans);
        (fast, serde)
    }

    fn problems(body: &str) -> Vec<FieldProblem> {
        apps(body).unwrap_err().fields
    }

    #[test]
    fn a_reference_row_parses_into_the_right_slots() {
        let apps = apps(ROW).unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].numeric[num::LOAN_AMNT], Some(5000.0));
        assert_eq!(apps[0].numeric[num::DELINQ_2YRS], Some(1.0));
        assert_eq!(apps[0].categorical[cat::EMP_LENGTH].as_deref(), Some("9 years"));
        assert_eq!(apps[0].categorical[cat::HOME_OWNERSHIP].as_deref(), Some("MORTGAGE"));
    }

    #[test]
    fn nulls_and_blanks_are_missing_and_numeric_strings_are_numbers() {
        let body = ROW.replace("0.226", "null").replace("\"9 years\"", "\"\"").replace("5000", "\"5000\"");
        let app = &apps(&body).unwrap()[0];
        assert_eq!(app.numeric[num::REVOL_UTIL], None);
        assert_eq!(app.categorical[cat::EMP_LENGTH], None);
        assert_eq!(app.numeric[num::LOAN_AMNT], Some(5000.0));
    }

    #[test]
    fn each_bad_field_is_named_with_its_problem() {
        let body = ROW
            .replace("5000", "-5")
            .replace("0.1356", "\"NaN\"")
            .replace("\"C\"", "true")
            .replace("\"delinq_2yrs\":1,", "")
            .replace("14.39", "\"abc\"");
        let p = problems(&body.replace("}", ",\"loan_amount\":1}"));
        let by = |f: &str| p.iter().find(|x| x.field == f).map(|x| x.problem.clone()).unwrap_or_default();
        assert!(by("loan_amnt").contains("negative"), "{p:?}");
        assert!(by("int_rate").contains("finite"), "{p:?}");
        assert!(by("grade").contains("must be a string, got a boolean"), "{p:?}");
        assert!(by("delinq_2yrs").contains("required"), "{p:?}");
        assert!(by("dti").contains("\"abc\""), "{p:?}");
        assert!(by("loan_amount").contains("unknown field"), "{p:?}");
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn batches_name_the_instance_and_respect_the_limit() {
        let bad = ROW.replace("0.1356", "13.56");
        let body = format!("{{\"instances\":[{ROW},{bad}]}}");
        let p = problems(&body);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "instances[1].int_rate");
        assert!(p[0].problem.contains("fraction"));
        let many = format!("{{\"instances\":[{}]}}", [ROW; 11].join(","));
        assert_eq!(problems(&many)[0].field, "instances");
        assert!(problems(&many)[0].problem.contains("more than 10 applications; the limit is 10"));
        assert_eq!(apps(&format!("{{\"instances\":[{}]}}", [ROW; 10].join(","))).unwrap().len(), 10);
        assert!(problems("{\"instances\":[]}")[0].problem.contains("at least one"));
        assert_eq!(apps(&format!("{{\"instances\":[{ROW},{ROW}]}}")).unwrap().len(), 2);
    }

    #[test]
    fn an_oversized_batch_is_refused_while_parsing() {
        // About 350,000 `{}`s in 1 MiB: materialised, ~120 MB of raw
        // applications. The parser must stop at the 1,001st.
        let items = (1024 * 1024 - 20) / 3;
        let body = format!("{{\"instances\":[{}{{}}]}}", "{},".repeat(items));
        let err = decode_loans(body.as_bytes(), 1000).unwrap_err();
        assert_eq!((err.status, err.kind), (StatusCode::BAD_REQUEST, "invalid_field"));
        assert_eq!(err.fields[0].field, "instances");
        assert!(err.message.contains("the limit is 1000 per request"), "{}", err.message);
        // By construction: what follows the 1,001st element is never read, so
        // even garbage there gives the batch-limit answer, not a syntax error.
        let stops_early = format!("{{\"instances\":[{}{{}}, this is not JSON", "{},".repeat(1000));
        let err = decode_loans(stops_early.as_bytes(), 1000).unwrap_err();
        assert!(err.message.contains("the limit is 1000"), "{}", err.message);
        // ...while at the limit the whole body is read.
        let at_limit = format!("{{\"instances\":[{}{{}}, this is not JSON", "{},".repeat(999));
        assert!(decode_loans(at_limit.as_bytes(), 1000).unwrap_err().message.contains("malformed JSON"));
    }

    #[test]
    fn a_value_above_its_maximum_is_a_400_naming_the_field() {
        let body = format!("{{\"instances\":[{ROW},{}]}}", ROW.replace("5000", "1e300"));
        let err = apps(&body).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.fields.len(), 1);
        assert_eq!(err.fields[0].field, "instances[1].loan_amnt");
        assert_eq!(err.fields[0].problem, "must be at most 10000000, got 1e300");
        assert!(err.message.contains("instances[1].loan_amnt: must be at most"), "{}", err.message);

        let p = problems(&ROW.replace("0.226", "\"85\"").replace("\"C\"", &format!("{:?}", "x".repeat(101))));
        let by = |f: &str| p.iter().find(|x| x.field == f).map(|x| x.problem.clone()).unwrap_or_default();
        assert!(by("revol_util").contains("at most 10, got 85"), "{p:?}");
        assert_eq!(by("grade"), "is longer than 100 characters");
        // The maxima themselves are accepted.
        let edge = ROW.replace("5000", "10000000").replace("0.1356", "1").replace("14.39", "1000");
        assert!(apps(&edge).is_ok());
    }

    #[test]
    fn malformed_and_mis_shaped_bodies_are_clear_400s() {
        for (body, needle) in [
            ("", "empty"),
            ("{\"loan_amnt\": 5", "malformed JSON"),
            ("[1,2]", "a JSON object"),
            ("42", "a JSON object"),
            ("{\"instances\": 3}", "unexpected JSON shape"),
            (r#"{"instances": [], "grade": "A"}"#, "not both"),
        ] {
            let err = apps(body).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(needle), "{body}: {}", err.message);
        }
    }

    #[test]
    fn deeply_nested_values_are_rejected_without_overflowing_the_stack() {
        let deep = format!("{{\"grade\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let err = apps(&deep).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn no_mutation_of_a_valid_body_panics() {
        // Byte flips, truncations, duplications and insertions of JSON
        // punctuation: every one must come back as Ok or a 400, never a panic.
        let mut rng = crate::train::rng::Rng::new(7);
        let base = format!("{{\"instances\":[{ROW},{ROW}]}}").into_bytes();
        let alphabet = b"{}[]\",:0123456789-.eEnulltrfas \\\x00\xff";
        for _ in 0..20_000 {
            let mut body = base.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(body.len().max(1));
                match rng.below(4) {
                    0 => body[at] = alphabet[rng.below(alphabet.len())],
                    1 => body.truncate(at),
                    2 => body.insert(at, alphabet[rng.below(alphabet.len())]),
                    _ => {
                        let end = (at + rng.below(30)).min(body.len());
                        let piece = body[at..end].to_vec();
                        body.splice(at..at, piece);
                    }
                }
                if body.is_empty() {
                    break;
                }
            }
            if let Err(e) = decode_loans(&body, 10) {
                assert_eq!(e.status, 400, "{}", e.message);
                assert!(!e.message.is_empty());
            }
        }
    }

    /// Property tests of the request parser: any body gives applications or
    /// a 400 `ApiError`, never a panic; valid applications round-trip; the
    /// fast parser, where it answers, answers as serde does.
    mod properties {
        use super::*;
        use crate::model::fuzz::{self, apply, edits};
        use crate::model::input::{CATEGORICAL_FEATURES, NUMERIC_FEATURES};
        use crate::model::input::{FEATURES, NUMERIC_RULES};
        use proptest::prelude::*;
        use serde_json::{json, Map, Value};

        const MAX_BATCH: usize = 10;

        fn ok_or_400(body: &[u8]) -> Result<Option<Vec<LoanApplication>>, TestCaseError> {
            // Where the fast parser answers, serde gives the same answer.
            let (fast, serde) = both(body, MAX_BATCH);
            if fast.is_some() {
                prop_assert_eq!(fast, serde);
            }
            match decode_loans(body, MAX_BATCH) {
                Ok(apps) => {
                    prop_assert!((1..=MAX_BATCH).contains(&apps.len()));
                    Ok(Some(apps))
                }
                Err(e) => {
                    prop_assert_eq!(e.status, 400, "{}", e.message);
                    prop_assert!(!e.message.is_empty());
                    Ok(None)
                }
            }
        }

        /// A valid application, and one JSON spelling of it (numbers as JSON
        /// numbers or numeric strings, missing as null or blank, categories
        /// padded with whitespace).
        fn application() -> impl Strategy<Value = (LoanApplication, Map<String, Value>)> {
            let numeric = NUMERIC_RULES.map(|rule| {
                prop_oneof![
                    1 => prop_oneof![Just(json!(null)), Just(json!("")), Just(json!(" "))].prop_map(|v| (None, v)),
                    4 => (0.0..=rule.max).prop_map(|v| (Some(v), json!(v))),
                    1 => (0..=rule.max as u64).prop_map(|v| (Some(v as f64), json!(v))),
                    1 => (0.0..=rule.max).prop_map(|v| (Some(v), json!(format!(" {v} ")))),
                ]
            });
            let categorical = CATEGORICAL_FEATURES.map(|_| {
                prop_oneof![
                    1 => prop_oneof![Just(json!(null)), Just(json!("")), Just(json!("\t "))].prop_map(|v| (None, v)),
                    4 => ("[\\PC&&\\S]([\\PC]{0,98}[\\PC&&\\S])?", prop_oneof![Just(""), Just(" "), Just("\n")])
                        .prop_map(|(c, pad)| (Some(c.clone()), json!(format!("{pad}{c}{pad}")))),
                ]
            });
            (numeric, categorical).prop_map(|(numeric, categorical)| {
                let mut app = LoanApplication::default();
                let mut body = Map::new();
                for (k, (value, spelled)) in numeric.into_iter().enumerate() {
                    app.numeric[k] = value;
                    body.insert(NUMERIC_FEATURES[k].to_string(), spelled);
                }
                for (k, (value, spelled)) in categorical.into_iter().enumerate() {
                    app.categorical[k] = value;
                    body.insert(CATEGORICAL_FEATURES[k].to_string(), spelled);
                }
                (app, body)
            })
        }

        /// Any JSON value, nested a little.
        fn any_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<f64>().prop_map(|v| json!(v)),
                any::<i64>().prop_map(|v| json!(v)),
                ".{0,120}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map("[a-z_]{0,12}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// One structural change to a body: a field (or an unknown key) set to
        /// any value, or a field removed.
        fn field_edit() -> impl Strategy<Value = (String, Option<Value>)> {
            let key = prop_oneof![
                4 => proptest::sample::select(FEATURES.to_vec()).prop_map(str::to_string),
                1 => Just("instances".to_string()),
                1 => "[a-z_]{1,12}",
            ];
            (key, proptest::option::weighted(0.8, any_value()))
        }

        #[test]
        fn the_corpus_gives_what_each_file_name_says() {
            for (name, body) in fuzz::corpus("request") {
                let got = ok_or_400(&body).unwrap();
                assert_eq!(got.is_some(), name.starts_with("ok-"), "{name}");
            }
        }

        proptest! {
            #![proptest_config(fuzz::config())]

            #[test]
            fn valid_applications_round_trip(apps in proptest::collection::vec(application(), 1..=MAX_BATCH), batch in any::<bool>()) {
                let body = if batch || apps.len() > 1 {
                    json!({"instances": apps.iter().map(|(_, body)| Value::Object(body.clone())).collect::<Vec<_>>()})
                } else {
                    Value::Object(apps[0].1.clone())
                };
                let got = ok_or_400(body.to_string().as_bytes())?;
                let expected: Vec<LoanApplication> = apps.into_iter().map(|(app, _)| app).collect();
                prop_assert_eq!(got, Some(expected));
            }

            #[test]
            fn arbitrary_bytes_are_ok_or_400(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
                ok_or_400(&body)?;
            }

            #[test]
            fn byte_mutations_of_seeds_are_ok_or_400(
                seed in proptest::sample::select(fuzz::corpus("request")),
                edits in edits(),
            ) {
                ok_or_400(&apply(&seed.1, &edits))?;
            }

            #[test]
            fn field_mutations_of_valid_bodies_are_ok_or_400(
                apps in proptest::collection::vec(application(), 1..4),
                changes in proptest::collection::vec((0..4usize, field_edit()), 1..6),
            ) {
                let mut bodies: Vec<Map<String, Value>> = apps.into_iter().map(|(_, body)| body).collect();
                for (which, (key, value)) in changes {
                    let n = bodies.len();
                    let body = &mut bodies[which % n];
                    match value {
                        Some(v) => body.insert(key, v),
                        None => body.remove(&key),
                    };
                }
                let text = if bodies.len() == 1 {
                    Value::Object(bodies.remove(0)).to_string()
                } else {
                    json!({"instances": bodies}).to_string()
                };
                ok_or_400(text.as_bytes())?;
            }
        }
    }
}
