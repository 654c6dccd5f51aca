//! The data-science side of the binary: reading data, fitting estimators with
//! smartcore, cross-validated evaluation, synthetic data, and turning a fit
//! into a published model version ([`pipeline`]: typed plans in, outcomes out).

pub mod assess;
pub mod calibrate;
pub mod cost;
pub mod cv;
pub mod dataset;
pub mod evaluation;
pub mod fit;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod rng;
pub mod svg;
pub mod synth;

use crate::model::calibration::Calibration;
use crate::model::format::{encode, DecisionRule, EvaluationMetrics, ModelMeta, ModelPayload, TrainingData};
use crate::model::reference::Reference;
use dataset::Dataset;
use fit::{Fitted, TrainOptions};

/// What a model file is built from, named rather than positional.
#[derive(Debug, Clone)]
pub struct PayloadParts<'a> {
    pub model_name: &'a str,
    pub version: u64,
    pub options: &'a TrainOptions,
    pub data: &'a Dataset,
    pub fitted: &'a Fitted,
    pub decision: DecisionRule,
    /// Cross-validated metrics, if the fit was evaluated.
    pub metrics: Option<EvaluationMetrics>,
    /// The calibration fitted on out-of-fold predictions, if any.
    pub calibration: Option<Calibration>,
    /// The training population's bins, for drift monitoring.
    pub reference: Option<Reference>,
}

/// Builds the payload of a model file from a fit and its evaluation.
pub fn build_payload(parts: PayloadParts<'_>) -> ModelPayload {
    let PayloadParts { model_name, version, options, data, fitted, decision, metrics, calibration, reference } = parts;
    let created_at =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    ModelPayload {
        meta: ModelMeta {
            model_name: model_name.to_string(),
            model_version: version,
            created_at,
            riskserve_version: env!("CARGO_PKG_VERSION").to_string(),
            algorithm: options.algorithm.name().to_string(),
            hyperparameters: options.hyperparameters(),
            decision,
            training: TrainingData {
                source: data.source.clone(),
                rows: data.labels.len() as u64,
                positives: data.positives() as u64,
                sha256: data.sha256.clone(),
            },
            metrics,
        },
        schema: fitted.schema.clone(),
        estimator: fitted.estimator.clone(),
        calibration,
        reference,
    }
}

/// Encodes a payload, mapping serialisation errors to I/O errors for the publisher.
pub fn encode_io(payload: &ModelPayload) -> std::io::Result<Vec<u8>> {
    encode(payload).map_err(std::io::Error::other)
}
