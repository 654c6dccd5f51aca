//! `inference.GRPCInferenceService` over the same registry and prediction
//! path as HTTP: ServerLive, ServerReady, ModelReady, ServerMetadata,
//! ModelMetadata, RepositoryIndex and ModelInfer answer what the matching
//! `/v2` routes answer (metadata and the index are built by the same code,
//! [`crate::http::oip`]; infer binds tensors with the same binding and
//! scores through `crate::http::predict::score_decoded`, after the same
//! admission). Every other RPC of Triton's service (streaming, shared
//! memory, model control, config, statistics, trace, logging) answers
//! UNIMPLEMENTED.
//!
//! Each call is counted in `riskserve_requests_total{protocol="grpc"}` and
//! `riskserve_request_duration_seconds` under its method's full name, and
//! answers carry `x-model-version` in their metadata where HTTP has the
//! header.

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::repository_index_response::ModelIndex;
use super::proto::*;
use super::status::{code_name, status};
use super::tensors;
use crate::http::error::ApiError;
use crate::http::oip::binding::{Answer, Wanted};
use crate::http::oip::{index_entries, ModelMetadata, ServerMetadata};
use crate::http::predict::{admit, score_decoded, ExplainQuery, Target};
use crate::http::route::pinned_version;
use crate::http::state::AppState;
use crate::registry::LoadedVersion;
use prometheus::{Histogram, IntCounter};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The deadline the connection gave a call (the request timeout, or the
/// client's `grpc-timeout` if sooner), in its request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub tokio::time::Instant);

/// The RPCs counted under their own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    ServerLive,
    ServerReady,
    ModelReady,
    ServerMetadata,
    ModelMetadata,
    ModelInfer,
    RepositoryIndex,
}

impl Method {
    const ALL: [Method; 7] = [
        Method::ServerLive,
        Method::ServerReady,
        Method::ModelReady,
        Method::ServerMetadata,
        Method::ModelMetadata,
        Method::ModelInfer,
        Method::RepositoryIndex,
    ];

    /// The `route` label: the method's full name, as on the wire.
    fn label(self) -> &'static str {
        match self {
            Method::ServerLive => "/inference.GRPCInferenceService/ServerLive",
            Method::ServerReady => "/inference.GRPCInferenceService/ServerReady",
            Method::ModelReady => "/inference.GRPCInferenceService/ModelReady",
            Method::ServerMetadata => "/inference.GRPCInferenceService/ServerMetadata",
            Method::ModelMetadata => "/inference.GRPCInferenceService/ModelMetadata",
            Method::ModelInfer => "/inference.GRPCInferenceService/ModelInfer",
            Method::RepositoryIndex => "/inference.GRPCInferenceService/RepositoryIndex",
        }
    }
}

/// The `route` label of a call's path: its method's full name, or `other`
/// (UNIMPLEMENTED methods and unknown paths share one series).
pub fn route_label(path: &str) -> &'static str {
    Method::ALL.into_iter().map(Method::label).find(|label| *label == path).unwrap_or("other")
}

/// Per-method series resolved once, as HTTP's per-route ones are.
struct CallMetrics {
    duration: [Histogram; Method::ALL.len()],
    ok: [IntCounter; Method::ALL.len()],
}

/// The service; cheap to clone (one per connection's router).
#[derive(Clone)]
pub struct Inference {
    state: Arc<AppState>,
    calls: Arc<CallMetrics>,
}

impl Inference {
    pub fn new(state: Arc<AppState>) -> Inference {
        let m = &state.metrics;
        let calls = CallMetrics {
            duration: Method::ALL.map(|c| m.request_duration_seconds.with_label_values(&["grpc", c.label()])),
            ok: Method::ALL.map(|c| m.requests_total.with_label_values(&["grpc", c.label(), "OK"])),
        };
        Inference { state, calls: Arc::new(calls) }
    }

    /// Runs one call, counting it under its method and status code.
    async fn counted<T>(
        &self,
        method: Method,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let metrics = &self.state.metrics;
        let _inflight = metrics.inflight();
        let result = call.await;
        let i = method as usize;
        match &result {
            Ok(_) => self.calls.ok[i].inc(),
            Err(s) => metrics.requests_total.with_label_values(&["grpc", method.label(), code_name(s.code())]).inc(),
        }
        self.calls.duration[i].observe(started.elapsed().as_secs_f64());
        result.map(Response::new)
    }

    /// The call's deadline: the connection's, or the request timeout from now.
    fn deadline<T>(&self, request: &Request<T>) -> tokio::time::Instant {
        request
            .extensions()
            .get::<Deadline>()
            .map_or_else(|| tokio::time::Instant::now() + self.state.config.request_timeout, |d| d.0)
    }
}

/// A version named in a request: empty is unpinned.
fn pinned(version: &str) -> Result<Option<u64>, Status> {
    if version.is_empty() {
        return Ok(None);
    }
    pinned_version(version).map(Some).map_err(status)
}

/// Names the answering version in the answer's metadata.
fn with_version<T>(mut response: Response<T>, version: &LoadedVersion) -> Response<T> {
    if let Ok(value) = version.version_label.parse() {
        response.metadata_mut().insert("x-model-version", value);
    }
    response
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        self.counted(Method::ServerLive, async { Ok(ServerLiveResponse { live: true }) }).await
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.registry.readiness().is_ok();
        self.counted(Method::ServerReady, async { Ok(ServerReadyResponse { ready }) }).await
    }

    /// Ready when the model (or the pinned version) can answer; an unknown
    /// model or version, or one with nothing loaded, is not ready (HTTP
    /// answers those with 404 or 503, which clients read as not ready).
    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let answer = async {
            let pinned = pinned(&request.version)?;
            Ok(ModelReadyResponse { ready: self.state.registry.resolve(&request.name, pinned).is_ok() })
        };
        self.counted(Method::ModelReady, answer).await
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let ServerMetadata { name, version, extensions } = ServerMetadata::of_this_server();
        self.counted(Method::ServerMetadata, async { Ok(ServerMetadataResponse { name, version, extensions }) }).await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let mut answered = None;
        let answer = async {
            let (metadata, version) =
                ModelMetadata::of(&self.state, &request.name, pinned(&request.version)?).map_err(status)?;
            answered = Some(version);
            let tensors = |list: Vec<crate::http::oip::TensorMetadata>| {
                list.into_iter()
                    .map(|t| TensorMetadata { name: t.name, datatype: t.datatype, shape: t.shape })
                    .collect()
            };
            Ok(ModelMetadataResponse {
                name: metadata.name,
                versions: metadata.versions,
                platform: metadata.platform,
                inputs: tensors(metadata.inputs),
                outputs: tensors(metadata.outputs),
            })
        };
        let response = self.counted(Method::ModelMetadata, answer).await?;
        Ok(match answered {
            Some(version) => with_version(response, &version),
            None => response,
        })
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let ready_only = request.get_ref().ready;
        let models = index_entries(&self.state, ready_only)
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version.unwrap_or_default(),
                state: e.state,
                reason: e.reason,
            })
            .collect();
        self.counted(Method::RepositoryIndex, async { Ok(RepositoryIndexResponse { models }) }).await
    }

    /// The HTTP infer route's path after its body has arrived: an
    /// admission slot (RESOURCE_EXHAUSTED at once when the server is
    /// full), the version (pins, and rollouts by the sticky key's metadata
    /// entry), the shared binding, scoring, and the raw answer.
    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let deadline = self.deadline(&request);
        let (metadata, _, mut message) = request.into_parts();
        let headers = metadata.into_headers();
        let state = &self.state;
        let mut answered = None;
        let answer = async {
            let pinned = pinned(&message.model_version)?;
            let size = prost::Message::encoded_len(&message);
            // The binding reads the tensors, never the name: take it.
            let name = std::mem::take(&mut message.model_name);
            let result = async {
                let _slot = admit(state, deadline).await?;
                let target = Target { name: &name, pinned, explain: ExplainQuery::NONE, headers: &headers, deadline };
                score_decoded(state, target, size, move |decoder| tensors::decode(&message, decoder), Wanted::explain)
                    .await
            }
            .await;
            let scored = result.map_err(|e: ApiError| {
                if e.is_deadline_exceeded() {
                    state.shed("deadline");
                }
                status(e)
            })?;
            let version = &scored.version;
            let (request, fields) = (&scored.request, version.scorer.fields());
            let response = tensors::encode(&Answer {
                wanted: request,
                model_name: &version.name,
                model_version: &version.version_label,
                answers: &scored.predictions,
                fields,
            });
            answered = Some(scored.version);
            Ok(response)
        };
        let response = self.counted(Method::ModelInfer, answer).await?;
        Ok(match answered {
            Some(version) => with_version(response, &version),
            None => response,
        })
    }
}
