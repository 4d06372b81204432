//! Revocations as the services that only verify tokens see them: auth-service publishes each
//! one on `<auth prefix>:events`, and mcp-service and token-vault keep a [`VerificationCache`]
//! of introspection results that a revocation empties of the tokens it covers (see [`feed`]).

pub mod cache;
pub mod feed;

pub use cache::{
    Fill, Lookup, Refusal, Revocable, TokenKey, VerificationCache, now_secs, token_key,
};

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One access token, by its id (`jti`).
    Token,
    /// Every token of a grant.
    Grant,
    /// Every token issued to a client.
    Client,
    /// Every token of a user (the token's subject).
    Subject,
}

impl Scope {
    /// The scope of a revocation event's `kind`; `None` for a kind this build does not know.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "token" => Scope::Token,
            "grant" => Scope::Grant,
            "client" => Scope::Client,
            "user" | "subject" => Scope::Subject,
            _ => return None,
        })
    }
}

/// One revocation: every token whose id of `scope` is `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub scope: Scope,
    pub id: String,
}

impl Revocation {
    /// Whether this revocation covers a token with these ids.
    pub fn covers(&self, ids: &RevocationIds<'_>) -> bool {
        ids.iter().any(|(s, id)| s == self.scope && id == self.id)
    }
}

/// The ids a revocation may name a verified token by.
#[derive(Debug, Clone, Copy)]
pub struct RevocationIds<'a> {
    pub token_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub client_id: &'a str,
    pub subject: &'a str,
}

impl<'a> RevocationIds<'a> {
    /// Each `(scope, id)` pair (empty ids are skipped: they name nothing).
    pub fn iter(&self) -> impl Iterator<Item = (Scope, &'a str)> + use<'a> {
        [
            (Scope::Token, self.token_id),
            (Scope::Grant, self.grant_id),
            (Scope::Client, Some(self.client_id)),
            (Scope::Subject, Some(self.subject)),
        ]
        .into_iter()
        .filter_map(|(s, id)| id.filter(|i| !i.is_empty()).map(|i| (s, i)))
    }
}
