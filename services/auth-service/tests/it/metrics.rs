//! `/metrics`: per-method gRPC server metrics (requests by method and status code, latency
//! histogram) and the connection-pool gauges.

use mcpauth_proto::v1::{IntrospectRequest, IntrospectResponse};

use crate::harness::*;

const INTROSPECT: &str = "mcpauth.v1.TokenIntrospection/Introspect";

/// The value of the sample line `name{labels}`, if present.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

async fn introspect(
    s: &TestServer,
    credential: Option<&str>,
) -> Result<IntrospectResponse, tonic::Status> {
    let mut c = s.grpc_client().await;
    let mut req = tonic::Request::new(IntrospectRequest {
        token: "not-a-token".into(),
        expected_resource: RESOURCE.into(),
    });
    if let Some(cred) = credential {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {cred}").parse().unwrap());
    }
    c.introspect(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn grpc_calls_by_method_and_status_and_pool_gauges() {
    let s = TestServer::start().await;
    for _ in 0..3 {
        let ok = introspect(&s, Some(GRPC_CREDENTIAL)).await.unwrap();
        assert!(!ok.active);
    }
    let refused = introspect(&s, Some("wrong-credential")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // A path outside the contract: UNIMPLEMENTED, counted as `other`, the path never a label.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let unknown = raw
        .unary::<_, IntrospectResponse, _>(
            tonic::Request::new(IntrospectRequest::default()),
            http::uri::PathAndQuery::from_static("/attacker.Chosen/Path123"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);

    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let requests = |method: &str, code: &str| {
        sample(
            &text,
            &format!("mcpauth_grpc_server_requests_total{{method=\"{method}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(requests(INTROSPECT, "OK"), Some(3.0), "{text}");
    assert_eq!(requests(INTROSPECT, "UNAUTHENTICATED"), Some(1.0), "{text}");
    assert_eq!(requests("other", "UNIMPLEMENTED"), Some(1.0), "{text}");
    assert!(!text.contains("attacker.Chosen"), "{text}");
    assert!(!text.contains("Path123"), "{text}");
    // One histogram per method: every call of it, whatever its status.
    let count = sample(
        &text,
        &format!("mcpauth_grpc_server_request_duration_seconds_count{{method=\"{INTROSPECT}\"}}"),
    );
    assert_eq!(count, Some(4.0), "{text}");
    let sum = sample(
        &text,
        &format!("mcpauth_grpc_server_request_duration_seconds_sum{{method=\"{INTROSPECT}\"}}"),
    )
    .unwrap();
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
    let under_2_5s = sample(
        &text,
        &format!(
            "mcpauth_grpc_server_request_duration_seconds_bucket{{method=\"{INTROSPECT}\",le=\"2.5\"}}"
        ),
    );
    assert_eq!(under_2_5s, Some(4.0), "{text}");

    // Pool gauges, sampled at start: the configured maxima, and no more connections than that.
    let gauge = |name: &str, labels: &str| {
        sample(&text, &format!("{name}{{{labels}}}"))
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing:\n{text}"))
    };
    assert_eq!(
        gauge("mcpauth_pool_max_connections", "pool=\"postgres\""),
        8.0
    );
    assert_eq!(
        gauge("mcpauth_pool_max_connections", "pool=\"redis\""),
        32.0
    );
    for pool in ["postgres", "redis"] {
        let idle = gauge(
            "mcpauth_pool_connections",
            &format!("pool=\"{pool}\",state=\"idle\""),
        );
        let in_use = gauge(
            "mcpauth_pool_connections",
            &format!("pool=\"{pool}\",state=\"in_use\""),
        );
        let max = gauge("mcpauth_pool_max_connections", &format!("pool=\"{pool}\""));
        assert!(
            idle >= 0.0 && in_use >= 0.0 && idle + in_use <= max,
            "{pool}: {idle} {in_use} {max}"
        );
    }
    // The start opened connections to both (migrations, the start-up PING).
    assert!(
        gauge(
            "mcpauth_pool_connections",
            "pool=\"postgres\",state=\"idle\""
        ) + gauge(
            "mcpauth_pool_connections",
            "pool=\"postgres\",state=\"in_use\""
        ) >= 1.0
    );
    assert!(
        gauge("mcpauth_pool_connections", "pool=\"redis\",state=\"idle\"")
            + gauge(
                "mcpauth_pool_connections",
                "pool=\"redis\",state=\"in_use\""
            )
            >= 1.0
    );
    assert_eq!(gauge("mcpauth_pool_waiting", "pool=\"redis\""), 0.0);
    s.stop().await;
}
