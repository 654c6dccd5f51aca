//! The HTML report of `train --report` and `evaluate --report`: one
//! self-contained file (inline SVG and CSS, no script, font or network
//! request) showing ROC and precision–recall curves with the spread over
//! folds and seeds, the reliability diagram before and after calibration,
//! the score distributions of late and on-time loans, the expected-cost
//! curve with the chosen threshold, feature importance and a metrics table.

use super::assess::{across_seeds, Assessment, Scores};
use super::cost::cost_curve;
use super::evaluation::threshold_sweep;
use super::pipeline::DataSummary;
use super::svg::{esc, Chart};
use crate::model::format::DecisionCosts;
use std::fmt::Write;

/// Costs the expected-cost curve uses when none were given.
pub const DEFAULT_COSTS: DecisionCosts = DecisionCosts { false_negative: 5000.0, false_positive: 300.0 };

/// Most points drawn per curve (curves are thinned evenly beyond this).
const MAX_POINTS: usize = 300;

/// What a report shows.
pub struct ReportInput<'a> {
    pub title: String,
    pub data: &'a DataSummary,
    pub folds: usize,
    /// One cross-validation per seed; the first is drawn in detail.
    pub runs: &'a [Assessment],
    pub threshold: f64,
    pub strategy: &'a str,
    pub costs: DecisionCosts,
}

const LATE: &str = "#c0392b";
const ON_TIME: &str = "#2471a3";
const SPREAD: &str = "#7f8c8d";

/// The start of a self-contained report page: its head and style, and
/// the `<h1>` heading (`drift` reports share them).
pub fn page_start(title: &str, heading: &str) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title><style>
body{{font-family:sans-serif;margin:1.5rem;color:#222;max-width:1560px}}h1{{font-size:1.4rem}}h2{{font-size:1.1rem;margin-top:1.5rem}}
.grid{{display:flex;flex-wrap:wrap;gap:12px}}figure{{margin:0;border:1px solid #ddd;padding:4px}}figcaption{{font-size:.8rem;color:#555;max-width:460px}}
table{{border-collapse:collapse;font-size:.9rem}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}
svg{{max-width:100%;height:auto}}</style></head><body><h1>{heading}</h1>"#,
        title = esc(title),
        heading = esc(heading)
    );
    html
}

/// The report as one HTML document.
pub fn render(input: &ReportInput<'_>) -> String {
    let mut html = page_start(&input.title, &format!("Model report: {}", input.title));
    let seeds: Vec<String> = input.runs.iter().map(|r| r.seed.to_string()).collect();
    let _ = write!(
        html,
        "<p>{} ({} rows, {} late, {:.2} %); stratified {}-fold cross-validation, fold seeds {}. Decision threshold {:.4} ({}); costs: {:.0} per late loan approved, {:.0} per good loan declined.</p>",
        esc(&input.data.source),
        input.data.rows,
        input.data.positives,
        100.0 * input.data.late_rate(),
        input.folds,
        esc(&seeds.join(", ")),
        input.threshold,
        esc(input.strategy),
        input.costs.false_negative,
        input.costs.false_positive
    );
    html.push_str(&metrics_table(input));
    let Some(first) = input.runs.first() else {
        html.push_str("</body></html>\n");
        return html;
    };
    html.push_str("<h2>Discrimination, calibration and cost</h2><div class=\"grid\">");
    for (svg, caption) in [
        (roc_chart(input.runs), "ROC curve of every fold and seed (grey) and of the pooled out-of-fold predictions of the first seed (blue)."),
        (pr_chart(input.runs), "Precision–recall of every fold and seed (grey), pooled first seed (blue); dashed: the late rate."),
        (reliability_chart(first), "Reliability over 10 equal-count bins of predicted probability: before (grey) and after (blue) calibration; the diagonal is perfect calibration."),
        (distribution_chart(first), "Calibrated out-of-fold probability of late (red) and on-time (blue) loans, each scaled to its own total."),
        (cost_chart(first, input), "Expected cost per 1,000 applications when flagging every probability at or above the threshold; the chosen threshold is marked."),
        (importance_chart(input.runs), "Feature importance: mean absolute contribution of each feature to the out-of-fold predictions (Saabas path contributions for a forest), averaged over seeds."),
    ] {
        let _ = write!(html, "<figure>{svg}<figcaption>{}</figcaption></figure>", esc(caption));
    }
    html.push_str("</div></body></html>\n");
    html
}

fn metrics_table(input: &ReportInput<'_>) -> String {
    let runs = input.runs;
    let mut t = String::from(
        "<h2>Metrics (mean ± std across seeds)</h2><table><tr><th>probability</th><th>ROC-AUC</th><th>PR-AUC</th><th>Brier</th><th>log loss</th><th>ECE</th></tr>",
    );
    for (label, calibrated) in [("raw", false), ("calibrated", true)] {
        let cell = |f: fn(&Scores) -> f64, digits: usize| {
            let m = across_seeds(runs, |a| f(if calibrated { &a.calibrated } else { &a.raw }));
            format!("<td>{:.*} ± {:.*}</td>", digits, m.mean, digits, m.std)
        };
        let methods: Vec<&str> =
            runs.iter().map(|a| a.calibration.calibration.as_ref().map_or("none", |c| c.method())).collect();
        let name = if calibrated { format!("calibrated ({})", methods.join(", ")) } else { label.to_string() };
        let _ = write!(
            t,
            "<tr><td>{}</td>{}{}{}{}{}</tr>",
            esc(&name),
            cell(|s| s.roc_auc, 4),
            cell(|s| s.pr_auc, 4),
            cell(|s| s.brier, 5),
            cell(|s| s.log_loss, 4),
            cell(|s| s.ece, 4)
        );
    }
    t.push_str("</table><p style=\"font-size:.8rem\">ROC-AUC and PR-AUC: mean over folds; Brier, log loss and ECE (10 equal-count bins): over all out-of-fold rows. Calibrated: each fold's predictions calibrated by a map fitted on the other folds.</p>");
    t
}

/// Rows of one fold of a run.
fn fold_rows(run: &Assessment, fold: usize) -> (Vec<u8>, Vec<f64>) {
    let mut y = Vec::new();
    let mut p = Vec::new();
    for ((&l, &v), &f) in run.labels.iter().zip(&run.out_of_fold).zip(&run.fold_of) {
        if f == fold {
            y.push(l);
            p.push(v);
        }
    }
    (y, p)
}

fn folds_of(run: &Assessment) -> usize {
    run.fold_of.iter().copied().max().map_or(0, |m| m + 1)
}

/// Points of the ROC curve (FPR, TPR) and the PR curve (recall, precision),
/// one per distinct score, from the highest score down.
type Points = Vec<(f64, f64)>;

fn curves(y: &[u8], p: &[f64]) -> (Points, Points) {
    let pos = y.iter().filter(|&&v| v != 0).count().max(1) as f64;
    let neg = (y.len() as f64 - pos).max(1.0);
    let mut roc = vec![(0.0, 0.0)];
    let mut pr = Vec::new();
    for s in threshold_sweep(y, p) {
        let (tp, fp) = (s.tp as f64, s.fp as f64);
        roc.push((fp / neg, tp / pos));
        pr.push((tp / pos, tp / (tp + fp)));
    }
    (thin(roc), thin(pr))
}

fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let step = points.len() as f64 / MAX_POINTS as f64;
    let mut out: Vec<(f64, f64)> = (0..MAX_POINTS).map(|i| points[(i as f64 * step) as usize]).collect();
    out.extend(points.last().copied());
    out
}

fn roc_chart(runs: &[Assessment]) -> String {
    let mut c = Chart::new("ROC", "false positive rate", "true positive rate", (0.0, 1.0), (0.0, 1.0));
    c.line(&[(0.0, 0.0), (1.0, 1.0)], "#999", 1.0, 1.0, true);
    for run in runs {
        for k in 0..folds_of(run) {
            let (y, p) = fold_rows(run, k);
            c.line(&curves(&y, &p).0, SPREAD, 1.0, 0.45, false);
        }
    }
    if let Some(run) = runs.first() {
        c.line(&curves(&run.labels, &run.out_of_fold).0, ON_TIME, 2.5, 1.0, false);
    }
    c.finish()
}

fn pr_chart(runs: &[Assessment]) -> String {
    let mut curves_all = Vec::new();
    for run in runs {
        for k in 0..folds_of(run) {
            let (y, p) = fold_rows(run, k);
            curves_all.push(curves(&y, &p).1);
        }
    }
    let pooled = runs.first().map(|r| curves(&r.labels, &r.out_of_fold).1).unwrap_or_default();
    // Precision is noisy at tiny recall: scale to the pooled curve's range.
    let top = pooled.iter().filter(|(r, _)| *r >= 0.05).map(|&(_, p)| p).fold(0.0, f64::max);
    let mut c = Chart::new("Precision–recall", "recall", "precision", (0.0, 1.0), (0.0, (top * 1.3).clamp(0.05, 1.0)));
    for points in &curves_all {
        c.line(points, SPREAD, 1.0, 0.45, false);
    }
    c.line(&pooled, ON_TIME, 2.5, 1.0, false);
    if let Some(run) = runs.first() {
        let rate = run.labels.iter().filter(|&&y| y != 0).count() as f64 / run.labels.len().max(1) as f64;
        c.line(&[(0.0, rate), (1.0, rate)], "#999", 1.0, 1.0, true);
    }
    c.finish()
}

fn reliability_chart(run: &Assessment) -> String {
    let (before, after) = (&run.calibration.before.bins, &run.calibration.after.bins);
    let top = before.iter().chain(after).flat_map(|b| [b.predicted, b.observed]).fold(0.0, f64::max) * 1.1;
    let mut c = Chart::new("Reliability", "mean predicted probability", "observed late rate", (0.0, top), (0.0, top));
    c.line(&[(0.0, 0.0), (top, top)], "#999", 1.0, 1.0, true);
    for (bins, color, k, text) in [(before, SPREAD, 0, "before calibration"), (after, ON_TIME, 1, "after calibration")]
    {
        let points: Vec<(f64, f64)> = bins.iter().map(|b| (b.predicted, b.observed)).collect();
        c.line(&points, color, 2.0, 1.0, false);
        c.dots(&points, color);
        c.legend(k, color, text);
    }
    c.finish()
}

fn distribution_chart(run: &Assessment) -> String {
    let p = &run.calibration.calibrated;
    let mut sorted = p.clone();
    sorted.sort_by(f64::total_cmp);
    let hi = sorted.get(sorted.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(1.0).max(1e-3);
    const BINS: usize = 30;
    let width = hi / BINS as f64;
    let mut hist = [[0.0; BINS]; 2];
    let mut totals = [0.0f64; 2];
    for (&y, &v) in run.labels.iter().zip(p) {
        let class = usize::from(y != 0);
        let bin = ((v / width) as usize).min(BINS - 1);
        hist[class][bin] += 1.0;
        totals[class] += 1.0;
    }
    let share = |class: usize, k: usize| hist[class][k] / totals[class].max(1.0);
    let top = (0..BINS).flat_map(|k| [share(0, k), share(1, k)]).fold(0.0, f64::max) * 1.1;
    let mut c =
        Chart::new("Score distribution", "calibrated probability late", "share of class", (0.0, hi), (0.0, top));
    for (class, color, k, text) in [(0, ON_TIME, 0, "on time"), (1, LATE, 1, "late")] {
        let bars: Vec<(f64, f64, f64)> =
            (0..BINS).map(|b| (b as f64 * width, (b + 1) as f64 * width, share(class, b))).collect();
        c.bars(&bars, color, 0.45);
        c.legend(k, color, text);
    }
    c.finish()
}

fn cost_chart(run: &Assessment, input: &ReportInput<'_>) -> String {
    let curve = cost_curve(&run.labels, &run.calibration.calibrated, input.costs);
    let hi = (input.threshold * 4.0).clamp(0.02, 1.0);
    let points: Vec<(f64, f64)> =
        curve.iter().filter(|c| c.threshold <= hi).map(|c| (c.threshold, c.cost_per_1000)).collect();
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let mut c = Chart::new(
        "Expected cost",
        "threshold on probability late",
        "cost per 1,000 applications",
        (0.0, hi),
        (0.0, top),
    );
    // A step curve: the cost holds until the next distinct probability.
    let mut steps = Vec::with_capacity(points.len() * 2);
    for w in points.windows(2) {
        steps.push(w[0]);
        steps.push((w[1].0, w[0].1));
    }
    steps.extend(points.last().copied());
    c.line(&steps, LATE, 2.0, 1.0, false);
    c.marker(input.threshold, ON_TIME, &format!("threshold {:.4}", input.threshold));
    c.finish()
}

fn importance_chart(runs: &[Assessment]) -> String {
    let names: &[String] = runs.first().map_or(&[], |r| &r.features);
    let mut importance = vec![0.0; names.len()];
    for run in runs {
        for (m, v) in importance.iter_mut().zip(&run.importance) {
            *m += v / runs.len() as f64;
        }
    }
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
    let top = importance.iter().copied().fold(0.0, f64::max).max(1e-12);
    let (w, row) = (460.0, 26.0);
    let h = 40.0 + row * names.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" role="img"><text x="{}" y="18" text-anchor="middle" font-size="14" font-weight="bold">Feature importance</text>"#,
        w / 2.0
    );
    for (i, &f) in order.iter().enumerate() {
        let y = 30.0 + row * i as f64;
        let len = (w - 230.0) * importance[f] / top;
        let _ = write!(
            s,
            r#"<text x="120" y="{:.1}" text-anchor="end" font-size="12">{}</text><rect x="126" y="{y:.1}" width="{len:.1}" height="{:.1}" fill="{ON_TIME}"/><text x="{:.1}" y="{:.1}" font-size="11">{:.5}</text>"#,
            y + 15.0,
            esc(&names[f]),
            row - 6.0,
            130.0 + len,
            y + 15.0,
            importance[f]
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::cv::cross_validate;
    use crate::train::dataset::Dataset;
    use crate::train::fit::{Algorithm, TrainOptions};
    use crate::train::synth::generate;

    #[test]
    fn the_report_is_self_contained_html_with_every_chart() {
        let data = Dataset::of_loans(&generate(3000, 2), "synth.csv");
        let mut opts = TrainOptions::new(Algorithm::Forest, 1);
        opts.trees = 10;
        let runs: Vec<Assessment> = [1, 2]
            .iter()
            .map(|&seed| Assessment::of(seed, &cross_validate(&opts, &data, 3, seed, &|_| {}).unwrap(), &data.labels))
            .collect();
        let summary = DataSummary { path: "synth.csv".into(), source: "synth.csv".into(), rows: 3000, positives: 40 };
        let html = render(&ReportInput {
            title: "forest <test>".into(),
            data: &summary,
            folds: 3,
            runs: &runs,
            threshold: 0.05,
            strategy: "min_expected_cost_out_of_fold",
            costs: DEFAULT_COSTS,
        });
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert_eq!(html.matches("<svg").count(), 6);
        for title in
            ["ROC", "Precision–recall", "Reliability", "Score distribution", "Expected cost", "Feature importance"]
        {
            assert!(html.contains(&format!(">{title}</text>")), "{title}");
        }
        assert!(html.contains("forest &lt;test&gt;"));
        for external in ["<script", "http://", "https://", "@import", "url("] {
            let outside_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
            assert!(!outside_svg_ns.contains(external), "{external}");
        }
    }
}
