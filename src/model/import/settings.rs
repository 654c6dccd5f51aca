//! `model.toml`: what an imported model file cannot say for itself. The
//! decision (a threshold, or costs it is derived from, and bands), each
//! feature's unit, range, display name, help and whether a request may
//! omit it, and the model file's SHA-256, which makes a partial copy
//! `incomplete` whatever the format. Every key is optional; unknown keys
//! are refused, so a typo never silently changes a decision.

use super::super::format::{Bands, DecisionCosts, DecisionRule, LoadError};
use super::super::schema::{Feature, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The file name beside an imported model.
pub const SETTINGS_FILE_NAME: &str = "model.toml";

/// The threshold an imported model decides with when `model.toml` gives
/// neither a threshold nor costs: the libraries' own `predict` cut.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// A parsed `model.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// SHA-256 (hex) of the model file's bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default)]
    pub decision: DecisionSettings,
    /// Per feature, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureSettings>,
    /// The training population's bins, for drift monitoring
    /// (`riskserve import --reference` writes them; docs/drift.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::model::reference::Reference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionSettings {
    pub threshold: Option<f64>,
    /// Costs of a missed late payer and of a refused good one; without a
    /// threshold, the cost-minimising one for a calibrated probability,
    /// `false_positive / (false_positive + false_negative)`.
    pub costs: Option<DecisionCosts>,
    pub bands: Option<Bands>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSettings {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub unit: Option<String>,
    pub label: Option<String>,
    pub help: Option<String>,
    pub required: Option<bool>,
}

impl Settings {
    /// Parses `model.toml`'s bytes.
    pub fn parse(bytes: &[u8]) -> Result<Settings, LoadError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| LoadError::Invalid(format!("{SETTINGS_FILE_NAME} is not UTF-8")))?;
        toml::from_str(text).map_err(|e| LoadError::Invalid(format!("{SETTINGS_FILE_NAME}: {}", e.message())))
    }

    /// Checks the model file's bytes against `sha256`, when given: a
    /// mismatch is a partial or different copy, `incomplete`.
    pub fn verify(&self, digest: &str) -> Result<(), LoadError> {
        match &self.sha256 {
            Some(want) if !want.eq_ignore_ascii_case(digest) => Err(LoadError::Incomplete(format!(
                "the model file's SHA-256 is {digest}, {SETTINGS_FILE_NAME} says {want} (a partial or different copy)"
            ))),
            _ => Ok(()),
        }
    }

    /// The decision rule.
    pub fn decision(&self) -> DecisionRule {
        let d = &self.decision;
        let (threshold, strategy) = match (d.threshold, &d.costs) {
            (Some(t), _) => (t, "fixed"),
            (None, Some(c)) => {
                (c.false_positive / (c.false_positive + c.false_negative), "min_expected_cost_calibrated")
            }
            (None, None) => (DEFAULT_THRESHOLD, "default"),
        };
        DecisionRule {
            threshold,
            strategy: strategy.into(),
            costs: d.costs,
            expected_cost_per_1000: None,
            bands: d.bands.clone(),
        }
    }

    /// Applies the per-feature settings to the features the model file
    /// declares; a setting for a feature the file does not have is refused.
    pub fn apply(&self, features: &mut [Feature]) -> Result<(), LoadError> {
        let invalid = |e: String| LoadError::Invalid(format!("{SETTINGS_FILE_NAME}: {e}"));
        for (name, s) in &self.features {
            let Some(f) = features.iter_mut().find(|f| &f.name == name) else {
                return Err(invalid(format!("[features.{name}]: the model has no feature `{name}`")));
            };
            if let Some(r) = s.required {
                f.required = r;
            }
            f.label = s.label.clone().or(f.label.take());
            f.help = s.help.clone().or(f.help.take());
            match &mut f.kind {
                Kind::Number { min, max, unit, .. } => {
                    *min = s.min.unwrap_or(*min);
                    *max = s.max.unwrap_or(*max);
                    *unit = s.unit.clone().or(unit.take());
                }
                Kind::Category { .. } if s.min.is_some() || s.max.is_some() || s.unit.is_some() => {
                    return Err(invalid(format!("[features.{name}]: a category feature has no min, max or unit")));
                }
                Kind::Category { .. } => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_apply_and_refuse_typos() {
        let s = Settings::parse(
            br#"
sha256 = "AB"
[decision]
costs = { false_negative = 9.0, false_positive = 1.0 }
[features.int_rate]
unit = "fraction"
max = 1.0
required = false
"#,
        )
        .unwrap();
        assert_eq!(s.decision().threshold, 0.1);
        assert!(s.verify("ab").is_ok());
        assert_eq!(s.verify("cd").unwrap_err().kind(), "incomplete");
        let mut features = vec![Feature::number("int_rate", f64::MIN, f64::MAX, None, None)];
        s.apply(&mut features).unwrap();
        assert!(!features[0].required);
        assert!(matches!(features[0].kind, Kind::Number { max: 1.0, .. }));
        let err = Settings::parse(b"[decision]\nthreshhold = 0.2\n").unwrap_err().to_string();
        assert!(err.contains("threshhold"), "{err}");
        let stray = Settings::parse(b"[features.nope]\nunit = \"x\"\n").unwrap();
        assert!(stray.apply(&mut features).unwrap_err().to_string().contains("no feature `nope`"));
        assert_eq!(Settings::default().decision().threshold, DEFAULT_THRESHOLD);
    }
}
