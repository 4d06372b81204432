//! Issue 12 item 13: incident response for one user — revoke everything of a user in one call
//! (gRPC `UserAdmin` and the `admin` CLI), disable/enable a user, and `POST /logout`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use mcpauth_proto::v1::user_admin_client::UserAdminClient;
use mcpauth_proto::v1::{RevokeUserRequest, SetUserDisabledRequest, UserRef};
use serde_json::Value;
use tonic::Code;

use crate::consent::*;
use crate::grpc_permissions::{ADMIN, INTROSPECT_ONLY, callers_toml, with_credential};
use crate::harness::*;
use crate::private_backends::PrivateRedis;

fn local_login_with_admin() -> Options {
    let mut o = local_login();
    o.toml.push_str(&callers_toml());
    o
}

/// alice (or bob) signs in with her browser, approves the client, and redeems the code.
/// Returns the token response.
async fn sign_in(s: &TestServer, b: &mut Browser, client: &str, user: &str, pw: &str) -> Value {
    let consent = reach_consent(s, b, client, user, pw).await;
    let r = decide(s, b, &consent, "allow").await;
    assert_eq!(r.status().as_u16(), 302);
    redeem(s, client, &redirect_query(&r)["code"]).await
}

async fn redeem(s: &TestServer, client: &str, code: &str) -> Value {
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("client_id", client),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn tokens(body: &Value) -> (String, String) {
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn time_until_inactive(s: &TestServer, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if s.introspect(token).await["active"] == false {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still active after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_client(s: &TestServer) -> UserAdminClient<tonic::transport::Channel> {
    UserAdminClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap()
}

fn by_subject(issuer: &str, subject: &str) -> Option<UserRef> {
    Some(UserRef {
        user_id: String::new(),
        upstream_issuer: issuer.into(),
        upstream_subject: subject.into(),
    })
}

#[tokio::test]
async fn revoke_user_ends_every_grant_token_consent_and_session_of_that_user_only() {
    let a = TestServer::start_with(local_login_with_admin()).await;
    let b = TestServer::start_on(a.shared_db(), a.prefix.clone(), local_login_with_admin()).await;
    let client = a.public_client().await;
    let mut alice = Browser::default();
    let (alice_at, alice_rt) =
        tokens(&sign_in(&a, &mut alice, &client, "alice", ALICE_PASSWORD).await);
    let mut bob = Browser::default();
    let (bob_at, bob_rt) = tokens(&sign_in(&a, &mut bob, &client, "bob", BOB_PASSWORD).await);
    b.assert_active(&alice_at).await;
    assert_eq!(consents(&a, &client).await.len(), 2);

    // Without the admin permission: refused, nothing revoked.
    let refused = admin_client(&a)
        .await
        .revoke_user(with_credential(
            INTROSPECT_ONLY,
            RevokeUserRequest {
                user: by_subject("local", "alice"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    b.assert_active(&alice_at).await;

    // Unknown users are NOT_FOUND.
    let unknown = admin_client(&a)
        .await
        .revoke_user(with_credential(
            ADMIN,
            RevokeUserRequest {
                user: by_subject("local", "mallory"),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let done = admin_client(&a)
        .await
        .revoke_user(with_credential(
            ADMIN,
            RevokeUserRequest {
                user: by_subject("local", "alice"),
                include_vault: false,
                reason: "INC-42".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            done.grants_revoked,
            done.consents_deleted,
            done.sessions_deleted
        ),
        (1, 1, 1),
        "{done:?}"
    );
    // The other replica refuses alice's access token within a second (fan-out), on HTTP and
    // gRPC; her refresh token is dead.
    let took = time_until_inactive(&b, &alice_at, Duration::from_secs(3)).await;
    println!("user revocation reached replica B after {took:?}");
    assert!(took < Duration::from_secs(1), "replica B took {took:?}");
    b.assert_inactive(&alice_at).await;
    a.assert_inactive(&alice_at).await;
    a.assert_inactive(&alice_rt).await;
    assert_oauth_error(
        &b.refresh(&client, &alice_rt, &[]).await,
        400,
        "invalid_grant",
    );
    // Her consent and her browser session are gone: the next /authorize asks her to sign in,
    // then to consent again.
    assert_eq!(consents(&a, &client).await.len(), 1);
    let login = page(alice.authorize(&b, &request(&client, &[])).await, 200).await;
    assert!(login.contains("name=\"password\""), "{login}");
    let again = page(
        log_in(&b, &mut alice, &login, "alice", ALICE_PASSWORD).await,
        200,
    )
    .await;
    assert!(again.contains("action=\"consent\""), "{again}");

    // Bob is untouched.
    b.assert_active(&bob_at).await;
    let (status, body, _) = b.refresh(&client, &bob_rt, &[]).await;
    assert_eq!(status, 200, "{body}");
    let r = bob.authorize(&a, &request(&client, &[])).await;
    assert_eq!(
        r.status().as_u16(),
        302,
        "bob's session and consent still stand"
    );

    let audited = a.audit_events("user.revoked", 1).await;
    assert_eq!(audited[0].detail["actor"], "grpc:ops");
    assert_eq!(audited[0].detail["reason"], "INC-42");
    let _ = b.stop_keep_db().await;
    a.stop().await;
}

#[tokio::test]
async fn a_disabled_user_gets_no_code_and_no_token_until_enabled() {
    let s = TestServer::start_with(local_login_with_admin()).await;
    let client = s.public_client().await;
    let mut alice = Browser::default();
    let (at, rt) = tokens(&sign_in(&s, &mut alice, &client, "alice", ALICE_PASSWORD).await);
    let user_id = s.introspect(&at).await["sub"].as_str().unwrap().to_owned();
    // A code issued before the user is disabled, redeemed after.
    let mut alice2 = Browser::default();
    let pending = sign_in_code(&s, &mut alice2, &client).await;

    let set = |disabled: bool| SetUserDisabledRequest {
        user: Some(UserRef {
            user_id: user_id.clone(),
            ..Default::default()
        }),
        disabled,
        include_vault: false,
        reason: "test".into(),
    };
    let r = admin_client(&s)
        .await
        .set_user_disabled(with_credential(ADMIN, set(true)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.disabled && r.revoked.is_some(), "{r:?}");
    s.assert_inactive(&at).await;
    assert_oauth_error(&s.refresh(&client, &rt, &[]).await, 400, "invalid_grant");
    let (status, body, _) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &pending),
            ("code_verifier", VERIFIER),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // Signing in again gets no code: the client hears access_denied.
    let mut fresh = Browser::default();
    let consent = reach_consent(&s, &mut fresh, &client, "alice", ALICE_PASSWORD).await;
    let r = decide(&s, &mut fresh, &consent, "allow").await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{q:?}"
    );
    assert!(!q.contains_key("code"));
    assert_eq!(s.audit_events("user.disabled", 1).await.len(), 1);

    // Enabled again: a new sign-in works (tokens are compared with the revocation instant in
    // whole seconds, so step past it).
    admin_client(&s)
        .await
        .set_user_disabled(with_credential(ADMIN, set(false)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // (The consent given while disabled was recorded: straight to the code.)
    let code = sign_in_code(&s, &mut Browser::default(), &client).await;
    let (at2, rt2) = tokens(&redeem(&s, &client, &code).await);
    s.assert_active(&at2).await;
    let (status, body, _) = s.refresh(&client, &rt2, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.audit_events("user.enabled", 1).await.len(), 1);
    s.stop().await;
}

/// Sign-in of a user who already consented, up to the code (not redeemed).
async fn sign_in_code(s: &TestServer, b: &mut Browser, client: &str) -> String {
    let login = page(b.authorize(s, &request(client, &[])).await, 200).await;
    let r = log_in(s, b, &login, "alice", ALICE_PASSWORD).await;
    assert_eq!(r.status().as_u16(), 302);
    redirect_query(&r)["code"].clone()
}

#[tokio::test]
async fn the_admin_cli_revokes_with_the_service_configuration() {
    let s = TestServer::start_with(local_login_with_admin()).await;
    let client = s.public_client().await;
    let mut alice = Browser::default();
    let (at, rt) = tokens(&sign_in(&s, &mut alice, &client, "alice", ALICE_PASSWORD).await);
    // The CLI is another process with the same configuration: here, another state on the same
    // database and Redis prefix.
    let config = s.running.as_ref().unwrap().state.config.as_ref().clone();
    let out = auth_service::user_admin::run_cli(
        config,
        "local:alice",
        "INC-7",
        auth_service::user_admin::CliAction::RevokeUser {
            include_vault: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(out["grants_revoked"], 1, "{out}");
    let took = time_until_inactive(&s, &at, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_oauth_error(&s.refresh(&client, &rt, &[]).await, 400, "invalid_grant");
    let audited = s.audit_events("user.revoked", 1).await;
    assert_eq!(audited[0].detail["actor"], "cli");
    s.stop().await;
}

#[tokio::test]
async fn logout_ends_the_browser_session_and_refuses_cross_site_requests() {
    let s = TestServer::start_with(local_login()).await;
    let client = s.public_client().await;
    let mut alice = Browser::default();
    sign_in(&s, &mut alice, &client, "alice", ALICE_PASSWORD).await;
    let signed_in = |b: &Browser| {
        let b = b.clone();
        let s = &s;
        let client = client.clone();
        async move {
            let mut b = b;
            let r = b.authorize(s, &request(&client, &[])).await;
            r.status().as_u16() == 302
        }
    };
    assert!(signed_in(&alice).await);
    let logout = |origin: Option<String>, b: &Browser| {
        let mut req = s
            .http
            .post(s.url("/logout"))
            .header("cookie", b.cookie_header());
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    // Another site's form: refused, the session stands.
    let r = logout(Some("https://evil.example".into()), &alice)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = logout(None, &alice).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(signed_in(&alice).await);
    // From the issuer's own origin: signed out, cookie cleared, session gone server-side too
    // (a copy of the old cookie no longer works).
    let before = alice.clone();
    let r = logout(Some(s.issuer()), &alice).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cleared = set_cookie(&r, SESSION_COOKIE).expect("the session cookie is cleared");
    assert!(
        cleared.to_ascii_lowercase().contains("max-age=0"),
        "{cleared}"
    );
    assert!(!signed_in(&before).await);
    assert_eq!(s.audit_events("session.logged_out", 1).await.len(), 1);
    s.stop().await;
}

async fn revoke_alice(s: &TestServer) -> mcpauth_proto::v1::RevokeUserResponse {
    admin_client(s)
        .await
        .revoke_user(with_credential(
            ADMIN,
            RevokeUserRequest {
                user: by_subject("local", "alice"),
                include_vault: false,
                reason: "INC-43".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// A browser that reached the consent page as alice (a hijacked session, say) before the
/// operator revoked her must not finish the authorization afterwards: the pending request
/// outlives the session and the consents that revoke-user deletes.
#[tokio::test]
async fn a_consent_page_left_open_across_revoke_user_yields_no_code() {
    let s = TestServer::start_with(local_login_with_admin()).await;
    let client = s.public_client().await;
    let mut hijacked = Browser::default();
    let consent = reach_consent(&s, &mut hijacked, &client, "alice", ALICE_PASSWORD).await;
    revoke_alice(&s).await;
    let r = decide(&s, &mut hijacked, &consent, "allow").await;
    assert_eq!(r.status().as_u16(), 302);
    let q = redirect_query(&r);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{q:?}"
    );
    assert!(!q.contains_key("code"), "{q:?}");
    s.stop().await;
}

/// `grants.expires_at` is fixed when a grant is created while every rotation gives its refresh
/// token a fresh lifetime: a grant refreshed past that instant is still live, and revoke-user
/// must end it too. And the disabled flag alone stops refreshing, should revoking the grants
/// of a disabled user fail halfway.
#[tokio::test]
async fn revoke_user_ends_grants_refreshed_past_their_first_expiry_and_disabled_users_cannot_refresh()
 {
    let s = TestServer::start_with(local_login_with_admin()).await;
    let client = s.public_client().await;
    let (_, rt) = tokens(
        &sign_in(
            &s,
            &mut Browser::default(),
            &client,
            "alice",
            ALICE_PASSWORD,
        )
        .await,
    );
    let (_, bob_rt) =
        tokens(&sign_in(&s, &mut Browser::default(), &client, "bob", BOB_PASSWORD).await);
    sqlx::query("UPDATE grants SET expires_at = now() - interval '1 hour'")
        .execute(&s.pool)
        .await
        .unwrap();
    let (status, body, _) = s.refresh(&client, &rt, &[]).await;
    assert_eq!(
        status, 200,
        "a grant past its first expiry still refreshes: {body}"
    );
    let rt = body["refresh_token"].as_str().unwrap().to_owned();

    let done = revoke_alice(&s).await;
    assert_eq!(done.grants_revoked, 1, "{done:?}");
    assert_oauth_error(&s.refresh(&client, &rt, &[]).await, 400, "invalid_grant");

    sqlx::query("UPDATE users SET disabled_at = now() WHERE username = 'bob'")
        .execute(&s.pool)
        .await
        .unwrap();
    assert_oauth_error(
        &s.refresh(&client, &bob_rt, &[]).await,
        400,
        "invalid_grant",
    );
    s.stop().await;
}

/// The CLI's configuration, pointed at another Redis (same database, same key prefix).
fn cli_config_on_redis(s: &TestServer, redis_url: &str) -> auth_service::config::Config {
    let mut config = s.running.as_ref().unwrap().state.config.as_ref().clone();
    config.redis.url = mcpauth_runtime::Secret::new(redis_url);
    config
}

async fn cli_revoke(config: auth_service::config::Config) -> anyhow::Result<serde_json::Value> {
    auth_service::user_admin::run_cli(
        config,
        "local:alice",
        "INC-8",
        auth_service::user_admin::CliAction::RevokeUser {
            include_vault: false,
        },
    )
    .await
}

/// Review of issue 12: with Redis down the revocation reaches no replica's channel, and the
/// CLI owes them a `resync`. It must not exit as if that were fine: it retries, then exits
/// non-zero with one line saying what happened and what the replicas will do.
#[tokio::test]
async fn the_admin_cli_exits_non_zero_saying_so_when_the_replicas_could_not_be_told() {
    let s = TestServer::start_with(local_login_with_admin()).await;
    let client = s.public_client().await;
    let mut alice = Browser::default();
    let (_, rt) = tokens(&sign_in(&s, &mut alice, &client, "alice", ALICE_PASSWORD).await);
    let mut redis = PrivateRedis::start("admin-cli-down");
    redis.crash();
    let e = cli_revoke(cli_config_on_redis(&s, &redis.url()))
        .await
        .expect_err("the replicas were not told");
    let line = format!("{e:#}");
    println!("admin revoke-user with Redis stopped: {line}");
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("resync"), "{line}");
    assert!(line.contains("revocation_resync_ms"), "{line}");
    // What Postgres holds is done all the same: the grant is revoked.
    assert_oauth_error(&s.refresh(&client, &rt, &[]).await, 400, "invalid_grant");
    s.stop().await;
}

/// The same with a Redis that refuses PUBLISH to the CLI (an ACL), then allows it again while
/// the CLI is still at work: the owed `resync` reaches the channel before the CLI exits.
#[tokio::test]
async fn the_admin_cli_sends_the_owed_resync_before_it_exits() {
    let s = TestServer::start_with(local_login_with_admin()).await;
    let client = s.public_client().await;
    let mut alice = Browser::default();
    sign_in(&s, &mut alice, &client, "alice", ALICE_PASSWORD).await;
    let redis = PrivateRedis::start("admin-cli-acl");
    let admin = redis::Client::open(redis.url()).unwrap();
    let admin_conn = admin.get_multiplexed_async_connection().await.unwrap();
    let acl = |rule: &'static str| {
        let mut c = admin_conn.clone();
        async move {
            let _: () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg("cli")
                .arg(rule)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    };
    acl("reset").await;
    for rule in ["on", "nopass", "~*", "&*", "+@all", "-publish"] {
        acl(rule).await;
    }
    // Everything the replicas hear, from before the CLI starts.
    let mut pubsub = admin.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{}:events", s.prefix))
        .await
        .unwrap();
    let url = format!("redis://cli:x@127.0.0.1:{}", redis.port);
    let cli = tokio::spawn(cli_revoke(cli_config_on_redis(&s, &url)));
    // Once the grants are revoked, the announcement of the user revocation (made first) has
    // failed: a resync is owed. Now PUBLISH works again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let revoked: bool =
            sqlx::query_scalar("SELECT bool_or(revoked_at IS NOT NULL) FROM grants")
                .fetch_one(&s.pool)
                .await
                .unwrap();
        if revoked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI revoked nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acl("+publish").await;
    let out = cli.await.unwrap().expect("the resync was sent");
    assert_eq!(out["grants_revoked"], 1, "{out}");
    let mut heard = Vec::new();
    let mut messages = pubsub.on_message();
    while !heard.iter().any(|m| m == "\"resync\"") {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap_or_else(|_| panic!("no resync on the channel; heard {heard:?}"))
            .unwrap();
        heard.push(m.get_payload::<String>().unwrap());
    }
    drop(admin_conn);
    s.stop().await;
}
