"""The largest |riskserve − library| per imported model, over every row and
edge row tests/oracle/native_models.py wrote, through the real server.

    python bench/imports_exactness.py HOST:PORT DIR
"""
import json, sys, urllib.request

addr, d = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(f"{d}/rows.jsonl")]
for model, expected in (("xgb", "xgboost.expected"), ("lgbm", "lightgbm.expected")):
    exp = [float(l) for l in open(f"{d}/{expected}")]
    got = []
    for i in range(0, len(rows), 1000):
        body = json.dumps({"instances": rows[i:i + 1000]}).encode()
        req = urllib.request.Request(f"http://{addr}/v1/models/{model}/predict?explain=false", body,
                                     {"content-type": "application/json"})
        got += [p["probability_late"] for p in json.load(urllib.request.urlopen(req))["predictions"]]
    diffs = [abs(a - b) for a, b in zip(got, exp)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    print(f"{model}: {len(diffs)} rows, largest difference {diffs[worst]:.3e} (row {worst}), "
          f"rows over 1e-6: {sum(x > 1e-6 for x in diffs)}")
