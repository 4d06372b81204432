//! The gRPC listener over TLS (`grpc.tls`) and with client certificates (mTLS,
//! `grpc.tls.client_ca_file`), always on top of the service credential.

use std::time::Duration;

use mcpauth_proto::v1::token_vault_client::TokenVaultClient;
use mcpauth_proto::v1::{GetAccessTokenRequest, ListConnectionsRequest};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::harness::*;

/// A throwaway PKI: a CA, the vault's server certificate (`localhost`), a client certificate
/// from the same CA, and a client certificate (and CA) the vault does not trust.
struct Pki {
    dir: std::path::PathBuf,
    ca_pem: String,
    rogue_ca_pem: String,
    client_cert: String,
    client_key: String,
    rogue_cert: String,
    rogue_key: String,
}

fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    name: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!(
        "mcpauth-vault-pki-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = new_ca();
    let (server_cert, server_key) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth, &ca);
    let (client_cert, client_key) = leaf("mcp-service", ExtendedKeyUsagePurpose::ClientAuth, &ca);
    let rogue_ca = new_ca();
    let (rogue_cert, rogue_key) = leaf(
        "mcp-service",
        ExtendedKeyUsagePurpose::ClientAuth,
        &rogue_ca,
    );
    std::fs::write(dir.join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        rogue_ca_pem: rogue_ca.pem(),
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

/// `[grpc.tls]` of this PKI, with or without the client CA.
fn tls_toml(pki: &Pki, mtls: bool) -> String {
    let d = pki.dir.display();
    let mut t =
        format!("\n[grpc.tls]\ncert_file = \"{d}/server.pem\"\nkey_file = \"{d}/server.key\"\n");
    if mtls {
        t.push_str(&format!("client_ca_file = \"{d}/ca.pem\"\n"));
    }
    t
}

/// Starts a vault of `w` with `extra` appended to its configuration (not connected yet: the
/// harness's own client speaks plaintext).
async fn start_vault(w: &World, extra: &str) -> token_vault::Running {
    let cfg = w.vault_config(&w.vault_toml(&[("k1", 1)], "k1", extra), &[]);
    let running = token_vault::start(cfg, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    running
}

/// A TLS channel to `addr` trusting `ca_pem`, optionally with a client identity.
async fn tls_channel(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

fn list_req(credential: Option<&str>, mcp: &str) -> tonic::Request<ListConnectionsRequest> {
    let msg = ListConnectionsRequest {
        access_token: mcp.into(),
        user_id: String::new(),
    };
    match credential {
        Some(c) => req(c, msg),
        None => tonic::Request::new(msg),
    }
}

/// Whether a ListConnections with the full credential over `channel` (or the failed connect)
/// was refused.
async fn refused(channel: Result<Channel, tonic::transport::Error>, mcp: &str) -> bool {
    match channel {
        Err(_) => true,
        Ok(ch) => TokenVaultClient::new(ch)
            .list_connections(list_req(Some(CREDENTIAL), mcp))
            .await
            .is_err(),
    }
}

/// Plaintext gRPC to a TLS listener is not served.
async fn plaintext_refused(addr: std::net::SocketAddr, mcp: &str) -> bool {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await;
    refused(ch, mcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_listener_serves_clients_trusting_its_ca_and_refuses_plaintext() {
    let w = World::start().await;
    let pki = pki();
    let running = start_vault(&w, &tls_toml(&pki, false)).await;
    let addr = running.grpc_addr;
    let (mcp, user) = w.dev_login_token().await;

    let ch = tls_channel(addr, &pki.ca_pem, None).await.unwrap();
    let v = Vault {
        running: Some(running),
        channel: ch,
    };
    let mut c = v.client();
    let tokens = w.upstream_tokens("tls", now() + 3600);
    assert_eq!(put(&mut c, &user, "github", tokens.clone()).await, 1);
    let got = get(&mut c, &mcp, "github").await.unwrap();
    assert_eq!(got.access_token, tokens.access_token);
    let list = c
        .list_connections(list_req(Some(CREDENTIAL), &mcp))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.connections.len(), 1);
    assert_eq!(list.connections[0].provider, "github");
    // TLS does not replace the service credential.
    let err = c
        .get_access_token(tonic::Request::new(GetAccessTokenRequest {
            access_token: mcp.clone(),
            provider: "github".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    assert!(
        plaintext_refused(addr, &mcp).await,
        "plaintext gRPC was served on a TLS listener"
    );
    // A client that does not trust the vault's CA does not get through either.
    assert!(
        refused(tls_channel(addr, &pki.rogue_ca_pem, None).await, &mcp).await,
        "a client not trusting the server's CA was served"
    );
    // Without a client CA, no client certificate is needed (the TLS-only mode).
    assert!(
        !refused(
            tls_channel(addr, &pki.ca_pem, Some((&pki.rogue_cert, &pki.rogue_key))).await,
            &mcp
        )
        .await
    );

    v.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
    w.assert_no_plaintext().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_requires_a_trusted_client_certificate_and_the_service_credential() {
    let w = World::start().await;
    let pki = pki();
    let running = start_vault(&w, &tls_toml(&pki, true)).await;
    let addr = running.grpc_addr;
    let (mcp, user) = w.dev_login_token().await;

    // A client certificate from the trusted CA and the service credential: served.
    let ch = tls_channel(addr, &pki.ca_pem, Some((&pki.client_cert, &pki.client_key)))
        .await
        .unwrap();
    let v = Vault {
        running: Some(running),
        channel: ch,
    };
    let mut c = v.client();
    let tokens = w.upstream_tokens("mtls", now() + 3600);
    assert_eq!(put(&mut c, &user, "github", tokens.clone()).await, 1);
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        tokens.access_token
    );
    let list = c
        .list_connections(list_req(Some(CREDENTIAL), &mcp))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.connections.len(), 1);

    // The certificate alone is not enough: no credential, or an unknown one, is UNAUTHENTICATED.
    let err = c.list_connections(list_req(None, &mcp)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .get_access_token(req(
            "not-a-known-credential",
            GetAccessTokenRequest {
                access_token: mcp.clone(),
                provider: "github".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // No client certificate, or one from a CA the vault does not trust: refused.
    for (what, identity) in [
        ("no client certificate", None),
        (
            "a rogue CA's client certificate",
            Some((pki.rogue_cert.as_str(), pki.rogue_key.as_str())),
        ),
    ] {
        assert!(
            refused(tls_channel(addr, &pki.ca_pem, identity).await, &mcp).await,
            "a call with {what} was served"
        );
    }
    assert!(
        plaintext_refused(addr, &mcp).await,
        "plaintext gRPC was served on an mTLS listener"
    );
    // The trusted client still works after the refusals.
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        tokens.access_token
    );

    v.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_tls_material_stops_the_start() {
    let w = World::start().await;
    let pki = pki();
    let d = pki.dir.display();
    std::fs::write(pki.dir.join("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        pki.dir.join("empty.pem"),
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let tls = |cert: &str, key: &str, ca: Option<&str>| {
        let mut t = format!("\n[grpc.tls]\ncert_file = \"{d}/{cert}\"\nkey_file = \"{d}/{key}\"\n");
        if let Some(ca) = ca {
            t.push_str(&format!("client_ca_file = \"{d}/{ca}\"\n"));
        }
        t
    };
    // (what, configuration, what the error must name)
    let cases = [
        (
            "a missing certificate file",
            tls("nonexistent.pem", "server.key", None),
            "grpc.tls.cert_file",
        ),
        (
            "a missing key file",
            tls("server.pem", "nonexistent.key", None),
            "grpc.tls.key_file",
        ),
        (
            "a missing client CA file",
            tls("server.pem", "server.key", Some("nonexistent.pem")),
            "grpc.tls.client_ca_file",
        ),
        (
            "a certificate that is not PEM",
            tls("garbage.pem", "server.key", None),
            "grpc.tls",
        ),
        (
            "an empty PEM certificate",
            tls("empty.pem", "server.key", None),
            "grpc.tls",
        ),
        (
            "a key that is not PEM",
            tls("server.pem", "garbage.pem", None),
            "grpc.tls",
        ),
        (
            "a key that does not match the certificate",
            tls("ca.pem", "server.key", None),
            "grpc.tls",
        ),
        (
            "a client CA file that is not PEM",
            tls("server.pem", "server.key", Some("garbage.pem")),
            "grpc.tls",
        ),
    ];
    for (what, extra, names) in cases {
        let cfg = w.vault_config(&w.vault_toml(&[("k1", 1)], "k1", &extra), &[]);
        match token_vault::start(cfg, mcpauth_runtime::init_metrics()).await {
            Ok(r) => {
                r.shutdown().await;
                panic!("the vault started with {what}");
            }
            Err(e) => {
                let e = format!("{e:#}");
                assert!(e.contains(names), "{what}: {e}");
                assert!(!e.contains("PRIVATE KEY"), "{what}: key material in {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&pki.dir);
    w.stop().await;
}

/// The vault's own client side: `[introspection.tls]` against an auth-service whose gRPC
/// listener requires client certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn introspection_at_an_mtls_auth_service_needs_the_client_certificate() {
    let w = World::start().await;
    let pki = pki();
    let d = pki.dir.display();
    std::fs::write(pki.dir.join("client.pem"), &pki.client_cert).unwrap();
    std::fs::write(pki.dir.join("client.key"), &pki.client_key).unwrap();
    // A replica of the world's auth-service (same database and keys) whose gRPC needs mTLS.
    let mut cfg = (*w.auth.as_ref().unwrap().state.config).clone();
    cfg.http.addr = "127.0.0.1:0".parse().unwrap();
    cfg.grpc.addr = "127.0.0.1:0".parse().unwrap();
    cfg.grpc.tls = Some(auth_service::config::GrpcTlsConfig {
        cert_file: pki.dir.join("server.pem"),
        key_file: pki.dir.join("server.key"),
        client_ca_file: Some(pki.dir.join("ca.pem")),
    });
    let auth = auth_service::app::start(cfg, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let introspection = |identity: bool| {
        let mut env = vec![
            (
                "MCPAUTH__INTROSPECTION__ADDR",
                format!("https://localhost:{}", auth.grpc_addr.port()),
            ),
            (
                "MCPAUTH__INTROSPECTION__TLS__CA_FILE",
                format!("{d}/ca.pem"),
            ),
        ];
        if identity {
            env.push((
                "MCPAUTH__INTROSPECTION__TLS__CERT_FILE",
                format!("{d}/client.pem"),
            ));
            env.push((
                "MCPAUTH__INTROSPECTION__TLS__KEY_FILE",
                format!("{d}/client.key"),
            ));
        }
        env
    };
    let (mcp, user) = w.dev_login_token().await;
    let tokens = w.upstream_tokens("introspected-over-mtls", now() + 3600);

    // With the client certificate: the user's token is introspected, the token handed out.
    let v = w.vault(&introspection(true)).await;
    let mut c = v.client();
    assert_eq!(put(&mut c, &user, "github", tokens.clone()).await, 1);
    assert_eq!(
        get(&mut c, &mcp, "github").await.unwrap().access_token,
        tokens.access_token
    );
    v.stop().await;

    // Trusting the server but without a client certificate: auth-service refuses the
    // handshake, so introspection is unavailable and nothing is handed out.
    let v = w.vault(&introspection(false)).await;
    let mut c = v.client();
    let err = get(&mut c, &mcp, "github").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!err.message().contains(&tokens.access_token));
    v.stop().await;

    auth.shutdown().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
    w.assert_no_plaintext().await;
    w.stop().await;
}
