//! The gRPC face (tonic): `mcpauth.v1.TokenVault`, `grpc.health.v1` and server reflection.
//! Thin: authenticates the calling service, settles who the user is (from the user's own MCP
//! access token, or `user_id` for `put`/`admin`), validates input, calls `vault`.

use std::collections::HashSet;

use mcpauth_proto::v1::token_vault_server::{TokenVault, TokenVaultServer};
use mcpauth_proto::v1::{
    Connection, ConnectionStatus as ProtoStatus, DeleteCredentialRequest, DeleteCredentialResponse,
    GetAccessTokenRequest, GetAccessTokenResponse, ListConnectionsRequest, ListConnectionsResponse,
    PutCredentialRequest, PutCredentialResponse,
};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::config::{Caller, Permission, valid_provider_name};
use crate::credential::ProviderTokens;
use crate::crypto::{sha256, unhex};
use crate::introspect::{IntrospectError, Introspector};
use crate::store::ConnectionStatus;
use crate::vault::Vault;

const MAX_ID: usize = 256;
const MAX_TOKEN: usize = 16 * 1024;
const MAX_SCOPES: usize = 256;

struct KnownCaller {
    name: String,
    digest: Vec<u8>,
    permissions: HashSet<Permission>,
}

/// The TokenVault service.
pub struct VaultService {
    vault: Vault,
    introspector: Introspector,
    callers: Vec<KnownCaller>,
}

impl VaultService {
    pub fn new(vault: Vault, introspector: Introspector, callers: &[Caller]) -> Self {
        let callers = callers
            .iter()
            .filter_map(|c| {
                Some(KnownCaller {
                    name: c.name.clone(),
                    digest: unhex(&c.credential_sha256)?,
                    permissions: c.permissions.iter().copied().collect(),
                })
            })
            .collect();
        Self {
            vault,
            introspector,
            callers,
        }
    }

    /// Names the calling service, or refuses it. Every configured credential is compared in
    /// constant time, so the time taken does not reveal which one was close.
    fn authenticate<T>(&self, req: &Request<T>) -> Result<&KnownCaller, Status> {
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("a service credential is required"))?;
        let digest = sha256(presented);
        let mut found = None;
        for c in &self.callers {
            if bool::from(digest.as_slice().ct_eq(&c.digest)) {
                found = Some(c);
            }
        }
        found.ok_or_else(|| Status::unauthenticated("unknown service credential"))
    }

    fn require(caller: &KnownCaller, p: Permission) -> Result<(), Status> {
        if caller.permissions.contains(&p) {
            Ok(())
        } else {
            tracing::warn!(caller = %caller.name, permission = ?p, "permission denied");
            Err(Status::permission_denied(format!(
                "caller {:?} lacks the {p:?} permission",
                caller.name
            )))
        }
    }

    /// The user an MCP access token speaks for.
    async fn user_of(&self, access_token: &str) -> Result<String, Status> {
        if access_token.is_empty() || access_token.len() > MAX_TOKEN {
            return Err(Status::invalid_argument("access_token is required"));
        }
        match self.introspector.user(access_token).await {
            Ok(u) => Ok(u.subject),
            Err(IntrospectError::Inactive | IntrospectError::WrongAudience) => Err(
                Status::unauthenticated("the user's access token is not active"),
            ),
            Err(IntrospectError::Unavailable(code)) => {
                tracing::warn!(code, "introspection unavailable");
                Err(Status::unavailable(
                    "token introspection is temporarily unavailable",
                ))
            }
        }
    }

    /// The user of a delete/list: the user's own token (`get`) or a user id (`admin`).
    async fn user_of_either(
        &self,
        caller: &KnownCaller,
        access_token: &str,
        user_id: &str,
    ) -> Result<String, Status> {
        match (access_token.is_empty(), user_id.is_empty()) {
            (false, true) => {
                Self::require(caller, Permission::Get)?;
                self.user_of(access_token).await
            }
            (true, false) => {
                Self::require(caller, Permission::Admin)?;
                check_user_id(user_id)?;
                Ok(user_id.to_owned())
            }
            (false, false) => Err(Status::invalid_argument(
                "give either access_token or user_id, not both",
            )),
            (true, true) => Err(Status::invalid_argument(
                "access_token or user_id is required",
            )),
        }
    }
}

fn check_user_id(user_id: &str) -> Result<(), Status> {
    if user_id.is_empty() || user_id.len() > MAX_ID || user_id.chars().any(char::is_control) {
        return Err(Status::invalid_argument(
            "user_id: 1-256 characters, no control characters",
        ));
    }
    Ok(())
}

fn check_provider(provider: &str) -> Result<(), Status> {
    if !valid_provider_name(provider) {
        return Err(Status::invalid_argument("provider: unknown provider name"));
    }
    Ok(())
}

#[tonic::async_trait]
impl TokenVault for VaultService {
    async fn put_credential(
        &self,
        request: Request<PutCredentialRequest>,
    ) -> Result<Response<PutCredentialResponse>, Status> {
        let caller = self.authenticate(&request)?;
        Self::require(caller, Permission::Put)?;
        let req = request.into_inner();
        check_user_id(&req.user_id)?;
        check_provider(&req.provider)?;
        let t = req
            .tokens
            .ok_or_else(|| Status::invalid_argument("tokens is required"))?;
        if t.access_token.is_empty()
            || t.access_token.len() > MAX_TOKEN
            || t.refresh_token.len() > MAX_TOKEN
            || t.scopes.len() > MAX_SCOPES
            || t.expires_at < 0
        {
            return Err(Status::invalid_argument(
                "tokens: a non-empty access_token, tokens up to 16 KiB, expires_at ≥ 0",
            ));
        }
        if req.upstream_issuer.len() > 1024 || req.upstream_subject.len() > MAX_ID {
            return Err(Status::invalid_argument(
                "upstream_issuer or upstream_subject too long",
            ));
        }
        let names = [&req.upstream_issuer, &req.upstream_subject, &t.token_type];
        if names
            .into_iter()
            .chain(&t.scopes)
            .any(|s| s.chars().any(char::is_control))
        {
            return Err(Status::invalid_argument(
                "upstream_issuer, upstream_subject, token_type and scopes take no control characters",
            ));
        }
        let tokens = ProviderTokens {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            expires_at: t.expires_at,
            scopes: t.scopes,
            token_type: t.token_type,
        };
        let version = self
            .vault
            .put(
                &caller.name,
                &req.user_id,
                &req.provider,
                &tokens,
                &req.upstream_issuer,
                &req.upstream_subject,
            )
            .await?;
        Ok(Response::new(PutCredentialResponse { version }))
    }

    async fn get_access_token(
        &self,
        request: Request<GetAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        let caller = self.authenticate(&request)?;
        Self::require(caller, Permission::Get)?;
        let req = request.into_inner();
        check_provider(&req.provider)?;
        let user = self.user_of(&req.access_token).await?;
        let t = self
            .vault
            .access_token(&caller.name, &user, &req.provider)
            .await?;
        Ok(Response::new(GetAccessTokenResponse {
            access_token: t.access_token,
            token_type: if t.token_type.is_empty() {
                "Bearer".into()
            } else {
                t.token_type
            },
            expires_at: t.expires_at,
            scopes: t.scopes,
        }))
    }

    async fn delete_credential(
        &self,
        request: Request<DeleteCredentialRequest>,
    ) -> Result<Response<DeleteCredentialResponse>, Status> {
        let caller = self.authenticate(&request)?;
        let req = request.into_inner();
        check_provider(&req.provider)?;
        let user = self
            .user_of_either(caller, &req.access_token, &req.user_id)
            .await?;
        let (deleted, revoked_upstream) = self
            .vault
            .delete(&caller.name, &user, &req.provider)
            .await?;
        Ok(Response::new(DeleteCredentialResponse {
            deleted,
            revoked_upstream,
        }))
    }

    async fn list_connections(
        &self,
        request: Request<ListConnectionsRequest>,
    ) -> Result<Response<ListConnectionsResponse>, Status> {
        let caller = self.authenticate(&request)?;
        let req = request.into_inner();
        let user = self
            .user_of_either(caller, &req.access_token, &req.user_id)
            .await?;
        let rows = self.vault.list(&caller.name, &user).await?;
        let connections = rows
            .into_iter()
            .map(|r| Connection {
                provider: r.provider,
                status: match r.status {
                    ConnectionStatus::Connected => ProtoStatus::Connected,
                    ConnectionStatus::ReauthorizationRequired => {
                        ProtoStatus::ReauthorizationRequired
                    }
                } as i32,
                scopes: r.scopes,
                expires_at: r.expires_at.map_or(0, |t| t.timestamp()),
                connected_at: r.connected_at.timestamp(),
                updated_at: r.updated_at.timestamp(),
                upstream_subject: r.upstream_subject,
            })
            .collect();
        Ok(Response::new(ListConnectionsResponse { connections }))
    }
}

/// Reads and checks the TLS material of the gRPC listener: unreadable files, PEM that holds no
/// certificate or key, or a key that does not match the certificate stop the start here (in
/// `serve` they would only end the gRPC task, leaving a vault that answers `/healthz` but no
/// calls). Errors name the key and path, never the file's content.
pub fn tls_config(
    tls: &crate::config::GrpcTlsConfig,
) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("grpc.tls.{key}: {}: {e}", path.display()))
    };
    let cert = read("cert_file", &tls.cert_file)?;
    let key = read("key_file", &tls.key_file)?;
    let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca_file {
        // Client certificates become mandatory once a client CA is set.
        cfg = cfg.client_ca_root(Certificate::from_pem(read("client_ca_file", ca)?));
    }
    // Builds the acceptor once, as `serve` will.
    tonic::transport::Server::builder()
        .tls_config(cfg.clone())
        .map_err(|e| {
            // tonic's own message is only "transport error"; the reason is in its sources.
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(&format!(": {s}"));
                source = s.source();
            }
            anyhow::anyhow!("grpc.tls: {reason}")
        })?;
    Ok(cfg)
}

/// Serves the gRPC API until `shutdown` flips to true, draining in-flight calls; health reports
/// `NOT_SERVING` from the start of `drain`.
pub async fn serve(
    service: VaultService,
    tls: Option<tonic::transport::ServerTlsConfig>,
    listener: TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    drain: mcpauth_runtime::Drain,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TokenVaultServer<VaultService>>()
        .await;
    // Draining: health checks see NOT_SERVING while calls are still served.
    tokio::spawn(async move {
        drain.wait().await;
        health_reporter
            .set_not_serving::<TokenVaultServer<VaultService>>()
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
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        // Continues the caller's trace (traceparent) with one span per call; see telemetry.
        .layer(mcpauth_runtime::telemetry::GrpcServerTraceLayer)
        // Requests by method and status code, and their latency (docs/operations.md).
        .layer(mcpauth_runtime::GrpcServerMetricsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(TokenVaultServer::new(service))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
