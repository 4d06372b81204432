//! The gRPC face: `mcpauth.v1.TokenIntrospection` behind service credentials, the standard
//! health protocol, and server reflection.

use mcpauth_proto::v1::{IntrospectRequest, IntrospectResponse};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::harness::*;

const SERVICE: &str = "mcpauth.v1.TokenIntrospection";

async fn channel(s: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Introspects with the given `authorization` metadata value (none when `None`).
async fn introspect_as(
    s: &TestServer,
    authorization: Option<&str>,
    token: &str,
) -> Result<IntrospectResponse, tonic::Status> {
    let mut c = s.grpc_client().await;
    let mut req = tonic::Request::new(IntrospectRequest {
        token: token.into(),
        expected_resource: String::new(),
    });
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    c.introspect(req).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn introspection_requires_a_service_credential() {
    let s = TestServer::start().await;
    let (_, body) = s.login(None).await;
    let at = body["access_token"].as_str().unwrap();

    let refusals = [
        None,
        Some("Bearer not-the-credential".to_owned()),
        Some(format!("Basic {GRPC_CREDENTIAL}")),
        Some(GRPC_CREDENTIAL.to_owned()),
        Some("Bearer ".to_owned()),
        // An OAuth access token is not a service credential.
        Some(format!("Bearer {at}")),
    ];
    for auth in &refusals {
        let err = introspect_as(&s, auth.as_deref(), at)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{auth:?}: {err:?}");
        assert!(!err.message().contains(GRPC_CREDENTIAL), "{err:?}");
    }
    let ok = introspect_as(&s, Some(&format!("Bearer {GRPC_CREDENTIAL}")), at)
        .await
        .unwrap();
    assert!(ok.active);
    assert_eq!(ok.audience, vec![RESOURCE.to_owned()]);
    s.stop().await;
}

#[tokio::test]
async fn expected_resource_binds_the_audience() {
    let s = TestServer::start().await;
    let (client, body) = s.login(None).await;
    let at = body["access_token"].as_str().unwrap();
    let rt = body["refresh_token"].as_str().unwrap();
    for token in [at, rt] {
        assert!(s.grpc_introspect(token, RESOURCE).await.active);
        assert!(
            s.grpc_introspect(token, "").await.active,
            "no expected_resource: any audience"
        );
        for other in [
            "https://api.example.com/mcp",
            OTHER_RESOURCE,
            "http://127.0.0.1:8081/other",
        ] {
            assert_eq!(
                s.grpc_introspect(token, other).await,
                IntrospectResponse::default(),
                "{other}"
            );
        }
    }
    // A client_credentials token for the other resource is the mirror image.
    let (status, cc, _) = s
        .token_basic(
            STATIC_CLIENT,
            STATIC_SECRET,
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://api.example.com/mcp"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{cc}");
    let cc = cc["access_token"].as_str().unwrap();
    assert!(
        s.grpc_introspect(cc, "https://api.example.com/mcp")
            .await
            .active
    );
    assert_eq!(
        s.grpc_introspect(cc, RESOURCE).await,
        IntrospectResponse::default()
    );

    // And revocation is seen over gRPC at once.
    assert_eq!(s.revoke_as(&client, at).await.status().as_u16(), 200);
    assert_eq!(
        s.grpc_introspect(at, RESOURCE).await,
        IntrospectResponse::default()
    );
    s.stop().await;
}

#[tokio::test]
async fn health_reports_serving() {
    let s = TestServer::start().await;
    let mut health = HealthClient::new(channel(&s).await);
    for service in ["", SERVICE] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test]
async fn reflection_lists_and_describes_the_introspection_service() {
    let s = TestServer::start().await;
    let mut refl = ServerReflectionClient::new(channel(&s).await);
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(SERVICE.into())),
        },
    ];
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let listed = stream
        .message()
        .await
        .unwrap()
        .expect("a list response")
        .message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        panic!("unexpected reflection answer {listed:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&SERVICE), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let file = stream
        .message()
        .await
        .unwrap()
        .expect("a file response")
        .message_response;
    let Some(MessageResponse::FileDescriptorResponse(file)) = file else {
        panic!("unexpected reflection answer {file:?}");
    };
    assert!(!file.file_descriptor_proto.is_empty());
    // The serialized FileDescriptorProto names the method and its messages.
    let raw = String::from_utf8_lossy(&file.file_descriptor_proto[0]).into_owned();
    for needle in ["Introspect", "IntrospectRequest", "expected_resource"] {
        assert!(raw.contains(needle), "{needle} missing from the descriptor");
    }
    s.stop().await;
}
