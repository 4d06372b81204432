//! Issue 12 item 10: every gRPC caller of auth-service holds explicit per-RPC permissions
//! (`introspect`, `start_connect`, `admin`); a call outside them is PERMISSION_DENIED and
//! audited. `StartConnect` accepts only user tokens issued for a resource the caller serves and
//! carrying the connect scope.

use mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient;
use mcpauth_proto::v1::upstream_connect_client::UpstreamConnectClient;
use mcpauth_proto::v1::user_admin_client::UserAdminClient;
use mcpauth_proto::v1::{
    IntrospectRequest, RevokeUserRequest, SetUserDisabledRequest, StartConnectRequest, UserRef,
};
use tonic::Code;

use crate::harness::*;

pub const INTROSPECT_ONLY: &str = "introspect-only-credential";
pub const CONNECT_ONLY: &str = "connect-only-credential";
pub const ADMIN: &str = "admin-credential";

/// Three more callers, each with one permission.
pub fn callers_toml() -> String {
    format!(
        "[[grpc.callers]]\nname = \"resource-server\"\ncredential_sha256 = \"{}\"\npermissions = [\"introspect\"]\n\n\
         [[grpc.callers]]\nname = \"mcp-service\"\ncredential_sha256 = \"{}\"\npermissions = [\"start_connect\"]\nresources = [\"{RESOURCE}\"]\n\n\
         [[grpc.callers]]\nname = \"ops\"\ncredential_sha256 = \"{}\"\npermissions = [\"admin\"]\n",
        sha256_hex(INTROSPECT_ONLY),
        sha256_hex(CONNECT_ONLY),
        sha256_hex(ADMIN),
    )
}

pub fn with_credential<T>(credential: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    r
}

async fn introspect(s: &TestServer, credential: &str, token: &str) -> Result<bool, Code> {
    let mut c = TokenIntrospectionClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    c.introspect(with_credential(
        credential,
        IntrospectRequest {
            token: token.into(),
            expected_resource: String::new(),
        },
    ))
    .await
    .map(|r| r.into_inner().active)
    .map_err(|e| e.code())
}

async fn start_connect(s: &TestServer, credential: &str, token: &str) -> Code {
    let mut c = UpstreamConnectClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    match c
        .start_connect(with_credential(
            credential,
            StartConnectRequest {
                access_token: token.into(),
                // No provider is configured: a call that passes every check before the
                // provider's answers INVALID_ARGUMENT.
                provider: "crm".into(),
            },
        ))
        .await
    {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

pub async fn revoke_user(s: &TestServer, credential: &str, user_id: &str) -> Result<u64, Code> {
    let mut c = UserAdminClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    c.revoke_user(with_credential(
        credential,
        RevokeUserRequest {
            user: Some(UserRef {
                user_id: user_id.into(),
                ..Default::default()
            }),
            include_vault: false,
            reason: "test".into(),
        },
    ))
    .await
    .map(|r| r.into_inner().grants_revoked)
    .map_err(|e| e.code())
}

/// A dev-login access token for `resource` with `scope`.
async fn user_token(s: &TestServer, resource: &str, scope: &str) -> String {
    let client = s.public_client().await;
    let r = s
        .authorize(&[
            ("response_type", "code"),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("resource", resource),
            ("scope", scope),
        ])
        .await;
    assert_eq!(r.status().as_u16(), 302);
    let code = redirect_query(&r)["code"].clone();
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_rpc_needs_its_permission() {
    let s = TestServer::start_with(Options {
        toml: callers_toml(),
        ..Default::default()
    })
    .await;
    let token = user_token(&s, RESOURCE, "mcp:tools.read").await;
    let user = s.grpc_introspect(&token, "").await.subject;

    // A resource server that may only introspect.
    assert_eq!(introspect(&s, INTROSPECT_ONLY, &token).await, Ok(true));
    assert_eq!(
        start_connect(&s, INTROSPECT_ONLY, &token).await,
        Code::PermissionDenied
    );
    assert_eq!(
        revoke_user(&s, INTROSPECT_ONLY, &user).await,
        Err(Code::PermissionDenied)
    );
    let mut admin = UserAdminClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let disable = SetUserDisabledRequest {
        user: Some(UserRef {
            user_id: user.clone(),
            ..Default::default()
        }),
        disabled: true,
        ..Default::default()
    };
    assert_eq!(
        admin
            .set_user_disabled(with_credential(INTROSPECT_ONLY, disable.clone()))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // mcp-service's connect permission does not let it introspect or administer.
    assert_eq!(
        introspect(&s, CONNECT_ONLY, &token).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(
        revoke_user(&s, CONNECT_ONLY, &user).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(
        start_connect(&s, CONNECT_ONLY, &token).await,
        Code::InvalidArgument
    );
    // The operator's tooling administers, and nothing else.
    assert_eq!(
        introspect(&s, ADMIN, &token).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(
        start_connect(&s, ADMIN, &token).await,
        Code::PermissionDenied
    );
    // Nothing was revoked by the refused calls.
    s.assert_active(&token).await;
    assert_eq!(revoke_user(&s, ADMIN, &user).await, Ok(1));
    s.assert_inactive(&token).await;
    // Unknown credentials stay UNAUTHENTICATED.
    assert_eq!(
        revoke_user(&s, "nobody", &user).await,
        Err(Code::Unauthenticated)
    );

    // Each refusal is audited with the caller and the RPC, never a credential.
    let denied = s.audit_events("grpc.permission_denied", 7).await;
    assert_eq!(denied.len(), 7);
    let seen: Vec<(String, String)> = denied
        .iter()
        .map(|e| {
            (
                e.detail["caller"].as_str().unwrap().to_owned(),
                e.detail["rpc"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("resource-server", "StartConnect"),
        ("resource-server", "RevokeUser"),
        ("resource-server", "SetUserDisabled"),
        ("mcp-service", "Introspect"),
        ("mcp-service", "RevokeUser"),
        ("ops", "Introspect"),
        ("ops", "StartConnect"),
    ] {
        assert!(
            seen.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} not in {seen:?}"
        );
    }
    for e in &denied {
        let text = e.detail.to_string();
        for secret in [INTROSPECT_ONLY, CONNECT_ONLY, ADMIN] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn start_connect_refuses_tokens_for_another_audience_or_without_the_connect_scope() {
    let s = TestServer::start_with(Options {
        toml: callers_toml(),
        env: vec![("MCPAUTH__UPSTREAM__CONNECT_SCOPE", "mcp:tools.write".into())],
    })
    .await;
    // A token another resource server received (audience api.example.com) replayed by the
    // caller that serves RESOURCE: refused.
    let foreign = user_token(&s, "https://api.example.com/mcp", "api:read").await;
    assert_eq!(
        start_connect(&s, CONNECT_ONLY, &foreign).await,
        Code::PermissionDenied
    );
    // The caller's own audience, but without the connect scope: refused.
    let read_only = user_token(&s, RESOURCE, "mcp:tools.read").await;
    assert_eq!(
        start_connect(&s, CONNECT_ONLY, &read_only).await,
        Code::PermissionDenied
    );
    // Audience and scope right: the call gets as far as the provider's name.
    let write = user_token(&s, RESOURCE, "mcp:tools.read mcp:tools.write").await;
    assert_eq!(
        start_connect(&s, CONNECT_ONLY, &write).await,
        Code::InvalidArgument
    );
    s.stop().await;
}

const SCOPED: &str = "scoped-introspect-credential";
const REFRESH_READER: &str = "refresh-reader-credential";
const NATIVE_APP: &str = "native-app";

/// Issue 12 review: `Introspect` keeps to the caller's `resources`, and describes a refresh
/// token only to a caller allowed to see that client's refresh tokens (HTTP introspection
/// describes a refresh token to its own client only).
#[tokio::test]
async fn introspect_keeps_to_the_callers_resources_and_never_describes_refresh_tokens() {
    let s = TestServer::start_with(Options {
        toml: format!(
            "{}\n[[grpc.callers]]\nname = \"scoped\"\ncredential_sha256 = \"{}\"\npermissions = [\"introspect\"]\nresources = [\"{RESOURCE}\"]\n\n\
             [[grpc.callers]]\nname = \"refresh-reader\"\ncredential_sha256 = \"{}\"\npermissions = [\"introspect\"]\nresources = [\"{RESOURCE}\"]\nrefresh_token_clients = [\"{NATIVE_APP}\"]\n\n\
             [[clients]]\nclient_id = \"{NATIVE_APP}\"\nredirect_uris = [\"{REDIRECT}\"]\ngrant_types = [\"authorization_code\", \"refresh_token\"]\ntoken_endpoint_auth_method = \"none\"\n",
            callers_toml(),
            sha256_hex(SCOPED),
            sha256_hex(REFRESH_READER),
        ),
        ..Default::default()
    })
    .await;
    let own = user_token(&s, RESOURCE, "mcp:tools.read").await;
    let other = user_token(&s, "https://api.example.com/mcp", "api:read").await;
    // A caller with `resources`: tokens of its audiences only, with or without
    // `expected_resource`.
    assert_eq!(introspect(&s, SCOPED, &own).await, Ok(true));
    assert_eq!(
        introspect(&s, SCOPED, &other).await,
        Ok(false),
        "a token of another audience"
    );
    // A caller without `resources`: every audience, as before.
    assert_eq!(introspect(&s, INTROSPECT_ONLY, &own).await, Ok(true));
    assert_eq!(introspect(&s, INTROSPECT_ONLY, &other).await, Ok(true));

    // Refresh tokens: to no caller by default.
    let (_, body) = s.login(None).await;
    let rt = body["refresh_token"].as_str().unwrap();
    for caller in [SCOPED, INTROSPECT_ONLY, REFRESH_READER] {
        assert_eq!(introspect(&s, caller, rt).await, Ok(false), "{caller}");
    }
    // A caller allowed the refresh tokens of one client sees those (within its resources).
    let code = s.code_for(NATIVE_APP, None).await;
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", NATIVE_APP),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    let native_rt = body["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&s, REFRESH_READER, native_rt).await, Ok(true));
    assert_eq!(introspect(&s, SCOPED, native_rt).await, Ok(false));
    s.stop().await;
}
