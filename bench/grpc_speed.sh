#!/usr/bin/env bash
# Single-row throughput and p99 over gRPC next to HTTP, with the same load
# generator (swapbench, closed loop, steady window only, no swaps) against a
# release build of `riskserve serve --grpc-listen` on 127.0.0.1:
#   build (release: the server and swapbench) -> stage a temp models dir
#   with the bundled model -> per round, HTTP then gRPC: swapbench starts the
#   server on 127.0.0.1:0, drives CLIENTS clients (HTTP: one keep-alive
#   HTTP/1.1 connection each; gRPC: ModelInfer on one HTTP/2 connection
#   each, one call at a time, i.e. CLIENTS concurrent streams), stops it ->
#   bench/results/<UTC stamp>/ (grpc_speed.tsv, one swapbench JSON per run).
#
# Knobs (environment): CLIENTS (64), CLIENT_THREADS (2), ROUNDS (3),
#   STEADY_SECS (15), WARMUP_SECS (2), OUT, SKIP_BUILD=1, CARGO_TARGET_DIR.
# The load generator runs on the same cores as the server: compare the two
# protocols within one run, on an otherwise idle machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/$STAMP}
CLIENTS=${CLIENTS:-64}
CLIENT_THREADS=${CLIENT_THREADS:-2}
ROUNDS=${ROUNDS:-3}
STEADY_SECS=${STEADY_SECS:-15}
WARMUP_SECS=${WARMUP_SECS:-2}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/riskserve
BENCH=$TARGET_DIR/release/swapbench

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/grpc_speed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --locked -p riskserve -p swapbench --bins
fi
mkdir -p "$WORK/models/credit-risk/1"
cp "$ROOT/models/credit-risk/1/model.json" "$WORK/models/credit-risk/1/"

printf 'round\tprotocol\treq_per_s\tp50_ms\tp99_ms\tfailures\n' | tee "$OUT/grpc_speed.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for protocol in http grpc; do
        flags=()
        [ "$protocol" = grpc ] && flags=(--grpc)
        # swapbench starts (and stops) the server itself on 127.0.0.1:0.
        timeout -k 5 $(( STEADY_SECS + WARMUP_SECS + 60 )) "$BENCH" --server-bin "$BIN" \
            --models-dir "$WORK/models" --model-name credit-risk \
            --clients "$CLIENTS" --client-threads "$CLIENT_THREADS" \
            --warmup-secs "$WARMUP_SECS" --steady-secs "$STEADY_SECS" \
            --duration-secs $(( STEADY_SECS + WARMUP_SECS )) --max-secs $(( STEADY_SECS + WARMUP_SECS + 20 )) \
            --min-swaps 0 --quiet --out "$OUT/$protocol-$round.json" "${flags[@]}" >"$OUT/$protocol-$round.txt" 2>&1 || true
        awk -v r="$round" -v p="$protocol" '
            /^failures/ { f = $2 }
            /^steady  / { for (i = 1; i <= NF; i++) { if ($i == "req/s") rps = $(i - 1); if ($i == "p50") p50 = $(i + 1); if ($i == "p99") p99 = $(i + 1) } }
            END { printf "%s\t%s\t%s\t%s\t%s\t%s\n", r, p, rps, p50, p99, f }' "$OUT/$protocol-$round.txt" | tee -a "$OUT/grpc_speed.tsv"
    done
done
echo "results: $OUT/grpc_speed.tsv"
