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
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6, "six charts");
    let without_svg_namespace = html.replace("http://www.w3.org/2000/svg", "");
    for external in ["<script", "http:", "https:", "<link", "@import", "url(", "src="] {
        assert!(!without_svg_namespace.contains(external), "the report must open offline: found {external}");
    }

    let report = screenshot(
        dir.path(),
        &format!("file://{}", dir.path().join("report.html").display()),
        &dir.path().join("report.png"),
    );
    std::fs::write(dir.path().join("blank.html"), "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = screenshot(
        dir.path(),
        &format!("file://{}", dir.path().join("blank.html").display()),
        &dir.path().join("blank.png"),
    );
    assert_eq!(png_size(&report), (1560, 1500));
    // Drawn charts and text compress far worse than an empty page.
    assert!(report.len() > 10 * blank.len(), "report {} bytes vs blank page {} bytes", report.len(), blank.len());
    if let Ok(keep) = std::env::var("REPORT_SCREENSHOT") {
        std::fs::write(testkit::tools::workspace_root().join(keep), &report).unwrap();
    }
}
