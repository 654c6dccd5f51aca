"""Trains scikit-learn pipelines, exports them with skl2onnx, and records
both ONNX Runtime's and scikit-learn's answers: the oracle riskserve's
`model.onnx` import is held to (tests/integration/imports.rs).

    python onnx_models.py --data loans.csv --out DIR [--target is_late]

The pipelines (the seed project's, tests/../shared/peers/loanmodel.py, with
what skl2onnx needs): numbers -> SimpleImputer(median) [-> StandardScaler],
categories -> SimpleImputer(constant "missing", missing_values="") ->
OneHotEncoder(handle_unknown="ignore"), then the classifier. skl2onnx's
needs: numbers as float32 inputs, and a string for a missing category (it
cannot take None in a string input): the empty string, which riskserve
feeds for a request's null.

Writes to DIR:
  rf.onnx        RandomForestClassifier(n_estimators=100, random_state=0)
  lr.onnx        LogisticRegression, numbers standardised
  NAME.pkl       the fitted pipeline (bench/onnx_speed.py times it)
  rows.jsonl     every row of the data, then edge rows, as riskserve requests
  NAME.ort.expected, NAME.sklearn.expected
                 P(late) per line of rows.jsonl from ONNX Runtime (one
                 thread) and from the pipeline's predict_proba (%.17g)
  hgb.onnx and its .expected files, or hgb.error: skl2onnx's error for
                 HistGradientBoostingClassifier

Edge rows: every number threshold of the forest exactly, with the next
float32 and float64 either side; 0, -0 and missing per number; every number
missing; every category missing; a category no training row has.
"""
import json, math, pickle
import numpy as np, pandas as pd, onnxruntime as ort
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from oracle_data import args_and_data, number_edges

a, df, y, cat_cols, num_cols = args_and_data()
for c in num_cols:
    df[c] = df[c].astype(np.float32)
for c in cat_cols:
    df[c] = df[c].fillna("").astype(str)


def prep(scale, dense=False):
    nums = [("impute", SimpleImputer(strategy="median"))] + ([("scale", StandardScaler())] if scale else [])
    cats = [("impute", SimpleImputer(strategy="constant", fill_value="missing", missing_values="")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=not dense))]
    return ColumnTransformer([("num", Pipeline(nums), num_cols), ("cat", Pipeline(cats), cat_cols)])


pipelines = {
    "rf": Pipeline([("prep", prep(False)), ("clf", RandomForestClassifier(n_estimators=a.trees, random_state=0, n_jobs=1))]),
    "lr": Pipeline([("prep", prep(True)), ("clf", LogisticRegression(max_iter=1000))]),
    "hgb": Pipeline([("prep", prep(False, dense=True)), ("clf", HistGradientBoostingClassifier(random_state=0))]),
}
types = [(c, FloatTensorType([None, 1]) if c in num_cols else StringTensorType([None, 1])) for c in df.columns]
models = {}
for name, p in pipelines.items():
    p.fit(df, y)
    try:
        onx = to_onnx(p, initial_types=types, target_opset={"": 21, "ai.onnx.ml": 3})
    except Exception as e:  # recorded, not hidden: the report names it
        cause = e.__cause__ or e.__context__
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        if cause is not None:
            msg += f"\ncaused by {type(cause).__name__}: {cause}"
        open(f"{a.out}/{name}.error", "w").write(msg + "\n")
        continue
    open(f"{a.out}/{name}.onnx", "wb").write(onx.SerializeToString())
    with open(f"{a.out}/{name}.pkl", "wb") as f:  # for bench/onnx_speed.py
        pickle.dump(p, f)
    models[name] = (p, onx)

# Thresholds the forest splits number columns on (its input columns are the
# numbers first, in order, then the one-hot blocks).
thresholds = {c: set() for c in num_cols}
te = [n for n in models["rf"][1].graph.node if n.op_type == "TreeEnsembleClassifier"][0]
at = {x.name: x for x in te.attribute}
for f, mode, v in zip(at["nodes_featureids"].ints, at["nodes_modes"].strings, at["nodes_values"].floats):
    if mode != b"LEAF" and f < len(num_cols):
        thresholds[num_cols[f]].add(float(np.float32(v)))

edges = number_edges(df, thresholds, num_cols)
base = df.iloc[0].copy()
r = base.copy()
for c in cat_cols: r[c] = ""
edges.append(r)
for c in cat_cols:
    r = base.copy(); r[c] = "never-seen"; edges.append(r)

# Requests keep each value as the float64 it was (an edge row's neighbours
# of a threshold); both libraries get it as the float32 riskserve rounds it to.
raw = pd.concat([df.astype({c: np.float64 for c in num_cols}), pd.DataFrame(edges)], ignore_index=True)
rows = raw.copy()
for c in num_cols:
    rows[c] = rows[c].astype(np.float32)

with open(f"{a.out}/rows.jsonl", "w") as f:
    for rec in raw.to_dict("records"):
        out = {}
        for k, v in rec.items():
            if k in cat_cols:
                out[k] = None if v == "" else str(v)
            else:
                out[k] = None if math.isnan(v) else float(v)
        f.write(json.dumps(out, allow_nan=False) + "\n")

feed = {c: rows[[c]].to_numpy().astype(np.float32 if c in num_cols else str) for c in df.columns}
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
for name, (p, onx) in models.items():
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out = session.run(None, feed)[1]
    by_ort = np.array([d[1] for d in out]) if isinstance(out, list) else out[:, 1]
    by_sklearn = p.predict_proba(rows)[:, 1]
    for who, values in (("ort", by_ort), ("sklearn", by_sklearn)):
        with open(f"{a.out}/{name}.{who}.expected", "w") as f:
            for v in values:
                f.write("%.17g\n" % float(v))
    d = np.abs(by_ort - by_sklearn)
    print(f"{name}: ONNX Runtime vs scikit-learn: largest difference {d.max():.3g} (row {int(d.argmax())})")
print(f"{len(df)} rows + {len(edges)} edge rows; categories: {cat_cols}")
