//! Limits and overload over real sockets: admission control and shedding,
//! one deadline for headers and body, idle and write timeouts, header size,
//! the connection bound, and health staying fast under heavy batches.

use crate::common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(s: &TestServer) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(s.addr)).await.expect("connect in time").expect("connect")
}

/// Reads until the end of a response head (or end of file); bounded by [`WAIT`].
async fn read_head(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("response in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits until the server closes `stream` (end of file or reset); bounded by [`WAIT`].
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("closed in time") {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn server_metric(s: &TestServer, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&String::from_utf8_lossy(&s.server.registry.metrics.render()), name, labels).unwrap_or(0.0)
}

fn predict_head(content_length: usize) -> String {
    format!(
        "POST {PREDICT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limits_a_prediction_is_503_with_retry_after_at_once_and_health_is_never_shed() {
    let s = TestServer::start_with(|c| {
        c.max_inflight_requests = 1;
        c.max_queued_requests = 0;
    })
    .await;
    // A slow upload holds the one slot: it is taken before the body is read.
    let mut slow = connect(&s).await;
    slow.write_all(predict_head(ROW.len()).as_bytes()).await.unwrap();
    slow.write_all(&ROW.as_bytes()[..10]).await.unwrap();
    eventually("the slow upload holds the slot", || async {
        server_metric(&s, "riskserve_requests_admitted", &[]) == 1.0
    })
    .await;

    let started = Instant::now();
    let r = s.post(PREDICT, ROW).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2), "answered at once: {:?}", started.elapsed());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["type"], "overloaded");
    assert_eq!(server_metric(&s, "riskserve_requests_shed_total", &[("reason", "queue_full")]), 1.0);
    // Health, metrics and the form are never shed.
    assert_eq!(s.get("/v2/health/live").await.status, 200);
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
    assert_eq!(s.get("/metrics").await.status, 200);
    assert_eq!(s.get("/").await.status, 200);

    // The slow upload completes and is answered; then the slot is free again.
    slow.write_all(&ROW.as_bytes()[10..]).await.unwrap();
    let head = read_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    eventually("the slot is free", || async { s.post(PREDICT, ROW).await.status == 200 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_timeout_covers_headers_and_body_together() {
    let timeout = Duration::from_millis(1000);
    let s = TestServer::start_with(|c| c.request_timeout = timeout).await;
    // Headers take 700 ms, then the body stalls: 408 at ~1 s from the first
    // byte, not 700 ms + a fresh 1 s for the body.
    let mut stream = connect(&s).await;
    let head = predict_head(ROW.len());
    let (first, rest) = head.split_at(20);
    let started = Instant::now();
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await; // a slow client
    stream.write_all(rest.as_bytes()).await.unwrap();
    stream.write_all(&ROW.as_bytes()[..10]).await.unwrap();
    let response = read_head(&mut stream).await;
    let took = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(1600), "408 after {took:?}");

    // Headers that never complete: the connection is closed at the deadline.
    let mut stream = connect(&s).await;
    let started = Instant::now();
    stream.write_all(first.as_bytes()).await.unwrap();
    closed(&mut stream).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(1600), "closed after {took:?}");
    assert_eq!(server_metric(&s, "riskserve_connection_timeouts_total", &[("kind", "request")]), 1.0);
    assert_eq!(s.post(PREDICT, ROW).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&s).await;
    stream.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    closed(&mut stream).await;
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(250), "{idle:?}");
    // Not at the request timeout (10 s): hyper's read while the handler
    // ran must not leave the idle connection without its own deadline.
    assert!(idle < Duration::from_secs(3), "closed after {idle:?}, not after the 300 ms idle timeout");
    assert_eq!(server_metric(&s, "riskserve_connection_timeouts_total", &[("kind", "idle")]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_and_never_reads_is_disconnected() {
    let s = TestServer::start_with(|c| c.write_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&s).await;
    let requests = "GET / HTTP/1.1\r\nhost: x\r\n\r\n".repeat(100);
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        match tokio::time::timeout(WAIT, stream.write(requests.as_bytes())).await {
            Err(_) => panic!("still connected after {WAIT:?}, {sent} bytes sent"),
            Ok(Ok(n)) => sent += n,
            Ok(Err(_)) => break,
        }
    }
    eprintln!("pipelining client: disconnected after {:?}, having sent {sent} bytes", started.elapsed());
    assert!(sent < 64 << 20, "{sent} bytes accepted from a client that never reads");
    assert_eq!(server_metric(&s, "riskserve_connection_timeouts_total", &[("kind", "write")]), 1.0);
    assert_eq!(s.get("/v2/health/live").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_are_431() {
    let s = TestServer::start().await;
    // Over the server's 64 fields: a JSON 431 naming the limit.
    let names: Vec<String> = (0..70).map(|i| format!("x-h{i}")).collect();
    let fields = |n: usize| -> Vec<(&str, &str)> { names[..n].iter().map(|k| (k.as_str(), "v")).collect() };
    let reply = send(s.addr, "GET", "/v2/health/live", &fields(70), b"").await;
    assert_eq!(reply.status, 431, "{}", reply.text());
    assert!(reply.error().contains("header fields; the limit is 64"), "{}", reply.text());
    assert_eq!(send(s.addr, "GET", "/v2/health/live", &fields(60), b"").await.status, 200);
    // Over 16 KiB of head, or over hyper's own 100 fields: hyper's 431.
    let big = format!("GET /v2/health/live HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20 * 1024));
    let lots: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let lots = format!("GET /v2/health/live HTTP/1.1\r\nhost: x\r\n{lots}\r\n");
    for request in [big, lots] {
        let mut stream = connect(&s).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    }
    assert_eq!(s.get("/v2/health/live").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_while_open_ones_keep_working() {
    let s = TestServer::start_with(|c| c.max_connections = 2).await;
    let mut a = Client::connect(s.addr).await.unwrap();
    let mut b = Client::connect(s.addr).await.unwrap();
    for client in [&mut a, &mut b] {
        assert_eq!(client.request("GET", "/v2/health/live", &[], b"").await.unwrap().status, 200);
    }
    let mut third = connect(&s).await;
    let _ = third.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let head = read_head(&mut third).await;
    assert!(head.is_empty(), "no answer on a connection over the limit: {head}");
    assert_eq!(server_metric(&s, "riskserve_connections_refused_total", &[]), 1.0);
    assert_eq!(server_metric(&s, "riskserve_connections_open", &[]), 2.0);
    for client in [&mut a, &mut b] {
        assert_eq!(client.request("GET", "/v2/health/live", &[], b"").await.unwrap().status, 200);
    }
    drop(a);
    eventually("a closed connection frees its place", || async {
        match Client::connect(s.addr).await {
            Ok(mut c) => c.request("GET", "/v2/health/live", &[], b"").await.is_ok_and(|r| r.status == 200),
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_empty_instances_is_refused_at_the_batch_limit() {
    let s = TestServer::start().await;
    let body = format!("{{\"instances\":[{}{{}}]}}", "{},".repeat((1024 * 1024 - 20) / 3));
    let r = s.post(PREDICT, &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("more than 1000 applications; the limit is 1000"), "{}", r.error());
    assert_eq!(r.json()["fields"][0]["field"], "instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_fast_while_big_batches_are_scored() {
    let s = Arc::new(TestServer::start().await);
    let batch = Arc::new(format!("{{\"instances\":[{}]}}", vec![ROW; 1000].join(",")));
    let stop = Arc::new(AtomicBool::new(false));
    let scored = Arc::new(AtomicU64::new(0));
    let first = Arc::new(tokio::sync::Notify::new());
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, batch, stop, scored, first) = (s.clone(), batch.clone(), stop.clone(), scored.clone(), first.clone());
        load.push(tokio::spawn(async move {
            let mut client = Client::connect(s.addr).await.unwrap();
            let headers = [("content-type", "application/json")];
            while !stop.load(Ordering::Relaxed) {
                let r = client.request("POST", PREDICT, &headers, batch.as_bytes()).await.unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                scored.fetch_add(1, Ordering::Relaxed);
                first.notify_one();
            }
        }));
    }
    tokio::time::timeout(WAIT, first.notified()).await.expect("a batch is scored");
    let mut health = Client::connect(s.addr).await.unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        assert_eq!(health.request("GET", "/v2/health/live", &[], b"").await.unwrap().status, 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await; // probes spread over a second of load
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        tokio::time::timeout(WAIT, task).await.expect("load stops").unwrap();
    }
    let batches = scored.load(Ordering::Relaxed);
    eprintln!("/v2/health/live: slowest of 50 probes {slowest:?} while {batches} 1,000-row batches were scored");
    assert!(batches >= 4, "{batches}");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
}
