//! token-vault integration tests: real Postgres, Redis and auth-service; a fake upstream.

mod api;
mod cache;
mod cluster_ops;
mod crash;
mod embedded;
mod external_as;
mod harness;
mod isolation;
mod ops;
mod redis_tls;
mod refresh;
mod restore;
mod rotation;
mod store_conformance;
mod tls;
