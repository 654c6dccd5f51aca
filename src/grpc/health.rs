//! `grpc.health.v1.Health`, so Kubernetes' native gRPC probes work:
//! SERVING means what `GET /v2/health/ready` answering 200 means (models
//! loaded and hot reload alive), for the server (`""`) and for
//! `inference.GRPCInferenceService`; any other service name is NOT_FOUND.
//! `Watch` sends the status now and whenever it changes (checked once a
//! second), and ends when the server stops, so it never holds up a
//! graceful shutdown.

use crate::registry::Registry;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The service names that have a status.
pub const SERVICES: [&str; 2] = ["", "inference.GRPCInferenceService"];

/// How often `Watch` looks at readiness.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The health service over the registry's readiness.
#[derive(Clone)]
pub struct Readiness {
    registry: Arc<Registry>,
    stopped: watch::Receiver<bool>,
}

impl Readiness {
    pub fn new(registry: Arc<Registry>, stopped: watch::Receiver<bool>) -> Readiness {
        Readiness { registry, stopped }
    }

    fn status(&self, service: &str) -> Result<ServingStatus, Status> {
        if !SERVICES.contains(&service) {
            return Err(Status::not_found(format!("unknown service `{}`; known: \"\", {}", service, SERVICES[1])));
        }
        Ok(match self.registry.readiness() {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        })
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

/// The statuses a `Watch` sends, as they come.
pub struct WatchStream(mpsc::Receiver<Result<HealthCheckResponse, Status>>);

impl tonic::codegen::tokio_stream::Stream for WatchStream {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tonic::async_trait]
impl Health for Readiness {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(answer(self.status(&request.get_ref().service)?)))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<WatchStream>, Status> {
        let service = request.into_inner().service;
        let mut last = self.status(&service)?;
        let (tx, rx) = mpsc::channel(1);
        let (this, mut stopped) = (self.clone(), self.stopped.clone());
        tokio::spawn(async move {
            if tx.send(Ok(answer(last))).await.is_err() {
                return;
            }
            let mut ticks = tokio::time::interval(WATCH_EVERY);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = tx.closed() => return,
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
                let now = this.status(&service).unwrap_or(ServingStatus::ServiceUnknown);
                if now != last {
                    last = now;
                    if tx.send(Ok(answer(now))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(WatchStream(rx)))
    }
}
