"""The Open Inference Protocol over gRPC, checked by two independent clients.

Usage: grpc_client.py ADDR MODEL BATCH_JSON

ADDR is host:port of the gRPC listener; MODEL the model name; BATCH_JSON a
file holding a JSON list of applications (the /v1 field objects, every field
present and non-null). Runs:

- "triton": tritonclient.grpc, nothing hand-rolled: server liveness,
  readiness and metadata, model metadata and readiness, the repository
  index, one batch inference (the client sends raw_input_contents), and the
  errors it raises for an unknown model and for a bad tensor.
- "raw": grpcio alone, calling each method by its full name with messages
  built field by field: ModelInfer with typed `contents` (fp64_contents,
  bytes_contents), the answer decoded from raw_output_contents here, and
  grpc.health.v1.Health/Check encoded by hand (no health package).

Probabilities are reported as the integer bits of the float64, so the caller
compares them bit for bit. Prints one JSON report on stdout; exits 0 when the
report was written; the caller judges it.
"""
from __future__ import annotations

import json
import struct
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

NUMERIC = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"]
CATEGORICAL = ["purpose", "grade", "emp_length", "home_ownership"]
TIMEOUT = 30.0


def bits(values) -> list[int]:
    """float64 values as their integer bit patterns."""
    return [struct.unpack("<Q", struct.pack("<d", float(v)))[0] for v in values]


def triton(url: str, model: str, rows: list, report: dict) -> None:
    client = grpcclient.InferenceServerClient(url=url)
    errors = report["errors"]

    def step(name, call):
        try:
            report[name] = call()
        except InferenceServerException as e:
            errors[name] = f"{e.status()}: {e.message()}"
        except Exception as e:  # noqa: BLE001 - the report names whatever broke
            errors[name] = f"{type(e).__name__}: {e}"

    step("server_live", client.is_server_live)
    step("server_ready", client.is_server_ready)
    step("server_metadata", lambda: client.get_server_metadata(as_json=True))
    step("model_metadata", lambda: client.get_model_metadata(model, as_json=True))
    step("model_ready", lambda: client.is_model_ready(model))
    step("model_ready_unknown", lambda: client.is_model_ready("no-such-model"))
    step("repository_index", lambda: client.get_model_repository_index(as_json=True))

    def inputs(rows, grade_type="BYTES"):
        tensors = []
        for name in NUMERIC:
            tensor = grpcclient.InferInput(name, [len(rows)], "FP64")
            tensor.set_data_from_numpy(np.array([float(r[name]) for r in rows], dtype=np.float64))
            tensors.append(tensor)
        for name in CATEGORICAL:
            datatype = grade_type if name == "grade" else "BYTES"
            tensor = grpcclient.InferInput(name, [len(rows)], datatype)
            if datatype == "BYTES":
                tensor.set_data_from_numpy(np.array([str(r[name]) for r in rows], dtype=np.object_))
            else:
                tensor.set_data_from_numpy(np.zeros(len(rows), dtype=np.float64))
            tensors.append(tensor)
        return tensors

    def infer():
        outputs = [grpcclient.InferRequestedOutput("probability_late"), grpcclient.InferRequestedOutput("decision")]
        result = client.infer(model, inputs(rows), request_id="grpc-client-1", outputs=outputs, client_timeout=TIMEOUT)
        response = result.get_response(as_json=True)
        decisions = [d.decode() for d in result.as_numpy("decision").tolist()]
        return {
            "model_name": response["model_name"],
            "model_version": response["model_version"],
            "id": response.get("id", ""),
            "probability_bits": bits(result.as_numpy("probability_late").tolist()),
            "decision": decisions,
            "shapes": {o["name"]: [int(d) for d in o["shape"]] for o in response["outputs"]},
        }

    step("infer", infer)

    def error_of(call):
        try:
            call()
        except InferenceServerException as e:
            return {"status": e.status(), "message": e.message()}
        return {"status": "no error"}

    report["error_unknown_model"] = error_of(lambda: client.infer("no-such-model", inputs(rows), client_timeout=TIMEOUT))
    report["error_bad_tensor"] = error_of(lambda: client.infer(model, inputs(rows, "FP64"), client_timeout=TIMEOUT))
    client.close()


def raw(url: str, model: str, rows: list, report: dict) -> None:
    channel = grpc.insecure_channel(url)

    def unary(method: str, request: bytes) -> bytes:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(request, timeout=TIMEOUT)

    request = service_pb2.ModelInferRequest(model_name=model, id="raw-1")
    for name in NUMERIC:
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[len(rows)])
        tensor.contents.fp64_contents.extend(float(r[name]) for r in rows)
    for name in CATEGORICAL:
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=[len(rows)])
        tensor.contents.bytes_contents.extend(str(r[name]).encode() for r in rows)
    try:
        answer = service_pb2.ModelInferResponse.FromString(
            unary("/inference.GRPCInferenceService/ModelInfer", request.SerializeToString())
        )
        outputs = {}
        for output, data in zip(answer.outputs, answer.raw_output_contents):
            if output.datatype == "FP64":
                outputs[output.name] = bits(struct.unpack(f"<{len(data) // 8}d", data))
            else:
                texts, at = [], 0
                while at < len(data):
                    (n,) = struct.unpack_from("<I", data, at)
                    texts.append(data[at + 4 : at + 4 + n].decode())
                    at += 4 + n
                outputs[output.name] = texts
        report["raw_infer"] = {
            "model_name": answer.model_name,
            "model_version": answer.model_version,
            "id": answer.id,
            "probability_bits": outputs.get("probability_late"),
            "decision": outputs.get("decision"),
        }
    except grpc.RpcError as e:
        report["errors"]["raw_infer"] = f"{e.code().name}: {e.details()}"

    # grpc.health.v1.HealthCheckRequest{service: ""} is empty; the answer's
    # field 1 (a varint) is the status: 1 SERVING, 2 NOT_SERVING.
    for service in ["", "inference.GRPCInferenceService", "nope"]:
        encoded = service.encode()
        message = (b"\x0a" + bytes([len(encoded)]) + encoded) if encoded else b""
        try:
            answer = unary("/grpc.health.v1.Health/Check", message)
            report.setdefault("health", {})[service] = answer[1] if answer[:1] == b"\x08" else 0
        except grpc.RpcError as e:
            report.setdefault("health", {})[service] = e.code().name
    channel.close()


def main() -> int:
    url, model, batch_path = sys.argv[1:4]
    rows = json.load(open(batch_path))
    report: dict = {"url": url, "model": model, "errors": {}}
    triton(url, model, rows, report)
    raw(url, model, rows, report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
