//! ONNX's protobuf messages (`ModelProto`, `GraphProto`, `NodeProto`, ...),
//! generated at build time by `build.rs` (`onnx_types`) from the vendored
//! `proto/onnx/onnx-ml.proto`.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
