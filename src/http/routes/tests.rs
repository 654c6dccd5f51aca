//! The routing table without a socket: each test calls [`handle`] with a
//! request value and inspects the response value.

use super::*;
use crate::http::test_support::{app, app_serving, app_with, batch, call, expect, send, stand_in, ROW};
use crate::model::test_support::tiny_payload;
use crate::registry::loader::compile_models;
use hyper::header::HeaderValue;
use hyper::StatusCode;

#[test]
fn content_type_is_application_json_with_any_parameters() {
    let check = |value: &[u8]| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_bytes(value).unwrap());
        check_content_type(&headers).map_err(|e| (e.status.as_u16(), e.message))
    };
    for ok in [
        &b"application/json"[..],
        b"Application/JSON",
        b" application/json ; charset=utf-8",
        b"application/json;",
        b"\tapplication/json\t",
    ] {
        assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
    }
    for (refused, named) in [
        (&b"text/plain"[..], "text/plain"),
        (b"application/json-seq", "application/json-seq"),
        (b"application/ json", "application/ json"),
        (b"", ""),
        (b"application/json; charset=\xe9", "<non-ASCII>"),
    ] {
        let (status, message) = check(refused).unwrap_err();
        assert_eq!(status, 415, "{message}");
        assert!(message.contains(named), "{message}");
    }
    assert_eq!(check_content_type(&HeaderMap::new()).unwrap_err().status.as_u16(), 415);
}

#[test]
fn path_segments_are_what_splitting_on_slashes_gives() {
    /// The straightforward definition the byte scan replaces.
    fn split(path: &str) -> Vec<&str> {
        let all: Vec<&str> = path.trim_matches('/').split('/').collect();
        if all.len() > MAX_SEGMENTS {
            Vec::new()
        } else {
            all
        }
    }
    for path in [
        "/",
        "",
        "//",
        "/v1/models/m/predict",
        "v1/models/m/predict/",
        "///v1//models///",
        "/a/b/c/d/e/f",
        "/a/b/c/d/e/f/g",
        "/a/b/c/d/e/f/",
        "/é/ü//ß/",
        "/metrics",
        "/openapi.json",
        "/v1/models/m/versions/3/predict",
    ] {
        let mut buf = [""; MAX_SEGMENTS];
        assert_eq!(path_segments(path, &mut buf), split(path).as_slice(), "{path:?}");
    }
}

#[tokio::test]
async fn predictions_name_the_version_in_body_and_header() {
    let (state, _dir) = app();
    let (status, headers, body) = call(&state, "POST", "/v1/models/m/predict", ROW).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-model-version"], "3");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["model_version"], 3);
    assert_eq!(json["predictions"][0]["probability_late"], 0.3, "grade B leaf");
    let (status, headers, _) = call(&state, "POST", "/v1/models/m/versions/3/predict", ROW).await;
    assert_eq!((status, &headers["x-model-version"]), (StatusCode::OK, &HeaderValue::from_static("3")));
}

#[tokio::test]
async fn the_routing_table_answers_each_miss_with_the_right_status() {
    let (state, _dir) = app();
    for (method, path, body, want, needle) in [
        ("GET", "/v2/health/live", "", StatusCode::OK, "live"),
        ("GET", "/v2/health/ready", "", StatusCode::OK, "ready"),
        ("GET", "/v1/models", "", StatusCode::OK, "\"serving_version\":3"),
        ("GET", "/v1/models/m", "", StatusCode::OK, "\"state\":\"available\""),
        ("GET", "/v1/models/m", "", StatusCode::OK, r#""categories":["A","B"]"#),
        ("GET", "/v1/models/nope", "", StatusCode::NOT_FOUND, "models: m"),
        ("POST", "/v1/models/nope/predict", ROW, StatusCode::NOT_FOUND, "models: m"),
        ("POST", "/v1/models/m/versions/9/predict", ROW, StatusCode::NOT_FOUND, "loaded versions: 3"),
        ("POST", "/v1/models/m/versions/03/predict", ROW, StatusCode::NOT_FOUND, "not a positive integer"),
        ("GET", "/v1/models/m/predict", "", StatusCode::METHOD_NOT_ALLOWED, "POST"),
        ("POST", "/metrics", "", StatusCode::METHOD_NOT_ALLOWED, "GET"),
        ("GET", "/v1/models/m/predict/extra/segments/here", "", StatusCode::NOT_FOUND, "no route"),
        ("POST", "/v1/models/m/predict", "{", StatusCode::BAD_REQUEST, "malformed JSON"),
    ] {
        expect(&state, method, path, body, want, needle).await;
    }
}

#[tokio::test]
async fn a_post_without_content_type_is_415() {
    let (state, _dir) = app();
    let req = Request::builder().method("POST").uri("/v1/models/m/predict");
    let (status, headers, body) = send(&state, req, ROW).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert!(body.contains("no content type") && body.contains("Content-Type: application/json"), "{body}");
}

#[tokio::test]
async fn a_non_finite_probability_is_a_500_counted_never_an_answer() {
    for probability in [f64::NAN, f64::INFINITY] {
        let (state, _dir) = app_with(stand_in(probability, std::time::Duration::ZERO), |_| {});
        let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", ROW).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["type"], "inference_error");
        assert!(json["error"].as_str().unwrap().contains("non-finite probability"), "{body}");
        let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", &batch(100)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert!(body.contains("instances[0]"), "{body}");
        let text = String::from_utf8(state.metrics.render()).unwrap();
        assert!(text.contains(r#"riskserve_inference_errors_total{model="m",version="3"} 2"#), "{text}");
        let scored = text.lines().filter(|l| l.starts_with("riskserve_predictions_total{"));
        assert!(scored.clone().count() > 0 && scored.clone().all(|l| l.ends_with(" 0")), "none scored: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_past_the_deadline_is_503_with_retry_after() {
    let slow = stand_in(0.1, std::time::Duration::from_millis(2));
    let (state, _dir) = app_with(slow, |c| c.request_timeout = std::time::Duration::from_millis(100));
    let started = Instant::now();
    // 500 rows × 2 ms = 1 s of scoring: on a blocking thread, abandoned at 100 ms.
    let (status, headers, body) = call(&state, "POST", "/v1/models/m/predict", &batch(500)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("\"type\":\"deadline_exceeded\""), "{body}");
    // Inline (≤ 64 rows) the scoring loop checks the deadline itself.
    let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", &batch(64)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let text = String::from_utf8(state.metrics.render()).unwrap();
    assert!(text.contains(r#"riskserve_requests_shed_total{reason="deadline"} 2"#), "{text}");
}

#[tokio::test]
async fn predictions_carry_ranked_reasons_unless_explain_is_false() {
    let (state, _dir) = app();
    let (status, _, body) = call(&state, "POST", "/v1/models/m/predict", ROW).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = &json["predictions"][0];
    let reasons = p["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "only grade raised the risk: {body}");
    assert_eq!(reasons[0]["feature"], "grade", "{body}");
    assert_eq!(reasons[0]["value"], "B");
    assert_eq!(reasons[0]["imputed"], false);
    let contributions: Vec<f64> = reasons.iter().map(|r| r["contribution"].as_f64().unwrap()).collect();
    assert!(contributions.windows(2).all(|w| w[0] >= w[1]), "{body}");
    assert!(p.get("band").is_none(), "no bands configured: {body}");
    // The metadata names the method and the base value they start from.
    let (_, _, meta) = call(&state, "GET", "/v1/models/m", "").await;
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    let explain = &meta["versions"][0]["explain"];
    assert_eq!(explain["method"], "saabas", "{meta}");
    let base = explain["base_value"].as_f64().unwrap();
    let p_late = p["probability_late"].as_f64().unwrap();
    // Every feature's contribution: they add up to the probability.
    let (_, _, all) = call(&state, "POST", "/v1/models/m/predict?reasons=10", ROW).await;
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let sum: f64 =
        all["predictions"][0]["reasons"].as_array().unwrap().iter().map(|r| r["contribution"].as_f64().unwrap()).sum();
    assert!((base + sum - p_late).abs() < 1e-9, "{base} + {sum} vs {p_late}");

    for (query, want) in [
        ("?explain=false", None),
        ("?reasons=2", Some(1)),
        ("?reasons=0", Some(0)),
        ("?explain=true&reasons=1", Some(1)),
    ] {
        let path = format!("/v1/models/m/versions/3/predict{query}");
        let (status, _, body) = call(&state, "POST", &path, &batch(2)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        for p in json["predictions"].as_array().unwrap() {
            assert_eq!(p.get("reasons").map(|r| r.as_array().unwrap().len()), want, "{query}: {body}");
            assert_eq!(p["decision"], "high_risk", "{body}");
        }
    }
    for (query, needle) in [("?reasons=11", "`reasons`"), ("?reasons=-1", "`reasons`"), ("?explain=maybe", "`explain`")]
    {
        let (status, _, body) = call(&state, "POST", &format!("/v1/models/m/predict{query}"), ROW).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.contains(needle), "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_batch_split_across_the_pool_answers_every_row_in_order() {
    let (state, _dir) = app();
    assert!(state.workers.threads() >= 1);
    let other = ROW.replace("\"B\"", "\"A\"");
    // 1,000 rows: grade A where i % 7 == 3 (0.02), grade B elsewhere (0.3).
    let rows: Vec<&str> = (0..1000).map(|i| if i % 7 == 3 { other.as_str() } else { ROW }).collect();
    let body = format!("{{\"instances\":[{}]}}", rows.join(","));
    let (status, _, text) = call(&state, "POST", "/v1/models/m/predict?explain=false", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let predictions = json["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 1000);
    for (i, p) in predictions.iter().enumerate() {
        let want = if i % 7 == 3 { 0.02 } else { 0.3 };
        assert_eq!(p["probability_late"], want, "row {i}");
    }
}

#[tokio::test]
async fn a_model_with_bands_names_each_predictions_band() {
    let mut payload = tiny_payload();
    payload.meta.decision.bands = Some(crate::model::format::Bands {
        names: vec!["approve".into(), "review".into(), "decline".into()],
        cutoffs: vec![0.01, 0.1],
    });
    let (state, _dir) = app_serving(payload, compile_models(Default::default()), |_| {});
    let other = ROW.replace("\"B\"", "\"A\"");
    let body = format!("{{\"instances\":[{ROW},{other}]}}");
    let (status, _, text) = call(&state, "POST", "/v1/models/m/predict?explain=false", &body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["predictions"][0]["band"], "decline", "0.3: {text}");
    assert_eq!(json["predictions"][1]["band"], "review", "0.02: {text}");
    assert_eq!(json["predictions"][1]["decision"], "low_risk", "{text}");
}
