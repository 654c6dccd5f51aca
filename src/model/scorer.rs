//! What serving needs from a loaded model version ([`Scorer`]: its
//! inputs, one row's [`Prediction`], many rows', its metadata and its
//! explanation), and the answer's types. [`super::Model`] is the
//! implementation; tests serve stand-ins through the same seam.

use super::explain::{Attribution, ExplainInfo, Reason};
use super::fields::Fields;
use super::format::ModelMeta;
use super::reference::Reference;
use super::row::{Row, RowsView};
use serde::Serialize;

/// The decision for one application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// `probability_late >= threshold`.
    HighRisk,
    LowRisk,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::HighRisk => "high_risk",
            Decision::LowRisk => "low_risk",
        }
    }
}

/// The model's answer for one application.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// Estimated probability that the borrower pays late, in [0, 1].
    pub probability_late: f64,
    pub decision: Decision,
}

/// What serving needs from a loaded model version: what it takes as input,
/// score one row, and say what it is. [`super::Model`] is the implementation; the
/// trait is the seam that lets tests serve a stand-in (for example one
/// whose `predict` blocks until released) through the real registry and
/// routes.
pub trait Scorer: Send + Sync + std::fmt::Debug + 'static {
    /// The inputs requests are decoded with.
    fn fields(&self) -> &Fields;
    /// Scores one row (decoded with [`Scorer::fields`]). Must not allocate
    /// or block in production.
    fn predict(&self, row: Row<'_>) -> Prediction;
    /// Scores many rows, appending one prediction each to `out`: the same
    /// answers as [`Scorer::predict`] on each, possibly faster.
    fn predict_many(&self, rows: RowsView<'_>, out: &mut Vec<Prediction>) {
        out.extend(rows.iter().map(|row| self.predict(row)));
    }
    /// What the model file records.
    fn meta(&self) -> &ModelMeta;
    /// SHA-256 of the file's payload.
    fn digest(&self) -> &str;
    /// Splits one prediction into a base value and per-feature
    /// contributions; `None` for a scorer that cannot explain itself.
    fn attribution(&self, _row: Row<'_>) -> Option<Attribution> {
        None
    }
    /// Exact SHAP values of one prediction (`?explain=shap`); `None` for a
    /// scorer without trees and covers to compute them from.
    fn shap(&self, _row: Row<'_>) -> Option<super::shap::Shap> {
        None
    }
    /// How this scorer explains its predictions, if it can.
    fn explain_info(&self) -> Option<ExplainInfo> {
        None
    }
    /// The prediction and, for a scorer that can explain itself, its `top`
    /// reasons ([`Attribution::reasons`]): what a request with reasons
    /// gets. A [`super::Model`] walks its trees once for both (the
    /// attribution's probability is the prediction's, bit for bit) and
    /// keeps the attribution on its stack.
    fn predict_with_reasons(&self, row: Row<'_>, top: usize) -> (Prediction, Option<Vec<Reason>>) {
        (self.predict(row), self.attribution(row).map(|a| a.reasons(row, top)))
    }
    /// The training population's bins the file records, for drift
    /// monitoring; `None`: no drift is reported.
    fn reference(&self) -> Option<&Reference> {
        None
    }
}
