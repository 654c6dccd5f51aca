//! The good traffic: C closed-loop clients, each on one keep-alive
//! connection ([`testkit::Client`]), sending valid single-application
//! predictions for the whole run and recording one [`GoodSample`] per
//! response or failure. Which case a sample belongs to is decided afterwards
//! from its time ([`Tally::of`]).

use crate::analysis::percentile;
use crate::target::Target;
use bytes::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{Client, ClientError, Method};

/// What happened to one good request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoodKind {
    Ok,
    /// 503 with a `Retry-After` header: shed by admission control.
    Shed,
    /// Any other status (503 without `Retry-After` included).
    Status(u16),
    /// No complete response within the request timeout.
    Timeout,
    /// Connect failed, or the connection failed or closed under a request.
    Connection,
}

#[derive(Debug, Clone, Copy)]
pub struct GoodSample {
    /// Receive time, µs since the run started.
    pub t_us: u64,
    pub latency_us: u32,
    pub kind: GoodKind,
}

/// Good requests in a time window, by outcome.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// 503 + `Retry-After`.
    pub shed: u64,
    pub other_status: u64,
    pub timeouts: u64,
    pub connection_errors: u64,
    /// p99 latency of the successful ones, ms.
    pub p99_ms: f64,
}

impl Tally {
    /// Samples received in `from_us..to_us`.
    pub fn of(samples: &[GoodSample], from_us: u64, to_us: u64) -> Tally {
        let mut t = Tally::default();
        let mut ok_latency = Vec::new();
        for s in samples.iter().filter(|s| (from_us..to_us).contains(&s.t_us)) {
            t.requests += 1;
            match s.kind {
                GoodKind::Ok => ok_latency.push(s.latency_us as u64),
                GoodKind::Shed => t.shed += 1,
                GoodKind::Status(_) => t.other_status += 1,
                GoodKind::Timeout => t.timeouts += 1,
                GoodKind::Connection => t.connection_errors += 1,
            }
        }
        t.ok = ok_latency.len() as u64;
        ok_latency.sort_unstable();
        t.p99_ms = percentile(&ok_latency, 0.99) as f64 / 1000.0;
        t
    }

    /// Failures that are not a shed (503 + `Retry-After`).
    pub fn other_failures(&self) -> u64 {
        self.other_status + self.timeouts + self.connection_errors
    }
}

/// One good client: sends until `stop`, returns its samples.
pub async fn client(
    id: usize,
    target: Target,
    bodies: Arc<Vec<Bytes>>,
    timeout: Duration,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<GoodSample> {
    let mut samples = Vec::with_capacity(64 * 1024);
    let mut next = (id * 7919) % bodies.len().max(1);
    let mut conn: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut record = |kind: GoodKind| {
            samples.push(GoodSample {
                t_us: t0.elapsed().as_micros() as u64,
                latency_us: started.elapsed().as_micros().min(u32::MAX as u128) as u32,
                kind,
            })
        };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Client::connect(target.addr, &target.host, timeout).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    record(if matches!(e, ClientError::TimedOut(_)) {
                        GoodKind::Timeout
                    } else {
                        GoodKind::Connection
                    });
                    // Not waiting for anything: only not spinning on a refusing server.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let body = bodies[next].clone();
        next = (next + 1) % bodies.len();
        match c.request(Method::POST, &target.path, &[("content-type", "application/json")], body).await {
            Ok(reply) => {
                record(match reply.status {
                    200 => GoodKind::Ok,
                    503 if reply.header("retry-after").is_some() => GoodKind::Shed,
                    s => GoodKind::Status(s),
                });
                if reply.closes_connection() {
                    conn = None;
                }
            }
            Err(ClientError::TimedOut(_)) => {
                record(GoodKind::Timeout);
                conn = None;
            }
            Err(_) => {
                record(GoodKind::Connection);
                conn = None;
            }
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_by_window_and_kind() {
        let s = |t_us, latency_us, kind| GoodSample { t_us, latency_us, kind };
        let samples = [
            s(5, 1000, GoodKind::Ok),
            s(10, 2000, GoodKind::Ok),
            s(11, 9000, GoodKind::Shed),
            s(12, 10, GoodKind::Status(500)),
            s(13, 10, GoodKind::Timeout),
            s(14, 10, GoodKind::Connection),
            s(20, 5000, GoodKind::Ok),
        ];
        let t = Tally::of(&samples, 10, 20);
        assert_eq!((t.requests, t.ok, t.shed, t.other_status, t.timeouts, t.connection_errors), (5, 1, 1, 1, 1, 1));
        assert_eq!(t.p99_ms, 2.0);
        assert_eq!(t.other_failures(), 3);
        assert_eq!(Tally::of(&samples, 30, 40), Tally::default());
    }
}
