//! Who is calling: bearer-token verification behind one trait, scopes with hierarchies, and the
//! RFC 6750 / RFC 9728 challenges that tell a client how to get (more) authorization.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures_util::future::BoxFuture;

/// The caller's own bearer token, kept in memory only so that tools can ask our own token-vault
/// (and auth-service) for things on the user's behalf. Never logged (its `Debug` is redacted),
/// never stored, and never sent to an upstream API.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::from(token))
    }

    /// The token itself: only for gRPC calls to token-vault and auth-service.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for BearerToken {}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user (or, for machine clients, the client) the token speaks for.
    pub subject: String,
    pub client_id: String,
    pub scopes: BTreeSet<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// The token's own id (for revocation and logs), when the issuer gives one.
    pub token_id: Option<String>,
    /// The grant the token belongs to (auth-service), for revocation.
    pub grant_id: Option<String>,
    /// The bearer token of this request (set after verification, never cached with the
    /// principal; `Debug` prints it redacted).
    pub access_token: Option<BearerToken>,
}

/// Why a token was refused. All of them answer 401 `invalid_token`; the variants are for logs
/// and metrics. `Unavailable` (the verifier could not reach its issuer) answers 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("token is not active")]
    Inactive,
    #[error("token was issued for another resource")]
    WrongAudience,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token has expired")]
    Expired,
    #[error("token is malformed")]
    Malformed,
    #[error("token verification is unavailable: {0}")]
    Unavailable(String),
}

/// Wraps a verifier so that the principal it returns carries the request's bearer token (tools
/// call token-vault with the user's own token). The inner verifier's cache keeps principals
/// without it.
pub struct CarryBearer(pub Arc<dyn TokenVerifier>);

impl TokenVerifier for CarryBearer {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move {
            let mut p = self.0.verify(token).await?;
            p.access_token = Some(BearerToken::new(token));
            Ok(p)
        })
    }
}

/// Verifies a bearer token for this resource. Every implementation must check that the token's
/// audience is this server's resource (RFC 8707): a token for another resource is refused.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>>;
}

/// Scope checks with hierarchies: a scope implies every scope configured under it, and every
/// scope it prefixes followed by `.` (`mcp:tools` implies `mcp:tools.read`).
#[derive(Debug, Clone, Default)]
pub struct ScopePolicy {
    implications: Arc<HashMap<String, Vec<String>>>,
}

impl ScopePolicy {
    pub fn new(implications: HashMap<String, Vec<String>>) -> Self {
        Self {
            implications: Arc::new(implications),
        }
    }

    /// Whether `granted` covers `needed`.
    pub fn grants(&self, granted: &BTreeSet<String>, needed: &str) -> bool {
        granted.iter().any(|g| self.implies(g, needed, 0))
    }

    fn implies(&self, granted: &str, needed: &str, depth: u8) -> bool {
        if granted == needed {
            return true;
        }
        if needed.len() > granted.len()
            && needed.starts_with(granted)
            && needed.as_bytes()[granted.len()] == b'.'
        {
            return true;
        }
        depth < 8
            && self
                .implications
                .get(granted)
                .is_some_and(|narrower| narrower.iter().any(|n| self.implies(n, needed, depth + 1)))
    }

    /// The needed scopes `granted` does not cover.
    pub fn missing<'a>(&self, granted: &BTreeSet<String>, needed: &'a [String]) -> Vec<&'a str> {
        needed
            .iter()
            .filter(|n| !self.grants(granted, n))
            .map(String::as_str)
            .collect()
    }
}

/// Builds `WWW-Authenticate` values. Quoted values never contain `"` or `\` (we control them).
pub struct Challenge<'a> {
    pub resource_metadata: &'a str,
    pub scope: &'a str,
}

fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl Challenge<'_> {
    /// 401. Without credentials, RFC 6750 §3.1 says to omit the error code.
    pub fn unauthorized(&self, error: Option<(&str, &str)>) -> String {
        let mut v = String::from("Bearer ");
        if let Some((code, description)) = error {
            v.push_str(&format!(
                "error=\"{}\", error_description=\"{}\", ",
                quote(code),
                quote(description)
            ));
        }
        v.push_str(&format!(
            "resource_metadata=\"{}\", scope=\"{}\"",
            quote(self.resource_metadata),
            quote(self.scope)
        ));
        v
    }

    /// 403 step-up: `scope` lists every scope the operation needs (granted ones included,
    /// because some clients request exactly the challenged scope).
    pub fn insufficient_scope(&self, description: &str) -> String {
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\", resource_metadata=\"{}\"",
            quote(description),
            quote(self.scope),
            quote(self.resource_metadata)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn the_bearer_token_is_redacted_in_debug_output() {
        let t = BearerToken::new("mcp_at_secret-value");
        assert!(!format!("{t:?}").contains("secret"));
        let p = Principal {
            subject: "u".into(),
            client_id: "c".into(),
            scopes: BTreeSet::new(),
            expires_at: 0,
            token_id: None,
            grant_id: None,
            access_token: Some(t.clone()),
        };
        assert!(!format!("{p:?}").contains("secret"));
        assert_eq!(t.expose(), "mcp_at_secret-value");
        assert_eq!(t, BearerToken::new("mcp_at_secret-value"));
        assert_ne!(t, BearerToken::new("mcp_at_other"));
    }

    #[test]
    fn exact_scope_grants() {
        let p = ScopePolicy::default();
        assert!(p.grants(&set(&["mcp:tools.read"]), "mcp:tools.read"));
        assert!(!p.grants(&set(&["mcp:tools.read"]), "mcp:tools.write"));
    }

    #[test]
    fn broad_scope_implies_dotted_narrower_ones() {
        let p = ScopePolicy::default();
        assert!(p.grants(&set(&["mcp:tools"]), "mcp:tools.read"));
        assert!(p.grants(&set(&["mcp:tools"]), "mcp:tools.write.admin"));
        assert!(!p.grants(&set(&["mcp:tools"]), "mcp:toolsmith"));
        assert!(!p.grants(&set(&["mcp:tools.read"]), "mcp:tools"));
    }

    #[test]
    fn configured_implications_are_transitive() {
        let p = ScopePolicy::new(HashMap::from([
            ("admin".to_owned(), vec!["mcp:tools".to_owned()]),
            (
                "mcp:tools.write".to_owned(),
                vec!["mcp:tools.read".to_owned()],
            ),
        ]));
        assert!(p.grants(&set(&["admin"]), "mcp:tools.read"));
        assert!(p.grants(&set(&["mcp:tools.write"]), "mcp:tools.read"));
        assert!(!p.grants(&set(&["mcp:tools.read"]), "mcp:tools.write"));
        let needed = vec!["mcp:tools.read".to_owned(), "mcp:tools.delete".to_owned()];
        assert_eq!(
            p.missing(&set(&["mcp:tools.write"]), &needed),
            vec!["mcp:tools.delete"]
        );
    }

    #[test]
    fn challenges_start_with_bearer_and_quote_safely() {
        let c = Challenge {
            resource_metadata: "http://h/.well-known/oauth-protected-resource/mcp",
            scope: "a b",
        };
        let v = c.unauthorized(None);
        assert!(v.starts_with("Bearer "));
        assert!(!v.contains("error="));
        let v = c.unauthorized(Some(("invalid_token", "bad \"quote\"")));
        assert!(v.contains("error=\"invalid_token\""));
        assert!(v.contains("error_description=\"bad quote\""));
        let v = c.insufficient_scope("need more");
        assert!(v.starts_with("Bearer error=\"insufficient_scope\""));
        assert!(v.contains("scope=\"a b\""));
    }
}
