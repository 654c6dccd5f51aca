//! OIP inference bodies: tensors in, tensors out.
//!
//! In: `{"id"?, "parameters"?, "inputs": [...], "outputs"?: [...]}`, one
//! input tensor per feature, named as the feature, shape `[batch]` (or
//! `[batch, 1]`): numerics as FP64, FP32 or any INT/UINT type, categoricals
//! as BYTES; `null` (JSON) is a missing value, imputed by the model. Each
//! element then goes through the same per-field rules as `/v1`
//! (`request::numeric` / `request::categorical`),
//! so the same batch gets bit-identical answers on both protocols.
//!
//! Triton's binary tensor extension is supported both ways: with an
//! `Inference-Header-Content-Length` header the body is that many bytes of
//! JSON followed by the tensors whose `parameters.binary_data_size` says so
//! (little-endian, row-major; BYTES elements are a 4-byte little-endian
//! length then the bytes), and outputs asked for with `binary_data`
//! (or `binary_data_output` on the request) come back the same way.
//!
//! Out: `probability_late` (FP64) and `decision` (BYTES: `high_risk` /
//! `low_risk`), shape `[batch]`, or those the `outputs` selection names,
//! which may add `reasons` (BYTES: each the JSON array of reason codes
//! `/v1` answers with).

pub use super::binding::{Answer, Output, Wanted};
use super::binding::{Binder, InputTensor, RequestedOutput, TensorData};
use crate::http::error::ApiError;
use crate::http::request::Decoder;
use crate::model::row::Rows;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Decodes an infer body into what to answer and the applications.
/// `json_length` is the `Inference-Header-Content-Length` header: the JSON
/// is that many bytes, the binary tensor data follows.
pub fn decode(body: &[u8], json_length: Option<usize>, decoder: Decoder<'_>) -> Result<(Wanted, Rows), ApiError> {
    let (header, mut binary) = match json_length {
        None => (body, &[][..]),
        Some(0) => {
            return Err(ApiError::bad_request(
                "a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; \
                 this model takes one input tensor per feature: send the JSON inference header first",
            ))
        }
        Some(n) if n > body.len() => {
            return Err(ApiError::bad_request(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )))
        }
        Some(n) => body.split_at(n),
    };
    if header.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed_json(
            "request body is empty; send {\"inputs\": [...]}, one tensor per feature",
        ));
    }
    let request: RequestJson = serde_json::from_slice(header).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "malformed JSON" } else { "not an inference request" };
        let hint = if json_length.is_none() && e.to_string().starts_with("trailing characters") {
            " (binary tensor data after the JSON needs an Inference-Header-Content-Length header)"
        } else {
            ""
        };
        ApiError::malformed_json(format!("{what}: {e}{hint}"))
    })?;

    let mut binder = Binder::new(decoder);
    let all_binary = flag(request.parameters.as_ref(), "binary_data_output").unwrap_or_else(|p| {
        binder.problem("parameters", p);
        false
    });
    let requested = request.outputs.iter().flatten().map(|o| RequestedOutput {
        name: &o.name,
        shared_memory: uses_shared_memory(o.parameters.as_ref()),
        binary: match o.parameters.as_ref().and_then(|p| p.get("binary_data")) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => flag(o.parameters.as_ref(), "binary_data").map(Some),
        },
    });
    let outputs = binder.outputs(requested, all_binary);

    // The binary tensors are taken in order, even from a tensor with
    // another problem, so the rest line up.
    for input in &request.inputs {
        let name = input.name.as_str();
        let binary_size = match binary_data_size(input.parameters.as_ref()) {
            Ok(size) => size,
            Err(p) => {
                binder.problem(super::binding::shown(name), p);
                continue;
            }
        };
        let data = match (binary_size, &input.data) {
            (Some(size), _) if size > binary.len() => {
                binder.problem(
                    super::binding::shown(name),
                    format!("binary_data_size is {size} but only {} bytes of binary data are left", binary.len()),
                );
                binary = &[];
                continue;
            }
            (Some(size), data) => {
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                match data {
                    Some(_) => TensorData::Invalid("has both data and binary_data_size; send one".into()),
                    None => TensorData::Raw(mine),
                }
            }
            (None, Some(data)) => TensorData::Json(data),
            (None, None) => TensorData::Invalid("has no data (and no binary_data_size)".into()),
        };
        binder.input(InputTensor {
            name,
            datatype: &input.datatype,
            shape: &input.shape,
            shared_memory: uses_shared_memory(input.parameters.as_ref()),
            data,
        });
    }
    if !binary.is_empty() {
        binder.problem(
            "inputs",
            format!("{} bytes of binary data are left over after the tensors' binary_data_size", binary.len()),
        );
    }
    let rows = binder.rows()?;
    Ok((Wanted { id: request.id, outputs }, rows))
}

/// A boolean parameter, `false` when absent.
fn flag(parameters: Option<&Map<String, Value>>, key: &str) -> Result<bool, String> {
    match parameters.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("parameter `{key}` must be a boolean, got {other}")),
    }
}

/// Whether a tensor names a shared-memory region (Triton's extension).
fn uses_shared_memory(parameters: Option<&Map<String, Value>>) -> bool {
    parameters.is_some_and(|p| p.contains_key("shared_memory_region"))
}

/// An input's `binary_data_size` parameter, if any.
fn binary_data_size(parameters: Option<&Map<String, Value>>) -> Result<Option<usize>, String> {
    match parameters.and_then(|p| p.get("binary_data_size")) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("parameter `binary_data_size` must be a byte count, got {v}")),
    }
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<ResponseOutput>,
}

#[derive(Serialize)]
struct ResponseOutput {
    name: &'static str,
    datatype: &'static str,
    shape: [usize; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutputData {
    Numbers(Vec<f64>),
    Texts(Vec<&'static str>),
    Strings(Vec<String>),
}

/// An encoded answer: the body, and the JSON's length when binary tensor
/// data follows it (for `Inference-Header-Content-Length`).
pub struct Encoded {
    pub body: Vec<u8>,
    pub json_length: Option<usize>,
}

/// Encodes an answer as JSON (and binary tensors where asked).
pub fn encode(answer: &Answer<'_>) -> Result<Encoded, serde_json::Error> {
    let Answer { wanted, model_name, model_version, answers, fields } = *answer;
    let mut binary = Vec::new();
    let outputs = wanted
        .outputs
        .iter()
        .map(|&(output, as_binary)| {
            let (parameters, data) = if as_binary {
                let start = binary.len();
                output.write_raw(answers, fields, &mut binary);
                (Some(BinarySize { binary_data_size: binary.len() - start }), None)
            } else {
                let data = match output {
                    Output::Probability => {
                        OutputData::Numbers(answers.iter().map(|a| a.prediction.probability_late).collect())
                    }
                    Output::Decision => {
                        OutputData::Texts(answers.iter().map(|a| a.prediction.decision.as_str()).collect())
                    }
                    Output::Reasons => OutputData::Strings(answers.iter().map(|a| a.reasons_json(fields)).collect()),
                };
                (None, Some(data))
            };
            ResponseOutput {
                name: output.name(),
                datatype: output.datatype(),
                shape: [answers.len()],
                parameters,
                data,
            }
        })
        .collect();
    let response = ResponseJson { model_name, model_version, id: wanted.id.as_deref(), outputs };
    let mut body = serde_json::to_vec(&response)?;
    let any_binary = wanted.outputs.iter().any(|&(_, b)| b);
    let json_length = any_binary.then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(Encoded { body, json_length })
}

#[cfg(test)]
mod tests;
