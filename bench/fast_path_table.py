"""The table of bench/fast_path.sh: per server and concurrency the median
over rounds of req/s, p50 and p99 (oha's JSON, or h2load's in that shape),
the ratios riskserve / ceiling and riskserve / each peer, gRPC against HTTP
with one load generator, the cost of drift monitoring (each riskserve row
against its `-nodrift` twin), the issues' goals, and fast_path.json.

Usage: python3 bench/fast_path_table.py OUT_DIR   (stdlib only)
"""
import csv
import json
import os
import statistics
import sys

out = sys.argv[1]
PEERS = ["flask", "fastapi", "fastapi-async", "mlserver"]

runs = {}  # (server, conc) -> list of per-round dicts
with open(os.path.join(out, "runs.tsv"), newline="") as fh:
    for row in csv.DictReader(fh, delimiter="\t"):
        with open(row["json"]) as f:
            oha = json.load(f)
        s, lat = oha["summary"], oha.get("latencyPercentiles", {})
        codes = oha.get("statusCodeDistribution", {})
        ok = codes.get("200", 0)
        bad = sum(v for k, v in codes.items() if k != "200") + sum(oha.get("errorDistribution", {}).values())
        runs.setdefault((row["server"], int(row["conc"])), []).append({
            "round": int(row["round"]),
            "rps": s["requestsPerSec"],
            "p50_ms": (lat.get("p50") or 0) * 1000,
            "p99_ms": (lat.get("p99") or 0) * 1000,
            "ok": ok,
            "errors": bad,
            "server_cores": float(row["server_cpu_s"]) / max(float(row["wall_s"]), 1e-9),
            "oha_cores": float(row["oha_cpu_s"]) / max(float(row["wall_s"]), 1e-9),
        })

med = {}
for key, rs in runs.items():
    med[key] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms", "server_cores", "oha_cores")}
    med[key]["errors"] = sum(r["errors"] for r in rs)
    med[key]["rounds"] = len(rs)
    med[key]["rps_by_round"] = [round(r["rps"]) for r in sorted(rs, key=lambda r: r["round"])]

env = open(os.path.join(out, "env.txt")).read() if os.path.exists(os.path.join(out, "env.txt")) else ""
print(env.rstrip())
print()
print("Medians over rounds (each round runs every server in turn; the load generator, oha or")
print("h2load for the *-grpc* and *-h2load rows, on the same cores):")
print(f"{'server':24} {'conc':>4} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'srv cores':>9} {'gen cores':>9} {'errors':>6}  req/s by round")
servers = []
for (server, conc) in sorted(med, key=lambda k: (list(dict.fromkeys(s for s, _ in runs)).index(k[0]), k[1])):
    m = med[(server, conc)]
    servers.append(server)
    extra = f"  (= {m['rps'] * 100:,.0f} predictions/s)" if server == "riskserve-b100" else ""
    print(f"{server:24} {conc:>4} {m['rps']:>10,.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
          f"{m['server_cores']:>9.2f} {m['oha_cores']:>9.2f} {m['errors']:>6}  {m['rps_by_round']}{extra}")

concs = sorted({c for _, c in med})
ratios, goals = {}, []


def paired(server, other, conc):
    """Per-round ratios server / other (throughput, p99): each round runs
    the two back to back, so a slow stretch of the host slows both."""
    by_round = {x["round"]: x for x in runs.get((other, conc), [])}
    pairs = [(x, by_round[x["round"]]) for x in runs.get((server, conc), []) if x["round"] in by_round]
    tp = [a["rps"] / b["rps"] for a, b in pairs if b["rps"] > 0]
    lp = [a["p99_ms"] / b["p99_ms"] for a, b in pairs if b["p99_ms"] > 0]
    return tp, lp


print()
print("Ratios (single-application riskserve requests):")
for conc in concs:
    rs = med.get(("riskserve", conc))
    if not rs:
        continue
    r = ratios.setdefault(str(conc), {})
    ceil = med.get(("ceiling", conc))
    if ceil:
        r["throughput_vs_ceiling"] = rs["rps"] / ceil["rps"]
        r["p99_vs_ceiling"] = rs["p99_ms"] / ceil["p99_ms"] if ceil["p99_ms"] else None
        print(f"  c={conc:<3} riskserve / ceiling: {r['throughput_vs_ceiling']:.2f} x throughput, "
              f"p99 {r['p99_vs_ceiling']:.2f} x")
        # The same ratios round by round: a slow stretch of the host (they
        # last about a minute, longer than a round) slows both; the median
        # of the per-round ratios moves less between runs than the ratio of
        # the medians above, which the goals keep using.
        tp, lp = paired("riskserve", "ceiling", conc)
        if tp and lp:
            r["throughput_vs_ceiling_paired"] = statistics.median(tp)
            r["p99_vs_ceiling_paired"] = statistics.median(lp)
            print(f"        paired by round (median; range): {r['throughput_vs_ceiling_paired']:.2f} x throughput "
                  f"({min(tp):.2f}-{max(tp):.2f}), p99 {r['p99_vs_ceiling_paired']:.2f} x ({min(lp):.2f}-{max(lp):.2f})")
    for peer in PEERS:
        p = med.get((peer, conc))
        if p and p["rps"] > 0:
            r[f"throughput_vs_{peer}"] = rs["rps"] / p["rps"]
            print(f"  c={conc:<3} riskserve / {peer}: {r[f'throughput_vs_{peer}']:,.0f} x")
    fast = [med[(p, conc)]["rps"] for p in ("fastapi", "fastapi-async") if (p, conc) in med]
    if fast:
        r["throughput_vs_fastapi_best"] = rs["rps"] / max(fast)

# The default request, with reason codes (issue 25), against the ceiling.
for conc in concs:
    rs, ceil = med.get(("riskserve-explain", conc)), med.get(("ceiling", conc))
    if not (rs and ceil):
        continue
    r = ratios.setdefault(str(conc), {})
    r["default_vs_ceiling"] = rs["rps"] / ceil["rps"]
    tp, _ = paired("riskserve-explain", "ceiling", conc)
    r["default_vs_ceiling_paired"] = statistics.median(tp) if tp else None
    spread = f" (paired by round {statistics.median(tp):.2f} x, {min(tp):.2f}-{max(tp):.2f})" if tp else ""
    print(f"  c={conc:<3} riskserve-explain (the default request, with reasons) / ceiling: "
          f"{r['default_vs_ceiling']:.2f} x throughput{spread}")

# gRPC (issue 27): each gRPC row against the HTTP/1.1 row that answers the
# same outputs with the same load generator (h2load), paired by round, and
# against the ceiling (oha).
grpc = {}
for g, h in (("riskserve-grpc", "riskserve-h2load"), ("riskserve-grpc-reasons", "riskserve-explain-h2load")):
    for conc in concs:
        tp, lp = paired(g, h, conc)
        if not tp:
            continue
        if not grpc:
            print()
            print("gRPC against HTTP/1.1 JSON (the same answer, the same generator: h2load; per-round ratios):")
        grpc[f"{g} c={conc}"] = {"throughput_vs_http": statistics.median(tp), "p99_vs_http": statistics.median(lp),
                                 "ratios": tp}
        ceil, transport = med.get(("ceiling", conc)), med.get(("ceiling-grpc", conc))
        vs_ceiling = f", {med[(g, conc)]['rps'] / ceil['rps']:.2f} x the ceiling" if ceil else ""
        if transport:
            vs_ceiling += f", {med[(g, conc)]['rps'] / transport['rps']:.2f} x ceiling-grpc"
        print(f"  c={conc:<3} {g} / {h}: {statistics.median(tp):.2f} x throughput ({min(tp):.2f}-{max(tp):.2f}), "
              f"p99 {statistics.median(lp):.2f} x{vs_ceiling}")
for conc in concs:
    # Whether gRPC's transport alone leaves room for the goal: the gRPC
    # ceiling (no protobuf, no model) against riskserve's whole HTTP path.
    tp, _ = paired("ceiling-grpc", "riskserve-h2load", conc)
    if tp:
        grpc[f"ceiling-grpc c={conc}"] = {"throughput_vs_http": statistics.median(tp), "ratios": tp}
        print(f"  c={conc:<3} ceiling-grpc / riskserve-h2load: {statistics.median(tp):.2f} x throughput "
              f"({min(tp):.2f}-{max(tp):.2f}): HTTP/2 and gRPC framing alone, against riskserve's whole HTTP/1.1 path")
ratios["grpc"] = grpc

# Drift monitoring (issue 29): each riskserve row against the same server
# with `--drift false`, paired by round.
drift_cost = {}
for server in ("riskserve", "riskserve-explain"):
    for conc in concs:
        tp, _ = paired(server, f"{server}-nodrift", conc)
        if not tp:
            continue
        if not drift_cost:
            print()
            print("Drift monitoring on / off (same model, same run; per-round throughput ratios):")
        cost = 1 - statistics.median(tp)
        drift_cost[f"{server} c={conc}"] = {"throughput_cost": cost, "ratios": tp}
        print(f"  c={conc:<3} {server:17}: monitoring costs {100 * cost:+.1f} % throughput "
              f"(median of {len(tp)} rounds; ratios {min(tp):.3f}-{max(tp):.3f})")
ratios["drift"] = drift_cost

c64 = ratios.get("64", {})
def goal(name, value, ok):
    goals.append({"goal": name, "value": value, "met": ok})
if "throughput_vs_ceiling" in c64:
    goal(">= 0.70 x ceiling throughput at c=64 (stretch 0.85)", c64["throughput_vs_ceiling"], c64["throughput_vs_ceiling"] >= 0.70)
    if c64.get("p99_vs_ceiling") is not None:
        goal("p99 <= 1.3 x ceiling p99 at c=64", c64["p99_vs_ceiling"], c64["p99_vs_ceiling"] <= 1.3)
for peer, need in (("flask", 300), ("fastapi_best", 300), ("mlserver", 100)):
    k = f"throughput_vs_{peer}"
    if k in c64:
        goal(f">= {need} x {peer} at c=64", c64[k], c64[k] >= need)
if "default_vs_ceiling" in c64:
    goal(">= 0.75 x ceiling throughput for the default request (with reasons) at c=64", c64["default_vs_ceiling"],
         c64["default_vs_ceiling"] >= 0.75)
single = grpc.get("riskserve-grpc c=64")
if single:
    goal("gRPC single-row throughput >= HTTP's at c=64 (same generator)", single["throughput_vs_http"],
         single["throughput_vs_http"] >= 1.0)
default = drift_cost.get("riskserve-explain c=64") or drift_cost.get("riskserve c=64")
if default:
    goal("drift monitoring costs <= 3 % of the default request's throughput at c=64", default["throughput_cost"],
         default["throughput_cost"] <= 0.03)
if goals:
    print()
    for g in goals:
        print(f"  goal {'MET   ' if g['met'] else 'MISSED'} {g['goal']}: {g['value']:.2f}")
errors = sum(m["errors"] for m in med.values())
if errors:
    print(f"\nWARNING: {errors} non-200 answers or connection errors in total (see the per-server rows)")
print("\nOnly ratios from one run mean anything: absolute numbers move with the machine.")
print(f"raw oha JSON, logs and this table in {out}")

with open(os.path.join(out, "fast_path.json"), "w") as fh:
    json.dump({
        "env": env.splitlines(),
        "medians": [{"server": s, "concurrency": c, **m} for (s, c), m in med.items()],
        "runs": [{"server": s, "concurrency": c, **r} for (s, c), rs in runs.items() for r in rs],
        "ratios": ratios,
        "goals": goals,
    }, fh, indent=2)
sys.exit(1 if errors else 0)
