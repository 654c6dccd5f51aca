//! Graceful shutdown: a request in flight when shutdown starts is answered,
//! both in-process and for the real binary on SIGTERM (exit 0).

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// Sends headers and the first half of a predict body, leaving the request
/// in flight.
fn start_slow_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST {PREDICT} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        ROW.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&ROW.as_bytes()[..ROW.len() / 2]).unwrap();
    stream
}

fn finish_slow_request(mut stream: TcpStream) -> String {
    stream.write_all(&ROW.as_bytes()[ROW.len() / 2..]).unwrap();
    let mut response = Vec::new();
    // The server closes the connection after answering during shutdown.
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_during_graceful_shutdown() {
    let s = TestServer::start().await;
    let addr = s.addr;
    let stream = tokio::task::spawn_blocking(move || start_slow_request(addr)).await.unwrap();
    // Let the server read the headers so the request is really in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(s.server.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!shutdown.is_finished(), "shutdown must wait for the in-flight request");
    let response = tokio::task::spawn_blocking(move || finish_slow_request(stream)).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"model_version\":1"), "{response}");
    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown completes").unwrap();
    assert!(TcpStream::connect(addr).is_err(), "listener closed after shutdown");
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    commit(&models, MODEL, 1, bundled_model());
    let Spawned { mut child, addr, mut stderr, .. } = spawn_binary(&models, &[], &[]);
    let stream = start_slow_request(addr);
    std::thread::sleep(Duration::from_millis(100));
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(100));
    let response = finish_slow_request(stream);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Drain the rest of the log while waiting for exit (bounded).
    let logs = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let logs = logs.join().unwrap();
    assert!(logs.contains("SIGTERM received") && logs.contains("all connections drained"), "{logs}");
}
