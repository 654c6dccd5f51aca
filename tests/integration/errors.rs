//! Every error status a client can cause, each with a JSON body that names
//! the problem; none of them disturbs the server.

use crate::common::*;

async fn post_raw(s: &TestServer, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    send(s.addr, "POST", path, headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_naming_the_field_and_problem() {
    let s = TestServer::start().await;
    let cases: Vec<(String, &str, &str)> = vec![
        ("{\"loan_amnt\": ".into(), "malformed JSON", ""),
        ("".into(), "empty", ""),
        ("[1, 2]".into(), "JSON object", ""),
        (ROW.replace("\"dti\":14.39,", ""), "dti: is required", "dti"),
        (ROW.replace("5000", "\"five thousand\""), "loan_amnt: must be a number", "loan_amnt"),
        (ROW.replace("5000", "-5000"), "loan_amnt: must not be negative", "loan_amnt"),
        (ROW.replace("0.1356", "\"NaN\""), "int_rate: must be a finite number", "int_rate"),
        (ROW.replace("\"C\"", "3"), "grade: must be a string, got a number", "grade"),
        (ROW.replace("\"MORTGAGE\"", "{}"), "home_ownership: must be a string, got an object", "home_ownership"),
        (ROW.replace("}", ",\"loan_amount\":5}"), "loan_amount: unknown field", "loan_amount"),
        (
            format!("{{\"instances\":[{ROW},{}]}}", ROW.replace("1,\"home", "true,\"home")),
            "instances[1].delinq_2yrs",
            "instances[1].delinq_2yrs",
        ),
        (format!("{{\"instances\":[{}]}}", vec![ROW; 1001].join(",")), "limit is 1000", "instances"),
        ("{\"instances\": []}".into(), "at least one", "instances"),
    ];
    for (body, needle, field) in cases {
        let r = s.post(PREDICT, &body).await;
        assert_eq!(r.status, 400, "{needle}: {}", r.text());
        assert!(r.error().contains(needle), "expected {needle:?} in {:?}", r.error());
        if !field.is_empty() {
            let fields = r.json()["fields"].as_array().cloned().unwrap_or_default();
            assert!(fields.iter().any(|f| f["field"] == field), "{field} not in {fields:?}");
        }
    }
    // The server is unharmed.
    assert_eq!(s.post(PREDICT, ROW).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_models_versions_and_methods() {
    let s = TestServer::start().await;
    let r = s.post("/v1/models/nope/predict", ROW).await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("`nope` is not served") && r.error().contains("credit-risk"), "{}", r.error());
    let r = s.post("/v1/models/credit-risk/versions/9/predict", ROW).await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("loaded versions: 1"));
    let r = s.post("/v1/models/credit-risk/versions/latest/predict", ROW).await;
    assert_eq!(r.status, 404);
    for long in ["/v1/models/credit-risk/versions/1/predict/extra", "/a/b/c/d/e/f/g/h/i"] {
        let r = s.post(long, ROW).await;
        assert_eq!(r.status, 404, "{long}");
        assert!(r.error().contains(long), "{}", r.error());
    }
    let r = s.get("/nowhere").await;
    assert_eq!((r.status, r.json()["type"].as_str()), (404, Some("not_found")));
    let r = s.get(PREDICT).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert!(r.error().contains("POST"));
    let r = s.post("/v1/models", "{}").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_and_body_size() {
    let s = TestServer::start_with(|c| c.max_body_bytes = 4096).await;
    let r = post_raw(&s, PREDICT, &[("content-type", "text/plain")], ROW.as_bytes()).await;
    assert_eq!(r.status, 415);
    assert!(r.error().contains("Content-Type: application/json"), "{}", r.error());
    // Missing content type: 415 too (no cross-site "simple" requests). Parameters are fine.
    let r = post_raw(&s, PREDICT, &[], ROW.as_bytes()).await;
    assert_eq!((r.status, r.json()["type"].as_str()), (415, Some("unsupported_media_type")));
    assert!(r.error().contains("Content-Type: application/json"), "{}", r.error());
    let r = post_raw(&s, PREDICT, &[("content-type", "application/json; charset=utf-8")], ROW.as_bytes()).await;
    assert_eq!(r.status, 200);
    let big = format!("{{\"instances\":[{}]}}", vec![ROW; 40].join(","));
    let r = s.post(PREDICT, &big).await;
    assert_eq!(r.status, 413);
    assert!(r.error().contains("4096 bytes"), "{}", r.error());
    assert_eq!(s.post(PREDICT, ROW).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_no_loadable_version_is_503_and_does_not_make_the_server_unready() {
    let s = TestServer::start().await;
    commit(&s.models, "broken", 1, &corrupt_model());
    s.wait_metric("riskserve_model_loads_total", &[("model", "broken"), ("result", "invalid")], 1.0).await;
    let r = s.post("/v1/models/broken/predict", ROW).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.error().contains("digest mismatch"), "{}", r.error());
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
    assert_eq!(s.post(PREDICT, ROW).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_408_and_the_server_carries_on() {
    use std::io::{Read, Write};
    let s = TestServer::start_with(|c| c.request_timeout = std::time::Duration::from_millis(300)).await;
    let addr = s.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let head = format!(
            "POST {PREDICT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            ROW.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&ROW.as_bytes()[..10]).unwrap();
        // ...and the rest never comes.
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("did not arrive in time"), "{response}");
    assert_eq!(s.post(PREDICT, ROW).await.status, 200);
}
