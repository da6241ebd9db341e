//! Generates the tonic/prost code for `airlock.v1` with the `protoc` that the
//! `protoc-bin-vendored` crate ships, so a fresh machine needs no system protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY-free: build scripts are single-threaded; set_var is only
        // unsafe in edition 2024.
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("airlock_descriptor.bin"))
        .compile_protos(&["proto/airlock/v1/airlock.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
