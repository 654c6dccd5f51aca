//! Tensors → rows, the one binding both OIP protocols share: HTTP's JSON and
//! binary tensors ([`super::tensor`]) and gRPC's typed `contents` and
//! `raw_input_contents` (`crate::grpc`) each become [`InputTensor`]s, and a
//! [`Binder`] checks them against the answering version's schema (one
//! tensor per feature, datatype by kind, one batch, the batch limit) and
//! puts each element through the same per-field rules as `/v1`
//! (`request::element`), so every protocol answers the same input
//! bit-identically. The output side is shared too: [`Output`] (with the
//! optional `reasons`), the selection of outputs ([`Binder::outputs`]) and
//! their little-endian bytes ([`Output::write_raw`]).

use crate::http::error::{ApiError, FieldProblem};
use crate::http::predict::{Answered, ExplainQuery};
use crate::http::request::{element, Decoder, Scalar};
use crate::model::fields::Fields;
use crate::model::row::Rows;
use serde_json::Value;

/// At most this many problems are listed in one error.
const MAX_PROBLEMS: usize = 50;

const NUMERIC_TYPES: &str = "FP64, FP32, INT64 or INT32 (or another INT/UINT type)";

/// What an input or output naming a shared-memory region is told.
pub const SHARED_MEMORY: &str =
    "shared-memory tensors are not supported; send the data in the request (JSON, binary or gRPC contents)";

/// An output tensor of every model: the probability and the decision (the
/// answer when none is named), and the reason codes when asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Probability,
    Decision,
    /// Each element the JSON array of the application's reasons, as `/v1`
    /// answers them (the top four).
    Reasons,
}

impl Output {
    /// The outputs answered when the request names none.
    pub const ALL: [Output; 2] = [Output::Probability, Output::Decision];
    /// Every output a request may name.
    pub const NAMED: [Output; 3] = [Output::Probability, Output::Decision, Output::Reasons];

    pub fn name(self) -> &'static str {
        match self {
            Output::Probability => "probability_late",
            Output::Decision => "decision",
            Output::Reasons => "reasons",
        }
    }

    pub fn datatype(self) -> &'static str {
        match self {
            Output::Probability => "FP64",
            Output::Decision | Output::Reasons => "BYTES",
        }
    }

    fn named(name: &str) -> Option<Output> {
        Output::NAMED.into_iter().find(|o| o.name() == name)
    }

    /// Appends the output's elements as the binary tensor extension and
    /// gRPC's `raw_output_contents` have them: FP64 little-endian, BYTES
    /// each a 4-byte little-endian length then the text.
    pub fn write_raw(self, answers: &[Answered], fields: &Fields, out: &mut Vec<u8>) {
        for a in answers {
            match self {
                Output::Probability => out.extend_from_slice(&a.prediction.probability_late.to_le_bytes()),
                Output::Decision => {
                    bytes_element(out, |out| out.extend_from_slice(a.prediction.decision.as_str().as_bytes()))
                }
                Output::Reasons => bytes_element(out, |out| a.append_reasons_json(fields, out)),
            }
        }
    }
}

/// Appends one BYTES element: a 4-byte little-endian length, then the text
/// `write` appends (the length is patched in once the text is written, so
/// the text needs no buffer of its own).
fn bytes_element(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// What the answer needs from the request, beside the applications.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// Echoed as the response's `id`.
    pub id: Option<String>,
    /// The outputs to return, in order, each as binary data (HTTP) or not.
    pub outputs: Vec<(Output, bool)>,
}

impl Wanted {
    /// The reasons scoring must give: the default number when the
    /// `reasons` output is asked for, else none.
    pub(crate) fn explain(&self) -> ExplainQuery {
        if self.outputs.iter().any(|(o, _)| *o == Output::Reasons) {
            ExplainQuery::DEFAULT
        } else {
            ExplainQuery::NONE
        }
    }
}

/// An answer to encode, whatever the protocol: what was asked for, by whom
/// (the model and version), the answers, and the version's inputs (which
/// name the reasons' features).
pub struct Answer<'a> {
    pub wanted: &'a Wanted,
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub answers: &'a [Answered],
    pub fields: &'a Fields,
}

/// A tensor element type the inputs accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float { bytes: usize },
    Int { bytes: usize, signed: bool },
    Bytes,
}

impl DataType {
    pub fn parse(text: &str) -> Option<DataType> {
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

    /// Whether an integer fits the type (signed or not, of its width).
    pub fn fits(self, value: i128) -> bool {
        match self {
            DataType::Int { bytes, signed: true } => {
                let half = 1i128 << (bytes * 8 - 1);
                (-half..half).contains(&value)
            }
            DataType::Int { bytes, signed: false } => (0..1i128 << (bytes * 8)).contains(&value),
            DataType::Float { .. } | DataType::Bytes => true,
        }
    }
}

/// An element's error: where (if it is one element) and what.
pub type ElementError = (Option<usize>, String);

/// A protocol's typed element arrays (gRPC's `contents`), read by datatype.
pub trait TypedContents {
    /// The elements for `datatype` (`text` as the request names it).
    fn elements(&self, datatype: DataType, text: &str) -> Result<Vec<Scalar>, ElementError>;
}

/// Where an input tensor's elements are.
pub enum TensorData<'a> {
    /// JSON `data` (nested arrays are flattened, row-major).
    Json(&'a Value),
    /// Little-endian bytes: HTTP's binary extension, gRPC's `raw_input_contents`.
    Raw(&'a [u8]),
    /// Typed arrays (gRPC's `contents`).
    Typed(&'a dyn TypedContents),
    /// No usable data, and why (none sent, or two kinds at once).
    Invalid(String),
}

/// One input tensor as a protocol received it.
pub struct InputTensor<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [i64],
    /// It names a shared-memory region (Triton's extension; refused).
    pub shared_memory: bool,
    pub data: TensorData<'a>,
}

/// One output a request asks for.
pub struct RequestedOutput<'a> {
    pub name: &'a str,
    pub shared_memory: bool,
    /// Its `binary_data` parameter (HTTP), if sent, or why it is invalid.
    pub binary: Result<Option<bool>, String>,
}

/// One problem with the request, named by tensor (`dti`, `dti[3]`,
/// `outputs`, `inputs`).
fn problem(field: impl Into<String>, problem: impl Into<String>) -> FieldProblem {
    FieldProblem { field: field.into(), problem: problem.into() }
}

/// A name as shown in an error: at most 64 characters.
pub fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Checks input tensors against the answering version's schema and binds
/// them into rows, gathering every problem (up to `MAX_PROBLEMS`) into
/// one 400 that names each.
pub struct Binder<'d, 'a> {
    decoder: Decoder<'d>,
    problems: Vec<FieldProblem>,
    /// Each bound tensor's place, name and elements.
    tensors: Vec<(usize, &'a str, Vec<Scalar>)>,
    seen: Vec<bool>,
    /// The batch, and the tensor that set it.
    batch: Option<(i64, &'a str)>,
}

impl<'d, 'a> Binder<'d, 'a> {
    pub fn new(decoder: Decoder<'d>) -> Binder<'d, 'a> {
        let seen = vec![false; decoder.fields.len()];
        Binder { decoder, problems: Vec::new(), tensors: Vec::new(), seen, batch: None }
    }

    /// Records a problem the protocol found (`field`: the tensor, `inputs`…).
    pub fn problem(&mut self, field: impl Into<String>, text: impl Into<String>) {
        self.problems.push(problem(field, text));
    }

    /// The outputs to answer with: those `requested`, or all of them (each
    /// binary when `all_binary`).
    pub fn outputs<'r>(
        &mut self,
        requested: impl IntoIterator<Item = RequestedOutput<'r>>,
        all_binary: bool,
    ) -> Vec<(Output, bool)> {
        let mut wanted: Vec<(Output, bool)> = Vec::new();
        let mut any = false;
        for requested in requested {
            any = true;
            let Some(output) = Output::named(requested.name) else {
                let names: Vec<&str> = Output::NAMED.iter().map(|o| o.name()).collect();
                self.problem(
                    "outputs",
                    format!(
                        "unknown output `{}`; this model's outputs are {}",
                        shown(requested.name),
                        names.join(", ")
                    ),
                );
                continue;
            };
            if requested.shared_memory {
                self.problem("outputs", format!("`{}`: {SHARED_MEMORY}", output.name()));
                continue;
            }
            if wanted.iter().any(|(o, _)| *o == output) {
                self.problem("outputs", format!("`{}` is asked for more than once", output.name()));
                continue;
            }
            let binary = match requested.binary {
                Ok(binary) => binary.unwrap_or(all_binary),
                Err(p) => {
                    self.problem("outputs", format!("`{}`: {p}", output.name()));
                    false
                }
            };
            wanted.push((output, binary));
        }
        if !any {
            return Output::ALL.iter().map(|&o| (o, all_binary)).collect();
        }
        wanted
    }

    /// Checks one input tensor and takes its elements.
    pub fn input(&mut self, input: InputTensor<'a>) {
        let name = input.name;
        let fields = self.decoder.fields;
        let Some(i) = fields.index(name.as_bytes()) else {
            if self.decoder.known.get(name.as_bytes()).is_none() {
                self.problem(shown(name), format!("unknown input; this model's inputs are {}", fields.list()));
            }
            return;
        };
        if std::mem::replace(&mut self.seen[i], true) {
            return self.problem(name, "appears more than once in inputs");
        }
        if input.shared_memory {
            return self.problem(name, SHARED_MEMORY);
        }
        let Some(datatype) = DataType::parse(input.datatype) else {
            return self.problem(name, format!("unsupported datatype `{}`", shown(input.datatype)));
        };
        match (fields.feature(i).is_number(), datatype) {
            (true, DataType::Bytes) => {
                return self.problem(name, format!("is numeric: send {NUMERIC_TYPES}, got BYTES"));
            }
            (false, DataType::Float { .. } | DataType::Int { .. }) => {
                return self.problem(name, format!("is categorical: send BYTES, got {}", input.datatype));
            }
            _ => {}
        }
        let rows = match *input.shape {
            [rows] | [rows, 1] if rows >= 0 => rows,
            _ => return self.problem(name, format!("has shape {:?}; expected [batch] or [batch, 1]", input.shape)),
        };
        match self.batch {
            None => self.batch = Some((rows, name)),
            Some((want, first)) if want != rows => {
                return self.problem(
                    name,
                    format!("shape mismatch: has a batch of {rows} but `{first}` has {want}; every input needs the same batch"),
                );
            }
            Some(_) => {}
        }
        if rows > self.decoder.max_batch as i64 {
            // Reported once, for the whole request, by `rows`.
            return;
        }
        let elements = match input.data {
            TensorData::Invalid(p) => Err((None, p)),
            TensorData::Raw(bytes) => raw_elements(datatype, bytes),
            TensorData::Json(data) => json_elements(datatype, input.datatype, data),
            TensorData::Typed(contents) => contents.elements(datatype, input.datatype),
        };
        match elements {
            Ok(elements) if elements.len() as i64 != rows => self
                .problem(name, format!("has {} elements but its shape {:?} says {rows}", elements.len(), input.shape)),
            Ok(elements) => self.tensors.push((i, name, elements)),
            Err((None, p)) => self.problem(name, p),
            Err((Some(at), p)) => self.problem(format!("{name}[{at}]"), p),
        }
    }

    /// The rows, or a 400 naming every problem.
    pub fn rows(mut self) -> Result<Rows, ApiError> {
        let (fields, max_batch) = (self.decoder.fields, self.decoder.max_batch);
        for (i, feature) in fields.features().iter().enumerate() {
            if !self.seen[i] && feature.required {
                self.problem(
                    feature.name.as_str(),
                    "is required: send one input tensor per feature (a null element is a missing value, imputed)",
                );
            }
        }
        let rows = match self.batch {
            Some((rows, _)) if rows > max_batch as i64 => {
                self.problem(
                    "inputs",
                    format!("a batch of {rows} is over the limit of {max_batch} applications per request"),
                );
                0
            }
            Some((0, _)) => {
                self.problem("inputs", "the batch is empty; send at least one application");
                0
            }
            Some((rows, _)) => rows as usize,
            None => 0,
        };
        let mut problems = self.problems;
        if !problems.is_empty() {
            problems.truncate(MAX_PROBLEMS);
            return Err(ApiError::invalid_fields(problems));
        }
        let mut table = Rows::with_capacity(fields.len(), rows);
        for _ in 0..rows {
            table.push_missing();
        }
        'tensors: for (i, name, elements) in self.tensors {
            for (row, value) in elements.into_iter().enumerate() {
                match element(fields, i, value, &mut table) {
                    Ok(v) => table.row_mut(row)[i] = v,
                    Err(p) => problems.push(problem(format!("{name}[{row}]"), p)),
                }
                if problems.len() == MAX_PROBLEMS {
                    break 'tensors;
                }
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::invalid_fields(problems));
        }
        Ok(table)
    }
}

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
        (DataType::Int { .. }, Value::Number(n)) => {
            let integer = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
            match integer {
                Some(i) if datatype.fits(i) => Ok(Scalar::Number(n.as_f64().unwrap_or(f64::NAN))),
                _ => Err(out_of_range(name, n)),
            }
        }
        (DataType::Bytes, other) => Err(format!("BYTES elements must be strings (or null), got {}", json_kind(other))),
        (_, other) => Err(format!("{name} elements must be numbers (or null), got {}", json_kind(other))),
    }
}

/// What an integer element outside its datatype's range is told.
pub fn out_of_range(name: &str, value: impl std::fmt::Display) -> String {
    format!("{name} elements must be integers in the type's range, got {value}")
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

/// The elements of a raw tensor: little-endian fixed-size numbers, or
/// BYTES elements each prefixed by a 4-byte little-endian length.
fn raw_elements(datatype: DataType, bytes: &[u8]) -> Result<Vec<Scalar>, ElementError> {
    let size = match datatype {
        DataType::Float { bytes } | DataType::Int { bytes, .. } => bytes,
        DataType::Bytes => return raw_strings(bytes),
    };
    if !bytes.len().is_multiple_of(size) {
        return Err((None, format!("has {} bytes of data, not a multiple of the element size {size}", bytes.len())));
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

fn raw_strings(mut bytes: &[u8]) -> Result<Vec<Scalar>, ElementError> {
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
        out.push(text_element(text).map_err(|p| (Some(at), p))?);
        bytes = rest;
    }
    Ok(out)
}

/// A BYTES element as text (categories are UTF-8).
pub fn text_element(bytes: &[u8]) -> Result<Scalar, String> {
    std::str::from_utf8(bytes)
        .map(|text| Scalar::Text(text.to_string()))
        .map_err(|_| "BYTES element is not UTF-8 text".to_string())
}
