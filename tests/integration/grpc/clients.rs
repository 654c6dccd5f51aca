//! Two clients nobody here wrote talk to the gRPC listener: Triton's
//! `tritonclient.grpc` and bare `grpcio` calls with typed contents (both in
//! `tests/clients/grpc_client.py`); their answers equal `/v1`'s bit for bit.

use super::grpc_server;
use crate::common::*;
use crate::oip_clients::{run_bounded, v1_answer, write_batch, CLIENT_TIMEOUT};
use serde_json::{json, Value};
use std::process::Command;
use testkit::tools::{python, workspace_root};

/// The float64 bits of `/v1`'s probabilities, and its decisions.
fn v1_bits(v1: &Value) -> (Vec<u64>, Vec<Value>) {
    let predictions = v1["predictions"].as_array().unwrap();
    let bits = predictions.iter().map(|p| p["probability_late"].as_f64().unwrap().to_bits()).collect();
    (bits, predictions.iter().map(|p| p["decision"].clone()).collect())
}

fn bits_of(report: &Value) -> Vec<u64> {
    report["probability_bits"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_grpc_and_bare_grpcio_get_the_v1_answers() {
    let (s, grpc) = grpc_server(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let batch_file = write_batch(dir.path());
    let v1 = v1_answer(&s).await;
    let (want_bits, want_decisions) = v1_bits(&v1);

    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/clients/grpc_client.py")).arg(grpc.to_string()).arg(MODEL).arg(&batch_file);
    let run_dir = dir.path().to_path_buf();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_bounded(cmd, &run_dir, "grpc-client", CLIENT_TIMEOUT)).await.unwrap();
    assert!(ok, "the client script failed:\n{err}\n{out}");
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("the client printed no JSON report ({e}):\n{out}\n{err}"));

    assert_eq!(report["errors"], json!({}), "{report:#}");
    assert_eq!((&report["server_live"], &report["server_ready"]), (&json!(true), &json!(true)));
    assert_eq!((&report["model_ready"], &report["model_ready_unknown"]), (&json!(true), &json!(false)));
    assert_eq!(report["server_metadata"]["name"], "riskserve");
    let metadata = &report["model_metadata"];
    assert_eq!((&metadata["name"], &metadata["versions"]), (&json!(MODEL), &json!(["1"])));
    assert_eq!(metadata["inputs"].as_array().unwrap().len(), 10, "{metadata:#}");
    assert_eq!(metadata["outputs"][0], json!({"name": "probability_late", "datatype": "FP64", "shape": ["-1"]}));
    assert_eq!(
        report["repository_index"],
        json!({"models": [{"name": MODEL, "version": "1", "state": "READY"}]}),
        "{report:#}"
    );

    // tritonclient (raw_input_contents) and grpcio (typed contents).
    for (client, infer, id) in
        [("tritonclient", &report["infer"], "grpc-client-1"), ("grpcio", &report["raw_infer"], "raw-1")]
    {
        assert_eq!(
            (&infer["model_name"], &infer["model_version"], &infer["id"]),
            (&json!(MODEL), &json!("1"), &json!(id)),
            "{client}: {infer:#}"
        );
        assert_eq!(bits_of(infer), want_bits, "{client}: probabilities bit for bit");
        assert_eq!(infer["decision"].as_array().unwrap(), &want_decisions, "{client}");
    }
    assert_eq!(report["infer"]["shapes"]["probability_late"], json!([want_bits.len()]));

    let unknown = &report["error_unknown_model"];
    assert_eq!(unknown["status"], "StatusCode.NOT_FOUND", "{unknown:#}");
    assert!(unknown["message"].as_str().unwrap().contains("model `no-such-model` is not served"), "{unknown:#}");
    let bad = &report["error_bad_tensor"];
    assert_eq!(bad["status"], "StatusCode.INVALID_ARGUMENT", "{bad:#}");
    assert!(bad["message"].as_str().unwrap().contains("grade: is categorical: send BYTES, got FP64"), "{bad:#}");

    assert_eq!(report["health"], json!({"": 1, "inference.GRPCInferenceService": 1, "nope": "NOT_FOUND"}));

    let metrics = s.metrics().await;
    let infer = [("protocol", "grpc"), ("route", "/inference.GRPCInferenceService/ModelInfer")];
    assert_eq!(metric(&metrics, "riskserve_requests_total", &[infer[0], infer[1], ("code", "OK")]), Some(2.0));
    let refused = [infer[0], infer[1], ("code", "INVALID_ARGUMENT")];
    assert_eq!(metric(&metrics, "riskserve_requests_total", &refused), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "riskserve_request_duration_seconds_count", &infer), Some(4.0), "{metrics}");
}
