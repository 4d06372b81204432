//! Two users: neither can obtain the other's upstream token by any route.

use mcpauth_proto::v1::{DeleteCredentialRequest, ListConnectionsRequest};
use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_never_reach_each_others_credentials() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    let alice_mcp = w.mcp_token("alice", &w.resource);
    let bob_mcp = w.mcp_token("bob", &w.resource);
    let alice_t = w.upstream_tokens("alice", now() + 3600);
    let bob_t = w.upstream_tokens("bob", now() + 3600);
    put(&mut c, "alice", "github", alice_t.clone()).await;
    put(&mut c, "bob", "github", bob_t.clone()).await;
    // Only alice connected `plain`.
    let alice_plain = w.upstream_tokens("alice-plain", now() + 3600);
    put(&mut c, "alice", "plain", alice_plain.clone()).await;

    // Each token reads its own user's credential, whatever else the request says.
    assert_eq!(
        get(&mut c, &alice_mcp, "github")
            .await
            .unwrap()
            .access_token,
        alice_t.access_token
    );
    assert_eq!(
        get(&mut c, &bob_mcp, "github").await.unwrap().access_token,
        bob_t.access_token
    );
    assert_eq!(
        get(&mut c, &bob_mcp, "plain").await.unwrap_err().code(),
        Code::NotFound
    );
    // A user id smuggled into a token-carrying request is refused, not honoured.
    let smuggled = req(
        CREDENTIAL,
        ListConnectionsRequest {
            access_token: bob_mcp.clone(),
            user_id: "alice".into(),
        },
    );
    assert_eq!(
        c.list_connections(smuggled).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let smuggled = req(
        CREDENTIAL,
        DeleteCredentialRequest {
            access_token: bob_mcp.clone(),
            provider: "plain".into(),
            user_id: "alice".into(),
        },
    );
    assert_eq!(
        c.delete_credential(smuggled).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Bob deleting "plain" deletes nothing of alice's.
    let del = c
        .delete_credential(req(
            CREDENTIAL,
            DeleteCredentialRequest {
                access_token: bob_mcp.clone(),
                provider: "plain".into(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!del.deleted);
    let bob_list = c
        .list_connections(req(
            CREDENTIAL,
            ListConnectionsRequest {
                access_token: bob_mcp.clone(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob_list.connections.len(), 1);
    assert!(
        get(&mut c, &alice_mcp, "plain")
            .await
            .unwrap()
            .access_token
            .starts_with("upstream-at-alice-plain-")
    );

    // Copy alice's ciphertext (with her version and key) onto bob's row: it does not decrypt
    // for bob, and bob gets an error, never alice's token.
    let pool = w.pool().await;
    sqlx::query(
        "UPDATE vault_credentials b SET sealed = a.sealed, key_id = a.key_id, version = a.version \
         FROM vault_credentials a WHERE a.user_id = 'alice' AND a.provider = 'github' \
         AND b.user_id = 'bob' AND b.provider = 'github'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let e = get_until_err(&mut c, &bob_mcp, "github", &bob_t.access_token).await;
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains("does not decrypt"), "{}", e.message());
    assert!(!e.message().contains(&alice_t.access_token));
    // Moving it to another provider of the same user fails the same way.
    sqlx::query(
        "UPDATE vault_credentials b SET sealed = a.sealed, key_id = a.key_id, version = a.version \
         FROM vault_credentials a WHERE a.user_id = 'alice' AND a.provider = 'github' \
         AND b.user_id = 'alice' AND b.provider = 'plain'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        get_until_err(&mut c, &alice_mcp, "plain", &alice_plain.access_token)
            .await
            .code(),
        Code::DataLoss
    );
    // Alice's own credential is untouched.
    assert_eq!(
        get(&mut c, &alice_mcp, "github")
            .await
            .unwrap()
            .access_token,
        alice_t.access_token
    );
    pool.close().await;
    w.assert_no_plaintext().await;
    v.stop().await;
    w.stop().await;
}
