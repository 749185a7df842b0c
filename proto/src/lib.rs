//! The `imaging.v1` contract: generated messages, clients and servers.

/// Generated code for package `imaging.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("imaging.v1");
}

pub mod reasons;

/// Encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("imaging_descriptor");

/// The domain used in `google.rpc.ErrorInfo` details.
pub const ERROR_DOMAIN: &str = "imaging.v1";
