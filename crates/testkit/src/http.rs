//! A small HTTP/1.1 client: one keep-alive connection (hyper's low-level
//! `client::conn::http1`), a timeout on every step (connect, handshake,
//! waiting for the connection, each exchange), and fully read replies.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::header::HOST;
use hyper::{HeaderMap, Request};

/// Re-exported so callers need no hyper dependency of their own.
pub use hyper::Method;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `connect`, `handshake`, `ready` or `request` took longer than the timeout.
    #[error("{0} timed out")]
    TimedOut(&'static str),
    #[error("{0}")]
    Connect(#[from] std::io::Error),
    #[error("{0}")]
    Handshake(hyper::Error),
    /// The connection was found closed while idle (before a request was
    /// sent on it): the server closed it without saying so.
    #[error("{0}")]
    Closed(hyper::Error),
    /// The connection failed while a request was in flight.
    #[error("{0}")]
    Request(hyper::Error),
    /// The method, path or a header is not valid HTTP.
    #[error("{0}")]
    Build(#[from] hyper::http::Error),
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics (with the body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error` message of a JSON error body ("" if none).
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }

    /// The server announced it closes the connection after this response.
    pub fn closes_connection(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    timeout: Duration,
}

impl Client {
    /// Connects to `addr`, sending `host` as the `Host` header; every later
    /// step is bounded by `timeout`.
    pub async fn connect(addr: SocketAddr, host: &str, timeout: Duration) -> Result<Client, ClientError> {
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::TimedOut("connect"))??;
        stream.set_nodelay(true)?;
        let (sender, conn) = tokio::time::timeout(timeout, handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| ClientError::TimedOut("handshake"))?
            .map_err(ClientError::Handshake)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client { sender, host: host.to_string(), timeout })
    }

    /// Waits until the connection can take a request. An error here means
    /// the (idle) connection was closed under us.
    pub async fn ready(&mut self) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, self.sender.ready())
            .await
            .map_err(|_| ClientError::TimedOut("ready"))?
            .map_err(ClientError::Closed)
    }

    /// Sends one request on a ready connection (see [`Client::ready`]) and
    /// reads the whole response, within the timeout.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder().method(method).uri(path).header(HOST, self.host.as_str());
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Full::new(body))?;
        let exchange = async {
            let response = self.sender.send_request(request).await.map_err(ClientError::Request)?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(ClientError::Request)?.to_bytes();
            Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| ClientError::TimedOut("request"))?
    }

    /// [`Client::ready`], then [`Client::send`].
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        self.ready().await?;
        self.send(method, path, headers, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection server that answers each request with `answer`
    /// (after reading its head), `answers` times, then closes.
    async fn server(answer: &'static str, answers: usize) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            for _ in 0..answers {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8];
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn keep_alive_requests_and_reply_helpers() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{\"error\":\"no\"}";
        let addr = server(ok, 2).await;
        let mut client = Client::connect(addr, "example", Duration::from_secs(20)).await.unwrap();
        for _ in 0..2 {
            let reply = client.request(Method::GET, "/", &[("x-a", "b")], Bytes::new()).await.unwrap();
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(reply.error(), "no");
            assert!(!reply.closes_connection());
        }
        // The server closed the connection after two answers.
        assert!(client.request(Method::GET, "/", &[], Bytes::new()).await.is_err());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = Client::connect(addr, "x", Duration::from_millis(200)).await.unwrap();
        let err = client.request(Method::GET, "/", &[], Bytes::new()).await.unwrap_err();
        assert!(matches!(err, ClientError::TimedOut("request")), "{err}");
        assert_eq!(err.to_string(), "request timed out");
        drop(listener);
    }
}
