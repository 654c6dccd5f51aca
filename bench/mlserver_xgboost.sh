#!/usr/bin/env bash
# One XGBoost file, two servers (issue 26): riskserve serving xgboost.json
# against MLServer 1.7.1 with mlserver-xgboost serving the same file, at 64
# concurrent connections (oha), one row per request, rounds alternating.
#   1. trains XGBoost (100 trees, depth 6) on the real sample's six number
#      columns (mlserver-xgboost builds a plain DMatrix from the request's
#      tensor: it cannot take category strings), in MLServer's venv
#      (bench/.tools/mlserver-xgb: mlserver, mlserver-xgboost, xgboost-cpu);
#   2. riskserve: models/xgb/1/xgboost.json, the default request (a JSON
#      application, answered with its reasons) and explain=false;
#      MLServer: model-settings.json (parallel_workers 2, as the peers run it),
#      the same row as an Open Inference Protocol FP32 tensor;
#   3. ROUNDS times each for DURATION: requests per second and p99.
# Knobs: ROUNDS (3), DURATION (15s), CONCURRENCY (64), DATA, WAIT_QUIET_SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${DATA:-../shared/data/peerLoanTest.csv}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15s}
CONCURRENCY=${CONCURRENCY:-64}
OUT=bench/results/mlserver-xgb-$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d)
SERVER=""
. bench/lib.sh
mkdir -p "$OUT"
OHA=${OHA:-$ROOT/bench/.tools/bin/oha}
[ -x "$OHA" ] || cargo install --locked oha@1.16.0 --root bench/.tools
VENV=bench/.tools/mlserver-xgb
if [ ! -x "$VENV/bin/mlserver" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q mlserver==1.7.1 mlserver-xgboost==1.7.1 xgboost-cpu==3.2.0 uvloop==0.21.0 pandas==3.1.1
fi
cargo build --release --locked --quiet

COLUMNS="loan_amnt,int_rate,annual_inc,revol_util,dti,delinq_2yrs"
mkdir -p "$WORK/models/xgb/1" "$WORK/mlserver"
"$VENV/bin/python" - "$DATA" "$COLUMNS" "$WORK" <<'PYEOF'
import json, sys, pandas as pd, xgboost as xgb
data, columns, work = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
df = pd.read_csv(data)
m = xgb.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1).fit(df[columns].astype("float32"), df["is_late"])
m.get_booster().save_model(f"{work}/models/xgb/1/xgboost.json")
row = df[columns].iloc[0]
json.dump({k: float(v) for k, v in row.items()}, open(f"{work}/body-riskserve.json", "w"))
json.dump({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, len(columns)],
                       "data": [float(v) for v in row]}]}, open(f"{work}/body-mlserver.json", "w"))
json.dump({"debug": False, "host": "127.0.0.1", "http_port": 18096, "grpc_port": 18097, "metrics_port": 18098,
           "parallel_workers": 2, "load_models_at_startup": True}, open(f"{work}/mlserver/settings.json", "w"))
json.dump({"name": "xgb", "implementation": "mlserver_xgboost.XGBoostModel",
           "parameters": {"uri": f"{work}/models/xgb/1/xgboost.json"}}, open(f"{work}/mlserver/model-settings.json", "w"))
PYEOF

start_riskserve() {
    target/release/riskserve serve --models-dir "$WORK/models" --listen 127.0.0.1:0 2>"$OUT/riskserve.log" &
    SERVER=$!
    for _ in $(seq 100); do grep -qo '127.0.0.1:[0-9]*' "$OUT/riskserve.log" && break; sleep 0.1; done
    ADDR=$(grep -o '127.0.0.1:[0-9]*' "$OUT/riskserve.log" | head -1)
}
start_mlserver() {
    (cd "$WORK/mlserver" && exec "$ROOT/$VENV/bin/mlserver" start . >"$ROOT/$OUT/mlserver.log" 2>&1) &
    SERVER=$!
    for _ in $(seq 300); do curl -sf 127.0.0.1:18096/v2/models/xgb/ready >/dev/null && break; sleep 0.2; done
    ADDR=127.0.0.1:18096
}
# SIGTERM, then (MLServer's workers sometimes never exit) SIGKILL after 15 s.
stop() {
    pkill -TERM -P "$SERVER" 2>/dev/null || true
    kill -TERM "$SERVER" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    pkill -KILL -P "$SERVER" 2>/dev/null || true
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
}
load() {  # name url body
    "$OHA" -z "$DURATION" -c "$CONCURRENCY" --no-tui --output-format json -m POST \
        -H 'content-type: application/json' -D "$3" "$2" >"$OUT/$1-$r.json"
    python3 - "$1" "$r" "$OUT/$1-$r.json" >>"$OUT/rounds.jsonl" <<'PYEOF'
import json, sys
name, r, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
j = json.load(open(path))
codes = j.get("statusCodeDistribution", {})
# oha cuts the requests in flight when the duration ends ("aborted due to
# deadline"): not failures of the server.
errors = {k: v for k, v in j.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
print(json.dumps({"round": r, "server": name, "rps": j["summary"]["requestsPerSec"],
                  "p99_ms": j["latencyPercentiles"]["p99"] * 1e3, "ok": codes.get("200", 0),
                  "failed": sum(v for k, v in codes.items() if k != "200") + sum(errors.values())}))
PYEOF
    tail -1 "$OUT/rounds.jsonl"
}

wait_quiet | tee "$OUT/quiet.txt"
: >"$OUT/rounds.jsonl"
for r in $(seq "$ROUNDS"); do
    start_riskserve
    curl -sf -H 'content-type: application/json' -d @"$WORK/body-riskserve.json" "http://$ADDR/v1/models/xgb/predict" >"$OUT/answer-riskserve.json"
    load riskserve "http://$ADDR/v1/models/xgb/predict" "$WORK/body-riskserve.json"
    load riskserve-explain-false "http://$ADDR/v1/models/xgb/predict?explain=false" "$WORK/body-riskserve.json"
    stop
    start_mlserver
    curl -sf -H 'content-type: application/json' -d @"$WORK/body-mlserver.json" "http://$ADDR/v2/models/xgb/infer" >"$OUT/answer-mlserver.json"
    load mlserver-xgboost "http://$ADDR/v2/models/xgb/infer" "$WORK/body-mlserver.json"
    stop
done
echo "answers (the same row):"; cat "$OUT/answer-riskserve.json"; echo; cat "$OUT/answer-mlserver.json"; echo
python3 - "$OUT/rounds.jsonl" <<'PYEOF' | tee "$OUT/table.md"
import json, sys, statistics
from collections import defaultdict
runs = defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l); runs[r["server"]].append(r)
med = lambda xs: statistics.median(xs)
base = med([r["rps"] for r in runs["mlserver-xgboost"]])
print("| server (c=64, one row per request) | requests/s median [min–max] | p99 ms median | failed | vs MLServer |")
print("|---|---|---|---|---|")
for name, rs in runs.items():
    rps = [r["rps"] for r in rs]
    print(f"| {name} | {med(rps):,.0f} [{min(rps):,.0f}–{max(rps):,.0f}] | {med([r['p99_ms'] for r in rs]):.2f} | "
          f"{sum(r['failed'] for r in rs)} | {med(rps) / base:.0f}× |")
PYEOF
echo "results in $OUT"
