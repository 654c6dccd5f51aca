"""The libraries' own speed on the models bench/imports.sh trained: one
thread, per row on a 10,000-row batch and for a batch of one row, the
median of several timed calls. Prints one JSON object per runtime.

    python bench/imports_python.py DIR

DIR holds xgboost.json, lightgbm.txt and rows.jsonl (tests/oracle/native_models.py).
"""
import json, os, sys, tempfile, time
import numpy as np, pandas as pd, xgboost as xgb, lightgbm as lgb

d = sys.argv[1]
rounds = int(os.environ.get("PY_ROUNDS", "5"))
BATCH = 10_000

lines = open(f"{d}/rows.jsonl").read().splitlines()
rows = [json.loads(l) for l in (lines * (BATCH // len(lines) + 1))[:BATCH]]
booster = xgb.Booster(params={"nthread": 1})
booster.load_model(f"{d}/xgboost.json")
lgbm = lgb.Booster(model_file=f"{d}/lightgbm.txt", params={"num_threads": 1})
names = lgbm.feature_name()
# Category dtypes as trained: LightGBM's pandas_categorical, in column order.
text = open(f"{d}/lightgbm.txt").read()
pandas_cats = json.loads(text.split("pandas_categorical:")[1].splitlines()[0])
cat_cols = [n for n in names if any(isinstance(r.get(n), str) for r in rows[:200])]
df = pd.DataFrame(rows, columns=names)
for c, cs in zip(cat_cols, pandas_cats):
    df[c] = pd.Categorical(df[c].where(df[c].isin(cs)), categories=cs)
for c in names:
    if c not in cat_cols:
        df[c] = df[c].astype("float64")
codes = df.copy()
for c in cat_cols:
    codes[c] = codes[c].cat.codes.replace(-1, np.nan).astype("float64")
codes = codes.to_numpy(dtype=np.float64)

def timed(f, arg, repeat):
    best = []
    for _ in range(repeat):
        t = time.perf_counter(); f(arg); best.append(time.perf_counter() - t)
    return float(np.median(best))

def report(runtime, model, f, batch, one):
    f(batch)  # warm-up
    per_row = timed(f, batch, rounds) / BATCH * 1e6
    single = timed(f, one, 200 * rounds) * 1e6
    print(json.dumps({"runtime": runtime, "model": model, "per_row_us": per_row, "one_row_us": single}), flush=True)

report("XGBoost 3.2 inplace_predict", "xgboost", lambda x: booster.inplace_predict(x), df, df.iloc[:1])
report("LightGBM 4.7 predict", "lightgbm", lambda x: lgbm.predict(x, num_threads=1), df, df.iloc[:1])

# Exact SHAP values (path-dependent Tree SHAP) per row, on 1,000 rows.
def shap_report(runtime, model, f, batch):
    f(batch[:10])
    per_row = timed(f, batch, max(1, rounds // 2)) / len(batch) * 1e6
    print(json.dumps({"runtime": runtime, "model": model, "shap_per_row_us": per_row}), flush=True)

shap_rows = df.iloc[:1000]
shap_report("XGBoost 3.2 pred_contribs", "xgboost",
            lambda x: booster.predict(xgb.DMatrix(x, enable_categorical=True, nthread=1), pred_contribs=True), shap_rows)
shap_report("LightGBM 4.7 pred_contrib", "lightgbm", lambda x: lgbm.predict(x, pred_contrib=True, num_threads=1), shap_rows)

try:
    import treelite, tl2cgen
except ImportError:
    sys.exit(0)
tl_model = treelite.frontend.from_lightgbm(lgbm)
report("Treelite 4.8 GTIL", "lightgbm", lambda x: treelite.gtil.predict(tl_model, x, nthread=1), codes, codes[:1])
with tempfile.TemporaryDirectory() as tmp:
    lib = f"{tmp}/model.so"
    tl2cgen.export_lib(tl_model, toolchain="gcc", libpath=lib, params={"parallel_comp": 1}, nthread=1)
    predictor = tl2cgen.Predictor(lib, nthread=1)
    report("TL2cgen 1.0 compiled C", "lightgbm",
           lambda x: predictor.predict(tl2cgen.DMatrix(x, dtype="float64")), codes, codes[:1])
