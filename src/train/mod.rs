//! The data-science side of the binary: reading data, fitting estimators with
//! smartcore, cross-validated evaluation, synthetic data, and turning a fit
//! into a published model version.

pub mod cv;
pub mod dataset;
pub mod evaluation;
pub mod fit;
pub mod progress;
pub mod rng;
pub mod synth;

use crate::model::format::{encode, DecisionRule, EvaluationMetrics, ModelMeta, ModelPayload, TrainingData};
use dataset::Dataset;
use fit::{Fitted, TrainOptions};

/// Builds the payload of a model file from a fit and its evaluation.
pub fn build_payload(
    model_name: &str,
    version: u64,
    opts: &TrainOptions,
    data: &Dataset,
    fitted: &Fitted,
    decision: DecisionRule,
    metrics: Option<EvaluationMetrics>,
) -> ModelPayload {
    let created_at =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    ModelPayload {
        meta: ModelMeta {
            model_name: model_name.to_string(),
            model_version: version,
            created_at,
            riskserve_version: env!("CARGO_PKG_VERSION").to_string(),
            algorithm: opts.algorithm.name().to_string(),
            hyperparameters: opts.hyperparameters(),
            decision,
            training: TrainingData {
                source: data.source.clone(),
                rows: data.labels.len() as u64,
                positives: data.positives() as u64,
                sha256: data.sha256.clone(),
            },
            metrics,
        },
        preprocessor: fitted.preprocessor.clone(),
        estimator: fitted.estimator.clone(),
    }
}

/// Encodes a payload, mapping serialisation errors to I/O errors for the publisher.
pub fn encode_io(payload: &ModelPayload) -> std::io::Result<Vec<u8>> {
    encode(payload).map_err(std::io::Error::other)
}
