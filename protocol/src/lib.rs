//! Airlock's gRPC API, package `airlock.v1`: the generated messages, the
//! `Airlock` service's client and server, and the descriptor set that the
//! supervisor serves through gRPC reflection.
#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::doc_markdown)]

/// Generated code for `airlock.v1`.
pub mod v1 {
    tonic::include_proto!("airlock.v1");
}

/// The encoded `FileDescriptorSet` of `airlock.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("airlock_descriptor");
