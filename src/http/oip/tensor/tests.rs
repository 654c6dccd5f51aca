//! Unit tests of tensor decoding and encoding (JSON and binary).

use super::*;
use crate::http::oip::binding::SHARED_MEMORY;
use crate::http::predict::Answered;
use crate::http::request::Decoder;
use crate::model::fields::NameTable;
use crate::model::input::{cat, num, LoanApplication};
use crate::model::test_support::loan_fields;
use crate::model::{Decision, Prediction};
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

/// Decodes with the loan fields (and `term`, another version's, ignored)
/// and a batch limit of 10, as loan applications.
fn decode_with(body: &[u8], json_length: Option<usize>) -> Result<(Wanted, Vec<LoanApplication>), ApiError> {
    let fields = loan_fields();
    let known = NameTable::new(["term"]);
    let (wanted, rows) = decode(body, json_length, Decoder { fields: &fields, known: &known, max_batch: 10 })?;
    Ok((wanted, rows.iter().map(|r| fields.loan_of(r)).collect()))
}

fn decode_json(body: &Value) -> Result<(Wanted, Vec<LoanApplication>), ApiError> {
    decode_with(body.to_string().as_bytes(), None)
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
    let fields = loan_fields();
    let v1 = crate::http::request::decode_with(
        &fields,
        br#"{"instances":[{"loan_amnt":5000.0,"int_rate":0.1356,"annual_inc":52000,"revol_util":0.2,"dti":14.4,"delinq_2yrs":0,"purpose":"car","grade":"B","emp_length":"9 years","home_ownership":"RENT"},
        {"loan_amnt":12000,"int_rate":0.2,"annual_inc":null,"revol_util":0.5,"dti":3,"delinq_2yrs":2,"purpose":" debt_consolidation ","grade":"","emp_length":null,"home_ownership":"OWN"}]}"#,
    )
    .unwrap();
    let v1: Vec<LoanApplication> = v1.iter().map(|r| fields.loan_of(r)).collect();
    assert_eq!(apps, v1);
}

#[test]
fn wrong_datatypes_are_named() {
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "BYTES", "shape": [2], "data": ["1", "2"]})));
    assert_eq!(p, ["dti: is numeric: send FP64, FP32, INT64 or INT32 (or another INT/UINT type), got BYTES"]);
    let p = problems(&with_input("grade", json!({"name": "grade", "datatype": "FP64", "shape": [2], "data": [1, 2]})));
    assert_eq!(p, ["grade: is categorical: send BYTES, got FP64"]);
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP16", "shape": [2], "data": [1, 2]})));
    assert_eq!(p, ["dti: unsupported datatype `FP16`"]);
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [1, "x"]})));
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
    let p =
        problems(&with_input("grade", json!({"name": "grade", "datatype": "BYTES", "shape": [2], "data": ["A", 3]})));
    assert_eq!(p, ["grade[1]: BYTES elements must be strings (or null), got a number"]);
}

#[test]
fn shape_mismatches_are_named() {
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]})));
    assert_eq!(p, ["dti: shape mismatch: has a batch of 3 but `loan_amnt` has 2; every input needs the same batch"]);
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [1, 2, 3]})));
    assert_eq!(p, ["dti: has 3 elements but its shape [2] says 2"]);
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]})));
    assert_eq!(p, ["dti: has shape [1, 2]; expected [batch] or [batch, 1]"]);
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": 3})));
    assert_eq!(p, ["dti: data must be an array"]);
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2]})));
    assert_eq!(p, ["dti: has no data (and no binary_data_size)"]);
    let shm = json!({"shared_memory_region": "r", "shared_memory_byte_size": 16});
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "parameters": shm})));
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
    assert!(e.message.starts_with("not an inference request: invalid type: map, expected a sequence"), "{}", e.message);
    let e = decode_with(b"  ", None).unwrap_err();
    assert!(e.message.contains("request body is empty"), "{}", e.message);
}

#[test]
fn values_go_through_the_v1_field_rules() {
    let p = problems(&with_input("dti", json!({"name": "dti", "datatype": "FP64", "shape": [2], "data": [-1, 1e9]})));
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
            "outputs: unknown output `proba`; this model's outputs are probability_late, decision, reasons",
            "outputs: `decision` is asked for more than once",
        ]
    );
    let p =
        problems(&json!({"inputs": inputs(), "outputs": [{"name": "decision", "parameters": {"binary_data": "yes"}}]}));
    assert_eq!(p, ["outputs: `decision`: parameter `binary_data` must be a boolean, got \"yes\""]);
}

/// The binary form of the test inputs: every tensor as bytes.
fn binary_body(mangle: impl Fn(&str, &mut Vec<u8>)) -> (Vec<u8>, usize) {
    let mut header = Vec::new();
    let mut data = Vec::new();
    for mut t in inputs() {
        let mut bytes = Vec::new();
        for v in t["data"].as_array().unwrap().iter().flat_map(|v| v.as_array().cloned().unwrap_or(vec![v.clone()])) {
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
    let (_, apps) = decode_with(&body, Some(n)).unwrap();
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
    let e = decode_with(&body, Some(n)).unwrap_err();
    assert_eq!(e.fields[0].field, "grade[1]", "{}", e.message);
    assert!(e.fields[0].problem.contains("truncated BYTES element"), "{}", e.message);
    let (body, n) = binary_body(|name, bytes| {
        if name == "dti" {
            bytes.copy_from_slice(&[f64::NAN.to_le_bytes(), 1f64.to_le_bytes()].concat());
        }
    });
    let e = decode_with(&body, Some(n)).unwrap_err();
    assert_eq!(e.message, "dti[0]: must be a finite number (not NaN or infinity)");
    let (mut body, n) = binary_body(|_, _| {});
    body.extend_from_slice(b"junk");
    assert!(decode_with(&body, Some(n)).unwrap_err().message.contains("4 bytes of binary data are left over"));
    assert!(decode_with(&body, Some(body.len() + 1)).unwrap_err().message.contains("Inference-Header-Content-Length"));
    assert!(decode_with(&body, Some(0)).unwrap_err().message.contains("raw binary request"));
    let (body, _) = binary_body(|_, _| {});
    let e = decode_with(&body, None).unwrap_err();
    assert!(e.message.contains("malformed JSON: trailing characters"), "{}", e.message);
    assert!(e.message.ends_with("needs an Inference-Header-Content-Length header)"), "{}", e.message);
}

#[test]
fn answers_encode_as_json_or_binary() {
    let predictions = [
        Prediction { probability_late: 0.25, decision: Decision::LowRisk },
        Prediction { probability_late: 0.75, decision: Decision::HighRisk },
    ];
    let answers: Vec<Answered> = predictions.into_iter().map(Answered::from).collect();
    let fields = loan_fields();
    let wanted =
        Wanted { id: Some("r1".into()), outputs: vec![(Output::Probability, false), (Output::Decision, false)] };
    let encoded =
        encode(&Answer { wanted: &wanted, model_name: "m", model_version: "3", answers: &answers, fields: &fields })
            .unwrap();
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
    let encoded =
        encode(&Answer { wanted: &wanted, model_name: "m", model_version: "3", answers: &answers, fields: &fields })
            .unwrap();
    let n = encoded.json_length.unwrap();
    let json: Value = serde_json::from_slice(&encoded.body[..n]).unwrap();
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 4 + 8 + 4 + 9);
    assert_eq!(json["outputs"][1]["parameters"]["binary_data_size"], 16);
    assert!(json.get("id").is_none());
    let binary = &encoded.body[n..];
    assert_eq!(&binary[..12], b"\x08\0\0\0low_risk");
    assert_eq!(&binary[25..33], &0.25f64.to_le_bytes());
}
