//! Generates the gRPC service (`inference.GRPCInferenceService`, Triton's
//! `grpc_service.proto`, vendored under proto/triton/ with its licence)
//! with tonic and prost. protox compiles the proto in Rust, so no system
//! `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(["grpc_service.proto"], ["proto/triton"])?;
    tonic_prost_build::configure()
        .build_client(false)
        // The RPCs riskserve does not serve (streaming, shared memory,
        // load/unload, trace and log settings) answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto/triton");
    Ok(())
}
