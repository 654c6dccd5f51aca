//! The HTML report: `riskserve evaluate --report` on synthetic loans writes
//! one self-contained file, and headless Chromium renders it offline (a
//! file:// URL, networking disabled) into a screenshot with the charts drawn.
//! Set `REPORT_SCREENSHOT=docs/report.png` to keep the screenshot.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn riskserve(cwd: &Path, args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_riskserve")).args(args).current_dir(cwd).env("CI", "true").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "riskserve {args:?}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// Screenshots `url` with headless Chromium; returns the PNG's bytes.
fn screenshot(dir: &Path, url: &str, png: &Path) -> Vec<u8> {
    let chromium = testkit::tools::tool("chromium");
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", png.display()),
            "--window-size=1560,1500",
            url,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded wait: Chromium exits once the screenshot is written.
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish a screenshot within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
}

/// `<dir>/<name>.html`, checked to have `charts` charts and nothing that
/// loads from elsewhere (scripts, styles, images, fonts), rendered by
/// Chromium; the screenshot's bytes.
fn rendered_report(dir: &Path, name: &str, charts: usize) -> Vec<u8> {
    let html = std::fs::read_to_string(dir.join(format!("{name}.html"))).unwrap();
    assert_eq!(html.matches("<svg").count(), charts, "{name}.html");
    let without_svg_namespace = html.replace("http://www.w3.org/2000/svg", "");
    for external in ["<script", "http:", "https:", "<link", "@import", "url(", "src="] {
        assert!(!without_svg_namespace.contains(external), "the report must open offline: found {external}");
    }
    let url = format!("file://{}", dir.join(format!("{name}.html")).display());
    let png = screenshot(dir, &url, &dir.join(format!("{name}.png")));
    assert_eq!(png_size(&png), (1560, 1500));
    png
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn evaluate_writes_a_self_contained_report_that_chromium_renders() {
    let dir = tempfile::tempdir().unwrap();
    riskserve(dir.path(), &["synth", "--rows", "4000", "--seed", "3", "--out", "loans.csv"]);
    let table = riskserve(
        dir.path(),
        &[
            "evaluate",
            "--data",
            "loans.csv",
            "--folds",
            "3",
            "--algorithm",
            "forest",
            "--trees",
            "10",
            "--seeds",
            "1,2",
            "--report",
            "report.html",
        ],
    );
    assert!(table.contains("| random_forest | calibrated ("), "{table}");
    assert!(table.contains("report written to report.html"), "{table}");
    let report = rendered_report(dir.path(), "report", 6);
    std::fs::write(dir.path().join("blank.html"), "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = screenshot(
        dir.path(),
        &format!("file://{}", dir.path().join("blank.html").display()),
        &dir.path().join("blank.png"),
    );
    // Drawn charts and text compress far worse than an empty page.
    assert!(report.len() > 10 * blank.len(), "report {} bytes vs blank page {} bytes", report.len(), blank.len());
    if let Ok(keep) = std::env::var("REPORT_SCREENSHOT") {
        std::fs::write(testkit::tools::workspace_root().join(keep), &report).unwrap();
    }
}

/// `riskserve drift` on a trained version: recent applications like the
/// training ones read as stable; with interest rates 8 points higher and
/// incomes halved, those two and the score read `act`, and the HTML report
/// (a chart per feature, the PSI table) opens offline and renders. Set
/// `DRIFT_SCREENSHOT=docs/drift-report.png` to keep the screenshot.
#[test]
fn drift_compares_recent_applications_with_the_training_reference_in_a_report() {
    use riskserve::model::input::num;
    use riskserve::train::dataset::write_csv;
    let dir = tempfile::tempdir().unwrap();
    riskserve(dir.path(), &["synth", "--rows", "4000", "--seed", "3", "--out", "loans.csv"]);
    riskserve(dir.path(), &["train", "--data", "loans.csv", "--folds", "3", "--trees", "10", "--models-dir", "models"]);
    let recent = riskserve::train::synth::generate(3_000, 11);
    write_csv(&dir.path().join("recent.csv"), &recent, &[]).unwrap();
    let drift = |csv: &str| {
        let args = ["drift", "--model-dir", "models/credit-risk/1", "--data", csv, "--out", "drift.html"];
        riskserve(dir.path(), &args)
    };
    let psi_lines = |table: &str| -> Vec<(String, f64, String)> {
        table
            .lines()
            .filter_map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                match parts[..] {
                    [name, psi, reading] => Some((name.to_string(), psi.parse().ok()?, reading.to_string())),
                    _ => None,
                }
            })
            .collect()
    };
    let table = drift("recent.csv");
    assert!(
        table.contains("credit-risk version 1: 3000 applications from recent.csv against 4000 training rows"),
        "{table}"
    );
    let stable = psi_lines(&table);
    assert_eq!(stable.len(), 11, "the score and ten features: {table}");
    assert!(stable.iter().all(|(_, psi, reading)| *psi < 0.1 && reading == "stable"), "{table}");

    let shifted: Vec<_> = recent
        .into_iter()
        .map(|(mut app, y)| {
            app.numeric[num::INT_RATE] = app.numeric[num::INT_RATE].map(|r| r + 0.08);
            app.numeric[num::ANNUAL_INC] = app.numeric[num::ANNUAL_INC].map(|i| (i / 2.0).round());
            (app, y)
        })
        .collect();
    write_csv(&dir.path().join("shifted.csv"), &shifted, &[]).unwrap();
    let table = drift("shifted.csv");
    assert!(table.contains("report written to drift.html"), "{table}");
    for (name, psi, reading) in psi_lines(&table) {
        let moved = ["score", "int_rate", "annual_inc"].contains(&name.as_str());
        assert_eq!(reading == "act", moved, "{name}: {psi} {reading}\n{table}");
        assert!(moved || psi < 0.1, "{table}");
    }
    // A chart for the score and each feature.
    let png = rendered_report(dir.path(), "drift", 11);
    if let Ok(keep) = std::env::var("DRIFT_SCREENSHOT") {
        std::fs::write(testkit::tools::workspace_root().join(keep), &png).unwrap();
    }
}
