//! `riskserve import`: brings a model trained elsewhere into a repository
//! as its next version. The file's format is recognised from its content,
//! the file is loaded exactly as the server will load it (every check, the
//! smoke predictions), its SHA-256 is recorded in the version's
//! `model.toml` (with the settings given, so a partial copy is never
//! served), optionally a reference CSV is scored through it (and its
//! population's bins recorded in `model.toml`, so the version reports
//! drift), and the version is published atomically (staged, then renamed),
//! as `train` does.

use crate::model::format::{sha256_hex, DEFAULT_MAX_MODEL_BYTES};
use crate::model::import::settings::{Settings, SETTINGS_FILE_NAME};
use crate::model::import::{Format, VersionBytes};
use crate::model::limits::ModelLimits;
use crate::model::reference::Reference;
use crate::model::row::Rows;
use crate::model::{Model, Scorer};
use crate::repository::local::{read_file, Published};
use crate::repository::LocalDirectory;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What to import, and where.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub file: PathBuf,
    pub model_name: String,
    pub models_dir: PathBuf,
    /// A `model.toml` to start from (decision, feature settings); its
    /// `sha256`, if any, must match the file.
    pub settings: Option<PathBuf>,
    /// A CSV of applications to score through the imported model.
    pub reference: Option<PathBuf>,
}

/// The reference CSV scored through the imported model.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceScores {
    pub rows: usize,
    pub mean_probability: f64,
    /// Share decided `high_risk` at the version's threshold.
    pub high_risk_share: f64,
}

/// What `import` did.
#[derive(Debug)]
pub struct ImportOutcome {
    pub format: Format,
    pub published: Published,
    pub digest: String,
    pub model: Model,
    pub reference: Option<ReferenceScores>,
}

/// The format of a model file, from its content: XGBoost JSON has a
/// `learner`, a LightGBM text model starts with `tree`, riskserve's own
/// file has a `payload_sha256` (ONNX is protobuf: see [`run`]).
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    let head = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start();
    if trimmed.starts_with("tree\n") || trimmed.starts_with("tree\r\n") {
        return Some(Format::LightGbm);
    }
    if trimmed.starts_with('{') {
        if text.contains("\"learner\"") {
            return Some(Format::Xgboost);
        }
        if text.contains("\"payload_sha256\"") || text.contains("\"format\"") {
            return Some(Format::Riskserve);
        }
    }
    None
}

/// Checks, records and publishes (see the module doc).
pub fn run(plan: &ImportPlan) -> Result<ImportOutcome> {
    let shown = plan.file.display().to_string();
    let bytes = read_file(&plan.file, DEFAULT_MAX_MODEL_BYTES).with_context(|| shown.clone())?;
    // An ONNX file is protobuf, recognised by its name (`riskserve import`
    // then reads it as the server does, which refuses anything else).
    let onnx = plan.file.extension().is_some_and(|e| e == "onnx");
    let format = match sniff(&bytes).or(onnx.then_some(Format::Onnx)) {
        Some(Format::Riskserve) => {
            bail!("{shown} is a riskserve model.json already: copy its version directory, or publish it")
        }
        Some(f) => f,
        None => bail!(
            "{shown}: not a model riskserve imports (XGBoost JSON or LightGBM text from Booster.save_model, \
             or a scikit-learn pipeline exported by skl2onnx as a .onnx file)"
        ),
    };
    let digest = sha256_hex(&bytes);
    let mut settings = match &plan.settings {
        Some(path) => {
            let text = read_file(path, 1 << 20).with_context(|| path.display().to_string())?;
            Settings::parse(&text).with_context(|| path.display().to_string())?
        }
        None => Settings::default(),
    };
    settings.verify(&digest).with_context(|| shown.clone())?;
    settings.sha256 = Some(digest.clone());
    let toml = toml::to_string(&settings).context("writing model.toml")?;
    let mut version = VersionBytes { file: format.file_name(), bytes, settings: Some(toml.into_bytes()) };
    let mut model = Model::load(&version, ModelLimits::default()).with_context(|| shown.clone())?;
    let mut reference = None;
    if let Some(path) = &plan.reference {
        // The reference population's bins go into model.toml: the version
        // then reports drift against them (docs/drift.md).
        let (rows, scores) = score_reference(&model, path)?;
        settings.reference = Some(Reference::build(model.fields(), rows.view(), &scores.probabilities));
        let toml = toml::to_string(&settings).context("writing model.toml")?;
        version.settings = Some(toml.into_bytes());
        model = Model::load(&version, ModelLimits::default()).with_context(|| shown.clone())?;
        reference = Some(scores.summary);
    }
    let toml = version.settings.as_deref().unwrap_or_default();
    let files: [(&str, &[u8]); 2] = [(format.file_name(), &version.bytes), (SETTINGS_FILE_NAME, toml)];
    let published = LocalDirectory::new(&plan.models_dir)
        .publish_next_files(&plan.model_name, &files)
        .with_context(|| format!("publishing into {}", plan.models_dir.display()))?;
    Ok(ImportOutcome { format, published, digest, model, reference })
}

/// A reference CSV's scores: each row's probability, and their summary.
#[derive(Debug, Clone)]
pub struct Scored {
    pub probabilities: Vec<f64>,
    pub summary: ReferenceScores,
}

/// Scores every row of a CSV through `model`, read with its inputs by
/// [`crate::train::dataset::read_rows`] (each feature's column by name,
/// decoded as a request's values are). Returns the rows and their scores.
pub fn score_reference(model: &Model, path: &Path) -> Result<(Rows, Scored)> {
    let (rows, _) = crate::train::dataset::read_rows(path, model.fields())?;
    let mut predictions = Vec::with_capacity(rows.len());
    model.predict_many(rows.view(), &mut predictions);
    let n = predictions.len() as f64;
    let probabilities: Vec<f64> = predictions.iter().map(|p| p.probability_late).collect();
    let high = predictions.iter().filter(|p| p.decision == crate::model::Decision::HighRisk).count();
    let summary = ReferenceScores {
        rows: predictions.len(),
        mean_probability: probabilities.iter().sum::<f64>() / n,
        high_risk_share: high as f64 / n,
    };
    Ok((rows, Scored { probabilities, summary }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_from_content() {
        assert_eq!(sniff(b"tree\nversion=v4\n"), Some(Format::LightGbm));
        assert_eq!(sniff(br#"{"learner":{"attributes":{}},"version":[3,2,0]}"#), Some(Format::Xgboost));
        assert_eq!(sniff(br#"{"format":"riskserve-model","payload_sha256":"ab"}"#), Some(Format::Riskserve));
        assert_eq!(sniff(b"\x80\x04\x95 pickle"), None);
    }
}
