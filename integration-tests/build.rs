//! A gRPC client for proto/tei.proto (TEI's API), compiled with protox: no protoc needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/tei.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
