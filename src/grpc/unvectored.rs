//! The gRPC listener's connections, without vectored writes. h2 copies a
//! DATA frame into its write buffer only up to a threshold and sends a
//! larger one as a separate buffer that must be written before the next
//! frame can be queued: 256 bytes on a socket that offers vectored writes,
//! 1,024 bytes on one that does not. A one-application ModelInfer answer
//! with the `reasons` output is about 330 bytes, so on a plain TCP stream
//! every such call took two writes (heads and data, then the trailers):
//! twice the syscalls and TCP segments of a call without reasons, 5 µs more
//! server CPU per call measured. Declining vectored writes makes h2 copy
//! answers up to 1 KiB, so a call's heads, data and trailers leave in one
//! write; larger answers (batches) are written in a few plain writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An I/O stream that reports no vectored-write support.
pub struct Unvectored<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for Unvectored<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Unvectored<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn passes_bytes_through_and_declines_vectored_writes() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = Unvectored(a);
        assert!(!a.is_write_vectored());
        a.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
