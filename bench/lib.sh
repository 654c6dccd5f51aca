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
