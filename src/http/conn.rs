//! One connection's socket, guarded by its timeouts, and the clock that
//! tells a request when it started.
//!
//! [`GuardedIo`] wraps the socket hyper reads and writes:
//!
//! - **Request deadline, headers included.** The first byte read while the
//!   connection is idle starts the request's clock ([`ConnClock`]). If the
//!   headers are still incomplete at `request_timeout`, the read fails and the
//!   connection closes. Once hyper hands the request over, the handler gets
//!   the same start ([`Arrival`]) and reads the body and scores under the
//!   same deadline, so headers and body together get one `request_timeout`,
//!   not one each. (hyper's own `header_read_timeout` is off: its clock
//!   starts when the connection becomes idle, not when the request starts.)
//! - **Idle timeout.** An idle keep-alive connection that sends nothing for
//!   `idle_timeout` reads end-of-file, which hyper takes as a clean close.
//! - **Write timeout.** A write that stays pending for `write_timeout` (the
//!   client does not read its responses, say it pipelines requests and never
//!   reads) fails, and the connection closes instead of pinning buffers.
//!
//! Each timeout is counted in `riskserve_connection_timeouts_total{kind}`.

use prometheus::IntCounter;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When the request being handled started: its first byte, or when hyper
/// handed it over if its bytes were already buffered (pipelined). Put in the
/// request's extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the next request, since this instant.
    Idle(Instant),
    /// A request's first bytes arrived at this instant; its headers are not complete.
    Receiving(Instant),
    /// The handler has the request (it enforces the deadline itself).
    Handling,
}

/// A connection's phase, shared by its socket wrapper and its handler: one
/// atomic word (no lock on the per-read path), the phase in the top two bits
/// and its instant as nanoseconds since the clock was made in the rest.
#[derive(Debug)]
pub struct ConnClock {
    base: Instant,
    word: AtomicU64,
}

const TAG_SHIFT: u32 = 62;
const NANOS: u64 = (1 << TAG_SHIFT) - 1;
const IDLE: u64 = 0;
const RECEIVING: u64 = 1;
const HANDLING: u64 = 2;

impl ConnClock {
    pub fn new() -> Arc<ConnClock> {
        let base = Instant::now();
        Arc::new(ConnClock { base, word: AtomicU64::new(IDLE << TAG_SHIFT) })
    }

    fn encode(&self, tag: u64, at: Instant) -> u64 {
        // 2^62 ns is 146 years: a connection never lives that long.
        let nanos = u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(NANOS);
        (tag << TAG_SHIFT) | nanos.min(NANOS)
    }

    fn set(&self, tag: u64, at: Instant) {
        self.word.store(self.encode(tag, at), Ordering::Release);
    }

    /// hyper hands a request to the handler: when did it start?
    pub fn begin_request(&self) -> Arrival {
        let start = match self.phase() {
            Phase::Receiving(since) => since,
            Phase::Idle(_) | Phase::Handling => Instant::now(),
        };
        self.word.store(HANDLING << TAG_SHIFT, Ordering::Release);
        Arrival(start)
    }

    /// The handler has answered: the connection is idle again.
    pub fn end_request(&self) {
        self.set(IDLE, Instant::now());
    }

    fn bytes_arrived(&self) {
        if self.word.load(Ordering::Acquire) >> TAG_SHIFT == IDLE {
            self.set(RECEIVING, Instant::now());
        }
    }

    fn phase(&self) -> Phase {
        let word = self.word.load(Ordering::Acquire);
        let at = self.base + Duration::from_nanos(word & NANOS);
        match word >> TAG_SHIFT {
            IDLE => Phase::Idle(at),
            RECEIVING => Phase::Receiving(at),
            _ => Phase::Handling,
        }
    }
}

/// The timeouts a connection enforces.
#[derive(Debug, Clone, Copy)]
pub struct IoLimits {
    pub idle: Duration,
    pub request: Duration,
    pub write: Duration,
}

/// `riskserve_connection_timeouts_total{kind}`, resolved once.
#[derive(Clone)]
pub struct TimeoutCounters {
    pub idle: IntCounter,
    pub request: IntCounter,
    pub write: IntCounter,
}

/// A re-armable timer, armed lazily: a deadline that moves later (the idle
/// deadline does, with every request a busy connection serves) leaves the
/// timer where it is until it fires; only then is it moved to the deadline
/// that holds by then. So a busy connection polls a registered timer per
/// request instead of moving it in tokio's timer wheel (a reset per request,
/// and the wheel's lock whenever the deadline moved earlier), at the price
/// of one early wake-up per idle timeout.
#[derive(Default)]
struct Timer {
    /// Made at the first deadline asked about; its own deadline is never
    /// after the one last asked about.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// Whether `at` has passed; if not, the task is woken no later than
    /// `at` (perhaps earlier, to ask again).
    fn expired(&mut self, at: Instant, cx: &mut Context<'_>) -> bool {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if at < sleep.deadline() {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            slot @ None => slot.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        while sleep.as_mut().poll(cx).is_ready() {
            if sleep.deadline() >= at {
                return true;
            }
            // It fired for an earlier deadline, since moved later.
            sleep.as_mut().reset(at);
        }
        false
    }
}

/// A socket with the connection's timeouts; see the module doc.
pub struct GuardedIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
    limits: IoLimits,
    counters: TimeoutCounters,
    read_timer: Timer,
    write_timer: Timer,
    /// When the current run of pending writes began.
    write_stalled_since: Option<Instant>,
    timed_out: bool,
}

impl<T> GuardedIo<T> {
    pub fn new(inner: T, clock: Arc<ConnClock>, limits: IoLimits, counters: TimeoutCounters) -> GuardedIo<T> {
        GuardedIo {
            inner,
            clock,
            limits,
            counters,
            read_timer: Timer::default(),
            write_timer: Timer::default(),
            write_stalled_since: None,
            timed_out: false,
        }
    }

    /// Counts a timeout once per connection.
    fn count(&mut self, counter: fn(&TimeoutCounters) -> &IntCounter) {
        if !self.timed_out {
            self.timed_out = true;
            counter(&self.counters).inc();
        }
    }

    /// A read is pending: has the idle or header deadline passed?
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.clock.phase() {
            Phase::Handling => {
                // hyper reads while the handler runs (to see a close), and
                // after answering it does not read again until the socket
                // wakes it. So the timer must already be set for the idle
                // deadline to come, which is at least `idle` from now; the
                // handler keeps the request's own deadline.
                self.read_timer.expired(Instant::now() + self.limits.idle, cx);
                Poll::Pending
            }
            Phase::Idle(since) => {
                if !self.read_timer.expired(since + self.limits.idle, cx) {
                    return Poll::Pending;
                }
                self.count(|c| &c.idle);
                // End of file: hyper closes an idle connection cleanly.
                Poll::Ready(Ok(()))
            }
            Phase::Receiving(since) => {
                if !self.read_timer.expired(since + self.limits.request, cx) {
                    return Poll::Pending;
                }
                self.count(|c| &c.request);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request headers did not arrive within request_timeout_ms",
                )))
            }
        }
    }

    /// A write is pending: has it been pending for the write timeout?
    fn write_pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let since = *self.write_stalled_since.get_or_insert_with(Instant::now);
        if !self.write_timer.expired(since + self.limits.write, cx) {
            return Poll::Pending;
        }
        self.count(|c| &c.write);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client did not read within write_timeout_ms")))
    }

    /// A write completed (or failed): the stall, if any, is over.
    fn write_ready<R>(&mut self, result: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => self.write_pending(cx),
            ready => {
                self.write_stalled_since = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.clock.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.read_pending(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.write_ready(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.write_ready(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.write_ready(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn counters() -> TimeoutCounters {
        let c = |n: &str| IntCounter::new(n, n).unwrap();
        TimeoutCounters { idle: c("idle"), request: c("request"), write: c("write") }
    }

    fn limits() -> IoLimits {
        IoLimits { idle: Duration::from_secs(60), request: Duration::from_secs(10), write: Duration::from_secs(5) }
    }

    /// The guarded server end of an in-memory connection (`buffer` bytes
    /// each way), its client end, its clock and its timeout counters.
    struct Conn {
        io: GuardedIo<tokio::io::DuplexStream>,
        client: tokio::io::DuplexStream,
        clock: Arc<ConnClock>,
        counters: TimeoutCounters,
    }

    fn connection(buffer: usize) -> Conn {
        let (server, client) = tokio::io::duplex(buffer);
        let (clock, counters) = (ConnClock::new(), counters());
        Conn { io: GuardedIo::new(server, clock.clone(), limits(), counters.clone()), client, clock, counters }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_reads_end_of_file_after_the_idle_timeout() {
        let Conn { mut io, client: _client, counters, .. } = connection(64);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(counters.idle.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_get_the_request_timeout_from_their_first_byte_and_the_handler_the_same_start() {
        let Conn { mut io, mut client, counters, .. } = connection(64);
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"GET / HT").await.unwrap();
        let first_byte = Instant::now();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 8);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(first_byte.elapsed(), Duration::from_secs(10), "one deadline from the first byte");
        assert_eq!(counters.request.get(), 1);

        // The handler's deadline starts at the same first byte.
        let Conn { mut io, mut client, clock, .. } = connection(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let first_byte = Instant::now();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(clock.begin_request().0, first_byte);
        clock.end_request();
        assert!(matches!(clock.phase(), Phase::Idle(_)));
        // Bytes already buffered (pipelined): the request starts when handed over.
        assert_eq!(clock.begin_request().0, Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_left_pending_while_the_handler_runs_ends_at_the_idle_deadline_after_the_answer() {
        // hyper reads while the handler runs and, blocked, reads no more
        // after answering: that one read must still end at the idle deadline.
        let Conn { mut io, client: _client, clock, counters } = connection(64);
        clock.begin_request();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            io.read(&mut buf).await.unwrap()
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        clock.end_request();
        let answered = Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(600), reader).await;
        assert_eq!(read.expect("the read ends").unwrap(), 0, "end of file");
        assert_eq!(answered.elapsed(), Duration::from_secs(60));
        assert_eq!(counters.idle.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_closes_one_idle_timeout_after_its_last_request() {
        // Each request moves the idle deadline later; the timer, left where
        // it was, fires early and is moved to the deadline then in force.
        let Conn { mut io, mut client, clock, counters } = connection(64);
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            assert!(io.read(&mut buf).await.unwrap() > 0);
            clock.begin_request();
            tokio::time::sleep(Duration::from_secs(1)).await;
            clock.end_request();
            // Idle for 45 s of the 60: the connection stays open.
            let idle = tokio::time::timeout(Duration::from_secs(45), io.read(&mut buf)).await;
            assert!(idle.is_err(), "still open 45 s into its idle time");
        }
        let last = Instant::now() - Duration::from_secs(45);
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(last.elapsed(), Duration::from_secs(60));
        assert_eq!(counters.idle.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_pending_for_the_write_timeout_fails() {
        let Conn { mut io, client: _client, counters, .. } = connection(16);
        let started = Instant::now();
        let err = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(counters.write.get(), 1);
    }
}
