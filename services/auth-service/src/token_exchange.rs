//! RFC 8693 token exchange, shared by `POST /token` (`http::grants::token_exchange`) and the
//! gRPC `Exchange`. A service holding a user's access token (the subject token) gets a token
//! for another configured resource: same `sub`, audience the target, scopes mapped by the
//! policy from the subject's (never more), an `act` chain naming the exchanger (nested when the
//! subject token was itself exchanged), and a lifetime that ends no later than the subject's.
//!
//! It reads only the configuration and the token service, and writes nothing but a batched
//! audit event: the subject token is opened and checked against the in-memory deny list, the
//! new token is sealed, no store is touched on the request path.

use chrono::Utc;
use mcpauth_runtime::ConfigError;
use serde_json::json;

use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::config::{Config, ExchangePolicyConfig};
use crate::domain::resource;
use crate::domain::scope::ScopeSet;
use crate::domain::token::{AccessClaims, Actor};
use crate::error::OAuthError;
use crate::tokens::TokenService;

/// The grant type (RFC 8693 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only token type accepted and issued (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Longest actor chain an exchanged token may carry: each exchange adds one and the chain is
/// sealed into the token, so it must stay bounded.
pub const MAX_ACTORS: usize = 4;

/// The request parameters of RFC 8693 §2.1, as either transport received them.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExchangeParams<'a> {
    pub subject_token: Option<&'a str>,
    pub subject_token_type: Option<&'a str>,
    pub actor_token: Option<&'a str>,
    pub actor_token_type: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
}

/// An issued exchanged token.
#[derive(Debug)]
pub struct Exchanged {
    pub access_token: String,
    pub claims: AccessClaims,
    pub expires_in: i64,
}

/// Whether this deployment offers token exchange at all.
pub fn offered(config: &Config) -> bool {
    config.token_exchange.enabled && !config.token_exchange.policies.is_empty()
}

/// Exchanges `p.subject_token` for `exchanger` (an authenticated confidential client id, or a
/// gRPC caller's name) and records the outcome in the audit trail.
pub async fn exchange_audited(
    config: &Config,
    tokens: &TokenService,
    audit: &AuditLog,
    exchanger: &str,
    transport: &'static str,
    ip: Option<String>,
    p: ExchangeParams<'_>,
) -> Result<Exchanged, OAuthError> {
    let result = exchange(config, tokens, exchanger, p);
    let event = match &result {
        Ok(x) => {
            let c = &x.claims;
            let mut ev = AuditEvent::new(AuditKind::TokenExchanged).detail(json!({
                "transport": transport, "jti": c.jti, "sub": c.sub, "aud": c.aud,
                "scope": c.scope, "exp": c.exp, "act": c.act.as_ref().map(|a| a.to_json()),
            }));
            if let Ok(user) = c.sub.parse() {
                ev = ev.user(user);
            }
            if let Some(g) = c.grant_id.as_deref().and_then(|g| g.parse().ok()) {
                ev = ev.grant(g);
            }
            ev
        }
        Err(e) => AuditEvent::new(AuditKind::TokenExchangeRefused).detail(json!({
            "transport": transport, "error": e.error, "reason": e.error_description,
        })),
    };
    audit.record(event.client(exchanger).ip(ip)).await;
    let outcome = if result.is_ok() { "issued" } else { "refused" };
    metrics::counter!("mcpauth_token_exchanges_total", "transport" => transport, "outcome" => outcome)
        .increment(1);
    result
}

/// The exchange itself: validation, policy, the new token. No I/O.
pub fn exchange(
    config: &Config,
    tokens: &TokenService,
    exchanger: &str,
    p: ExchangeParams<'_>,
) -> Result<Exchanged, OAuthError> {
    if p.requested_token_type
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type: only {ACCESS_TOKEN_TYPE} is issued"
        )));
    }
    let subject_token = p
        .subject_token
        .ok_or_else(|| OAuthError::invalid_request("subject_token is missing"))?;
    match p.subject_token_type {
        None => return Err(OAuthError::invalid_request("subject_token_type is missing")),
        Some(t) if t != ACCESS_TOKEN_TYPE => {
            return Err(OAuthError::invalid_request(format!(
                "subject_token_type: only {ACCESS_TOKEN_TYPE} is accepted"
            )));
        }
        Some(_) => {}
    }
    match (p.actor_token, p.actor_token_type) {
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type is required with actor_token",
            ));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type is given without actor_token",
            ));
        }
        (Some(_), Some(t)) if t != ACCESS_TOKEN_TYPE => {
            return Err(OAuthError::invalid_request(format!(
                "actor_token_type: only {ACCESS_TOKEN_TYPE} is accepted"
            )));
        }
        _ => {}
    }
    let target = target(config, p.resource, p.audience)?;
    // Who may exchange at all comes before looking at any token.
    let mine: Vec<&ExchangePolicyConfig> = config
        .token_exchange
        .policies
        .iter()
        .filter(|pol| pol.clients.iter().any(|c| c == exchanger))
        .collect();
    if mine.is_empty() {
        return Err(OAuthError::unauthorized_client(
            "this client may not exchange tokens",
        ));
    }
    // RFC 8693 §2.2.2: an invalid subject or actor token is `invalid_request`.
    let subject = tokens.validate_access(subject_token).ok_or_else(|| {
        OAuthError::invalid_request("subject_token is invalid, expired or revoked")
    })?;
    let policy = mine
        .into_iter()
        .find(|pol| pol.to == target && pol.from.contains(&subject.aud))
        .ok_or_else(|| {
            OAuthError::invalid_target(format!(
                "no policy lets this client exchange tokens for {} into tokens for {target}",
                subject.aud
            ))
        })?;
    let actor_sub = match p.actor_token {
        None => exchanger.to_owned(),
        Some(t) => {
            let actor = tokens.validate_access(t).ok_or_else(|| {
                OAuthError::invalid_request("actor_token is invalid, expired or revoked")
            })?;
            if actor.client_id != exchanger {
                return Err(OAuthError::invalid_request(
                    "actor_token was not issued to this client",
                ));
            }
            actor.sub
        }
    };
    let act = Box::new(Actor {
        sub: actor_sub,
        act: subject.act.clone(),
    });
    if act.depth() > MAX_ACTORS {
        return Err(OAuthError::invalid_request(format!(
            "the actor chain would exceed {MAX_ACTORS} actors"
        )));
    }
    let scope = mapped_scope(policy, &subject.scope, p.scope, &target)?;
    let now = Utc::now().timestamp();
    let max_ttl = match config.token_exchange.max_ttl_secs {
        0 => tokens.access_ttl(),
        t => t,
    };
    let exp = (now + max_ttl).min(subject.exp);
    let claims = AccessClaims {
        jti: tokens.keys.random_id(),
        sub: subject.sub,
        client_id: exchanger.to_owned(),
        // Revoking the user's grant (or the user) revokes what was exchanged from it too.
        grant_id: subject.grant_id,
        aud: target,
        scope,
        iat: now,
        exp,
        act: Some(act),
    };
    Ok(Exchanged {
        access_token: tokens.issue_claims(&claims),
        expires_in: exp - now,
        claims,
    })
}

/// The target resource from `resource` and/or `audience` (RFC 8693 §2.1: both name where the
/// token will be used; here each must name a configured resource, and the same one).
fn target(
    config: &Config,
    resource: Option<&str>,
    audience: Option<&str>,
) -> Result<String, OAuthError> {
    let uris = config.resource_uris();
    let find = |r: &str| {
        resource::find(&uris, r)
            .map(str::to_owned)
            .ok_or_else(|| OAuthError::invalid_target(format!("unknown resource {r:?}")))
    };
    match (
        resource.map(find).transpose()?,
        audience.map(find).transpose()?,
    ) {
        (Some(r), Some(a)) if r != a => Err(OAuthError::invalid_target(
            "resource and audience name different resources",
        )),
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Err(OAuthError::invalid_request(
            "resource or audience is required",
        )),
    }
}

/// The scopes of the exchanged token: what the subject's scopes map to under the policy,
/// narrowed to the requested `scope` when there is one (which must stay within it).
fn mapped_scope(
    policy: &ExchangePolicyConfig,
    subject_scope: &str,
    requested: Option<&str>,
    target: &str,
) -> Result<String, OAuthError> {
    let held = ScopeSet::parse(subject_scope).unwrap_or_default();
    let allowed = ScopeSet::from_strings(
        held.iter()
            .filter_map(|s| policy.scopes.get(s))
            .flatten()
            .cloned(),
    );
    let issued = match requested {
        None => allowed,
        Some(r) => {
            let asked = ScopeSet::parse(r).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
            let extra = asked.difference(&allowed);
            if !extra.is_empty() {
                return Err(OAuthError::invalid_scope(format!(
                    "the subject token does not allow {extra} at {target}"
                )));
            }
            asked
        }
    };
    if issued.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "the subject token's scopes allow nothing at {target}"
        )));
    }
    Ok(issued.to_string())
}

/// Checks `[token_exchange]`: every policy names clients, known resources as `from` and `to`,
/// and maps scopes of its `from` resources to scopes of `to`; one line naming the key.
pub fn validate_config(cfg: &Config) -> Result<(), ConfigError> {
    let err = |m: String| Err(ConfigError::new(m));
    let te = &cfg.token_exchange;
    if te.max_ttl_secs < 0 {
        return err("token_exchange.max_ttl_secs: must not be negative".into());
    }
    let scopes_of = |uri: &str| {
        cfg.resources
            .iter()
            .find(|r| r.uri == uri)
            .map(|r| ScopeSet::from_strings(r.scopes.iter().cloned()))
    };
    let mut seen = std::collections::HashMap::new();
    for (i, pol) in te.policies.iter().enumerate() {
        let key = format!("token_exchange.policies[{i}]");
        if pol.clients.is_empty() || pol.clients.iter().any(|c| c.is_empty()) {
            return err(format!(
                "{key}.clients: name at least one client, none empty"
            ));
        }
        if pol.from.is_empty() {
            return err(format!("{key}.from: name at least one resource"));
        }
        let Some(to_scopes) = scopes_of(&pol.to) else {
            return err(format!(
                "{key}.to: {:?} is not a configured resource",
                pol.to
            ));
        };
        let mut from_scopes = ScopeSet::default();
        for f in &pol.from {
            let Some(s) = scopes_of(f) else {
                return err(format!("{key}.from: {f:?} is not a configured resource"));
            };
            from_scopes =
                ScopeSet::from_strings(from_scopes.iter().chain(s.iter()).map(str::to_owned));
        }
        if pol.scopes.is_empty() {
            return err(format!("{key}.scopes: map at least one scope"));
        }
        for (from, to) in &pol.scopes {
            if !from_scopes.contains(from) {
                return err(format!(
                    "{key}.scopes: {from:?} is not a scope of any resource in from"
                ));
            }
            if let Some(bad) = to.iter().find(|s| !to_scopes.contains(s)) {
                return err(format!(
                    "{key}.scopes.{from}: {bad:?} is not a scope of {}",
                    pol.to
                ));
            }
        }
        for c in &pol.clients {
            for f in &pol.from {
                if let Some(j) = seen.insert((c.as_str(), f.as_str(), pol.to.as_str()), i) {
                    return err(format!(
                        "{key}: {c:?} may already exchange from {f} to {} (policies[{j}]); merge them",
                        pol.to
                    ));
                }
            }
        }
    }
    Ok(())
}
