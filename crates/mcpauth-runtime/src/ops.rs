//! The operations face every service shares: the admin listener (`/healthz`, `/readyz`,
//! `/metrics` on their own port, away from the public one an ingress exposes), and the drain
//! that lets a cluster stop sending traffic before the listeners close.
//!
//! ```toml
//! [admin]
//! addr = "0.0.0.0:8180"     # empty: the ops paths stay on the public HTTP port (loopback dev)
//! [shutdown]
//! drain_delay_secs = 5      # after SIGTERM: /readyz answers 503, serving goes on this long
//! ```
//!
//! On SIGTERM a service calls [`drain`]: `/readyz` answers 503 at once (and the gRPC health
//! service reports `NOT_SERVING`), so the orchestrator takes the replica out of its endpoints,
//! while requests that still arrive in the meantime are served. After the delay the service
//! closes its listeners (new connections are refused) and lets in-flight requests finish within
//! its `http.shutdown_timeout_secs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::ConfigError;

/// `[admin]`: where the ops paths are served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` of the admin listener; empty: none (the ops paths stay on the public HTTP
    /// listener, where there is one).
    #[serde(default)]
    pub addr: String,
}

impl AdminConfig {
    /// The listener's address, `None` when `addr` is empty. `key` names the setting in errors.
    pub fn socket_addr(&self, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen_addr(key, &self.addr)
    }
}

/// Parses an optional `host:port` setting: empty is `None`.
pub fn parse_listen_addr(key: &str, addr: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if addr.is_empty() {
        return Ok(None);
    }
    addr.parse::<SocketAddr>()
        .map(Some)
        .map_err(|e| ConfigError::new(format!("{key}: {addr:?} is not an ip:port address ({e})")))
}

/// `[shutdown]`: what happens between SIGTERM and the listeners closing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds between SIGTERM and closing the listeners, while `/readyz` already answers 503.
    #[serde(default)]
    pub drain_delay_secs: u64,
}

impl ShutdownConfig {
    /// The drain delay.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_secs(self.drain_delay_secs)
    }
}

/// Whether the service is draining: set once, at the shutdown signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Drain(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Drain {
    /// Marks the service as draining: `/readyz` answers 503 from now on.
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`Drain::begin`] was called.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once draining began.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// The `/readyz` answer while draining: 503, so the replica leaves the load balancer.
pub fn draining_response() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain")
        .force_close()
        .body("draining")
}

/// The drain: `/readyz` answers 503 at once, serving goes on for `delay`. Call it between the
/// shutdown signal and closing the listeners.
pub async fn drain(drain: &Drain, delay: Duration) {
    drain.begin();
    if !delay.is_zero() {
        tracing::info!(
            delay_secs = delay.as_secs_f64(),
            "draining: /readyz answers 503; serving until the listeners close"
        );
        tokio::time::sleep(delay).await;
    }
}

/// The admin listener: the routes `routes` registers (the service's ops routes with their
/// state), nothing else.
pub struct AdminServer {
    /// The bound address (port 0 in the configuration picks a free one).
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Binds `addr` (the setting named `key` in errors) and serves `routes` on one worker.
    pub fn start<F>(key: &str, addr: SocketAddr, routes: F) -> std::io::Result<AdminServer>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {key} {addr}: {e}"))
        })?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || App::new().configure(routes.clone()))
            .workers(1)
            .shutdown_timeout(2)
            .disable_signals()
            .listen(listener)?
            .run();
        let handle = server.handle();
        Ok(AdminServer {
            addr,
            handle,
            task: tokio::spawn(server),
        })
    }

    /// Closes the listener and waits for the probes in flight.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_the_key() {
        let a = AdminConfig {
            addr: String::new(),
        };
        assert_eq!(a.socket_addr("admin.addr").unwrap(), None);
        let a = AdminConfig {
            addr: "0.0.0.0:8180".into(),
        };
        assert_eq!(
            a.socket_addr("admin.addr").unwrap(),
            Some("0.0.0.0:8180".parse().unwrap())
        );
        let e = AdminConfig {
            addr: "admin:8180".into(),
        }
        .socket_addr("admin.addr")
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("configuration error: admin.addr: \"admin:8180\" is not an ip:port"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn drain_flips_at_once_and_waits_the_delay() {
        let d = Drain::default();
        assert!(!d.is_draining());
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.wait().await })
        };
        let started = std::time::Instant::now();
        let task = {
            let d = d.clone();
            tokio::spawn(async move { drain(&d, Duration::from_millis(300)).await })
        };
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiters wake at the start of the drain")
            .unwrap();
        assert!(d.is_draining());
        assert!(started.elapsed() < Duration::from_millis(300));
        task.await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
