"""One h2load run (bench/fast_path.sh) as oha's JSON, which
fast_path_table.py reads: req/s from h2load's summary, p50 and p99 from its
per-request log (`--log-file`: start µs, HTTP status, duration µs), status
codes from that log, and gRPC calls the server answered other than OK (a
failed gRPC call is HTTP 200 on the wire; the caller counts them from the
server's metrics) taken out of the 200s.

Usage: python3 bench/h2load_json.py STEM GRPC_NOT_OK   (reads STEM.txt and
STEM.log, writes STEM.json; stdlib only)
"""
import json
import re
import sys

stem, grpc_not_ok = sys.argv[1], int(sys.argv[2])
took, codes = [], {}
with open(stem + ".log") as fh:
    for line in fh:
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3:
            codes[parts[1]] = codes.get(parts[1], 0) + 1
            took.append(int(parts[2]))
took.sort()


def percentile(q):
    return took[min(len(took) - 1, int(q * len(took)))] / 1e6 if took else None


if grpc_not_ok:
    codes["200"] = codes.get("200", 0) - grpc_not_ok
    codes["grpc-not-OK"] = grpc_not_ok
text = open(stem + ".txt").read()
rate = re.search(r"finished in [0-9.]+s, ([0-9.]+) req/s", text)
failed = re.search(r"requests: .* ([0-9]+) failed, ([0-9]+) errored", text)
json.dump({
    "summary": {"requestsPerSec": float(rate.group(1)) if rate else 0.0},
    "latencyPercentiles": {"p50": percentile(0.50), "p99": percentile(0.99)},
    "statusCodeDistribution": codes,
    "errorDistribution": {"h2load failed or errored": int(failed.group(1)) + int(failed.group(2))} if failed else {},
}, open(stem + ".json", "w"))
