#!/usr/bin/env bash
# Three riskserve replicas syncing from one S3 store (moto on 127.0.0.1),
# under steady load: 20 versions published (every fifth after an interrupted
# upload, one raced by two publishers), then the store stopped for
# OUTAGE_SECS (default 30, the issue's figure; CI runs the same scenario
# with 5 s). Prints convergence p50/p99/max across replicas, requests,
# failures and manifest bytes per unchanged poll.
#
# It is the integration test `three_replicas_converge_under_load...` with a
# longer outage, so the scenario has one definition. Needs `.ci/setup` (moto).
# Results land in bench/results/<UTC stamp>/replicas.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTAGE_SECS="${OUTAGE_SECS:-30}"
OUT="bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
SERVER="" WORK="$(mktemp -d)"
# shellcheck source=bench/lib.sh
. bench/lib.sh
wait_quiet | tee "$OUT/quiet.txt"
{ uname -a; nproc; git rev-parse HEAD; } >"$OUT/env.txt"
RISKSERVE_SYNC_OUTAGE_SECS="$OUTAGE_SECS" timeout 900 \
    cargo test --locked --test integration three_replicas_converge -- --nocapture --test-threads 1 2>&1 \
    | tee "$OUT/test.log" | grep -oE "three replicas:.*|test result.*"
grep -o "three replicas:.*" "$OUT/test.log" >"$OUT/replicas.txt"
echo "results in $OUT"
