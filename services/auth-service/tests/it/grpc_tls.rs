//! The gRPC listener over TLS with client certificates (mTLS), on top of the service credential.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::harness::*;

struct Pki {
    dir: std::path::PathBuf,
    ca_pem: String,
    client_cert: String,
    client_key: String,
    rogue_cert: String,
    rogue_key: String,
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!("mcpauth-pki-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["mcp-service".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

    // A client certificate from a CA the server does not trust.
    let mut rogue_ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    rogue_ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let rogue_ca =
        CertifiedIssuer::self_signed(rogue_ca_params, KeyPair::generate().unwrap()).unwrap();
    let rogue_key = KeyPair::generate().unwrap();
    let mut rogue_params = CertificateParams::new(vec!["mcp-service".to_owned()]).unwrap();
    rogue_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let rogue_cert = rogue_params.signed_by(&rogue_key, &rogue_ca).unwrap();

    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
        rogue_cert: rogue_cert.pem(),
        rogue_key: rogue_key.serialize_pem(),
        dir,
    }
}

async fn channel(
    s: &TestServer,
    pki: &Pki,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{}", s.grpc))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn introspect(
    ch: Channel,
    token: &str,
    credential: Option<&str>,
) -> Result<bool, tonic::Status> {
    let mut c = mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient::new(ch);
    let mut req = tonic::Request::new(mcpauth_proto::v1::IntrospectRequest {
        token: token.into(),
        expected_resource: RESOURCE.into(),
    });
    if let Some(cred) = credential {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {cred}").parse().unwrap());
    }
    c.introspect(req).await.map(|r| r.into_inner().active)
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let d = pki.dir.display();
    let s = TestServer::start_with(Options {
        toml: format!(
            "[grpc.tls]\ncert_file = \"{d}/server.pem\"\nkey_file = \"{d}/server.key\"\nclient_ca_file = \"{d}/ca.pem\"\n"
        ),
        env: vec![],
    })
    .await;
    let (_, tokens) = s.login(None).await;
    let token = tokens["access_token"].as_str().unwrap();

    // A trusted client certificate and the service credential: served.
    let ch = channel(&s, &pki, Some((&pki.client_cert, &pki.client_key)))
        .await
        .unwrap();
    assert!(
        introspect(ch.clone(), token, Some(GRPC_CREDENTIAL))
            .await
            .unwrap()
    );
    // The certificate alone is not enough: the credential is still required.
    let err = introspect(ch, token, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // No client certificate, or one from an untrusted CA: the handshake fails.
    for identity in [
        None,
        Some((pki.rogue_cert.as_str(), pki.rogue_key.as_str())),
    ] {
        let refused = match channel(&s, &pki, identity).await {
            Err(_) => true,
            Ok(ch) => introspect(ch, token, Some(GRPC_CREDENTIAL)).await.is_err(),
        };
        assert!(
            refused,
            "a call without a trusted client certificate was served"
        );
    }
    // Plaintext gRPC is not served on a TLS listener.
    let plain = mcpauth_proto::v1::token_introspection_client::TokenIntrospectionClient::connect(
        format!("http://{}", s.grpc),
    )
    .await;
    if let Ok(mut c) = plain {
        let mut req = tonic::Request::new(mcpauth_proto::v1::IntrospectRequest {
            token: token.into(),
            expected_resource: String::new(),
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {GRPC_CREDENTIAL}").parse().unwrap(),
        );
        assert!(c.introspect(req).await.is_err());
    }
    let _ = std::fs::remove_dir_all(&pki.dir);
    s.stop().await;
}

#[tokio::test]
async fn unreadable_tls_files_stop_the_start_with_the_key_named() {
    let db = TestDb::create().await;
    let env = test_env(&db.url, "unused");
    let file = std::env::temp_dir().join(format!("tls-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &file,
        test_toml("[grpc.tls]\ncert_file = \"/nonexistent/server.pem\"\nkey_file = \"/nonexistent/server.key\"\n"),
    )
    .unwrap();
    let err = auth_service::config::Config::load(Some(&file), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("grpc.tls.cert_file"), "{err}");
    let _ = std::fs::remove_file(&file);
    db.drop_db().await;
}
