//! The ceiling of `bench/fast_path.sh`: what HTTP alone costs on this
//! machine. A minimal hyper 1 HTTP/1.1 server with keep-alive that reads the
//! whole request body and answers every request with the same small JSON
//! (`{"ok":true}`), on the same tokio runtime as `riskserve serve`
//! ([`riskserve::server::runtime`]) and with the same socket options
//! (`TCP_NODELAY`). riskserve's throughput divided by this one's is the
//! share of the HTTP stack's speed the model server keeps.
//!
//! Usage: `ceiling [PORT]` — listens on 127.0.0.1:PORT (default 0, any free
//! port) and prints `ceiling listening on 127.0.0.1:<port>` once bound. It
//! runs until killed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;

const ANSWER: &[u8] = br#"{"ok":true}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as a real server must; its content is not looked at.
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
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
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}
