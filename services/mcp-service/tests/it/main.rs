//! Integration tests: a real mcp-service in front of a real auth-service (fresh Postgres
//! database and Redis prefix per test), driven over HTTP like an MCP client.

mod cluster;
mod cluster_ops;
mod connectors;
mod embedded;
mod external;
mod faults;
mod harness;
mod hostile;
mod internal_tls;
mod metrics;
mod own_as_introspection;
mod own_as_jwt;
mod redis_tls;
mod resource;
mod rmcp_client;
mod stateless;
mod store_conformance;
mod telemetry;
