//! The gRPC listener (`--grpc-listen`): real clients ([`clients`]), the
//! guarantees it shares with HTTP ([`service`]: admission, deadline,
//! limits, pins and rollouts, metrics, graceful shutdown) and HTTP/2 abuse
//! under good traffic ([`abuse`]).

mod abuse;
mod clients;
mod service;

use crate::common::*;
use prost::Message;
use riskserve::config::Config;
use riskserve::grpc::proto::model_infer_request::InferInputTensor;
use riskserve::grpc::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use serde_json::Value;
use std::net::SocketAddr;
use testkit::grpc::{GrpcClient, GrpcError};

pub const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A server with its gRPC listener on 127.0.0.1:0, changed by `tweak`.
pub async fn grpc_server(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let s = TestServer::start_with(|c| {
        c.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(c);
    })
    .await;
    let addr = s.server.grpc_addr.expect("the gRPC listener is bound");
    (s, addr)
}

pub async fn connect(addr: SocketAddr) -> GrpcClient {
    GrpcClient::connect(addr, WAIT).await.expect("gRPC connection")
}

/// An infer request for `rows` (`/v1` application objects, every field
/// set), typed contents, one tensor per feature.
pub fn infer_request(rows: &[Value]) -> ModelInferRequest {
    let numeric = ["loan_amnt", "int_rate", "annual_inc", "revol_util", "dti", "delinq_2yrs"];
    let categorical = ["purpose", "grade", "emp_length", "home_ownership"];
    let shape = vec![rows.len() as i64];
    let mut inputs: Vec<InferInputTensor> = numeric
        .iter()
        .map(|&name| InferInputTensor {
            name: name.into(),
            datatype: "FP64".into(),
            shape: shape.clone(),
            contents: Some(InferTensorContents {
                fp64_contents: rows.iter().map(|r| r[name].as_f64().unwrap()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    inputs.extend(categorical.iter().map(|&name| InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: shape.clone(),
        contents: Some(InferTensorContents {
            bytes_contents: rows.iter().map(|r| r[name].as_str().unwrap().as_bytes().to_vec()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }));
    ModelInferRequest { model_name: MODEL.into(), inputs, ..Default::default() }
}

/// One ModelInfer call.
pub async fn infer(
    client: &GrpcClient,
    request: &ModelInferRequest,
    metadata: &[(&str, &str)],
) -> Result<ModelInferResponse, GrpcError> {
    let answer = client.unary(INFER, &request.encode_to_vec(), metadata).await?;
    Ok(ModelInferResponse::decode(answer).expect("a ModelInferResponse"))
}

/// The probabilities of an answer (its FP64 raw output).
pub fn probabilities(response: &ModelInferResponse) -> Vec<f64> {
    let at = response.outputs.iter().position(|o| o.name == "probability_late").expect("probability_late");
    response.raw_output_contents[at].chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The one row of [`ROW`].
pub fn one_row() -> Vec<Value> {
    vec![serde_json::from_str(ROW).unwrap()]
}
