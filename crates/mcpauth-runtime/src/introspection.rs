//! The gRPC introspection client of the services that only verify tokens (mcp-service's
//! default verifier, token-vault's "who is the user"): auth-service's
//! `TokenIntrospection.Introspect`, answered from a revocation-aware [`VerificationCache`]
//! keyed by the token's SHA-256 (never the token), never past the token's expiry.
//!
//! A token is accepted only when auth-service calls it active, it is an access token (not a
//! refresh token), it names a subject, it has not expired by our clock, and its audience is
//! one of ours. Each service keeps its own principal and refusal types: they convert from
//! [`Introspected`] and [`IntrospectionRefusal`].

use std::sync::Arc;
use std::time::Duration;

use mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient;
use mcpauth_proto::v1::{IntrospectRequest, IntrospectResponse, TokenKind};

use crate::revocation::{Lookup, Refusal, Revocable, VerificationCache, now_secs, token_key};
use crate::telemetry::{TracedChannel, traced};
use crate::{CallerCredential, ConfigError, GrpcClientTls, PerThread, Secret};

/// An active access token, as auth-service described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspected {
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
    pub token_id: Option<String>,
    pub grant_id: Option<String>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionRefusal {
    /// Not active, not an access token, or without a subject.
    Inactive,
    /// Issued for another resource.
    WrongAudience,
    /// Active at auth-service, but expired by our clock.
    Expired,
    /// auth-service did not answer (the gRPC code): transient, never cached for long.
    Unavailable(tonic::Code),
}

/// Where and how to introspect.
pub struct IntrospectionSettings<'a> {
    /// The configuration section (`verifier.grpc`, `introspection`), for errors.
    pub section: &'a str,
    pub addr: &'a str,
    pub tls: Option<&'a GrpcClientTls>,
    pub credential: &'a Secret,
    /// The audiences this service accepts (with exactly one, auth-service checks it too).
    pub accepted_resources: Vec<String>,
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
    /// One channel per thread (actix workers, each on a runtime of its own: see
    /// [`crate::per_thread`]), or one shared channel (a multi-threaded tokio runtime).
    pub per_thread: bool,
    /// The counter of cache lookups (`result` = hit or miss).
    pub cache_metric: &'static str,
}

#[derive(Clone)]
enum Clients {
    Shared(TokenIntrospectionClient<TracedChannel>),
    PerThread(PerThread<TokenIntrospectionClient<TracedChannel>>),
}

impl Clients {
    fn get(&self) -> TokenIntrospectionClient<TracedChannel> {
        match self {
            Clients::Shared(c) => c.clone(),
            Clients::PerThread(c) => c.get(),
        }
    }
}

/// The introspection client with its cache of `V` (the service's principal) and `E` (its
/// refusal).
#[derive(Clone)]
pub struct IntrospectionClient<V, E> {
    clients: Clients,
    credential: CallerCredential,
    accepted: Arc<[String]>,
    cache: VerificationCache<V, E>,
    cache_metric: &'static str,
}

impl<V, E> IntrospectionClient<V, E>
where
    V: Revocable + From<Introspected>,
    E: Refusal + From<IntrospectionRefusal>,
{
    /// Checks the address, TLS files and credential now (a mistake is one line naming the key);
    /// connects on first use.
    pub fn new(s: IntrospectionSettings<'_>) -> Result<Self, ConfigError> {
        let endpoint = crate::grpc_client_endpoint(
            s.section,
            s.addr,
            s.tls,
            Duration::from_secs(3),
            Duration::from_secs(5),
        )?;
        let clients = if s.per_thread {
            Clients::PerThread(PerThread::new(move || {
                TokenIntrospectionClient::new(traced(endpoint.clone().connect_lazy()))
            }))
        } else {
            Clients::Shared(TokenIntrospectionClient::new(traced(
                endpoint.connect_lazy(),
            )))
        };
        Ok(Self {
            clients,
            credential: CallerCredential::new(&format!("{}.credential", s.section), s.credential)?,
            accepted: s.accepted_resources.into(),
            cache: VerificationCache::new(s.cache_ttl, s.cache_max_entries),
            cache_metric: s.cache_metric,
        })
    }

    /// The cache (the revocation feed evicts from it).
    pub fn cache(&self) -> &VerificationCache<V, E> {
        &self.cache
    }

    /// What `token` stands for, from the cache or auth-service. An answer is not cached when a
    /// revocation covering it arrived while it was in flight.
    pub async fn verify(&self, token: &str) -> Result<V, E> {
        let verify = async { self.introspect(token).await.map(V::from).map_err(E::from) };
        verify_cached(&self.cache, self.cache_metric, token, verify).await
    }

    async fn introspect(&self, token: &str) -> Result<Introspected, IntrospectionRefusal> {
        let request = self.credential.request(IntrospectRequest {
            token: token.to_owned(),
            // With one accepted resource auth-service checks the audience too; we always do.
            expected_resource: match &*self.accepted {
                [only] => only.clone(),
                _ => String::new(),
            },
        });
        let response = self
            .clients
            .get()
            .introspect(request)
            .await
            .map_err(|s| IntrospectionRefusal::Unavailable(s.code()))?
            .into_inner();
        accept(response, &self.accepted, now_secs())
    }
}

/// Answers `token` from `cache`, or verifies it with `verify` and caches the answer unless a
/// revocation arrived meanwhile that covers it. Lookups are counted in `metric` (`result` =
/// hit or miss).
pub async fn verify_cached<V: Revocable, E: Refusal>(
    cache: &VerificationCache<V, E>,
    metric: &'static str,
    token: &str,
    verify: impl Future<Output = Result<V, E>>,
) -> Result<V, E> {
    match cache.lookup(&token_key(token)) {
        Lookup::Hit(hit) => {
            metrics::counter!(metric, "result" => "hit").increment(1);
            hit
        }
        Lookup::Miss(fill) => {
            metrics::counter!(metric, "result" => "miss").increment(1);
            let result = verify.await;
            fill.store(&result);
            result
        }
    }
}

/// The checks of an introspection answer, in the order their refusals take precedence.
fn accept(
    r: IntrospectResponse,
    accepted: &[String],
    now: i64,
) -> Result<Introspected, IntrospectionRefusal> {
    if !r.active {
        return Err(IntrospectionRefusal::Inactive);
    }
    if !r.audience.iter().any(|a| accepted.contains(a)) {
        return Err(IntrospectionRefusal::WrongAudience);
    }
    if r.expires_at <= now {
        return Err(IntrospectionRefusal::Expired);
    }
    if r.token_kind != TokenKind::Access as i32 || r.subject.is_empty() {
        return Err(IntrospectionRefusal::Inactive);
    }
    Ok(Introspected {
        subject: r.subject,
        client_id: r.client_id,
        scopes: r.scopes,
        expires_at: r.expires_at,
        token_id: (!r.token_id.is_empty()).then_some(r.token_id),
        grant_id: (!r.grant_id.is_empty()).then_some(r.grant_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> IntrospectResponse {
        IntrospectResponse {
            active: true,
            subject: "alice".into(),
            client_id: "c1".into(),
            scopes: vec!["read".into()],
            audience: vec!["https://mcp.example/mcp".into()],
            expires_at: 2_000,
            token_kind: TokenKind::Access as i32,
            token_id: "t1".into(),
            grant_id: String::new(),
            ..Default::default()
        }
    }

    fn ours() -> Vec<String> {
        vec!["https://mcp.example/mcp".into()]
    }

    #[test]
    fn an_active_access_token_of_ours_is_accepted() {
        let got = accept(active(), &ours(), 1_000).unwrap();
        assert_eq!(got.subject, "alice");
        assert_eq!(got.token_id.as_deref(), Some("t1"));
        assert_eq!(got.grant_id, None, "an empty id names nothing");
    }

    #[test]
    fn every_check_refuses() {
        let refused = |r: IntrospectResponse| accept(r, &ours(), 1_000).unwrap_err();
        use IntrospectionRefusal::*;
        assert_eq!(refused(IntrospectResponse::default()), Inactive);
        assert_eq!(
            refused(IntrospectResponse {
                audience: vec!["https://other.example".into()],
                ..active()
            }),
            WrongAudience
        );
        assert_eq!(
            refused(IntrospectResponse {
                expires_at: 1_000,
                ..active()
            }),
            Expired
        );
        assert_eq!(
            refused(IntrospectResponse {
                token_kind: TokenKind::Refresh as i32,
                ..active()
            }),
            Inactive
        );
        assert_eq!(
            refused(IntrospectResponse {
                subject: String::new(),
                ..active()
            }),
            Inactive
        );
        // Another service's audience, when this one accepts several.
        let several = vec!["https://a.example".into(), "https://mcp.example/mcp".into()];
        assert!(accept(active(), &several, 1_000).is_ok());
    }
}
