//! `mcpauth.v1.UpstreamConnect.StartConnect`: mcp-service asks for a connect link on behalf of
//! the user whose MCP access token it presents. auth-service is the token's issuer, so it
//! validates the token locally; the caller cannot name a user. The link's secret part (a
//! "ticket") is stored only as its SHA-256, bound to (user, provider), single use, short-lived.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpauth_proto::v1::upstream_connect_server::UpstreamConnect;
use mcpauth_proto::v1::{StartConnectRequest, StartConnectResponse};
use serde_json::json;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditKind};
use crate::config::GrpcPermission;
use crate::domain::token::hash;
use crate::grpc::Callers;
use crate::state::AppState;
use crate::store::ephemeral::ConnectTicket;

pub struct Connect {
    state: AppState,
    callers: Callers,
}

impl Connect {
    pub fn new(state: AppState) -> Self {
        let callers = Callers::from_config(&state);
        Self { state, callers }
    }
}

#[tonic::async_trait]
impl UpstreamConnect for Connect {
    async fn start_connect(
        &self,
        request: Request<StartConnectRequest>,
    ) -> Result<Response<StartConnectResponse>, Status> {
        let caller = self
            .callers
            .authorize(&request, GrpcPermission::StartConnect, "StartConnect")
            .await?;
        let (caller, resources) = (caller.name.clone(), caller.resources.clone());
        let req = request.into_inner();
        let claims = self
            .state
            .tokens
            .validate_access(&req.access_token)
            .ok_or_else(|| Status::unauthenticated("the access token is not active"))?;
        // The token must have been issued for a resource this caller serves (a token another
        // resource server received cannot be replayed here), and carry the connect scope.
        if !resources.iter().any(|r| r == &claims.aud) {
            tracing::warn!(caller, "StartConnect with a token for another audience");
            return Err(Status::permission_denied(
                "the access token was not issued for this caller's resource",
            ));
        }
        let required = &self.state.config.upstream.connect_scope;
        let mut scopes = claims.scope.split(' ').filter(|s| !s.is_empty());
        let scope_ok = if required.is_empty() {
            scopes.next().is_some()
        } else {
            scopes.any(|s| s == required)
        };
        if !scope_ok {
            return Err(Status::permission_denied(
                "the access token lacks the scope needed to connect a provider",
            ));
        }
        // client_credentials tokens name a client, not a user.
        let user_id = Uuid::parse_str(&claims.sub)
            .map_err(|_| Status::failed_precondition("the access token does not name a user"))?;
        if self.state.upstream.get(&req.provider).is_none() {
            return Err(Status::invalid_argument("unknown provider"));
        }
        let unavailable = |e: crate::error::StoreError| {
            tracing::error!(error = %e, "start connect failed");
            Status::unavailable("temporarily unavailable")
        };
        if !self
            .state
            .users
            .exists(user_id)
            .await
            .map_err(unavailable)?
        {
            return Err(Status::failed_precondition(
                "the access token does not name a user",
            ));
        }
        let mut raw = [0u8; 32];
        self.state.tokens.keys.fill_random(&mut raw);
        let ticket = URL_SAFE_NO_PAD.encode(raw);
        let ttl = self.state.config.upstream.connect_ttl_secs;
        let now = chrono::Utc::now().timestamp();
        let expires_at = now + ttl as i64;
        let record = ConnectTicket {
            user_id,
            provider: req.provider.clone(),
            csrf: self.state.tokens.keys.random_id() + &self.state.tokens.keys.random_id(),
            browser_sha256: None,
            expires_at,
            created_at: Some(now),
        };
        self.state
            .ephemeral
            .connect_tickets
            .put(&hash(&ticket), &record, ttl)
            .await
            .map_err(unavailable)?;
        self.state
            .audit
            .record(
                AuditEvent::new(AuditKind::ConnectStarted)
                    .client(&claims.client_id)
                    .user(user_id)
                    .detail(json!({"provider": req.provider, "caller": caller})),
            )
            .await;
        Ok(Response::new(StartConnectResponse {
            connect_url: format!("{}/connect/{ticket}", self.state.config.issuer),
            expires_at,
        }))
    }
}
