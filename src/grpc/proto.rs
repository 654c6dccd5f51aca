//! The types and service trait generated from `proto/triton/grpc_service.proto`
//! (package `inference`) by build.rs.
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

tonic::include_proto!("inference");
