"""Latency of one batch through /v1 and through the Open Inference Protocol.

Usage: oip_latency.py HOST:PORT MODEL REQUESTS BATCH... [--out FILE]

For each batch size: REQUESTS sequential requests on one keep-alive
connection per protocol, after 20 warm-up requests: `/v1` predict (JSON
applications, http.client), OIP infer with JSON tensors and with binary
tensors (tritonclient.http, as a Triton user would send them). Checks that
every protocol returns the same probabilities, then prints p50 / p99
latency (ms) and rows per second; writes all of it as JSON with --out.
"""
from __future__ import annotations

import http.client
import json
import random
import sys
import time

import numpy as np
import tritonclient.http as httpclient

NUMERIC = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"]
CATEGORICAL = ["purpose", "grade", "emp_length", "home_ownership"]


def rows(n: int) -> list[dict]:
    rng = random.Random(n)
    return [
        {
            "loan_amnt": rng.randrange(1000, 40000),
            "int_rate": round(rng.uniform(0.05, 0.3), 4),
            "annual_inc": float(rng.randrange(15000, 300000)),
            "revol_util": round(rng.uniform(0, 1.05), 3),
            "dti": round(rng.uniform(0, 40), 2),
            "delinq_2yrs": rng.randrange(0, 5),
            "purpose": rng.choice(["debt_consolidation", "credit_card", "car", "small_business"]),
            "grade": rng.choice("ABCDEFG"),
            "emp_length": rng.choice(["< 1 year", "3 years", "9 years", "10+ years"]),
            "home_ownership": rng.choice(["RENT", "OWN", "MORTGAGE"]),
        }
        for _ in range(n)
    ]


def timed(call, requests: int) -> tuple[list[float], object]:
    for _ in range(20):
        last = call()
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        last = call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, last


def main() -> int:
    args = sys.argv[1:]
    out = None
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i : i + 2]
    addr, model, requests, batches = args[0], args[1], int(args[2]), [int(b) for b in args[3:]]
    host, port = addr.rsplit(":", 1)
    v1 = http.client.HTTPConnection(host, int(port), timeout=60)
    triton = httpclient.InferenceServerClient(url=addr, network_timeout=60.0)
    results = []
    print(f"{'batch':>6} {'protocol':<16} {'p50 ms':>8} {'p99 ms':>8} {'rows/s':>10}")
    for n in batches:
        batch = rows(n)
        body = json.dumps({"instances": batch}).encode()

        def call_v1():
            v1.request("POST", f"/v1/models/{model}/predict", body, {"Content-Type": "application/json"})
            response = v1.getresponse()
            data = response.read()
            assert response.status == 200, data
            return [p["probability_late"] for p in json.loads(data)["predictions"]]

        def call_oip(binary: bool):
            inputs = []
            for name in NUMERIC:
                t = httpclient.InferInput(name, [n], "FP64")
                t.set_data_from_numpy(np.array([r[name] for r in batch], dtype=np.float64), binary_data=binary)
                inputs.append(t)
            for name in CATEGORICAL:
                t = httpclient.InferInput(name, [n], "BYTES")
                t.set_data_from_numpy(np.array([r[name] for r in batch], dtype=np.object_), binary_data=binary)
                inputs.append(t)
            outputs = [httpclient.InferRequestedOutput("probability_late", binary_data=binary)]
            return triton.infer(model, inputs, outputs=outputs).as_numpy("probability_late").tolist()

        answers = {}
        for protocol, call in [
            ("v1 json", call_v1),
            ("oip json", lambda: call_oip(False)),
            ("oip binary", lambda: call_oip(True)),
        ]:
            samples, answers[protocol] = timed(call, requests)
            samples.sort()
            p50 = samples[len(samples) // 2]
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            rate = n * len(samples) / (sum(samples) / 1000)
            print(f"{n:>6} {protocol:<16} {p50:>8.2f} {p99:>8.2f} {rate:>10.0f}")
            results.append({"batch": n, "protocol": protocol, "p50_ms": p50, "p99_ms": p99, "rows_per_s": rate})
        same = answers["v1 json"] == answers["oip json"] == answers["oip binary"]
        print(f"{n:>6} answers identical across protocols: {same}")
        if not same:
            return 1
    if out:
        with open(out, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
