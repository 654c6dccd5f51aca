#!/usr/bin/env bash
# What the protocol costs: the same batches scored through `/v1` (JSON
# applications), the Open Inference Protocol with JSON tensors, and OIP with
# binary tensors (tritonclient's default), against a release build of
# `riskserve serve` on 127.0.0.1 (see docs/api.md):
#   build (release) -> temp models dir with the bundled model -> server in the
#   background with a bounded lifetime on 127.0.0.1:0 -> bench/oip_latency.py
#   (one keep-alive client, sequential requests: latency per request and rows
#   per second, per protocol and batch size) -> stop the server (SIGTERM) ->
#   bench/results/<UTC stamp>/ (oip.json, summary.txt, server.log, env.txt).
#
# Needs the tools venv from `.ci/setup` (tritonclient).
# Knobs (environment): REQUESTS (300 per protocol and batch size), BATCHES
#   ("1 100 1000"), MODEL (models/credit-risk/1/model.json), OUT, SKIP_BUILD=1,
#   CARGO_TARGET_DIR, BIN (a riskserve binary to use instead of the release
#   build), SERVER_ARGS, WAIT_QUIET_SECS (0), QUIET_MAX_CORES (0.2).
# Everything targets 127.0.0.1 only; the EXIT trap stops the server by its PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/$STAMP}
MODEL=${MODEL:-$ROOT/models/credit-risk/1/model.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET_DIR/release/riskserve}
REQUESTS=${REQUESTS:-300}
BATCHES=${BATCHES:-"1 100 1000"}
LIFETIME=900
PY="$ROOT/.ci/tools/venv/bin/python"
[ -x "$PY" ] || { echo "run .ci/setup first (it installs tritonclient into .ci/tools/venv)"; exit 2; }

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/oip-bench.XXXXXX)
SERVER=""
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

if [ "${SKIP_BUILD:-0}" != 1 ] && [ "$BIN" = "$TARGET_DIR/release/riskserve" ]; then
    cargo build --release -p riskserve --bin riskserve
fi
wait_quiet | tee "$OUT/quiet.txt"
stage_models "binary: $BIN" "requests: $REQUESTS per protocol and batch; batches: $BATCHES"
start_server
timeout -k 5 600 "$PY" "$ROOT/bench/oip_latency.py" "$ADDR" credit-risk "$REQUESTS" $BATCHES \
    --out "$OUT/oip.json" | tee "$OUT/summary.txt"
stop_server
