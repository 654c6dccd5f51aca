#!/usr/bin/env bash
# Imported models against their own libraries (issue 26), one thread, same
# models, same rows, same run, rounds alternating:
#   1. trains XGBoost (depth 6) and LightGBM (31 leaves), 100 trees each,
#      with native categoricals, on DATA (the real sample by default), with
#      tests/oracle/native_models.py in its own venv (bench/.tools/imports-venv:
#      the oracle's pins plus Treelite 4.8.1 and TL2cgen 1.0.0);
#   2. serves them with riskserve and prints the largest |riskserve −
#      library| over every row and edge row (bench/imports_exactness.py);
#   3. ROUNDS times: the libraries (bench/imports_python.py: XGBoost
#      inplace_predict, LightGBM predict, Treelite GTIL, TL2cgen compiled C),
#      then riskserve in process (cargo bench --bench imports);
#   4. prints the table: per row on a 10,000-row batch and for one row,
#      median [min–max] over the rounds, and riskserve's ratio.
# Knobs: DATA, ROUNDS (3), WAIT_QUIET_SECS (0).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/peerLoanTest.csv}
ROUNDS=${ROUNDS:-3}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/results/imports-$STAMP
WORK=$(mktemp -d)
SERVER=""
. bench/lib.sh
mkdir -p "$OUT/models"

VENV=bench/.tools/imports-venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
"$VENV/bin/pip" install -q -r .ci/requirements-oracle.txt treelite==4.8.1 tl2cgen==1.0.0
PY="$VENV/bin/python"

echo "== training on $DATA"
"$PY" tests/oracle/native_models.py --data "$DATA" --out "$OUT/models" | tee "$OUT/train.txt"

cargo build --release --locked --quiet
echo "== exactness: riskserve serving the files, against the libraries' predict_proba"
mkdir -p "$WORK/models/xgb/1" "$WORK/models/lgbm/1"
cp "$OUT/models/xgboost.json" "$WORK/models/xgb/1/"
cp "$OUT/models/lightgbm.txt" "$WORK/models/lgbm/1/"
target/release/riskserve serve --models-dir "$WORK/models" --listen 127.0.0.1:0 2>"$OUT/server.log" &
SERVER=$!
for _ in $(seq 100); do grep -qo '127.0.0.1:[0-9]*' "$OUT/server.log" && break; sleep 0.1; done
ADDR=$(grep -o '127.0.0.1:[0-9]*' "$OUT/server.log" | head -1)
"$PY" bench/imports_exactness.py "$ADDR" "$OUT/models" | tee "$OUT/exactness.txt"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""

wait_quiet | tee "$OUT/quiet.txt"
: >"$OUT/rounds.jsonl"
for r in $(seq "$ROUNDS"); do
    echo "== round $r of $ROUNDS: the libraries"
    "$PY" bench/imports_python.py "$OUT/models" 2>/dev/null | grep "^{" | sed "s/^{/{\"round\": $r, /" | tee -a "$OUT/rounds.jsonl"
    echo "== round $r of $ROUNDS: riskserve"
    RISKSERVE_IMPORTS_DIR="$OUT/models" cargo bench --locked --quiet --bench imports >"$OUT/criterion-$r.txt" 2>&1
    "$PY" - "$r" >>"$OUT/rounds.jsonl" <<'PYEOF'
import json, sys
r = int(sys.argv[1])
for model in ("xgboost", "lightgbm"):
    est = lambda bench: json.load(open(f"target/criterion/imports_{model}/{bench}/new/estimates.json"))["median"]["point_estimate"] / 1e3
    print(json.dumps({"round": r, "runtime": "riskserve", "model": model, "per_row_us": est("batch_10000") / 10_000,
                      "one_row_us": est("one_row"), "one_row_explained_us": est("one_row_explained"),
                      "one_row_shap_us": est("one_row_shap")}))
PYEOF
done
"$PY" bench/imports_table.py "$OUT/rounds.jsonl" | tee "$OUT/table.md"
echo "results in $OUT"
