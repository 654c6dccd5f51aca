//! The drift gauges, computed from each loaded version's window whenever
//! `/metrics` is gathered (so the window is as fresh as the scrape, and a
//! retired version's series go with it):
//!
//! - `riskserve_drift_psi{model,version,feature}`: PSI of each feature,
//!   and of the score as `feature="score"` (absent while the window is
//!   empty);
//! - `riskserve_drift_window_predictions{model,version}`;
//! - `riskserve_drift_high_risk_share{model,version}`;
//! - `riskserve_drift_score_share{model,version,population,bin}`: the
//!   share of scores in each score bin (`bin`: its upper edge) in the
//!   reference (`population="reference"`) and in the window (`"window"`).
//!
//! Which versions there are comes from a function the composition root
//! gives, so this module does not depend on the registry.

use super::monitor::Monitor;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};
use std::sync::{Arc, Mutex};

/// The monitors of the versions loaded now: (model, version, monitor).
pub type Monitors = Box<dyn Fn() -> Vec<(String, u64, Arc<Monitor>)> + Send + Sync>;

/// The `riskserve_drift_*` gauges.
pub struct DriftCollector {
    monitors: Monitors,
    psi: GaugeVec,
    predictions: GaugeVec,
    high_risk: GaugeVec,
    score_share: GaugeVec,
    /// Held from the reset through the collection, so two scrapes at once
    /// do not mix their series.
    collecting: Mutex<()>,
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl DriftCollector {
    pub fn new(monitors: Monitors) -> DriftCollector {
        DriftCollector {
            monitors,
            psi: gauges(
                "riskserve_drift_psi",
                "Population stability index of recent applications against the version's training reference, by \
                 feature (the score as feature=\"score\"): below 0.1 stable, 0.1-0.25 watch, above 0.25 act.",
                &["model", "version", "feature"],
            ),
            predictions: gauges(
                "riskserve_drift_window_predictions",
                "Predictions in the drift window (drift_window predictions or drift_window_secs, whichever is shorter).",
                &["model", "version"],
            ),
            high_risk: gauges(
                "riskserve_drift_high_risk_share",
                "Share of the predictions in the drift window decided high_risk.",
                &["model", "version"],
            ),
            score_share: gauges(
                "riskserve_drift_score_share",
                "Share of scores in each score bin (bin: its upper edge), in the training reference and in the drift window.",
                &["model", "version", "population", "bin"],
            ),
            collecting: Mutex::new(()),
        }
    }

    fn families(&self) -> [&GaugeVec; 4] {
        [&self.psi, &self.predictions, &self.high_risk, &self.score_share]
    }
}

/// `bin` label values: each score bin's upper edge, the last `1`.
fn score_bins(edges: &[f64]) -> Vec<String> {
    edges.iter().map(|e| format!("{e:.4}")).chain(["1".to_string()]).collect()
}

fn shares(counts: &[u64]) -> impl Iterator<Item = f64> + '_ {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(move |&c| c as f64 / total)
}

impl Collector for DriftCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families().into_iter().flat_map(|f| f.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        for f in self.families() {
            f.reset();
        }
        for (model, version, monitor) in (self.monitors)() {
            let v = version.to_string();
            let report = monitor.report();
            self.predictions.with_label_values(&[&model, &v]).set(report.predictions as f64);
            if let Some(share) = report.high_risk_share {
                self.high_risk.with_label_values(&[&model, &v]).set(share);
            }
            let features = std::iter::once(("score", report.score))
                .chain(report.features.iter().map(|(name, psi)| (name.as_str(), *psi)));
            for (feature, psi) in features {
                if let Some(psi) = psi {
                    self.psi.with_label_values(&[&model, &v, feature]).set(psi);
                }
            }
            let bins = score_bins(&monitor.reference().score.edges);
            for (population, counts) in
                [("reference", &monitor.reference().score.counts), ("window", &report.tally.score)]
            {
                if population == "window" && report.predictions == 0 {
                    continue;
                }
                for (bin, share) in bins.iter().zip(shares(counts)) {
                    self.score_share.with_label_values(&[&model, &v, population, bin]).set(share);
                }
            }
        }
        self.families().into_iter().flat_map(|f| f.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::window::WindowSize;
    use crate::model::fields::Fields;
    use crate::model::reference::Reference;
    use crate::model::row::{Rows, Value};
    use crate::model::schema::{Feature, Schema};
    use crate::model::{Decision, Prediction};

    #[test]
    fn each_monitor_exports_its_psi_window_and_score_shares() {
        let fields = Fields::new(Schema { features: vec![Feature::number("x", 0.0, 100.0, None, Some(1.0))] }).unwrap();
        let mut rows = Rows::new(1);
        for k in 0..10 {
            rows.push_missing()[0] = Value::Number(f64::from(k));
        }
        let scores: Vec<f64> = (0..10).map(|k| f64::from(k) / 10.0).collect();
        let reference = Reference::build(&fields, rows.view(), &scores);
        let monitor = Arc::new(Monitor::new(reference, WindowSize::default()));
        let shared = monitor.clone();
        let metrics = crate::metrics::Metrics::new();
        metrics
            .register(Box::new(DriftCollector::new(Box::new(move || vec![("m".into(), 3, shared.clone())]))))
            .unwrap();
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text.contains("riskserve_drift_window_predictions{model=\"m\",version=\"3\"} 0"), "{text}");
        assert!(!text.contains("riskserve_drift_psi{"), "no PSI for an empty window: {text}");
        assert!(
            text.contains(
                "riskserve_drift_score_share{bin=\"1\",model=\"m\",population=\"reference\",version=\"3\"} 0.1"
            ),
            "{text}"
        );

        let p = |p: f64| Prediction { probability_late: p, decision: Decision::LowRisk };
        monitor.observe(rows.view(), &scores.iter().map(|&s| p(s)).collect::<Vec<_>>());
        let text = String::from_utf8(metrics.render()).unwrap();
        for line in [
            "riskserve_drift_window_predictions{model=\"m\",version=\"3\"} 10",
            "riskserve_drift_psi{feature=\"score\",model=\"m\",version=\"3\"} 0",
            "riskserve_drift_psi{feature=\"x\",model=\"m\",version=\"3\"} 0",
            "riskserve_drift_high_risk_share{model=\"m\",version=\"3\"} 0",
            "riskserve_drift_score_share{bin=\"0.0000\",model=\"m\",population=\"window\",version=\"3\"} 0.1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
    }
}
