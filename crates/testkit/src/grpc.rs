//! A small gRPC client over one HTTP/2 connection (hyper's): unary calls by
//! full method name with the message already encoded, each bounded by a
//! timeout, and the status read from the trailers (or a trailers-only
//! answer). Calls on one [`GrpcClient`] may run at once (clone it): they are
//! streams of the same connection.

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;

/// A call that did not answer OK: its gRPC status code (`-1` when the
/// transport failed or the call timed out) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gRPC status {code}: {message}")]
pub struct GrpcError {
    pub code: i32,
    pub message: String,
}

impl GrpcError {
    fn transport(message: impl std::fmt::Display) -> GrpcError {
        GrpcError { code: -1, message: message.to_string() }
    }
}

/// One HTTP/2 connection to a gRPC server.
#[derive(Clone)]
pub struct GrpcClient {
    sender: http2::SendRequest<Full<Bytes>>,
    authority: String,
    timeout: Duration,
}

impl GrpcClient {
    /// Connects within `timeout`; every call is bounded by it too.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<GrpcClient, GrpcError> {
        let connect = async {
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(GrpcError::transport)?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.map_err(GrpcError::transport)?;
            tokio::spawn(connection);
            Ok(sender)
        };
        let sender =
            tokio::time::timeout(timeout, connect).await.map_err(|_| GrpcError::transport("connect timed out"))??;
        Ok(GrpcClient { sender, authority: addr.to_string(), timeout })
    }

    /// Calls `method` (`/package.Service/Method`) with an encoded message
    /// and `metadata`; the encoded answer, or its status.
    pub async fn unary(&self, method: &str, message: &[u8], metadata: &[(&str, &str)]) -> Result<Bytes, GrpcError> {
        let frame = length_prefixed(message);
        let mut request = hyper::Request::post(format!("http://{}{method}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in metadata {
            request = request.header(*k, *v);
        }
        let request = request.body(Full::new(Bytes::from(frame))).map_err(GrpcError::transport)?;
        let mut sender = self.sender.clone();
        let call = async move {
            sender.ready().await.map_err(GrpcError::transport)?;
            let response = sender.send_request(request).await.map_err(GrpcError::transport)?;
            let (parts, body) = response.into_parts();
            if let Some(status) = status_of(&parts.headers) {
                return Err(status);
            }
            let collected = body.collect().await.map_err(GrpcError::transport)?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let mut data = collected.to_bytes();
            match status_of(&trailers) {
                Some(status) => Err(status),
                None if trailers.contains_key("grpc-status") => {
                    if data.len() < 5 {
                        return Err(GrpcError::transport(format!("an answer of {} bytes", data.len())));
                    }
                    data.advance(1);
                    let n = data.get_u32() as usize;
                    Ok(data.slice(..n.min(data.len())))
                }
                None => Err(GrpcError::transport(format!("no grpc-status (HTTP {})", parts.status))),
            }
        };
        tokio::time::timeout(self.timeout, call).await.map_err(|_| GrpcError::transport("call timed out"))?
    }
}

/// A message as a gRPC body carries it: not compressed (`0`), its length
/// (4 bytes, big-endian), then the message.
pub fn length_prefixed(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// The status in `headers` if it is not OK (`None` for OK or absent).
fn status_of(headers: &hyper::HeaderMap) -> Option<GrpcError> {
    let code: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    (code != 0).then(|| GrpcError {
        code,
        message: headers.get("grpc-message").map(|m| percent_decoded(m.as_bytes())).unwrap_or_default(),
    })
}

/// `grpc-message` is percent-encoded.
fn percent_decoded(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
