//! The prediction body read through serde's visitors: every body the fast
//! parser gives up on, with every error message. Keys are looked up with
//! the answering version's tables ([`Decoder`]); values are kept raw per
//! feature ([`RawApplication`]), so [`validate`] can name each problem with
//! its place (`instances[2].loan_amnt`). A batch over the limit is refused
//! while it is read.

use super::{element, Decoder};
use crate::http::error::{ApiError, FieldProblem};
use crate::model::fields::Fields;
use crate::model::row::{Rows, Value};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// A JSON value as far as a field cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Number(f64),
    Text(String),
    Bool,
    Array,
    Object,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool)
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// A body key: a feature (by position in the schema), `instances`, a
/// field another version declares, or anything else.
enum Key {
    Field(usize),
    Instances,
    Ignored,
    Unknown(String),
}

/// Reads a key with the decoder's tables.
struct KeySeed<'a>(Decoder<'a>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(if v == "instances" {
            Key::Instances
        } else if let Some(i) = self.0.fields.index(v.as_bytes()) {
            Key::Field(i)
        } else if self.0.ignored(v.as_bytes()) {
            Key::Ignored
        } else {
            Key::Unknown(v.chars().take(64).collect())
        })
    }
}

/// One application as sent, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawApplication {
    values: Vec<Option<Scalar>>,
    unknown: Vec<String>,
    duplicate: Option<usize>,
}

impl RawApplication {
    fn new(features: usize) -> RawApplication {
        RawApplication { values: vec![None; features], unknown: Vec::new(), duplicate: None }
    }

    fn set(&mut self, i: usize, v: Scalar) {
        if self.values[i].is_some() {
            self.duplicate = Some(i);
        }
        self.values[i] = Some(v);
    }
}

/// A parsed prediction body.
#[derive(Debug, Clone, PartialEq)]
pub enum PredictBody {
    Single(Box<RawApplication>),
    Batch(Vec<RawApplication>),
}

/// One application object, read with the decoder's tables.
struct ApplicationSeed<'a>(Decoder<'a>);

impl<'de> DeserializeSeed<'de> for ApplicationSeed<'_> {
    type Value = RawApplication;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawApplication, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ApplicationSeed<'_> {
    type Value = RawApplication;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an application object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawApplication, A::Error> {
        let mut app = RawApplication::new(self.0.fields.len());
        while let Some(key) = a.next_key_seed(KeySeed(self.0))? {
            match key {
                Key::Field(i) => app.set(i, a.next_value()?),
                Key::Ignored => {
                    a.next_value::<IgnoredAny>()?;
                }
                Key::Instances => {
                    a.next_value::<IgnoredAny>()?;
                    app.unknown.push("instances".into());
                }
                Key::Unknown(k) => {
                    a.next_value::<IgnoredAny>()?;
                    app.unknown.push(k);
                }
            }
        }
        Ok(app)
    }
}

/// How a body is parsed: with the batch limit, so an oversized batch is
/// refused while it is read (after at most `max_batch + 1` applications)
/// instead of after a whole 1 MiB of `{}`s has been materialised. `over`
/// records that the limit, not the syntax, stopped the parser.
struct BodySeed<'a> {
    decoder: Decoder<'a>,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = PredictBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PredictBody, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = PredictBody;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object: one application, or {\"instances\": [application, ...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<PredictBody, A::Error> {
        let mut single = RawApplication::new(self.decoder.fields.len());
        let mut any_field = false;
        let mut instances: Option<Vec<RawApplication>> = None;
        while let Some(key) = a.next_key_seed(KeySeed(self.decoder))? {
            match key {
                Key::Field(i) => {
                    any_field = true;
                    single.set(i, a.next_value()?);
                }
                Key::Ignored => {
                    any_field = true;
                    a.next_value::<IgnoredAny>()?;
                }
                Key::Instances => {
                    if instances.is_some() {
                        return Err(de::Error::custom("`instances` appears twice"));
                    }
                    instances = Some(a.next_value_seed(InstancesSeed { decoder: self.decoder, over: self.over })?);
                }
                Key::Unknown(k) => {
                    a.next_value::<IgnoredAny>()?;
                    single.unknown.push(k);
                }
            }
        }
        match instances {
            Some(_) if any_field => {
                Err(de::Error::custom("send either one application's fields or `instances`, not both"))
            }
            Some(list) => {
                if let Some(k) = single.unknown.first() {
                    return Err(de::Error::custom(format!("unknown top-level field `{k}` next to `instances`")));
                }
                Ok(PredictBody::Batch(list))
            }
            None => Ok(PredictBody::Single(Box::new(single))),
        }
    }
}

/// The `instances` array, counted as it is read.
struct InstancesSeed<'a> {
    decoder: Decoder<'a>,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for InstancesSeed<'_> {
    type Value = Vec<RawApplication>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawApplication>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InstancesSeed<'_> {
    type Value = Vec<RawApplication>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of application objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Vec<RawApplication>, A::Error> {
        let mut list = Vec::new();
        while let Some(app) = a.next_element_seed(ApplicationSeed(self.decoder))? {
            if list.len() == self.decoder.max_batch {
                self.over.set(true);
                return Err(de::Error::custom("batch over the limit"));
            }
            list.push(app);
        }
        Ok(list)
    }
}

/// A body through serde's visitors: every body, every error message.
pub(super) fn parse_with_serde(body: &[u8], decoder: Decoder<'_>) -> Result<PredictBody, ApiError> {
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = BodySeed { decoder, over: &over }.deserialize(&mut de).and_then(|b| de.end().map(|()| b));
    parsed.map_err(|e| {
        if over.get() {
            let max_batch = decoder.max_batch;
            return ApiError::invalid_fields(vec![FieldProblem {
                field: "instances".into(),
                problem: format!("has more than {max_batch} applications; the limit is {max_batch} per request"),
            }]);
        }
        let what = if e.is_syntax() || e.is_eof() { "malformed JSON" } else { "unexpected JSON shape" };
        ApiError::malformed_json(format!("{what}: {e}"))
    })
}

/// Validates a parsed body into rows, naming every invalid field.
pub(super) fn validate(body: PredictBody, fields: &Fields) -> Result<Rows, ApiError> {
    let mut problems = Vec::new();
    let mut rows = Rows::new(fields.len());
    match body {
        PredictBody::Single(raw) => validate_one(*raw, "", fields, &mut rows, &mut problems),
        PredictBody::Batch(list) => {
            if list.is_empty() {
                return Err(ApiError::invalid_fields(vec![FieldProblem {
                    field: "instances".into(),
                    problem: "must contain at least one application".into(),
                }]));
            }
            for (i, raw) in list.into_iter().enumerate() {
                validate_one(raw, &format!("instances[{i}]."), fields, &mut rows, &mut problems);
            }
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        problems.truncate(50);
        Err(ApiError::invalid_fields(problems))
    }
}

fn validate_one(raw: RawApplication, prefix: &str, fields: &Fields, rows: &mut Rows, problems: &mut Vec<FieldProblem>) {
    let mut push = |field: &str, problem: String| {
        problems.push(FieldProblem { field: format!("{prefix}{field}"), problem });
    };
    for k in raw.unknown.iter().take(5) {
        push(k, format!("unknown field; this model's fields are {}", fields.list()));
    }
    if let Some(i) = raw.duplicate {
        push(&fields.feature(i).name, "appears more than once".into());
    }
    let mut values = vec![Value::Missing; fields.len()];
    for (i, value) in raw.values.into_iter().enumerate() {
        let feature = fields.feature(i);
        let Some(value) = value else {
            if feature.required {
                push(&feature.name, "is required (send null to have a missing value imputed)".into());
            }
            continue;
        };
        match element(fields, i, value, rows) {
            Ok(v) => values[i] = v,
            Err(problem) => push(&feature.name, problem),
        }
    }
    rows.push_missing().copy_from_slice(&values);
}
