//! The RFC 8693 token-exchange grant at `POST /token`: the form's parameters go to
//! `crate::token_exchange`, which the gRPC `Exchange` shares; the answer is RFC 8693 §2.2.1
//! (`issued_token_type`, never a refresh token).

use serde::Serialize;

use crate::config::Config;
use crate::error::OAuthError;
use crate::token_exchange::{self as te, ExchangeParams};

use super::{GrantContext, GrantHandler, GrantResponse, Registration};

/// RFC 8693 §2.2.1 response.
#[derive(Debug, Serialize)]
pub struct ExchangeResponse {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// The registry entry.
pub struct TokenExchange;

#[async_trait::async_trait]
impl GrantHandler for TokenExchange {
    fn grant_type(&self) -> &'static str {
        te::GRANT_TYPE
    }
    fn metric_label(&self) -> &'static str {
        "token_exchange"
    }
    fn registration(&self) -> Registration {
        Registration::Privileged
    }
    fn confidential_only(&self) -> bool {
        true
    }
    fn enabled(&self, config: &Config) -> bool {
        te::offered(config)
    }
    async fn handle(&self, cx: GrantContext<'_>) -> Result<GrantResponse, OAuthError> {
        let f = |k: &str| cx.form.get(k).map(String::as_str);
        let params = ExchangeParams {
            subject_token: f("subject_token"),
            subject_token_type: f("subject_token_type"),
            actor_token: f("actor_token"),
            actor_token_type: f("actor_token_type"),
            resource: f("resource"),
            audience: f("audience"),
            scope: f("scope"),
            requested_token_type: f("requested_token_type"),
        };
        let state = cx.state;
        let x = te::exchange_audited(
            &state.config,
            &state.tokens,
            &state.audit,
            &cx.client.client_id,
            "http",
            cx.ip,
            params,
        )
        .await?;
        Ok(GrantResponse::Exchanged(ExchangeResponse {
            access_token: x.access_token,
            issued_token_type: te::ACCESS_TOKEN_TYPE,
            token_type: "Bearer",
            expires_in: x.expires_in,
            scope: x.claims.scope,
        }))
    }
}
