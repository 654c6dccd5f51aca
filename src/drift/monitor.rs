//! One version's live drift monitor: its reference, and a [`Window`] of
//! counters laid out as the reference's bins (the score's, each
//! feature's, then one for `high_risk` decisions). [`Monitor::observe`] is
//! the request path's part: per scored row, a bin lookup per feature (a
//! binary search over at most a few edges for a number, the code for a
//! category) and a relaxed atomic add each, no lock, no allocation, in
//! the calling thread's stripe of the current bucket.
//! [`Monitor::report`] sums the window and compares it with the reference.

use super::psi::{compare, reading};
use super::window::{Window, WindowSize};
use crate::model::reference::{Reference, Tally};
use crate::model::row::RowsView;
use crate::model::{Decision, Prediction};
use serde::Serialize;
use std::sync::Arc;

/// Top movers shown in a version's status.
pub const TOP_MOVERS: usize = 3;

/// A version's reference and the window of its recent predictions.
#[derive(Debug)]
pub struct Monitor {
    reference: Reference,
    /// Where each feature's bins start among the counters.
    offsets: Vec<usize>,
    /// The counter of `high_risk` decisions.
    high_risk: usize,
    size: WindowSize,
    window: Window,
}

/// What a window holds, compared with the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// Predictions in the window.
    pub predictions: u64,
    /// Share of them decided `high_risk`.
    pub high_risk_share: Option<f64>,
    /// PSI of the score.
    pub score: Option<f64>,
    /// PSI of each feature, in schema order.
    pub features: Vec<(String, Option<f64>)>,
    /// The window's counts in the reference's bins.
    pub tally: Tally,
}

impl Monitor {
    /// A monitor of `reference` (already checked against the version's
    /// schema) over a window of `size`.
    pub fn new(reference: Reference, size: WindowSize) -> Monitor {
        let mut offsets = Vec::with_capacity(reference.features.len());
        let mut width = reference.score.counts.len();
        for f in &reference.features {
            offsets.push(width);
            width += f.counts.len();
        }
        Monitor { high_risk: width, window: Window::new(width + 1, size), offsets, size, reference }
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    pub fn size(&self) -> WindowSize {
        self.size
    }

    /// Counts scored rows (decoded with the version's schema) and their
    /// predictions, one each, in the current bucket.
    #[inline]
    pub fn observe(&self, rows: RowsView<'_>, predictions: &[Prediction]) {
        let features = &self.reference.features;
        if rows.iter().next().is_some_and(|r| r.values().len() != features.len()) {
            return;
        }
        // A batch is counted a block at a time, so the window moves on
        // within it.
        let (n, block) = (rows.len().min(predictions.len()), self.window.block());
        let mut start = 0;
        while start < n {
            let end = (start + block).min(n);
            let slot = self.window.slot();
            for (row, p) in rows.slice(start..end).iter().zip(&predictions[start..end]) {
                self.window.add(slot, self.reference.score.bin(p.probability_late));
                for ((i, f), offset) in features.iter().enumerate().zip(&self.offsets) {
                    self.window.add(slot, offset + f.bin(row.get(i)));
                }
                if p.decision == Decision::HighRisk {
                    self.window.add(slot, self.high_risk);
                }
            }
            self.window.counted(slot, (end - start) as u32);
            start = end;
        }
    }

    /// The window summed and compared with the reference.
    pub fn report(&self) -> DriftReport {
        let (rows, sums) = self.window.sum();
        let score_bins = self.reference.score.counts.len();
        let tally = Tally {
            rows,
            score: sums[..score_bins].to_vec(),
            features: self
                .reference
                .features
                .iter()
                .zip(&self.offsets)
                .map(|(f, &at)| sums[at..at + f.counts.len()].to_vec())
                .collect(),
        };
        let c = compare(&self.reference, &tally);
        DriftReport {
            predictions: rows,
            high_risk_share: (rows > 0).then(|| sums[self.high_risk] as f64 / rows as f64),
            score: c.score,
            features: self.reference.features.iter().map(|f| f.name.clone()).zip(c.features).collect(),
            tally,
        }
    }
}

/// A version's monitor as `GET /v1/models/{name}` shows it: read when the
/// status is written, so it is always the latest window.
#[derive(Debug, Clone)]
pub struct LiveDrift(pub Arc<Monitor>);

#[derive(Serialize)]
struct Shown<'a> {
    window: ShownWindow,
    high_risk_share: Option<f64>,
    /// The score first, then each feature.
    psi: Vec<ShownPsi<'a>>,
    /// The features with the largest PSI, largest first.
    top_movers: Vec<ShownPsi<'a>>,
}

#[derive(Serialize)]
struct ShownWindow {
    predictions: u64,
    max_predictions: u64,
    max_seconds: u64,
}

#[derive(Serialize, Clone)]
struct ShownPsi<'a> {
    feature: &'a str,
    psi: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reading: Option<&'static str>,
}

impl ShownPsi<'_> {
    fn of(feature: &str, psi: Option<f64>) -> ShownPsi<'_> {
        ShownPsi { feature, psi, reading: psi.map(reading) }
    }
}

impl Serialize for LiveDrift {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0.report();
        let size = self.0.size();
        let features: Vec<ShownPsi<'_>> = r.features.iter().map(|(name, psi)| ShownPsi::of(name, *psi)).collect();
        let mut top: Vec<ShownPsi<'_>> = features.iter().filter(|f| f.psi.is_some()).cloned().collect();
        top.sort_by(|a, b| b.psi.unwrap_or(0.0).total_cmp(&a.psi.unwrap_or(0.0)));
        top.truncate(TOP_MOVERS);
        Shown {
            window: ShownWindow {
                predictions: r.predictions,
                max_predictions: size.max_predictions,
                max_seconds: size.max_age.as_secs(),
            },
            high_risk_share: r.high_risk_share,
            psi: std::iter::once(ShownPsi::of("score", r.score)).chain(features).collect(),
            top_movers: top,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fields::Fields;
    use crate::model::row::{Rows, Value};
    use crate::model::schema::{Feature, Schema};
    use std::time::Duration;

    fn rows(xs: &[f64]) -> Rows {
        let mut rows = Rows::new(2);
        for (k, &x) in xs.iter().enumerate() {
            let row = rows.push_missing();
            row[0] = Value::Number(x);
            row[1] = Value::Category((k % 2) as u32);
        }
        rows
    }

    fn predictions(ps: &[f64]) -> Vec<Prediction> {
        ps.iter()
            .map(|&p| Prediction {
                probability_late: p,
                decision: if p >= 0.5 { Decision::HighRisk } else { Decision::LowRisk },
            })
            .collect()
    }

    fn monitor(window: u64) -> Monitor {
        let fields = Fields::new(Schema {
            features: vec![
                Feature::number("x", 0.0, 100.0, None, Some(1.0)),
                Feature::category("c", vec!["a".into(), "b".into()], None),
            ],
        })
        .unwrap();
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let ps: Vec<f64> = (0..100).map(|k| f64::from(k) / 100.0).collect();
        let reference = Reference::build(&fields, rows(&xs).view(), &ps);
        Monitor::new(reference, WindowSize { max_predictions: window, max_age: Duration::from_secs(3600) })
    }

    #[test]
    fn the_same_population_is_stable_and_a_shifted_one_moves() {
        let m = monitor(1_000);
        let empty = m.report();
        assert_eq!((empty.predictions, empty.score, empty.high_risk_share), (0, None, None));
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let ps: Vec<f64> = (0..100).map(|k| f64::from(k) / 100.0).collect();
        m.observe(rows(&xs).view(), &predictions(&ps));
        let same = m.report();
        assert_eq!(same.predictions, 100);
        assert_eq!(same.high_risk_share, Some(0.5));
        assert_eq!(same.score, Some(0.0));
        assert_eq!(same.features, [("x".to_string(), Some(0.0)), ("c".to_string(), Some(0.0))]);

        let m = monitor(100);
        // x all in its top decile, scores all high: both move; c does not.
        m.observe(rows(&[95.0; 100]).view(), &predictions(&[0.97; 100]));
        let shifted = m.report();
        assert_eq!(shifted.predictions, 90, "the window keeps 90-100 % of 100");
        assert!(shifted.score.unwrap() > 1.0, "{shifted:?}");
        assert!(shifted.features[0].1.unwrap() > 1.0, "{shifted:?}");
        assert!(shifted.features[1].1.unwrap() < 0.01, "{shifted:?}");
        assert_eq!(shifted.high_risk_share, Some(1.0));
        // One bin holds everything: (1 − 0.1) ln 10 + 9 × (1e-4 − 0.1) ln(1e-3).
        let expected = 0.9 * 10f64.ln() + 9.0 * (1e-4 - 0.1) * (1e-4f64 / 0.1).ln();
        assert!((shifted.score.unwrap() - expected).abs() < 1e-9, "{} vs {expected}", shifted.score.unwrap());
    }

    #[test]
    fn the_status_shows_each_psi_with_its_reading_and_the_top_movers() {
        let m = Arc::new(monitor(1_000));
        let shown = serde_json::to_value(LiveDrift(m.clone())).unwrap();
        assert_eq!(
            shown["window"],
            serde_json::json!({"predictions": 0, "max_predictions": 1000, "max_seconds": 3600})
        );
        assert_eq!(shown["psi"][0], serde_json::json!({"feature": "score", "psi": null}));
        assert_eq!(shown["top_movers"], serde_json::json!([]));
        m.observe(rows(&[95.0; 50]).view(), &predictions(&[0.2; 50]));
        let shown = serde_json::to_value(LiveDrift(m)).unwrap();
        assert_eq!(shown["window"]["predictions"], 50);
        assert_eq!(shown["high_risk_share"], 0.0);
        let names: Vec<&str> =
            shown["psi"].as_array().unwrap().iter().map(|p| p["feature"].as_str().unwrap()).collect();
        assert_eq!(names, ["score", "x", "c"]);
        assert_eq!(shown["top_movers"][0]["feature"], "x");
        assert_eq!(shown["top_movers"][0]["reading"], "act");
        assert_eq!(shown["top_movers"][1]["feature"], "c");
        assert_eq!(shown["top_movers"][1]["reading"], "stable");
        assert_eq!(shown["top_movers"].as_array().unwrap().len(), 2, "two features");
    }

    #[test]
    fn rows_of_another_schema_are_not_counted() {
        let m = monitor(1_000);
        let mut other = Rows::new(1);
        other.push_missing()[0] = Value::Number(1.0);
        m.observe(other.view(), &predictions(&[0.1]));
        assert_eq!(m.report().predictions, 0);
    }
}
