//! mcp-service runs no gRPC server; its gRPC *client* calls (introspection at auth-service here)
//! are counted by method and status code with their latency, and its Redis pool has gauges.

use crate::harness::*;

const INTROSPECT: &str = "mcpauth.v1.TokenIntrospection/Introspect";

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn grpc_client_calls_by_method_and_status() {
    let s = Stack::start().await;
    let at = s.access_token().await;
    // A cache miss: one Introspect call, answered OK.
    assert_eq!(s.post_status(Some(&at), initialize(), None).await, 200);
    // A replica whose credential auth-service does not know: UNAUTHENTICATED, so 503.
    let mut wrong = s.mcp_config.clone();
    wrong.verifier.grpc.credential = mcpauth_runtime::Secret::new("not-the-credential");
    wrong.http.addr = "127.0.0.1:0".parse().unwrap();
    let replica = mcp_service::app::start(wrong, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let replica_base = format!("http://{}", replica.http_addr);
    let r = s
        .post_at(&replica_base, Some(&at), initialize(), None)
        .await;
    assert_eq!(r.status().as_u16(), 503);

    let text = s
        .http
        .get(format!("{}/metrics", s.mcp_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client = |code: &str| {
        sample(
            &text,
            &format!(
                "mcpauth_grpc_client_requests_total{{method=\"{INTROSPECT}\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(client("OK"), Some(1.0), "{text}");
    assert_eq!(client("UNAUTHENTICATED"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            &format!(
                "mcpauth_grpc_client_request_duration_seconds_count{{method=\"{INTROSPECT}\"}}"
            )
        ),
        Some(2.0),
        "{text}"
    );
    // The server side of the same calls, at auth-service (in this process too).
    assert_eq!(
        sample(
            &text,
            &format!(
                "mcpauth_grpc_server_requests_total{{method=\"{INTROSPECT}\",code=\"UNAUTHENTICATED\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
    // No token, credential or raw path in any label.
    assert!(!text.contains(&at));
    assert!(!text.contains("not-the-credential"));
    let max = sample(&text, "mcpauth_pool_max_connections{pool=\"redis\"}").unwrap();
    assert!(max == 16.0 || max == 32.0, "{max}");
    replica.shutdown().await;
    s.stop().await;
}
