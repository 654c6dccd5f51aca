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
use crate::http::request::{categorical, numeric, Scalar};
use crate::model::field_rules::FieldKind;
use crate::model::input::{feature_index, LoanApplication, FEATURES};
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
pub fn decode(
    body: &[u8],
    json_length: Option<usize>,
    max_batch: usize,
) -> Result<(Wanted, Vec<LoanApplication>), ApiError> {
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
    let mut seen = [false; FEATURES.len()];
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
        let Some(i) = feature_index(name) else {
            problems
                .push(problem(shown(name), format!("unknown input; this model's inputs are {}", FEATURES.join(", "))));
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
        match (FieldKind::of(i), datatype) {
            (Some(FieldKind::Numeric(_)), DataType::Bytes) => {
                problems.push(problem(name, format!("is numeric: send {NUMERIC_TYPES}, got BYTES")));
                continue;
            }
            (Some(FieldKind::Categorical(_)), DataType::Float { .. } | DataType::Int { .. }) => {
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
    if request.inputs.len() < FEATURES.len() || seen.contains(&false) {
        for (i, name) in FEATURES.iter().enumerate() {
            if !seen[i] {
                problems.push(problem(
                    *name,
                    "is required: send one input tensor per feature (a null element is a missing value, imputed)",
                ));
            }
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

    let mut apps = vec![LoanApplication::default(); rows];
    for (i, name, elements) in tensors {
        for (row, (app, element)) in apps.iter_mut().zip(elements).enumerate() {
            let checked = match FieldKind::of(i) {
                Some(FieldKind::Numeric(k)) => numeric(k, element).map(|v| app.numeric[k] = v),
                Some(FieldKind::Categorical(k)) => categorical(k, element).map(|v| app.categorical[k] = v),
                None => Ok(()),
            };
            if let Err(p) = checked {
                problems.push(problem(format!("{name}[{row}]"), p));
                if problems.len() == MAX_PROBLEMS {
                    break;
                }
            }
        }
        if problems.len() == MAX_PROBLEMS {
            break;
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    Ok((Wanted { id: request.id, outputs }, apps))
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
mod tests {
    use super::*;
    use crate::model::input::{cat, num};
    use crate::model::Decision;
    use serde_json::json;

    /// The ten tensors of a two-row batch, as JSON.
    fn inputs() -> Vec<Value> {
        vec![
            json!({"name": "loan_amnt", "datatype": "FP64", "shape": [2], "data": [5000.0, 12000]}),
            json!({"name": "int_rate", "datatype": "FP32", "shape": [2], "data": [0.1356, 0.2]}),
            json!({"name": "annual_inc", "datatype": "INT64", "shape": [2, 1], "data": [[52000], [null]]}),
            json!({"name": "revol_util", "datatype": "FP64", "shape": [2], "data": [0.2, 0.5]}),
            json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [14.4, 3]}),
            json!({"name": "delinq_2yrs", "datatype": "INT32", "shape": [2], "data": [0, 2]}),
            json!({"name": "purpose", "datatype": "BYTES", "shape": [2], "data": ["car", " debt_consolidation "]}),
            json!({"name": "grade", "datatype": "BYTES", "shape": [2], "data": ["B", ""]}),
            json!({"name": "emp_length", "datatype": "BYTES", "shape": [2], "data": ["9 years", null]}),
            json!({"name": "home_ownership", "datatype": "BYTES", "shape": [2], "data": ["RENT", "OWN"]}),
        ]
    }

    fn decode_json(body: &Value) -> Result<(Wanted, Vec<LoanApplication>), ApiError> {
        decode(body.to_string().as_bytes(), None, 10)
    }

    /// The problems of a body that must fail, as `field: problem` lines.
    fn problems(body: &Value) -> Vec<String> {
        let e = decode_json(body).unwrap_err();
        assert_eq!(e.status, 400, "{}", e.message);
        e.fields.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect()
    }

    fn with_input(name: &str, tensor: Value) -> Value {
        let mut inputs = inputs();
        let at = inputs.iter().position(|t| t["name"] == name).unwrap();
        inputs[at] = tensor;
        json!({"inputs": inputs})
    }

    #[test]
    fn tensors_become_the_same_applications_as_v1_rows() {
        let (wanted, apps) = decode_json(&json!({"id": "r1", "inputs": inputs()})).unwrap();
        assert_eq!(wanted.id.as_deref(), Some("r1"));
        assert_eq!(wanted.outputs, vec![(Output::Probability, false), (Output::Decision, false)]);
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].numeric[num::INT_RATE], Some(0.1356), "FP32 JSON text is read as written, like /v1");
        assert_eq!(apps[1].numeric[num::ANNUAL_INC], None, "null is missing");
        assert_eq!(apps[1].categorical[cat::PURPOSE].as_deref(), Some("debt_consolidation"), "trimmed as /v1");
        assert_eq!(apps[1].categorical[cat::GRADE], None, "blank is missing");
        let v1 = crate::http::request::parse(
            br#"{"instances":[{"loan_amnt":5000.0,"int_rate":0.1356,"annual_inc":52000,"revol_util":0.2,"dti":14.4,"delinq_2yrs":0,"purpose":"car","grade":"B","emp_length":"9 years","home_ownership":"RENT"},
            {"loan_amnt":12000,"int_rate":0.2,"annual_inc":null,"revol_util":0.5,"dti":3,"delinq_2yrs":2,"purpose":" debt_consolidation ","grade":"","emp_length":null,"home_ownership":"OWN"}]}"#,
            10,
        )
        .and_then(crate::http::request::validate)
        .unwrap();
        assert_eq!(apps, v1);
    }

    #[test]
    fn wrong_datatypes_are_named() {
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "BYTES", "shape": [2], "data": ["1", "2"]})));
        assert_eq!(p, ["dti: is numeric: send FP64, FP32, INT64 or INT32 (or another INT/UINT type), got BYTES"]);
        let p =
            problems(&with_input("grade", json!({"name": "grade", "datatype": "FP64", "shape": [2], "data": [1, 2]})));
        assert_eq!(p, ["grade: is categorical: send BYTES, got FP64"]);
        let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP16", "shape": [2], "data": [1, 2]})));
        assert_eq!(p, ["dti: unsupported datatype `FP16`"]);
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [1, "x"]})));
        assert_eq!(p, ["dti[1]: FP64 elements must be numbers (or null), got a string"]);
        let p = problems(&with_input(
            "delinq_2yrs",
            json!({"name": "delinq_2yrs", "datatype": "INT32", "shape": [2], "data": [1.5, 2]}),
        ));
        assert_eq!(p, ["delinq_2yrs[0]: INT32 elements must be integers in the type's range, got 1.5"]);
        let p = problems(&with_input(
            "delinq_2yrs",
            json!({"name": "delinq_2yrs", "datatype": "INT8", "shape": [2], "data": [1, 200]}),
        ));
        assert_eq!(p, ["delinq_2yrs[1]: INT8 elements must be integers in the type's range, got 200"]);
        let p = problems(&with_input(
            "grade",
            json!({"name": "grade", "datatype": "BYTES", "shape": [2], "data": ["A", 3]}),
        ));
        assert_eq!(p, ["grade[1]: BYTES elements must be strings (or null), got a number"]);
    }

    #[test]
    fn shape_mismatches_are_named() {
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]})));
        assert_eq!(
            p,
            ["dti: shape mismatch: has a batch of 3 but `loan_amnt` has 2; every input needs the same batch"]
        );
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [1, 2, 3]})));
        assert_eq!(p, ["dti: has 3 elements but its shape [2] says 2"]);
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]})));
        assert_eq!(p, ["dti: has shape [1, 2]; expected [batch] or [batch, 1]"]);
        let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": 3})));
        assert_eq!(p, ["dti: data must be an array"]);
        let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2]})));
        assert_eq!(p, ["dti: has no data (and no binary_data_size)"]);
        let shm = json!({"shared_memory_region": "r", "shared_memory_byte_size": 16});
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "parameters": shm})));
        assert_eq!(p, [format!("dti: {SHARED_MEMORY}")]);
    }

    #[test]
    fn missing_unknown_and_duplicate_inputs_are_named() {
        let mut some = inputs();
        some.remove(4);
        assert_eq!(
            problems(&json!({"inputs": some})),
            ["dti: is required: send one input tensor per feature (a null element is a missing value, imputed)"]
        );
        let mut extra = inputs();
        extra.push(json!({"name": "loan_amount", "datatype": "FP64", "shape": [2], "data": [1, 2]}));
        extra.push(json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [1, 2]}));
        let p = problems(&json!({"inputs": extra}));
        assert!(p[0].starts_with("loan_amount: unknown input; this model's inputs are loan_amnt, int_rate"), "{p:?}");
        assert_eq!(p[1], "dti: appears more than once in inputs");
        let e = decode_json(&json!({"inputs": {}})).unwrap_err();
        assert!(
            e.message.starts_with("not an inference request: invalid type: map, expected a sequence"),
            "{}",
            e.message
        );
        let e = decode(b"  ", None, 10).unwrap_err();
        assert!(e.message.contains("request body is empty"), "{}", e.message);
    }

    #[test]
    fn values_go_through_the_v1_field_rules() {
        let p =
            problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [-1, 1e9]})));
        assert_eq!(
            p,
            [
                "dti[0]: must not be negative, got -1",
                "dti[1]: is a percentage (14.39 for 14.39 %), at most 1000, got 1000000000"
            ]
        );
        let long = "x".repeat(101);
        let p = problems(&with_input(
            "grade",
            json!({"name": "grade", "datatype": "BYTES", "shape": [2], "data": ["A", long]}),
        ));
        assert_eq!(p, ["grade[1]: is longer than 100 characters"]);
    }

    #[test]
    fn batches_are_bounded_and_not_empty() {
        let batch = |n: usize| {
            let inputs: Vec<Value> = inputs()
                .into_iter()
                .map(|mut t| {
                    let one = t["data"][0].clone();
                    t["shape"] = json!([n]);
                    t["data"] = Value::Array(vec![one; n]);
                    t
                })
                .collect();
            json!({"inputs": inputs})
        };
        assert_eq!(decode_json(&batch(10)).unwrap().1.len(), 10);
        assert_eq!(problems(&batch(11)), ["inputs: a batch of 11 is over the limit of 10 applications per request"]);
        assert_eq!(problems(&batch(0)), ["inputs: the batch is empty; send at least one application"]);
    }

    #[test]
    fn outputs_selection_is_honoured_and_checked() {
        let body = json!({"inputs": inputs(), "parameters": {"binary_data_output": true},
            "outputs": [{"name": "decision"}, {"name": "probability_late", "parameters": {"binary_data": false}}]});
        let (wanted, _) = decode_json(&body).unwrap();
        assert_eq!(wanted.outputs, vec![(Output::Decision, true), (Output::Probability, false)]);
        let p = problems(
            &json!({"inputs": inputs(), "outputs": [{"name": "proba"}, {"name": "decision"}, {"name": "decision"}]}),
        );
        assert_eq!(
            p,
            [
                "outputs: unknown output `proba`; this model's outputs are probability_late, decision",
                "outputs: `decision` is asked for more than once",
            ]
        );
        let p = problems(
            &json!({"inputs": inputs(), "outputs": [{"name": "decision", "parameters": {"binary_data": "yes"}}]}),
        );
        assert_eq!(p, ["outputs: `decision`: parameter `binary_data` must be a boolean, got \"yes\""]);
    }

    /// The binary form of the test inputs: every tensor as bytes.
    fn binary_body(mangle: impl Fn(&str, &mut Vec<u8>)) -> (Vec<u8>, usize) {
        let mut header = Vec::new();
        let mut data = Vec::new();
        for mut t in inputs() {
            let mut bytes = Vec::new();
            for v in t["data"].as_array().unwrap().iter().flat_map(|v| v.as_array().cloned().unwrap_or(vec![v.clone()]))
            {
                match t["datatype"].as_str().unwrap() {
                    "FP64" => bytes.extend_from_slice(&v.as_f64().unwrap().to_le_bytes()),
                    "FP32" => bytes.extend_from_slice(&(v.as_f64().unwrap() as f32).to_le_bytes()),
                    "INT64" => bytes.extend_from_slice(&v.as_i64().unwrap_or(7).to_le_bytes()),
                    "INT32" => bytes.extend_from_slice(&(v.as_i64().unwrap() as i32).to_le_bytes()),
                    _ => {
                        let s = v.as_str().unwrap_or("");
                        bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
                        bytes.extend_from_slice(s.as_bytes());
                    }
                }
            }
            mangle(t["name"].as_str().unwrap(), &mut bytes);
            t.as_object_mut().unwrap().remove("data");
            t["parameters"] = json!({"binary_data_size": bytes.len()});
            header.push(t);
            data.extend_from_slice(&bytes);
        }
        let mut body = json!({"inputs": header}).to_string().into_bytes();
        let n = body.len();
        body.extend_from_slice(&data);
        (body, n)
    }

    #[test]
    fn binary_tensors_decode_like_json_ones() {
        let (body, n) = binary_body(|_, _| {});
        let (_, apps) = decode(&body, Some(n), 10).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].numeric[num::LOAN_AMNT], Some(5000.0));
        assert_eq!(apps[0].numeric[num::INT_RATE], Some(f64::from(0.1356f32)), "FP32 bytes widen exactly");
        assert_eq!(apps[1].numeric[num::ANNUAL_INC], Some(7.0));
        assert_eq!(apps[1].categorical[cat::PURPOSE].as_deref(), Some("debt_consolidation"));
        assert_eq!(apps[1].categorical[cat::GRADE], None);
    }

    #[test]
    fn broken_binary_tensors_are_named() {
        let (body, n) = binary_body(|name, bytes| {
            if name == "grade" {
                bytes.truncate(bytes.len() - 2);
            }
        });
        let e = decode(&body, Some(n), 10).unwrap_err();
        assert_eq!(e.fields[0].field, "grade[1]", "{}", e.message);
        assert!(e.fields[0].problem.contains("truncated BYTES element"), "{}", e.message);
        let (body, n) = binary_body(|name, bytes| {
            if name == "dti" {
                bytes.copy_from_slice(&[f64::NAN.to_le_bytes(), 1f64.to_le_bytes()].concat());
            }
        });
        let e = decode(&body, Some(n), 10).unwrap_err();
        assert_eq!(e.message, "dti[0]: must be a finite number (not NaN or infinity)");
        let (mut body, n) = binary_body(|_, _| {});
        body.extend_from_slice(b"junk");
        assert!(decode(&body, Some(n), 10).unwrap_err().message.contains("4 bytes of binary data are left over"));
        assert!(decode(&body, Some(body.len() + 1), 10)
            .unwrap_err()
            .message
            .contains("Inference-Header-Content-Length"));
        assert!(decode(&body, Some(0), 10).unwrap_err().message.contains("raw binary request"));
        let (body, _) = binary_body(|_, _| {});
        let e = decode(&body, None, 10).unwrap_err();
        assert!(e.message.contains("malformed JSON: trailing characters"), "{}", e.message);
        assert!(e.message.ends_with("needs an Inference-Header-Content-Length header)"), "{}", e.message);
    }

    #[test]
    fn answers_encode_as_json_or_binary() {
        let predictions = [
            Prediction { probability_late: 0.25, decision: Decision::LowRisk },
            Prediction { probability_late: 0.75, decision: Decision::HighRisk },
        ];
        let wanted =
            Wanted { id: Some("r1".into()), outputs: vec![(Output::Probability, false), (Output::Decision, false)] };
        let encoded = encode(&wanted, "m", "3", &predictions).unwrap();
        assert_eq!(encoded.json_length, None);
        let json: Value = serde_json::from_slice(&encoded.body).unwrap();
        assert_eq!(
            json,
            json!({"model_name": "m", "model_version": "3", "id": "r1", "outputs": [
                {"name": "probability_late", "datatype": "FP64", "shape": [2], "data": [0.25, 0.75]},
                {"name": "decision", "datatype": "BYTES", "shape": [2], "data": ["low_risk", "high_risk"]},
            ]})
        );

        let wanted = Wanted { id: None, outputs: vec![(Output::Decision, true), (Output::Probability, true)] };
        let encoded = encode(&wanted, "m", "3", &predictions).unwrap();
        let n = encoded.json_length.unwrap();
        let json: Value = serde_json::from_slice(&encoded.body[..n]).unwrap();
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 4 + 8 + 4 + 9);
        assert_eq!(json["outputs"][1]["parameters"]["binary_data_size"], 16);
        assert!(json.get("id").is_none());
        let binary = &encoded.body[n..];
        assert_eq!(&binary[..12], b"\x08\0\0\0low_risk");
        assert_eq!(&binary[25..33], &0.25f64.to_le_bytes());
    }
}
