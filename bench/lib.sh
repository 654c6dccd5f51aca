# Shared by the bench scripts (sourced, not run): stop what the script
# started on exit, and check that the machine is idle before measuring.
# Expects SERVER (PID of the `timeout` wrapper, or empty) and WORK (a temp
# dir to remove) to be set by the caller.

cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A benchmark on 2 shared cores is only meaningful on an otherwise idle
# machine: measure how busy it is for 2 s, wait (up to WAIT_QUIET_SECS, default
# 0) for it to drop below QUIET_MAX_CORES (0.2), and say so if it does not.
busy_cores() {  # average busy cores over 2 s, from /proc/stat
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 2
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)"         'BEGIN{split(a,x," "); split(b,y," "); printf "%.2f", (y[1]-x[1])/hz/2}'
}
wait_quiet() {
    local waited=0 busy
    while :; do
        busy=$(busy_cores)
        if awk -v b="$busy" -v m="${QUIET_MAX_CORES:-0.2}" 'BEGIN{exit !(b<=m)}'; then
            echo "machine idle before the run: $busy busy cores"; return 0
        fi
        if [ "$waited" -ge "${WAIT_QUIET_SECS:-0}" ]; then
            echo "WARNING: $busy cores busy before the run (other processes); results will be noisy"
            ps -eo pcpu,comm --sort=-pcpu | sed -n 2,4p
            return 0
        fi
        sleep 8; waited=$(( waited + 10 ))
    done
}

# The riskserve scripts (swap_under_load.sh, hostile.sh) share these; they
# expect ROOT, OUT, WORK, MODEL, BIN and LIFETIME to be set.

# A temp models dir with $MODEL as credit-risk/1, and $OUT/env.txt (extra
# lines from the arguments).
stage_models() {
    mkdir -p "$WORK/models/credit-risk/1"
    cp "$MODEL" "$WORK/models/credit-risk/1/model.json"
    {
        echo "date: $(date -u +%FT%TZ)"
        echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
        echo "machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
        echo "model: $MODEL ($(wc -c <"$MODEL") bytes)"
        echo "models dir: $WORK/models (filesystem: $(stat -f -c %T "$WORK"))"
        for line in "$@"; do echo "$line"; done
    } >"$OUT/env.txt"
}

# Starts `$BIN serve` on 127.0.0.1:0 over $WORK/models in the background,
# living at most $LIFETIME s, log in $OUT/server.log; waits (<= 60 s) for
# its address. Sets SERVER (the `timeout` wrapper), ADDR and PID (the server).
start_server() {
    # cwd = the temp dir, so no config/riskserve.toml is picked up by accident.
    (cd "$WORK" && exec timeout -k 5 "$LIFETIME" "$BIN" serve --models-dir "$WORK/models" \
        --listen 127.0.0.1:0 ${SERVER_ARGS:-}) 2>"$OUT/server.log" &
    SERVER=$!
    ADDR=""
    for _ in $(seq 1 240); do   # at most 60 s
        ADDR=$(grep -m1 -o 'riskserve listening.*addr=127\.0\.0\.1:[0-9]*' "$OUT/server.log" 2>/dev/null \
            | grep -o '127\.0\.0\.1:[0-9]*' || true)
        [ -n "$ADDR" ] && break
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.25
    done
    if [ -z "$ADDR" ]; then
        echo "riskserve did not start; log:"; tail -20 "$OUT/server.log"; exit 1
    fi
    # `$SERVER` is `timeout` (the subshell exec'd it); the server is its only child.
    PID=$(ps -o pid= --ppid "$SERVER" | tr -d ' ' | head -1)
    echo "riskserve pid $PID listening on $ADDR; results in $OUT"
}

# SIGTERM to the server, wait for it, and note its exit status in $OUT/summary.txt.
stop_server() {
    kill -TERM "$SERVER" 2>/dev/null || true
    local server_rc=0
    wait "$SERVER" || server_rc=$?
    SERVER=""
    echo "riskserve exit status after SIGTERM: $server_rc" | tee -a "$OUT/summary.txt"
}
