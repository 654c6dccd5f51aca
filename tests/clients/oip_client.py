"""An Open Inference Protocol client check, with Triton's own client library.

Usage: oip_client.py BASE_URL MODEL BATCH_JSON [--binary]

BASE_URL is host:port (tritonclient's form, e.g. 127.0.0.1:8080); MODEL the
model name; BATCH_JSON a file holding a JSON list of applications (the /v1
field objects, every field present and non-null). Runs, with
tritonclient.http and nothing hand-rolled: server liveness, readiness and
metadata, model metadata and readiness, the repository index, and one batch
inference with one input tensor per feature (numerics FP64, categoricals
BYTES), JSON tensors in and out or, with --binary, the binary tensor
extension both ways (the client's default). The same request goes to every server: the request-level
`content_type: pd` and per-input `content_type: str` parameters are what
MLServer needs to hand the tensors to scikit-learn as a DataFrame; other
servers ignore them.

Prints one JSON report on stdout: each step's result, or its error text under
"errors". Exits 0 when the report was written; the caller judges it.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

NUMERIC = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"]
CATEGORICAL = ["purpose", "grade", "emp_length", "home_ownership"]


def jsonable(value):
    """numpy values (and bytes) as plain JSON values."""
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def main() -> int:
    url, model, batch_path = sys.argv[1:4]
    binary = "--binary" in sys.argv[4:]
    rows = json.load(open(batch_path))
    report: dict = {"url": url, "model": model, "binary_data": binary, "errors": {}}
    client = httpclient.InferenceServerClient(url=url, connection_timeout=30.0, network_timeout=30.0)

    def step(name, call):
        try:
            report[name] = jsonable(call())
        except InferenceServerException as e:
            report["errors"][name] = f"{e.status()}: {e.message()}"
        except Exception as e:  # noqa: BLE001 - the report names whatever broke
            report["errors"][name] = f"{type(e).__name__}: {e}"

    step("server_live", client.is_server_live)
    step("server_ready", client.is_server_ready)
    step("server_metadata", client.get_server_metadata)
    step("model_metadata", lambda: client.get_model_metadata(model))
    step("model_ready", lambda: client.is_model_ready(model))
    step("repository_index", client.get_model_repository_index)

    def infer():
        inputs = []
        for name in NUMERIC:
            tensor = httpclient.InferInput(name, [len(rows)], "FP64")
            tensor.set_data_from_numpy(np.array([float(r[name]) for r in rows], dtype=np.float64), binary_data=binary)
            inputs.append(tensor)
        for name in CATEGORICAL:
            tensor = httpclient.InferInput(name, [len(rows)], "BYTES")
            tensor.set_data_from_numpy(np.array([str(r[name]) for r in rows], dtype=np.object_), binary_data=binary)
            # tritonclient has no public setter for input parameters; MLServer
            # needs this one to decode BYTES as text, not bytes.
            tensor._parameters["content_type"] = "str"
            inputs.append(tensor)
        # With no outputs named, tritonclient asks for every output as binary
        # data; in JSON mode name the outputs the metadata lists (if any) and
        # ask for them as JSON, so both directions are covered.
        listed = [o["name"] for o in report.get("model_metadata", {}).get("outputs", [])]
        outputs = None if binary or not listed else [
            httpclient.InferRequestedOutput(name, binary_data=False) for name in listed
        ]
        result = client.infer(
            model, inputs, outputs=outputs, request_id="oip-client-1", parameters={"content_type": "pd"}
        )
        response = result.get_response()
        outputs = {}
        for out in response.get("outputs", []):
            outputs[out["name"]] = {
                "datatype": out["datatype"],
                "shape": out["shape"],
                "data": jsonable(result.as_numpy(out["name"])),
            }
        return {
            "model_name": response.get("model_name"),
            "model_version": response.get("model_version"),
            "id": response.get("id"),
            "outputs": outputs,
        }

    step("infer", infer)
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
