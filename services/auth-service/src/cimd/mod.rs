//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP
//! authorization 2025-11-25): a `client_id` that is an https URL names a JSON document which the
//! authorization server fetches and uses as the client's registration.
//!
//! Fetching a URL chosen by an unauthenticated caller is a server-side request forgery surface,
//! so the fetcher:
//! - accepts only canonical `https://` URLs with a path, no fragment and no user info;
//! - resolves the host once, refuses the URL if *any* address is special-purpose (private,
//!   loopback, link-local/cloud metadata, CGNAT, documentation, multicast, IPv4-mapped or NAT64
//!   forms of those, …; RFC 6890 / RFC 9728 §7.7), then connects only to those vetted addresses,
//!   so DNS rebinding between the check and the connection has no effect;
//! - ignores proxy environment variables (a proxy would resolve the name again);
//! - follows no redirects, enforces a total timeout, a body size limit and a JSON content type;
//! - validates the document (exact `client_id` match, required fields, safe redirect URIs, no
//!   shared secret, `token_endpoint_auth_method` `none`);
//! - caches good documents per HTTP caching headers, capped by configuration, and failures for
//!   `cimd.failure_cache_secs` (a URL that failed is not fetched again meanwhile: a broken or
//!   hostile host costs one fetch per interval, however often it is named);
//! - waits at most `cimd.queue_wait_ms` for one of [`MAX_CONCURRENT_FETCHES`] slots, allows at most
//!   [`MAX_FETCHES_PER_HOST`] of them to one host (counted by domain and by address), and gives
//!   each fetch its own `cimd.timeout_ms` from when it starts, so a slow host cannot starve the
//!   others nor make queued lookups time out;
//! - answers every network-level failure (resolution, a forbidden address, connection, timeout,
//!   a broken body) with one generic message: which one happened, and any address, goes only to
//!   the log, so the error is no probe of the server's network.
//!
//! Per-IP budgets for fetches live in front (`ClientRegistry`, `rate_limit.cimd_fetch`).
//! Document bodies are never logged: only the host and the outcome.
//!
//! The parts: `address` says which `client_id` URLs and which addresses may be fetched (the
//! SSRF rules); `fetcher` fetches (budgets, slots, the bounded wait); `document` turns a
//! body into a validated registration; `cache` remembers documents and failures.

mod address;
mod cache;
mod document;
mod fetcher;
#[cfg(test)]
mod test_support;

use std::net::IpAddr;

pub use address::{is_cimd_client_id, is_forbidden_ip};
pub use document::ClientMetadataDocument;
pub(crate) use document::parse_document;
pub use fetcher::{CimdFetcher, MAX_CONCURRENT_FETCHES, MAX_FETCHES_PER_HOST};

/// The generic answer to any network-level failure (details only in the log).
const UNREACHABLE: &str = "could not fetch the client metadata document";

/// Why a Client ID Metadata Document was not obtained. Messages are lowercase and safe to show
/// to the end user: network-level failures share one message and name no address (the
/// variant, with its details, is logged).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CimdError {
    #[error("client id metadata documents are not supported by this server")]
    Disabled,
    #[error("client_id is not an acceptable metadata document url: {0}")]
    NotAllowedUrl(&'static str),
    #[error("{UNREACHABLE}")]
    ForbiddenAddress(IpAddr),
    #[error("{UNREACHABLE}")]
    Resolve,
    #[error("{UNREACHABLE}")]
    Timeout,
    /// What went wrong, for the log only.
    #[error("{UNREACHABLE}")]
    Fetch(String),
    #[error("fetching the client metadata document returned http status {0}")]
    Status(u16),
    #[error("fetching the client metadata document was redirected; redirects are not followed")]
    Redirect,
    #[error("the client metadata document exceeds the size limit")]
    TooLarge,
    #[error("the client metadata document is not served as json")]
    NotJson,
    #[error("invalid client metadata document: {0}")]
    InvalidDocument(String),
    #[error("the client metadata document's client_id does not exactly match its url")]
    ClientIdMismatch,
    #[error("unsupported token_endpoint_auth_method \"{0}\": a url client_id must use \"none\"")]
    UnsupportedAuthMethod(String),
    /// Every fetch slot (or this host's share) stayed taken for `cimd.queue_wait_ms`.
    #[error("too many client metadata documents are being fetched; try again later")]
    Busy,
    /// The caller's IP used up its `rate_limit.cimd_fetch` budget; retry after this many seconds.
    #[error("too many client metadata document fetches from this address; try again later")]
    RateLimited(u64),
    /// `cimd.max_clients` stored documents: no new one until the sweeper makes room.
    #[error("this server cannot take more client metadata document clients now; try again later")]
    Capacity,
}

impl CimdError {
    /// Whether the failure says something about the document URL (and is remembered for
    /// `cimd.failure_cache_secs`), rather than about this server or the request.
    fn is_cacheable(&self) -> bool {
        !matches!(
            self,
            CimdError::Disabled
                | CimdError::NotAllowedUrl(_)
                | CimdError::Busy
                | CimdError::RateLimited(_)
                | CimdError::Capacity
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::test_support::ip;

    #[test]
    fn error_messages_are_lowercase() {
        let errors = [
            CimdError::Disabled,
            CimdError::NotAllowedUrl("x"),
            CimdError::ForbiddenAddress(ip("10.0.0.1")),
            CimdError::Resolve,
            CimdError::Timeout,
            CimdError::Fetch("request failed".into()),
            CimdError::Status(500),
            CimdError::Redirect,
            CimdError::TooLarge,
            CimdError::NotJson,
            CimdError::InvalidDocument("x".into()),
            CimdError::ClientIdMismatch,
            CimdError::UnsupportedAuthMethod("x".into()),
            CimdError::Busy,
            CimdError::RateLimited(3),
            CimdError::Capacity,
        ];
        for e in errors {
            let m = e.to_string();
            assert_eq!(m, m.to_lowercase(), "{m}");
        }
    }
}
