//! gRPC tensors bind to the same rows as HTTP's JSON tensors, and answer in
//! the raw layout tritonclient reads.

use super::*;
use crate::http::oip::binding::{Answer, Output};
use crate::http::predict::Answered;
use crate::model::fields::NameTable;
use crate::model::input::LoanApplication;
use crate::model::test_support::loan_fields;
use crate::model::{Decision, Prediction};
use serde_json::json;

use super::super::proto::model_infer_request::InferInputTensor;

const NUMBERS: [(&str, [f64; 2]); 6] = [
    ("loan_amnt", [5000.0, 12000.0]),
    ("int_rate", [0.1356, 0.2]),
    ("annual_inc", [52000.0, 61000.0]),
    ("revol_util", [0.2, 0.5]),
    ("dti", [14.4, 3.0]),
    ("delinq_2yrs", [0.0, 2.0]),
];
const TEXTS: [(&str, [&str; 2]); 4] = [
    ("purpose", ["car", " debt_consolidation "]),
    ("grade", ["B", "A"]),
    ("emp_length", ["9 years", "< 1 year"]),
    ("home_ownership", ["RENT", "OWN"]),
];

/// The ten tensors as typed contents.
fn typed() -> Vec<InferInputTensor> {
    let numbers = NUMBERS
        .iter()
        .map(|(name, v)| input(name, "FP64", InferTensorContents { fp64_contents: v.to_vec(), ..Default::default() }));
    let texts = TEXTS.iter().map(|(name, v)| {
        let bytes = v.iter().map(|t| t.as_bytes().to_vec()).collect();
        input(name, "BYTES", InferTensorContents { bytes_contents: bytes, ..Default::default() })
    });
    numbers.chain(texts).collect()
}

fn input(name: &str, datatype: &str, contents: InferTensorContents) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![2],
        contents: Some(contents),
        ..Default::default()
    }
}

/// The same tensors as raw_input_contents.
fn raw() -> ModelInferRequest {
    let mut inputs = typed();
    let raw = inputs
        .iter_mut()
        .map(|i| {
            let c = i.contents.take().unwrap();
            let mut bytes = Vec::new();
            c.fp64_contents.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            for text in &c.bytes_contents {
                bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
                bytes.extend_from_slice(text);
            }
            bytes
        })
        .collect();
    ModelInferRequest { inputs, raw_input_contents: raw, ..Default::default() }
}

fn decode_loans(request: &ModelInferRequest) -> Result<(Wanted, Vec<LoanApplication>), ApiError> {
    let fields = loan_fields();
    let known = NameTable::new(["term"]);
    let (wanted, rows) = decode(request, Decoder { fields: &fields, known: &known, max_batch: 10 })?;
    Ok((wanted, rows.iter().map(|r| fields.loan_of(r)).collect()))
}

/// The same batch as HTTP JSON tensors, decoded by HTTP's decoder.
fn over_http() -> Vec<LoanApplication> {
    let numbers = NUMBERS.iter().map(|(n, v)| json!({"name": n, "datatype": "FP64", "shape": [2], "data": v}));
    let texts = TEXTS.iter().map(|(n, v)| json!({"name": n, "datatype": "BYTES", "shape": [2], "data": v}));
    let body = json!({"inputs": numbers.chain(texts).collect::<Vec<_>>()}).to_string();
    let fields = loan_fields();
    let known = NameTable::new(["term"]);
    let decoder = Decoder { fields: &fields, known: &known, max_batch: 10 };
    let (_, rows) = crate::http::oip::tensor::decode(body.as_bytes(), None, decoder).unwrap();
    rows.iter().map(|r| fields.loan_of(r)).collect()
}

/// The problems of a request that must fail, as `field: problem` lines.
fn problems(request: &ModelInferRequest) -> Vec<String> {
    let e = decode_loans(request).unwrap_err();
    assert_eq!(e.status, 400, "{}", e.message);
    e.fields.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect()
}

#[test]
fn typed_and_raw_contents_become_the_rows_http_makes() {
    let http = over_http();
    assert_eq!(http.len(), 2);
    let request = ModelInferRequest { id: "r1".into(), inputs: typed(), ..Default::default() };
    let (wanted, typed_rows) = decode_loans(&request).unwrap();
    assert_eq!(typed_rows, http);
    assert_eq!(wanted.id.as_deref(), Some("r1"));
    assert_eq!(wanted.outputs, vec![(Output::Probability, false), (Output::Decision, false)]);
    let (wanted, raw_rows) = decode_loans(&raw()).unwrap();
    assert_eq!(raw_rows, http);
    assert_eq!(wanted.id, None);
}

#[test]
fn narrower_datatypes_read_their_own_contents_fields() {
    let mut request = ModelInferRequest { inputs: typed(), ..Default::default() };
    request.inputs[5] =
        input("delinq_2yrs", "INT8", InferTensorContents { int_contents: vec![0, 2], ..Default::default() });
    request.inputs[0] =
        input("loan_amnt", "UINT32", InferTensorContents { uint_contents: vec![5000, 12000], ..Default::default() });
    request.inputs[1] =
        input("int_rate", "FP32", InferTensorContents { fp32_contents: vec![0.1356, 0.2], ..Default::default() });
    let (_, rows) = decode_loans(&request).unwrap();
    let http = over_http();
    for feature in ["loan_amnt", "delinq_2yrs", "purpose"] {
        assert_eq!(rows[1].cell(feature), http[1].cell(feature), "{feature}");
    }
    assert_eq!(rows[0].cell("int_rate"), Some(f64::from(0.1356f32).to_string()));

    request.inputs[5] =
        input("delinq_2yrs", "INT8", InferTensorContents { int_contents: vec![0, 200], ..Default::default() });
    request.inputs[4] =
        input("dti", "FP64", InferTensorContents { fp32_contents: vec![1.0, 2.0], ..Default::default() });
    assert_eq!(
        problems(&request),
        [
            "dti: FP64 elements go in fp64_contents, but the data is in fp32_contents",
            "delinq_2yrs[1]: INT8 elements must be integers in the type's range, got 200",
        ]
    );
}

#[test]
fn contents_and_raw_are_checked_like_http_tensors() {
    let mut both = raw();
    both.inputs[2].contents = Some(InferTensorContents { fp64_contents: vec![1.0, 2.0], ..Default::default() });
    assert_eq!(problems(&both), ["annual_inc: has both contents and raw_input_contents; send one"]);

    let mut short = raw();
    short.raw_input_contents.pop();
    let p = problems(&short);
    assert_eq!(
        p[0],
        "inputs: raw_input_contents has 9 entries for 10 inputs; send one per input, in order (or typed contents)"
    );
    assert!(p[1].starts_with("home_ownership: has no contents"), "{p:?}");

    let mut cut = raw();
    cut.raw_input_contents[0].pop();
    assert_eq!(problems(&cut), ["loan_amnt: has 15 bytes of data, not a multiple of the element size 8"]);

    let mut request = ModelInferRequest { inputs: typed(), ..Default::default() };
    request.inputs[6].contents.as_mut().unwrap().bytes_contents[1] = vec![0xff, 0xfe];
    request.inputs[7].shape = vec![-1];
    request.outputs.push(InferRequestedOutputTensor { name: "score".into(), ..Default::default() });
    assert_eq!(
        problems(&request),
        [
            "outputs: unknown output `score`; this model's outputs are probability_late, decision, reasons",
            "purpose[1]: BYTES element is not UTF-8 text",
            "grade: has shape [-1]; expected [batch] or [batch, 1]",
        ]
    );
}

#[test]
fn answers_are_raw_outputs_in_the_order_asked() {
    let predictions = [
        Prediction { probability_late: 0.25, decision: Decision::LowRisk },
        Prediction { probability_late: 0.75, decision: Decision::HighRisk },
    ];
    let wanted =
        Wanted { id: Some("r1".into()), outputs: vec![(Output::Decision, false), (Output::Probability, false)] };
    let answers: Vec<Answered> = predictions.into_iter().map(Answered::from).collect();
    let response = encode(&Answer {
        wanted: &wanted,
        model_name: "m",
        model_version: "3",
        answers: &answers,
        fields: &loan_fields(),
    });
    assert_eq!((response.model_name.as_str(), response.model_version.as_str(), response.id.as_str()), ("m", "3", "r1"));
    let names: Vec<_> =
        response.outputs.iter().map(|o| (o.name.as_str(), o.datatype.as_str(), o.shape.clone())).collect();
    assert_eq!(names, [("decision", "BYTES", vec![2]), ("probability_late", "FP64", vec![2])]);
    assert_eq!(response.raw_output_contents[0], b"\x08\0\0\0low_risk\x09\0\0\0high_risk");
    let mut probabilities = 0.25f64.to_le_bytes().to_vec();
    probabilities.extend_from_slice(&0.75f64.to_le_bytes());
    assert_eq!(response.raw_output_contents[1], probabilities);
}
