#!/usr/bin/env bash
# riskserve vs ONNX Runtime 1.32 vs scikit-learn predict_proba on the seed
# RF-100 pipeline exported as model.onnx: one thread, nanoseconds per row on
# a 10,000-row batch and on batches of one row; ROUNDS alternating rounds
# (riskserve, then Python), medians. Needs an otherwise idle machine.
#
#   bench/onnx_speed.sh [ROUNDS] [DATA.csv]   (defaults: 5, ../shared/data/peerLoanTest.csv)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${1:-5}"
DATA="${2:-$ROOT/../shared/data/peerLoanTest.csv}"
WORK="$(mktemp -d)"
SERVER=""
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
PY="$ROOT/.ci/tools/bin/oracle-python"
"$PY" "$ROOT/tests/oracle/onnx_models.py" --data "$DATA" --out "$WORK" >/dev/null
(cd "$ROOT" && cargo bench --bench onnx --no-run -q)
wait_quiet
for _ in $(seq "$ROUNDS"); do
    (cd "$ROOT" && ONNX_ORACLE="$WORK" cargo bench --bench onnx -q 2>/dev/null) | grep '^riskserve '
    "$PY" "$ROOT/bench/onnx_speed.py" "$WORK"
done >"$WORK/rounds.txt"
echo "medians of $ROUNDS rounds, ns per row (one thread; data: $DATA):"
"$PY" - "$WORK/rounds.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, what, ns = line.split()
    runs.setdefault((who, what), []).append(float(ns))
for (who, what), v in sorted(runs.items()):
    print(f"{who:10} {what:14} {statistics.median(v):10.0f}")
PY
