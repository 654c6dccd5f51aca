#!/usr/bin/env bash
# Abuse cases under steady good traffic, against a release build of
# `riskserve serve` on 127.0.0.1 (see bench/README.md, "Hostile clients"):
#   build (release: the server and the hostile binary) -> stage a temp models
#   dir with the bundled model -> raise the open-file limit -> start the
#   server in the background with a bounded lifetime on 127.0.0.1:0 -> run
#   `hostile` (16 good keep-alive clients; per case: 3 s baseline, the case,
#   the HTTP cases and the grpc-* HTTP/2 cases against --grpc-listen;
#   a commit timed to serve, RSS settle) -> stop the server (SIGTERM) ->
#   bench/results/<UTC stamp>/ (hostile.json, summary.txt, server.log, env.txt).
#
# Knobs (environment): CASE_SECS (10; 2 for a quick check), BASELINE_SECS (3),
#   CASES (comma-separated subset, default all), GOOD_CLIENTS (16),
#   CLIENT_THREADS (2), NOFILE (8192: `ulimit -n` wanted for server and
#   harness), MODEL (models/credit-risk/1/model.json), OUT, SKIP_BUILD=1,
#   CARGO_TARGET_DIR, EXTRA_ARGS (more hostile flags), SERVER_ARGS (more
#   `serve` flags), WAIT_QUIET_SECS (0), QUIET_MAX_CORES (0.2).
# Everything targets 127.0.0.1 only; the server is the only process this
# script starts in the background, and the EXIT trap stops it by its PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/$STAMP}
CASE_SECS=${CASE_SECS:-10}
BASELINE_SECS=${BASELINE_SECS:-3}
GOOD_CLIENTS=${GOOD_CLIENTS:-16}
CLIENT_THREADS=${CLIENT_THREADS:-2}
NOFILE=${NOFILE:-8192}
MODEL=${MODEL:-$ROOT/models/credit-risk/1/model.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/riskserve
HOSTILE=$TARGET_DIR/release/hostile
# 13 cases × (baseline + case + task joins + commit + RSS settle + scrapes), plus start-up.
MAX_SECS=$(( 13 * (${BASELINE_SECS%.*} + ${CASE_SECS%.*} + 45) + 60 ))
# The server lives at most this long even if this script is killed hard.
LIFETIME=$(( MAX_SECS + 60 ))

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/hostile.XXXXXX)
SERVER=""   # the `timeout` wrapper's PID, stopped by cleanup (bench/lib.sh)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -p riskserve -p swapbench --bins
fi

# connection-flood holds 2,000 sockets: raise the soft open-file limit (for
# the server and the harness, both children of this shell) as far as the
# hard limit allows; `hostile` caps the case below its own limit and says so.
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -ge "$NOFILE" ]; then
    ulimit -n "$NOFILE" || true
else
    ulimit -n "$HARD" || true
fi
echo "open-file limit: $(ulimit -n) (wanted $NOFILE, hard $HARD)"

wait_quiet | tee "$OUT/quiet.txt"
stage_models "open-file limit: $(ulimit -n)"
# The grpc-* cases (HTTP/2 abuse) need the gRPC listener.
SERVER_ARGS="${SERVER_ARGS:-} --grpc-listen 127.0.0.1:0"
start_server
GRPC_ADDR=$(grep -m1 -o 'riskserve gRPC listening.*grpc_addr=127\.0\.0\.1:[0-9]*' "$OUT/server.log" | grep -o '127\.0\.0\.1:[0-9]*$')

rc=0
timeout -k 5 "$MAX_SECS" "$HOSTILE" \
    --url "http://$ADDR" --server-pid "$PID" --models-dir "$WORK/models" --model-name credit-risk \
    --grpc-addr "$GRPC_ADDR" --good-clients "$GOOD_CLIENTS" --client-threads "$CLIENT_THREADS" \
    --case-secs "$CASE_SECS" --baseline-secs "$BASELINE_SECS" ${CASES:+--cases "$CASES"} \
    --out "$OUT/hostile.json" ${EXTRA_ARGS:-} | tee "$OUT/summary.txt" || rc=$?

stop_server
echo "report: $OUT/hostile.json (hostile exit $rc: 0 = every goal met, 1 = a goal missed, 2 = harness error)"
exit "$rc"
