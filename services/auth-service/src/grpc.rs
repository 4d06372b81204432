//! The gRPC face (tonic): `mcpauth.v1.TokenIntrospection`, `mcpauth.v1.UpstreamConnect`
//! (`grpc_connect`), `mcpauth.v1.UserAdmin` (`grpc_admin`), `grpc.health.v1` and server
//! reflection. Callers authenticate with a service credential (`authorization: Bearer …`)
//! whose SHA-256 is listed in `grpc.callers`, and each RPC needs its permission there
//! (`introspect`, `start_connect`, `admin`, `exchange`): anything else is PERMISSION_DENIED.

use mcpauth_proto::v1::token_introspection_server::{TokenIntrospection, TokenIntrospectionServer};
use mcpauth_proto::v1::upstream_connect_server::UpstreamConnectServer;
use mcpauth_proto::v1::user_admin_server::UserAdminServer;
use mcpauth_proto::v1::{
    Actor as ProtoActor, ExchangeRequest, ExchangeResponse, IntrospectRequest, IntrospectResponse,
    TokenKind as ProtoKind,
};
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::config::GrpcPermission;
use crate::domain::token::{Actor, hash, unhex};
use crate::error::OAuthError;
use crate::state::AppState;
use crate::token_exchange::{ACCESS_TOKEN_TYPE, ExchangeParams};
use crate::tokens::{ActiveToken, TokenKind};

/// One configured caller: its name, the SHA-256 of its credential, what it may call.
pub struct KnownCaller {
    pub name: String,
    digest: Vec<u8>,
    permissions: HashSet<GrpcPermission>,
    /// Audiences of the user tokens it may present to `StartConnect`.
    pub resources: Vec<String>,
    /// Audiences of the tokens `Introspect` describes to it; `None`: every audience (no
    /// `resources` configured).
    introspect_resources: Option<Vec<String>>,
    /// Clients whose refresh tokens `Introspect` describes to it (`*`: every client's).
    refresh_token_clients: Vec<String>,
}

impl KnownCaller {
    /// Whether `Introspect` may describe `t` to this caller; anything else answers
    /// `active = false`, which reveals nothing (the gRPC twin of HTTP's `may_describe`). A token
    /// must be of one of the caller's `resources`, when it has some; a refresh token also of one
    /// of its `refresh_token_clients` — HTTP describes a refresh token to its own client only.
    fn may_describe(&self, t: &ActiveToken) -> bool {
        let audience = self
            .introspect_resources
            .as_ref()
            .is_none_or(|r| r.contains(&t.audience));
        audience
            && (t.kind == TokenKind::Access
                || self
                    .refresh_token_clients
                    .iter()
                    .any(|c| c == "*" || *c == t.client_id))
    }
}

/// The services allowed to call, each with the SHA-256 of its credential and its permissions.
#[derive(Clone)]
pub struct Callers {
    callers: Arc<Vec<KnownCaller>>,
    audit: AuditLog,
}

impl Callers {
    pub fn from_config(state: &AppState) -> Self {
        let all = state.config.resource_uris();
        let callers = state
            .config
            .grpc
            .callers
            .iter()
            .filter_map(|c| {
                Some(KnownCaller {
                    name: c.name.clone(),
                    digest: unhex(&c.credential_sha256)?,
                    permissions: c.granted(state.config.dev_mode).into_iter().collect(),
                    resources: c.start_connect_resources(&all),
                    introspect_resources: c.resources.clone(),
                    refresh_token_clients: c.refresh_token_clients.clone(),
                })
            })
            .collect();
        Self {
            callers: Arc::new(callers),
            audit: state.audit.clone(),
        }
    }

    /// Names the calling service, or refuses it. Every configured credential is compared, in
    /// constant time, so the time taken does not reveal which one was close.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<&KnownCaller, Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("a service credential is required"))?;
        let digest = hash(presented);
        let mut found = None;
        for c in self.callers.iter() {
            if bool::from(digest.ct_eq(&c.digest)) {
                found = Some(c);
            }
        }
        found.ok_or_else(|| Status::unauthenticated("unknown service credential"))
    }

    /// Authenticates the caller and checks that it holds `needed`; a caller without it gets
    /// PERMISSION_DENIED, logged and audited (the caller's name and the RPC, never a credential).
    pub async fn authorize<T>(
        &self,
        req: &Request<T>,
        needed: GrpcPermission,
        rpc: &'static str,
    ) -> Result<&KnownCaller, Status> {
        let caller = self.authenticate(req)?;
        if caller.permissions.contains(&needed) {
            return Ok(caller);
        }
        tracing::warn!(caller = %caller.name, rpc, permission = needed.name(), "grpc permission denied");
        metrics::counter!("mcpauth_grpc_permission_denied_total", "rpc" => rpc).increment(1);
        self.audit
            .record(
                AuditEvent::new(AuditKind::GrpcPermissionDenied).detail(
                    json!({"caller": caller.name, "rpc": rpc, "permission": needed.name()}),
                ),
            )
            .await;
        Err(Status::permission_denied(format!(
            "caller {:?} lacks the {} permission",
            caller.name,
            needed.name()
        )))
    }
}

/// The introspection service.
pub struct Introspection {
    state: AppState,
    callers: Callers,
}

impl Introspection {
    pub fn new(state: AppState) -> Self {
        let callers = Callers::from_config(&state);
        Self { state, callers }
    }
}

#[tonic::async_trait]
impl TokenIntrospection for Introspection {
    async fn introspect(
        &self,
        request: Request<IntrospectRequest>,
    ) -> Result<Response<IntrospectResponse>, Status> {
        let caller = self
            .callers
            .authorize(&request, GrpcPermission::Introspect, "Introspect")
            .await?;
        let req = request.into_inner();
        let expected =
            (!req.expected_resource.is_empty()).then_some(req.expected_resource.as_str());
        let active = self
            .state
            .tokens
            .introspect(&req.token, expected)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "introspection failed");
                Status::unavailable("introspection is temporarily unavailable")
            })?
            .filter(|t| caller.may_describe(t));
        metrics::counter!("mcpauth_introspections_total", "transport" => "grpc", "active" => if active.is_some() { "true" } else { "false" }).increment(1);
        tracing::debug!(caller = %caller.name, active = active.is_some(), "grpc introspection");
        let resp = match active {
            None => IntrospectResponse::default(),
            Some(t) => IntrospectResponse {
                active: true,
                subject: t.subject,
                client_id: t.client_id,
                scopes: t
                    .scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                audience: vec![t.audience],
                expires_at: t.expires_at,
                issued_at: t.issued_at,
                issuer: self.state.config.issuer.clone(),
                token_kind: match t.kind {
                    TokenKind::Access => ProtoKind::Access,
                    TokenKind::Refresh => ProtoKind::Refresh,
                } as i32,
                grant_id: t.grant_id.unwrap_or_default(),
                token_id: t.token_id,
                act: t.act.as_deref().map(proto_actor),
            },
        };
        Ok(Response::new(resp))
    }

    /// RFC 8693 token exchange for internal services (`crate::token_exchange`, as at `/token`):
    /// the caller's name stands where the HTTP grant has the authenticated client id.
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let caller = self
            .callers
            .authorize(&request, GrpcPermission::Exchange, "Exchange")
            .await?;
        let config = &self.state.config;
        if !crate::token_exchange::offered(config) {
            return Err(Status::unimplemented(
                "token exchange is not offered by this server",
            ));
        }
        let req = request.into_inner();
        let params = ExchangeParams {
            subject_token: some(&req.subject_token),
            // The field is optional here: access tokens are the only kind exchanged.
            subject_token_type: Some(some(&req.subject_token_type).unwrap_or(ACCESS_TOKEN_TYPE)),
            actor_token: some(&req.actor_token),
            actor_token_type: match (some(&req.actor_token), some(&req.actor_token_type)) {
                (Some(_), None) => Some(ACCESS_TOKEN_TYPE),
                (_, t) => t,
            },
            resource: some(&req.resource),
            audience: some(&req.audience),
            scope: some(&req.scope),
            requested_token_type: None,
        };
        let x = crate::token_exchange::exchange_audited(
            config,
            &self.state.tokens,
            &self.state.audit,
            &caller.name,
            "grpc",
            None,
            params,
        )
        .await
        .map_err(exchange_status)?;
        Ok(Response::new(ExchangeResponse {
            access_token: x.access_token,
            issued_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            expires_in: x.expires_in,
            scopes: x.claims.scope.split(' ').map(str::to_owned).collect(),
            expires_at: x.claims.exp,
            token_id: x.claims.jti,
        }))
    }
}

/// An empty proto3 string is an absent parameter.
fn some(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The RFC 8693 error as a gRPC status: the OAuth code first in the message.
fn exchange_status(e: OAuthError) -> Status {
    let msg = match &e.error_description {
        Some(d) => format!("{}: {d}", e.error),
        None => e.error.to_owned(),
    };
    match e.error {
        "unauthorized_client" => Status::permission_denied(msg),
        "invalid_request" | "invalid_target" | "invalid_scope" => Status::invalid_argument(msg),
        _ => Status::internal(msg),
    }
}

fn proto_actor(a: &Actor) -> ProtoActor {
    ProtoActor {
        subject: a.sub.clone(),
        actor: a.act.as_deref().map(|p| Box::new(proto_actor(p))),
    }
}

/// Reads the TLS material of the gRPC listener.
pub fn tls_config(
    tls: &crate::config::GrpcTlsConfig,
) -> std::io::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let cert = std::fs::read(&tls.cert_file)?;
    let key = std::fs::read(&tls.key_file)?;
    let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca_file {
        // Client certificates become mandatory (tonic's default once a client CA is set).
        cfg = cfg.client_ca_root(Certificate::from_pem(std::fs::read(ca)?));
    }
    Ok(cfg)
}

/// Serves the gRPC API until `shutdown` flips to true.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TokenIntrospectionServer<Introspection>>()
        .await;
    health_reporter
        .set_serving::<UpstreamConnectServer<crate::grpc_connect::Connect>>()
        .await;
    health_reporter
        .set_serving::<UserAdminServer<crate::grpc_admin::Admin>>()
        .await;
    // Draining: health checks see NOT_SERVING while calls are still served.
    let drain = state.drain.clone();
    tokio::spawn(async move {
        drain.wait().await;
        health_reporter
            .set_not_serving::<TokenIntrospectionServer<Introspection>>()
            .await;
        health_reporter
            .set_not_serving::<UpstreamConnectServer<crate::grpc_connect::Connect>>()
            .await;
        health_reporter
            .set_not_serving::<UserAdminServer<crate::grpc_admin::Admin>>()
            .await;
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mcpauth_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("embedded descriptor sets are valid");
    // Server::tcp_nodelay applies only to listeners tonic binds itself: set TCP_NODELAY on the
    // accepted sockets here, or Nagle's algorithm holds small responses for up to 40 ms.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &state.config.grpc.tls {
        builder = builder.tls_config(tls_config(tls).expect("grpc.tls was validated at start"))?;
    }
    builder
        // Continues the caller's trace (traceparent) with one span per call; see telemetry.
        .layer(mcpauth_runtime::telemetry::GrpcServerTraceLayer)
        // Requests by method and status code, and their latency (docs/operations.md).
        .layer(mcpauth_runtime::GrpcServerMetricsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(TokenIntrospectionServer::new(Introspection::new(
            state.clone(),
        )))
        .add_service(UpstreamConnectServer::new(
            crate::grpc_connect::Connect::new(state.clone()),
        ))
        .add_service(UserAdminServer::new(crate::grpc_admin::Admin::new(state)))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
