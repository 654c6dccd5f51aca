//! What the gRPC listener shares with HTTP, over the network: one admission
//! control (a slot held by an HTTP upload sheds a gRPC call at once with
//! RESOURCE_EXHAUSTED), the client's grpc-timeout, the message and batch
//! limits, version pins and a canary's sticky key (the same metadata entry
//! as the HTTP header), and graceful shutdown with GOAWAY.

use super::*;
use riskserve::grpc::proto::{ModelMetadataRequest, ModelMetadataResponse};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const RESOURCE_EXHAUSTED: i32 = 8;
const INVALID_ARGUMENT: i32 = 3;
const NOT_FOUND: i32 = 5;
const OUT_OF_RANGE: i32 = 11;

/// Starts an HTTP predict whose body stops half-way: it holds an admission
/// slot (taken before the body is read) until the rest is sent.
async fn hold_a_slot(s: &TestServer) -> tokio::net::TcpStream {
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST {PREDICT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        ROW.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&ROW.as_bytes()[..10]).await.unwrap();
    s.wait_metric("riskserve_requests_admitted", &[], 1.0).await;
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admission_control_sheds_grpc_at_once_and_grpc_timeout_bounds_the_wait() {
    let (s, addr) = grpc_server(|c| {
        c.max_inflight_requests = 1;
        c.max_queued_requests = 0;
    })
    .await;
    let client = connect(addr).await;
    let _slow = hold_a_slot(&s).await;
    let e = infer(&client, &infer_request(&one_row()), &[]).await.unwrap_err();
    assert_eq!(e.code, RESOURCE_EXHAUSTED, "{e}");
    assert!(e.message.contains("limit of requests in progress"), "{e}");
    let metrics = s.metrics().await;
    assert_eq!(metric(&metrics, "riskserve_requests_shed_total", &[("reason", "queue_full")]), Some(1.0));
    let shed = [("protocol", "grpc"), ("code", "RESOURCE_EXHAUSTED")];
    assert_eq!(metric(&metrics, "riskserve_requests_total", &shed), Some(1.0), "{metrics}");

    // Queued instead, a call waits for the slot no longer than its own
    // grpc-timeout: the server's queue wait and request timeout are a minute.
    let (s, addr) = grpc_server(|c| {
        c.max_inflight_requests = 1;
        c.max_queued_requests = 4;
        c.max_queue_wait = Duration::from_secs(60);
        c.request_timeout = Duration::from_secs(60);
    })
    .await;
    let client = connect(addr).await;
    let _slow = hold_a_slot(&s).await;
    let e = infer(&client, &infer_request(&one_row()), &[("grpc-timeout", "300m")]).await.unwrap_err();
    assert_eq!(e.code, RESOURCE_EXHAUSTED, "shed when its deadline came, within the client's {WAIT:?}: {e}");
    assert!(e.message.contains("no slot for this request became free in time"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_and_batch_limits_pins_and_metadata_answer_like_http() {
    let (s, addr) = grpc_server(|c| {
        c.max_body_bytes = 64 * 1024;
        c.max_batch = 100;
        c.default_policy = riskserve::config::VersionPolicy::All;
    })
    .await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    let client = connect(addr).await;
    let rows: Vec<Value> = one_row().into_iter().cycle().take(100).collect();
    let answer = infer(&client, &infer_request(&rows), &[]).await.unwrap();
    assert_eq!((answer.model_version.as_str(), probabilities(&answer).len()), ("2", 100));

    let over: Vec<Value> = one_row().into_iter().cycle().take(101).collect();
    let e = infer(&client, &infer_request(&over), &[]).await.unwrap_err();
    assert_eq!(e.code, INVALID_ARGUMENT, "{e}");
    assert!(e.message.contains("a batch of 101 is over the limit of 100 applications per request"), "{e}");

    let huge: Vec<Value> = one_row().into_iter().cycle().take(2000).collect();
    let e = infer(&client, &infer_request(&huge), &[]).await.unwrap_err();
    assert_eq!(e.code, OUT_OF_RANGE, "over max_body_bytes: {e}");
    assert!(e.message.contains("the limit is: 65536 bytes"), "{e}");

    let mut pinned = infer_request(&one_row());
    pinned.model_version = "1".into();
    let answer = infer(&client, &pinned, &[]).await.unwrap();
    assert_eq!(answer.model_version, "1");
    let v1 = s.post("/v1/models/credit-risk/versions/1/predict", &format!(r#"{{"instances":[{ROW}]}}"#)).await.json();
    let want = v1["predictions"][0]["probability_late"].as_f64().unwrap();
    assert_eq!(probabilities(&answer)[0].to_bits(), want.to_bits(), "{v1}");
    pinned.model_version = "9".into();
    let e = infer(&client, &pinned, &[]).await.unwrap_err();
    assert_eq!(e.code, NOT_FOUND, "{e}");
    assert!(e.message.contains("version 9 of model `credit-risk` is not loaded; loaded versions: 1, 2"), "{e}");

    let request = ModelMetadataRequest { name: MODEL.into(), version: String::new() };
    let answer =
        client.unary("/inference.GRPCInferenceService/ModelMetadata", &request.encode_to_vec(), &[]).await.unwrap();
    let metadata = ModelMetadataResponse::decode(answer).unwrap();
    assert_eq!(metadata.versions, ["1", "2"]);
    let http = s.get("/v2/models/credit-risk").await.json();
    let names: Vec<&str> = metadata.inputs.iter().map(|t| t.name.as_str()).collect();
    let http_names: Vec<&str> =
        http["inputs"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, http_names);
    let e = client.unary("/inference.GRPCInferenceService/ModelStreamInfer", &[], &[]).await.unwrap_err();
    assert_eq!(e.code, 12, "UNIMPLEMENTED: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_routes_a_key_to_the_same_version_over_grpc_as_over_http() {
    let (s, addr) = grpc_server(|_| {}).await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    let dir = s.models.join(MODEL);
    std::fs::write(dir.join(".rollout.toml.tmp"), "stable = 1\ncanary = { version = 2, weight = 0.5 }\n").unwrap();
    std::fs::rename(dir.join(".rollout.toml.tmp"), dir.join("rollout.toml")).unwrap();
    s.wait_for_pass("canary applied", |snap| snap.models.get(MODEL).is_some_and(|m| m.rollout.is_some())).await;
    let client = connect(addr).await;
    let mut http = Client::connect(s.addr).await.unwrap();
    let mut seen = [0; 3];
    for i in 0..200 {
        let key = format!("applicant-{i}");
        let headers = [("content-type", "application/json"), ("x-request-id", key.as_str())];
        let r = http.request("POST", PREDICT, &headers, ROW.as_bytes()).await.unwrap();
        let over_http = r.json()["model_version"].as_u64().unwrap();
        let answer = infer(&client, &infer_request(&one_row()), &[("x-request-id", &key)]).await.unwrap();
        assert_eq!(answer.model_version, over_http.to_string(), "key {key}");
        seen[over_http as usize] += 1;
    }
    assert!(seen[1] > 0 && seen[2] > 0, "both versions answer some keys: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_the_call_in_flight_and_sends_goaway() {
    let (s, addr) = grpc_server(|_| {}).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let message = infer_request(&one_row()).encode_to_vec();
    let frame = testkit::grpc::length_prefixed(&message);
    let request = http::Request::post(format!("http://{addr}{INFER}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    // Half the message: the call is in flight, waiting for the rest.
    body.send_data(frame[..20].to_vec().into(), false).unwrap();
    s.wait_metric("riskserve_connections_open", &[], 1.0).await;
    let shutdown = tokio::spawn(s.server.shutdown());
    eventually("the listener is closed", || async { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
    assert!(!shutdown.is_finished(), "shutdown waits for the call in flight");
    body.send_data(frame[20..].to_vec().into(), true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, stream.data()).await.unwrap() {
        data.extend_from_slice(&chunk.unwrap());
    }
    let trailers = tokio::time::timeout(WAIT, stream.trailers()).await.unwrap().unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0");
    let answer = ModelInferResponse::decode(&data[5..]).unwrap();
    assert_eq!(answer.model_version, "1");
    // GOAWAY: the connection ends and takes no new call.
    tokio::time::timeout(WAIT, connection).await.expect("the server closes the connection").unwrap().ok();
    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown completes").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reasons_output_carries_the_v1_reason_codes() {
    let (s, addr) = grpc_server(|_| {}).await;
    let client = connect(addr).await;
    let rows = crate::oip_clients::batch();
    let mut request = infer_request(&rows);
    request.outputs.push(riskserve::grpc::proto::model_infer_request::InferRequestedOutputTensor {
        name: "reasons".into(),
        ..Default::default()
    });
    let answer = infer(&client, &request, &[]).await.unwrap();
    assert_eq!(answer.outputs.len(), 1, "only the output asked for");
    assert_eq!((answer.outputs[0].name.as_str(), answer.outputs[0].datatype.as_str()), ("reasons", "BYTES"));
    let mut raw = &answer.raw_output_contents[0][..];
    let v1 = crate::oip_clients::v1_answer(&s).await;
    for (i, p) in v1["predictions"].as_array().unwrap().iter().enumerate() {
        let n = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        let shown: Value = serde_json::from_slice(&raw[4..4 + n]).unwrap();
        assert_eq!(shown, p["reasons"], "row {i}");
        assert!(!shown.as_array().unwrap().is_empty(), "row {i}");
        raw = &raw[4 + n..];
    }
    assert!(raw.is_empty());
}
