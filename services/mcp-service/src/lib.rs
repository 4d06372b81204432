//! mcp-service: mcpauth's MCP Streamable HTTP server, an OAuth 2.1 protected resource.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod config;
pub mod conformance;
pub mod connect;
pub mod connectors;
pub mod direct;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod inflight;
pub mod revocations;
pub mod sessions;
pub mod store;
pub mod tools;
pub mod vault;
pub mod verify;
