//! The status rows a pass publishes: each version's row built from the
//! plan, and the interim table that shows versions as `loading` while a
//! slow load runs.

use super::Loader;
use crate::registry::plan::{Known, LoadRequest, ModelPlan, Planned};
use crate::registry::snapshot::{LoadedVersion, Snapshot, VersionState, VersionStatus};
use std::sync::Arc;

impl Loader {
    /// One status row per version the plan lists for `name`: its state,
    /// the reason it is not (or not freshly) served, and whether it takes
    /// unpinned traffic.
    pub(super) fn version_rows(
        &self,
        name: &str,
        model: &ModelPlan<Arc<LoadedVersion>>,
        serving_version: Option<u64>,
    ) -> Vec<VersionStatus> {
        model
            .versions
            .iter()
            .map(|v| {
                let mut row = match &v.state {
                    Planned::Serving(lv) => VersionStatus::available(lv),
                    Planned::ServingStale { version, reason } => VersionStatus {
                        reason: Some(format!("serving the copy loaded earlier; the changed file: {reason}")),
                        ..VersionStatus::available(version)
                    },
                    Planned::Kept(lv) => VersionStatus {
                        reason: Some("kept serving: no other version of this model is loadable".into()),
                        ..VersionStatus::available(lv)
                    },
                    Planned::Failed(reason) => {
                        VersionStatus::unloaded(v.version, &v.location, VersionState::Failed, Some(reason.clone()))
                    }
                    Planned::NotSelected(reason) => {
                        VersionStatus::unloaded(v.version, &v.location, VersionState::NotLoaded, Some(reason.clone()))
                    }
                };
                row.serving = Some(v.version) == serving_version && row.state == VersionState::Available;
                if self.config.operator_view && row.reason.is_some() {
                    row.detail =
                        self.known.get(&(name.to_string(), v.version)).and_then(Known::detail).map(str::to_string);
                }
                row
            })
            .collect()
    }

    /// Publishes the current serving set with the versions about to load
    /// marked `loading`, so `/v1/models` shows a slow load while it runs.
    pub(super) fn show_loading(&self, current: &Snapshot, requests: &[LoadRequest]) {
        let mut status = current.status.clone();
        for r in requests {
            let Some(model) = status.get_mut(&r.model) else { continue };
            match model.versions.iter_mut().find(|v| v.version == r.entry.version) {
                Some(row) => row.state = VersionState::Loading,
                None => {
                    model.versions.push(VersionStatus::unloaded(
                        r.entry.version,
                        &r.entry.location,
                        VersionState::Loading,
                        None,
                    ));
                    model.versions.sort_by_key(|v| std::cmp::Reverse(v.version));
                }
            }
        }
        drop(self.registry.publish(Snapshot { models: current.models.clone(), status }));
    }
}
