//! The gRPC boundary: the Open Inference Protocol's gRPC half
//! (`inference.GRPCInferenceService`, Triton's superset) and
//! `grpc.health.v1.Health`, on a second listener of the same server.

pub mod proto;
