//! A credential row restored into Postgres after the user deleted the credential (from a backup,
//! or by anyone who can write the table) must not decrypt again: versions never repeat across
//! deletes, and a row older than the last delete of its record is refused.

use mcpauth_proto::v1::DeleteCredentialRequest;
use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

async fn delete(c: &mut TokenVaultClient<Channel>, mcp: &str) -> bool {
    c.delete_credential(req(
        CREDENTIAL,
        DeleteCredentialRequest {
            access_token: mcp.into(),
            provider: "github".into(),
            user_id: String::new(),
        },
    ))
    .await
    .unwrap()
    .into_inner()
    .deleted
}

async fn sql(pool: &sqlx::PgPool, q: &'static str) {
    sqlx::query(q).execute(pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_restored_after_delete_never_decrypts_again() {
    let w = World::start().await;
    let v = w.vault(&[]).await;
    let mut c = v.client();
    let pool = w.pool().await;
    let mcp = w.mcp_token("alice", &w.resource);
    let old = w.upstream_tokens("alice-old", now() + 3600);
    assert_eq!(put(&mut c, "alice", "github", old.clone()).await, 1);
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        old.access_token
    );
    // The attacker's copy of the sealed row (a backup).
    sql(
        &pool,
        "CREATE TABLE saved_row AS SELECT * FROM vault_credentials \
         WHERE user_id = 'alice' AND provider = 'github'",
    )
    .await;
    assert!(delete(&mut c, &mcp).await);

    // 1. The whole old row put back after the delete: refused, never the old token.
    sql(
        &pool,
        "INSERT INTO vault_credentials SELECT * FROM saved_row",
    )
    .await;
    let e = get(&mut c, &mcp, "github").await.unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(!e.message().contains(&old.access_token));

    // 2. The user connects again: the new record's version is above every deleted one.
    sql(
        &pool,
        "DELETE FROM vault_credentials WHERE user_id = 'alice' AND provider = 'github'",
    )
    .await;
    let new = w.upstream_tokens("alice-new", now() + 3600);
    let version = put(&mut c, "alice", "github", new.clone()).await;
    assert!(
        version > 1,
        "versions do not restart after a delete: {version}"
    );
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        new.access_token
    );
    // The old ciphertext restored with its version over the new record: refused.
    sql(
        &pool,
        "UPDATE vault_credentials c SET sealed = s.sealed, key_id = s.key_id, version = s.version \
         FROM saved_row s WHERE c.user_id = s.user_id AND c.provider = s.provider",
    )
    .await;
    let e = get_until_err(&mut c, &mcp, "github", &new.access_token).await;
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(!e.message().contains(&old.access_token));

    // 3. The old ciphertext under the new record's version: its authenticated data differs.
    put(&mut c, "alice", "github", new.clone()).await;
    let e = get(&mut c, &mcp, "github").await;
    assert_eq!(e.unwrap().access_token, new.access_token);
    sql(
        &pool,
        "UPDATE vault_credentials c SET sealed = s.sealed, key_id = s.key_id \
         FROM saved_row s WHERE c.user_id = s.user_id AND c.provider = s.provider",
    )
    .await;
    let e = get_until_err(&mut c, &mcp, "github", &new.access_token).await;
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains("does not decrypt"), "{}", e.message());

    pool.close().await;
    v.stop().await;
    w.stop().await;
}
