//! riskserve's side of `bench/onnx_speed.sh`: the seed RF-100 pipeline as
//! `model.onnx` (made by `tests/oracle/onnx_models.py` into the directory
//! `$ONNX_ORACLE`), timed on one thread per row: 10,000 rows scored
//! together (`predict_many`) and one row at a time (`predict`). Requests
//! are decoded beforehand, as the Python side builds its inputs
//! beforehand. Prints `riskserve batch_10000 <ns per row>` and
//! `riskserve batch_1 <ns per row>`, one round; the script alternates
//! rounds with ONNX Runtime and scikit-learn and takes medians.

use riskserve::http::request;
use riskserve::model::import::VersionBytes;
use riskserve::model::row::{Rows, Value};
use riskserve::model::Model;
use std::hint::black_box;
use std::time::Instant;

const ROWS: usize = 10_000;

fn main() {
    let Ok(dir) = std::env::var("ONNX_ORACLE") else {
        eprintln!("set ONNX_ORACLE to a directory tests/oracle/onnx_models.py wrote (bench/onnx_speed.sh does)");
        return;
    };
    let dir = std::path::Path::new(&dir);
    let bytes = std::fs::read(dir.join("rf.onnx")).expect("rf.onnx");
    let model = Model::load(&VersionBytes { file: "model.onnx", bytes, settings: None }, Default::default())
        .unwrap_or_else(|e| panic!("rf.onnx: {e}"));
    let text = std::fs::read_to_string(dir.join("rows.jsonl")).expect("rows.jsonl");
    let lines: Vec<&str> = text.lines().cycle().take(ROWS).collect();
    // A request holds at most 1,000 rows: decode by the thousand, gather.
    let mut rows = Rows::with_capacity(model.fields.features().len(), ROWS);
    for chunk in lines.chunks(1000) {
        let body = format!("{{\"instances\":[{}]}}", chunk.join(","));
        let part = request::decode_with(&model.fields, body.as_bytes()).expect("rows decode");
        for row in part.iter() {
            let values: Vec<Value> = row
                .values()
                .iter()
                .map(|&v| match v {
                    Value::Unseen(k) => rows.unseen(row.unseen_text(k)),
                    v => v,
                })
                .collect();
            rows.push_missing().copy_from_slice(&values);
        }
    }
    let mut out = Vec::with_capacity(ROWS);
    // Warm up, then time.
    model.predict_many(rows.view(), &mut out);
    let start = Instant::now();
    out.clear();
    model.predict_many(black_box(rows.view()), &mut out);
    let batch = start.elapsed().as_nanos() as f64 / ROWS as f64;
    let start = Instant::now();
    let mut sum = 0.0;
    for row in rows.iter() {
        sum += model.predict(black_box(row)).probability_late;
    }
    let single = start.elapsed().as_nanos() as f64 / ROWS as f64;
    black_box(sum);
    println!("riskserve batch_10000 {batch:.0}");
    println!("riskserve batch_1 {single:.0}");
}
