//! `riskserve drift`: a CSV of recent applications compared, offline, with
//! the reference a version's file records: the applications decoded with
//! the version's inputs and scored by it, counted in the reference's bins,
//! and the PSI of each feature and of the score ([`super::psi`], the same
//! numbers the server exports). [`OfflineDrift::render`] writes it as a
//! self-contained HTML page in the style of the training report: the PSI
//! table and one chart per feature (reference against now).

use super::psi::{compare, reading, Comparison};
use crate::model::fields::Fields;
use crate::model::format::DEFAULT_MAX_MODEL_BYTES;
use crate::model::reference::{edge_labels, Reference, Tally};
use crate::model::row::Rows;
use crate::model::{Decision, Prediction, Scorer};
use crate::repository::local::validate_file;
use crate::train::dataset::read_rows;
use crate::train::report::page_start;
use crate::train::svg::{esc, Chart};
use anyhow::{Context, Result};
use std::fmt::Write;
use std::path::Path;

/// A CSV compared with a version's reference.
#[derive(Debug)]
pub struct OfflineDrift {
    pub model_name: String,
    pub version: u64,
    /// The CSV's file name.
    pub data: String,
    pub fields: Fields,
    pub reference: Reference,
    /// The CSV's applications in the reference's bins.
    pub now: Tally,
    pub comparison: Comparison,
    /// Share of the CSV's applications decided `high_risk`.
    pub high_risk_share: f64,
}

/// The applications of a CSV (columns named as the version's features)
/// decoded with `scorer`'s inputs and scored: what a reference is built
/// from ([`Reference::build`]) and what `drift` compares with one. Returns
/// the rows, their predictions and the file's name.
pub fn score_csv(scorer: &dyn Scorer, data: &Path) -> Result<(Rows, Vec<Prediction>, String)> {
    let (rows, source) = read_rows(data, scorer.fields())?;
    let mut predictions = Vec::with_capacity(rows.len());
    scorer.predict_many(rows.view(), &mut predictions);
    Ok((rows, predictions, source))
}

/// Compares the applications in `data` with the reference of the version
/// in `model_dir` (a version directory or its `model.json`).
pub fn compare_csv(model_dir: &Path, data: &Path) -> Result<OfflineDrift> {
    let file = validate_file(model_dir, DEFAULT_MAX_MODEL_BYTES)?;
    let model = file.model;
    let reference = model.reference.clone().with_context(|| {
        format!(
            "{}: the model file records no reference population (trained before drift monitoring): retrain it, \
             or give an imported model a reference",
            file.path.display()
        )
    })?;
    let (rows, predictions, source) = score_csv(&model, data).with_context(|| format!("reading {}", data.display()))?;
    let scores: Vec<f64> = predictions.iter().map(|p| p.probability_late).collect();
    let now = reference.tally(rows.view(), &scores);
    let high = predictions.iter().filter(|p| p.decision == Decision::HighRisk).count();
    let (model_name, version) =
        file.served_as.unwrap_or_else(|| (model.meta.model_name.clone(), model.meta.model_version));
    Ok(OfflineDrift {
        model_name,
        version,
        data: source,
        comparison: compare(&reference, &now),
        high_risk_share: high as f64 / rows.len().max(1) as f64,
        fields: model.fields,
        reference,
        now,
    })
}

/// Grey: the training reference; blue: now.
const REFERENCE: &str = "#7f8c8d";
const NOW: &str = "#2471a3";

/// One line of the report: the score or a feature.
struct Line<'a> {
    name: &'a str,
    psi: Option<f64>,
    /// Its bins' names.
    labels: Vec<String>,
    reference: &'a [u64],
    now: &'a [u64],
}

impl OfflineDrift {
    /// The score, then each feature.
    fn rows(&self) -> Vec<Line<'_>> {
        let score = Line {
            name: "score",
            psi: self.comparison.score,
            labels: edge_labels(&self.reference.score.edges),
            reference: &self.reference.score.counts,
            now: &self.now.score,
        };
        let features = self.reference.features.iter().enumerate().map(|(i, f)| Line {
            name: &f.name,
            psi: self.comparison.features[i],
            labels: f.labels(self.fields.feature(i).categories()),
            reference: &f.counts,
            now: &self.now.features[i],
        });
        std::iter::once(score).chain(features).collect()
    }

    /// The PSI table as text, for the terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} version {}: {} applications from {} against {} training rows\n{:<24} {:>8}  reading\n",
            self.model_name, self.version, self.now.rows, self.data, self.reference.rows, "feature", "PSI"
        );
        for Line { name, psi, .. } in self.rows() {
            let _ = match psi {
                Some(p) => writeln!(out, "{name:<24} {p:>8.4}  {}", reading(p)),
                None => writeln!(out, "{name:<24} {:>8}", "-"),
            };
        }
        let _ = writeln!(out, "high_risk share now: {:.1} %", 100.0 * self.high_risk_share);
        out
    }

    /// The report as one HTML document.
    pub fn render(&self) -> String {
        let title = format!("{} version {}", self.model_name, self.version);
        let mut html = page_start(&format!("Drift: {title}"), &format!("Drift report: {title}"));
        let _ = write!(
            html,
            "<p>{} applications from {} against the {} training rows the model file records. PSI = Σ (a − e) · ln(a / e) \
             over fixed bins (deciles of the training values for numbers and for the score; one bin per category, \
             <i>other</i> and <i>missing</i>), an empty bin counted as 0.01 %: below 0.1 stable, 0.1–0.25 watch, above 0.25 act. \
             {:.1} % of these applications are decided high_risk.</p>",
            self.now.rows,
            esc(&self.data),
            self.reference.rows,
            100.0 * self.high_risk_share
        );
        html.push_str(
            "<h2>Population stability index</h2><table><tr><th>feature</th><th>PSI</th><th>reading</th></tr>",
        );
        let rows = self.rows();
        for Line { name, psi, .. } in &rows {
            let (value, read, color) = match psi {
                Some(p) => {
                    let read = reading(*p);
                    let color = match read {
                        "act" => "#f5b7b1",
                        "watch" => "#fad7a0",
                        _ => "#d5f5e3",
                    };
                    (format!("{p:.4}"), read, color)
                }
                None => ("–".into(), "", "#fff"),
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td style=\"background:{color}\">{value}</td><td>{read}</td></tr>",
                esc(name)
            );
        }
        html.push_str(
            "</table><h2>Reference (grey) and now (blue), share of applications per bin</h2><div class=\"grid\">",
        );
        for Line { name, psi, labels, reference, now } in &rows {
            let _ = write!(
                html,
                "<figure>{}<figcaption>{}: PSI {}</figcaption></figure>",
                chart(name, labels, reference, now),
                esc(name),
                psi.map_or("–".into(), |p| format!("{p:.4} ({})", reading(p)))
            );
        }
        html.push_str("</div></body></html>\n");
        html
    }
}

/// Side-by-side bars per bin: the reference's share, then now's.
fn chart(name: &str, labels: &[String], reference: &[u64], now: &[u64]) -> String {
    let shares = |counts: &[u64]| {
        let total = counts.iter().sum::<u64>().max(1) as f64;
        counts.iter().map(|&c| c as f64 / total).collect::<Vec<f64>>()
    };
    let (reference, now) = (shares(reference), shares(now));
    // Long category names would run off the chart.
    let labels: Vec<String> =
        labels
            .iter()
            .map(|l| {
                if l.chars().count() > 14 {
                    format!("{}…", l.chars().take(13).collect::<String>())
                } else {
                    l.clone()
                }
            })
            .collect();
    let top = reference.iter().chain(&now).fold(0.0f64, |m, &v| m.max(v)) * 1.1;
    let mut c = Chart::categories(name, "share of applications", &labels, (0.0, top.max(0.01)));
    for (k, (side, color, values)) in [(0.1, REFERENCE, &reference), (0.5, NOW, &now)].into_iter().enumerate() {
        let bars: Vec<(f64, f64, f64)> =
            values.iter().enumerate().map(|(b, &v)| (b as f64 + side, b as f64 + side + 0.4, v)).collect();
        c.bars(&bars, color, 0.8);
        c.legend(k, color, if k == 0 { "training reference" } else { "now" });
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format::encode;
    use crate::model::test_support::tiny_payload;
    use crate::model::Model;

    /// The tiny test model (grade B is risky) with a reference of grade A
    /// and B in equal parts, published as `credit-risk/1`.
    fn version_dir(dir: &Path) -> std::path::PathBuf {
        let mut payload = tiny_payload();
        let model = Model::from_payload(payload.clone(), String::new(), Default::default()).unwrap();
        let train = dir.join("train.csv");
        let header = model.fields.features().iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(",");
        let row = |grade: &str| {
            model
                .fields
                .features()
                .iter()
                .map(|f| if f.name == "grade" { grade } else { "" })
                .collect::<Vec<_>>()
                .join(",")
        };
        let lines: Vec<String> = (0..100).map(|k| row(if k % 2 == 0 { "A" } else { "B" })).collect();
        std::fs::write(&train, format!("{header}\n{}\n", lines.join("\n"))).unwrap();
        let (rows, predictions, _) = score_csv(&model, &train).unwrap();
        let scores: Vec<f64> = predictions.iter().map(|p| p.probability_late).collect();
        payload.reference = Some(Reference::build(&model.fields, rows.view(), &scores));
        let repo = crate::repository::LocalDirectory::new(dir.join("models"));
        repo.publish("credit-risk", 1, &encode(&payload).unwrap()).unwrap();
        repo.version_dir("credit-risk", 1)
    }

    #[test]
    fn a_csv_like_the_reference_is_stable_and_one_that_moved_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let version = version_dir(dir.path());
        let names: Vec<String> = Model::from_payload(tiny_payload(), String::new(), Default::default())
            .unwrap()
            .fields
            .features()
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let csv = |grades: &[&str]| {
            let path = dir.path().join("recent.csv");
            let mut text = format!("{},is_late\n", names.join(","));
            for g in grades {
                let cells: Vec<&str> = names.iter().map(|n| if n == "grade" { *g } else { "" }).collect();
                let _ = writeln!(text, "{},0", cells.join(","));
            }
            std::fs::write(&path, text).unwrap();
            path
        };
        let same = compare_csv(&version, &csv(&["A", "B", "A", "B"])).unwrap();
        assert_eq!((same.model_name.as_str(), same.version, same.now.rows), ("credit-risk", 1, 4));
        assert_eq!(same.comparison.score, Some(0.0));
        assert!(same.comparison.features.iter().all(|p| *p == Some(0.0)), "{:?}", same.comparison);
        assert_eq!(same.high_risk_share, 0.5);

        let moved = compare_csv(&version, &csv(&["B", "B", "B", "Z"])).unwrap();
        let grade = moved.reference.features.iter().position(|f| f.name == "grade").unwrap();
        // Reference A .5 B .5 other 0; now A 0 B .75 other .25.
        let expected = (1e-4 - 0.5) * (1e-4f64 / 0.5).ln() + 0.25 * 1.5f64.ln() + (0.25 - 1e-4) * (0.25f64 / 1e-4).ln();
        let got = moved.comparison.features[grade].unwrap();
        assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
        assert!(moved.comparison.score.unwrap() > 0.25);
        let table = moved.table();
        assert!(
            table.contains("credit-risk version 1: 4 applications from recent.csv against 100 training rows"),
            "{table}"
        );
        assert!(table.lines().any(|l| l.starts_with("grade") && l.ends_with("act")), "{table}");
        let html = moved.render();
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</body></html>\n"));
        assert_eq!(html.matches("<svg").count(), 1 + names.len(), "a chart for the score and each feature");
        assert!(html.contains("<td>grade</td><td style=\"background:#f5b7b1\">"), "grade in red");
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "self-contained");
    }

    #[test]
    fn a_model_without_a_reference_or_a_bad_csv_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::repository::LocalDirectory::new(dir.path().join("plain"));
        repo.publish("credit-risk", 1, &encode(&tiny_payload()).unwrap()).unwrap();
        let csv = dir.path().join("recent.csv");
        std::fs::write(&csv, "grade\nA\n").unwrap();
        let err = format!("{:#}", compare_csv(&repo.version_dir("credit-risk", 1), &csv).unwrap_err());
        assert!(err.contains("records no reference population"), "{err}");
        let version = version_dir(dir.path());
        std::fs::write(&csv, "grade\nA\n").unwrap();
        let err = format!("{:#}", compare_csv(&version, &csv).unwrap_err());
        assert!(err.contains("missing column `loan_amnt`"), "{err}");
    }
}
