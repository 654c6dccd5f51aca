#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: robust to a
# busy machine (it counts work, not time), so it is what optimisation
# decisions on the fast path are made with (issue 9).
#
#   bench/instructions.sh [riskserve|riskserve-explain|riskserve-b100|ceiling]...   (default: riskserve ceiling)
#
# For each server: start the release binary under callgrind on 127.0.0.1:0,
# send WARM (2,000) requests, zero the counters, send N (10,000) requests
# over CONC (4) keep-alive connections (oha, or a stdlib Python client
# when oha is not installed), dump, and print the server's
# instructions per request (all threads) and the functions with the most
# inclusive instructions. The body is the first row of the peers' CSV
# (bench/fast_path.sh's body; riskserve-b100: its first 100 rows).
# Knobs: N, WARM, CONC, BIN (the riskserve binary; default the release
# build), CEILING, OHA, SKIP_BUILD=1, OUT (bench/results/instr-<stamp>),
# TOP (25 functions shown). The server reads its RISKSERVE_* settings from
# the environment as always (RISKSERVE_DRIFT=false: no drift monitoring).
# Needs valgrind (Debian package `valgrind`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/bench/results/instr-$(date -u +%Y%m%dT%H%M%SZ)}
N=${N:-10000}
WARM=${WARM:-2000}
CONC=${CONC:-4}
TOP=${TOP:-25}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET_DIR/release/riskserve}
CEILING=${CEILING:-$TARGET_DIR/release/ceiling}
CSV=${PEER_CSV:-$ROOT/../shared/data/peerLoanTest.csv}
OHA=${OHA:-$(command -v oha || echo "$ROOT/bench/.tools/bin/oha")}
[ $# -gt 0 ] || set -- riskserve ceiling
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 2; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --locked -p riskserve -p ceiling --bin riskserve --bin ceiling
fi
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER=""
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
mkdir -p "$WORK/models/credit-risk/1"
cp "$ROOT/models/credit-risk/1/model.json" "$WORK/models/credit-risk/1/"
python3 - "$CSV" "$OUT" <<'EOF'
import csv, json, sys
NUMERIC = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"]
FEATURES = ["loan_amnt", "int_rate", "purpose", "grade", "annual_inc",
            "revol_util", "emp_length", "dti", "delinq_2yrs", "home_ownership"]
with open(sys.argv[1], newline="") as fh:
    rows = [{c: (None if r[c] == "" else float(r[c]) if c in NUMERIC else r[c]) for c in FEATURES}
            for _, r in zip(range(100), csv.DictReader(fh))]
open(f"{sys.argv[2]}/body.json", "w").write(json.dumps(rows[0], separators=(",", ":")))
open(f"{sys.argv[2]}/batch100.json", "w").write(json.dumps({"instances": rows}, separators=(",", ":")))
EOF

load() {  # n body url: CONC keep-alive connections (oha, or a stdlib Python client without it)
    if [ -x "$OHA" ]; then
        "$OHA" -n "$1" -c "$CONC" -m POST -T application/json -D "$2" --no-tui --output-format json "$3" >"$OUT/oha.json"
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d.get("statusCodeDistribution",{}); sys.exit(0 if set(c)=={"200"} else f"non-200 answers: {c}")' "$OUT/oha.json"
    else
        python3 - "$1" "$2" "$3" "$CONC" <<'PY'
import http.client, sys, threading, urllib.parse
n, body, url, conc = int(sys.argv[1]), open(sys.argv[2], "rb").read(), urllib.parse.urlsplit(sys.argv[3]), int(sys.argv[4])
bad = []
def client(count):
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    for _ in range(count):
        c.request("POST", url.path, body, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
threads = [threading.Thread(target=client, args=(n // conc + (i < n % conc),)) for i in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
sys.exit(f"non-200 answers: {bad[:5]}" if bad else 0)
PY
    fi
}

for name in "$@"; do
    log=$OUT/$name.log; prof=$OUT/callgrind.$name
    case $name in
      riskserve|riskserve-explain|riskserve-b100)
        (cd "$WORK" && exec timeout -k 5 600 valgrind --tool=callgrind --callgrind-out-file="$prof.%p" \
            "$BIN" serve --models-dir "$WORK/models" --listen 127.0.0.1:0) >"$log" 2>&1 &
        SERVER=$!
        # As in bench/fast_path.sh: the peers give no reasons, so the compared
        # request asks for none; riskserve-explain is the default request.
        path='/v1/models/credit-risk/predict?explain=false'
        if [ "$name" = riskserve-explain ]; then path=/v1/models/credit-risk/predict; fi
        pattern='riskserve listening.*addr=127\.0\.0\.1:[0-9]*' ;;
      ceiling)
        timeout -k 5 600 valgrind --tool=callgrind --callgrind-out-file="$prof.%p" "$CEILING" 0 >"$log" 2>&1 &
        SERVER=$!
        pattern='ceiling listening on 127\.0\.0\.1:[0-9]*'; path=/predict ;;
      *) echo "unknown server $name"; exit 2 ;;
    esac
    body=$OUT/body.json; if [ "$name" = riskserve-b100 ]; then body=$OUT/batch100.json; fi
    addr=""
    for _ in $(seq 1 600); do
        addr=$(grep -m1 -o "$pattern" "$log" 2>/dev/null | grep -o '127\.0\.0\.1:[0-9]*' || true)
        [ -n "$addr" ] && break; sleep 0.2
    done
    [ -n "$addr" ] || { echo "$name did not start under valgrind"; tail "$log"; exit 1; }
    pid=$(ps -o pid= --ppid "$SERVER" | tr -d ' ' | head -1)
    load "$WARM" "$body" "http://$addr$path"
    callgrind_control -z "$pid" >/dev/null 2>&1
    load "$N" "$body" "http://$addr$path"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=""
    dump=$prof.$pid.1   # the dump after the N requests (the file without .1 is shutdown)
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
    echo "$name: $(( total / N )) instructions per request ($total over $N requests, $CONC connections)" | tee -a "$OUT/summary.txt"
    { callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n '/file:function/,$p' | head -$(( TOP + 2 )); } >"$OUT/$name.top.txt" || true
done
echo "per-function profiles: callgrind_annotate $OUT/callgrind.<server>.*; top functions in $OUT/<server>.top.txt"
