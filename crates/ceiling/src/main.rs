//! The ceilings of `bench/fast_path.sh`: what a protocol alone costs on this
//! machine, on the same tokio runtime as `riskserve serve`
//! ([`riskserve::server::runtime`]) and with the same socket options
//! (`TCP_NODELAY`).
//!
//! - HTTP/1.1 (default): a minimal hyper 1 server with keep-alive that reads
//!   the whole request body and answers every request with the same small
//!   JSON (`{"ok":true}`). riskserve's throughput divided by this one's is
//!   the share of the HTTP stack's speed the model server keeps.
//! - gRPC (`--grpc`): hyper 1's HTTP/2 server, as riskserve's gRPC listener
//!   uses it, that reads the whole request body and answers every call with
//!   the same small message (as long as riskserve's ModelInfer answer) and
//!   the trailers `grpc-status: 0`, as a unary gRPC call is answered. No
//!   protobuf is decoded: what HTTP/2 and gRPC's framing alone cost.
//!
//! Usage: `ceiling [--grpc] [PORT]` — listens on 127.0.0.1:PORT (default 0,
//! any free port) and prints `ceiling listening on 127.0.0.1:<port>` once
//! bound. It runs until killed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::Write;

const ANSWER: &[u8] = br#"{"ok":true}"#;

/// A gRPC message frame (uncompressed, 80 bytes of message): about the
/// size of riskserve's one-row ModelInfer answer.
const GRPC_ANSWER: [u8; 85] = {
    let mut frame = [0u8; 85];
    frame[4] = 80;
    frame
};

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as a real server must; its content is not looked at.
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

type GrpcBody =
    http_body_util::combinators::WithTrailers<Full<Bytes>, std::future::Ready<Option<Result<HeaderMap, Infallible>>>>;

async fn answer_grpc(req: Request<Incoming>) -> Result<Response<GrpcBody>, Infallible> {
    let _ = req.into_body().collect().await;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from_static(&GRPC_ANSWER)).with_trailers(std::future::ready(Some(Ok(trailers))));
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let grpc = args.first().is_some_and(|a| a == "--grpc");
    if grpc {
        args.remove(0);
    }
    let port: u16 = match args.first() {
        None => 0,
        Some(p) => p.parse().map_err(|_| std::io::Error::other(format!("not a port: {p}")))?,
    };
    riskserve::server::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("ceiling listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let _ = if grpc {
                    http2::Builder::new(TokioExecutor::new()).serve_connection(io, service_fn(answer_grpc)).await
                } else {
                    http1::Builder::new().keep_alive(true).serve_connection(io, service_fn(answer)).await
                };
            });
        }
    })
}
