//! HTTP/2 written frame by frame, for abuse tests: a connection that sends
//! whatever frames it is told (HEADERS with literal HPACK fields,
//! CONTINUATION, RST_STREAM, SETTINGS) and tallies what the server sends
//! back (HEADERS, RST_STREAM codes, GOAWAY), without an HTTP/2 library's
//! manners (one that honours the server's stream limit could not exceed it).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// SETTINGS_INITIAL_WINDOW_SIZE.
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// One HTTP/2 connection written frame by frame.
pub struct RawConnection {
    pub stream: TcpStream,
}

/// What the server sent on a raw connection.
#[derive(Debug, Default)]
pub struct Seen {
    /// Streams the server sent a HEADERS frame on.
    pub headers: Vec<u32>,
    /// (stream, error code) of each RST_STREAM.
    pub resets: Vec<(u32, u32)>,
    /// The GOAWAY error code, if one came.
    pub goaway: Option<u32>,
    /// The server closed the connection.
    pub closed: bool,
}

impl RawConnection {
    /// Connects, sends the preface and `settings`, and acknowledges the
    /// server's settings.
    pub async fn open(addr: SocketAddr, settings: &[(u16, u32)]) -> std::io::Result<RawConnection> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let payload: Vec<u8> =
            settings.iter().flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()].concat()).collect();
        let mut raw = RawConnection { stream };
        raw.frame(SETTINGS, 0, 0, &payload).await;
        raw.frame(SETTINGS, 0x1, 0, &[]).await;
        Ok(raw)
    }

    /// Writes one frame (a write error is ignored: `read` sees the close).
    pub async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let _ = self.stream.write_all(&frame(kind, flags, stream, payload)).await;
    }

    /// Reads frames until the connection closes, `until` holds, or
    /// `timeout` passes (then `Err` with what was seen).
    pub async fn read(&mut self, timeout: Duration, until: impl Fn(&Seen) -> bool) -> Result<Seen, Seen> {
        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while !until(&seen) {
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(seen),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    seen.closed = true;
                    return Ok(seen);
                }
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, id) = (buf[3], u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff);
                let payload = &buf[9..9 + len];
                match kind {
                    HEADERS => seen.headers.push(id),
                    RST_STREAM => seen.resets.push((id, u32::from_be_bytes(payload[..4].try_into().unwrap()))),
                    GOAWAY => seen.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                    _ => {}
                }
                buf.drain(..9 + len);
            }
        }
        Ok(seen)
    }
}

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of literal fields (HPACK "without indexing", no Huffman).
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        for text in [name.as_bytes(), value.as_bytes()] {
            hpack_length(text.len(), &mut out);
            out.extend_from_slice(text);
        }
    }
    out
}

/// An HPACK integer with a 7-bit prefix (the string-length form, H = 0).
fn hpack_length(mut n: usize, out: &mut Vec<u8>) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// The request head of a gRPC call to `path`, with `extra` metadata.
pub fn grpc_head(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "riskserve"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    fields.extend_from_slice(extra);
    header_block(&fields)
}
