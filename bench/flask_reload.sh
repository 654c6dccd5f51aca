#!/usr/bin/env bash
# The same load-and-swap run against the reference Flask deployment
# (../shared/peers: a pickled scikit-learn pipeline under gunicorn, 2 sync
# workers, `POST /predict`), where "a new version" is what its users do:
# replace the pickle and send SIGHUP to gunicorn (graceful worker reload:
# new workers start and load the pickle, old ones finish their request and
# exit). See bench/README.md, "Flask peer".
#
#   venv (if missing) -> train the RF100 pipeline once (peers/train.py) ->
#   add a version marker to it -> start gunicorn on 127.0.0.1 with a bounded
#   lifetime -> swapbench --peer flask (64 clients, 30 s steady, then a new
#   pickle + HUP every COMMIT_EVERY_MS) -> stop gunicorn -> bench/results/<stamp>/.
#
# Version identification: the peer's response does not say which model
# answered, so every pickle carries `bench_version = "RSBENCHVER:<10 digits>"`
# (an extra attribute on the pipeline; swapbench patches the digits in place
# per commit, keeping the pickle valid), and gunicorn serves the unmodified
# `seed_flask:app` through a 10-line WSGI wrapper (written to the temp dir,
# not the repo) that adds `X-Model-Version` from the pickle the worker loaded.
#
# Knobs: CLIENTS (64), STEADY_SECS (30), DURATION_SECS (141), MIN_SWAPS (1000),
#   MAX_SECS (400), COMMIT_EVERY_MS (100), BAD_EVERY (0: half-written/corrupt
#   pickles stop gunicorn, see README), PORT (free port), PEERS (../shared/peers),
#   PEERS_WORK (/tmp/peers), PEERS_VENV ($PEERS_WORK/.venv), OUT, SKIP_BUILD=1,
#   CARGO_TARGET_DIR, EXTRA_ARGS, WAIT_QUIET_SECS (0), QUIET_MAX_CORES (0.2).
# Only 127.0.0.1 is targeted; the EXIT trap stops what this script started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/bench/results/$STAMP}
PEERS=${PEERS:-$(cd "$ROOT/../shared/peers" 2>/dev/null && pwd || echo /work/shared/peers)}
PEERS_WORK=${PEERS_WORK:-/tmp/peers}
VENV=${PEERS_VENV:-$PEERS_WORK/.venv}
PY=$VENV/bin/python
CLIENTS=${CLIENTS:-64}
CLIENT_THREADS=${CLIENT_THREADS:-2}
WARMUP_SECS=${WARMUP_SECS:-1}
STEADY_SECS=${STEADY_SECS:-30}
DURATION_SECS=${DURATION_SECS:-141}
MIN_SWAPS=${MIN_SWAPS:-1000}
MAX_SECS=${MAX_SECS:-400}
COMMIT_EVERY_MS=${COMMIT_EVERY_MS:-100}
BAD_EVERY=${BAD_EVERY:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH=$TARGET_DIR/release/swapbench
LIFETIME=$(( ${MAX_SECS%.*} + 120 ))

mkdir -p "$OUT" "$PEERS_WORK"
WORK=$(mktemp -d "$PEERS_WORK/flaskbench.XXXXXX")
SERVER=""   # the `timeout` wrapper's PID, stopped by cleanup (bench/lib.sh)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ---- environment ------------------------------------------------------------
if [ ! -x "$PY" ]; then
    echo "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$PEERS/requirements.txt"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -p swapbench
fi

# ---- model: the peer's RF100 pipeline, plus a version marker ---------------------
"$PY" "$PEERS/train.py" --out "$WORK/base.pkl" | tee "$OUT/flask-train.txt"
"$PY" - "$WORK/base.pkl" "$WORK/model.pkl" "$PEERS" <<'EOF'
import pickle, sys
base, out, peers = sys.argv[1:4]
sys.path.insert(0, peers)
with open(base, "rb") as fh:
    model = pickle.load(fh)
model.bench_version = "RSBENCHVER:%010d" % 1
blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
assert blob.count(b"RSBENCHVER:") == 1, "marker must occur exactly once"
with open(out, "wb") as fh:
    fh.write(blob)
print(f"model.pkl: {len(blob)} bytes, version marker 1")
EOF

# ---- the unmodified seed app, plus a version header ---------------------------
cat >"$WORK/bench_flask_wrap.py" <<'EOF'
"""seed_flask.app, unchanged, plus `X-Model-Version`: the version marker of
the pickle this worker loaded (set by bench/flask_reload.sh)."""
import seed_flask

_VERSION = str(int(str(getattr(seed_flask.MODEL, "bench_version", "RSBENCHVER:0")).split(":")[1]))


def app(environ, start_response):
    def start(status, headers, exc_info=None):
        headers.append(("X-Model-Version", _VERSION))
        return start_response(status, headers, exc_info)

    return seed_flask.app(environ, start)
EOF

wait_quiet | tee "$OUT/quiet.txt"
PORT=${PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
{
    echo "date: $(date -u +%FT%TZ)"
    echo "machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "peer: $PEERS (gunicorn -w 2 -k sync), python $("$PY" -c 'import sys; print(sys.version.split()[0])')"
    "$VENV/bin/pip" freeze 2>/dev/null | grep -iE '^(gunicorn|flask|scikit-learn|pandas|numpy)=' || true
} >"$OUT/flask-env.txt"

PEER_MODEL="$WORK/model.pkl" timeout -k 5 "$LIFETIME" "$VENV/bin/gunicorn" -w 2 -k sync \
    -b "127.0.0.1:$PORT" --no-control-socket --chdir "$PEERS" --pythonpath "$WORK" \
    --pid "$WORK/gunicorn.pid" bench_flask_wrap:app >>"$OUT/flask.log" 2>&1 &
SERVER=$!
URL="http://127.0.0.1:$PORT/predict"
BODY='{"loan_amnt":5000,"int_rate":0.1356,"purpose":"debt_consolidation","grade":"C","annual_inc":52000.0,"revol_util":0.226,"emp_length":"9 years","dti":14.39,"delinq_2yrs":1,"home_ownership":"MORTGAGE"}'
ready=0
for _ in $(seq 1 120); do   # at most 60 s
    if curl -fsS -m 2 -o /dev/null -H 'Content-Type: application/json' --data-binary "$BODY" "$URL" 2>/dev/null; then
        ready=1; break
    fi
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.5
done
if [ "$ready" != 1 ] || [ ! -s "$WORK/gunicorn.pid" ]; then
    echo "gunicorn did not come up; log:"; tail -20 "$OUT/flask.log"; exit 1
fi
MASTER=$(cat "$WORK/gunicorn.pid")
echo "gunicorn master $MASTER on $URL; answer: $(curl -fsS -m 2 -i -H 'Content-Type: application/json' --data-binary "$BODY" "$URL" | tr -d '\r' | grep -iE '^x-model-version|^\{')"

rc=0
timeout -k 5 "$LIFETIME" "$BENCH" --peer flask \
    --url "$URL" --peer-model "$WORK/model.pkl" --peer-pid "$MASTER" \
    --clients "$CLIENTS" --client-threads "$CLIENT_THREADS" \
    --warmup-secs "$WARMUP_SECS" --steady-secs "$STEADY_SECS" --duration-secs "$DURATION_SECS" \
    --min-swaps "$MIN_SWAPS" --max-secs "$MAX_SECS" \
    --commit-every-ms "$COMMIT_EVERY_MS" --bad-every "$BAD_EVERY" \
    --out "$OUT/flask.json" ${EXTRA_ARGS:-} | tee "$OUT/flask-summary.txt" || rc=$?

echo "gunicorn log lines: $(wc -l <"$OUT/flask.log"); worker boots: $(grep -c 'Booting worker' "$OUT/flask.log" || true)" \
    | tee -a "$OUT/flask-summary.txt"
kill -TERM "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true
SERVER=""
echo "report: $OUT/flask.json (swapbench exit $rc: 0 = every goal met, 1 = a goal missed)"
exit "$rc"
