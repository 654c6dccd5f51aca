//! Admission control for prediction requests: at most
//! `max_inflight_requests` hold a slot at once, at most
//! `max_queued_requests` wait for one (first come, first served), each for
//! at most `max_queue_wait_ms` and never past its request deadline. Anything
//! beyond is [`Shed`] at once, so latency does not grow without limit.
//!
//! A slot is taken before the body is read, so the slots bound the memory
//! that request bodies can hold as well as the CPU spent scoring. Health,
//! metrics and the web form never come here.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Why a request was not admitted; each is a 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    #[error("the server is at its limit of requests in progress and queued; retry shortly")]
    QueueFull,
    #[error("no slot for this request became free in time; retry shortly")]
    QueueWait,
}

impl Shed {
    /// The `reason` label of `riskserve_requests_shed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::QueueWait => "queue_wait",
        }
    }
}

/// The gauges admission keeps current.
#[derive(Clone)]
pub struct AdmissionGauges {
    pub admitted: IntGauge,
    pub queued: IntGauge,
}

/// The slots and the queue.
pub struct Admission {
    slots: Semaphore,
    queued: AtomicUsize,
    max_queued: usize,
    max_wait: Duration,
    gauges: AdmissionGauges,
}

/// A held slot; released when dropped (even if the request is cancelled).
/// It borrows the [`Admission`] it came from: taking and giving back a slot
/// touches the semaphore and the gauge, nothing is reference-counted.
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
    admitted: &'a IntGauge,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.admitted.dec();
    }
}

/// A place in the queue; given back when dropped.
struct QueuePlace<'a>(&'a Admission);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.gauges.queued.dec();
    }
}

impl Admission {
    pub fn new(max_inflight: usize, max_queued: usize, max_wait: Duration, gauges: AdmissionGauges) -> Admission {
        Admission {
            slots: Semaphore::new(max_inflight.min(Semaphore::MAX_PERMITS)),
            queued: AtomicUsize::new(0),
            max_queued,
            max_wait,
            gauges,
        }
    }

    /// A slot now, or after waiting in the queue until `deadline` at the
    /// latest; [`Shed`] when the queue is full or the wait runs out.
    pub async fn admit(&self, deadline: Instant) -> Result<Slot<'_>, Shed> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(self.slot(permit));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::QueueFull);
        }
        self.gauges.queued.inc();
        let _place = QueuePlace(self);
        let until = deadline.min(Instant::now() + self.max_wait);
        match tokio::time::timeout_at(until, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            // Timed out, or (never: the semaphore is not closed) closed.
            Ok(Err(_)) | Err(_) => Err(Shed::QueueWait),
        }
    }

    fn slot<'a>(&'a self, permit: SemaphorePermit<'a>) -> Slot<'a> {
        self.gauges.admitted.inc();
        Slot { _permit: permit, admitted: &self.gauges.admitted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_shed_reason_is_one_the_metric_exports_from_the_start() {
        for shed in [Shed::QueueFull, Shed::QueueWait] {
            assert!(crate::metrics::SHED_REASONS.contains(&shed.reason()), "{shed:?}");
        }
    }

    fn admission(inflight: usize, queued: usize, wait_ms: u64) -> Admission {
        let gauges =
            AdmissionGauges { admitted: IntGauge::new("a", "a").unwrap(), queued: IntGauge::new("q", "q").unwrap() };
        Admission::new(inflight, queued, Duration::from_millis(wait_ms), gauges)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_queue_the_second_request_is_shed_at_once() {
        let a = admission(1, 0, 1000);
        let first = a.admit(far()).await.unwrap();
        assert_eq!(a.gauges.admitted.get(), 1);
        assert_eq!(a.admit(far()).await.err(), Some(Shed::QueueFull));
        drop(first);
        assert_eq!(a.gauges.admitted.get(), 0);
        assert!(a.admit(far()).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_gets_the_freed_slot_or_gives_up_at_the_earlier_bound() {
        let a = Arc::new(admission(1, 1, 1000));
        let first = a.admit(far()).await.unwrap();
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.admit(far()).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert_eq!(a.gauges.queued.get(), 1);
        assert_eq!(a.admit(far()).await.err(), Some(Shed::QueueFull), "the one queue place is taken");
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(a.gauges.queued.get(), 0);

        // The wait is bounded by max_wait, and by the deadline if sooner.
        let _held = a.admit(far()).await.unwrap();
        let started = Instant::now();
        assert_eq!(a.admit(far()).await.err(), Some(Shed::QueueWait));
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        let started = Instant::now();
        assert_eq!(a.admit(started + Duration::from_millis(30)).await.err(), Some(Shed::QueueWait));
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        assert_eq!(a.gauges.queued.get(), 0);
    }
}
