//! Generates the gRPC service from `proto/*.proto` with protox (pure Rust, so no
//! system `protoc` is needed on a fresh machine).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/grpc_service.proto",
        "proto/keel_experiments.proto",
        "proto/keel_jobs.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(fds)?;
    Ok(())
}
