//! The Rust version the package says it needs is the one it really needs.

use std::process::Command;

/// `major.minor` of a `rust-version` (`1.89`, `1.88.0`).
fn version(v: &str) -> (u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Cargo.toml said 1.80 while serde-saphyr needs 1.89: a build on 1.80
/// failed deep in a dependency instead of with cargo's clear message.
/// (The package's own code is held to it by clippy's `incompatible_msrv`,
/// which `make test` runs with `-D warnings`.)
#[test]
fn rust_version_covers_every_locked_dependency() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = version(env!("CARGO_PKG_RUST_VERSION"));
    let packages = metadata["packages"].as_array().unwrap();
    let needs: Vec<(String, &str)> = packages
        .iter()
        .filter(|p| p["name"] != "bpf-exporter")
        .filter_map(|p| {
            Some((
                format!("{} {}", p["name"].as_str()?, p["version"].as_str()?),
                p["rust_version"].as_str()?,
            ))
        })
        .filter(|(_, v)| version(v) > ours)
        .collect();
    assert!(
        needs.is_empty(),
        "Cargo.toml says rust-version = {:?}, but these locked dependencies need newer: {needs:?}",
        env!("CARGO_PKG_RUST_VERSION")
    );
    assert!(packages.len() > 50, "cargo metadata listed too little to judge");
}
