"""The speed table of bench/imports.sh from its rounds (one JSON object per
runtime per round): median [min–max] per row on a 10,000-row batch and for
one row, and how many times faster riskserve is on the same model."""
import json, sys, statistics
from collections import defaultdict

runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["runtime"], r["model"])].append(r)

def spread(rs, key):
    v = [r[key] for r in rs if key in r]
    return (statistics.median(v), min(v), max(v)) if v else None

def fmt(s):
    return "–" if s is None else f"{s[0]:,.2f} µs [{s[1]:,.2f}–{s[2]:,.2f}]"

ours = {m: runs[("riskserve", m)] for m in ("xgboost", "lightgbm")}
print("| runtime | model | per row, batch 10,000 | batch of 1 | riskserve faster (batch / one row) |")
print("|---|---|---|---|---|")
for (runtime, model), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] == "riskserve", kv[0][0])):
    row, one = spread(rs, "per_row_us"), spread(rs, "one_row_us")
    name = runtime
    if row is None:  # a SHAP-only runtime
        shap = spread(rs, "shap_per_row_us")
        ours_shap = spread(ours.get(model) or [], "one_row_shap_us")
        ratio = f"{shap[0] / ours_shap[0]:.1f}× (SHAP)" if ours_shap else ""
        print(f"| {name}, exact SHAP values per row (1,000 rows) | {model} | {fmt(shap)} | | {ratio} |")
        continue
    ratio = ""
    if runtime != "riskserve" and ours.get(model):
        r_row, r_one = spread(ours[model], "per_row_us"), spread(ours[model], "one_row_us")
        ratio = f"{row[0] / r_row[0]:.1f}× / {one[0] / r_one[0]:.0f}×"
    print(f"| {name} | {model} | {fmt(row)} | {fmt(one)} | {ratio} |")
    if runtime == "riskserve":
        print(f"| riskserve, with reasons (the default request) | {model} | | {fmt(spread(rs, 'one_row_explained_us'))} | |")
        print(f"| riskserve, exact SHAP values (explain=shap) | {model} | | {fmt(spread(rs, 'one_row_shap_us'))} | |")
