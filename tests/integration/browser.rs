//! The web form at `/`, used in a real browser: headless Chromium (Debian's
//! build, installed by `.ci/setup.d/50-browser.sh`) driven by Playwright
//! for Python in `tests/browser/form.py`, against the real server. The
//! script fills in the form, submits, compares what is shown with the API's
//! answer for the same input, checks the server's validation messages land
//! next to their fields, and, after this test commits version 2, that the
//! next submission names it (and its decision band) without reloading the
//! page.
//!
//! The script asks for the new version on stdout (`COMMIT 2`) and is told
//! it serves on stdin (`SERVING 2`); every wait is bounded. Set
//! `FORM_SCREENSHOT=docs/form.png` to keep the screenshot it takes.

use crate::common::{bundled_payload, commit, twelve_feature_model, TestServer, MODEL};
use riskserve::model::format::{encode, Bands};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;

/// Bound on each step of the script (Chromium's start on a busy machine is
/// the slowest).
const STEP: Duration = Duration::from_secs(180);

/// The script as a child process, killed on drop; its stdout lines arrive on
/// a channel, its stderr is kept for the failure message.
struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Script {
    fn start(args: &[&std::ffi::OsStr]) -> Script {
        let python = testkit::tools::python_in("venv");
        let script = testkit::tools::workspace_root().join("tests/browser/form.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tests/browser/form.py");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdin = child.stdin.take().expect("piped stdin");
        Script { child, stdin, lines, stderr }
    }

    /// The next line the script prints, or a panic with its error output if
    /// it ends or says nothing within [`STEP`].
    async fn next_line(&mut self) -> String {
        match tokio::time::timeout(STEP, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                let status = self.child.wait().ok();
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
                let err = stderr.join().unwrap_or_default();
                panic!("tests/browser/form.py ended ({status:?}) before PASS:\n{err}");
            }
            Err(_) => panic!("tests/browser/form.py said nothing for {STEP:?}"),
        }
    }

    fn answer(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()).expect("write to the script");
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bundled model as version 2, with approve / review / decline bands.
fn banded_model() -> Vec<u8> {
    let mut payload = bundled_payload();
    payload.meta.model_version = 2;
    let names = ["approve", "review", "decline"].map(String::from).to_vec();
    payload.meta.decision.bands = Some(Bands { names, cutoffs: vec![0.05, 0.10] });
    encode(&payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_officer_scores_sees_reasons_fixes_a_field_and_gets_the_new_version() {
    let chromium = testkit::tools::tool("chromium");
    let server = TestServer::start().await;
    let shots = tempfile::tempdir().unwrap();
    let shot = shots.path().join("form.png");
    let url = format!("http://{}", server.addr);
    let mut script = Script::start(&[url.as_ref(), chromium.as_os_str(), shot.as_os_str()]);
    loop {
        let line = script.next_line().await;
        eprintln!("form.py: {line}");
        match line.as_str() {
            "COMMIT 2" => {
                commit(&server.models, MODEL, 2, &banded_model());
                server.wait_serving(2).await;
                script.answer("SERVING 2");
            }
            "COMMIT 3" => {
                commit(&server.models, MODEL, 3, &twelve_feature_model());
                server.wait_serving(3).await;
                script.answer("SERVING 3");
            }
            "PASS" => break,
            _ => {}
        }
    }
    let png = std::fs::read(&shot).expect("the script saved a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes, not a screenshot", png.len());
    if let Some(keep) = std::env::var_os("FORM_SCREENSHOT") {
        std::fs::write(&keep, &png).expect("write FORM_SCREENSHOT");
    }
}
