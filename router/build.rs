//! Compiles proto/tei.proto (TEI's gRPC API) into the server's messages and service traits, and
//! its encoded descriptors for gRPC reflection, with protox: nothing to install, no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/tei.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tei_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(descriptors)?;
    Ok(())
}
