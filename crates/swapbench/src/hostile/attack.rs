//! The network abuse cases: tokio tasks that misbehave towards the server
//! (huge or CPU-heavy batches, more connections than admission control
//! allows, slowloris, pipelining without reading, oversized headers, a
//! flood of idle connections) until a deadline, and tally what the server
//! did to them in an [`Observed`]. Every connect, write and read has a
//! timeout, and every loop ends at the deadline; only the loopback address
//! of a [`Target`] is ever contacted.

use crate::target::Target;
use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{Client, ClientError, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// What the abusive clients saw, by label (e.g. `answered 431`,
/// `closed by server`), plus the liveness probe of the big-batches case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    pub counts: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_max_ms: Option<f64>,
    pub live_probes: u64,
}

/// Where and until when an attack runs.
#[derive(Clone)]
pub struct Ctx {
    /// The server (its path is the predict path).
    pub target: Target,
    pub deadline: Instant,
    /// Bound on every connect, write and read.
    pub io_timeout: Duration,
    pub seen: Arc<Mutex<Observed>>,
}

impl Ctx {
    pub(super) fn count(&self, what: impl Into<String>) {
        self.count_n(what, 1);
    }

    pub(super) fn count_n(&self, what: impl Into<String>, n: u64) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen.counts.entry(what.into()).or_default() += n;
        }
    }

    pub(super) fn over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The I/O timeout, but never past the deadline (at least 1 ms).
    pub(super) fn bound(&self) -> Duration {
        self.io_timeout.min(self.deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(1))
    }

    async fn connect(&self) -> Option<TcpStream> {
        match tokio::time::timeout(self.io_timeout, TcpStream::connect(self.target.addr)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(_)) => {
                self.count("connect error");
                None
            }
            Err(_) => {
                self.count("connect timeout");
                None
            }
        }
    }

    /// A raw request head for `method path` with `extra` header lines.
    fn head(&self, method: &str, path: &str, extra: &str) -> String {
        format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}", self.target.host)
    }
}

/// `answered NNN` for the start of a response (or what else it was).
fn answer_label(bytes: &[u8]) -> String {
    let status = std::str::from_utf8(&bytes[..bytes.len().min(32)])
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1.1 ").or_else(|| t.strip_prefix("HTTP/1.0 ")))
        .and_then(|t| t.get(..3))
        .and_then(|t| t.parse::<u16>().ok());
    match status {
        Some(s) => format!("answered {s}"),
        None => "answered (not HTTP)".to_string(),
    }
}

/// `{"instances":[{},{},...]}` of at most `max_bytes` (and at least one item).
pub fn empty_items_batch(max_bytes: usize) -> Bytes {
    let (open, close) = (&b"{\"instances\":["[..], &b"]}"[..]);
    let items = (max_bytes.saturating_sub(open.len() + close.len()) + 1) / 3;
    let mut out = Vec::with_capacity(max_bytes);
    out.extend_from_slice(open);
    for i in 0..items.max(1) {
        out.extend_from_slice(if i == 0 { b"{}" } else { b",{}" });
    }
    out.extend_from_slice(close);
    Bytes::from(out)
}

/// `{"instances":[a, b, ...]}` of `rows` applications drawn from `bodies`.
pub fn batch_of(bodies: &[Bytes], rows: usize) -> Bytes {
    let mut out = b"{\"instances\":[".to_vec();
    for (i, body) in bodies.iter().cycle().take(rows).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(body);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// `conns` keep-alive clients, each posting `bodies` round-robin to the
/// predict path as fast as answers come, tallying statuses.
pub fn hammer(ctx: &Ctx, conns: usize, bodies: Arc<Vec<Bytes>>) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|id| {
            let (ctx, bodies) = (ctx.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut next = id % bodies.len().max(1);
                let mut conn: Option<Client> = None;
                while !ctx.over() {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match Client::connect(ctx.target.addr, &ctx.target.host, ctx.bound()).await {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                ctx.count("connect failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        },
                    };
                    let body = bodies[next].clone();
                    next = (next + 1) % bodies.len();
                    let sent = tokio::time::timeout(
                        ctx.bound(),
                        c.request(Method::POST, &ctx.target.path, &[("content-type", "application/json")], body),
                    )
                    .await;
                    match sent {
                        Ok(Ok(reply)) => {
                            ctx.count(format!("answered {}", reply.status));
                            if reply.closes_connection() {
                                conn = None;
                            }
                        }
                        Ok(Err(ClientError::TimedOut(_))) | Err(_) => {
                            if !ctx.over() {
                                ctx.count("timeout");
                            }
                            conn = None;
                        }
                        Ok(Err(_)) => {
                            ctx.count("connection error");
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect()
}

/// `GET /v2/health/live` on one keep-alive connection every `every`,
/// keeping the slowest answer (failures are counted).
pub fn live_probe(ctx: &Ctx, every: Duration) -> JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut conn: Option<Client> = None;
        while !ctx.over() {
            let started = Instant::now();
            if conn.is_none() {
                conn = Client::connect(ctx.target.addr, &ctx.target.host, ctx.io_timeout).await.ok();
            }
            let reply = match conn.as_mut() {
                Some(c) => c.request(Method::GET, "/v2/health/live", &[], Bytes::new()).await.ok(),
                None => None,
            };
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut seen) = ctx.seen.lock() {
                seen.live_probes += 1;
                seen.live_max_ms = Some(seen.live_max_ms.unwrap_or(0.0).max(ms));
            }
            if reply.as_ref().is_none_or(|r| r.status != 200) {
                ctx.count("live probe failed");
                conn = None;
            }
            tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
        }
    })
}

/// Slowloris: `conns` connections that send `head` one byte every `every`
/// (after sending `prefix` at once), reconnecting when the server closes.
/// Labels: `connected`, `answered NNN` (e.g. 408), `closed by server`.
pub fn drip(ctx: &Ctx, conns: usize, prefix: Bytes, data: Bytes, every: Duration) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|i| {
            let (ctx, prefix, data) = (ctx.clone(), prefix.clone(), data.clone());
            tokio::spawn(async move {
                // Spread the connects over the first `every`.
                tokio::time::sleep(every.mul_f64(i as f64 / conns.max(1) as f64)).await;
                while !ctx.over() {
                    let Some(mut s) = ctx.connect().await else {
                        tokio::time::sleep(every).await;
                        continue;
                    };
                    ctx.count("connected");
                    if !prefix.is_empty()
                        && !matches!(tokio::time::timeout(ctx.bound(), s.write_all(&prefix)).await, Ok(Ok(())))
                    {
                        ctx.count("closed by server");
                        continue;
                    }
                    let mut at = 0;
                    loop {
                        tokio::time::sleep(every).await;
                        if ctx.over() {
                            return;
                        }
                        let mut buf = [0u8; 256];
                        match s.try_read(&mut buf) {
                            Ok(0) => ctx.count("closed by server"),
                            Ok(n) => ctx.count(answer_label(&buf[..n])),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                let byte = &data[at % data.len().max(1)..][..1.min(data.len())];
                                if matches!(tokio::time::timeout(ctx.bound(), s.write_all(byte)).await, Ok(Ok(()))) {
                                    at += 1;
                                    continue;
                                }
                                ctx.count("closed by server");
                            }
                            Err(_) => ctx.count("closed by server"),
                        }
                        break;
                    }
                }
            })
        })
        .collect()
}

/// `conns` connections that each write up to `requests` pipelined copies of
/// `request` (in chunks) and never read a response, then hold the
/// connection until the deadline. Labels: `requests written`, `writes
/// blocked` (the server stopped reading), `closed by server`.
pub fn pipeline_no_read(ctx: &Ctx, conns: usize, request: Bytes, requests: usize) -> Vec<JoinHandle<()>> {
    const PER_CHUNK: usize = 50;
    let chunk = Bytes::from(request.repeat(PER_CHUNK));
    (0..conns)
        .map(|_| {
            let (ctx, chunk) = (ctx.clone(), chunk.clone());
            tokio::spawn(async move {
                let Some(mut s) = ctx.connect().await else { return };
                for _ in 0..requests.div_ceil(PER_CHUNK) {
                    if ctx.over() {
                        break;
                    }
                    match tokio::time::timeout(ctx.bound(), s.write_all(&chunk)).await {
                        Ok(Ok(())) => ctx.count_n("requests written", PER_CHUNK as u64),
                        Ok(Err(_)) => {
                            ctx.count("closed by server");
                            return;
                        }
                        Err(_) => {
                            if !ctx.over() {
                                ctx.count("writes blocked");
                            }
                            break;
                        }
                    }
                }
                // Hold it, unread, to the end.
                tokio::time::sleep_until(ctx.deadline.into()).await;
                drop(s);
            })
        })
        .collect()
}

/// `conns` loops of: connect, send `request` (oversized headers), read the
/// start of the answer. Labels: `answered NNN`, `closed by server`, `timeout`.
pub fn one_shot_requests(ctx: &Ctx, conns: usize, request: Bytes) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let (ctx, request) = (ctx.clone(), request.clone());
            tokio::spawn(async move {
                while !ctx.over() {
                    let Some(mut s) = ctx.connect().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // The server may answer and close before reading it all.
                    let _ = tokio::time::timeout(ctx.bound(), s.write_all(&request)).await;
                    let mut buf = [0u8; 256];
                    match tokio::time::timeout(ctx.bound(), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => ctx.count("closed by server"),
                        Ok(Ok(n)) => ctx.count(answer_label(&buf[..n])),
                        Err(_) if ctx.over() => {}
                        Err(_) => ctx.count("timeout"),
                    }
                }
            })
        })
        .collect()
}

/// Opens `conns` connections and holds them idle to the deadline. Labels:
/// `opened`, `held to the end`, `closed by server`, `answered NNN`.
pub fn idle_flood(ctx: &Ctx, conns: usize) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Some(mut s) = ctx.connect().await else { return };
                ctx.count("opened");
                let mut buf = [0u8; 256];
                let left = ctx.deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, s.read(&mut buf)).await {
                    Err(_) => ctx.count("held to the end"),
                    Ok(Ok(0)) | Ok(Err(_)) => ctx.count("closed by server"),
                    Ok(Ok(n)) => ctx.count(answer_label(&buf[..n])),
                }
            })
        })
        .collect()
}

/// The slowloris request heads: headers that never end (for one byte at a
/// time), and a complete head announcing a body (sent at once; the body then
/// drips).
pub fn slowloris_parts(ctx: &Ctx) -> (Bytes, Bytes) {
    let endless = ctx.head("POST", &ctx.target.path, "content-type: application/json\r\nx-slow: ") + &"a".repeat(8192);
    let body_head =
        ctx.head("POST", &ctx.target.path, "content-type: application/json\r\ncontent-length: 100000\r\n\r\n");
    (Bytes::from(endless), Bytes::from(body_head))
}

/// One pipelined predict request with `body`.
pub fn predict_request(ctx: &Ctx, body: &[u8]) -> Bytes {
    let head = ctx.head(
        "POST",
        &ctx.target.path,
        &format!("content-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len()),
    );
    Bytes::from([head.as_bytes(), body].concat())
}

/// `GET /v2/health/live` with at least `total` bytes of extra headers (lines of just over 1 KiB).
pub fn big_headers_request(ctx: &Ctx, total: usize) -> Bytes {
    let mut extra = String::with_capacity(total + 64);
    for i in 0..total.div_ceil(1024) {
        extra.push_str(&format!("x-big-{i:03}: {}\r\n", "b".repeat(1013)));
    }
    extra.push_str("\r\n");
    Bytes::from(ctx.head("GET", "/v2/health/live", &extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_requests() {
        let b = empty_items_batch(1024 * 1024);
        assert!(b.len() <= 1024 * 1024 && b.len() > 1024 * 1024 - 4, "{}", b.len());
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["instances"].as_array().unwrap().len(), 349_520);
        assert_eq!(&empty_items_batch(0)[..], b"{\"instances\":[{}]}");

        let rows = [Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"a\":2}")];
        assert_eq!(&batch_of(&rows, 3)[..], b"{\"instances\":[{\"a\":1},{\"a\":2},{\"a\":1}]}");

        assert_eq!(answer_label(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), "answered 431");
        assert_eq!(answer_label(b"junk"), "answered (not HTTP)");
    }

    #[test]
    fn raw_requests_are_well_formed() {
        let ctx = Ctx {
            target: Target::parse("http://127.0.0.1:9/v1/models/m/predict").unwrap(),
            deadline: Instant::now(),
            io_timeout: Duration::from_secs(1),
            seen: Arc::default(),
        };
        let r = predict_request(&ctx, b"{}");
        assert_eq!(
            &r[..],
            b"POST /v1/models/m/predict HTTP/1.1\r\nHost: 127.0.0.1:9\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        let big = big_headers_request(&ctx, 64 * 1024);
        assert!(big.len() > 64 * 1024 && big.ends_with(b"\r\n\r\n"));
        let (endless, body_head) = slowloris_parts(&ctx);
        assert!(!endless.windows(4).any(|w| w == b"\r\n\r\n"));
        assert!(body_head.ends_with(b"content-length: 100000\r\n\r\n"));
        ctx.count("x");
        ctx.count_n("x", 2);
        assert_eq!(ctx.seen.lock().unwrap().counts["x"], 3);
    }

    /// A loopback server that, per connection, reads `read_first` bytes (0:
    /// none), then answers 431 and closes, or holds the connection (None).
    async fn server(read_first: usize, answer: Option<&'static [u8]>) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::parse(&format!("http://{}/p", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; read_first];
                    let _ = s.read_exact(&mut buf).await;
                    match answer {
                        Some(a) => drop(s.write_all(a).await),
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        target
    }

    fn ctx_for(target: Target, ms: u64) -> Ctx {
        Ctx {
            target,
            deadline: Instant::now() + Duration::from_millis(ms),
            io_timeout: Duration::from_secs(5),
            seen: Arc::default(),
        }
    }

    async fn finish(tasks: Vec<JoinHandle<()>>, ctx: &Ctx) -> BTreeMap<String, u64> {
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("ends after its deadline").unwrap();
        }
        ctx.seen.lock().unwrap().counts.clone()
    }

    #[tokio::test]
    async fn attacks_tally_what_the_server_does_and_end_at_the_deadline() {
        let answer_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\r\n";
        let ctx = ctx_for(server(16, Some(answer_431)).await, 300);
        let counts = finish(one_shot_requests(&ctx, 2, big_headers_request(&ctx, 4096)), &ctx).await;
        assert!(counts.get("answered 431").is_some_and(|n| *n > 0), "{counts:?}");
        assert!(!counts.contains_key("timeout"), "{counts:?}");

        let ctx = ctx_for(server(0, None).await, 300);
        let counts = finish(idle_flood(&ctx, 5), &ctx).await;
        assert_eq!(counts, BTreeMap::from([("held to the end".into(), 5), ("opened".into(), 5)]));

        // Closes after 3 dripped bytes: counted, and the slowloris reconnects.
        let ctx = ctx_for(server(3, Some(b"")).await, 600);
        let (endless, _) = slowloris_parts(&ctx);
        let counts = finish(drip(&ctx, 1, Bytes::new(), endless, Duration::from_millis(10)), &ctx).await;
        assert!(counts.get("closed by server").is_some_and(|n| *n >= 2), "{counts:?}");
        assert!(counts["connected"] >= 2, "{counts:?}");
    }
}
