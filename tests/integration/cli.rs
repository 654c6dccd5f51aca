//! The data-science subcommands end to end through the real binary:
//! synth → train (twice: versions 1, 2) → validate → evaluate.

use std::path::Path;
use std::process::{Command, Output};

fn riskserve(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_riskserve")).args(args).current_dir(cwd).env("CI", "true").output().unwrap()
}

fn ok(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn synth_train_validate_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = ok(&riskserve(&["synth", "--rows", "3000", "--seed", "5", "--out", "loans.csv"], d));
    assert!(text.contains("wrote 3000 rows"), "{text}");
    let again = riskserve(&["synth", "--rows", "3000", "--seed", "5", "--out", "again.csv"], d);
    ok(&again);
    assert_eq!(std::fs::read(d.join("loans.csv")).unwrap(), std::fs::read(d.join("again.csv")).unwrap());

    let train = ["train", "--data", "loans.csv", "--models-dir", "models", "--trees", "10", "--folds", "3"];
    let text = ok(&riskserve(&train, d));
    assert!(text.contains("published credit-risk version 1"), "{text}");
    assert!(text.contains("ROC-AUC"), "{text}");
    let text = ok(&riskserve(&[&train[..], &["--algorithm", "logistic"]].concat(), d));
    assert!(text.contains("version 2"), "{text}");
    let names: Vec<String> = std::fs::read_dir(d.join("models/credit-risk"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no staging leftovers: {names:?}");

    let text = ok(&riskserve(&["validate", "models/credit-risk/2/model.json"], d));
    assert!(text.contains("OK") && text.contains("logistic_regression"), "{text}");
    assert!(
        text.contains("inputs          loan_amnt (number 0..=10000000), int_rate (number 0..=1 fraction)"),
        "{text}"
    );

    // A truncated copy fails validation with a reason and a non-zero exit.
    let bytes = std::fs::read(d.join("models/credit-risk/1/model.json")).unwrap();
    std::fs::write(d.join("half.json"), &bytes[..bytes.len() / 2]).unwrap();
    let out = riskserve(&["validate", "half.json"], d);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("incomplete"));

    let out = riskserve(&["evaluate", "--data", "loans.csv", "--folds", "3", "--trees", "10", "--json"], d);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let auc = r["summary"]["roc_auc"]["mean"].as_f64().unwrap();
        assert!(auc > 0.55 && auc <= 1.0, "{auc}");
        assert_eq!(r["folds"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.csv"), "loan_amnt,late\n1,0\n").unwrap();
    let out = riskserve(&["train", "--data", "bad.csv", "--models-dir", "m"], d);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing column `is_late`"));
    let out = riskserve(&["train", "--data", "bad.csv", "--target", "late", "--optional", "lone_amnt"], d);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`lone_amnt` is not a feature column"));
    let out = riskserve(&["serve", "--models-dir", "nowhere", "--listen", "127.0.0.1:0"], d);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn environment_variables_configure_the_server_and_json_logs_are_json() {
    use crate::common::*;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    commit(&models, MODEL, 1, bundled_model());
    let env = [("RISKSERVE_MAX_BATCH", "2"), ("RISKSERVE_LOG_FORMAT", "json")];
    let server = spawn_binary(&models, &[], &env);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reply = runtime.block_on(send(
        server.addr,
        "POST",
        PREDICT,
        &[("content-type", "application/json")],
        format!("{{\"instances\":[{ROW},{ROW},{ROW}]}}").as_bytes(),
    ));
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("the limit is 2"), "{}", reply.error());
    // Every log line is one JSON object with a level and a message.
    assert!(server.startup_log.len() >= 3, "{:?}", server.startup_log);
    for line in &server.startup_log {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(server.startup_log.iter().any(|l| l.contains("loaded model version")));
}

/// Regression guard for the `007` rule in the commands that write and check
/// files: `train` counts only canonical version directories and says why it
/// ignores the rest, and `validate` refuses a file the server will not serve.
#[test]
fn train_and_validate_follow_the_leading_zeros_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stray = d.join("models/credit-risk/007/model.json");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/credit-risk/1/model.json");
    std::fs::copy(bundled, &stray).unwrap();
    ok(&riskserve(&["synth", "--rows", "2000", "--seed", "3", "--out", "loans.csv"], d));

    let out = riskserve(&["train", "--data", "loans.csv", "--models-dir", "models", "--trees", "5", "--folds", "2"], d);
    let text = ok(&out);
    assert!(text.contains("published credit-risk version 1 "), "{text}");
    assert!(d.join("models/credit-risk/1/model.json").is_file());
    assert!(!d.join("models/credit-risk/8").exists(), "007 is not version 7");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: credit-risk/007") && stderr.contains("leading zeros"), "{stderr}");

    let out = riskserve(&["validate", "models/credit-risk/007/model.json"], d);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("will not serve it") && stderr.contains("leading zeros"), "{stderr}");
}
