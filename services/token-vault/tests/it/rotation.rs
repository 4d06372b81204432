//! Key rotation: a new current key, `token-vault rekey`, the old key dropped; tampering.

use std::process::Command;

use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rekey_moves_every_record_to_the_new_key() {
    let w = World::start().await;
    let old = w.vault(&[]).await; // k1 only
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let mut expected = vec![];
    for u in users {
        let t = w.upstream_tokens(u, now() + 3600);
        put(&mut old.client(), u, "github", t.clone()).await;
        expected.push(t.access_token);
    }
    old.stop().await;
    let pool = w.pool().await;

    // With only the new key, old records fail clearly (and name the missing key id).
    let new_only_toml = w.vault_toml(&[("k2", 2)], "k2", "");
    let new_only = w.vault_with(&new_only_toml, &[]).await;
    let e = get(
        &mut new_only.client(),
        &w.mcp_token("u1", &w.resource),
        "github",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss);
    assert!(e.message().contains("\"k1\""), "{}", e.message());
    new_only.stop().await;

    // Step 1: k2 current, k1 still listed. Writes go to k2, k1 records still read.
    let both_toml = w.vault_toml(&[("k1", 1), ("k2", 2)], "k2", "");
    let both = w.vault_with(&both_toml, &[]).await;
    assert_eq!(
        get(
            &mut both.client(),
            &w.mcp_token("u1", &w.resource),
            "github"
        )
        .await
        .unwrap()
        .access_token,
        expected[0]
    );
    both.stop().await;

    // Step 2: `token-vault rekey`, in batches of 2, with progress output.
    let file = std::env::temp_dir().join(format!("{}-rekey.toml", w.prefix));
    std::fs::write(&file, &both_toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_token-vault"))
        .args(["--config", file.to_str().unwrap(), "rekey", "--batch", "2"])
        .env("MCPAUTH__LOG__FILTER", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("rekey: ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("rekey done: 5 re-encrypted under \"k2\""),
        "{stdout}"
    );
    for u in users {
        assert!(!stdout.contains(u), "progress output names no user");
    }
    // Resumable and idempotent: a second run finds nothing left.
    let again = Command::new(env!("CARGO_BIN_EXE_token-vault"))
        .args(["--config", file.to_str().unwrap(), "rekey"])
        .env("MCPAUTH__LOG__FILTER", "warn")
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("rekey done: 0 re-encrypted"));
    let _ = std::fs::remove_file(&file);
    for u in users {
        let (version, _, key) = row(&pool, u, "github").await.unwrap();
        assert_eq!((version, key.as_str()), (1, "k2"));
    }

    // Step 3: k1 dropped from the configuration; everything still decrypts.
    let new_only = w.vault_with(&new_only_toml, &[]).await;
    let mut c = new_only.client();
    for (u, at) in users.iter().zip(&expected) {
        assert_eq!(
            &get(&mut c, &w.mcp_token(u, &w.resource), "github")
                .await
                .unwrap()
                .access_token,
            at
        );
    }

    // A flipped ciphertext bit fails with a clear error.
    sqlx::query(
        "UPDATE vault_credentials SET sealed = set_byte(sealed, 20, get_byte(sealed, 20) # 1) \
         WHERE user_id = 'u2'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let e = get_until_err(
        &mut c,
        &w.mcp_token("u2", &w.resource),
        "github",
        &expected[1],
    )
    .await;
    assert_eq!(e.code(), Code::DataLoss);
    assert!(e.message().contains("does not decrypt"), "{}", e.message());
    assert!(
        get(&mut c, &w.mcp_token("u3", &w.resource), "github")
            .await
            .is_ok()
    );
    pool.close().await;
    w.assert_no_plaintext().await;
    new_only.stop().await;
    w.stop().await;
}
