use std::path::PathBuf;

use super::*;

/// A CA, a server certificate and a client certificate it signed, written as PEM files.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir =
            std::env::temp_dir().join(format!("mcpauth-grpc-client-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["mcp-service".to_owned()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let other_key = KeyPair::generate().unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("other.key"), other_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
        std::fs::write(
            dir.join("empty.pem"),
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, f: &str) -> Option<PathBuf> {
        Some(self.dir.join(f))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn error(section: &str, addr: &str, tls: Option<&GrpcClientTls>) -> String {
    match grpc_endpoint(section, addr, tls) {
        Ok(_) => panic!("{addr} with {tls:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn plain_http_needs_no_tls() {
    let ep = grpc_endpoint("vault", "http://127.0.0.1:9091", None).unwrap();
    assert_eq!(ep.uri().to_string(), "http://127.0.0.1:9091/");
}

#[test]
fn a_tls_table_on_an_http_address_is_refused() {
    let pki = Pki::new("http");
    let tls = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        ..Default::default()
    };
    assert_eq!(
        error("vault", "http://127.0.0.1:9091", Some(&tls)),
        "configuration error: vault.tls: set, but vault.addr is http:// (use https://)"
    );
}

#[test]
fn https_needs_a_ca_file() {
    assert_eq!(
        error("verifier.grpc", "https://auth.internal:9090", None),
        "configuration error: verifier.grpc.tls.ca_file: required for an https:// \
         verifier.grpc.addr (system roots are not used)"
    );
    let only_identity = GrpcClientTls {
        ca_file: None,
        cert_file: Some("/c.pem".into()),
        key_file: Some("/c.key".into()),
    };
    assert!(
        error("vault", "https://vault:9091", Some(&only_identity))
            .starts_with("configuration error: vault.tls.ca_file: required")
    );
}

#[test]
fn other_schemes_and_missing_hosts_are_refused() {
    assert_eq!(
        error("introspection", "unix:/run/auth.sock", None),
        "configuration error: introspection.addr: must be an http:// or https:// URL"
    );
    assert_eq!(
        error("introspection", "127.0.0.1:9090", None),
        "configuration error: introspection.addr: must be an http:// or https:// URL"
    );
    assert_eq!(
        error("introspection", "not a url", None),
        "configuration error: introspection.addr: must be an http:// or https:// URL"
    );
    assert_eq!(
        error("introspection", "http://:9090", None),
        "configuration error: introspection.addr: has no host"
    );
}

#[test]
fn certificate_and_key_come_together() {
    let pki = Pki::new("pair");
    let cert_only = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("client.pem"),
        key_file: None,
    };
    assert_eq!(
        error("vault", "https://localhost:9091", Some(&cert_only)),
        "configuration error: vault.tls.key_file: required with vault.tls.cert_file"
    );
    let key_only = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: None,
        key_file: pki.path("client.key"),
    };
    assert_eq!(
        error("vault", "https://localhost:9091", Some(&key_only)),
        "configuration error: vault.tls.cert_file: required with vault.tls.key_file"
    );
}

#[test]
fn unreadable_or_empty_files_name_the_key_and_path() {
    let pki = Pki::new("files");
    let missing = GrpcClientTls {
        ca_file: pki.path("absent.pem"),
        ..Default::default()
    };
    let e = error("connect", "https://localhost:9090", Some(&missing));
    assert!(
        e.starts_with(&format!(
            "configuration error: connect.tls.ca_file: {}: ",
            pki.dir.join("absent.pem").display()
        )),
        "{e}"
    );
    let garbage_ca = GrpcClientTls {
        ca_file: pki.path("garbage.pem"),
        ..Default::default()
    };
    assert_eq!(
        error("connect", "https://localhost:9090", Some(&garbage_ca)),
        format!(
            "configuration error: connect.tls.ca_file: {}: no PEM certificate",
            pki.dir.join("garbage.pem").display()
        )
    );
    let empty_ca = GrpcClientTls {
        ca_file: pki.path("empty.pem"),
        ..Default::default()
    };
    assert!(
        error("connect", "https://localhost:9090", Some(&empty_ca))
            .ends_with("empty.pem: no PEM certificate")
    );
    let garbage_cert = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("garbage.pem"),
        key_file: pki.path("client.key"),
    };
    assert!(
        error("vault", "https://localhost:9091", Some(&garbage_cert))
            .starts_with("configuration error: vault.tls.cert_file: ")
    );
    let cert_as_key = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("client.pem"),
        key_file: pki.path("client.pem"),
    };
    assert_eq!(
        error("vault", "https://localhost:9091", Some(&cert_as_key)),
        format!(
            "configuration error: vault.tls.key_file: {}: no PEM private key",
            pki.dir.join("client.pem").display()
        )
    );
    let unreadable_key = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("client.pem"),
        key_file: pki.path("absent.key"),
    };
    assert!(
        error("vault", "https://localhost:9091", Some(&unreadable_key))
            .starts_with("configuration error: vault.tls.key_file: ")
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let pki = Pki::new("mismatch");
    let tls = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("client.pem"),
        key_file: pki.path("other.key"),
    };
    let e = error("vault", "https://localhost:9091", Some(&tls));
    assert!(e.starts_with("configuration error: vault.tls: "), "{e}");
}

#[test]
fn ca_and_identity_build_an_https_endpoint() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new("ok");
    let server_auth_only = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        ..Default::default()
    };
    grpc_endpoint("vault", "https://localhost:9091", Some(&server_auth_only)).unwrap();
    let mtls = GrpcClientTls {
        ca_file: pki.path("ca.pem"),
        cert_file: pki.path("client.pem"),
        key_file: pki.path("client.key"),
    };
    let ep = grpc_endpoint("vault", "https://127.0.0.1:9091", Some(&mtls)).unwrap();
    assert_eq!(ep.uri().scheme_str(), Some("https"));
    grpc_endpoint("vault", "https://[::1]:9091", Some(&mtls)).unwrap();
}

#[test]
fn deserialises_from_a_tls_table() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[allow(dead_code)]
        addr: String,
        tls: Option<GrpcClientTls>,
    }
    let s: Section = crate::service_env::VAULT
        .load(
            "[vault]\naddr = \"https://v:1\"\n[vault.tls]\nca_file = \"/ca.pem\"\n",
            None,
            &[(
                "MCPAUTH_VAULT__VAULT__TLS__CERT_FILE".to_owned(),
                "/c.pem".to_owned(),
            )]
            .into_iter()
            .collect(),
        )
        .map(|(v, _): (std::collections::HashMap<String, Section>, _)| {
            v.into_values().next().unwrap()
        })
        .unwrap();
    assert_eq!(
        s.tls,
        Some(GrpcClientTls {
            ca_file: Some("/ca.pem".into()),
            cert_file: Some("/c.pem".into()),
            key_file: None,
        })
    );
    let unknown: Result<(std::collections::HashMap<String, Section>, _), _> =
        crate::service_env::VAULT.load(
            "[vault]\naddr = \"https://v:1\"\n[vault.tls]\nca = \"/ca.pem\"\n",
            None,
            &Default::default(),
        );
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `ca`")
    );
}

#[test]
fn plaintext_grpc_only_on_loopback_unless_allowed() {
    for ok in [
        "http://127.0.0.1:9090",
        "http://localhost:9090",
        "http://[::1]:9090",
        "https://auth-service:9090",
    ] {
        assert!(
            crate::grpc_plaintext_check("vault", ok, false).is_ok(),
            "{ok}"
        );
    }
    let e = crate::grpc_plaintext_check("verifier.grpc", "http://auth-service:9090", false)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "configuration error: verifier.grpc.addr: plaintext http:// to non-loopback host auth-service; use https:// with [verifier.grpc.tls], or set allow_plaintext_grpc = true to accept an unencrypted network"
    );
    assert!(crate::grpc_plaintext_check("vault", "http://10.0.0.7:9091", true).is_ok());
    assert!(crate::grpc_plaintext_check("vault", "http://10.0.0.7:9091", false).is_err());
}

#[test]
fn caller_credential_is_a_sensitive_bearer_header_and_never_prints() {
    let credential =
        CallerCredential::new("vault.credential", &crate::Secret::new("s3cr3t")).unwrap();
    let request = credential.request(());
    let value = request.metadata().get("authorization").unwrap();
    assert_eq!(value.to_str().unwrap(), "Bearer s3cr3t");
    assert!(value.is_sensitive());
    assert!(!format!("{credential:?}").contains("s3cr3t"));
    let e = CallerCredential::new("vault.credential", &crate::Secret::new("bad\nvalue"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("vault.credential: not a valid header value"),
        "{e}"
    );
    assert!(!e.contains("bad"), "{e}");
}
