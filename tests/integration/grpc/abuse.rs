//! HTTP/2 abuse of the gRPC listener while good clients call it and a new
//! model version is committed: a rapid-reset flood (CVE-2023-44487), more
//! streams than allowed, oversized metadata, a client that never grants
//! flow-control window, a slow sender. Each: no good call fails, the new
//! version is served (reloading goes on), and the abuse gets the answer
//! the server's limits promise. Abusive frames are written by hand
//! (`testkit::h2raw`); the good calls go through `testkit`'s client.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use testkit::h2raw::*;

fn infer_head(extra: &[(&str, &str)]) -> Vec<u8> {
    grpc_head(INFER, extra)
}

/// Opens a raw connection (the server's settings acknowledged).
async fn open(addr: SocketAddr) -> RawConnection {
    RawConnection::open(addr, &[]).await.expect("a raw HTTP/2 connection")
}

/// Reads until `until` holds or the server closes, within [`WAIT`].
async fn read_until(raw: &mut RawConnection, until: impl Fn(&Seen) -> bool) -> Seen {
    raw.read(WAIT, until).await.unwrap_or_else(|seen| panic!("nothing decisive within {WAIT:?}: {seen:?}"))
}

/// Good calls on their own connections until stopped: (ok, failed).
struct GoodTraffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl GoodTraffic {
    async fn start(addr: SocketAddr, clients: usize) -> GoodTraffic {
        let (stop, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let client = connect(addr).await;
            let (stop, ok) = (stop.clone(), ok.clone());
            tasks.push(tokio::spawn(async move {
                let request = infer_request(&one_row());
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match infer(&client, &request, &[]).await {
                        Ok(answer) if probabilities(&answer).len() == 1 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(answer) => failures.push(format!("a wrong answer: {answer:?}")),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                failures
            }));
        }
        GoodTraffic { stop, ok, tasks }
    }

    /// Waits until `n` more good calls have been answered.
    async fn answered(&self, n: u64) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        eventually("good calls are answered", || async { self.ok.load(Ordering::Relaxed) >= target }).await;
    }

    /// Stops; every good call succeeded, and there were some.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.unwrap());
        }
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} of {} good calls failed: {:?}",
            failures.len(),
            ok,
            &failures[..failures.len().min(5)]
        );
        assert!(ok > 0, "no good call was made");
        ok
    }
}

/// A server, good traffic on it, and a check that reloading goes on under
/// the abuse `abuse` performs.
async fn under_good_traffic<F, Fut>(abuse: F)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (s, addr) = grpc_server(|_| {}).await;
    let good = GoodTraffic::start(addr, 4).await;
    good.answered(20).await;
    abuse(addr).await;
    commit(&s.models, MODEL, 2, bundled_model());
    s.wait_serving(2).await;
    good.answered(20).await;
    let ok = good.finish().await;
    let client = connect(addr).await;
    assert_eq!(
        infer(&client, &infer_request(&one_row()), &[]).await.unwrap().model_version,
        "2",
        "after {ok} good calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_cut_off_with_goaway() {
    under_good_traffic(|addr| async move {
        let mut raw = open(addr).await;
        let head = infer_head(&[]);
        // Streams opened and cancelled at once, 50,000 of them, written
        // in batches without waiting for any answer.
        let mut batch = Vec::new();
        let mut sent = 0;
        for k in 0..50_000u32 {
            let id = 2 * k + 1;
            batch.extend_from_slice(&frame(HEADERS, END_HEADERS, id, &head));
            batch.extend_from_slice(&frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
            if batch.len() > 64 * 1024 {
                if raw.stream.write_all(&batch).await.is_err() {
                    break;
                }
                sent = k + 1;
                batch.clear();
            }
        }
        let seen = read_until(&mut raw, |seen| seen.goaway.is_some()).await;
        assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "the flood is cut off ({sent} streams written): {seen:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused() {
    under_good_traffic(|addr| async move {
        let mut raw = open(addr).await;
        let head = infer_head(&[]);
        let streams = riskserve::grpc::server::MAX_STREAMS + 72;
        // Each stream waits for its message, which never comes.
        for k in 0..streams {
            raw.frame(HEADERS, END_HEADERS, 2 * k + 1, &head).await;
        }
        let seen = read_until(&mut raw, |seen| seen.resets.len() >= 72 || seen.goaway.is_some()).await;
        let refused = seen.resets.iter().filter(|(_, code)| *code == REFUSED_STREAM).count();
        assert_eq!(refused, 72, "each stream over {} is refused: {seen:?}", riskserve::grpc::server::MAX_STREAMS);
        assert_eq!(seen.goaway, None, "the connection itself stays");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_metadata_is_refused_without_an_answer_from_the_service() {
    under_good_traffic(|addr| async move {
        let mut raw = open(addr).await;
        let big = "x".repeat(riskserve::grpc::server::MAX_HEADER_LIST_BYTES as usize * 4);
        let head = infer_head(&[("x-padding", &big)]);
        // In frames of at most 16 KiB: HEADERS, then CONTINUATIONs.
        let chunks: Vec<&[u8]> = head.chunks(16 * 1024).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() { END_HEADERS } else { 0 };
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            raw.frame(kind, last | if i == 0 { END_STREAM } else { 0 }, 1, chunk).await;
        }
        let seen =
            read_until(&mut raw, |seen| !seen.resets.is_empty() || !seen.headers.is_empty() || seen.goaway.is_some())
                .await;
        // h2 answers 431 (a HEADERS frame, no service call) or resets the stream.
        assert!(!seen.resets.is_empty() || seen.headers == [1] || seen.goaway.is_some(), "{seen:?}");
        // The same connection still serves a normal-sized call's head.
        if seen.goaway.is_none() && !seen.closed {
            raw.frame(HEADERS, END_HEADERS | END_STREAM, 3, &infer_head(&[])).await;
            let seen = read_until(&mut raw, |seen| seen.headers.contains(&3)).await;
            assert!(seen.headers.contains(&3), "{seen:?}");
        }
    })
    .await;
    let (s, addr) = grpc_server(|_| {}).await;
    let client = connect(addr).await;
    let padding = "x".repeat(riskserve::grpc::server::MAX_HEADER_LIST_BYTES as usize * 2);
    let e = infer(&client, &infer_request(&one_row()), &[("x-padding", &padding)]).await.unwrap_err();
    assert_ne!(e.code, 0, "{e}");
    let metrics = s.metrics().await;
    let calls = [("protocol", "grpc"), ("route", INFER)];
    assert_eq!(
        metric(&metrics, "riskserve_request_duration_seconds_count", &calls),
        Some(0.0),
        "never reached the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_grants_window_holds_only_its_own_streams() {
    under_good_traffic(|addr| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (h2, connection) =
            h2::client::Builder::new().initial_window_size(0).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut h2 = h2.ready().await.unwrap();
        let message = infer_request(&one_row()).encode_to_vec();
        let frame = testkit::grpc::length_prefixed(&message);
        let mut answers = Vec::new();
        for _ in 0..64 {
            let request = http::Request::post(format!("http://{addr}{INFER}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            h2 = h2.ready().await.unwrap();
            let (response, mut body) = h2.send_request(request, false).unwrap();
            body.send_data(frame.clone().into(), true).unwrap();
            answers.push(response);
        }
        // The heads come (HEADERS need no window); the messages cannot.
        for response in answers {
            let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
            assert_eq!(response.status(), 200);
            let mut body = response.into_body();
            let stuck = tokio::time::timeout(Duration::from_millis(200), body.data()).await;
            assert!(stuck.is_err(), "no data without window");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sender_is_answered_deadline_exceeded() {
    under_good_traffic(|addr| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut h2 = h2.ready().await.unwrap();
        let request = http::Request::post(format!("http://{addr}{INFER}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "500m")
            .body(())
            .unwrap();
        let (response, mut body) = h2.send_request(request, false).unwrap();
        // A byte at a time, and never the whole message.
        let sender = tokio::spawn(async move {
            for _ in 0..200 {
                if body.send_data(bytes::Bytes::from_static(&[0]), false).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
        assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED: {response:?}");
        sender.abort();
    })
    .await;
}
