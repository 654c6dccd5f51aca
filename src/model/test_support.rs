//! Hand-made trees and a tiny model payload for tests that need them.

use super::estimator::Estimator;
use super::fields::Fields;
use super::format::*;
use super::input::{CATEGORICAL_FEATURES, NUMERIC_FEATURES};
use super::preprocess::{CategoricalFeature, NumericFeature, Preprocessor};
use super::schema::Schema;
use super::tree::Tree;

/// x0 <= 0.5 ? 0.1 : (x1 <= 2 ? 0.4 : 0.9)
pub fn small_tree() -> Tree {
    Tree {
        feature: vec![0, -1, 1, -1, -1],
        threshold: vec![0.5, 0.0, 2.0, 0.0, 0.0],
        left: vec![1, 0, 3, 0, 0],
        right: vec![2, 0, 4, 0, 0],
        value: vec![0.0, 0.1, 0.0, 0.4, 0.9],
        samples: vec![],
    }
}

/// The ten loan fields as a format-2 file has them: medians, and grade
/// A, B or missing (the others only `missing`).
pub fn tiny_schema() -> Schema {
    let medians = [1000.0, 0.1, 50000.0, 0.5, 10.0, 0.0];
    let numeric =
        NUMERIC_FEATURES.iter().zip(medians).map(|(n, m)| NumericFeature { name: n.to_string(), median: m }).collect();
    let categorical = CATEGORICAL_FEATURES
        .iter()
        .map(|n| CategoricalFeature {
            name: n.to_string(),
            categories: if *n == "grade" {
                vec!["A".into(), "B".into(), "missing".into()]
            } else {
                vec!["missing".into()]
            },
        })
        .collect();
    Schema::from_legacy(&Preprocessor { numeric, categorical, missing_category: "missing".into() })
}

/// `model`'s prediction for a loan application.
pub fn predict_app(model: &super::Model, app: &super::input::LoanApplication) -> super::Prediction {
    let rows = model.fields.loan_rows([app]);
    model.predict(rows.row(0))
}

/// `model`'s attribution for a loan application.
pub fn attribution_app(model: &super::Model, app: &super::input::LoanApplication) -> super::explain::Attribution {
    let rows = model.fields.loan_rows([app]);
    model.attribution(rows.row(0))
}

/// [`tiny_schema`] compiled.
pub fn loan_fields() -> Fields {
    Fields::new(tiny_schema()).unwrap()
}

/// Grade A, B or missing; a one-split tree: P(late) = 0.02 unless grade=B (0.3).
pub fn tiny_payload() -> ModelPayload {
    let schema = tiny_schema();
    let fields = Fields::new(schema.clone()).unwrap();
    let names = super::encoder::Encoder::new(&fields).column_names(&fields);
    let grade_b = names.iter().position(|n| n == "grade=B").unwrap() as i32;
    let tree = Tree {
        feature: vec![grade_b, -1, -1],
        threshold: vec![0.5, 0.0, 0.0],
        left: vec![1, 0, 0],
        right: vec![2, 0, 0],
        value: vec![0.0, 0.02, 0.3],
        samples: vec![],
    };
    ModelPayload {
        meta: ModelMeta {
            model_name: "credit-risk".into(),
            model_version: 1,
            created_at: "2026-11-25T00:00:00Z".into(),
            riskserve_version: env!("CARGO_PKG_VERSION").into(),
            algorithm: "random_forest".into(),
            hyperparameters: Default::default(),
            decision: DecisionRule { threshold: 0.1, strategy: "fixed".into(), ..Default::default() },
            training: TrainingData { source: "test".into(), rows: 3, positives: 1, sha256: "0".repeat(64) },
            metrics: None,
        },
        schema,
        estimator: Estimator::RandomForest { trees: vec![tree] },
        calibration: None,
        reference: None,
    }
}
