//! The grant registry: one list of grant handlers that `/token` dispatches on, that the metadata
//! document advertises (`grant_types_supported`), that registration and configured clients are
//! validated against (which grant types exist, which an open registration may have, which need
//! a confidential client) and that labels the issuance metrics. Adding a grant is one module
//! and one line in [`ALL`]; nothing else names grant types.
//!
//! A grant written as `async fn handle(&AppState, &Client, &Form, Option<String>) ->
//! Result<TokenResponse, OAuthError>` plugs in with [`adapt!`]; a grant that needs more of the
//! request (the refresh grant's arrival time) or keeps state of its own implements
//! [`GrantHandler`] directly.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::Config;
use crate::error::OAuthError;
use crate::http::token::TokenResponse;
use crate::state::AppState;
use crate::store::clients::Client;

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod refresh_token;
pub mod token_exchange;

/// Who may register a client for a grant type (docs/client-policy.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone (RFC 7591 without an initial access token, a Client ID Metadata Document): grants
    /// where a user takes part.
    Open,
    /// Only with an operator's initial access token, or as a configured `[[clients]]` entry.
    Privileged,
}

/// What a grant handler is given: the authenticated client and the request's parameters.
pub struct GrantContext<'a> {
    pub state: &'a AppState,
    pub client: &'a Client,
    pub form: &'a HashMap<String, String>,
    pub ip: Option<String>,
    /// When `/token` received the request, before any store was waited on.
    pub received_at: std::time::Instant,
}

/// A successful `/token` answer: RFC 6749 §5.1, or RFC 8693 §2.2.1 (which adds
/// `issued_token_type`). Both are sent as they serialize.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum GrantResponse {
    Token(TokenResponse),
    Exchanged(token_exchange::ExchangeResponse),
}

impl From<TokenResponse> for GrantResponse {
    fn from(t: TokenResponse) -> Self {
        GrantResponse::Token(t)
    }
}

/// One grant type of `/token`.
#[async_trait]
pub trait GrantHandler: Send + Sync {
    /// The `grant_type` value (a short name or an absolute URI).
    fn grant_type(&self) -> &'static str;
    /// The `grant_type` label of `mcpauth_tokens_issued_total` (bounded, readable).
    fn metric_label(&self) -> &'static str;
    /// Who may register a client for it.
    fn registration(&self) -> Registration;
    /// Whether only a client with a secret may use it (refused at registration, at start for
    /// configured clients, and at `/token`).
    fn confidential_only(&self) -> bool {
        false
    }
    /// Whether this deployment offers it (e.g. token exchange only with a policy configured).
    /// A disabled grant is absent from the metadata, refused at registration and answers
    /// `unsupported_grant_type`.
    fn enabled(&self, _config: &Config) -> bool {
        true
    }
    async fn handle(&self, cx: GrantContext<'_>) -> Result<GrantResponse, OAuthError>;
}

/// Adapts a grant written as `async fn handle(&AppState, &Client, &HashMap<String, String>,
/// Option<String>) -> Result<TokenResponse, OAuthError>` into a `&'static dyn GrantHandler`:
/// `adapt!(module::handle, "grant type", "metric label", Registration::…, confidential_only)`.
macro_rules! adapt {
    ($handle:path, $uri:expr, $label:literal, $registration:expr, $confidential:expr) => {{
        struct Adapted;
        #[async_trait]
        impl GrantHandler for Adapted {
            fn grant_type(&self) -> &'static str {
                $uri
            }
            fn metric_label(&self) -> &'static str {
                $label
            }
            fn registration(&self) -> Registration {
                $registration
            }
            fn confidential_only(&self) -> bool {
                $confidential
            }
            async fn handle(&self, cx: GrantContext<'_>) -> Result<GrantResponse, OAuthError> {
                $handle(cx.state, cx.client, cx.form, cx.ip)
                    .await
                    .map(GrantResponse::from)
            }
        }
        &Adapted
    }};
}

/// Every grant this server implements, in the order the metadata lists them.
static ALL: &[&dyn GrantHandler] = &[
    adapt!(
        authorization_code::handle,
        "authorization_code",
        "authorization_code",
        Registration::Open,
        false
    ),
    &refresh_token::RefreshToken,
    adapt!(
        client_credentials::handle,
        "client_credentials",
        "client_credentials",
        Registration::Privileged,
        true
    ),
    &token_exchange::TokenExchange,
    adapt!(
        device_code::handle,
        device_code::GRANT_TYPE,
        "device_code",
        Registration::Privileged,
        false
    ),
];

/// The registry over [`ALL`].
#[derive(Debug, Clone, Copy)]
pub struct GrantRegistry {
    handlers: &'static [&'static dyn GrantHandler],
}

impl std::fmt::Debug for dyn GrantHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.grant_type())
    }
}

/// The server's grants.
pub fn registry() -> GrantRegistry {
    GrantRegistry { handlers: ALL }
}

impl GrantRegistry {
    /// The grants this deployment offers.
    pub fn enabled<'a>(
        &self,
        config: &'a Config,
    ) -> impl Iterator<Item = &'static dyn GrantHandler> + 'a {
        self.handlers
            .iter()
            .copied()
            .filter(move |h| h.enabled(config))
    }

    /// `grant_types_supported` of the metadata document.
    pub fn grant_types(&self, config: &Config) -> Vec<&'static str> {
        self.enabled(config).map(|h| h.grant_type()).collect()
    }

    /// The handler of `grant_type`, if this deployment offers it.
    pub fn find(&self, config: &Config, grant_type: &str) -> Option<&'static dyn GrantHandler> {
        self.enabled(config).find(|h| h.grant_type() == grant_type)
    }

    /// Grant types an open registration (or a Client ID Metadata Document) may have.
    pub fn open_grant_types(&self) -> impl Iterator<Item = &'static str> {
        self.handlers
            .iter()
            .filter(|h| h.registration() == Registration::Open)
            .map(|h| h.grant_type())
    }

    /// Checks a client's `grant_types` against the registry: each offered here, each allowed
    /// to a registration of this kind (`privileged`: with an initial access token or
    /// configured), and a confidential client for the grants that need one. The error is the
    /// message of an `invalid_client_metadata` answer or a configuration error.
    pub fn check_client_grants(
        &self,
        config: &Config,
        grant_types: &[String],
        privileged: bool,
        public: bool,
    ) -> Result<(), String> {
        for g in grant_types {
            let Some(h) = self.find(config, g) else {
                return Err(format!("grant type {g:?} is not supported"));
            };
            if !privileged && h.registration() != Registration::Open {
                return Err(format!(
                    "grant type {g:?} requires an initial access token from the operator of this server"
                ));
            }
            if public && h.confidential_only() {
                return Err(format!("{g} requires a confidential client"));
            }
        }
        Ok(())
    }

    /// Whether a client with these grant types was registered with an initial access token (or
    /// configured): it holds a grant an open registration cannot have.
    pub fn is_privileged(&self, grant_types: &[String]) -> bool {
        grant_types.iter().any(|g| {
            self.handlers
                .iter()
                .any(|h| h.grant_type() == g && h.registration() == Registration::Privileged)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_are_unique_and_labels_bounded() {
        let mut seen = std::collections::HashSet::new();
        for h in ALL {
            assert!(seen.insert(h.grant_type()), "{} twice", h.grant_type());
            assert!(
                h.metric_label()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                h.metric_label()
            );
        }
        assert_eq!(
            registry().open_grant_types().collect::<Vec<_>>(),
            ["authorization_code", "refresh_token"]
        );
    }
}
