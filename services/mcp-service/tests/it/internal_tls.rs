//! The internal gRPC hops over TLS with client certificates (mTLS): mcp-service → auth-service
//! (introspection, connect URLs), mcp-service → token-vault, token-vault → auth-service and
//! auth-service → token-vault, each configured with a `[<section>.tls]` table.

use std::collections::HashMap;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use serde_json::json;

use crate::harness::*;

/// A throwaway PKI: one CA, a `localhost` server certificate (auth-service's and token-vault's
/// gRPC listeners) and a client certificate (every caller), as files in a fresh directory.
pub(crate) struct Pki {
    pub dir: std::path::PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir =
            std::env::temp_dir().join(format!("mcpauth-mcp-pki-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        for (name, san, usage) in [
            ("server", "localhost", ExtendedKeyUsagePurpose::ServerAuth),
            (
                "client",
                "internal-client",
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir }
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Environment of a gRPC listener (`<prefix>GRPC__…`) that requires client certificates.
    pub fn server_env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (
                format!("{prefix}GRPC__TLS__CERT_FILE"),
                self.file("server.pem"),
            ),
            (
                format!("{prefix}GRPC__TLS__KEY_FILE"),
                self.file("server.key"),
            ),
            (
                format!("{prefix}GRPC__TLS__CLIENT_CA_FILE"),
                self.file("ca.pem"),
            ),
        ]
    }

    /// Environment of a client section (`<section>` like `MCPAUTH__VAULT__`): CA and, with
    /// `identity`, the client certificate.
    pub fn client_env(&self, section: &str, identity: bool) -> Vec<(String, String)> {
        let mut v = vec![(format!("{section}TLS__CA_FILE"), self.file("ca.pem"))];
        if identity {
            v.push((format!("{section}TLS__CERT_FILE"), self.file("client.pem")));
            v.push((format!("{section}TLS__KEY_FILE"), self.file("client.key")));
        }
        v
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn leak_env(v: Vec<(String, String)>) -> Vec<(&'static str, String)> {
    v.into_iter()
        .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
        .collect()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn tokens_are_verified_at_an_auth_service_that_requires_client_certificates() {
    let pki = Pki::new();
    let grpc_port = free_port();
    let mut auth_env = pki.server_env("MCPAUTH__");
    auth_env.push((
        "MCPAUTH__GRPC__ADDR".into(),
        format!("127.0.0.1:{grpc_port}"),
    ));
    let mut mcp_env = pki.client_env("MCPAUTH__VERIFIER__GRPC__", true);
    mcp_env.push((
        "MCPAUTH__VERIFIER__GRPC__ADDR".into(),
        format!("https://localhost:{grpc_port}"),
    ));
    let s = Stack::start_with(StackOptions {
        auth_env: leak_env(auth_env),
        mcp_env: leak_env(mcp_env),
        ..Default::default()
    })
    .await;
    let token = s.access_token().await;

    // Client certificate + service credential: the token is introspected, the tool runs.
    let sid = s.session(&token).await;
    let r = s
        .post(
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
            Some(&sid),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let msgs = messages(r).await;
    let who: serde_json::Value = serde_json::from_str(
        msgs.last().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(who["scopes"], json!(["mcp:tools.read"]), "{who}");
    assert!(
        who["subject"].as_str().is_some_and(|s| !s.is_empty()),
        "{who}"
    );

    // A replica that trusts the server but has no client certificate: the handshake is refused,
    // so the verifier is unavailable — 503, not a 401 that would send the client to log in again.
    let mut no_identity = s.mcp_config.clone();
    let tls = no_identity.verifier.grpc.tls.as_mut().unwrap();
    tls.cert_file = None;
    tls.key_file = None;
    no_identity.http.addr = "127.0.0.1:0".parse().unwrap();
    no_identity.validate().unwrap();
    let replica = mcp_service::app::start(no_identity, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let r = s
        .post_at(
            &format!("http://{}", replica.http_addr),
            Some(&token),
            initialize(),
            None,
        )
        .await;
    assert_eq!(r.status().as_u16(), 503);
    assert!(!r.text().await.unwrap().contains(&token));

    // The same replica speaking plaintext to the TLS listener is refused as well.
    let mut plaintext = s.mcp_config.clone();
    plaintext.verifier.grpc.tls = None;
    plaintext.verifier.grpc.addr = format!("http://127.0.0.1:{grpc_port}");
    plaintext.http.addr = "127.0.0.1:0".parse().unwrap();
    let plain = mcp_service::app::start(plaintext, mcpauth_runtime::init_metrics())
        .await
        .unwrap();
    let r = s
        .post_at(
            &format!("http://{}", plain.http_addr),
            Some(&token),
            initialize(),
            None,
        )
        .await;
    assert_eq!(r.status().as_u16(), 503);
    plain.shutdown().await;
    replica.shutdown().await;
    s.stop().await;
}

#[test]
fn a_client_section_with_tls_on_http_or_https_without_ca_does_not_load() {
    let pki = Pki::new();
    let load = |pairs: Vec<(String, String)>| {
        let mut env: HashMap<String, String> = pairs.into_iter().collect();
        env.insert("MCPAUTH__RESOURCE".into(), "http://127.0.0.1:1/mcp".into());
        // Not the built-in dev credential, refused outside dev mode.
        env.insert(
            "MCPAUTH__VERIFIER__GRPC__CREDENTIAL".into(),
            "mcp-credential".into(),
        );
        mcp_service::config::Config::load(None, &env).map(|_| ())
    };
    let e = load(vec![(
        "MCPAUTH__VERIFIER__GRPC__ADDR".into(),
        "https://localhost:9090".into(),
    )])
    .unwrap_err()
    .to_string();
    assert!(
        e.ends_with("verifier.grpc.tls.ca_file: required for an https:// verifier.grpc.addr (system roots are not used)"),
        "{e}"
    );
    let e = load(pki.client_env("MCPAUTH__VERIFIER__GRPC__", false))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("verifier.grpc.tls: set, but verifier.grpc.addr is http:// (use https://)"),
        "{e}"
    );
    let mut half = pki.client_env("MCPAUTH__VERIFIER__GRPC__", false);
    half.push((
        "MCPAUTH__VERIFIER__GRPC__ADDR".into(),
        "https://localhost:9090".into(),
    ));
    half.push((
        "MCPAUTH__VERIFIER__GRPC__TLS__KEY_FILE".into(),
        pki.file("client.key"),
    ));
    let e = load(half).unwrap_err().to_string();
    assert!(
        e.ends_with("verifier.grpc.tls.cert_file: required with verifier.grpc.tls.key_file"),
        "{e}"
    );
    let mut ok = pki.client_env("MCPAUTH__VERIFIER__GRPC__", true);
    ok.push((
        "MCPAUTH__VERIFIER__GRPC__ADDR".into(),
        "https://localhost:9090".into(),
    ));
    load(ok).unwrap();
}
