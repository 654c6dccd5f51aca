//! Models trained elsewhere, served as they are: a version directory that
//! holds `xgboost.json` ([`xgboost`]), `lightgbm.txt` ([`lightgbm`]) or
//! `model.onnx` (a scikit-learn pipeline exported by skl2onnx, [`onnx`])
//! instead of `model.json`, optionally with a `model.toml` ([`settings`]).
//! Each reader turns the library's file into library trees and a schema
//! ([`Imported`]); [`lower`] brings the trees to riskserve's node, and the
//! result is an ordinary [`Model`] (compiled forest, decision rule,
//! explanations), checked and smoke-tested like any other. Nothing in a
//! file is ever executed.

pub mod lightgbm;
pub mod lower;
pub mod onnx;
pub mod settings;
pub mod xgboost;

use super::encoder::{Derived, Encoder, MAX_ENCODED_WIDTH};
use super::estimator::CompiledEstimator;
use super::fields::Fields;
use super::forest::{Combine, CompiledForest};
use super::format::{LoadError, ModelMeta, TrainingData};
use super::limits::ModelLimits;
use super::schema::{Feature, Schema};
use super::shap::TreeShap;
use super::Model;
use lower::{Lowering, Node};
use settings::Settings;

/// Largest category code a set split may list (bounds its bitset).
pub const MAX_CATEGORY_CODE: u32 = 1 << 16;

/// A model file riskserve reads, by its name in the version directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `model.json`, riskserve's own format.
    Riskserve,
    Xgboost,
    LightGbm,
    Onnx,
}

impl Format {
    /// Every format, in the order a version directory is searched.
    pub const ALL: [Format; 4] = [Format::Riskserve, Format::Xgboost, Format::LightGbm, Format::Onnx];

    /// The file name that selects the format.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Riskserve => "model.json",
            Format::Xgboost => "xgboost.json",
            Format::LightGbm => "lightgbm.txt",
            Format::Onnx => "model.onnx",
        }
    }

    /// The format a file name selects.
    pub fn of_file(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.file_name() == name)
    }
}

/// A version's files as a source read them: the model file (its name
/// selects the format) and, for an imported format, its `model.toml`.
#[derive(Debug, Clone)]
pub struct VersionBytes {
    pub file: &'static str,
    pub bytes: Vec<u8>,
    pub settings: Option<Vec<u8>>,
}

impl Model {
    /// Verifies, validates and compiles a version's files, whatever their
    /// format: the one entry point the loader, `validate` and `import` use.
    pub fn load(version: &VersionBytes, limits: ModelLimits) -> Result<Model, LoadError> {
        match Format::of_file(version.file) {
            Some(Format::Riskserve) => Model::from_bytes_with(&version.bytes, limits),
            Some(format) => load(format, &version.bytes, version.settings.as_deref(), limits),
            None => Err(LoadError::Invalid(format!("{} is not a model file riskserve reads", version.file))),
        }
    }
}

/// What a library's file says, before lowering.
#[derive(Debug)]
pub struct Imported {
    /// `xgboost`, `lightgbm`, `onnx_random_forest`, ...: the version's `algorithm`.
    pub algorithm: &'static str,
    pub features: Vec<Feature>,
    /// Each tree's nodes, root first (none for a linear model).
    pub trees: Vec<Vec<Node>>,
    /// What each tree's leaves are multiplied by (DART weights, 1/trees
    /// for an averaged model, else 1).
    pub tree_scales: Vec<f64>,
    pub scoring: Scoring,
    pub hyperparameters: serde_json::Map<String, serde_json::Value>,
}

/// How the trees' leaves (or a linear model's columns) become P(late).
#[derive(Debug)]
pub enum Scoring {
    /// `sigmoid(link_scale × (base_margin + the leaves' sum))`.
    Boosted { base_margin: f64, link_scale: f64 },
    /// The leaves' sum in `f32`, in tree order, is the probability (ONNX
    /// Runtime's tree ensemble, `post_transform` NONE).
    FloatSum,
    /// No trees: `sigmoid(intercept + coefficients · columns)`.
    Linear { columns: Vec<Derived>, intercept: f64, coefficients: Vec<f64> },
}

/// A number feature as an imported file declares it: any finite value,
/// missing values routed by the model (`model.toml` may narrow it).
pub fn number_feature(name: &str) -> Feature {
    Feature::number(name, f64::MIN, f64::MAX, None, None)
}

/// Reads, checks and compiles an imported model file (`format` is not
/// [`Format::Riskserve`]), with its `model.toml` when there is one.
pub fn load(format: Format, bytes: &[u8], settings: Option<&[u8]>, limits: ModelLimits) -> Result<Model, LoadError> {
    let digest = super::format::sha256_hex(bytes);
    let settings = settings.map(Settings::parse).transpose()?.unwrap_or_default();
    settings.verify(&digest)?;
    let imported = match format {
        Format::Xgboost => xgboost::read(bytes)?,
        Format::LightGbm => lightgbm::read(bytes)?,
        Format::Onnx => onnx::read(bytes)?,
        Format::Riskserve => return Err(LoadError::Invalid("model.json is not an imported format".into())),
    };
    compile(imported, &settings, digest, limits)
}

/// Lowers and compiles what a reader produced.
pub fn compile(
    imported: Imported,
    settings: &Settings,
    digest: String,
    limits: ModelLimits,
) -> Result<Model, LoadError> {
    let invalid = LoadError::Invalid;
    let Imported { algorithm, mut features, trees, tree_scales, scoring, hyperparameters } = imported;
    settings.apply(&mut features)?;
    let fields = Fields::new(Schema { features }).map_err(|e| invalid(format!("schema: {e}")))?;
    let (encoder, estimator, shap) = match scoring {
        Scoring::Linear { columns, intercept, coefficients } => {
            let encoder = checked_width(algorithm, Encoder::derived(columns, &fields))?;
            // Explanations measure deviations from the all-missing request.
            let missing = vec![super::row::Value::Missing; fields.features().len()];
            let mut reference = vec![0.0; encoder.width()];
            encoder.encode_into(super::row::Row::of(&missing), &mut reference);
            let linear = super::estimator::Estimator::LogisticRegression {
                intercept,
                coefficients,
                column_means: Some(reference),
            };
            let compiled = linear.compile(encoder.width()).map_err(|e| invalid(format!("{algorithm}: {e}")))?;
            (encoder, compiled, None)
        }
        Scoring::Boosted { base_margin, link_scale } => {
            let combine = Combine::Sum { base: base_margin };
            let (encoder, forest, shap) = compile_trees(algorithm, &trees, &tree_scales, &fields, combine)?;
            (encoder, CompiledEstimator::Boosted { forest, scale: link_scale }, shap)
        }
        Scoring::FloatSum => {
            // An ONNX tree ensemble records no training cover per node
            // (skl2onnx writes none): no exact SHAP values for it.
            let (encoder, forest, _) = compile_trees(algorithm, &trees, &tree_scales, &fields, Combine::SumF32)?;
            (encoder, CompiledEstimator::Forest(forest), None)
        }
    };
    drop(trees);
    let meta = ModelMeta {
        model_name: String::new(),
        model_version: 0,
        created_at: String::new(),
        riskserve_version: env!("CARGO_PKG_VERSION").into(),
        algorithm: algorithm.into(),
        hyperparameters,
        decision: settings.decision(),
        training: TrainingData { source: String::new(), rows: 0, positives: 0, sha256: String::new() },
        metrics: None,
    };
    if let Some(r) = &settings.reference {
        r.validate(fields.schema()).map_err(|e| invalid(format!("model.toml: reference: {e}")))?;
    }
    let mut model = Model::from_compiled(meta, fields, encoder, estimator, None, digest, limits)?;
    model.shap = shap;
    model.reference = settings.reference.clone();
    Ok(model)
}

/// Lowers library trees to riskserve's and compiles them, leaves combined
/// by `combine`; with what Tree SHAP needs of them (the libraries' covers),
/// on the score's scale (`log_odds` from the combined margin).
fn compile_trees(
    algorithm: &str,
    trees: &[Vec<Node>],
    tree_scales: &[f64],
    fields: &Fields,
    combine: Combine,
) -> Result<(Encoder, CompiledForest, Option<TreeShap>), LoadError> {
    let invalid = LoadError::Invalid;
    let mut lowering = Lowering::new();
    let (mut lowered, mut covers) = (Vec::with_capacity(trees.len()), Vec::with_capacity(trees.len()));
    for (t, (nodes, scale)) in trees.iter().zip(tree_scales).enumerate() {
        super::pacing::checkpoint();
        let (tree, cover) = lowering.tree(nodes, *scale).map_err(|e| invalid(format!("{algorithm}: tree {t}: {e}")))?;
        lowered.push(tree);
        covers.push(cover);
    }
    let encoder = checked_width(algorithm, Encoder::derived(lowering.finish(&mut lowered), fields))?;
    let forest = CompiledForest::compile_combined(&lowered, encoder.width(), combine)
        .map_err(|e| invalid(format!("{algorithm}: {e}")))?;
    let base = match combine {
        Combine::Sum { base } => base,
        _ => 0.0,
    };
    let shap = TreeShap::new(&lowered, Some(&covers), encoder.column_features(), fields.len(), 1.0, base, "log_odds");
    Ok((encoder, forest, shap))
}

/// Refuses an encoding wider than riskserve's limit.
fn checked_width(algorithm: &str, encoder: Encoder) -> Result<Encoder, LoadError> {
    let width = encoder.width();
    if width > MAX_ENCODED_WIDTH {
        return Err(LoadError::Invalid(format!(
            "{algorithm}: its splits read {width} distinct columns (numbers, and one per distinct category set), more than the limit of {MAX_ENCODED_WIDTH}"
        )));
    }
    Ok(encoder)
}
