//! Imported models' speed in process (issue 26): an XGBoost and a LightGBM
//! model (100 trees), one thread, scoring a 10,000-row batch (per row) and
//! one row, unexplained, with the reasons the default request carries, and
//! with exact SHAP values (`?explain=shap`).
//! `bench/imports.sh` trains the models with the real libraries, points
//! `RISKSERVE_IMPORTS_DIR` at them (`xgboost.json`, `lightgbm.txt`,
//! `rows.jsonl`), times the libraries themselves in the same run and prints
//! the table; `cargo bench --bench imports` alone needs that directory.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use riskserve::http::request::{decode, Decoder};
use riskserve::model::fields::NameTable;
use riskserve::model::import::{Format, VersionBytes};
use riskserve::model::row::Rows;
use riskserve::model::{Model, Prediction, Scorer};
use std::hint::black_box;
use std::path::PathBuf;

const BATCH: usize = 10_000;

fn dir() -> PathBuf {
    PathBuf::from(std::env::var("RISKSERVE_IMPORTS_DIR").expect(
        "RISKSERVE_IMPORTS_DIR: a directory with xgboost.json, lightgbm.txt and rows.jsonl (bench/imports.sh makes it)",
    ))
}

fn load(format: Format) -> Model {
    let bytes = std::fs::read(dir().join(format.file_name())).expect("model file");
    Model::load(&VersionBytes { file: format.file_name(), bytes, settings: None }, Default::default()).expect("loads")
}

/// The first [`BATCH`] rows of `rows.jsonl` (repeated if it has fewer),
/// decoded with the model's inputs as a request would be.
fn rows(model: &Model) -> Rows {
    let text = std::fs::read_to_string(dir().join("rows.jsonl")).expect("rows.jsonl");
    let lines: Vec<&str> = text.lines().cycle().take(BATCH).collect();
    let body = format!("{{\"instances\":[{}]}}", lines.join(","));
    let known = NameTable::default();
    decode(body.as_bytes(), Decoder { fields: &model.fields, known: &known, max_batch: BATCH }).expect("rows decode")
}

fn bench(c: &mut Criterion) {
    for format in [Format::Xgboost, Format::LightGbm] {
        let model = load(format);
        let rows = rows(&model);
        let name = model.meta.algorithm.clone();
        let mut group = c.benchmark_group(format!("imports/{name}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        let mut out: Vec<Prediction> = Vec::with_capacity(BATCH);
        group.bench_function("batch_10000", |b| {
            b.iter(|| {
                out.clear();
                model.predict_many(black_box(rows.view()), &mut out);
                black_box(out.len())
            })
        });
        group.throughput(Throughput::Elements(1));
        let one = rows.row(0);
        group.bench_function("one_row", |b| b.iter(|| black_box(model.predict(black_box(one)))));
        group.bench_function("one_row_explained", |b| {
            b.iter(|| black_box(model.predict_explained(black_box(one)).1.probability))
        });
        group
            .bench_function("one_row_shap", |b| b.iter(|| black_box(model.shap(black_box(one)).map(|s| s.base_value))));
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
