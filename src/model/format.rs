//! Model file format v3 (reads v1 and v2): one self-describing JSON file per version at
//! `models/<model-name>/<version>/model.json` (documented in
//! `docs/model-format.md`).
//!
//! ```text
//! {"format":"riskserve-model","format_version":1,
//!  "payload_sha256":"<hex SHA-256 of the payload's exact bytes>",
//!  "payload":{...model name, version, schema, estimator, threshold, training, metrics...}}
//! ```
//!
//! Loading never executes code: the file is plain data, parsed by serde into
//! fixed types. Files above a size limit are rejected before they are read.
//! The digest covers the payload bytes exactly as they are on disk, so a
//! truncated, half-copied or bit-flipped file is recognised and never loaded.

use super::calibration::Calibration;
use super::estimator::Estimator;
use super::limits::MAX_HYPERPARAMETERS_BYTES;
use super::preprocess::Preprocessor;
use super::reference::Reference;
use super::schema::{Feature, Schema};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Value of the `format` field.
pub const FORMAT_NAME: &str = "riskserve-model";
/// The format version this build writes. Version 2 added the optional
/// `calibration`, decision costs and bands, and tree node counts; version 3
/// a declared `schema` (each feature's name, kind, rules, imputation and
/// whether it is required) in place of the ten fixed loan fields. Files of
/// versions 1 and 2 still load, with the ten loan fields.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Default upper bound on a model file's size.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 256 * 1024 * 1024;

/// How the decision threshold was chosen and its value: `decision` is
/// `high_risk` when `probability_late >= threshold`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionRule {
    pub threshold: f64,
    /// e.g. `youden_j_out_of_fold`, `min_expected_cost_out_of_fold` or `fixed`.
    pub strategy: String,
    /// The costs the threshold was chosen for (`min_expected_cost_out_of_fold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<DecisionCosts>,
    /// Expected cost per 1,000 applications at this threshold, on the
    /// out-of-fold predictions (when costs are recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_cost_per_1000: Option<f64>,
    /// Optional decision bands (e.g. approve / review / decline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<Bands>,
}

/// Money lost per wrong decision: approving a loan that pays late
/// (`false_negative`) and declining one that would have paid on time
/// (`false_positive`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecisionCosts {
    pub false_negative: f64,
    pub false_positive: f64,
}

/// Most decision bands a model may configure.
pub const MAX_BANDS: usize = 8;

/// Decision bands over `probability_late`: band `names[k]` holds
/// probabilities in `[cutoffs[k-1], cutoffs[k])` (the first from 0, the last
/// up to 1), so `cutoffs` has one entry fewer than `names`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    pub names: Vec<String>,
    pub cutoffs: Vec<f64>,
}

impl Bands {
    /// Checks the bands: 2..=8 non-empty names of at most 32 characters,
    /// cutoffs strictly increasing inside (0, 1).
    pub fn validate(&self) -> Result<(), String> {
        let n = self.names.len();
        if !(2..=MAX_BANDS).contains(&n) || self.cutoffs.len() + 1 != n {
            return Err(format!(
                "decision bands: need 2 to {MAX_BANDS} names and one cutoff fewer (found {n} names, {} cutoffs)",
                self.cutoffs.len()
            ));
        }
        if self.names.iter().any(|b| b.is_empty() || b.chars().count() > 32) {
            return Err("decision bands: names must be 1 to 32 characters".into());
        }
        let inside = self.cutoffs.iter().all(|c| *c > 0.0 && *c < 1.0);
        if !inside || self.cutoffs.windows(2).any(|w| w[0] >= w[1]) {
            return Err("decision bands: cutoffs must increase strictly inside (0, 1)".into());
        }
        Ok(())
    }

    /// The band of a probability.
    pub fn band(&self, p: f64) -> &str {
        let k = self.cutoffs.partition_point(|&c| c <= p);
        self.names.get(k).map_or("", String::as_str)
    }
}

/// Fingerprint of the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// File name of the CSV (not its full path).
    pub source: String,
    pub rows: u64,
    pub positives: u64,
    /// SHA-256 of the CSV file's bytes, hex.
    pub sha256: String,
}

/// Mean and population standard deviation over cross-validation folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

/// Cross-validated metrics recorded at training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationMetrics {
    /// e.g. `stratified_5_fold`.
    pub method: String,
    pub folds: u32,
    pub roc_auc: MeanStd,
    pub pr_auc: MeanStd,
    pub brier: MeanStd,
    /// Brier score of always predicting the training base rate, for context.
    pub brier_base_rate: f64,
    /// Calibration of the out-of-fold probabilities before and after the
    /// file's calibration (format v2; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationSummary>,
}

/// Calibration measured on out-of-fold predictions at training time:
/// before = the estimator's raw probability, after = cross-fitted calibrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// `isotonic`, `platt` or `none` (neither beat the raw probability).
    pub method: String,
    pub brier_before: f64,
    pub brier_after: f64,
    pub log_loss_before: f64,
    pub log_loss_after: f64,
    /// Expected calibration error over 10 equal-count bins.
    pub ece_before: f64,
    pub ece_after: f64,
}

/// Everything a model file records besides the estimator and schema; served
/// back by `GET /v1/models/{name}` for audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Name the model was trained as (the directory name is authoritative).
    pub model_name: String,
    /// Version the model was trained as (the directory name is authoritative).
    pub model_version: u64,
    /// RFC 3339 UTC creation time.
    pub created_at: String,
    /// Version of riskserve that wrote the file.
    pub riskserve_version: String,
    /// `random_forest` or `logistic_regression`.
    pub algorithm: String,
    /// Hyper-parameters used in training, for audit and reproduction.
    pub hyperparameters: serde_json::Map<String, serde_json::Value>,
    pub decision: DecisionRule,
    pub training: TrainingData,
    pub metrics: Option<EvaluationMetrics>,
}

/// The digest-protected content of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PayloadRepr")]
pub struct ModelPayload {
    #[serde(flatten)]
    pub meta: ModelMeta,
    /// The declared inputs (format 3); a format-1 or format-2 file's
    /// preprocessing is read as the ten loan fields ([`Schema::from_legacy`]).
    pub schema: Schema,
    pub estimator: Estimator,
    /// Maps the estimator's probability to a calibrated one (format v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The training population in fixed bins, for drift monitoring
    /// (optional: a file without one loads and reports no drift).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

/// The payload as it is decoded: every field named (not `flatten`, which
/// would buffer unknown fields, whatever their size, before ignoring them),
/// and the free-form `hyperparameters` size-checked before it is parsed.
#[derive(Deserialize)]
struct PayloadRepr {
    model_name: String,
    model_version: u64,
    created_at: String,
    riskserve_version: String,
    algorithm: String,
    hyperparameters: Box<RawValue>,
    decision: DecisionRule,
    training: TrainingData,
    metrics: Option<EvaluationMetrics>,
    schema: SchemaRepr,
    estimator: Estimator,
    #[serde(default)]
    calibration: Option<Calibration>,
    #[serde(default)]
    reference: Option<Reference>,
}

impl TryFrom<PayloadRepr> for ModelPayload {
    type Error = String;
    fn try_from(r: PayloadRepr) -> Result<Self, String> {
        let size = r.hyperparameters.get().len();
        if size > MAX_HYPERPARAMETERS_BYTES {
            return Err(format!(
                "hyperparameters take {size} bytes, more than the limit of {MAX_HYPERPARAMETERS_BYTES} \
                 (max_hyperparameters_bytes)"
            ));
        }
        let hyperparameters =
            serde_json::from_str(r.hyperparameters.get()).map_err(|e| format!("hyperparameters: {e}"))?;
        Ok(ModelPayload {
            meta: ModelMeta {
                model_name: r.model_name,
                model_version: r.model_version,
                created_at: r.created_at,
                riskserve_version: r.riskserve_version,
                algorithm: r.algorithm,
                hyperparameters,
                decision: r.decision,
                training: r.training,
                metrics: r.metrics,
            },
            schema: r.schema.into_schema()?,
            estimator: r.estimator,
            calibration: r.calibration,
            reference: r.reference,
        })
    }
}

/// A file's `schema` as decoded: declared features (format 3), or the
/// legacy preprocessing (formats 1 and 2), told apart by their fields.
#[derive(Deserialize)]
struct SchemaRepr {
    #[serde(default, deserialize_with = "declared")]
    features: Option<Vec<Feature>>,
    #[serde(default, deserialize_with = "legacy_part")]
    numeric: Option<Vec<super::preprocess::NumericFeature>>,
    #[serde(default, deserialize_with = "legacy_part")]
    categorical: Option<Vec<super::preprocess::CategoricalFeature>>,
    #[serde(default)]
    missing_category: Option<String>,
}

fn declared<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Feature>>, D::Error> {
    use super::limits::{bounded_seq, MAX_SCHEMA_FEATURES};
    bounded_seq(d, MAX_SCHEMA_FEATURES, "features in the schema", "max_schema_features").map(Some)
}

fn legacy_part<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    use super::limits::{bounded_seq, MAX_SCHEMA_FEATURES};
    bounded_seq(d, MAX_SCHEMA_FEATURES, "features of one kind", "max_schema_features").map(Some)
}

impl SchemaRepr {
    fn into_schema(self) -> Result<Schema, String> {
        match (self.features, self.numeric, self.categorical, self.missing_category) {
            (Some(features), None, None, None) => Ok(Schema { features }),
            (None, Some(numeric), Some(categorical), Some(missing_category)) => {
                Ok(Schema::from_legacy(&Preprocessor { numeric, categorical, missing_category }))
            }
            _ => Err("schema: expected `features` (format 3) or `numeric`, `categorical` and `missing_category` \
                      (formats 1 and 2)"
                .into()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    format: String,
    format_version: u32,
    payload_sha256: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// Why a model file was not loaded. `kind()` is the `result` label of
/// `riskserve_model_loads_total`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("incomplete model file (still being written or truncated): {0}")]
    Incomplete(String),
    #[error("invalid model file: {0}")]
    Invalid(String),
    /// Reading and compiling did not finish within the load deadline.
    #[error("load abandoned: {0}")]
    Timeout(String),
}

impl LoadError {
    /// Every value [`LoadError::kind`] can take.
    pub const KINDS: [&'static str; 4] = ["io_error", "incomplete", "invalid", "timeout"];

    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Io { .. } => "io_error",
            LoadError::Incomplete(_) => "incomplete",
            LoadError::Invalid(_) => "invalid",
            LoadError::Timeout(_) => "timeout",
        }
    }

    /// The reason as shown publicly (`/v1/models`, 404/503 bodies): the
    /// kind of failure in fixed words, never file contents, paths or raw
    /// OS / parser messages (a `model.json` linked to a secrets file must not
    /// echo it). The full text goes to the log, and to the operator view
    /// when it is enabled.
    pub fn public_reason(&self) -> String {
        match self {
            LoadError::Io { .. } => "cannot read the model file (I/O error; retried with backoff)".into(),
            LoadError::Incomplete(_) => "incomplete model file (still being written or truncated)".into(),
            LoadError::Timeout(_) => {
                "load abandoned: it took longer than the load timeout (retried with backoff)".into()
            }
            LoadError::Invalid(detail) => {
                // Messages made only of our words and numbers are shown whole.
                const WHOLE: [&str; 8] = [
                    "estimator",
                    "prediction cost",
                    "decision threshold",
                    "smoke prediction",
                    "file is",
                    "file grew",
                    "format_version",
                    "model.json is not a regular file",
                ];
                if WHOLE.iter().any(|prefix| detail.starts_with(prefix)) {
                    return format!("invalid model file: {detail}");
                }
                // Others may quote the file: keep only their fixed phrase.
                const KNOWN: [(&str, &str); 15] = [
                    ("payload digest mismatch", "payload digest mismatch (corrupt or partially copied)"),
                    (
                        "xgboost.json: objective",
                        "xgboost.json: the objective is not binary:logistic or binary:logitraw",
                    ),
                    ("xgboost.json: num_", "xgboost.json: a multiclass or multi-target model, not a binary classifier"),
                    ("lightgbm.txt: objective", "lightgbm.txt: the objective is not binary"),
                    ("lightgbm.txt: num_", "lightgbm.txt: a multiclass model, not a binary classifier"),
                    ("model.toml", "model.toml is not valid (see the server log)"),
                    (
                        "model.onnx: unsupported operator",
                        "model.onnx: an operator riskserve does not read (the server log names it)",
                    ),
                    (
                        "model.onnx: custom domain",
                        "model.onnx: operators of a custom domain (riskserve reads ai.onnx and ai.onnx.ml)",
                    ),
                    ("model.onnx: ONNX functions", "model.onnx: ONNX functions, which riskserve does not read"),
                    ("model.onnx", "model.onnx: a pipeline riskserve does not read (see the server log)"),
                    ("not a riskserve model file", "not a riskserve model file"),
                    ("format is", "not a riskserve model file (wrong `format`)"),
                    ("payload does not match format", "payload does not match the model format"),
                    ("schema", "the schema (the declared inputs) is not valid"),
                    ("reference", "the drift reference does not fit the schema"),
                ];
                let public = KNOWN.iter().find(|(prefix, _)| detail.starts_with(prefix)).map(|(_, public)| *public);
                let public = public.or_else(|| {
                    detail
                        .contains("outside the models directory")
                        .then_some("model.json is a symlink that resolves outside the models directory")
                });
                format!("invalid model file: {}", public.unwrap_or("see the server log"))
            }
        }
    }

    /// Failures that may heal without the file changing (permissions fixed,
    /// a mount coming back): retried with backoff rather than cached until
    /// the fingerprint changes.
    pub fn is_transient(&self) -> bool {
        matches!(self, LoadError::Io { .. } | LoadError::Timeout(_))
    }
}

/// Serialises a payload into the bytes of a model file.
pub fn encode(payload: &ModelPayload) -> Result<Vec<u8>, serde_json::Error> {
    let body = serde_json::to_string(payload)?;
    let digest = sha256_hex(body.as_bytes());
    let raw = RawValue::from_string(body)?;
    let envelope = Envelope {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        payload_sha256: digest,
        payload: &raw,
    };
    let mut out = serde_json::to_vec(&envelope)?;
    out.push(b'\n');
    Ok(out)
}

/// Parses and verifies the bytes of a model file. Returns the payload and its
/// digest. Does not check the schema or estimator (see `Model::from_payload`).
pub fn decode(bytes: &[u8]) -> Result<(ModelPayload, String), LoadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(LoadError::Incomplete("the file is empty".into()));
    }
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            LoadError::Incomplete(format!("JSON ends early after {} bytes ({e})", bytes.len()))
        } else {
            LoadError::Invalid(format!("not a riskserve model file: {e}"))
        }
    })?;
    if envelope.format != FORMAT_NAME {
        return Err(LoadError::Invalid(format!("format is `{}`, expected `{FORMAT_NAME}`", envelope.format)));
    }
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&envelope.format_version) {
        return Err(LoadError::Invalid(format!(
            "format_version {} is not supported by this build (it reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION})",
            envelope.format_version
        )));
    }
    let digest = sha256_hex(envelope.payload.get().as_bytes());
    if !digest.eq_ignore_ascii_case(&envelope.payload_sha256) {
        return Err(LoadError::Invalid(format!(
            "payload digest mismatch: file says {}, content hashes to {digest} (corrupt or partially copied)",
            envelope.payload_sha256
        )));
    }
    let payload: ModelPayload = serde_json::from_str(envelope.payload.get())
        .map_err(|e| LoadError::Invalid(format!("payload does not match format v{}: {e}", envelope.format_version)))?;
    Ok((payload, digest))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
