//! `grpc_body`: writes the gRPC request body (a length-prefixed message, as
//! on the wire) of one `ModelInfer` call carrying the application in a JSON
//! body file, for load generators that replay a fixed body (h2load in
//! `bench/fast_path.sh`). The tensors are those of `swapbench --grpc`
//! (`swapbench::requests::infer_messages`: one per field, FP64 or BYTES);
//! `--outputs` names the outputs to ask for (none: the server's default,
//! probability and decision).
//!
//! `grpc_body --body body.json --model credit-risk [--outputs probability_late,decision,reasons] --out body.bin`

#![forbid(unsafe_code)]

use bytes::Bytes;
use clap::Parser;
use prost::Message;
use riskserve::grpc::proto::model_infer_request::InferRequestedOutputTensor;
use riskserve::grpc::proto::ModelInferRequest;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Write one ModelInfer request body (gRPC framing) from a JSON application")]
struct Args {
    /// A JSON object of the application's fields (no nulls: gRPC's typed
    /// contents cannot carry a missing value).
    #[arg(long)]
    body: PathBuf,
    /// The model to call.
    #[arg(long)]
    model: String,
    /// Outputs to ask for, comma-separated (default: none named).
    #[arg(long, value_delimiter = ',')]
    outputs: Vec<String>,
    /// Where to write the framed message.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let body = std::fs::read(&args.body).map_err(|e| format!("{}: {e}", args.body.display()))?;
    let messages = swapbench::requests::infer_messages(&[Bytes::from(body)], &args.model)?;
    let mut request = ModelInferRequest::decode(messages[0].clone()).map_err(|e| e.to_string())?;
    request.outputs =
        args.outputs.into_iter().map(|name| InferRequestedOutputTensor { name, ..Default::default() }).collect();
    let framed = testkit::grpc::length_prefixed(&request.encode_to_vec());
    std::fs::write(&args.out, framed).map_err(|e| format!("{}: {e}", args.out.display()))
}
