//! TLS of the internal gRPC clients (mcp-service → auth-service and token-vault, token-vault →
//! auth-service, auth-service → token-vault), in one shape: a `[<section>.tls]` table beside the
//! section's `addr`.
//!
//! ```toml
//! [vault]
//! addr = "https://token-vault.internal:9091"
//! [vault.tls]
//! ca_file = "/etc/mcpauth/ca.pem"            # required for https:// (system roots are not used)
//! cert_file = "/etc/mcpauth/client.pem"      # with key_file: a client certificate for mTLS
//! key_file = "/etc/mcpauth/client.key"
//! ```
//!
//! The server name checked against the server's certificate is the host of `addr`. Every
//! mistake is found at start, as one line naming the key: an `https://` address without
//! `ca_file`, a `tls` table on an `http://` address, `cert_file` without `key_file` (or the
//! reverse), unreadable files, PEM without a certificate or key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::ConfigError;

/// `[<section>.tls]`: how a gRPC client verifies the server and, for mTLS, who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcClientTls {
    /// PEM CA bundle the server's certificate must chain to. Required for `https://`: the
    /// services trust no system roots on their internal hops.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to a server that requires client certificates (mTLS).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// A lazily connecting channel's endpoint for `addr`, with TLS when `addr` is `https://`.
/// `section` names the configuration section (`vault`, `verifier.grpc`) in errors. Reads and
/// parses the TLS files now, so that this also serves as the start-time check of the section.
pub fn grpc_endpoint(
    section: &str,
    addr: &str,
    tls: Option<&GrpcClientTls>,
) -> Result<Endpoint, ConfigError> {
    let err = |m: String| ConfigError::new(m);
    let not_http = || {
        err(format!(
            "{section}.addr: must be an http:// or https:// URL"
        ))
    };
    let uri: http::Uri = addr.parse().map_err(|_| not_http())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(not_http()),
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(err(format!("{section}.addr: has no host")));
    };
    let endpoint = Endpoint::from(uri.clone());
    if !https {
        if tls.is_some() {
            return Err(err(format!(
                "{section}.tls: set, but {section}.addr is http:// (use https://)"
            )));
        }
        return Ok(endpoint);
    }
    let tls = tls.cloned().unwrap_or_default();
    let config = tls.client_config(section, host)?;
    endpoint.tls_config(config).map_err(|e| {
        // tonic's own message is only "transport error"; the reason is in its sources.
        err(format!("{section}.tls: {}", with_sources(&e)))
    })
}

/// The gRPC credential of local services in the repository's dev configurations
/// (`config/*.dev.toml`, mcp-service's built-in defaults). Public: refused outside dev mode.
pub const DEV_SERVICE_CREDENTIAL: &str = "dev-service-credential";
/// Hex SHA-256 of [`DEV_SERVICE_CREDENTIAL`], as `grpc.callers` lists it.
pub const DEV_SERVICE_CREDENTIAL_SHA256: &str =
    "c596eb6ef20588532554c4d110fedeb8b1e07c8578a88a443947a4a78ddef76c";

/// The one-line refusal of a public dev credential or key at `key` outside dev mode.
pub fn dev_secret_refused(key: &str, what: &str) -> ConfigError {
    ConfigError::new(format!(
        "{key}: is the public {what} from the repository's dev configuration, refused outside dev mode (set dev_mode = true on loopback, or configure your own)"
    ))
}

/// Refuses a plaintext `http://` gRPC address whose host is not loopback, unless `allow`
/// (the service's `allow_plaintext_grpc = true`): service credentials and users' tokens would
/// cross the network unencrypted. `section` names the setting (`vault`, `verifier.grpc`).
pub fn grpc_plaintext_check(section: &str, addr: &str, allow: bool) -> Result<(), ConfigError> {
    let Ok(uri) = addr.parse::<http::Uri>() else {
        return Ok(()); // grpc_endpoint reports the malformed address
    };
    if allow || uri.scheme_str() != Some("http") {
        return Ok(());
    }
    let host = uri.host().unwrap_or_default();
    if is_loopback_host(host) {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "{section}.addr: plaintext http:// to non-loopback host {host}; use https:// with [{section}.tls], or set allow_plaintext_grpc = true to accept an unencrypted network"
    )))
}

/// `localhost`, or a loopback IP address (IPv6 with or without brackets).
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `grpc_endpoint` with the timeouts every internal client uses (and no Nagle delay): connect
/// lazily from it, once ([`grpc_channel`]) or once per thread (`PerThread`).
pub fn grpc_client_endpoint(
    section: &str,
    addr: &str,
    tls: Option<&GrpcClientTls>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Endpoint, ConfigError> {
    Ok(grpc_endpoint(section, addr, tls)?
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .tcp_nodelay(true))
}

/// [`grpc_client_endpoint`]'s channel, connecting on first use.
pub fn grpc_channel(
    section: &str,
    addr: &str,
    tls: Option<&GrpcClientTls>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<tonic::transport::Channel, ConfigError> {
    Ok(grpc_client_endpoint(section, addr, tls, connect_timeout, timeout)?.connect_lazy())
}

/// A service's credential at another service, sent on every call as `authorization: Bearer
/// <credential>` (what the callee's `grpc.callers` lists the SHA-256 of). The value is marked
/// sensitive, so that tonic and h2 never print it.
#[derive(Clone)]
pub struct CallerCredential(MetadataValue<Ascii>);

impl CallerCredential {
    /// `key` names the setting (`vault.credential`) in the error of a value that cannot be a
    /// header.
    pub fn new(key: &str, credential: &crate::Secret) -> Result<Self, ConfigError> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", credential.expose())
            .parse()
            .map_err(|_| ConfigError::new(format!("{key}: not a valid header value")))?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// `message` as a request that carries the credential.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        request
    }
}

impl std::fmt::Debug for CallerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerCredential([redacted])")
    }
}

impl GrpcClientTls {
    /// tonic's client TLS for a server named `host`: the CA, and the identity when configured.
    fn client_config(&self, section: &str, host: &str) -> Result<ClientTlsConfig, ConfigError> {
        let key_name = |k: &str| format!("{section}.tls.{k}");
        let Some(ca_file) = &self.ca_file else {
            return Err(ConfigError::new(format!(
                "{}: required for an https:// {section}.addr (system roots are not used)",
                key_name("ca_file")
            )));
        };
        let ca = read_certificates(&key_name("ca_file"), ca_file)?;
        // An IPv6 host comes bracketed in a URI; the certificate names the bare address.
        let domain = host.trim_start_matches('[').trim_end_matches(']');
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(domain);
        match (&self.cert_file, &self.key_file) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::new(format!(
                    "{}: required with {}",
                    key_name("key_file"),
                    key_name("cert_file")
                )));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(format!(
                    "{}: required with {}",
                    key_name("cert_file"),
                    key_name("key_file")
                )));
            }
            (Some(cert_file), Some(key_file)) => {
                let cert = read_certificates(&key_name("cert_file"), cert_file)?;
                let key = read(&key_name("key_file"), key_file)?;
                if PrivateKeyDer::from_pem_slice(&key).is_err() {
                    return Err(ConfigError::new(format!(
                        "{}: {}: no PEM private key",
                        key_name("key_file"),
                        key_file.display()
                    )));
                }
                config = config.identity(Identity::from_pem(cert, key));
            }
        }
        Ok(config)
    }
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(format!("{key}: {}: {e}", path.display())))
}

/// The file's bytes, once it is known to hold at least one PEM certificate and nothing broken.
fn read_certificates(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = read(key, path)?;
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() && certs.iter().all(|c| !c.is_empty()) => Ok(pem),
        _ => Err(ConfigError::new(format!(
            "{key}: {}: no PEM certificate",
            path.display()
        ))),
    }
}

fn with_sources(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    reason
}

#[cfg(test)]
mod tests;
