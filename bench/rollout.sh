#!/usr/bin/env bash
# Rollouts under load, against a release build of `riskserve serve` on
# 127.0.0.1 (see docs/rollouts.md): build -> stage a temp models dir with
# the bundled model -> start the server in the background with a bounded
# lifetime on 127.0.0.1:0 -> run the `rollout` harness (CLIENTS keep-alive
# clients, keys from a fixed pool per client) through its four scenarios:
#   1. `stable = N` rollback to a warm version, toggled TOGGLES times;
#   2. a good canary at 10 %, then promoted;
#   3. bad canaries (all high_risk; 20 x slower) until reverted;
#   4. a shadow at full traffic: p99 without / with, agreement vs offline.
# -> stop the server (SIGTERM) -> bench/results/rollout-<UTC stamp>/.
#
# Knobs (environment): SCENARIOS (rollback,good_canary,bad_canary,shadow:
#   a subset, e.g. SCENARIOS=shadow to repeat the shadow alone), CLIENTS (32),
#   PHASE_SECS (10), TOGGLES (20),
#   MODEL (models/credit-risk/1/model.json), OUT, SKIP_BUILD=1,
#   CARGO_TARGET_DIR, PROFILE (release; debug = a quick check of the harness),
#   SERVER_ARGS, WAIT_QUIET_SECS (0), QUIET_MAX_CORES (0.2),
#   SHADOW_CONTROL=1 (scenario 4 as an A/A control: no shadow in either phase),
#   RATE (open loop: the clients together send RATE requests a second on a
#   fixed schedule, latency from the scheduled time; default: closed loop,
#   each client sends when answered, so the server runs saturated).
# Everything targets 127.0.0.1 only; the server is the only process this
# script starts in the background, and the EXIT trap stops it by its PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/rollout-$STAMP}
CLIENTS=${CLIENTS:-32}
PHASE_SECS=${PHASE_SECS:-10}
TOGGLES=${TOGGLES:-20}
SCENARIOS=${SCENARIOS:-rollback,good_canary,bad_canary,shadow}
MODEL=${MODEL:-$ROOT/models/credit-risk/1/model.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release}
BIN=$TARGET_DIR/$PROFILE/riskserve
BENCH=$TARGET_DIR/$PROFILE/rollout
LIFETIME=$(( PHASE_SECS * 6 + 240 ))

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/rolloutbench.XXXXXX)
SERVER=""
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -p riskserve -p swapbench --bins
fi

wait_quiet | tee "$OUT/quiet.txt"
stage_models "clients: $CLIENTS, rate: ${RATE:-closed loop}, phase: ${PHASE_SECS}s, toggles: $TOGGLES, scenarios: $SCENARIOS" \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start_server

rc=0
timeout -k 5 "$LIFETIME" "$BENCH" --addr "$ADDR" --models-dir "$WORK/models" \
    --clients "$CLIENTS" --phase-secs "$PHASE_SECS" --toggles "$TOGGLES" --scenarios "$SCENARIOS" \
    --server-pid "$PID" $([ "${SHADOW_CONTROL:-0}" = 1 ] && echo --shadow-control) ${RATE:+--rate "$RATE"} --out "$OUT/rollout.json" | tee "$OUT/summary.txt" || rc=$?

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt"
stop_server
echo "report: $OUT/rollout.json (rollout exit $rc)"
exit "$rc"
