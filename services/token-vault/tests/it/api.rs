//! The API end to end: put/get/list/delete, permissions, callers and users that are refused.

use mcpauth_proto::v1::{
    ConnectionStatus, DeleteCredentialRequest, GetAccessTokenRequest, ListConnectionsRequest,
    PutCredentialRequest,
};
use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_get_list_delete_roundtrip() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    let mut events = w.events().await;
    let (mcp, user) = w.dev_login_token().await;
    let tokens = w.upstream_tokens("roundtrip", now() + 3600);

    assert_eq!(put(&mut c, &user, "github", tokens.clone()).await, 1);
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"user_id": user, "provider": "github", "status": "connected"})
    );
    let got = get(&mut c, &mcp, "github").await.unwrap();
    assert_eq!(got.access_token, tokens.access_token);
    assert_eq!(got.token_type, "Bearer");
    assert_eq!(got.expires_at, tokens.expires_at);
    assert_eq!(got.scopes, vec!["repo".to_owned()]);
    // A second put replaces the credential and bumps the version.
    let tokens2 = w.upstream_tokens("roundtrip2", now() + 3600);
    assert_eq!(put(&mut c, &user, "github", tokens2.clone()).await, 2);
    next_event(&mut events).await;
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        tokens2.access_token
    );

    let list = c
        .list_connections(req(
            CREDENTIAL,
            ListConnectionsRequest {
                access_token: mcp.clone(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.connections.len(), 1);
    let conn = &list.connections[0];
    assert_eq!(conn.provider, "github");
    assert_eq!(conn.status, ConnectionStatus::Connected as i32);
    assert_eq!(conn.expires_at, tokens2.expires_at);
    assert_eq!(conn.upstream_subject, format!("{user}@upstream"));
    assert!(conn.connected_at > 0 && conn.updated_at >= conn.connected_at);
    let shown = format!("{list:?}");
    for s in [
        &tokens.access_token,
        &tokens.refresh_token,
        &tokens2.access_token,
        &tokens2.refresh_token,
    ] {
        assert!(
            !shown.contains(s.as_str()),
            "ListConnections leaks a secret"
        );
    }
    // The admin route lists the same by user id.
    let by_admin = c
        .list_connections(req(
            CREDENTIAL,
            ListConnectionsRequest {
                access_token: String::new(),
                user_id: user.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_admin.connections, list.connections);

    // Unknown provider for this user: NOT_FOUND; unconfigured provider: INVALID_ARGUMENT.
    assert_eq!(
        get(&mut c, &mcp, "plain").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get(&mut c, &mcp, "nope").await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let del = c
        .delete_credential(req(
            CREDENTIAL,
            DeleteCredentialRequest {
                access_token: mcp.clone(),
                provider: "github".into(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(del.deleted && del.revoked_upstream);
    // RFC 7009 at the upstream, with the refresh token.
    assert_eq!(
        w.upstream.get(|s| s.revoked.clone()),
        vec![tokens2.refresh_token.clone()]
    );
    assert_eq!(
        next_event(&mut events).await,
        serde_json::json!({"user_id": user, "provider": "github", "status": "disconnected"})
    );
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap_err().code(),
        Code::NotFound
    );
    let again = c
        .delete_credential(req(
            CREDENTIAL,
            DeleteCredentialRequest {
                access_token: mcp.clone(),
                provider: "github".into(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.deleted && !again.revoked_upstream);

    // The access trail names the caller, action, user and provider.
    let pool = w.pool().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let trail: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT caller, action, provider, outcome FROM vault_audit WHERE user_id = $1 ORDER BY id",
    )
    .bind(&user)
    .fetch_all(&pool)
    .await
    .unwrap();
    let actions: Vec<&str> = trail.iter().map(|t| t.1.as_str()).collect();
    for a in ["put", "get", "list", "delete"] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    assert!(trail.iter().all(|t| t.0 == "all"));
    pool.close().await;

    w.assert_no_plaintext().await;
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_need_a_known_credential_and_the_right_permission() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    let mcp = w.mcp_token("alice", &w.resource);
    let put_req = |cred: &str| {
        req(
            cred,
            PutCredentialRequest {
                user_id: "alice".into(),
                provider: "github".into(),
                tokens: Some(w.upstream_tokens("perm", now() + 3600)),
                upstream_issuer: String::new(),
                upstream_subject: String::new(),
            },
        )
    };
    let get_req = |cred: &str| {
        req(
            cred,
            GetAccessTokenRequest {
                access_token: mcp.clone(),
                provider: "github".into(),
            },
        )
    };
    // No credential, an unknown one, a malformed header.
    let no_cred = tonic::Request::new(GetAccessTokenRequest {
        access_token: mcp.clone(),
        provider: "github".into(),
    });
    assert_eq!(
        c.get_access_token(no_cred).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.get_access_token(get_req("not-a-known-credential"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        c.put_credential(put_req("not-a-known-credential"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    // Permissions.
    assert_eq!(
        c.put_credential(put_req(GET_ONLY))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert!(c.put_credential(put_req(PUT_ONLY)).await.is_ok());
    assert_eq!(
        c.get_access_token(get_req(PUT_ONLY))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert!(c.get_access_token(get_req(GET_ONLY)).await.is_ok());
    // `get` cannot name a user; only `admin` can.
    let by_id = |cred: &str| {
        req(
            cred,
            DeleteCredentialRequest {
                access_token: String::new(),
                provider: "github".into(),
                user_id: "alice".into(),
            },
        )
    };
    assert_eq!(
        c.delete_credential(by_id(GET_ONLY))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let list_by_id = req(
        GET_ONLY,
        ListConnectionsRequest {
            access_token: String::new(),
            user_id: "alice".into(),
        },
    );
    assert_eq!(
        c.list_connections(list_by_id).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Both at once is ambiguous.
    let both = req(
        CREDENTIAL,
        ListConnectionsRequest {
            access_token: mcp.clone(),
            user_id: "alice".into(),
        },
    );
    assert_eq!(
        c.list_connections(both).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Malformed puts.
    let mut bad = put_req(CREDENTIAL);
    bad.get_mut().tokens.as_mut().unwrap().access_token.clear();
    assert_eq!(
        c.put_credential(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut bad = put_req(CREDENTIAL);
    bad.get_mut().provider = "unconfigured".into();
    assert_eq!(
        c.put_credential(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut bad = put_req(CREDENTIAL);
    bad.get_mut().user_id.clear();
    assert_eq!(
        c.put_credential(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert!(
        c.delete_credential(by_id(CREDENTIAL))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    v.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inactive_revoked_and_wrong_audience_tokens_are_unauthenticated() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    put(
        &mut c,
        "alice",
        "github",
        w.upstream_tokens("a", now() + 3600),
    )
    .await;
    let good = w.mcp_token("alice", &w.resource);
    assert!(get(&mut c, &good, "github").await.is_ok());

    for bad in [
        "garbage".to_owned(),
        format!("{good}x"),
        w.mcp_token("alice", OTHER_RESOURCE),
    ] {
        let e = get(&mut c, &bad, "github").await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert!(!e.message().contains(&bad));
    }
    assert_eq!(
        get(&mut c, "", "github").await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // A revoked token is refused within a second, although the vault cached it as active.
    let state = &w.auth.as_ref().unwrap().state;
    let claims = state.tokens.validate_access(&good).unwrap();
    state
        .tokens
        .revoke(
            auth_service::store::revocations::RevocationKind::Token,
            &claims.jti,
            claims.exp,
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        match get(&mut c, &good, "github").await {
            Err(e) if e.code() == Code::Unauthenticated => break,
            _ => {}
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "revoked token still accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    v.stop().await;
    w.stop().await;
}
