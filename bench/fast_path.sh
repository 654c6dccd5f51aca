#!/usr/bin/env bash
# Fast path (issue 9): how close riskserve comes to the speed of HTTP itself,
# and how it compares with the servers users would otherwise pick. In ONE run,
# with the same load generator (oha), the same request body, the same
# concurrency levels and the same duration for every server:
#
#   riskserve      `riskserve serve` (release) with the bundled 100-tree forest,
#                  one application per request
#   riskserve-b100 the same server, 100 applications per request ({"instances"})
#   riskserve-explain  the same, single applications with the default reason codes (every other riskserve row asks ?explain=false, as the peers give no reasons)
#   riskserve-grpc the same server's gRPC listener (`--grpc-listen`): ModelInfer
#                  with the same application as typed tensors, answering
#                  probability and decision (as `?explain=false`), driven by
#                  h2load (nghttp2) over HTTP/2, one connection per client,
#                  one call at a time; gRPC's status codes are counted from
#                  the server's metrics (a failed call is still HTTP 200)
#   riskserve-grpc-reasons  the same, asking for the reasons output too (the
#                  default HTTP request's answer)
#   riskserve-h2load, riskserve-explain-h2load  riskserve and riskserve-explain
#                  driven by h2load over HTTP/1.1: the gRPC rows' load
#                  generator, so HTTP and gRPC compare with one generator
#   riskserve-nodrift, riskserve-explain-nodrift  riskserve and riskserve-explain
#                  with `--drift false`: the cost of drift monitoring (issue 29;
#                  it only counts for a model whose file has a reference: set
#                  MODEL to one, see bench/README.md)
#   ceiling        crates/ceiling: a minimal hyper 1 server on the same tokio
#                  runtime that reads the body and answers {"ok":true}: what
#                  HTTP alone costs on this machine
#   ceiling-grpc   `ceiling --grpc`: hyper 1's HTTP/2 server answering every
#                  call with a fixed gRPC message and `grpc-status: 0`, no
#                  protobuf (what gRPC's transport alone costs; h2load)
#   flask          ../shared/peers seed_flask.py under gunicorn, 2 sync workers
#   fastapi        ../shared/peers fastapi_app.py under uvicorn, 2 workers
#   fastapi-async  the same with an `async def` endpoint
#   mlserver       MLServer 1.7.1 + mlserver-sklearn, Open Inference Protocol,
#                  2 parallel workers, the same scikit-learn pipeline (the
#                  request is the same row as an OIP "pd" request)
#
# Rounds alternate the servers (round 1: every server, round 2: every server,
# ...), each measured at every concurrency; the table shows per-server
# medians over the rounds, and the ratios riskserve / ceiling and riskserve /
# each peer. The request body is the first row of ../shared/data/peerLoanTest.csv
# (the batch: its first 100 rows), exactly as ../shared/peers/run_peers.sh sends.
#
# Knobs (environment):
#   SERVERS ("riskserve riskserve-b100 ceiling flask fastapi fastapi-async mlserver"),
#   ROUNDS (3), DURATION (8s), WARMUP (2s), CONCURRENCIES ("16 64"),
#   OUT (bench/results/fast-<UTC stamp>), PEERS_DIR (../shared/peers),
#   PEERS_WORK (/tmp/peers), PEERS_VENV ($PEERS_WORK/.venv),
#   PEERS_MLSERVER_VENV ($PEERS_WORK/.venv-mlserver), PEER_MODEL
#   ($PEERS_WORK/model.pkl; trained with the peers' train.py if missing),
#   OHA (found on PATH, in ~/.cargo/bin or bench/.tools/bin, else installed
#   there with `cargo install --locked oha@$OHA_VERSION`), SKIP_BUILD=1,
#   CARGO_TARGET_DIR, SERVER_ARGS (more `riskserve serve` flags), MODEL (the
#   model.json riskserve serves; models/credit-risk/1/model.json),
#   H2LOAD (found on PATH, else Debian's nghttp2-client is installed),
#   WAIT_QUIET_SECS (wait up to this long for an idle machine; 0),
#   QUIET_MAX_CORES (0.2).
# Everything listens on and targets 127.0.0.1 only; every server this script
# starts has a bounded lifetime (`timeout`) and is stopped by its PID.
# Exit status: 0 when every measurement completed with only 200 answers,
# 1 otherwise (a server did not start, or answered errors).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/fast-$STAMP}
SERVERS=${SERVERS:-"riskserve riskserve-b100 ceiling flask fastapi fastapi-async mlserver"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CONCURRENCIES=${CONCURRENCIES:-"16 64"}
PEERS_DIR=$(cd "${PEERS_DIR:-$ROOT/../shared/peers}" 2>/dev/null && pwd || echo "${PEERS_DIR:-$ROOT/../shared/peers}")
PEERS_WORK=${PEERS_WORK:-/tmp/peers}
PEERS_VENV=${PEERS_VENV:-$PEERS_WORK/.venv}
PEERS_MLSERVER_VENV=${PEERS_MLSERVER_VENV:-$PEERS_WORK/.venv-mlserver}
PEER_MODEL=${PEER_MODEL:-$PEERS_WORK/model.pkl}
CSV=${PEER_CSV:-$ROOT/../shared/data/peerLoanTest.csv}
OHA_VERSION=${OHA_VERSION:-1.16.0}
MODEL=${MODEL:-$ROOT/models/credit-risk/1/model.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/riskserve
CEILING=$TARGET_DIR/release/ceiling
HOST=127.0.0.1

dur_s() { local d=$1; case $d in *ms) echo 1;; *m) echo $(( ${d%m} * 60 ));; *s) echo "${d%s}";; *) echo "$d";; esac; }
N_CONC=$(wc -w <<<"$CONCURRENCIES")
# A server lives at most this long even if this script is killed hard.
LIFETIME=$(( N_CONC * ($(dur_s "$DURATION") + $(dur_s "$WARMUP") + 10) + 180 ))

WORK=$(mktemp -d)
SERVER=""
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
mkdir -p "$OUT"

want() { case " $SERVERS " in *" $1 "*) return 0;; *) return 1;; esac; }
want_python=0
want_h2load=0
case " $SERVERS " in *-grpc*|*-h2load*|*ceiling-grpc*) want_h2load=1;; esac
for s in flask fastapi fastapi-async mlserver; do want "$s" && want_python=1; done

# ---- 1. tools ----------------------------------------------------------------
if [ -z "${OHA:-}" ]; then
    OHA=$(command -v oha || true)
    for c in "$HOME/.cargo/bin/oha" "$ROOT/bench/.tools/bin/oha"; do
        [ -z "$OHA" ] && [ -x "$c" ] && OHA=$c
    done
    if [ -z "$OHA" ]; then
        echo "oha not found; installing oha $OHA_VERSION into bench/.tools (cargo install --locked)"
        cargo install --locked "oha@$OHA_VERSION" --root "$ROOT/bench/.tools"
        OHA=$ROOT/bench/.tools/bin/oha
    fi
fi
if [ "$want_h2load" = 1 ] && [ -z "${H2LOAD:-}" ]; then
    if ! command -v h2load >/dev/null; then
        echo "h2load not found; installing Debian's nghttp2-client"
        as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
        as_root apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
    fi
    H2LOAD=$(command -v h2load)
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "building riskserve, the ceiling and grpc_body (release)"
    cargo build --release --locked -p riskserve -p ceiling -p swapbench --bin riskserve --bin ceiling --bin grpc_body
fi
if [ "$want_python" = 1 ]; then
    [ -f "$PEERS_DIR/requirements.txt" ] || { echo "peers not found in $PEERS_DIR (set PEERS_DIR)"; exit 1; }
    mkdir -p "$PEERS_WORK"
    if [ ! -x "$PEERS_VENV/bin/python" ]; then
        echo "creating $PEERS_VENV (the peers' requirements.txt)"
        python3 -m venv "$PEERS_VENV"
        "$PEERS_VENV/bin/pip" install -q -r "$PEERS_DIR/requirements.txt"
    fi
    if want mlserver && [ ! -x "$PEERS_MLSERVER_VENV/bin/mlserver" ]; then
        echo "creating $PEERS_MLSERVER_VENV (the peers' requirements-mlserver.txt)"
        python3 -m venv "$PEERS_MLSERVER_VENV"
        "$PEERS_MLSERVER_VENV/bin/pip" install -q -r "$PEERS_DIR/requirements-mlserver.txt"
    fi
    if [ ! -f "$PEER_MODEL" ]; then
        echo "training the peers' scikit-learn pipeline into $PEER_MODEL"
        (cd "$PEERS_DIR" && PEER_MODEL="$PEER_MODEL" "$PEERS_VENV/bin/python" train.py --out "$PEER_MODEL") >"$OUT/train.txt"
    fi
fi

# ---- 2. request bodies ---------------------------------------------------------
# body.json: the CSV's first row, all ten fields, in the CSV's column order,
# empty cells as null; batch100.json: {"instances": [the first 100 rows]};
# body-mlserver.json: body.json as an OIP "pd" request (as run_peers.sh builds it).
python3 - "$CSV" "$OUT" <<'EOF'
import csv, json, sys
NUMERIC = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"]
FEATURES = ["loan_amnt", "int_rate", "purpose", "grade", "annual_inc",
            "revol_util", "emp_length", "dti", "delinq_2yrs", "home_ownership"]
def value(col, v):
    if v == "":
        return None
    return float(v) if col in NUMERIC else v
with open(sys.argv[1], newline="") as fh:
    rows = [{c: value(c, r[c]) for c in FEATURES} for _, r in zip(range(100), csv.DictReader(fh))]
out = sys.argv[2]
compact = dict(separators=(",", ":"))
open(f"{out}/body.json", "w").write(json.dumps(rows[0], **compact))
open(f"{out}/batch100.json", "w").write(json.dumps({"instances": rows}, **compact))
inputs = []
for col, v in rows[0].items():
    if col in NUMERIC or v is None:
        inputs.append({"name": col, "datatype": "FP64", "shape": [1], "data": [v]})
    else:
        inputs.append({"name": col, "datatype": "BYTES", "shape": [1], "data": [v],
                       "parameters": {"content_type": "str"}})
open(f"{out}/body-mlserver.json", "w").write(
    json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}, **compact))
print("request body:", json.dumps(rows[0], **compact))
EOF

if [ "$want_h2load" = 1 ]; then
    # body.bin / body-reasons.bin: body.json as one framed ModelInfer message.
    "$TARGET_DIR/release/grpc_body" --body "$OUT/body.json" --model credit-risk --out "$OUT/body.bin"
    "$TARGET_DIR/release/grpc_body" --body "$OUT/body.json" --model credit-risk \
        --outputs probability_late,decision,reasons --out "$OUT/body-reasons.bin"
fi

stage_models "oha: $OHA ($("$OHA" --version 2>/dev/null | head -1))" "servers: $SERVERS" \
    "rounds: $ROUNDS, duration: $DURATION, warm-up: $WARMUP, concurrencies: $CONCURRENCIES"

# ---- 3. servers ------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tree_pids() { local p=$1 c; echo "$p"; for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done; }
cpu_ticks() {  # utime+stime of a process tree, in clock ticks
    local total=0 p f
    for p in $(tree_pids "$1"); do
        f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
        # shellcheck disable=SC2086
        set -- $f
        total=$(( total + ${12} + ${13} ))
    done
    echo "$total"
}

wait_ready() {  # url body: up to 120 tries, 0.5 s apart; the answer in $OUT/ready-<name>.json
    local i
    for i in $(seq 1 120); do
        if [ "$GENERATOR" = h2load-grpc ] && [ -z "$METRICS_URL" ]; then
            return 0   # the gRPC ceiling: up once it said so
        elif [ "$GENERATOR" = h2load-grpc ]; then
            # gRPC: the server's HTTP readiness; the calls are checked below.
            curl -fsS -m 2 -o "$OUT/ready-$NAME.json" "${METRICS_URL%/metrics}/v2/health/ready" 2>/dev/null && return 0
        elif curl -fsS -m 2 -o "$OUT/ready-$NAME.json" -H 'Content-Type: application/json' \
                --data-binary @"$2" "$1" 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

# Starts server $NAME; sets SERVER (the `timeout` wrapper), URL, BODY and
# GENERATOR (oha, h2load-h1 or h2load-grpc).
start_named() {
    local port log=$OUT/$NAME.log
    BODY=$OUT/body.json
    GENERATOR=oha
    case $NAME in
      riskserve|riskserve-b100|riskserve-explain|riskserve-nodrift|riskserve-explain-nodrift|riskserve-*h2load)
        local drift=""
        case $NAME in *-nodrift) drift="--drift false";; esac
        SERVER_ARGS="${SERVER_ARGS:-} $drift" start_server   # lib.sh: sets SERVER, ADDR and PID
        cat "$OUT/server.log" >>"$log"
        # The peers answer probability + decision only, so the compared rows
        # ask for no reason codes; riskserve-explain is the default request
        # (top 4 reasons per prediction).
        URL=http://$ADDR/v1/models/credit-risk/predict?explain=false
        case $NAME in riskserve-explain*) URL=http://$ADDR/v1/models/credit-risk/predict;; esac
        if [ "$NAME" = riskserve-b100 ]; then BODY=$OUT/batch100.json; fi
        case $NAME in *-h2load) GENERATOR=h2load-h1;; esac
        ;;
      riskserve-grpc|riskserve-grpc-reasons)
        SERVER_ARGS="${SERVER_ARGS:-} --grpc-listen 127.0.0.1:0" start_server
        cat "$OUT/server.log" >>"$log"
        METRICS_URL=http://$ADDR/metrics
        URL=http://$(grep -m1 -o 'grpc_addr=127\.0\.0\.1:[0-9]*' "$OUT/server.log" | cut -d= -f2)/inference.GRPCInferenceService/ModelInfer
        GENERATOR=h2load-grpc
        BODY=$OUT/body.bin
        if [ "$NAME" = riskserve-grpc-reasons ]; then BODY=$OUT/body-reasons.bin; fi
        ;;
      ceiling)
        timeout -k 5 "$LIFETIME" "$CEILING" 0 >"$log" 2>&1 &
        SERVER=$!
        for _ in $(seq 1 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
        URL=http://$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1)/predict
        ;;
      ceiling-grpc)
        timeout -k 5 "$LIFETIME" "$CEILING" --grpc 0 >"$log" 2>&1 &
        SERVER=$!
        for _ in $(seq 1 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
        URL=http://$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1)/inference.GRPCInferenceService/ModelInfer
        GENERATOR=h2load-grpc
        METRICS_URL=""
        BODY=$OUT/body.bin
        ;;
      flask)
        port=$(free_port); URL=http://$HOST:$port/predict
        PEER_MODEL=$PEER_MODEL timeout -k 5 "$LIFETIME" "$PEERS_VENV/bin/gunicorn" -w 2 -k sync \
            -b "$HOST:$port" --no-control-socket --chdir "$PEERS_DIR" seed_flask:app >>"$log" 2>&1 &
        SERVER=$!
        ;;
      fastapi|fastapi-async)
        port=$(free_port); URL=http://$HOST:$port/predict
        local async=""; if [ "$NAME" = fastapi-async ]; then async=1; fi
        PEER_MODEL=$PEER_MODEL PEER_FASTAPI_ASYNC=$async timeout -k 5 "$LIFETIME" "$PEERS_VENV/bin/uvicorn" \
            fastapi_app:app --app-dir "$PEERS_DIR" --host "$HOST" --port "$port" --workers 2 \
            --no-access-log --log-level warning >>"$log" 2>&1 &
        SERVER=$!
        ;;
      mlserver)
        # A run copy of the peers' mlserver/ settings: free ports, this model.
        python3 - "$PEERS_DIR/mlserver" "$OUT/mlserver" "$PEER_MODEL" "$(free_port)" "$(free_port)" "$(free_port)" <<'EOF'
import json, os, sys
src, dst, model, http, grpc, metrics = sys.argv[1:]
os.makedirs(dst, exist_ok=True)
s = json.load(open(os.path.join(src, "settings.json")))
s.update(host="127.0.0.1", http_port=int(http), grpc_port=int(grpc), metrics_port=int(metrics))
json.dump(s, open(os.path.join(dst, "settings.json"), "w"), indent=2)
m = json.load(open(os.path.join(src, "model-settings.json")))
m["parameters"]["uri"] = os.path.abspath(model)
json.dump(m, open(os.path.join(dst, "model-settings.json"), "w"), indent=2)
EOF
        port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_port"])' "$OUT/mlserver/settings.json")
        URL=http://$HOST:$port/v2/models/credit-risk/infer
        BODY=$OUT/body-mlserver.json
        MLSERVER_METRICS_DIR="$OUT/mlserver-metrics" MLSERVER_ENVIRONMENTS_DIR="$OUT/mlserver-envs" \
            timeout -k 5 "$LIFETIME" "$PEERS_MLSERVER_VENV/bin/mlserver" start "$OUT/mlserver" >>"$log" 2>&1 &
        SERVER=$!
        ;;
      *) echo "unknown server $NAME"; exit 2 ;;
    esac
}

stop_named() {
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
}

# gRPC ModelInfer calls answered other than OK so far (a failed call is
# still HTTP 200 on the wire, so h2load cannot tell).
grpc_failed() {
    if [ -z "$METRICS_URL" ]; then echo 0; return; fi
    curl -fsS -m 5 "$METRICS_URL" | awk '/^riskserve_requests_total\{/ && /protocol="grpc"/ \
        && /ModelInfer/ && !/code="OK"/ { n += $NF } END { printf "%d", n }'
}

# load STEM CONC DURATION [quiet]: one load run with $GENERATOR against $URL
# with $BODY; STEM.json in oha's JSON shape (what fast_path_table.py reads).
load() {
    local stem=$1 c=$2 d=$3
    if [ "$GENERATOR" = oha ]; then
        if [ "${4:-}" = quiet ]; then
            "$OHA" -z "$d" -c "$c" -m POST -T application/json -D "$BODY" \
                --no-tui --output-format quiet "$URL" >/dev/null 2>&1 || true
        else
            /usr/bin/time -f '%U %S' -o "$stem.time" \
                "$OHA" -z "$d" -w -c "$c" -m POST -T application/json -D "$BODY" \
                --no-tui --output-format json "$URL" >"$stem.json"
        fi
        return
    fi
    local headers=(-H "content-type: application/json") h1=(--h1) failed0=0 failed1=0
    if [ "$GENERATOR" = h2load-grpc ]; then
        headers=(-H "content-type: application/grpc" -H "te: trailers"); h1=()
        failed0=$(grpc_failed)
    fi
    # One connection per client, one request at a time on each (as oha -c).
    /usr/bin/time -f '%U %S' -o "$stem.time" "$H2LOAD" "${h1[@]}" -D "$(dur_s "$d")" -c "$c" -m 1 -t 1 \
        -d "$BODY" "${headers[@]}" --log-file "$stem.log" "$URL" >"$stem.txt" 2>&1 || true
    if [ "$GENERATOR" = h2load-grpc ]; then failed1=$(grpc_failed); fi
    if [ "${4:-}" = quiet ]; then rm -f "$stem.log" "$stem.txt" "$stem.time"; return; fi
    python3 "$ROOT/bench/h2load_json.py" "$stem" "$(( failed1 - failed0 ))"
    rm -f "$stem.log"
}

# ---- 4. rounds ---------------------------------------------------------------------
wait_quiet | tee "$OUT/quiet.txt"
printf 'round\tserver\tconc\tjson\tserver_cpu_s\toha_cpu_s\twall_s\n' >"$OUT/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for NAME in $SERVERS; do
        start_named
        if ! wait_ready "$URL" "$BODY"; then
            echo "round $round: $NAME did not come up; log:"; tail -20 "$OUT/$NAME.log"
            stop_named; continue
        fi
        for c in $CONCURRENCIES; do
            stem=$OUT/r$round-$NAME-c$c
            load "$stem-warmup" "$c" "$WARMUP" quiet
            cpu0=$(cpu_ticks "$SERVER"); t0=$(date +%s.%N)
            load "$stem" "$c" "$DURATION"
            cpu1=$(cpu_ticks "$SERVER"); t1=$(date +%s.%N)
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$NAME" "$c" "$stem.json" \
                "$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}')" \
                "$(awk '{printf "%.2f", $1+$2}' "$stem.time")" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" >>"$OUT/runs.tsv"
            echo "round $round: $NAME c=$c: $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print("%.0f req/s" % s["requestsPerSec"])' "$stem.json")"
        done
        stop_named
    done
done

# ---- 5. table, ratios, JSON ----------------------------------------------------------
python3 "$ROOT/bench/fast_path_table.py" "$OUT" | tee "$OUT/summary.txt"
