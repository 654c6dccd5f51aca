#!/usr/bin/env bash
# Hot-swap under load, against a release build of `riskserve serve` on
# 127.0.0.1 (see bench/README.md):
#   build (release: the server and the swapbench binary) -> stage a temp
#   models dir with the bundled model -> start the server in the background
#   with a bounded lifetime on 127.0.0.1:0 -> run swapbench (64 keep-alive
#   clients; 30 s steady, then a commit every 100 ms until >= 1,000 commits,
#   with a half-written file, a corrupt file and a rollback every 25 steps)
#   -> stop the server (SIGTERM, graceful) -> bench/results/<UTC stamp>/.
#
# Knobs (environment): CLIENTS (64), CLIENT_THREADS (2), WARMUP_SECS (1),
#   STEADY_SECS (30), DURATION_SECS (141), MIN_SWAPS (1000), MAX_SECS (400),
#   COMMIT_EVERY_MS (100), BAD_EVERY (25), MODEL (models/credit-risk/1/model.json),
#   OUT (bench/results/<stamp>), SKIP_BUILD=1, CARGO_TARGET_DIR, EXTRA_ARGS
#   (more swapbench flags), SERVER_ARGS (more `serve` flags), WAIT_QUIET_SECS
#   (wait up to this long for an idle machine first; 0), QUIET_MAX_CORES (0.2),
#   SCHEMA_EVOLUTION=1 (versions alternate between the ten-input model and a
#   twelve-input one the script trains with `synth --extra-features` and
#   `train --optional term,verification_status`; half the clients' bodies
#   carry the twelve fields; both kinds must get 200 throughout),
#   IMPORTED=1 (versions alternate between the bundled forest and an XGBoost
#   model the real XGBoost trains on the same ten fields, served as
#   xgboost.json; needs .ci/setup's oracle, or ORACLE_PYTHON),
#   GRPC=1 (the server also listens for gRPC and the clients call ModelInfer
#   there, the same applications as typed tensors, instead of HTTP).
# Everything targets 127.0.0.1 only; the server is the only process this
# script starts in the background, and the EXIT trap stops it by its PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/$STAMP}
CLIENTS=${CLIENTS:-64}
CLIENT_THREADS=${CLIENT_THREADS:-2}
WARMUP_SECS=${WARMUP_SECS:-1}
STEADY_SECS=${STEADY_SECS:-30}
DURATION_SECS=${DURATION_SECS:-141}
MIN_SWAPS=${MIN_SWAPS:-1000}
MAX_SECS=${MAX_SECS:-400}
COMMIT_EVERY_MS=${COMMIT_EVERY_MS:-100}
BAD_EVERY=${BAD_EVERY:-25}
MODEL=${MODEL:-$ROOT/models/credit-risk/1/model.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/riskserve
BENCH=$TARGET_DIR/release/swapbench
# The server lives at most this long even if this script is killed hard.
LIFETIME=$(( ${MAX_SECS%.*} + 120 ))

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/swapbench.XXXXXX)
SERVER=""   # the `timeout` wrapper's PID, stopped by cleanup (bench/lib.sh)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -p riskserve -p swapbench --bins
fi

EVOLUTION_ARGS=()
if [ "${SCHEMA_EVOLUTION:-0}" = 1 ]; then
    # A twelve-input model, and requests with its fields.
    "$BIN" synth --rows 20000 --seed 7 --extra-features --out "$WORK/loans12.csv" >/dev/null
    "$BIN" train --data "$WORK/loans12.csv" --model-name credit-risk --models-dir "$WORK/train12" \
        --optional term,verification_status --folds 2 >"$OUT/train12.txt"
    TWELVE=$WORK/train12/credit-risk/1/model.json
    EVOLUTION_ARGS=(--source-model "$MODEL" --alternate-model "$TWELVE" --more-rows-csv "$WORK/loans12.csv")
fi

if [ "${IMPORTED:-0}" = 1 ]; then
    # An XGBoost model of the ten loan fields, trained by the real library.
    "$BIN" synth --rows 20000 --seed 7 --out "$WORK/loans.csv" >/dev/null
    mkdir -p "$WORK/native"
    "${ORACLE_PYTHON:-$ROOT/.ci/tools/bin/oracle-python}" "$ROOT/tests/oracle/native_models.py" \
        --data "$WORK/loans.csv" --out "$WORK/native" >"$OUT/native.txt"
    EVOLUTION_ARGS=(--source-model "$MODEL" --alternate-model "$WORK/native/xgboost.json")
fi

wait_quiet | tee "$OUT/quiet.txt"
stage_models
if [ "${SCHEMA_EVOLUTION:-0}" = 1 ]; then
    # Both schemas are loaded before traffic starts (version 2: twelve inputs).
    mkdir -p "$WORK/models/credit-risk/2"
    cp "$TWELVE" "$WORK/models/credit-risk/2/model.json"
fi
if [ "${IMPORTED:-0}" = 1 ]; then
    mkdir -p "$WORK/models/credit-risk/2"
    cp "$WORK/native/xgboost.json" "$WORK/models/credit-risk/2/"
fi
GRPC_ARGS=()
if [ "${GRPC:-0}" = 1 ]; then
    SERVER_ARGS="${SERVER_ARGS:-} --grpc-listen 127.0.0.1:0"
fi
start_server
if [ "${GRPC:-0}" = 1 ]; then
    GRPC_ADDR=$(grep -m1 -o 'riskserve gRPC listening.*grpc_addr=127\.0\.0\.1:[0-9]*' "$OUT/server.log" | grep -o '127\.0\.0\.1:[0-9]*$')
    GRPC_ARGS=(--grpc-addr "$GRPC_ADDR")
fi

rc=0
timeout -k 5 "$LIFETIME" "$BENCH" \
    --url "http://$ADDR/v1/models/credit-risk/predict" --server-pid "$PID" \
    --models-dir "$WORK/models" --model-name credit-risk \
    --clients "$CLIENTS" --client-threads "$CLIENT_THREADS" \
    --warmup-secs "$WARMUP_SECS" --steady-secs "$STEADY_SECS" --duration-secs "$DURATION_SECS" \
    --min-swaps "$MIN_SWAPS" --max-secs "$MAX_SECS" \
    --commit-every-ms "$COMMIT_EVERY_MS" --bad-every "$BAD_EVERY" \
    --out "$OUT/swapbench.json" "${EVOLUTION_ARGS[@]}" "${GRPC_ARGS[@]}" ${EXTRA_ARGS:-} | tee "$OUT/summary.txt" || rc=$?

stop_server
echo "report: $OUT/swapbench.json (swapbench exit $rc: 0 = every goal met, 1 = a goal missed)"
exit "$rc"
