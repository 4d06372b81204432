//! Configuration checks of who may do what: configured clients are held to the rules of
//! registered ones (docs/configuration.md), and the introspection and registration policies
//! name well-formed clients and hashes. Each error is one line naming the key.

use mcpauth_runtime::ConfigError;

use crate::config::Config;
use crate::domain::client_metadata::{self as limits, GRANTS};
use crate::domain::redirect_uri::validate_for_registration;
use crate::domain::scope::ScopeSet;

/// Checks `clients`, `introspection.clients`, `resources[].introspection_clients` and
/// `registration.initial_access_tokens_sha256`.
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let err = |m: String| Err(ConfigError::new(m));
    let supported = ScopeSet::from_strings(cfg.resources.iter().flat_map(|r| r.scopes.clone()));
    let mut seen = std::collections::HashSet::new();
    for (i, c) in cfg.clients.iter().enumerate() {
        let key = format!("clients[{i}]");
        if let Err(e) = client_id(&c.client_id) {
            return err(format!("{key}.client_id: {e}"));
        }
        if !seen.insert(c.client_id.as_str()) {
            return err(format!(
                "{key}.client_id: {:?} is configured twice",
                c.client_id
            ));
        }
        if let Some(n) = &c.client_name
            && let Err(e) = limits::check_text("client_name", n, limits::MAX_NAME_CHARS)
        {
            return err(format!("{key}.{e}"));
        }
        if c.grant_types.is_empty() {
            return err(format!("{key}.grant_types: must not be empty"));
        }
        if let Some(g) = c.grant_types.iter().find(|g| !GRANTS.contains(&g.as_str())) {
            return err(format!("{key}.grant_types: {g:?} is not supported"));
        }
        let uses_code = c.grant_types.iter().any(|g| g == "authorization_code");
        if uses_code && c.redirect_uris.is_empty() {
            return err(format!(
                "{key}.redirect_uris: required for the authorization_code grant"
            ));
        }
        if c.redirect_uris.len() > limits::MAX_REDIRECT_URIS {
            return err(format!(
                "{key}.redirect_uris: at most {}",
                limits::MAX_REDIRECT_URIS
            ));
        }
        for u in &c.redirect_uris {
            if let Err(e) = limits::check_uri_len("redirect_uris", u) {
                return err(format!("{key}.{e}"));
            }
            if let Err(e) = validate_for_registration(u, &[]) {
                return err(format!("{key}.redirect_uris: {u:?}: {e}"));
            }
        }
        if c.grant_types.iter().any(|g| g == "client_credentials")
            && c.token_endpoint_auth_method == "none"
        {
            return err(format!(
                "{key}.grant_types: client_credentials requires a confidential client"
            ));
        }
        if let Some(s) = &c.scope {
            let set =
                ScopeSet::parse(s).map_err(|e| ConfigError::new(format!("{key}.scope: {e}")))?;
            let unknown = set.difference(&supported);
            if !unknown.is_empty() {
                return err(format!(
                    "{key}.scope: {unknown} is not a scope of any configured resource"
                ));
            }
        }
    }
    let lists = std::iter::once((
        "introspection.clients".to_owned(),
        &cfg.introspection.clients,
    ))
    .chain(cfg.resources.iter().enumerate().map(|(i, r)| {
        (
            format!("resources[{i}].introspection_clients"),
            &r.introspection_clients,
        )
    }));
    for (key, ids) in lists {
        for id in ids {
            if let Err(e) = client_id(id) {
                return err(format!("{key}: {id:?}: {e}"));
            }
            if let Some(c) = cfg.clients.iter().find(|c| &c.client_id == id)
                && c.token_endpoint_auth_method == "none"
            {
                return err(format!(
                    "{key}: {id:?} is a public client; introspection needs client authentication"
                ));
            }
        }
    }
    for (i, h) in cfg
        .registration
        .initial_access_tokens_sha256
        .iter()
        .enumerate()
    {
        if crate::domain::token::unhex(&h.0).is_none_or(|h| h.len() != 32) {
            return err(format!(
                "registration.initial_access_tokens_sha256[{i}]: must be 64 hex characters (auth-service hash-secret)"
            ));
        }
    }
    Ok(())
}

/// A configured client id: 1-255 bytes of visible ASCII.
fn client_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > limits::MAX_CLIENT_ID_BYTES
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "must be 1-{} visible ASCII characters",
            limits::MAX_CLIENT_ID_BYTES
        ));
    }
    Ok(())
}
