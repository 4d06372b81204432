//! auth-service: mcpauth's OAuth 2.1 authorization server for MCP.
//!
//! `main.rs` wires configuration → telemetry → [`app::start`]; tests start the same thing.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod background;
pub mod cimd;
pub mod clients;
pub mod config;
pub mod config_clients;
pub mod domain;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod grpc_admin;
pub mod grpc_connect;
pub mod http;
pub mod init_secrets;
pub mod login;
pub mod proxy;
pub mod ratelimit;
pub mod state;
pub mod store;
pub mod stores;
pub mod token_exchange;
pub mod tokens;
pub mod upstream;
pub mod user_admin;
pub mod vault;

pub use audit::{AuditEvent, AuditKind, AuditLog};
