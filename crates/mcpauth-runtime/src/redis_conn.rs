//! Redis connections of every service, plain or over TLS, in one shape: `redis.url` and an
//! optional `[redis.tls]` table beside it.
//!
//! ```toml
//! [redis]
//! url = "rediss://mcpauth:PASSWORD@redis.example.internal:6379"   # rediss:// = TLS
//! [redis.tls]
//! ca_file = "/etc/mcpauth/redis-ca.pem"     # optional: without it, the system's roots
//! cert_file = "/etc/mcpauth/redis-client.pem" # with key_file: a client certificate
//! key_file = "/etc/mcpauth/redis-client.key"
//! ```
//!
//! TLS is rustls with the *ring* provider (the same as every other TLS hop). The server name
//! checked against the certificate is the URL's host. A user and password in the URL are sent
//! with `AUTH` after the handshake (Redis 6+ ACL users; a password alone for the `default`
//! user). Mistakes in the configuration are found at start, as one line naming the key; a
//! server that cannot be verified (wrong CA, wrong name) or that refuses the credentials stops
//! the start, also in one line ([`check_connection`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::{Client, ErrorKind, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::ConfigError;

/// `[redis.tls]`: how a `rediss://` connection verifies the server and, when the server asks
/// for one, which client certificate it presents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// PEM CA bundle the server's certificate must chain to (then only this bundle is trusted).
    /// Without it, the system's trust store (e.g. `/etc/ssl/certs`) verifies the server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to a server that requires client certificates.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The Redis client for `url` (a `redis://`, `rediss://` or `unix://` URL) with the TLS material
/// of `tls` loaded. `section` names the configuration section (`redis`) in errors; neither the
/// URL (it may hold a password) nor file contents ever appear in them. Opens no connection.
pub fn redis_client(
    section: &str,
    url: &str,
    tls: Option<&RedisTls>,
) -> Result<Client, ConfigError> {
    let key = |k: &str| format!("{section}.{k}");
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let secure = match scheme.as_deref() {
        Some("rediss") | Some("valkeys") => true,
        Some("redis") | Some("valkey") | Some("unix") | Some("redis+unix") => false,
        _ => {
            return Err(ConfigError::new(format!(
                "{}: must be a redis://, rediss:// (TLS) or unix:// URL",
                key("url")
            )));
        }
    };
    if secure && url.contains('#') {
        // `#insecure` would turn certificate verification off; nothing else goes there.
        return Err(ConfigError::new(format!(
            "{}: a #fragment is not accepted (certificate verification cannot be turned off)",
            key("url")
        )));
    }
    let invalid = |e: RedisError| {
        ConfigError::new(format!("{}: invalid URL ({})", key("url"), kind_name(&e)))
    };
    if !secure {
        if tls.is_some() {
            return Err(ConfigError::new(format!(
                "{}: set, but {} is not rediss:// (use rediss:// for TLS)",
                key("tls"),
                key("url")
            )));
        }
        return Client::open(url).map_err(invalid);
    }
    let Some(tls) = tls else {
        return Client::open(url).map_err(invalid);
    };
    let tls_key = |k: &str| format!("{section}.tls.{k}");
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read_certificates(&tls_key("ca_file"), path)?),
        None => None,
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(format!(
                "{}: required with {}",
                tls_key("key_file"),
                tls_key("cert_file")
            )));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(format!(
                "{}: required with {}",
                tls_key("cert_file"),
                tls_key("key_file")
            )));
        }
        (Some(cert_file), Some(key_file)) => {
            let client_cert = read_certificates(&tls_key("cert_file"), cert_file)?;
            let client_key = read(&tls_key("key_file"), key_file)?;
            if PrivateKeyDer::from_pem_slice(&client_key).is_err() {
                return Err(ConfigError::new(format!(
                    "{}: {}: no PEM private key",
                    tls_key("key_file"),
                    key_file.display()
                )));
            }
            Some(redis::ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
    };
    Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(invalid)
}

/// The connection pool every service uses, of at most `max_size` multiplexed connections made
/// from `client` (so with its TLS settings). Connections are opened on first use.
pub fn redis_pool(
    section: &str,
    client: &Client,
    max_size: usize,
) -> Result<deadpool_redis::Pool, ConfigError> {
    let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
        .map_err(|e| ConfigError::new(format!("{section}.url: {}", kind_name(&e))))?;
    deadpool_redis::Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| ConfigError::new(format!("{section}.pool_size: {e}")))
}

/// Why Redis cannot be used, in one line; [`RedisUnavailable::is_configuration`] tells a
/// mistake that waiting will not fix (an unverifiable server certificate, refused credentials)
/// from an outage.
#[derive(Debug, thiserror::Error)]
#[error("{section}: {reason}")]
pub struct RedisUnavailable {
    section: String,
    reason: String,
    configuration: bool,
}

impl RedisUnavailable {
    /// True when the configuration is wrong (TLS verification or authentication failed).
    pub fn is_configuration(&self) -> bool {
        self.configuration
    }
}

/// Opens one connection from `pool` and sends `PING`, within `timeout`. Services call it at
/// start: a configuration error ([`RedisUnavailable::is_configuration`]) stops the start, an
/// unreachable Redis is only logged (it may come up later; `/readyz` says when).
pub async fn check_connection(
    section: &str,
    pool: &deadpool_redis::Pool,
    timeout: Duration,
) -> Result<(), RedisUnavailable> {
    let unavailable = |reason: String, configuration| RedisUnavailable {
        section: section.to_owned(),
        reason,
        configuration,
    };
    let ping = async {
        let mut conn = pool.get().await.map_err(|e| match e {
            deadpool_redis::PoolError::Backend(e) => e,
            other => RedisError::from(std::io::Error::other(other.to_string())),
        })?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let (reason, configuration) = describe(&e, section);
            Err(unavailable(reason, configuration))
        }
        Err(_) => Err(unavailable(
            format!("no answer within {} ms", timeout.as_millis()),
            false,
        )),
    }
}

/// Redis could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Unavailable(#[from] RedisUnavailable),
}

/// What each service does at start: the client (for pub/sub) and the pool, both from
/// `url` and `tls`, then one `PING` ([`check_connection`], 3 s). A configuration error of
/// either kind stops the start; an unreachable Redis is logged and the service starts anyway
/// (`/readyz` answers 503 until Redis answers).
pub async fn start_redis(
    section: &str,
    url: &str,
    tls: Option<&RedisTls>,
    pool_size: usize,
) -> Result<(Client, deadpool_redis::Pool), RedisStartError> {
    let client = redis_client(section, url, tls)?;
    let pool = redis_pool(section, &client, pool_size)?;
    match check_connection(section, &pool, Duration::from_secs(3)).await {
        Ok(()) => {}
        Err(e) if e.is_configuration() => return Err(e.into()),
        Err(e) => tracing::warn!(reason = %e, "redis is not reachable yet; starting anyway"),
    }
    Ok((client, pool))
}

/// One line saying why a connection failed, and whether the configuration is to blame. The
/// redis error's own text is kept short of anything the server echoed.
fn describe(e: &RedisError, section: &str) -> (String, bool) {
    if let Some(tls) = rustls_error(e) {
        let hint = match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            | rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => {
                format!(" (is {section}.tls.ca_file the CA that signed the server's certificate?)")
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            ) => format!(" (the host of {section}.url is not a name in the server's certificate)"),
            _ => String::new(),
        };
        return (
            one_line(&format!("TLS handshake failed: {tls}{hint}")),
            true,
        );
    }
    if matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) {
        return (
            format!("authentication failed (check the user and password in {section}.url)"),
            true,
        );
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed => (
            format!("authentication failed (check the user and password in {section}.url)"),
            true,
        ),
        ErrorKind::Server(redis::ServerErrorKind::NoPerm) => (
            format!(
                "the user in {section}.url lacks a permission (ACL): {}",
                kind_name(e)
            ),
            true,
        ),
        _ if e.is_io_error() => (
            one_line(&format!("connection failed: {}", io_reason(e))),
            false,
        ),
        _ => (kind_name(e), false),
    }
}

/// The rustls error under a redis I/O error, if the handshake failed.
fn rustls_error(e: &RedisError) -> Option<&rustls::Error> {
    io_error(e)?.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The I/O error a redis error wraps. redis keeps it as an `Arc<dyn Error>`, whose `source()`
/// skips the I/O error itself, so it is unwrapped by type.
fn io_error(e: &RedisError) -> Option<&std::io::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let source = std::error::Error::source(e)?;
    match source.downcast_ref::<Shared>() {
        Some(shared) => shared.downcast_ref::<std::io::Error>(),
        None => source.downcast_ref::<std::io::Error>(),
    }
}

fn io_reason(e: &RedisError) -> String {
    io_error(e).map_or_else(|| kind_name(e), ToString::to_string)
}

/// The category of a redis error, without the detail text (which may echo a server reply).
fn kind_name(e: &RedisError) -> String {
    match e.code() {
        Some(code) => format!("{:?}: {code}", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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

#[cfg(test)]
mod tests;
