//! Test support (included with `#[path]`, so it needs no crate of its own): a private
//! `redis-server` with TLS on its own loopback port, a throwaway CA made with rcgen, an ACL user
//! with a password, and client certificates required — the shape of a managed Redis with
//! in-transit encryption and ACL users. The `default` user is off, so nothing gets in without
//! the user's password. Stopped (and its files removed) on drop.
//!
//! Needs Debian's `redis-server` 7 (built with TLS). A redis-server without TLS support fails
//! the test with its own message: nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ACL user and password of every [`TlsRedis`].
pub const REDIS_USER: &str = "mcpauth-app";
pub const REDIS_PASSWORD: &str = "s3cret-acl-password";

/// A running private redis-server with TLS only (its plain port is off).
pub struct TlsRedis {
    child: Child,
    dir: PathBuf,
    /// The TLS port on 127.0.0.1.
    pub port: u16,
}

impl TlsRedis {
    /// Generates the PKI in a fresh directory and starts redis-server on a free port; panics with
    /// the server's log when it does not accept TLS connections within 10 s.
    pub fn start(name: &str) -> Self {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "mcpauth-tls-redis-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_pki(&dir);
        let port = free_port();
        let log = std::fs::File::create(dir.join("redis.log")).unwrap();
        let acl = format!("{REDIS_USER} on >{REDIS_PASSWORD} ~* &* +@all");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(dir.join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"))
            .args(["--tls-auth-clients", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(["--user", "default", "off"])
            .args(["--user"])
            .args(acl.split(' '))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server (Debian: apt-get install redis-server): {e}")
            });
        let mut server = Self { child, dir, port };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "redis-server with TLS exited ({status}) — it needs TLS support (Debian's redis-server 7 has it): {}",
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on TLS port {} within 10 s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// `rediss://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url_with(REDIS_USER, REDIS_PASSWORD)
    }

    /// The URL with other credentials.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("rediss://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// A file of the PKI: `ca.pem` (signed the server and client certificates), `client.pem`,
    /// `client.key`, `other-ca.pem` (an unrelated CA), `server.pem`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca = |cn: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let ca_cert = ca("mcpauth test redis CA");
    let other_ca = ca("an unrelated CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca_cert)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["mcpauth-app".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca_cert)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other_ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
}
