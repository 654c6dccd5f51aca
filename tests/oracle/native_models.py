"""Trains the models data scientists ship with their own libraries, and
records the libraries' own answers: the oracle riskserve's imports are held
to (tests/integration/imports.rs, bench/imports.sh).

    python native_models.py --data loans.csv --out DIR [--target is_late]

Writes to DIR:
  xgboost.json   XGBoost, native categoricals (pandas `category` columns)
  lightgbm.txt   LightGBM, native categoricals
  rows.jsonl     every row of the data, then edge rows, as riskserve requests
                 (numbers, category strings, null for missing)
  xgboost.expected, lightgbm.expected
                 the library's P(late) for each line of rows.jsonl (%.17g)
  xgboost.shap, lightgbm.shap
                 the library's exact SHAP values (pred_contribs, pred_contrib)
                 for each line: one per feature in column order, then the bias

Edge rows: every threshold value of both models exactly, with the next
representable value either side; ±0; every number missing at once; every
category missing; a category the model never saw ("never-seen"), whose
expected answer is the row with that category missing (riskserve's
documented rule; XGBoost itself refuses such a row); and a category that the
column declares but no training row has.
"""
import json, math
import numpy as np, pandas as pd, xgboost as xgb, lightgbm as lgb
from oracle_data import args_and_data, number_edges

a, df, y, cat_cols, num_cols = args_and_data()
for c in num_cols:
    df[c] = df[c].astype("float64")
# Each category column declares one category no training row has.
for c in cat_cols:
    cats = sorted(df[c].dropna().astype(str).unique().tolist()) + ["declared-but-unseen"]
    df[c] = pd.Categorical(df[c], categories=cats)

xm = xgb.XGBClassifier(n_estimators=a.trees, max_depth=6, enable_categorical=True, tree_method="hist", n_jobs=1)
xm.fit(df, y)
xm.get_booster().save_model(f"{a.out}/xgboost.json")
lm = lgb.LGBMClassifier(n_estimators=a.trees, num_leaves=31, verbose=-1, n_jobs=1)
lm.fit(df, y)
lm.booster_.save_model(f"{a.out}/lightgbm.txt")

# Thresholds both models split on, per number column.
thresholds = {c: set() for c in num_cols}
for t in json.load(open(f"{a.out}/xgboost.json"))["learner"]["gradient_booster"]["model"]["trees"]:
    for f, cond, left, st in zip(t["split_indices"], t["split_conditions"], t["left_children"], t.get("split_type", [0] * len(t["left_children"]))):
        if left != -1 and st == 0 and df.columns[f] in thresholds:
            thresholds[df.columns[f]].add(float(np.float32(cond)))
for tree in lm.booster_.dump_model()["tree_info"]:
    stack = [tree["tree_structure"]]
    while stack:
        n = stack.pop()
        if "split_feature" in n:
            if n["decision_type"] == "<=" and df.columns[n["split_feature"]] in thresholds:
                thresholds[df.columns[n["split_feature"]]].add(float(n["threshold"]))
            stack += [n["left_child"], n["right_child"]]

edges = [(r, None) for r in number_edges(df, thresholds, num_cols)]
base = df.iloc[0].copy()
r = base.copy()
for c in cat_cols: r[c] = np.nan
edges.append((r, None))
for c in cat_cols:
    r = base.copy(); r[c] = "declared-but-unseen"; edges.append((r, None))
    r = base.copy(); r[c] = np.nan; edges.append((r, ("never-seen", c)))

rows = pd.concat([df, pd.DataFrame([e[0] for e in edges])], ignore_index=True)
for c in cat_cols:
    rows[c] = pd.Categorical(rows[c], categories=df[c].cat.categories)

def requests():
    n = len(df)
    for i, rec in enumerate(rows.to_dict("records")):
        out = {}
        for k, v in rec.items():
            if isinstance(v, float) and math.isnan(v):
                out[k] = None
            elif k in cat_cols:
                out[k] = str(v)
            else:
                out[k] = float(v)
        if i >= n and edges[i - n][1] is not None:
            text, col = edges[i - n][1]
            out[col] = text
        yield out

with open(f"{a.out}/rows.jsonl", "w") as f:
    for r in requests():
        f.write(json.dumps(r, allow_nan=False) + "\n")
for name, p in (("xgboost", xm.predict_proba(rows)[:, 1]), ("lightgbm", lm.predict_proba(rows)[:, 1])):
    with open(f"{a.out}/{name}.expected", "w") as f:
        for v in p:
            f.write("%.17g\n" % float(v))
# Exact (path-dependent) SHAP values in log-odds, one line per row: the
# features in column order, then the bias (the expected value).
contribs = {
    "xgboost": xm.get_booster().predict(xgb.DMatrix(rows, enable_categorical=True), pred_contribs=True),
    "lightgbm": lm.booster_.predict(rows, pred_contrib=True),
}
for name, c in contribs.items():
    with open(f"{a.out}/{name}.shap", "w") as f:
        for line in c:
            f.write(" ".join("%.17g" % float(v) for v in line) + "\n")
print(f"{len(df)} rows + {len(edges)} edge rows; categories: {cat_cols}")
