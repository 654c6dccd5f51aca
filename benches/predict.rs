//! Micro-benchmarks of the prediction path without HTTP: one application
//! (parse → validate → preprocess → 100-tree forest → serialise), a
//! 1,000-row batch the same way, and the model alone (preprocess + forest)
//! for one row and for 1,000 rows (scored together, and one by one), what
//! drift monitoring adds to 1,000 scored rows; and loading the bundled model file (read bytes → digest →
//! decode → compile → smoke test: what a reload pass spends per version).
//! Run with `cargo bench --bench predict`; the bundled model, and synthetic
//! rows from `riskserve::train::synth` (never the real CSV).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use riskserve::http::predict::Answered;
use riskserve::http::request;
use riskserve::http::response::PredictResponse;
use riskserve::model::input::{LoanApplication, FEATURES};
use riskserve::model::row::Rows;
use riskserve::model::{Model, Prediction};
use std::hint::black_box;

const MAX_BATCH: usize = 1000;

fn bundled_model() -> Model {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/credit-risk/1/model.json");
    Model::from_bytes(&std::fs::read(path).expect("bundled model")).expect("bundled model loads")
}

/// One application as a JSON object, missing values as `null`.
fn app_json(app: &LoanApplication) -> String {
    let mut fields = Vec::new();
    for (i, name) in FEATURES.iter().enumerate() {
        let value = match (app.numeric.get(i), app.categorical.get(i.wrapping_sub(6))) {
            (Some(Some(v)), _) => v.to_string(),
            (Some(None), _) => "null".into(),
            (None, Some(Some(s))) => serde_json::to_string(s).unwrap(),
            (None, _) => "null".into(),
        };
        fields.push(format!("\"{name}\":{value}"));
    }
    format!("{{{}}}", fields.join(","))
}

/// The request path without HTTP: decode with the version's inputs, score, serialise.
fn answer(model: &Model, body: &[u8]) -> Vec<u8> {
    let rows = request::decode_with(&model.fields, body).unwrap();
    let mut predictions: Vec<Prediction> = Vec::with_capacity(rows.len());
    model.predict_many(rows.view(), &mut predictions);
    let answered: Vec<Answered> = predictions.into_iter().map(Answered::from).collect();
    respond(model, &answered)
}

/// The response body for `answered`, as the predict route writes it.
fn respond(model: &Model, answered: &[Answered]) -> Vec<u8> {
    let name_json = r#""credit-risk""#;
    PredictResponse { name_json, version_label: "1", fields: &model.fields, predictions: answered }.to_json().unwrap()
}

/// [`answer`] for the default request: every row with its top 4 reasons.
fn answer_explained(model: &Model, body: &[u8]) -> Vec<u8> {
    let rows = request::decode_with(&model.fields, body).unwrap();
    let answered: Vec<Answered> = rows
        .iter()
        .map(|row| {
            let (p, reasons) = model.predict_with_reasons(row, riskserve::model::explain::DEFAULT_REASONS);
            Answered::with_reasons(p, reasons)
        })
        .collect();
    respond(model, &answered)
}

fn benches(c: &mut Criterion) {
    let model = bundled_model();
    let apps: Vec<LoanApplication> =
        riskserve::train::synth::generate(MAX_BATCH, 7).into_iter().map(|(app, _)| app).collect();
    let one = app_json(&apps[0]).into_bytes();
    let batch = format!("{{\"instances\":[{}]}}", apps.iter().map(app_json).collect::<Vec<_>>().join(","));
    let rows: Rows = model.fields.loan_rows(&apps);

    let mut g = c.benchmark_group("predict");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_request", |b| b.iter(|| answer(&model, black_box(&one))));
    g.bench_function("one_request_explained", |b| b.iter(|| answer_explained(&model, black_box(&one))));
    let mut i = 0;
    g.bench_function("model_only", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % rows.len();
                rows.row(i)
            },
            |row| model.predict(black_box(row)),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(MAX_BATCH as u64));
    g.bench_function("batch_1000_request", |b| b.iter(|| answer(&model, black_box(batch.as_bytes()))));
    let mut out = Vec::with_capacity(MAX_BATCH);
    g.bench_function("batch_1000_model_only", |b| {
        b.iter(|| {
            out.clear();
            model.predict_many(black_box(rows.view()), &mut out);
            out.len()
        })
    });
    g.bench_function("batch_1000_model_one_by_one", |b| {
        b.iter(|| rows.iter().map(|r| model.predict(black_box(r)).probability_late).sum::<f64>())
    });
    // What drift monitoring adds per scored row (issue 29): counting 1,000
    // rows and their predictions in a version's window (a reference built
    // from the same rows; the window rotates every 1,000 predictions).
    let scores: Vec<f64> = out.iter().map(|p| p.probability_late).collect();
    let reference = riskserve::model::reference::Reference::build(&model.fields, rows.view(), &scores);
    let monitor = riskserve::drift::Monitor::new(reference, riskserve::drift::WindowSize::default());
    g.bench_function("batch_1000_drift_observe", |b| b.iter(|| monitor.observe(black_box(rows.view()), &out)));
    g.finish();

    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/credit-risk/1/model.json")).unwrap();
    let mut g = c.benchmark_group("load");
    g.sample_size(20);
    g.bench_function("bundled_model", |b| b.iter(|| Model::from_bytes(black_box(&bytes)).unwrap()));
    g.finish();
}

criterion_group!(predict, benches);
criterion_main!(predict);
