//! deploy/Dockerfile built and run for real with podman: the
//! `runtime-prebuilt` target around the binary cargo built, on the
//! debootstrap base image `.ci/setup` imports (no registry is reachable).
//! The container serves the bundled model from a host directory mounted
//! read-only at /models, on a read-only root file system, as its non-root
//! user; a version published into the host directory is swapped in by the
//! container's watcher; the image's HEALTHCHECK passes; `podman stop`
//! drains it and it exits 0.

use super::{deploy_dir, run, wait_for_exit};
use crate::common::{bundled_model, commit, MODEL, PREDICT, ROW};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::tools::{tool, workspace_root};

/// The base image `.ci/setup.d/30-deploy.sh` makes with debootstrap.
const BASE_IMAGE: &str = "localhost/debian:bookworm-minbase";
const BUILD_TIMEOUT: Duration = Duration::from_secs(240);
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);
/// Start-up and swap bounds: a container start on vfs storage is slow here.
const CONTAINER_WAIT: Duration = Duration::from_secs(60);

/// podman with the configuration `.ci/setup` wrote (vfs storage, runc,
/// cgroupfs, no default ulimits) rather than anything in /etc.
fn podman() -> Command {
    let conf = workspace_root().join(".ci/tools/deploy");
    for f in ["containers.conf", "storage.conf"] {
        assert!(conf.join(f).exists(), "{} is missing: run `.ci/setup`", conf.join(f).display());
    }
    let mut cmd = Command::new(tool("podman"));
    cmd.env("CONTAINERS_CONF", conf.join("containers.conf")).env("CONTAINERS_STORAGE_CONF", conf.join("storage.conf"));
    cmd
}

/// Removes the container and the image when the test ends, passed or not.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "--force", "--time", "0", &self.container]).output();
        let _ = podman().args(["rmi", "--force", &self.image]).output();
    }
}

fn chmod_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The build context, laid out as the repository's: its `.dockerignore`,
/// the binary where the Dockerfile's default `BINARY` expects a release
/// build (so the ignore file's exception for it is exercised), and the
/// bundled model. The test binary's debug info (~90 % of its size) is left
/// out: with vfs storage every layer is a full copy.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("context");
    std::fs::create_dir_all(ctx.join("target/release")).unwrap();
    std::fs::copy(workspace_root().join(".dockerignore"), ctx.join(".dockerignore")).unwrap();
    run(
        Command::new(tool("objcopy"))
            .arg("--strip-debug")
            .arg(env!("CARGO_BIN_EXE_riskserve"))
            .arg(ctx.join("target/release/riskserve")),
        PODMAN_TIMEOUT,
    )
    .ok("objcopy --strip-debug");
    commit(&ctx.join("models"), MODEL, 1, bundled_model());
    ctx
}

#[test]
fn the_image_builds_serves_the_mounted_models_and_hot_swaps_a_published_version() {
    let started = Instant::now();
    let tag = std::process::id();
    let cleanup =
        Cleanup { container: format!("riskserve-test-{tag}"), image: format!("localhost/riskserve-test:{tag}") };
    let ran = run(podman().args(["image", "exists", BASE_IMAGE]), PODMAN_TIMEOUT);
    assert!(ran.status.success(), "the base image {BASE_IMAGE} is missing: run `.ci/setup`\n{}", ran.output());

    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    run(
        podman()
            .args(["build", "--format", "docker", "--layers=false", "--pull=never", "--target", "runtime-prebuilt"])
            .args(["--build-arg", &format!("RUNTIME_BASE={BASE_IMAGE}")])
            .args(["--tag", &cleanup.image, "--file"])
            .arg(deploy_dir().join("Dockerfile"))
            .arg(&ctx),
        BUILD_TIMEOUT,
    )
    .ok("podman build");
    let built = started.elapsed();

    let inspect = run(
        podman().args([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}|{{json .Config.Healthcheck}}",
            &cleanup.image,
        ]),
        PODMAN_TIMEOUT,
    )
    .ok("podman image inspect");
    assert!(inspect.stdout.starts_with("65532:65532|"), "not the non-root user: {}", inspect.stdout);
    assert!(inspect.stdout.contains("/v2/health/live"), "no HEALTHCHECK on /v2/health/live: {}", inspect.stdout);

    // The host's models directory, readable by the container's user.
    let models = dir.path().join("models");
    commit(&models, MODEL, 1, bundled_model());
    for d in [dir.path(), &models, &models.join(MODEL)] {
        chmod_readable(d);
    }
    // Host networking on a free loopback port: the HEALTHCHECK reads the
    // port from RISKSERVE_LISTEN, so it cannot be :0.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = podman();
    cmd.args(["run", "--rm", "--name", &cleanup.container, "--network", "host", "--read-only"])
        .args(["--env", &format!("RISKSERVE_LISTEN=127.0.0.1:{port}"), "--env", "RISKSERVE_LOG_FORMAT=text"])
        .args(["--env", "RISKSERVE_RESCAN_INTERVAL_SECS=1", "--volume"])
        .arg(format!("{}:/models:ro", models.display()))
        .arg(&cleanup.image);
    let server = testkit::spawn(cmd, CONTAINER_WAIT, None).unwrap_or_else(|e| panic!("podman run: {e}"));
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ready = crate::common::send(addr, "GET", "/v2/health/ready", &[], b"").await;
        assert_eq!(ready.status, 200, "{}", ready.text());
        let first =
            crate::common::send(addr, "POST", PREDICT, &[("content-type", "application/json")], ROW.as_bytes()).await;
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(first.json()["model_version"], 1);

        // Publish version 2 into the host directory; the watcher in the
        // container swaps it in, and every answer meanwhile is a 200.
        commit(&models, MODEL, 2, bundled_model());
        let published = Instant::now();
        let deadline = published + CONTAINER_WAIT;
        let mut answered = 0;
        loop {
            let r = crate::common::send(addr, "POST", PREDICT, &[("content-type", "application/json")], ROW.as_bytes())
                .await;
            assert_eq!(r.status, 200, "during the swap: {}", r.text());
            answered += 1;
            if r.json()["model_version"] == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "version 2 not served {CONTAINER_WAIT:?} after publishing; log:\n{}",
                server.log.tail(30)
            );
        }
        eprintln!(
            "container: built in {built:?}; version 2 served {:?} after publishing ({answered} requests, all 200)",
            published.elapsed()
        );
    });

    // The image's HEALTHCHECK (bash /dev/tcp, no curl in the image) passes.
    let health = run(podman().args(["healthcheck", "run", &cleanup.container]), PODMAN_TIMEOUT);
    assert!(health.status.success(), "HEALTHCHECK failed: {}", health.output());

    // `podman stop` (what Kubernetes does after preStop) sends SIGTERM to
    // the server as PID 1: it drains and exits 0, well before the kill.
    run(podman().args(["stop", "--time", "30", &cleanup.container]), PODMAN_TIMEOUT).ok("podman stop");
    let mut server = server;
    let status = wait_for_exit(&mut server.child.0, PODMAN_TIMEOUT).expect("podman run ends after podman stop");
    assert!(status.success(), "exit {status}; log:\n{}", server.log.tail(20));
    assert!(server.log.count("all connections drained") == 1, "no drain in the log:\n{}", server.log.tail(20));
    drop(cleanup);
    eprintln!("container: whole test {:?}", started.elapsed());
}
