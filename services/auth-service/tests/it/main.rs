//! Integration tests: the real auth-service against the real Postgres and Redis on this machine
//! (fresh database and Redis prefix per test), driven over HTTP and gRPC.

mod audit;
mod authorize;
mod cimd;
mod cluster_ops;
mod consent;
mod device;
mod ephemeral_conformance;
mod grpc;
mod grpc_permissions;
mod grpc_tls;
mod harness;
mod hostile;
mod hostile_http;
mod introspection;
mod jwt_access;
mod metrics;
// Private Redis/Postgres a test may stop (the shared ones are never touched).
mod ops;
#[path = "../../../../tests/support/private_backends.rs"]
#[allow(dead_code)]
mod private_backends;
mod rate_limit;
mod refresh;
mod refresh_delayed;
mod registration;
mod registration_policy;
mod revocation;
mod sealing;
mod smoke;
mod store_conformance;
mod token;
mod token_exchange;
mod upstream;
mod upstream_harness;
mod user_admin;
