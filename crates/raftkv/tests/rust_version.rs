//! The workspace's `rust-version` is true: at least what every locked
//! dependency declares (read from `cargo metadata --locked`).

use std::process::Command;

fn parse(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(!ours.is_empty(), "the workspace declares no rust-version");
    let mut needed = (vec![0], String::new());
    for p in meta["packages"].as_array().unwrap() {
        if let Some(v) = p["rust_version"].as_str() {
            let v = parse(v);
            if v > needed.0 {
                needed = (v, p["name"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
    assert!(
        parse(ours) >= needed.0,
        "rust-version {ours} is below {:?}, which {} needs",
        needed.0,
        needed.1
    );
}
