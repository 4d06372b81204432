//! The protocol engine: pure Rust, no I/O. Every rule here is unit-tested beside its code.

pub mod client_metadata;
pub mod input;
pub mod jwt;
pub mod pkce;
pub mod redirect_uri;
pub mod refresh;
pub mod resource;
pub mod scope;
pub mod token;
pub mod user_code;
