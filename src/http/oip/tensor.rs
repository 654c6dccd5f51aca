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
//! `low_risk`), shape `[batch]`, or those the `outputs` selection names.

use crate::http::error::{ApiError, FieldProblem};
use crate::http::request::{element, Decoder, Scalar};
use crate::model::row::Rows;
use crate::model::Prediction;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// At most this many problems are listed in one error.
const MAX_PROBLEMS: usize = 50;

/// An output tensor of every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Probability,
    Decision,
}

impl Output {
    pub const ALL: [Output; 2] = [Output::Probability, Output::Decision];

    pub fn name(self) -> &'static str {
        match self {
            Output::Probability => "probability_late",
            Output::Decision => "decision",
        }
    }

    pub fn datatype(self) -> &'static str {
        match self {
            Output::Probability => "FP64",
            Output::Decision => "BYTES",
        }
    }

    fn named(name: &str) -> Option<Output> {
        Output::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// What the answer needs from the request, beside the applications.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// Echoed as the response's `id`.
    pub id: Option<String>,
    /// The outputs to return, in order, each as binary data or JSON.
    pub outputs: Vec<(Output, bool)>,
}

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
    shape: Vec<u64>,
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

/// A tensor element type the inputs accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataType {
    Float { bytes: usize },
    Int { bytes: usize, signed: bool },
    Bytes,
}

impl DataType {
    fn parse(text: &str) -> Option<DataType> {
        Some(match text {
            "FP64" => DataType::Float { bytes: 8 },
            "FP32" => DataType::Float { bytes: 4 },
            "INT64" => DataType::Int { bytes: 8, signed: true },
            "INT32" => DataType::Int { bytes: 4, signed: true },
            "INT16" => DataType::Int { bytes: 2, signed: true },
            "INT8" => DataType::Int { bytes: 1, signed: true },
            "UINT64" => DataType::Int { bytes: 8, signed: false },
            "UINT32" => DataType::Int { bytes: 4, signed: false },
            "UINT16" => DataType::Int { bytes: 2, signed: false },
            "UINT8" => DataType::Int { bytes: 1, signed: false },
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }
}

const NUMERIC_TYPES: &str = "FP64, FP32, INT64 or INT32 (or another INT/UINT type)";

/// One problem with the request, named by tensor (`dti`, `dti[3]`,
/// `outputs`, `inputs`).
fn problem(field: impl Into<String>, problem: impl Into<String>) -> FieldProblem {
    FieldProblem { field: field.into(), problem: problem.into() }
}

/// A name as shown in an error: at most 64 characters.
fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Decodes an infer body into what to answer and the applications.
/// `json_length` is the `Inference-Header-Content-Length` header: the JSON
/// is that many bytes, the binary tensor data follows.
pub fn decode(body: &[u8], json_length: Option<usize>, decoder: Decoder<'_>) -> Result<(Wanted, Rows), ApiError> {
    let (fields, max_batch) = (decoder.fields, decoder.max_batch);
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

    let mut problems = Vec::new();
    let outputs = wanted_outputs(request.parameters.as_ref(), request.outputs.as_deref(), &mut problems);

    // Each tensor's place, batch and elements (the binary ones are taken in
    // order, even from a tensor with another problem, so the rest line up).
    let mut tensors: Vec<(usize, &str, Vec<Scalar>)> = Vec::new();
    let mut seen = vec![false; fields.len()];
    let mut batch: Option<(u64, &str)> = None;
    for input in &request.inputs {
        let name = input.name.as_str();
        let binary_size = match binary_data_size(input.parameters.as_ref()) {
            Ok(size) => size,
            Err(p) => {
                problems.push(problem(shown(name), p));
                continue;
            }
        };
        let bytes = match binary_size {
            None => None,
            Some(size) if size > binary.len() => {
                problems.push(problem(
                    shown(name),
                    format!("binary_data_size is {size} but only {} bytes of binary data are left", binary.len()),
                ));
                binary = &[];
                continue;
            }
            Some(size) => {
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                Some(mine)
            }
        };
        let Some(i) = fields.index(name.as_bytes()) else {
            if decoder.known.get(name.as_bytes()).is_none() {
                problems
                    .push(problem(shown(name), format!("unknown input; this model's inputs are {}", fields.list())));
            }
            continue;
        };
        if std::mem::replace(&mut seen[i], true) {
            problems.push(problem(name, "appears more than once in inputs"));
            continue;
        }
        if uses_shared_memory(input.parameters.as_ref()) {
            problems.push(problem(name, SHARED_MEMORY));
            continue;
        }
        let Some(datatype) = DataType::parse(&input.datatype) else {
            problems.push(problem(name, format!("unsupported datatype `{}`", shown(&input.datatype))));
            continue;
        };
        match (fields.feature(i).is_number(), datatype) {
            (true, DataType::Bytes) => {
                problems.push(problem(name, format!("is numeric: send {NUMERIC_TYPES}, got BYTES")));
                continue;
            }
            (false, DataType::Float { .. } | DataType::Int { .. }) => {
                problems.push(problem(name, format!("is categorical: send BYTES, got {}", input.datatype)));
                continue;
            }
            _ => {}
        }
        let rows = match *input.shape.as_slice() {
            [rows] | [rows, 1] => rows,
            _ => {
                problems.push(problem(name, format!("has shape {:?}; expected [batch] or [batch, 1]", input.shape)));
                continue;
            }
        };
        match batch {
            None => batch = Some((rows, name)),
            Some((want, first)) if want != rows => {
                problems.push(problem(
                    name,
                    format!("shape mismatch: has a batch of {rows} but `{first}` has {want}; every input needs the same batch"),
                ));
                continue;
            }
            Some(_) => {}
        }
        if rows > max_batch as u64 {
            // Reported once below, for the whole request.
            continue;
        }
        let elements = match (bytes, &input.data) {
            (Some(_), Some(_)) => Err((None, "has both data and binary_data_size; send one".to_string())),
            (None, None) => Err((None, "has no data (and no binary_data_size)".to_string())),
            (Some(bytes), None) => binary_elements(datatype, bytes),
            (None, Some(data)) => json_elements(datatype, &input.datatype, data),
        };
        match elements {
            Ok(elements) if elements.len() as u64 != rows => problems.push(problem(
                name,
                format!("has {} elements but its shape {:?} says {rows}", elements.len(), input.shape),
            )),
            Ok(elements) => tensors.push((i, name, elements)),
            Err((None, p)) => problems.push(problem(name, p)),
            Err((Some(at), p)) => problems.push(problem(format!("{name}[{at}]"), p)),
        }
    }
    if !binary.is_empty() {
        problems.push(problem(
            "inputs",
            format!("{} bytes of binary data are left over after the tensors' binary_data_size", binary.len()),
        ));
    }
    for (i, feature) in fields.features().iter().enumerate() {
        if !seen[i] && feature.required {
            problems.push(problem(
                feature.name.as_str(),
                "is required: send one input tensor per feature (a null element is a missing value, imputed)",
            ));
        }
    }
    let rows = match batch {
        Some((rows, _)) if rows > max_batch as u64 => {
            problems.push(problem(
                "inputs",
                format!("a batch of {rows} is over the limit of {max_batch} applications per request"),
            ));
            0
        }
        Some((0, _)) => {
            problems.push(problem("inputs", "the batch is empty; send at least one application"));
            0
        }
        Some((rows, _)) => rows as usize,
        None => 0,
    };
    if !problems.is_empty() {
        problems.truncate(MAX_PROBLEMS);
        return Err(ApiError::invalid_fields(problems));
    }

    let mut table = Rows::with_capacity(fields.len(), rows);
    for _ in 0..rows {
        table.push_missing();
    }
    for (i, name, elements) in tensors {
        for (row, value) in elements.into_iter().enumerate() {
            match element(fields, i, value, &mut table) {
                Ok(v) => table.row_mut(row)[i] = v,
                Err(p) => problems.push(problem(format!("{name}[{row}]"), p)),
            }
            if problems.len() == MAX_PROBLEMS {
                break;
            }
        }
        if problems.len() == MAX_PROBLEMS {
            break;
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    Ok((Wanted { id: request.id, outputs }, table))
}

/// A boolean parameter, `false` when absent.
fn flag(parameters: Option<&Map<String, Value>>, key: &str) -> Result<bool, String> {
    match parameters.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("parameter `{key}` must be a boolean, got {other}")),
    }
}

const SHARED_MEMORY: &str = "shared-memory tensors are not supported; send the data in the body (JSON or binary)";

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

/// The outputs to answer with: the selection, or all of them.
fn wanted_outputs(
    parameters: Option<&Map<String, Value>>,
    selection: Option<&[OutputJson]>,
    problems: &mut Vec<FieldProblem>,
) -> Vec<(Output, bool)> {
    let all_binary = flag(parameters, "binary_data_output").unwrap_or_else(|p| {
        problems.push(problem("parameters", p));
        false
    });
    let selection = selection.unwrap_or_default();
    if selection.is_empty() {
        return Output::ALL.iter().map(|&o| (o, all_binary)).collect();
    }
    let mut wanted: Vec<(Output, bool)> = Vec::new();
    for requested in selection {
        let Some(output) = Output::named(&requested.name) else {
            let names: Vec<&str> = Output::ALL.iter().map(|o| o.name()).collect();
            problems.push(problem(
                "outputs",
                format!("unknown output `{}`; this model's outputs are {}", shown(&requested.name), names.join(", ")),
            ));
            continue;
        };
        if uses_shared_memory(requested.parameters.as_ref()) {
            problems.push(problem("outputs", format!("`{}`: {SHARED_MEMORY}", output.name())));
            continue;
        }
        if wanted.iter().any(|(o, _)| *o == output) {
            problems.push(problem("outputs", format!("`{}` is asked for more than once", output.name())));
            continue;
        }
        let binary = match requested.parameters.as_ref().and_then(|p| p.get("binary_data")) {
            None | Some(Value::Null) => all_binary,
            Some(_) => flag(requested.parameters.as_ref(), "binary_data").unwrap_or_else(|p| {
                problems.push(problem("outputs", format!("`{}`: {p}", output.name())));
                false
            }),
        };
        wanted.push((output, binary));
    }
    wanted
}

/// An element's error: where (if it is one element) and what.
type ElementError = (Option<usize>, String);

/// The elements of a JSON `data` array (nested arrays are flattened,
/// row-major), typed by the tensor's datatype.
fn json_elements(datatype: DataType, name: &str, data: &Value) -> Result<Vec<Scalar>, ElementError> {
    let Value::Array(top) = data else {
        return Err((None, "data must be an array".into()));
    };
    let mut flat = Vec::with_capacity(top.len());
    flatten(top, &mut flat);
    flat.into_iter().enumerate().map(|(at, v)| json_element(datatype, name, v).map_err(|p| (Some(at), p))).collect()
}

fn flatten<'a>(values: &'a [Value], out: &mut Vec<&'a Value>) {
    for v in values {
        match v {
            Value::Array(inner) => flatten(inner, out),
            other => out.push(other),
        }
    }
}

fn json_element(datatype: DataType, name: &str, v: &Value) -> Result<Scalar, String> {
    match (datatype, v) {
        (_, Value::Null) => Ok(Scalar::Null),
        (DataType::Bytes, Value::String(s)) => Ok(Scalar::Text(s.clone())),
        (DataType::Float { .. }, Value::Number(n)) => Ok(Scalar::Number(n.as_f64().unwrap_or(f64::NAN))),
        (DataType::Int { bytes, signed }, Value::Number(n)) => {
            let fits = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if signed => bytes == 8 || (i >> (bytes * 8 - 1)) == 0 || (i >> (bytes * 8 - 1)) == -1,
                (_, Some(u)) if !signed => bytes == 8 || u >> (bytes * 8) == 0,
                _ => false,
            };
            if fits {
                Ok(Scalar::Number(n.as_f64().unwrap_or(f64::NAN)))
            } else {
                Err(format!("{name} elements must be integers in the type's range, got {n}"))
            }
        }
        (DataType::Bytes, other) => Err(format!("BYTES elements must be strings (or null), got {}", json_kind(other))),
        (_, other) => Err(format!("{name} elements must be numbers (or null), got {}", json_kind(other))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The elements of a binary tensor: little-endian fixed-size numbers, or
/// BYTES elements each prefixed by a 4-byte little-endian length.
fn binary_elements(datatype: DataType, bytes: &[u8]) -> Result<Vec<Scalar>, ElementError> {
    let size = match datatype {
        DataType::Float { bytes } | DataType::Int { bytes, .. } => bytes,
        DataType::Bytes => return binary_strings(bytes),
    };
    if !bytes.len().is_multiple_of(size) {
        return Err((None, format!("binary_data_size {} is not a multiple of the element size {size}", bytes.len())));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|chunk| {
            let mut le = [0u8; 8];
            le[..size].copy_from_slice(chunk);
            let v = match datatype {
                DataType::Float { bytes: 4 } => f64::from(f32::from_le_bytes([le[0], le[1], le[2], le[3]])),
                DataType::Float { .. } => f64::from_le_bytes(le),
                DataType::Int { signed: true, .. } => {
                    // Sign-extend from `size` bytes.
                    let shift = 64 - 8 * size as u32;
                    ((i64::from_le_bytes(le) << shift) >> shift) as f64
                }
                DataType::Int { signed: false, .. } | DataType::Bytes => u64::from_le_bytes(le) as f64,
            };
            Scalar::Number(v)
        })
        .collect())
}

fn binary_strings(mut bytes: &[u8]) -> Result<Vec<Scalar>, ElementError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let at = out.len();
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err((Some(at), "truncated BYTES element: its 4-byte length prefix is cut off".into()));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err((Some(at), format!("BYTES element of {len} bytes runs past the tensor's binary data")));
        }
        let (text, rest) = rest.split_at(len);
        let text = std::str::from_utf8(text).map_err(|_| (Some(at), "BYTES element is not UTF-8 text".to_string()))?;
        out.push(Scalar::Text(text.to_string()));
        bytes = rest;
    }
    Ok(out)
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
}

/// An encoded answer: the body, and the JSON's length when binary tensor
/// data follows it (for `Inference-Header-Content-Length`).
pub struct Encoded {
    pub body: Vec<u8>,
    pub json_length: Option<usize>,
}

/// Encodes the answer for `wanted` from the predictions.
pub fn encode(
    wanted: &Wanted,
    model_name: &str,
    model_version: &str,
    predictions: &[Prediction],
) -> Result<Encoded, serde_json::Error> {
    let mut binary = Vec::new();
    let outputs = wanted
        .outputs
        .iter()
        .map(|&(output, as_binary)| {
            let (parameters, data) = if as_binary {
                let start = binary.len();
                for p in predictions {
                    match output {
                        Output::Probability => binary.extend_from_slice(&p.probability_late.to_le_bytes()),
                        Output::Decision => {
                            let text = p.decision.as_str().as_bytes();
                            binary.extend_from_slice(&(text.len() as u32).to_le_bytes());
                            binary.extend_from_slice(text);
                        }
                    }
                }
                (Some(BinarySize { binary_data_size: binary.len() - start }), None)
            } else {
                let data = match output {
                    Output::Probability => {
                        OutputData::Numbers(predictions.iter().map(|p| p.probability_late).collect())
                    }
                    Output::Decision => OutputData::Texts(predictions.iter().map(|p| p.decision.as_str()).collect()),
                };
                (None, Some(data))
            };
            ResponseOutput {
                name: output.name(),
                datatype: output.datatype(),
                shape: [predictions.len()],
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
