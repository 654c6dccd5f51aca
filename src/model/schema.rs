//! What a client may send to one model version, as `GET /v1/models/{name}`
//! shows it under each loaded version's `inputs`: every feature with its
//! kind, the value used when it is missing, and for numbers the accepted
//! range and unit (from [`super::field_rules`]), for categories the ones the
//! model was trained on (from the [`Preprocessor`]). The web form fills its
//! selects and help text from this, so it follows the served model.

use super::field_rules::NUMERIC_RULES;
use super::preprocess::Preprocessor;
use serde::Serialize;

/// One feature of the request, as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// A number in `0 ..= max`; `null` or absent is imputed with `imputed_with`
    /// (the training median).
    Number {
        name: String,
        max: f64,
        /// How the value is expressed when that is easy to get wrong
        /// (`fraction` for rates sent as 0.1356, `percent` for 14.39).
        #[serde(skip_serializing_if = "Option::is_none")]
        unit: Option<&'static str>,
        imputed_with: f64,
    },
    /// One of `categories` (those seen in training; any other value is
    /// accepted and encodes as unseen); `null` or absent is imputed with the
    /// `imputed_with` category.
    Category { name: String, categories: Vec<String>, imputed_with: String },
}

/// The inputs of a model version with this preprocessing, in the order of
/// [`super::input::FEATURES`]. The category the model imputes for a missing
/// value is not listed as a choice: a client sends `null` for it.
pub fn inputs(pre: &Preprocessor) -> Vec<Input> {
    let numbers = pre.numeric.iter().map(|f| {
        let rule = NUMERIC_RULES.iter().find(|r| r.feature == f.name);
        Input::Number {
            name: f.name.clone(),
            max: rule.map_or(f64::MAX, |r| r.max),
            unit: unit_of(&f.name),
            imputed_with: f.median,
        }
    });
    let categories = pre.categorical.iter().map(|f| Input::Category {
        name: f.name.clone(),
        categories: f.categories.iter().filter(|c| **c != pre.missing_category).cloned().collect(),
        imputed_with: pre.missing_category.clone(),
    });
    numbers.chain(categories).collect()
}

/// The unit word of a numeric feature whose scale is easy to get wrong.
fn unit_of(feature: &str) -> Option<&'static str> {
    match feature {
        "int_rate" | "revol_util" => Some("fraction"),
        "dti" => Some("percent"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::FEATURES;
    use crate::model::test_support::tiny_payload;

    #[test]
    fn every_feature_is_listed_in_order_with_its_rule_and_imputed_value() {
        let pre = tiny_payload().preprocessor;
        let inputs = inputs(&pre);
        let names: Vec<&str> = inputs
            .iter()
            .map(|i| match i {
                Input::Number { name, .. } | Input::Category { name, .. } => name.as_str(),
            })
            .collect();
        assert_eq!(names, FEATURES.to_vec());
        let json = serde_json::to_value(&inputs).unwrap();
        assert_eq!(json[1]["type"], "number");
        assert_eq!(json[1]["name"], "int_rate");
        assert_eq!(json[1]["max"], 1.0);
        assert_eq!(json[1]["unit"], "fraction");
        assert_eq!(json[1]["imputed_with"], pre.numeric[1].median);
        assert!(json[0].get("unit").is_none(), "loan_amnt is plain dollars: {}", json[0]);
        assert_eq!(json[4]["unit"], "percent");
    }

    #[test]
    fn categories_are_the_trained_ones_without_the_missing_marker() {
        let mut pre = tiny_payload().preprocessor;
        pre.categorical[1].categories = vec!["A".into(), "B".into(), "missing".into()];
        let json = serde_json::to_value(inputs(&pre)).unwrap();
        let grade = &json[7];
        assert_eq!(grade["type"], "category");
        assert_eq!(grade["name"], "grade");
        assert_eq!(grade["categories"], serde_json::json!(["A", "B"]));
        assert_eq!(grade["imputed_with"], "missing");
    }
}
