//! The HTTP/2 abuse cases against riskserve's gRPC listener
//! (`--grpc-listen`), frame by frame (`testkit::h2raw`): a rapid-reset
//! flood (CVE-2023-44487), more streams than allowed, oversized metadata, a
//! client that never grants flow-control window, a slow sender. Each task
//! loops until the case's deadline and tallies what the server did in the
//! case's [`Observed`] (e.g. `goaway ENHANCE_YOUR_CALM`, `refused streams`).

use super::attack::Ctx;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::h2raw::*;
use tokio::task::JoinHandle;

const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
const DATA: u8 = 0x0;

/// Streams opened past the server's limit by `too_many_streams`.
const EXTRA_STREAMS: u32 = 72;

/// The label of an HTTP/2 error code.
fn code_label(code: u32) -> String {
    match code {
        0x0 => "NO_ERROR".into(),
        0x1 => "PROTOCOL_ERROR".into(),
        0x7 => "REFUSED_STREAM".into(),
        0x8 => "CANCEL".into(),
        0xb => "ENHANCE_YOUR_CALM".into(),
        other => format!("0x{other:x}"),
    }
}

/// A gRPC message frame (`0`, length, message) in one DATA frame.
fn data_frame(stream: u32, message: &[u8], end: bool) -> Vec<u8> {
    frame(DATA, if end { END_STREAM } else { 0 }, stream, &testkit::grpc::length_prefixed(message))
}

impl Ctx {
    async fn open_raw(&self, addr: SocketAddr, settings: &[(u16, u32)]) -> Option<RawConnection> {
        match tokio::time::timeout(self.bound(), RawConnection::open(addr, settings)).await {
            Ok(Ok(raw)) => Some(raw),
            _ => {
                self.count("connect failed");
                None
            }
        }
    }

    /// Reads what the server sends until `until` or the case ends.
    async fn watch(&self, raw: &mut RawConnection, until: impl Fn(&Seen) -> bool) -> Seen {
        let left = self.deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(1));
        let seen = match raw.read(left, until).await {
            Ok(seen) | Err(seen) => seen,
        };
        if let Some(code) = seen.goaway {
            self.count(format!("goaway {}", code_label(code)));
        }
        for (_, code) in &seen.resets {
            self.count(format!("reset {}", code_label(*code)));
        }
        if seen.closed {
            self.count("closed by server");
        }
        seen
    }
}

/// Each connection opens and cancels streams as fast as it can write,
/// until the server cuts it off; then another.
pub fn rapid_reset(ctx: &Ctx, addr: SocketAddr, conns: usize) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let head = grpc_head(INFER, &[]);
                while !ctx.over() {
                    let Some(mut raw) = ctx.open_raw(addr, &[]).await else { continue };
                    let mut batch = Vec::with_capacity(96 * 1024);
                    let mut streams = 0u64;
                    for k in 0..100_000u32 {
                        let id = 2 * k + 1;
                        batch.extend_from_slice(&frame(HEADERS, END_HEADERS, id, &head));
                        batch.extend_from_slice(&frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
                        if batch.len() >= 64 * 1024 {
                            let write = tokio::io::AsyncWriteExt::write_all(&mut raw.stream, &batch);
                            if !matches!(tokio::time::timeout(ctx.bound(), write).await, Ok(Ok(()))) || ctx.over() {
                                break;
                            }
                            streams = u64::from(k) + 1;
                            batch.clear();
                        }
                    }
                    ctx.count_n("stream open+reset pairs written", streams);
                    let seen = ctx.watch(&mut raw, |seen| seen.goaway.is_some()).await;
                    if seen.goaway.is_none() && !seen.closed {
                        ctx.count("flood not cut off");
                    }
                }
            })
        })
        .collect()
}

/// Each connection opens the server's limit of streams and more, each
/// waiting for a message that never comes, and holds them.
pub fn too_many_streams(ctx: &Ctx, addr: SocketAddr, conns: usize, limit: u32) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Some(mut raw) = ctx.open_raw(addr, &[]).await else { return };
                let head = grpc_head(INFER, &[]);
                for k in 0..limit + EXTRA_STREAMS {
                    raw.frame(HEADERS, END_HEADERS, 2 * k + 1, &head).await;
                }
                let seen = ctx.watch(&mut raw, |seen| seen.goaway.is_some()).await;
                let refused = seen.resets.iter().filter(|(_, c)| *c == REFUSED_STREAM).count() as u64;
                if refused < u64::from(EXTRA_STREAMS) {
                    ctx.count("streams over the limit not refused");
                }
            })
        })
        .collect()
}

/// Calls with a header list four times the server's limit, over and over.
pub fn big_metadata(ctx: &Ctx, addr: SocketAddr, conns: usize, limit: u32) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let padding = "x".repeat(limit as usize * 4);
                let head = grpc_head(INFER, &[("x-padding", &padding)]);
                while !ctx.over() {
                    let Some(mut raw) = ctx.open_raw(addr, &[]).await else { continue };
                    let chunks: Vec<&[u8]> = head.chunks(16 * 1024).collect();
                    for (i, chunk) in chunks.iter().enumerate() {
                        let flags =
                            if i + 1 == chunks.len() { END_HEADERS } else { 0 } | if i == 0 { END_STREAM } else { 0 };
                        raw.frame(if i == 0 { HEADERS } else { CONTINUATION }, flags, 1, chunk).await;
                    }
                    let seen = ctx
                        .watch(&mut raw, |s| !s.resets.is_empty() || !s.headers.is_empty() || s.goaway.is_some())
                        .await;
                    if !seen.headers.is_empty() {
                        ctx.count("answered (a header block, no service call)");
                    }
                }
            })
        })
        .collect()
}

/// Connections that announce a flow-control window of 0 and never grant
/// more, each with `streams` complete calls whose answers cannot be sent.
pub fn no_window(ctx: &Ctx, addr: SocketAddr, conns: usize, streams: u32, message: Bytes) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let (ctx, message) = (ctx.clone(), message.clone());
            tokio::spawn(async move {
                let Some(mut raw) = ctx.open_raw(addr, &[(INITIAL_WINDOW_SIZE, 0)]).await else { return };
                let head = grpc_head(INFER, &[]);
                for k in 0..streams {
                    raw.frame(HEADERS, END_HEADERS, 2 * k + 1, &head).await;
                    let data = data_frame(2 * k + 1, &message, true);
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut raw.stream, &data).await;
                }
                let seen = ctx.watch(&mut raw, |seen| seen.goaway.is_some()).await;
                ctx.count_n("answer heads sent (data held back)", seen.headers.len() as u64);
            })
        })
        .collect()
}

/// Calls whose message arrives a byte every `every`, never completing.
pub fn slow_sender(ctx: &Ctx, addr: SocketAddr, conns: usize, every: Duration) -> Vec<JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                while !ctx.over() {
                    let Some(mut raw) = ctx.open_raw(addr, &[]).await else { continue };
                    raw.frame(HEADERS, END_HEADERS, 1, &grpc_head(INFER, &[("grpc-timeout", "1S")])).await;
                    raw.frame(DATA, 0, 1, &[0, 0, 0, 1, 0]).await;
                    let mut answered = false;
                    while !ctx.over() && !answered {
                        raw.frame(DATA, 0, 1, &[0]).await;
                        match raw.read(every, |seen| !seen.headers.is_empty() || seen.closed).await {
                            Ok(seen) => {
                                answered = true;
                                ctx.count(if seen.closed { "closed by server" } else { "answered (deadline)" });
                            }
                            Err(_) => continue,
                        }
                    }
                }
            })
        })
        .collect()
}
