//! A vault process killed in the middle of a refresh loses nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_killed_mid_refresh_loses_no_credential() {
    let w = World::start().await;
    let port = free_port();
    let file = std::env::temp_dir().join(format!("{}-vault-bin.toml", w.prefix));
    std::fs::write(&file, w.vault_toml(&[("k1", 1)], "k1", "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_token-vault"))
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .env("MCPAUTH__GRPC__ADDR", format!("127.0.0.1:{port}"))
        .env("MCPAUTH__LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => break c,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the vault process did not start: {e}"),
        }
    };
    let mut proc_client = mcpauth_proto::v1::token_vault_client::TokenVaultClient::new(channel);
    let mcp = w.mcp_token("alice", &w.resource);
    let t = w.upstream_tokens("crash", now() - 5);
    put(&mut proc_client, "alice", "github", t.clone()).await;

    // The upstream holds the refresh response; the process is killed while it waits.
    w.upstream.set(|s| s.default = Some(Answer::Hold));
    let pending = {
        let mut c = proc_client.clone();
        let mcp = mcp.clone();
        tokio::spawn(async move { get(&mut c, &mcp, "github").await })
    };
    let started = Instant::now();
    while w.upstream.get(|s| s.token_calls) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no refresh reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(pending.await.unwrap().is_err());
    let _ = std::fs::remove_file(&file);

    // The stored credential is intact and another replica refreshes it once the dead
    // process's lock expires.
    let pool = w.pool().await;
    let (version, status, _) = row(&pool, "alice", "github").await.unwrap();
    assert_eq!((version, status.as_str()), (1, "connected"));
    w.upstream.set(|s| s.default = Some(Answer::Ok));
    let v = w.vault(&[]).await;
    let got = get(&mut v.client(), &mcp, "github").await.unwrap();
    assert!(got.access_token.starts_with("upstream-at-refreshed-1-"));
    assert_eq!(
        w.upstream.get(|s| s.refresh_tokens_seen.clone()),
        vec![t.refresh_token.clone(); 2],
        "the survivor used the same, intact refresh token"
    );
    assert_eq!(row(&pool, "alice", "github").await.unwrap().0, 2);
    pool.close().await;
    w.assert_no_plaintext().await;
    v.stop().await;
    w.stop().await;
}
