//! Reading a request body into one buffer, under a size limit and the
//! request deadline, without letting a client pin hyper's buffers.
//!
//! hyper hands the body over as frames that are slices of the connection's
//! read buffer, and a frame keeps that whole buffer alive: while one is
//! held, hyper reads the next bytes into a fresh buffer (at least 8 KiB).
//! Collecting the frames until the body is complete (`BodyExt::collect`)
//! therefore cost 8 KiB per *read*: a client sending its body a byte at a
//! time pinned 8 KiB per byte (the slowloris case of `bench/hostile.sh`,
//! 200 such uploads, drove RSS to 50 MiB). [`read_body`] copies each
//! frame into one buffer as it arrives and lets it go, so a body costs its
//! own size however it is sent. The copy is cheap next to parsing the JSON.
//! (hyper still takes a fresh read buffer once per request on a keep-alive
//! connection: it reads ahead while the request's head, which shares the
//! old buffer, is still being answered.)

use super::error::ApiError;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body;

/// A request body the routes can read: hyper's `Incoming` on a connection,
/// or any in-memory body in tests.
pub trait RequestBody: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send {}
impl<B> RequestBody for B where B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send {}

/// Reads the body under the size limit (413 above it) and the request
/// deadline (408 after it).
pub async fn read_body<B>(limit: usize, body: B, deadline: tokio::time::Instant) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send,
{
    match tokio::time::timeout_at(deadline, gather(limit, body)).await {
        Err(_) => Err(ApiError::request_timeout()),
        Ok(result) => result,
    }
}

/// The first allocation for a body whose length is declared; a bigger
/// body grows the buffer as its bytes arrive (a client that declares 1 MiB
/// and sends nothing gets no 1 MiB buffer).
const FIRST_CAPACITY: usize = 64 * 1024;

/// The body's data frames, copied into one buffer.
async fn gather<B>(limit: usize, body: B) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>,
{
    let declared = body.size_hint().exact().unwrap_or(0);
    let mut out: Vec<u8> = Vec::with_capacity((declared.min(limit as u64) as usize).min(FIRST_CAPACITY));
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            ApiError::bad_request(format!("could not read the request body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else { continue }; // trailers
        if out.len() + data.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        out.extend_from_slice(&data);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;
    use hyper::StatusCode;
    use std::time::Duration;

    fn later() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    type Part = Result<Frame<Bytes>, std::io::Error>;

    fn frames(parts: Vec<Part>) -> StreamBody<futures::stream::Iter<std::vec::IntoIter<Part>>> {
        StreamBody::new(futures::stream::iter(parts))
    }

    fn data(s: &'static str) -> Part {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    #[tokio::test]
    async fn frames_are_joined_and_none_is_kept() {
        let first = Bytes::from(b"{\"a\":".to_vec());
        let parts = vec![
            Ok(Frame::data(first.clone())),
            data(""),
            data("1"),
            Ok(Frame::trailers(Default::default())),
            data("}"),
        ];
        let got = read_body(100, frames(parts), later()).await.unwrap();
        assert_eq!(&got[..], b"{\"a\":1}");
        assert!(first.is_unique(), "the frame (hyper's buffer) is let go once copied");
        let single = Bytes::from(b"{}".to_vec());
        assert_eq!(read_body(100, Full::new(single.clone()), later()).await.unwrap(), single);
        assert!(single.is_unique(), "a one-frame body is copied too");
        assert_eq!(read_body(100, frames(vec![]), later()).await.unwrap(), Bytes::new());
    }

    #[tokio::test]
    async fn over_the_limit_is_413_and_a_broken_body_400() {
        let err = read_body(6, frames(vec![data("{\"a\":"), data("1}")]), later()).await.unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(read_body(7, frames(vec![data("{\"a\":"), data("1}")]), later()).await.is_ok());
        let broken = frames(vec![data("{"), Err(std::io::Error::other("reset"))]);
        let err = read_body(100, broken, later()).await.unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_is_408_at_the_deadline() {
        let never = StreamBody::new(futures::stream::pending::<Part>());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let err = read_body(100, never, deadline).await.unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_TIMEOUT);
    }
}
