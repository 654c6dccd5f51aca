//! One loaded, servable model version: its compiled scorer, where it came
//! from, when it loaded, its metric series, and the texts answers carry,
//! derived once at load, and its drift monitor. What a request holds an `Arc` of for its whole
//! life; the snapshot, the rollouts and the shadow all refer to it.

use crate::drift::{Monitor, WindowSize};
use crate::metrics::VersionMetrics;
use crate::model::Scorer;
use std::sync::Arc;
use std::time::SystemTime;

/// One loaded, servable model version.
#[derive(Debug)]
pub struct LoadedVersion {
    /// Model name (from the source).
    pub name: String,
    /// Version (from the source).
    pub version: u64,
    /// `version` as text, for headers and bodies (a JSON number as it is).
    pub version_label: String,
    /// `name` as a JSON string (quoted, escaped), for response bodies.
    pub name_json: String,
    /// The `x-model-version` header value, built once at load (cloning it
    /// per response is a reference-count increment, not an allocation).
    pub version_header: hyper::header::HeaderValue,
    /// Where it was read from (a path or URL), for logs and the operator view.
    pub location: String,
    /// The compiled model (or, in tests, a stand-in).
    pub scorer: Arc<dyn Scorer>,
    pub loaded_at: SystemTime,
    pub load_seconds: f64,
    pub metrics: VersionMetrics,
    /// Its drift monitor, when drift monitoring is on and the file has a
    /// reference ([`LoadedVersion::with_drift`]).
    pub drift: Option<Arc<Monitor>>,
}

impl LoadedVersion {
    /// A version just loaded: the texts answers carry (its number as text
    /// and as a header, its name as JSON) are derived here, once, rather
    /// than per response.
    pub fn new(
        name: &str,
        version: u64,
        location: String,
        scorer: Arc<dyn Scorer>,
        load_seconds: f64,
        metrics: VersionMetrics,
    ) -> LoadedVersion {
        LoadedVersion {
            name: name.to_string(),
            version,
            version_label: version.to_string(),
            name_json: serde_json::Value::from(name).to_string(),
            version_header: hyper::header::HeaderValue::from(version),
            location,
            scorer,
            loaded_at: SystemTime::now(),
            load_seconds,
            metrics,
            drift: None,
        }
    }

    /// Monitors drift over a window of `size` (`None`: monitoring is off),
    /// if the scorer has a reference.
    pub fn with_drift(mut self, size: Option<WindowSize>) -> LoadedVersion {
        let reference = size.and_then(|size| Some((self.scorer.reference()?.clone(), size)));
        self.drift = reference.map(|(reference, size)| Arc::new(Monitor::new(reference, size)));
        self
    }
}

/// RFC 3339 text of a time.
pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
