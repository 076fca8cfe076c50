//! Compiles proto/raftkv.proto with protox (pure Rust), so no system `protoc`
//! is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in at the build script's compile time: a
    // second clone sharing the target folder must use its own proto files.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let proto_dir = format!("{manifest_dir}/../../proto");
    let proto_file = format!("{proto_dir}/raftkv.proto");
    println!("cargo:rerun-if-changed={proto_file}");
    let fds = protox::compile([proto_file.as_str()], [proto_dir.as_str()])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, with undecodable requests answered INVALID_ARGUMENT.
        .codec_path("crate::codec::RaftkvCodec")
        .compile_fds(fds)?;
    Ok(())
}
