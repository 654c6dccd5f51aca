"""The Python side of bench/onnx_speed.sh: one round of ONNX Runtime 1.32
(one thread) and scikit-learn predict_proba on the seed RF-100 pipeline
that tests/oracle/onnx_models.py wrote into DIR, per row, on a batch of
10,000 rows and on batches of one row. Inputs are built before timing, as
riskserve's rows are decoded before timing (benches/onnx.rs).

    python onnx_speed.py DIR

Prints lines `<library> <batch_10000|batch_1> <ns per row>`.
"""
import json, pickle, sys, time
import numpy as np, pandas as pd, onnxruntime as ort

d = sys.argv[1]
ROWS, SINGLES_ORT, SINGLES_SKLEARN = 10_000, 2_000, 200
lines = open(f"{d}/rows.jsonl").read().splitlines()
records = [json.loads(lines[i % len(lines)]) for i in range(ROWS)]
pipeline = pickle.load(open(f"{d}/rf.pkl", "rb"))
session_options = ort.SessionOptions()
session_options.intra_op_num_threads = 1
session_options.inter_op_num_threads = 1
session = ort.InferenceSession(open(f"{d}/rf.onnx", "rb").read(), session_options, providers=["CPUExecutionProvider"])
numbers = [i.name for i in session.get_inputs() if i.type == "tensor(float)"]
frame = pd.DataFrame.from_records(records)
for c in frame.columns:
    frame[c] = frame[c].astype(np.float32) if c in numbers else frame[c].fillna("").astype(str)
frame = frame[[i.name for i in session.get_inputs()]]
feed = {c: frame[[c]].to_numpy().astype(np.float32 if c in numbers else str) for c in frame.columns}
singles = [{c: v[i:i + 1] for c, v in feed.items()} for i in range(SINGLES_ORT)]
single_frames = [frame.iloc[i:i + 1] for i in range(SINGLES_SKLEARN)]


def per_row(f, n):
    start = time.perf_counter_ns()
    f()
    return (time.perf_counter_ns() - start) / n


session.run(None, feed)  # warm up
pipeline.predict_proba(frame)
print("ort batch_10000 %.0f" % per_row(lambda: session.run(None, feed), ROWS))
print("ort batch_1 %.0f" % per_row(lambda: [session.run(None, s) for s in singles], SINGLES_ORT))
print("sklearn batch_10000 %.0f" % per_row(lambda: pipeline.predict_proba(frame), ROWS))
print("sklearn batch_1 %.0f" % per_row(lambda: [pipeline.predict_proba(f) for f in single_frames], SINGLES_SKLEARN))
