//! token-vault: each user's upstream credentials, encrypted at rest (AES-256-GCM under a key
//! ring), refreshed transparently with one refresh at a time across every replica, served over
//! gRPC (`mcpauth.v1.TokenVault`).
//!
//! `main.rs` wires configuration → logs → [`app::start`]; tests start the same thing.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod cache;
pub mod changes;
pub mod config;
pub mod credential;
pub mod crypto;
pub mod error;
pub mod events;
pub mod grpc;
pub mod introspect;
pub mod refresh;
pub mod rekey;
pub mod revocations;
pub mod store;
pub mod upstream;
pub mod vault;

pub use app::{Running, start, start_with};
pub use config::Config;
pub use store::Stores;
