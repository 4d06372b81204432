//! The gRPC contract between mcpauth services and with other internal systems.
#![forbid(unsafe_code)]

/// `mcpauth.v1`: generated messages, clients and servers.
pub mod v1 {
    tonic::include_proto!("mcpauth.v1");
}

pub mod status_detail;

/// Encoded `FileDescriptorSet` of every mcpauth proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mcpauth_descriptor.bin"));

/// The gRPC path (`/mcpauth.v1.Service/Method`) of every method in the contract, sorted.
pub const GRPC_METHODS: &[&str] = include!(concat!(env!("OUT_DIR"), "/mcpauth_methods.rs"));
