//! Compiles the etcd API subset with protox (pure Rust), so no system
//! `protoc` is needed. The server side is generated too, for the tests'
//! fake etcd.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): a build-script binary reused from
    // another checkout (same target folder) would otherwise look there.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let proto_dir = format!("{manifest_dir}/proto");
    let proto_file = format!("{proto_dir}/etcd_kv_subset.proto");
    println!("cargo:rerun-if-changed={proto_file}");
    let fds = protox::compile([proto_file.as_str()], [proto_dir.as_str()])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
