//! RFC 8693 token exchange (issue 13 item 2) over HTTP and gRPC, and the grant registry (item 1):
//! the metadata's `grant_types_supported`, registration's accepted grant types and `/token`'s
//! dispatch are one list.

use auth_service::domain::token::{AccessClaims, Actor};
use serde_json::{Value, json};

use crate::harness::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const DOWN: &str = "https://downstream.example/api";
const SECOND: &str = "https://second.example/api";
const EXCHANGER: &str = "exchanger";
const EXCHANGER_SECRET: &str = "exchanger-secret-0123456789abcdef0123";
/// Registered for the grant but named by no policy.
const OUTSIDER: &str = "outsider";
const OUTSIDER_SECRET: &str = "outsider-secret-0123456789abcdef01234";
/// A gRPC caller with the `exchange` permission, named by the first policy.
const SVC_CREDENTIAL: &str = "exchange-service-credential-0123456789";

fn config() -> String {
    format!(
        r#"
[[resources]]
uri = "{DOWN}"
scopes = ["down:read", "down:write"]
default_scopes = ["down:read"]

[[resources]]
uri = "{SECOND}"
scopes = ["second:read"]

[[token_exchange.policies]]
clients = ["{EXCHANGER}", "exchange-svc"]
from = ["{RESOURCE}"]
to = "{DOWN}"
scopes = {{ "mcp:tools.read" = ["down:read"], "mcp:tools.write" = ["down:write"] }}

[[token_exchange.policies]]
clients = ["{EXCHANGER}"]
from = ["{DOWN}"]
to = "{SECOND}"
scopes = {{ "down:read" = ["second:read"] }}

[[grpc.callers]]
name = "exchange-svc"
credential_sha256 = "{svc}"
permissions = ["introspect", "exchange"]

[[clients]]
client_id = "{EXCHANGER}"
client_secret_sha256 = "{ex}"
grant_types = ["{GRANT}"]
token_endpoint_auth_method = "client_secret_basic"

[[clients]]
client_id = "{OUTSIDER}"
client_secret_sha256 = "{out}"
grant_types = ["{GRANT}"]
token_endpoint_auth_method = "client_secret_basic"
"#,
        svc = sha256_hex(SVC_CREDENTIAL),
        ex = sha256_hex(EXCHANGER_SECRET),
        out = sha256_hex(OUTSIDER_SECRET),
    )
}

async fn server() -> TestServer {
    TestServer::start_with(Options {
        toml: config(),
        ..Default::default()
    })
    .await
}

type Resp = (u16, Value, reqwest::header::HeaderMap);

async fn exchange_as(s: &TestServer, id: &str, secret: &str, extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![("grant_type", GRANT)];
    form.extend_from_slice(extra);
    s.token_basic(id, secret, &form).await
}

/// Exchanges `subject` for `resource` as [`EXCHANGER`].
async fn exchange(s: &TestServer, subject: &str, resource: &str, extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![
        ("subject_token", subject),
        ("subject_token_type", AT),
        ("resource", resource),
    ];
    form.extend_from_slice(extra);
    exchange_as(s, EXCHANGER, EXCHANGER_SECRET, &form).await
}

/// A user's access token for [`RESOURCE`] through the real authorization-code flow.
async fn user_token(s: &TestServer, scope: &str) -> String {
    let (_, body) = s.login(Some(scope)).await;
    body["access_token"].as_str().unwrap().to_owned()
}

/// A token sealed with the test key (as the server would), for lifetimes and audiences the
/// flows do not produce.
fn sealed(sub: &str, client: &str, aud: &str, scope: &str, exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    test_key_ring().seal_access(&AccessClaims {
        jti: uuid::Uuid::new_v4().simple().to_string(),
        sub: sub.into(),
        client_id: client.into(),
        grant_id: None,
        aud: aud.into(),
        scope: scope.into(),
        iat: now,
        exp: now + exp_in,
        act: None,
    })
}

#[tokio::test]
async fn exchange_issues_a_narrowed_token_for_the_target_with_the_actor_chain() {
    let s = server().await;
    let subject = user_token(&s, "mcp:tools.read mcp:tools.write").await;
    let before = s.introspect(&subject).await;
    let r = exchange(&s, &subject, DOWN, &[]).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.2["cache-control"], "no-store");
    let body = &r.1;
    assert_eq!(body["issued_token_type"], AT);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "down:read down:write");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let exp_in = body["expires_in"].as_i64().unwrap();
    assert!(
        exp_in > 0
            && exp_in <= before["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp() + 1
    );

    let i = s.introspect(token).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["sub"], before["sub"]);
    assert_eq!(i["aud"], DOWN);
    assert_eq!(i["client_id"], EXCHANGER);
    assert_eq!(i["act"], json!({"sub": EXCHANGER}));
    assert!(i["exp"].as_i64().unwrap() <= before["exp"].as_i64().unwrap());
    // The subject token is no valid token for the downstream API, nor the new one for the MCP
    // resource: audiences are kept apart.
    assert_eq!(
        s.introspect_with(&subject, &[("resource", DOWN)]).await["active"],
        false
    );
    assert_eq!(
        s.introspect_with(token, &[("resource", RESOURCE)]).await["active"],
        false
    );

    // Narrowed on request; never widened.
    let r = exchange(&s, &subject, DOWN, &[("scope", "down:read")]).await;
    assert_eq!(
        (r.0, r.1["scope"].as_str()),
        (200, Some("down:read")),
        "{}",
        r.1
    );
    let read_only = user_token(&s, "mcp:tools.read").await;
    let r = exchange(&s, &read_only, DOWN, &[("scope", "down:write")]).await;
    assert_oauth_error(&r, 400, "invalid_scope");
    let r = exchange(&s, &read_only, DOWN, &[]).await;
    assert_eq!(r.1["scope"], "down:read", "{}", r.1);

    // `audience` names the target as well as `resource`.
    let r = exchange_as(
        &s,
        EXCHANGER,
        EXCHANGER_SECRET,
        &[
            ("subject_token", &subject),
            ("subject_token_type", AT),
            ("audience", DOWN),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);

    let issued = s.audit_events("token.exchanged", 4).await;
    assert!(issued.len() >= 4);
    assert_eq!(issued[0].client_id.as_deref(), Some(EXCHANGER));
    assert_eq!(issued[0].detail["act"], json!({"sub": EXCHANGER}));
    assert_eq!(issued[0].detail["aud"], DOWN);
    assert!(
        !issued[0].detail.to_string().contains(&subject),
        "no token in the trail"
    );
    let refused = s.audit_events("token.exchange_refused", 1).await;
    assert_eq!(refused[0].detail["error"], "invalid_scope");
    s.stop().await;
}

#[tokio::test]
async fn the_lifetime_ends_no_later_than_the_subject_tokens() {
    let s = server().await;
    let subject = sealed("user-7", "some-client", RESOURCE, "mcp:tools.read", 100);
    let r = exchange(&s, &subject, DOWN, &[]).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1["expires_in"].as_i64().unwrap() <= 100, "{}", r.1);
    let i = s.introspect(r.1["access_token"].as_str().unwrap()).await;
    assert_eq!(i["sub"], "user-7");
    let subject_exp = s.introspect(&subject).await["exp"].as_i64().unwrap();
    assert_eq!(i["exp"].as_i64().unwrap(), subject_exp);
    s.stop().await;
}

#[tokio::test]
async fn an_exchanged_token_exchanges_again_only_as_the_policy_narrows_it() {
    let s = server().await;
    let subject = user_token(&s, "mcp:tools.read mcp:tools.write").await;
    let first = exchange(&s, &subject, DOWN, &[]).await.1;
    let first_token = first["access_token"].as_str().unwrap();
    // Onwards: nested act, scope mapped again, lifetime still capped.
    let r = exchange(&s, first_token, SECOND, &[]).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["scope"], "second:read");
    let i = s.introspect(r.1["access_token"].as_str().unwrap()).await;
    assert_eq!(
        i["act"],
        json!({"sub": EXCHANGER, "act": {"sub": EXCHANGER}})
    );
    assert!(i["exp"].as_i64().unwrap() <= s.introspect(first_token).await["exp"].as_i64().unwrap());
    assert_eq!(i["sub"], s.introspect(&subject).await["sub"]);
    // Back to the same audience, or to one no policy maps it to: refused.
    assert_oauth_error(
        &exchange(&s, first_token, DOWN, &[]).await,
        400,
        "invalid_target",
    );
    assert_oauth_error(
        &exchange(&s, first_token, RESOURCE, &[]).await,
        400,
        "invalid_target",
    );
    // A write-only downstream token maps to nothing at the second API.
    let write_only = exchange(&s, &subject, DOWN, &[("scope", "down:write")])
        .await
        .1;
    let r = exchange(
        &s,
        write_only["access_token"].as_str().unwrap(),
        SECOND,
        &[],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_scope");
    s.stop().await;
}

#[tokio::test]
async fn an_actor_token_names_the_actor() {
    let s = server().await;
    let subject = user_token(&s, "mcp:tools.read").await;
    let actor = sealed("robot-1", EXCHANGER, RESOURCE, "mcp:tools.read", 300);
    let r = exchange(
        &s,
        &subject,
        DOWN,
        &[("actor_token", &actor), ("actor_token_type", AT)],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let i = s.introspect(r.1["access_token"].as_str().unwrap()).await;
    assert_eq!(i["act"], json!({"sub": "robot-1"}));
    // Another client's token is no actor token of this one.
    let foreign = sealed("robot-2", OUTSIDER, RESOURCE, "mcp:tools.read", 300);
    let r = exchange(
        &s,
        &subject,
        DOWN,
        &[("actor_token", &foreign), ("actor_token_type", AT)],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn policy_denials_and_rfc_8693_errors() {
    let s = server().await;
    let subject = user_token(&s, "mcp:tools.read").await;
    // unauthorized_client: named by no policy; not registered for the grant; public.
    let r = exchange_as(
        &s,
        OUTSIDER,
        OUTSIDER_SECRET,
        &[
            ("subject_token", &subject),
            ("subject_token_type", AT),
            ("resource", DOWN),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "unauthorized_client");
    let r = exchange_as(
        &s,
        STATIC_CLIENT,
        STATIC_SECRET,
        &[
            ("subject_token", &subject),
            ("subject_token_type", AT),
            ("resource", DOWN),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "unauthorized_client");
    let public = s.public_client().await;
    let r = s
        .token(&[
            ("grant_type", GRANT),
            ("client_id", &public),
            ("subject_token", &subject),
            ("subject_token_type", AT),
            ("resource", DOWN),
        ])
        .await;
    assert_oauth_error(&r, 400, "unauthorized_client");
    // invalid_target: unknown target; resource and audience apart; a subject audience the
    // policy does not take; a target no policy of this client names.
    assert_oauth_error(
        &exchange(&s, &subject, "https://nowhere.example/", &[]).await,
        400,
        "invalid_target",
    );
    assert_oauth_error(
        &exchange(&s, &subject, DOWN, &[("audience", SECOND)]).await,
        400,
        "invalid_target",
    );
    let api = sealed(
        "user-1",
        "c",
        "https://api.example.com/mcp",
        "api:read",
        300,
    );
    assert_oauth_error(&exchange(&s, &api, DOWN, &[]).await, 400, "invalid_target");
    assert_oauth_error(
        &exchange(&s, &subject, SECOND, &[]).await,
        400,
        "invalid_target",
    );
    // invalid_request: the parameters RFC 8693 §2.1 requires, and the token types.
    let only = |form: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            exchange_as(s, EXCHANGER, EXCHANGER_SECRET, &f).await
        }
    };
    let sub = || ("subject_token", subject.clone());
    let typ = || ("subject_token_type", AT.to_owned());
    let res = || ("resource", DOWN.to_owned());
    for form in [
        vec![typ(), res()],
        vec![sub(), res()],
        vec![
            sub(),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token".into(),
            ),
            res(),
        ],
        vec![sub(), typ()],
        vec![sub(), typ(), res(), ("actor_token", subject.clone())],
        vec![sub(), typ(), res(), ("actor_token_type", AT.into())],
        vec![
            sub(),
            typ(),
            res(),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token".into(),
            ),
        ],
    ] {
        let names: Vec<&str> = form.iter().map(|(k, _)| *k).collect();
        let r = only(form.clone()).await;
        assert_eq!(
            (r.0, r.1["error"].as_str()),
            (400, Some("invalid_request")),
            "{names:?}: {}",
            r.1
        );
    }
    // An expired, a forged and a foreign (another key) subject token.
    let expired = sealed("user-1", "c", RESOURCE, "mcp:tools.read", -1);
    assert_oauth_error(
        &exchange(&s, &expired, DOWN, &[]).await,
        400,
        "invalid_request",
    );
    assert_oauth_error(
        &exchange(&s, &mangle(&subject), DOWN, &[]).await,
        400,
        "invalid_request",
    );
    let other_key = auth_service::domain::token::KeyRing::ephemeral();
    let foreign = other_key.seal_access(&AccessClaims {
        jti: "ab".repeat(16),
        sub: "user-1".into(),
        client_id: "c".into(),
        grant_id: None,
        aud: RESOURCE.into(),
        scope: "mcp:tools.read".into(),
        iat: 0,
        exp: i64::MAX / 2,
        act: Some(Box::new(Actor {
            sub: "x".into(),
            act: None,
        })),
    });
    assert_oauth_error(
        &exchange(&s, &foreign, DOWN, &[]).await,
        400,
        "invalid_request",
    );
    s.stop().await;
}

#[tokio::test]
async fn a_revoked_subject_token_is_refused_and_revoking_the_grant_ends_the_exchanged_token() {
    let s = server().await;
    let (client, body) = s.login(Some("mcp:tools.read")).await;
    let at = body["access_token"].as_str().unwrap().to_owned();
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let exchanged = exchange(&s, &at, DOWN, &[]).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // (Over HTTP: the harness's gRPC caller is limited to other audiences.)
    assert_eq!(s.introspect(&exchanged).await["active"], true);
    // The refresh token's revocation ends the grant, and with it what was exchanged from it.
    assert_eq!(s.revoke_as(&client, &rt).await.status().as_u16(), 200);
    assert_eq!(s.introspect(&exchanged).await, json!({"active": false}));
    assert_oauth_error(&exchange(&s, &at, DOWN, &[]).await, 400, "invalid_request");
    // An access token revoked alone.
    let (client, body) = s.login(Some("mcp:tools.read")).await;
    let at = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.revoke_as(&client, &at).await.status().as_u16(), 200);
    assert_oauth_error(&exchange(&s, &at, DOWN, &[]).await, 400, "invalid_request");
    s.stop().await;
}

fn grpc_request<T>(msg: T, credential: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    req
}

#[tokio::test]
async fn grpc_exchange_issues_for_a_permitted_caller_and_refuses_others() {
    use mcpauth_proto::v1::{ExchangeRequest, IntrospectRequest};
    let s = server().await;
    let subject = user_token(&s, "mcp:tools.read").await;
    let mut c = s.grpc_client().await;
    let req = || ExchangeRequest {
        subject_token: subject.clone(),
        resource: DOWN.into(),
        ..Default::default()
    };
    let x = c
        .exchange(grpc_request(req(), SVC_CREDENTIAL))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(x.issued_token_type, AT);
    assert_eq!(x.scopes, ["down:read"]);
    assert!(x.expires_in > 0);
    let i = c
        .introspect(grpc_request(
            IntrospectRequest {
                token: x.access_token.clone(),
                expected_resource: DOWN.into(),
            },
            SVC_CREDENTIAL,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(i.active);
    assert_eq!(i.client_id, "exchange-svc");
    assert_eq!(i.act.as_ref().unwrap().subject, "exchange-svc");
    assert!(i.act.as_ref().unwrap().actor.is_none());
    assert_eq!(i.subject, s.introspect(&subject).await["sub"]);
    // The RFC error travels in the status.
    let e = c
        .exchange(grpc_request(
            ExchangeRequest {
                resource: SECOND.into(),
                ..req()
            },
            SVC_CREDENTIAL,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("invalid_target"), "{}", e.message());
    // The harness's caller has no `exchange` permission.
    let e = c
        .exchange(grpc_request(req(), GRPC_CREDENTIAL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = c.exchange(grpc_request(req(), "wrong")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let refused = s.audit_events("token.exchange_refused", 1).await;
    assert_eq!(refused[0].detail["transport"], "grpc");
    s.stop().await;
}

/// For each grant the metadata lists: registration (with the operator's token) accepts it and
/// `/token` dispatches it (a client not registered for it is `unauthorized_client`, never
/// `unsupported_grant_type`); for grants it does not list, both refuse. Without a policy, token
/// exchange drops out of all three together.
#[tokio::test]
async fn metadata_registration_and_token_dispatch_share_one_grant_list() {
    for with_policy in [true, false] {
        let s = if with_policy {
            server().await
        } else {
            TestServer::start().await
        };
        let meta: Value = s
            .http
            .get(s.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed: Vec<String> =
            serde_json::from_value(meta["grant_types_supported"].clone()).unwrap();
        assert_eq!(
            listed.contains(&GRANT.to_owned()),
            with_policy,
            "{listed:?}"
        );
        assert!(listed.contains(&"authorization_code".to_owned()));
        let unlisted = [
            "password",
            "urn:ietf:params:oauth:grant-type:device_code",
            "implicit",
            GRANT,
        ];
        for g in listed.iter().map(String::as_str).chain(unlisted) {
            let offered = listed.iter().any(|l| l == g);
            let mut body = json!({
                "client_name": "registry probe",
                "grant_types": [g],
                "token_endpoint_auth_method": "client_secret_basic",
            });
            if g == "authorization_code" {
                body["redirect_uris"] = json!([REDIRECT]);
            } else {
                body["response_types"] = json!([]);
            }
            let (status, reg) = s.register_with(body, Some(INITIAL_ACCESS_TOKEN)).await;
            assert_eq!(status == 201, offered, "registration of {g}: {reg}");
            // The static client is registered for client_credentials only.
            let r = s
                .token_basic(STATIC_CLIENT, STATIC_SECRET, &[("grant_type", g)])
                .await;
            match (offered, g) {
                (false, _) => assert_oauth_error(&r, 400, "unsupported_grant_type"),
                // Dispatched to the grant, which wants more parameters.
                (true, "client_credentials") => {
                    assert_ne!(r.1["error"], "unsupported_grant_type", "{}", r.1);
                    assert_ne!(r.1["error"], "unauthorized_client", "{}", r.1);
                }
                (true, _) => assert_oauth_error(&r, 400, "unauthorized_client"),
            }
        }
        s.stop().await;
    }
}
