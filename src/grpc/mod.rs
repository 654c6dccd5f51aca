//! The gRPC boundary: the Open Inference Protocol's gRPC half
//! (`inference.GRPCInferenceService` from Triton's `grpc_service.proto`, a
//! superset of KServe's `open_inference_grpc.proto`, generated into
//! [`proto`]) and `grpc.health.v1.Health`, on a second listener of the same
//! server (`--grpc-listen`), sharing the HTTP side's registry, admission,
//! limits, deadline, metrics and shutdown.
//!
//! - [`server`] — the HTTP/2 accept loop, its abuse limits, and routing.
//! - [`unvectored`] — its connections, so that h2 sends a call in one write.
//! - [`service`] — the inference service over the shared OIP code.
//! - [`tensors`] — infer messages ↔ the shared tensor binding.
//! - [`health`] — the standard health service over readiness.
//! - [`status`] — errors → gRPC statuses, `grpc-timeout`, code names.
//!
//! Nothing under [`crate::http`] imports this module.

pub mod health;
pub mod proto;
pub mod server;
pub mod service;
pub mod status;
pub mod tensors;
pub mod unvectored;
