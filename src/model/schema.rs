//! What a model version takes as input: its declared features, carried by
//! the model file (format 3) and shown to clients under each version's
//! `inputs` in `GET /v1/models/{name}`, in the same JSON shape:
//!
//! ```json
//! {"name": "int_rate", "type": "number", "min": 0, "max": 1, "unit": "fraction", "imputed_with": 0.12}
//! {"name": "grade", "type": "category", "categories": ["A", "B", "missing"], "imputed_with": "missing"}
//! {"name": "term", "type": "number", "min": 0, "max": 600, "imputed_with": 36, "required": false}
//! ```
//!
//! Per feature: its name, its kind (`number` or `category`), the value used
//! when it is missing (`imputed_with`; absent means the model routes missing
//! values itself), for numbers the accepted range (inclusive) and an
//! optional unit, for categories the ones the model knows (any other is
//! accepted and encodes as unseen), whether a request may omit it
//! (`required`, default true), and optional display text for the web form
//! (`label`, `help`). Files of format 1 and 2 predate this and get the ten
//! loan fields with their documented rules ([`Schema::from_legacy`]).

use super::input::{CATEGORICAL_FEATURES, NUMERIC_RULES};
use super::limits::{bounded_seq, MAX_CATEGORIES_PER_FEATURE, MAX_SCHEMA_FEATURES};
use super::preprocess::Preprocessor;
use serde::{Deserialize, Deserializer, Serialize};

/// Longest feature name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest category, in characters (after trimming).
pub use super::field_rules::MAX_CATEGORY_LEN;

/// The features a version takes, in the order the file declares them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    #[serde(deserialize_with = "features")]
    pub features: Vec<Feature>,
}

fn features<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Feature>, D::Error> {
    bounded_seq(d, MAX_SCHEMA_FEATURES, "features in the schema", "max_schema_features")
}

fn categories<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    bounded_seq(d, MAX_CATEGORIES_PER_FEATURE, "categories in one feature", "max_categories_per_feature").map(Some)
}

/// One declared feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FeatureRepr", into = "FeatureRepr")]
pub struct Feature {
    pub name: String,
    pub kind: Kind,
    /// Whether a request must send it (`null` is always allowed and means
    /// missing). An optional feature left out is imputed, and counted.
    pub required: bool,
    /// What the web form labels it with (default: the name).
    pub label: Option<String>,
    /// Help text the web form shows under it.
    pub help: Option<String>,
}

/// A feature's kind and its rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A finite number in `min ..= max`.
    Number {
        min: f64,
        max: f64,
        /// `fraction`, `percent`, `currency`, `count`, `months`…: how the
        /// value is expressed, said in errors and by the form.
        unit: Option<String>,
        /// The value a missing one is replaced with; `None`: the model
        /// routes missing values itself.
        imputed_with: Option<f64>,
    },
    /// A string of at most [`MAX_CATEGORY_LEN`] characters.
    Category {
        /// The categories the model knows, one code each (its position).
        categories: Vec<String>,
        /// The category a missing value is taken as; `None`: the model
        /// routes missing values itself.
        imputed_with: Option<String>,
    },
}

/// The on-disk and API shape of a feature: one flat object.
#[derive(Serialize, Deserialize)]
struct FeatureRepr {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "categories")]
    categories: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    imputed_with: Option<serde_json::Value>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    help: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl TryFrom<FeatureRepr> for Feature {
    type Error = String;
    fn try_from(r: FeatureRepr) -> Result<Feature, String> {
        let name = r.name;
        let kind = match r.kind.as_str() {
            "number" => Kind::Number {
                min: r.min.unwrap_or(f64::MIN),
                max: r.max.unwrap_or(f64::MAX),
                unit: r.unit,
                imputed_with: match r.imputed_with {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => {
                        Some(v.as_f64().ok_or_else(|| format!("feature `{name}`: imputed_with must be a number"))?)
                    }
                },
            },
            "category" => Kind::Category {
                categories: r.categories.unwrap_or_default(),
                imputed_with: match r.imputed_with {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s),
                    Some(_) => return Err(format!("feature `{name}`: imputed_with must be a string")),
                },
            },
            other => {
                return Err(format!("feature `{name}` has type `{other}`; expected `number` or `category`"));
            }
        };
        Ok(Feature { name, kind, required: r.required, label: r.label, help: r.help })
    }
}

impl From<Feature> for FeatureRepr {
    fn from(f: Feature) -> FeatureRepr {
        let mut r = FeatureRepr {
            name: f.name,
            kind: String::new(),
            min: None,
            max: None,
            unit: None,
            categories: None,
            imputed_with: None,
            required: f.required,
            label: f.label,
            help: f.help,
        };
        match f.kind {
            Kind::Number { min, max, unit, imputed_with } => {
                r.kind = "number".into();
                r.min = Some(min);
                r.max = Some(max);
                r.unit = unit;
                r.imputed_with = imputed_with.map(serde_json::Value::from);
            }
            Kind::Category { categories, imputed_with } => {
                r.kind = "category".into();
                r.categories = Some(categories);
                r.imputed_with = imputed_with.map(serde_json::Value::from);
            }
        }
        r
    }
}

/// Why a schema cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema declares no features")]
    Empty,
    #[error("feature name {0:?} is empty, longer than {MAX_NAME_LEN} bytes, or has characters other than letters, digits, `_`, `-` and `.`")]
    BadName(String),
    #[error("feature `{0}` is declared twice")]
    Duplicate(String),
    #[error("feature `{0}`: its range is not finite numbers with min <= max")]
    BadRange(String),
    #[error("feature `{0}`: imputed_with is not a finite number")]
    BadImputation(String),
    #[error(
        "feature `{feature}` has {count} categories, more than the limit of {MAX_CATEGORIES_PER_FEATURE} \
         (max_categories_per_feature)"
    )]
    TooManyCategories { feature: String, count: usize },
    #[error("feature `{feature}` lists category `{category}` twice")]
    DuplicateCategory { feature: String, category: String },
    #[error("feature `{feature}`: category {category:?} is empty, padded with spaces, or longer than {MAX_CATEGORY_LEN} characters")]
    BadCategory { feature: String, category: String },
    #[error("feature `{0}`: `instances` is reserved (it names a batch)")]
    Reserved(String),
}

impl Feature {
    /// A number feature (required, no display text).
    pub fn number(name: &str, min: f64, max: f64, unit: Option<&str>, imputed_with: Option<f64>) -> Feature {
        Feature {
            name: name.into(),
            kind: Kind::Number { min, max, unit: unit.map(str::to_string), imputed_with },
            required: true,
            label: None,
            help: None,
        }
    }

    /// A category feature (required, no display text).
    pub fn category(name: &str, categories: Vec<String>, imputed_with: Option<&str>) -> Feature {
        Feature {
            name: name.into(),
            kind: Kind::Category { categories, imputed_with: imputed_with.map(str::to_string) },
            required: true,
            label: None,
            help: None,
        }
    }

    pub fn is_number(&self) -> bool {
        matches!(self.kind, Kind::Number { .. })
    }

    /// The categories a category feature knows (empty for a number).
    pub fn categories(&self) -> &[String] {
        match &self.kind {
            Kind::Category { categories, .. } => categories,
            Kind::Number { .. } => &[],
        }
    }
}

impl Schema {
    /// The ten loan fields of a format-1 or format-2 file, from its
    /// preprocessing (medians and categories) and the documented rules:
    /// numbers `0 ..= max` with their units, categories with `missing` for
    /// a missing value, every field required.
    pub fn from_legacy(pre: &Preprocessor) -> Schema {
        let numbers = pre.numeric.iter().map(|f| {
            let rule = NUMERIC_RULES.iter().find(|r| r.feature == f.name);
            let mut feature = Feature::number(
                &f.name,
                0.0,
                rule.map_or(f64::MAX, |r| r.max),
                rule.and_then(|r| r.unit),
                Some(f.median),
            );
            feature.help = rule.and_then(|r| r.help).map(str::to_string);
            feature
        });
        let categories = pre
            .categorical
            .iter()
            .map(|f| Feature::category(&f.name, f.categories.clone(), Some(pre.missing_category.as_str())));
        Schema { features: numbers.chain(categories).collect() }
    }

    /// The ten loan fields with their documented rules and no fitted
    /// imputations or categories (what a document shows before any model
    /// is served).
    pub fn loan() -> Schema {
        let numbers = super::input::loan_schema_rules();
        let categories = CATEGORICAL_FEATURES
            .iter()
            .map(|name| Feature::category(name, Vec::new(), Some(super::input::MISSING_CATEGORY)));
        Schema { features: numbers.into_iter().chain(categories).collect() }
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }

    /// Checks names, ranges, imputations and categories.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.features.is_empty() {
            return Err(SchemaError::Empty);
        }
        let mut names: Vec<&str> = Vec::with_capacity(self.features.len());
        for f in &self.features {
            let name = f.name.as_str();
            let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
                return Err(SchemaError::BadName(name.chars().take(MAX_NAME_LEN + 1).collect()));
            }
            if name == "instances" {
                return Err(SchemaError::Reserved(name.into()));
            }
            if names.contains(&name) {
                return Err(SchemaError::Duplicate(name.into()));
            }
            names.push(name);
            match &f.kind {
                Kind::Number { min, max, imputed_with, .. } => {
                    if !(min.is_finite() && max.is_finite() && min <= max) {
                        return Err(SchemaError::BadRange(name.into()));
                    }
                    if imputed_with.is_some_and(|v| !v.is_finite()) {
                        return Err(SchemaError::BadImputation(name.into()));
                    }
                }
                Kind::Category { categories, .. } => {
                    if categories.len() > MAX_CATEGORIES_PER_FEATURE {
                        return Err(SchemaError::TooManyCategories { feature: name.into(), count: categories.len() });
                    }
                    for c in categories {
                        if c.is_empty() || c.trim() != c || c.chars().count() > MAX_CATEGORY_LEN {
                            return Err(SchemaError::BadCategory { feature: name.into(), category: c.clone() });
                        }
                    }
                    let mut seen: Vec<&str> = categories.iter().map(String::as_str).collect();
                    seen.sort_unstable();
                    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
                        return Err(SchemaError::DuplicateCategory { feature: name.into(), category: w[0].into() });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The schema as clients see it: the same shape, with the category a
/// missing value is imputed with left out of the choices (a client sends
/// `null` for it).
pub fn inputs(schema: &Schema) -> Vec<Feature> {
    schema
        .features
        .iter()
        .map(|f| match &f.kind {
            Kind::Category { categories, imputed_with } => Feature {
                kind: Kind::Category {
                    categories: categories.iter().filter(|c| Some(*c) != imputed_with.as_ref()).cloned().collect(),
                    imputed_with: imputed_with.clone(),
                },
                ..f.clone()
            },
            Kind::Number { .. } => f.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::FEATURES;
    use crate::model::test_support::tiny_schema;

    #[test]
    fn the_legacy_schema_is_the_ten_fields_with_their_rules_and_imputed_values() {
        let schema = tiny_schema();
        schema.validate().unwrap();
        assert_eq!(schema.names().collect::<Vec<_>>(), FEATURES.to_vec());
        let json = serde_json::to_value(inputs(&schema)).unwrap();
        assert_eq!(json[1]["type"], "number");
        assert_eq!(json[1]["name"], "int_rate");
        assert_eq!(json[1]["min"], 0.0);
        assert_eq!(json[1]["max"], 1.0);
        assert_eq!(json[1]["unit"], "fraction");
        assert_eq!(json[1]["imputed_with"], 0.1);
        assert!(json[0].get("unit").is_none(), "loan_amnt is plain dollars: {}", json[0]);
        assert!(json[0].get("required").is_none(), "required is the default: {}", json[0]);
        assert_eq!(json[4]["unit"], "percent");
        let grade = &json[7];
        assert_eq!(grade["type"], "category");
        assert_eq!(grade["categories"], serde_json::json!(["A", "B"]), "without the imputed category");
        assert_eq!(grade["imputed_with"], "missing");
    }

    #[test]
    fn features_round_trip_and_bad_ones_are_named() {
        let mut term = Feature::number("term", 0.0, 600.0, Some("months"), Some(36.0));
        term.required = false;
        term.help = Some("Length of the loan".into());
        let schema =
            Schema { features: vec![term, Feature::category("channel", vec!["web".into(), "branch".into()], None)] };
        schema.validate().unwrap();
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains(r#""required":false"#), "{text}");
        assert_eq!(serde_json::from_str::<Schema>(&text).unwrap(), schema);

        let err = serde_json::from_str::<Schema>(r#"{"features":[{"name":"x","type":"text"}]}"#).unwrap_err();
        assert!(err.to_string().contains("expected `number` or `category`"), "{err}");
        let bad = |f: Feature| Schema { features: vec![f] }.validate().unwrap_err().to_string();
        assert!(bad(Feature::number("a b", 0.0, 1.0, None, None)).contains("is empty, longer"));
        assert!(bad(Feature::number("x", 2.0, 1.0, None, None)).contains("range"));
        assert!(bad(Feature::number("x", 0.0, 1.0, None, Some(f64::NAN))).contains("imputed_with"));
        assert!(bad(Feature::category("c", vec!["a".into(), "a".into()], None)).contains("twice"));
        assert!(bad(Feature::category("c", vec![" a".into()], None)).contains("padded"));
        assert!(bad(Feature::number("instances", 0.0, 1.0, None, None)).contains("reserved"));
        let two = Schema { features: vec![Feature::number("x", 0.0, 1.0, None, None); 2] };
        assert!(two.validate().unwrap_err().to_string().contains("declared twice"));
    }
}
