//! What reason codes cost: one application scored by the bundled 100-tree
//! forest without an explanation (`predict`: preprocess + forest) and with
//! one (`predict` + Saabas attribution over every tree + the top 4 reasons),
//! as the predict route does for `?explain=false` and the default
//! (`Model::predict_with_reasons`). Issue 25's goal: explained ≤ 1.3 ×
//! unexplained (docs/explain.md). Synthetic rows from
//! `riskserve::train::synth` (never the real CSV).
//! Run with `cargo bench --bench explain`.

use criterion::{criterion_group, criterion_main, Criterion};
use riskserve::model::explain::DEFAULT_REASONS;
use riskserve::model::input::LoanApplication;
use riskserve::model::Model;
use std::hint::black_box;

fn bundled_model() -> Model {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/credit-risk/1/model.json");
    Model::from_bytes(&std::fs::read(path).expect("bundled model")).expect("bundled model loads")
}

fn explain(c: &mut Criterion) {
    let model = bundled_model();
    let apps: Vec<LoanApplication> = riskserve::train::synth::generate(256, 11).into_iter().map(|(a, _)| a).collect();
    let apps = model.fields.loan_rows(&apps);
    let mut group = c.benchmark_group("single_prediction");
    let mut i = 0;
    group.bench_function("unexplained", |b| {
        b.iter(|| {
            i = (i + 1) % apps.len();
            black_box(model.predict(black_box(apps.row(i))))
        })
    });
    group.bench_function("explained_top4", |b| {
        b.iter(|| {
            i = (i + 1) % apps.len();
            black_box(model.predict_with_reasons(black_box(apps.row(i)), DEFAULT_REASONS))
        })
    });
    group.finish();
}

criterion_group!(benches, explain);
criterion_main!(benches);
