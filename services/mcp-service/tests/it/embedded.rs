//! mcp-service on the embedded stores (`Stores::embedded`, the single-process mode of issue
//! 14): its configured Redis points nowhere, and sessions, notifications and readiness work
//! from memory. (auth-service, the introspection issuer, still runs on the shared backends.)

use std::sync::Arc;

use mcp_service::store::Stores;
use mcpauth_runtime::bus::MemoryBus;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn sessions_work_on_the_embedded_stores_without_redis() {
    let s = Stack::start().await;
    let mut cfg = s.mcp_config.clone();
    cfg.http.addr = "127.0.0.1:0".parse().unwrap();
    cfg.redis.url = mcpauth_runtime::Secret::new("redis://127.0.0.1:1");
    let stores = Stores::embedded(Arc::new(MemoryBus::new()));
    let replica = mcp_service::app::start_with(cfg, stores, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let base = format!("http://{}", replica.http_addr);
    let token = s.access_token().await;

    let r = s.post_at(&base, Some(&token), initialize(), None).await;
    assert_eq!(r.status().as_u16(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = r.text().await;
    let r = s
        .post_at(
            &base,
            Some(&token),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            Some(&sid),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let r = s
        .post_at(
            &base,
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            Some(&sid),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let tools = messages(r).await;
    assert!(tools[0]["result"]["tools"].is_array(), "{tools:?}");

    let ready = s.http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap(),
        json!({"memory": "ok"})
    );

    let deleted = s
        .http
        .delete(format!("{base}/mcp"))
        .bearer_auth(&token)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let gone = s
        .post_at(
            &base,
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
            Some(&sid),
        )
        .await;
    assert_eq!(gone.status().as_u16(), 404);

    replica.shutdown().await;
    s.stop().await;
}
