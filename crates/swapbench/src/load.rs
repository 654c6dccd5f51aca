//! The load: C tokio tasks, each with one keep-alive HTTP/1.1 connection
//! ([`testkit::Client`]), sending single-application requests and recording
//! one [`Sample`] per response or failure (receive time, latency, status,
//! the version it names, failure kind). The hot path does no bookkeeping
//! beyond a `Vec::push` and two relaxed atomics; everything else is derived
//! after the run (see [`crate::analysis`]).

use crate::{BenchConfig, Shared};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{Client, ClientError, Method};

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    Ok = 0,
    /// Answered with a status other than 200.
    Non200 = 1,
    /// Could not connect (or the handshake failed).
    ConnectError = 2,
    /// The connection failed while the request was in flight, or an idle
    /// keep-alive connection was found closed without the server saying so.
    ConnectionError = 3,
    /// No complete response within the request timeout.
    Timeout = 4,
    /// 200 without a version header (or a body that names another version).
    BadVersion = 5,
}

/// One response (or failure), as recorded by a client.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Receive time, µs since the run started.
    pub t_us: u64,
    pub latency_us: u32,
    /// Version named by the response (0: none).
    pub version: u32,
    pub status: u16,
    pub outcome: Outcome,
}

impl Sample {
    /// When the request was sent (or scheduled, in open loop), µs since the run started.
    pub fn start_us(&self) -> u64 {
        self.t_us.saturating_sub(self.latency_us as u64)
    }
}

/// `"model_version":N` in a riskserve body, if present.
fn body_version(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"model_version\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = body[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn note(errors: &mut BTreeMap<String, u64>, what: String) {
    if errors.len() < 32 || errors.contains_key(&what) {
        *errors.entry(what).or_default() += 1;
    }
}

/// What one client recorded.
pub(crate) struct ClientResult {
    pub samples: Vec<Sample>,
    /// Reconnects after the server announced `Connection: close` (not failures).
    pub server_closed: u64,
    /// First few distinct error messages, with counts.
    pub errors: BTreeMap<String, u64>,
}

/// Each client's request schedule: closed loop (the next request as soon
/// as the last is answered), or open loop (`rate`): each client sends on
/// its own fixed schedule, offset so the clients interleave, and latency
/// counts from the scheduled time (no coordinated omission).
struct Pacing {
    interval: Option<Duration>,
    due: Instant,
}

impl Pacing {
    fn new(id: usize, cfg: &BenchConfig) -> Pacing {
        let interval = cfg.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(cfg.clients as f64 / r));
        let due = Instant::now() + interval.map(|i| i.mul_f64(id as f64 / cfg.clients as f64)).unwrap_or_default();
        Pacing { interval, due }
    }

    /// Waits for the next request's time; returns when it counts from.
    async fn next(&mut self) -> Instant {
        match self.interval {
            Some(every) => {
                tokio::time::sleep_until(self.due.into()).await;
                let scheduled = self.due;
                // Far behind (the server stalled): restart the schedule
                // rather than firing a burst of catch-up requests.
                self.due = (self.due + every).max(Instant::now() - Duration::from_secs(1));
                scheduled
            }
            None => Instant::now(),
        }
    }
}

/// Whether the run is over for a client (stopped, or the request cap reached).
fn done(cfg: &BenchConfig, shared: &Shared) -> bool {
    shared.stop.load(Ordering::Relaxed)
        || cfg.max_requests.is_some_and(|max| shared.requests.load(Ordering::Relaxed) >= max)
}

/// Records one response (or failure) of a request that started at `started`.
fn record(shared: &Shared, out: &mut ClientResult, started: Instant, outcome: Outcome, status: u16, version: u64) {
    let latency = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    out.samples.push(Sample {
        t_us: shared.now_us(),
        latency_us: latency,
        version: version.min(u32::MAX as u64) as u32,
        status,
        outcome,
    });
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if outcome != Outcome::Ok {
        shared.failures.fetch_add(1, Ordering::Relaxed);
    }
}

impl ClientResult {
    fn new() -> ClientResult {
        ClientResult { samples: Vec::with_capacity(16 * 1024), server_closed: 0, errors: BTreeMap::new() }
    }
}

/// One client: sends until the run stops (or the request cap is reached).
/// `check_body`: the body must name the same version as the header (riskserve).
pub(crate) async fn client(id: usize, cfg: Arc<BenchConfig>, shared: Arc<Shared>, check_body: bool) -> ClientResult {
    let bodies = cfg.bodies.clone();
    let mut next = (id * 7919) % bodies.len();
    let mut out = ClientResult::new();
    let mut client: Option<Client> = None;
    let mut local_max = 0u64;
    let mut pacing = Pacing::new(id, &cfg);
    while !done(&cfg, &shared) {
        let started = pacing.next().await;
        let record = |out: &mut ClientResult, outcome: Outcome, status: u16, version: u64| {
            record(&shared, out, started, outcome, status, version)
        };
        if client.is_none() {
            match Client::connect(cfg.target.addr, &cfg.target.host, cfg.request_timeout).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    note(&mut out.errors, format!("connect: {e}"));
                    record(&mut out, Outcome::ConnectError, 0, 0);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        match c.ready().await {
            Ok(()) => {}
            Err(ClientError::TimedOut(_)) => {
                record(&mut out, Outcome::Timeout, 0, 0);
                client = None;
                continue;
            }
            Err(e) => {
                // The server closed an idle keep-alive connection without a
                // `Connection: close`: a request sent now would have failed.
                note(&mut out.errors, format!("idle connection closed: {e}"));
                record(&mut out, Outcome::ConnectionError, 0, 0);
                client = None;
                continue;
            }
        }
        let body = bodies[next].clone();
        next = (next + 1) % bodies.len();
        match c.send(Method::POST, &cfg.target.path, &[("content-type", "application/json")], body).await {
            Err(ClientError::TimedOut(_)) => {
                record(&mut out, Outcome::Timeout, 0, 0);
                client = None;
            }
            Err(ClientError::Build(e)) => {
                note(&mut out.errors, format!("building request: {e}"));
                record(&mut out, Outcome::ConnectionError, 0, 0);
                break;
            }
            Err(e) => {
                note(&mut out.errors, format!("request: {e}"));
                record(&mut out, Outcome::ConnectionError, 0, 0);
                client = None;
            }
            Ok(reply) => {
                let status = reply.status;
                let bytes = &reply.body;
                let version = reply.header("x-model-version").and_then(|v| v.trim().parse::<u64>().ok());
                let closing = reply.closes_connection();
                if status != 200 {
                    note(
                        &mut out.errors,
                        format!("status {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])),
                    );
                    record(&mut out, Outcome::Non200, status, version.unwrap_or(0));
                } else {
                    match version {
                        Some(v) if !check_body || body_version(bytes) == Some(v) => {
                            if v > local_max {
                                local_max = v;
                                shared.max_seen.fetch_max(v, Ordering::Relaxed);
                            }
                            record(&mut out, Outcome::Ok, status, v);
                        }
                        _ => {
                            note(
                                &mut out.errors,
                                format!("version header {version:?} vs body {:?}", body_version(bytes)),
                            );
                            record(&mut out, Outcome::BadVersion, status, version.unwrap_or(0));
                        }
                    }
                }
                if closing {
                    out.server_closed += 1;
                    client = None;
                }
            }
        }
    }
    out
}

/// One gRPC client: `ModelInfer` calls (`messages`, encoded) over its own
/// HTTP/2 connection to `addr`, one at a time, until the run stops. The
/// version is the answer's `model_version`; a status other than OK is a
/// `Non200` (its code recorded as the status).
pub(crate) async fn grpc_client(
    id: usize,
    cfg: Arc<BenchConfig>,
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    messages: Arc<Vec<bytes::Bytes>>,
) -> ClientResult {
    use prost::Message;
    use riskserve::grpc::proto::ModelInferResponse;
    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
    let mut next = (id * 7919) % messages.len();
    let mut out = ClientResult::new();
    let mut client: Option<testkit::grpc::GrpcClient> = None;
    let mut pacing = Pacing::new(id, &cfg);
    while !done(&cfg, &shared) {
        let started = pacing.next().await;
        let c = match &client {
            Some(c) => c,
            None => match testkit::grpc::GrpcClient::connect(addr, cfg.request_timeout).await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    note(&mut out.errors, format!("connect: {e}"));
                    record(&shared, &mut out, started, Outcome::ConnectError, 0, 0);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let message = &messages[next];
        next = (next + 1) % messages.len();
        match c.unary(INFER, message, &[]).await {
            Ok(answer) => match ModelInferResponse::decode(answer).map(|r| r.model_version.parse::<u64>()) {
                Ok(Ok(v)) => {
                    shared.max_seen.fetch_max(v, Ordering::Relaxed);
                    record(&shared, &mut out, started, Outcome::Ok, 200, v);
                }
                other => {
                    note(&mut out.errors, format!("an answer without a version: {other:?}"));
                    record(&shared, &mut out, started, Outcome::BadVersion, 200, 0);
                }
            },
            Err(e) if e.code >= 0 => {
                note(&mut out.errors, format!("gRPC status {}: {}", e.code, e.message));
                record(&shared, &mut out, started, Outcome::Non200, e.code as u16, 0);
            }
            Err(e) => {
                let outcome = if e.message.contains("timed out") { Outcome::Timeout } else { Outcome::ConnectionError };
                note(&mut out.errors, format!("call: {}", e.message));
                record(&shared, &mut out, started, outcome, 0, 0);
                client = None;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_named_in_a_body() {
        assert_eq!(body_version(br#"{"model_version":12,"probability":0.3}"#), Some(12));
        assert_eq!(body_version(br#"{"probability":0.3}"#), None);
        assert_eq!(body_version(br#"{"model_version":"x"}"#), None);
    }

    #[test]
    fn distinct_error_messages_are_capped() {
        let mut errors = BTreeMap::new();
        for i in 0..40 {
            note(&mut errors, format!("e{i}"));
        }
        note(&mut errors, "e0".into());
        assert_eq!(errors.len(), 32);
        assert_eq!(errors["e0"], 2);
    }
}
