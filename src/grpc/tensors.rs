//! gRPC inference messages ↔ the shared OIP binding: a `ModelInferRequest`'s
//! input tensors (typed `contents`, or `raw_input_contents`: one entry per
//! input, in order, laid out as HTTP's binary extension) become
//! [`InputTensor`]s for the [`Binder`], so both protocols turn the same
//! tensors into the same rows; the answer's outputs are written as Triton
//! writes them, one `raw_output_contents` entry per output (FP64
//! little-endian, BYTES length-prefixed), which is what tritonclient reads;
//! the optional `reasons` output carries each application's reason codes.

use super::proto::model_infer_request::InferRequestedOutputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::http::error::ApiError;
use crate::http::oip::binding::{
    out_of_range, text_element, Answer, Binder, DataType, ElementError, InputTensor, RequestedOutput, TensorData,
    TypedContents, Wanted,
};
use crate::http::request::{Decoder, Scalar};
use crate::model::row::Rows;
use std::collections::HashMap;

/// Triton's parameter naming a shared-memory region (refused).
const SHARED_MEMORY_REGION: &str = "shared_memory_region";

/// Decodes an infer request into what to answer and the applications.
pub fn decode(request: &ModelInferRequest, decoder: Decoder<'_>) -> Result<(Wanted, Rows), ApiError> {
    let mut binder = Binder::new(decoder);
    let requested = request.outputs.iter().map(|o: &InferRequestedOutputTensor| RequestedOutput {
        name: &o.name,
        shared_memory: o.parameters.contains_key(SHARED_MEMORY_REGION),
        // gRPC answers are always raw_output_contents.
        binary: Ok(None),
    });
    let outputs = binder.outputs(requested, false);
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        binder.problem(
            "inputs",
            format!(
                "raw_input_contents has {} entries for {} inputs; send one per input, in order (or typed contents)",
                raw.len(),
                request.inputs.len()
            ),
        );
    }
    for (k, input) in request.inputs.iter().enumerate() {
        let data = match (&input.contents, raw.get(k)) {
            (Some(_), Some(_)) => TensorData::Invalid("has both contents and raw_input_contents; send one".into()),
            (Some(contents), None) => TensorData::Typed(contents),
            (None, Some(bytes)) => TensorData::Raw(bytes),
            (None, None) => TensorData::Invalid("has no contents (and no raw_input_contents)".into()),
        };
        binder.input(InputTensor {
            name: &input.name,
            datatype: &input.datatype,
            shape: &input.shape,
            shared_memory: shared_memory(&input.parameters),
            data,
        });
    }
    let rows = binder.rows()?;
    let id = (!request.id.is_empty()).then(|| request.id.clone());
    Ok((Wanted { id, outputs }, rows))
}

fn shared_memory(parameters: &HashMap<String, InferParameter>) -> bool {
    parameters.contains_key(SHARED_MEMORY_REGION)
}

/// An input's typed contents, read by its datatype.
impl TypedContents for InferTensorContents {
    fn elements(&self, datatype: DataType, text: &str) -> Result<Vec<Scalar>, ElementError> {
        let c = self;
        let (field, elements): (&str, Result<Vec<Scalar>, ElementError>) = match datatype {
            DataType::Float { bytes: 8 } => {
                ("fp64_contents", Ok(c.fp64_contents.iter().map(|&v| Scalar::Number(v)).collect()))
            }
            DataType::Float { .. } => {
                ("fp32_contents", Ok(c.fp32_contents.iter().map(|&v| Scalar::Number(f64::from(v))).collect()))
            }
            DataType::Int { bytes: 8, signed: true } => {
                ("int64_contents", integers(datatype, text, c.int64_contents.iter().map(|&v| i128::from(v))))
            }
            DataType::Int { bytes: 8, signed: false } => {
                ("uint64_contents", integers(datatype, text, c.uint64_contents.iter().map(|&v| i128::from(v))))
            }
            DataType::Int { signed: true, .. } => {
                ("int_contents", integers(datatype, text, c.int_contents.iter().map(|&v| i128::from(v))))
            }
            DataType::Int { signed: false, .. } => {
                ("uint_contents", integers(datatype, text, c.uint_contents.iter().map(|&v| i128::from(v))))
            }
            DataType::Bytes => (
                "bytes_contents",
                c.bytes_contents.iter().enumerate().map(|(at, b)| text_element(b).map_err(|p| (Some(at), p))).collect(),
            ),
        };
        let elements = elements?;
        if elements.is_empty() {
            if let Some(other) = filled(c).filter(|&other| other != field) {
                return Err((None, format!("{text} elements go in {field}, but the data is in {other}")));
            }
        }
        Ok(elements)
    }
}

/// Numbers from integers, each checked against the datatype's range.
fn integers(datatype: DataType, text: &str, values: impl Iterator<Item = i128>) -> Result<Vec<Scalar>, ElementError> {
    values
        .enumerate()
        .map(
            |(at, v)| {
                if datatype.fits(v) {
                    Ok(Scalar::Number(v as f64))
                } else {
                    Err((Some(at), out_of_range(text, v)))
                }
            },
        )
        .collect()
}

/// The first non-empty contents field, by name.
fn filled(c: &InferTensorContents) -> Option<&'static str> {
    [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ]
    .into_iter()
    .find(|(_, empty)| !empty)
    .map(|(name, _)| name)
}

/// An answer as gRPC's: one output tensor (shape `[batch]`) and one
/// `raw_output_contents` entry per output.
pub fn encode(answer: &Answer<'_>) -> ModelInferResponse {
    let Answer { wanted, model_name, model_version, answers, fields } = *answer;
    let mut outputs = Vec::with_capacity(wanted.outputs.len());
    let mut raw = Vec::with_capacity(wanted.outputs.len());
    for &(output, _) in &wanted.outputs {
        outputs.push(InferOutputTensor {
            name: output.name().into(),
            datatype: output.datatype().into(),
            shape: vec![answers.len() as i64],
            ..InferOutputTensor::default()
        });
        let mut bytes = Vec::with_capacity(answers.len() * 13);
        output.write_raw(answers, fields, &mut bytes);
        raw.push(bytes);
    }
    ModelInferResponse {
        model_name: model_name.into(),
        model_version: model_version.into(),
        id: wanted.id.clone().unwrap_or_default(),
        outputs,
        raw_output_contents: raw,
        ..ModelInferResponse::default()
    }
}

#[cfg(test)]
mod tests;
