"""What the oracle scripts (native_models.py, onnx_models.py) share: their
command line and the data they train on.

    --data loans.csv --out DIR [--target is_late] [--trees 100]
"""
import argparse
import pandas as pd


def args_and_data():
    """The parsed arguments, the features (target popped), the target, and
    the category and number columns (categories: the non-numeric ones)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--target", default="is_late")
    ap.add_argument("--trees", type=int, default=100)
    a = ap.parse_args()
    df = pd.read_csv(a.data)
    y = df.pop(a.target).astype(int)
    cat_cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    num_cols = [c for c in df.columns if c not in cat_cols]
    return a, df, y, cat_cols, num_cols


def number_edges(df, thresholds, num_cols):
    """Edge rows, copies of the first row: each number threshold exactly,
    with the next float64 and float32 either side (finite ones); 0, -0 and
    missing per number column; every number missing at once."""
    import math
    import numpy as np
    edges = []
    base = df.iloc[0].copy()
    np.seterr(over="ignore")
    for c, ts in thresholds.items():
        for t in sorted(ts):
            for v in (t, np.nextafter(t, -math.inf), np.nextafter(t, math.inf),
                      float(np.nextafter(np.float32(t), np.float32(-math.inf))),
                      float(np.nextafter(np.float32(t), np.float32(math.inf)))):
                if math.isfinite(v) and abs(v) < 1e30:  # XGBoost refuses what overflows a float
                    r = base.copy(); r[c] = v; edges.append(r)
    for c in num_cols:
        for v in (0.0, -0.0, np.nan):
            r = base.copy(); r[c] = v; edges.append(r)
    r = base.copy()
    for c in num_cols: r[c] = np.nan
    edges.append(r)
    return edges
