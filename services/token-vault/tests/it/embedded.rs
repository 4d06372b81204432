//! token-vault on the embedded stores (`Stores::embedded`: a SQLite file, the in-process refresh
//! lock and event bus): the same gRPC API as on Postgres and Redis, and the file holds the
//! credentials exactly as Postgres does — AES-256-GCM sealed, never in plaintext.

use std::sync::Arc;

use base64::Engine as _;
use mcpauth_proto::v1::{DeleteCredentialRequest, ListConnectionsRequest};
use mcpauth_runtime::bus::MemoryBus;
use token_vault::credential::ProviderTokens;
use token_vault::crypto::{KeyRing, Sealed};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_vault_serves_from_the_embedded_stores_and_its_file_holds_no_plaintext() {
    let w = World::start().await;
    let dir = std::env::temp_dir().join(format!(
        "mcpauth-vault-embedded-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let stores = token_vault::Stores::embedded(&dir, Arc::new(MemoryBus::new()))
        .await
        .unwrap();
    let cfg = w.vault_config(&w.vault_toml(&[("k1", 1)], "k1", ""), &[]);
    let running = token_vault::start_with(cfg, stores, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let v = Vault::new(running).await;
    let mut c = v.client();
    let (mcp, user) = w.dev_login_token().await;

    // A credential due for refresh: the first read refreshes it at the upstream, once.
    let due = w.upstream_tokens("embedded", now() + 5);
    assert_eq!(put(&mut c, &user, "github", due.clone()).await, 1);
    let got = get(&mut c, &mcp, "github").await.unwrap();
    assert_ne!(got.access_token, due.access_token);
    assert_eq!(w.upstream.get(|s| s.refreshes_ok), 1);
    assert_eq!(
        w.upstream.get(|s| s.refresh_tokens_seen.clone()),
        std::slice::from_ref(&due.refresh_token)
    );
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        got.access_token
    );
    // A second provider, deleted again (revoked upstream).
    let other = w.upstream_tokens("embedded-plain", now() + 3600);
    assert_eq!(put(&mut c, &user, "plain", other).await, 1);
    let listed = c
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
    let providers: Vec<&str> = listed
        .connections
        .iter()
        .map(|c| c.provider.as_str())
        .collect();
    assert_eq!(providers, ["github", "plain"]);
    let deleted = c
        .delete_credential(req(
            CREDENTIAL,
            DeleteCredentialRequest {
                access_token: mcp.clone(),
                provider: "plain".into(),
                user_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    assert_eq!(
        put(
            &mut c,
            &user,
            "plain",
            w.upstream_tokens("embedded-plain-2", now() + 3600)
        )
        .await,
        2,
        "versions continue above the deleted record's"
    );
    v.stop().await;

    // Nothing went to Postgres: the vault's data is in its file.
    let pool = w.pool().await;
    let (in_postgres,): (i64,) = sqlx::query_as("SELECT count(*) FROM vault_credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(in_postgres, 0);
    pool.close().await;

    // The stored ciphertext is the production format: it opens under the key ring, bound to
    // its record, to the refreshed tokens.
    let db = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(token_vault::store::sqlite_path(&dir)),
    )
    .await
    .unwrap();
    let (version, key_id, blob): (i64, String, Vec<u8>) = sqlx::query_as(
        "SELECT version, key_id, sealed FROM vault_credentials WHERE user_id = ?1 AND provider = 'github'",
    )
    .bind(&user)
    .fetch_one(&db)
    .await
    .unwrap();
    let (audit_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM vault_audit")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(audit_rows > 0, "the trail is in the file too");
    db.close().await;
    let keys = KeyRing::from_base64(&[("k1".into(), key_b64(1))], "k1").unwrap();
    let opened =
        ProviderTokens::open(&keys, &user, "github", version, &Sealed { key_id, blob }).unwrap();
    assert_eq!(opened.access_token, got.access_token);

    // Every byte of every file of the data directory (the database, its WAL): no secret in any
    // form, while the (non-secret) user id is there to be found.
    let mut secrets = w.secrets.lock().unwrap().clone();
    secrets.extend(w.upstream.get(|s| s.issued.clone()));
    assert!(secrets.len() >= 6);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&user), "the scan reads the stored rows");
    for (i, s) in secrets.iter().enumerate() {
        for form in [
            s.clone(),
            token_vault::crypto::hex(s.as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(s),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s),
        ] {
            assert!(
                !contains(&form),
                "secret #{i} in plaintext in the SQLite files"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    w.stop().await;
}
