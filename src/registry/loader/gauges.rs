//! The gauges and series a pass keeps in step with what serves: the
//! serving and loaded-version gauges of models whose serving set or rollout
//! changed, and the series of retired versions (their own and the shadow
//! comparisons they took part in) removed.

use super::Loader;
use crate::registry::snapshot::{LoadedVersion, Snapshot};
use std::sync::Arc;

impl Loader {
    /// Records the shadow comparisons `next`'s rollouts write series for.
    pub(super) fn note_shadow_pairs(&mut self, next: &Snapshot) {
        for (name, model) in &next.models {
            let Some(r) = &model.rollout else { continue };
            let Some(shadow) = &r.shadow else { continue };
            let v = shadow.version.version;
            self.shadow_pairs.insert((name.clone(), v, r.stable.version));
            if let Some(c) = &r.canary {
                self.shadow_pairs.insert((name.clone(), v, c.version.version));
            }
        }
    }

    /// Removes the shadow series of every version `current` serves and `next` does not.
    pub(super) fn forget_retired_shadows(&mut self, current: &Snapshot, next: &Snapshot) {
        for (name, model) in &current.models {
            for version in model.versions.keys() {
                if !next.models.get(name).is_some_and(|n| n.versions.contains_key(version)) {
                    self.forget_shadow_series(name, *version);
                }
            }
        }
    }

    /// Removes the shadow series `version` of `model` is part of (as the
    /// shadow or as its baseline): it retired.
    pub(super) fn forget_shadow_series(&mut self, model: &str, version: u64) {
        let m = &self.registry.metrics.rollout;
        self.shadow_pairs.retain(|(name, shadow, baseline)| {
            if name != model || (*shadow != version && *baseline != version) {
                return true;
            }
            let (s, b) = (shadow.to_string(), baseline.to_string());
            for agreement in ["agree", "disagree"] {
                let _ = m.shadow_predictions_total.remove_label_values(&[name, &s, &b, agreement]);
            }
            let _ = m.shadow_probability_delta.remove_label_values(&[name, &s, &b]);
            let _ = m.shadow_latency_ratio.remove_label_values(&[name, &s, &b]);
            false
        });
        let _ = m.shadow_dropped_total.remove_label_values(&[model, &version.to_string()]);
    }

    pub(super) fn update_gauges(&self, current: &Snapshot, next: &Snapshot, swapped: &[String]) {
        let m = &self.registry.metrics;
        for name in swapped {
            let before: Vec<Arc<LoadedVersion>> =
                current.models.get(name).map(|m| m.versions.values().cloned().collect()).unwrap_or_default();
            let after = next.models.get(name);
            for retired in before {
                if !after.is_some_and(|n| n.versions.contains_key(&retired.version)) {
                    m.forget_version(name, retired.version, retired.scorer.fields().schema().names());
                }
            }
            let Some(model) = after else {
                let _ = m.model_versions_loaded.remove_label_values(&[name]);
                continue;
            };
            let default = model.default_version().map(|v| v.version);
            for version in model.versions.keys() {
                let serving = i64::from(Some(*version) == default);
                m.model_version_serving.with_label_values(&[name, &version.to_string()]).set(serving);
            }
            m.model_versions_loaded.with_label_values(&[name]).set(model.versions.len() as i64);
        }
    }
}
