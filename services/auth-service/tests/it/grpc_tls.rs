//! The gRPC listener over TLS with client certificates (mTLS), on top of the service credential.

use std::collections::HashMap;

use base64::Engine as _;
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

/// auth-service's own vault client (`[vault]` with `[vault.tls]`) storing a credential in a
/// token-vault whose gRPC listener requires client certificates.
#[tokio::test]
async fn put_credential_reaches_an_mtls_vault_only_with_the_client_certificate() {
    use auth_service::config::VaultConfig;
    use auth_service::vault::{VaultClient, VaultClientError};
    use mcpauth_runtime::{GrpcClientTls, Secret};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let d = pki.dir.display();
    std::fs::write(pki.dir.join("client.pem"), &pki.client_cert).unwrap();
    std::fs::write(pki.dir.join("client.key"), &pki.client_key).unwrap();
    let s = TestServer::start().await;
    let pool = sqlx::PgPool::connect(&s.db.url).await.unwrap();
    token_vault::store::migrate(&pool).await.unwrap();
    pool.close().await;
    const PUT: &str = "auth-service-put-credential";
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let vault_toml = format!(
        "[grpc]\naddr = \"127.0.0.1:0\"\n\
         [[grpc.callers]]\nname = \"auth-service\"\ncredential_sha256 = \"{}\"\npermissions = [\"put\"]\n\
         [grpc.tls]\ncert_file = \"{d}/server.pem\"\nkey_file = \"{d}/server.key\"\nclient_ca_file = \"{d}/ca.pem\"\n\
         [database]\nurl = \"{}\"\nmax_connections = 4\n\
         [redis]\nurl = \"{}\"\nkey_prefix = \"{}-vault\"\nauth_key_prefix = \"{}\"\n\
         [introspection]\naddr = \"http://{}\"\ncredential = \"{GRPC_CREDENTIAL}\"\naccepted_resources = [\"{RESOURCE}\"]\n\
         [encryption]\ncurrent_key = \"v1\"\n[[encryption.keys]]\nid = \"v1\"\nsecret = \"{key}\"\n\
         [providers.corp]\ntoken_endpoint = \"https://idp.example/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        auth_service::domain::token::hex(&auth_service::domain::token::hash(PUT)),
        s.db.url,
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        s.prefix,
        s.prefix,
        s.grpc,
    );
    let file = pki.dir.join("vault.toml");
    std::fs::write(&file, vault_toml).unwrap();
    let vault_cfg = token_vault::Config::load(Some(&file), &HashMap::new()).unwrap();
    let vault = token_vault::start(vault_cfg, mcpauth_runtime::init_metrics())
        .await
        .unwrap();

    let client = |ca_file: Option<&str>, tls: Option<GrpcClientTls>| {
        VaultClient::new(&VaultConfig {
            addr: format!("https://localhost:{}", vault.grpc_addr.port()),
            credential: Secret::new(PUT),
            ca_file: ca_file.map(Into::into),
            tls,
            timeout_ms: 5000,
        })
        .unwrap()
    };
    let identity = |ca: bool| GrpcClientTls {
        ca_file: ca.then(|| pki.dir.join("ca.pem")),
        cert_file: Some(pki.dir.join("client.pem")),
        key_file: Some(pki.dir.join("client.key")),
    };
    let tokens = auth_service::upstream::ProviderTokenResponse {
        access_token: "upstream-at-over-mtls".into(),
        token_type: Some("Bearer".into()),
        refresh_token: Some("upstream-rt-over-mtls".into()),
        expires_in: Some(3600),
        scope: Some("openid".into()),
        id_token: None,
    };
    let put = |c: VaultClient| {
        let tokens = tokens.clone();
        async move {
            c.put_credential("user-1", "corp", &tokens, "https://idp.example", "sub-1")
                .await
        }
    };

    // [vault.tls] with CA and client certificate: stored (version 1).
    assert_eq!(put(client(None, Some(identity(true)))).await.unwrap(), 1);
    // The older `vault.ca_file` still works, combined with the identity from [vault.tls].
    let ca = format!("{d}/ca.pem");
    assert_eq!(
        put(client(Some(&ca), Some(identity(false)))).await.unwrap(),
        2
    );
    // Trusting the vault but without a client certificate: the handshake is refused.
    match put(client(Some(&ca), None)).await {
        // The server's refusal arrives as a TLS alert after the client's side of the
        // handshake, so tonic reports a transport error (Unknown) or Unavailable.
        Err(VaultClientError::Refused { code, message }) => {
            assert!(
                matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown),
                "{code:?} {message}"
            );
            assert!(!message.contains("upstream-at-over-mtls"));
        }
        other => panic!("stored without a client certificate: {other:?}"),
    }
    // The vault holds version 2, nothing more.
    let version: i64 = sqlx::query_scalar(
        "SELECT version FROM vault_credentials WHERE user_id = 'user-1' AND provider = 'corp'",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(version, 2);

    vault.shutdown().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
    s.stop().await;
}
