//! Each static piece of deploy/ passes the tool that will consume it, and
//! each tool is shown to reject a broken copy, so a check that passes is a
//! check that could have failed.

use super::{deploy_dir, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::tools::tool;

const LINT_TIMEOUT: Duration = Duration::from_secs(60);

/// The files under `dir`, recursively, whose name ends in `suffix`, sorted.
fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn hadolint_passes_the_dockerfile() {
    let hadolint = tool("hadolint");
    run(Command::new(&hadolint).arg(deploy_dir().join("Dockerfile")), LINT_TIMEOUT).ok("hadolint deploy/Dockerfile");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(&bad, "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n").unwrap();
    let ran = run(Command::new(&hadolint).arg(&bad), LINT_TIMEOUT);
    assert!(
        !ran.status.success() && ran.stdout.contains("DL3007"),
        "hadolint lets `:latest` through:\n{}",
        ran.output()
    );
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let validate = tool("kubernetes-validate");
    let manifests = files_under(&deploy_dir().join("kubernetes"), ".yaml");
    assert!(manifests.len() >= 8, "{manifests:?}");
    let ran =
        run(Command::new(&validate).arg("--strict").args(&manifests), LINT_TIMEOUT).ok("kubernetes-validate --strict");
    assert_eq!(
        ran.stderr.matches(" passed for resource ").count() + ran.stdout.matches(" passed for resource ").count(),
        manifests.len(),
        "{}",
        ran.output()
    );

    // A misspelt field is refused, not ignored.
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(deploy_dir().join("kubernetes/shared-volume/deployment.yaml")).unwrap();
    let bad = dir.path().join("deployment.yaml");
    std::fs::write(&bad, good.replace("terminationGracePeriodSeconds:", "terminationGracePeriod:")).unwrap();
    let ran = run(Command::new(&validate).arg("--strict").arg(&bad), LINT_TIMEOUT);
    assert!(!ran.status.success(), "a misspelt field passed:\n{}", ran.output());
}

/// `text` without its comment lines.
fn without_comments(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n")
}

/// The value on the line `key: value` (first match), quotes removed.
fn yaml_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().trim_matches('"'))
}

#[test]
fn both_deployments_drain_before_the_grace_period_ends_and_probe_health() {
    for layout in ["shared-volume", "object-store"] {
        let path = deploy_dir().join("kubernetes").join(layout).join("deployment.yaml");
        let text = without_comments(&std::fs::read_to_string(&path).unwrap());
        let num = |key: &str| -> u64 {
            yaml_value(&text, key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{layout}: no number for {key}"))
        };
        assert!(num("replicas") >= 2, "{layout}");
        let grace = num("terminationGracePeriodSeconds");
        let pre_stop: u64 = text
            .split("command: [\"sleep\", \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{layout}: no preStop sleep"));
        // The drain deadline is the env value after RISKSERVE_SHUTDOWN_TIMEOUT_SECS.
        let drain: u64 = text
            .split("name: RISKSERVE_SHUTDOWN_TIMEOUT_SECS")
            .nth(1)
            .and_then(|rest| yaml_value(rest, "value")?.parse().ok())
            .unwrap_or_else(|| panic!("{layout}: no RISKSERVE_SHUTDOWN_TIMEOUT_SECS"));
        assert!(grace > pre_stop + drain, "{layout}: grace {grace} s <= preStop {pre_stop} s + drain {drain} s");
        assert!(pre_stop > 0);
        // Readiness over gRPC's standard health service, on the gRPC port.
        let grpc_port = text
            .split("name: RISKSERVE_GRPC_LISTEN")
            .nth(1)
            .and_then(|rest| yaml_value(rest, "value")?.rsplit(':').next()?.trim_matches('"').parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{layout}: no RISKSERVE_GRPC_LISTEN"));
        let readiness = text.split("readinessProbe:").nth(1).unwrap_or_else(|| panic!("{layout}: no readinessProbe"));
        let probe_port = readiness.split("grpc:").nth(1).and_then(|rest| yaml_value(rest, "port")?.parse::<u16>().ok());
        assert_eq!(probe_port, Some(grpc_port), "{layout}: readiness probes the gRPC listener");
        assert!(text.contains(&format!("containerPort: {grpc_port}")), "{layout}: the gRPC port is exposed");
        for needed in
            ["path: /v2/health/live", "readOnlyRootFilesystem: true", "runAsNonRoot: true", "limits:", "requests:"]
        {
            assert!(text.contains(needed), "{layout}: missing `{needed}`");
        }
    }
    let object_store = without_comments(
        &std::fs::read_to_string(deploy_dir().join("kubernetes/object-store/deployment.yaml")).unwrap(),
    );
    assert!(object_store.contains("\"--sync-from\", \"s3://") && object_store.contains("emptyDir:"));
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"] {
        assert!(object_store.contains(&format!("key: {var}")), "{var} not from the Secret");
    }
}

#[test]
fn promtool_checks_the_config_and_rules_and_passes_the_rule_tests() {
    let promtool = tool("promtool");
    let prom = deploy_dir().join("prometheus");
    run(Command::new(&promtool).args(["check", "config"]).arg(prom.join("prometheus.yml")), LINT_TIMEOUT)
        .ok("promtool check config");
    let rules = files_under(&prom, ".rules.yml");
    let ran =
        run(Command::new(&promtool).args(["check", "rules"]).args(rules), LINT_TIMEOUT).ok("promtool check rules");
    assert!(
        ran.stdout.contains("SUCCESS: 11 rules found") && ran.stdout.contains("SUCCESS: 4 rules found"),
        "{}",
        ran.output()
    );

    // Every alert has a unit test that expects it to fire.
    let alerts = std::fs::read_to_string(prom.join("riskserve-alerts.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(prom.join("riskserve-alerts.test.yml")).unwrap();
    for alert in alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        let firing = tests.split(&format!("alertname: {alert}\n")).skip(1).any(|after| {
            after.trim_start().starts_with("exp_alerts:\n") && !after.trim_start().starts_with("exp_alerts: []")
        });
        assert!(firing, "no promtool test expects {alert} to fire");
    }
    let ran =
        run(Command::new(&promtool).args(["test", "rules"]).arg(prom.join("riskserve-alerts.test.yml")), LINT_TIMEOUT);
    assert!(ran.status.success() && ran.stdout.contains("SUCCESS"), "{}", ran.output());

    // A rule test that expects the wrong thing fails.
    let dir = tempfile::tempdir().unwrap();
    for f in ["riskserve-recording.rules.yml", "riskserve-alerts.rules.yml"] {
        std::fs::copy(prom.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("wrong.test.yml"),
        tests.replace("instance: \"a:8080\", model: credit-risk}", "instance: \"b:8080\", model: credit-risk}"),
    )
    .unwrap();
    let ran = run(Command::new(&promtool).args(["test", "rules"]).arg(dir.path().join("wrong.test.yml")), LINT_TIMEOUT);
    assert!(!ran.status.success(), "a wrong expectation passed:\n{}", ran.output());
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let analyze = tool("systemd-analyze");
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/riskserve.service")).unwrap();
    for needed in
        ["ProtectSystem=strict", "ReadOnlyPaths=", "NoNewPrivileges=yes", "Restart=on-failure", "DynamicUser=yes"]
    {
        assert!(unit.contains(needed), "missing {needed}");
    }
    assert!(!without_comments(&unit).contains("ExecReload"), "models hot-reload: no ExecReload");
    // verify insists the ExecStart binary exists: point it at the one cargo built.
    let bin = env!("CARGO_BIN_EXE_riskserve");
    assert!(unit.contains("ExecStart=/usr/local/bin/riskserve "));
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        let path = dir.path().join("riskserve.service");
        std::fs::write(&path, text.replace("ExecStart=/usr/local/bin/riskserve ", &format!("ExecStart={bin} ")))
            .unwrap();
        run(Command::new(&analyze).args(["verify", "--man=no"]).arg(&path), LINT_TIMEOUT)
    };
    let ran = verify(&unit);
    // Unknown keys are only warnings (exit 0): any output is a failure.
    assert!(ran.status.success() && ran.stderr.trim().is_empty() && ran.stdout.trim().is_empty(), "{}", ran.output());
    let ran = verify(&unit.replace("NoNewPrivileges=", "NoNewPrivilege="));
    assert!(ran.stderr.contains("Unknown key 'NoNewPrivilege'"), "a misspelt key passed:\n{}", ran.output());
}

#[test]
fn every_riskserve_variable_in_deploy_is_a_setting_the_server_knows() {
    // A misspelt variable would be ignored silently: check each one against
    // the settings `riskserve serve --help` lists.
    let help =
        run(Command::new(env!("CARGO_BIN_EXE_riskserve")).args(["serve", "--help"]), LINT_TIMEOUT).ok("serve --help");
    let mut used = 0;
    for path in files_under(&deploy_dir(), "") {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (at, _) in text.match_indices("RISKSERVE_") {
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            if name == "RISKSERVE_" {
                continue; // `RISKSERVE_*` in prose
            }
            assert!(
                help.stdout.contains(&format!("env: {name}]")) || help.stdout.contains(&format!("env: {name}=")),
                "{}: {name} is not a riskserve setting",
                path.display()
            );
            used += 1;
        }
    }
    assert!(used >= 10, "found only {used} RISKSERVE_ variables");
}
