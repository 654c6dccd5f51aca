//! The swap promise, observed exactly rather than statistically: a request
//! in flight on version N while N+1 is committed completes on N with N's
//! answer; every request started after the swap is published gets N+1;
//! N is freed when its last in-flight request ends.
//!
//! Version 1 is served through a stand-in scorer whose `predict` blocks
//! until the test releases it (the scorer seam), and the test waits for the
//! reload pass itself (the pass signal), so nothing depends on timing.

use crate::common::*;
use riskserve::model::estimator::Estimator;
use riskserve::model::format::{encode, ModelMeta};
use riskserve::model::{Model, Prediction, Scorer};
use riskserve::repository::LocalDirectory;
use std::sync::Arc;

/// Requests held inside version 1 while the swap happens.
const IN_FLIGHT: usize = 4;

/// Version 1's stand-in: the real model, behind the gate.
#[derive(Debug)]
struct Gated {
    model: Model,
    gate: Arc<Gate>,
}

impl Scorer for Gated {
    fn fields(&self) -> &riskserve::model::fields::Fields {
        &self.model.fields
    }
    fn predict(&self, row: riskserve::model::row::Row<'_>) -> Prediction {
        self.gate.pass();
        self.model.predict(row)
    }
    fn meta(&self) -> &ModelMeta {
        self.model.meta()
    }
    fn digest(&self) -> &str {
        &self.model.digest
    }
}

/// The bundled forest with every leaf probability halved: a valid version
/// whose answers differ from version 1's.
fn halved_model() -> Vec<u8> {
    let mut payload = bundled_payload();
    let Estimator::RandomForest { trees } = &mut payload.estimator else { panic!("the bundled model is a forest") };
    for tree in trees {
        tree.value.iter_mut().for_each(|v| *v *= 0.5);
    }
    encode(&payload).unwrap()
}

fn answer(model_bytes: &[u8]) -> f64 {
    let model = Model::from_bytes(model_bytes).unwrap();
    let rows = riskserve::http::request::decode_with(&model.fields, ROW.as_bytes()).unwrap();
    model.predict(rows.row(0)).probability_late
}

fn probability(r: &Reply) -> f64 {
    r.json()["predictions"][0]["probability_late"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn in_flight_requests_finish_on_the_old_version_new_ones_get_the_new_and_the_old_is_freed() {
    let gate = Gate::new();
    let gate_for_v1 = gate.clone();
    let s = TestServer::start_with_components(
        |_| {},
        move |_, parts| {
            parts.scorers = Arc::new(move |_, version, bytes| {
                let model = Model::from_bytes(&bytes.bytes)?;
                Ok(if version == 1 {
                    Arc::new(Gated { model, gate: gate_for_v1.clone() }) as Arc<dyn Scorer>
                } else {
                    Arc::new(model)
                })
            })
        },
    )
    .await;
    let v2_bytes = halved_model();
    let (v1_answer, v2_answer) = (answer(bundled_model()), answer(&v2_bytes));
    assert_ne!(v1_answer, v2_answer);
    let v1 = Arc::downgrade(&s.server.registry.resolve(MODEL, None).unwrap());

    // N requests enter version 1 and are held there.
    let held: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let addr = s.addr;
            tokio::spawn(async move {
                send(addr, "POST", PREDICT, &[("content-type", "application/json")], ROW.as_bytes()).await
            })
        })
        .collect();
    let mut entered = gate.entered.subscribe();
    tokio::time::timeout(WAIT, entered.wait_for(|n| *n >= IN_FLIGHT)).await.expect("requests reach v1").unwrap();

    // Version 2 is committed and the pass that swaps it in completes.
    LocalDirectory::new(&s.models).publish(MODEL, 2, &v2_bytes).unwrap();
    s.wait_serving(2).await;
    assert!(v1.upgrade().is_some(), "v1 is still held by its in-flight requests");

    // Every request started after the swap gets version 2, at once.
    for _ in 0..20 {
        let r = s.post(PREDICT, ROW).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-model-version"), Some("2"));
        assert_eq!(probability(&r), v2_answer);
    }
    assert!(held.iter().all(|h| !h.is_finished()), "the held requests are still inside v1");
    assert_eq!(*gate.entered.borrow(), IN_FLIGHT, "no new request reached v1");

    // Released, the held requests finish on version 1 with its answer...
    gate.release();
    for h in held {
        let r = tokio::time::timeout(WAIT, h).await.expect("held request finishes").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-model-version"), Some("1"));
        assert_eq!(r.json()["model_version"], 1);
        assert_eq!(probability(&r), v1_answer);
    }
    // ...and version 1 is freed with the last of them.
    assert!(v1.upgrade().is_none(), "v1 outlived its last request");
}
