//! Fetching a document: one GET, to the vetted addresses only, no proxy, no redirects, a body
//! cap and a JSON content type; at most [`MAX_CONCURRENT_FETCHES`] in flight, at most
//! [`MAX_FETCHES_PER_HOST`] of them to one host, a bounded wait for a slot, and a deadline of its
//! own for each fetch.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header;
use url::{Host, Url};

use super::address::{check_url, is_forbidden_ip};
use super::cache::{CACHE_CAPACITY, Cache, cache_ttl};
use super::document::parse_document;
use super::{CimdError, ClientMetadataDocument};
use crate::config::CimdConfig;

/// Fetches in flight at once across the process; more wait up to `cimd.queue_wait_ms`.
pub const MAX_CONCURRENT_FETCHES: usize = 16;
/// Fetches in flight at once to one host; another one to that host is refused at once. A host is
/// what a fetch really goes to, counted twice over ([`SlotKey`]): the name's domain before it is
/// resolved, and the address it connects to once it is. So neither the many names of one domain
/// nor the many domains of one server take more than this share of [`MAX_CONCURRENT_FETCHES`].
pub const MAX_FETCHES_PER_HOST: usize = 4;

/// What a share of [`MAX_FETCHES_PER_HOST`] fetch slots is counted against. Keying by the exact
/// host name let one party, who can name as many subdomains of its domain as it likes, each
/// resolving to its one slow server, take every slot (issue 12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SlotKey {
    /// The last two labels of the host name (an address literal as it is): every name of one
    /// domain counts here, whatever it resolves to, so a domain's owner cannot escape its share
    /// by pointing names at many addresses. Without a public suffix list, domains under a
    /// multi-label public suffix (`co.uk`, `github.io`) count as one: that costs them fairness
    /// only among themselves, and only while their fetches overlap; any finer cut without the
    /// list (dropping only the first label) the attacker escapes by adding labels.
    Domain(String),
    /// The first approved address, which the connection tries first (IPv6 by its /64, which one
    /// machine commonly holds whole). Only the first: counting every listed address would let a
    /// name that lists other parties' addresses behind its own take their shares too.
    Address(IpAddr),
}

impl SlotKey {
    fn domain(url: &Url) -> Self {
        match url.host() {
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.');
                let last_two = match d.rmatch_indices('.').nth(1) {
                    Some((i, _)) => &d[i + 1..],
                    None => d,
                };
                SlotKey::Domain(last_two.to_owned())
            }
            _ => SlotKey::Domain(url.host_str().unwrap_or_default().to_owned()),
        }
    }

    fn address(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !u128::from(u64::MAX);
                SlotKey::Address(IpAddr::V6(Ipv6Addr::from(net)))
            }
            v4 => SlotKey::Address(v4),
        }
    }
}

/// Fetches, validates and caches Client ID Metadata Documents. Cheap to clone; shares its cache.
#[derive(Clone)]
pub struct CimdFetcher {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) cfg: CimdConfig,
    pub(super) cache: Mutex<Cache>,
    /// Recent failures by URL, remembered for `cfg.failure_cache_secs`.
    pub(super) failures: Mutex<HashMap<String, (CimdError, Instant)>>,
    permits: tokio::sync::Semaphore,
    /// Fetches in flight per domain and per address.
    per_host: Mutex<HashMap<SlotKey, usize>>,
    /// Tests pin host names to addresses without touching system DNS.
    #[cfg(test)]
    test_hosts: HashMap<String, Vec<IpAddr>>,
}

impl std::fmt::Debug for CimdFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimdFetcher")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl CimdFetcher {
    /// A fetcher applying `cfg`.
    pub fn new(cfg: &crate::config::CimdConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                cache: Mutex::new(Cache::new(CACHE_CAPACITY)),
                failures: Mutex::default(),
                permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
                per_host: Mutex::default(),
                #[cfg(test)]
                test_hosts: HashMap::new(),
            }),
        }
    }

    #[cfg(test)]
    pub(super) fn with_test_hosts(cfg: &CimdConfig, hosts: &[(&str, &[IpAddr])]) -> Self {
        let mut f = Self::new(cfg);
        let inner = Arc::get_mut(&mut f.inner).expect("fresh fetcher");
        inner.test_hosts = hosts
            .iter()
            .map(|(h, a)| ((*h).to_owned(), a.to_vec()))
            .collect();
        f
    }

    /// Whether CIMD is switched on (for `client_id_metadata_document_supported`).
    pub fn enabled(&self) -> bool {
        self.inner.cfg.enabled
    }

    /// True when `client_id` should be treated as a metadata document URL: the form of
    /// [`is_cimd_client_id`], or with `dangerous_allow_loopback` also `http://` on a loopback
    /// host. Independent of `enabled`, so a disabled server answers [`CimdError::Disabled`]
    /// rather than "unknown client".
    pub fn accepts(&self, client_id: &str) -> bool {
        check_url(client_id, self.inner.cfg.dangerous_allow_loopback).is_ok()
    }

    /// Whether [`CimdFetcher::fetch`] would answer `client_id` from memory (a cached document or
    /// a remembered failure) without a network fetch.
    pub fn is_cached(&self, client_id: &str) -> bool {
        let now = Instant::now();
        self.cache().get(client_id, now).is_some()
            || self.remembered_failure(client_id, now).is_some()
    }

    /// The validated document named by `client_id`, from the cache or fetched.
    pub async fn fetch(&self, client_id: &str) -> Result<ClientMetadataDocument, CimdError> {
        let cfg = &self.inner.cfg;
        if !cfg.enabled {
            return Err(CimdError::Disabled);
        }
        let url =
            check_url(client_id, cfg.dangerous_allow_loopback).map_err(CimdError::NotAllowedUrl)?;
        let host = url.host_str().unwrap_or_default().to_owned();

        let now = Instant::now();
        if let Some(doc) = self.cache().get(client_id, now) {
            tracing::debug!(host = %host, "cimd: cache hit");
            return Ok(doc);
        }
        if let Some(e) = self.remembered_failure(client_id, now) {
            tracing::debug!(host = %host, error = ?e, "cimd: failure remembered");
            return Err(e);
        }

        let result = self.fetch_queued(&url).await;
        match result {
            Ok((doc, ttl)) => {
                let cache_secs = ttl.map_or(0, |t| t.as_secs());
                tracing::info!(host = %host, cache_secs, "cimd: document fetched");
                if let Some(ttl) = ttl {
                    self.cache()
                        .insert(client_id.to_owned(), doc.clone(), ttl, Instant::now());
                }
                Ok(doc)
            }
            Err(e) => {
                // The variant and its details (addresses, the network error) only go here.
                tracing::info!(host = %host, error = ?e, "cimd: document refused");
                if e.is_cacheable() {
                    self.remember_failure(client_id, &e);
                }
                Err(e)
            }
        }
    }

    /// Takes a slot of the name's domain (refused at once when its share is taken), waits
    /// (bounded) for a fetch slot, then fetches with a deadline of its own.
    async fn fetch_queued(
        &self,
        url: &Url,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let cfg = &self.inner.cfg;
        let _domain_slot =
            HostSlot::take(&self.inner, SlotKey::domain(url)).ok_or(CimdError::Busy)?;
        let queue_wait = Duration::from_millis(cfg.queue_wait_ms);
        let _permit = match tokio::time::timeout(queue_wait, self.inner.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => {
                metrics::counter!("mcpauth_cimd_fetch_busy_total").increment(1);
                return Err(CimdError::Busy);
            }
        };
        let timeout = Duration::from_millis(cfg.timeout_ms);
        match tokio::time::timeout(timeout, self.fetch_uncached(url, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(CimdError::Timeout),
        }
    }

    async fn fetch_uncached(
        &self,
        url: &Url,
        timeout: Duration,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let cfg = &self.inner.cfg;
        let addrs = self.vetted_addrs(url).await?;
        // The address's share, refused at once when taken: names of many domains on one server.
        let first = addrs.first().ok_or(CimdError::Resolve)?;
        let _address_slot =
            HostSlot::take(&self.inner, SlotKey::address(first.ip())).ok_or(CimdError::Busy)?;

        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout)
            .timeout(timeout)
            .https_only(!cfg.dangerous_allow_loopback)
            .user_agent(concat!("mcpauth/", env!("CARGO_PKG_VERSION")));
        if let Some(Host::Domain(d)) = url.host() {
            builder = builder.resolve_to_addrs(d, &addrs);
        }
        let client = builder
            .build()
            .map_err(|_| CimdError::Fetch("client setup failed".into()))?;

        let mut resp = client
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(map_reqwest)?;

        let status = resp.status();
        if status.is_redirection() {
            return Err(CimdError::Redirect);
        }
        if status != reqwest::StatusCode::OK {
            return Err(CimdError::Status(status.as_u16()));
        }
        let json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_content_type);
        if !json {
            return Err(CimdError::NotJson);
        }
        if resp
            .content_length()
            .is_some_and(|n| n > cfg.max_bytes as u64)
        {
            return Err(CimdError::TooLarge);
        }
        let cap = Duration::from_secs(cfg.max_cache_secs);
        let ttl = cache_ttl(resp.headers(), cap, chrono::Utc::now());

        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > cfg.max_bytes {
                return Err(CimdError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_document(url.as_str(), &body)?, ttl))
    }

    /// Resolves the URL's host once and returns its addresses if none is forbidden.
    async fn vetted_addrs(&self, url: &Url) -> Result<Vec<SocketAddr>, CimdError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
            Some(Host::Domain(d)) => self.lookup(d, port).await?,
            None => return Err(CimdError::NotAllowedUrl("no host")),
        };
        if addrs.is_empty() {
            return Err(CimdError::Resolve);
        }
        for a in &addrs {
            let ip = a.ip();
            let loopback_ok =
                self.inner.cfg.dangerous_allow_loopback && ip.to_canonical().is_loopback();
            if !loopback_ok && is_forbidden_ip(ip) {
                return Err(CimdError::ForbiddenAddress(ip));
            }
        }
        Ok(addrs)
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CimdError> {
        #[cfg(test)]
        if let Some(ips) = self.inner.test_hosts.get(host) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| CimdError::Resolve)?;
        Ok(addrs.collect())
    }
}

/// One of a domain's or an address's [`MAX_FETCHES_PER_HOST`] fetch slots, given back on drop.
struct HostSlot<'a> {
    inner: &'a Inner,
    host: SlotKey,
}

impl<'a> HostSlot<'a> {
    fn take(inner: &'a Inner, host: SlotKey) -> Option<Self> {
        let mut hosts = inner.per_host.lock().unwrap_or_else(|e| e.into_inner());
        let n = hosts.entry(host.clone()).or_default();
        if *n >= MAX_FETCHES_PER_HOST {
            return None;
        }
        *n += 1;
        Some(Self { inner, host })
    }
}

impl Drop for HostSlot<'_> {
    fn drop(&mut self) {
        let mut hosts = self
            .inner
            .per_host
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = hosts.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

fn map_reqwest(e: reqwest::Error) -> CimdError {
    // The detail (which may name the address connected to) is for the log only; the message
    // shown is the same for all of them.
    if e.is_timeout() {
        CimdError::Timeout
    } else if e.is_connect() {
        CimdError::Fetch(format!("connect: {e}"))
    } else if e.is_body() || e.is_decode() {
        CimdError::Fetch(format!("body: {e}"))
    } else {
        CimdError::Fetch(format!("request: {e}"))
    }
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::test_support::{
        TestServer, cfg, doc, init_tls, ip, json_ok, response, serve, serve_docs,
    };
    use serde_json::Value;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn fetcher_is_clone_send_sync_and_its_future_is_send() {
        fn check<T: Clone + Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let f = CimdFetcher::new(&cfg(false));
        check(&f);
        send(f.fetch("https://app.example.com/c"));
    }
    #[tokio::test]
    async fn valid_document_accepted_with_defaults() {
        init_tls();
        let s = serve_docs(|url| Some(json_ok(&doc(url).to_string(), &[]))).await;
        let f = CimdFetcher::new(&cfg(true));
        let url = format!("{}/client.json", s.base);
        assert!(f.accepts(&url));
        let d = f.fetch(&url).await.expect("valid document");
        assert_eq!(d.client_id, url);
        assert_eq!(d.client_name, "Example MCP Client");
        assert_eq!(d.redirect_uris.len(), 2);
        assert_eq!(d.grant_types, ["authorization_code"]);
        assert_eq!(d.response_types, ["code"]);
        assert_eq!(d.token_endpoint_auth_method, "none");
        assert_eq!(d.scope.as_deref(), Some("mcp:tools"));
        assert_eq!(
            d.logo_uri.as_deref(),
            Some("https://app.example.com/logo.png")
        );
        assert_eq!(d.client_uri, None);
        assert_eq!(d.raw["client_name"], "Example MCP Client");
        assert_eq!(d.redirect_hosts(), ["127.0.0.1", "app.example.com"]);
        assert!(!d.has_only_loopback_redirects());
    }

    #[tokio::test]
    async fn plus_json_content_type_accepted() {
        init_tls();
        let s = serve_docs(|url| {
            Some(response(
                "200 OK",
                &[(
                    "Content-Type",
                    "application/vnd.example+json; charset=utf-8",
                )],
                &doc(url).to_string(),
            ))
        })
        .await;
        let f = CimdFetcher::new(&cfg(true));
        assert!(f.fetch(&format!("{}/c", s.base)).await.is_ok());
    }

    #[tokio::test]
    async fn client_id_mismatch_refused() {
        init_tls();
        let s = serve_docs(|url| {
            let mut d = doc(url);
            d["client_id"] = Value::from(format!("{url}/"));
            Some(json_ok(&d.to_string(), &[]))
        })
        .await;
        let f = CimdFetcher::new(&cfg(true));
        assert!(matches!(
            f.fetch(&format!("{}/c", s.base)).await,
            Err(CimdError::ClientIdMismatch)
        ));
    }

    #[tokio::test]
    async fn oversized_body_refused_by_content_length_and_by_streaming() {
        init_tls();
        let big = "x".repeat(6000);
        let s = serve_docs(move |url| {
            let d = serde_json::json!({
                "client_id": url,
                "client_name": "n",
                "redirect_uris": ["https://a.example/cb"],
                "pad": big,
            });
            if url.ends_with("/declared") {
                Some(json_ok(&d.to_string(), &[]))
            } else {
                // No Content-Length: the body runs to the end of the connection.
                let head =
                    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n";
                Some(format!("{head}{d}").into_bytes())
            }
        })
        .await;
        let f = CimdFetcher::new(&cfg(true));
        assert!(matches!(
            f.fetch(&format!("{}/declared", s.base)).await,
            Err(CimdError::TooLarge)
        ));
        assert!(matches!(
            f.fetch(&format!("{}/streamed", s.base)).await,
            Err(CimdError::TooLarge)
        ));
        // The same document under the limit passes.
        let roomy = CimdFetcher::new(&CimdConfig {
            max_bytes: 10_000,
            ..cfg(true)
        });
        assert!(roomy.fetch(&format!("{}/streamed", s.base)).await.is_ok());
    }

    #[tokio::test]
    async fn redirect_refused() {
        init_tls();
        let s = serve_docs(|url| {
            Some(response(
                "302 Found",
                &[("Location", &format!("{url}-elsewhere"))],
                "",
            ))
        })
        .await;
        let f = CimdFetcher::new(&cfg(true));
        assert!(matches!(
            f.fetch(&format!("{}/c", s.base)).await,
            Err(CimdError::Redirect)
        ));
        assert_eq!(
            s.hits.load(Ordering::SeqCst),
            1,
            "the redirect was not followed"
        );
    }

    #[tokio::test]
    async fn wrong_content_type_and_bad_status_refused() {
        init_tls();
        let s = serve_docs(|url| {
            let body = doc(url).to_string();
            if url.ends_with("/html") {
                Some(response("200 OK", &[("Content-Type", "text/html")], &body))
            } else if url.ends_with("/none") {
                Some(response("200 OK", &[], &body))
            } else {
                Some(response(
                    "404 Not Found",
                    &[("Content-Type", "application/json")],
                    "{}",
                ))
            }
        })
        .await;
        let f = CimdFetcher::new(&cfg(true));
        assert!(matches!(
            f.fetch(&format!("{}/html", s.base)).await,
            Err(CimdError::NotJson)
        ));
        assert!(matches!(
            f.fetch(&format!("{}/none", s.base)).await,
            Err(CimdError::NotJson)
        ));
        assert!(matches!(
            f.fetch(&format!("{}/missing", s.base)).await,
            Err(CimdError::Status(404))
        ));
    }
    #[tokio::test]
    async fn network_errors_name_no_address_and_no_cause() {
        init_tls();
        // A port nobody listens on (bound, then closed): connection refused.
        let closed = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let f = CimdFetcher::new(&cfg(true));
        let refused = f
            .fetch(&format!("http://127.0.0.1:{port}/c"))
            .await
            .unwrap_err()
            .to_string();
        // A private address behind a name.
        let private: &[IpAddr] = &[ip("10.1.2.3")];
        let f = CimdFetcher::with_test_hosts(&cfg(false), &[("internal.example.com", private)]);
        let forbidden = f
            .fetch("https://internal.example.com/c")
            .await
            .unwrap_err()
            .to_string();
        let unresolvable = CimdFetcher::new(&cfg(false))
            .fetch("https://does-not-exist.invalid/c")
            .await
            .unwrap_err()
            .to_string();
        for m in [&refused, &forbidden, &unresolvable] {
            assert_eq!(m, "could not fetch the client metadata document");
            for leak in [
                "127.0.0.1",
                "10.1.2.3",
                "refused",
                "connect",
                "resolve",
                "forbidden",
            ] {
                assert!(!m.contains(leak), "{m:?} reveals {leak:?}");
            }
        }
    }

    #[tokio::test]
    async fn fetch_slots_are_shared_fairly_and_waited_for_boundedly() {
        init_tls();
        // One slow server per host, each on an address of its own (names on one address share
        // that address's slots).
        let mut slow = Vec::new();
        for i in 1..=5 {
            slow.push(serve(&format!("127.0.0.{i}"), |_, _| None).await);
        }
        let names: Vec<String> = (0..5).map(|i| format!("slow{i}.localhost")).collect();
        let addrs: Vec<[IpAddr; 1]> = (1..=5).map(|i| [ip(&format!("127.0.0.{i}"))]).collect();
        let hosts: Vec<(&str, &[IpAddr])> = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| (n.as_str(), &a[..]))
            .collect();
        let url =
            |h: usize, path: &str| format!("http://{}:{}/{path}", names[h], port_of(&slow[h]));
        let f = CimdFetcher::with_test_hosts(
            &CimdConfig {
                // Far longer than the test: the slots stay taken however slow this machine is.
                timeout_ms: 60_000,
                queue_wait_ms: 300,
                ..cfg(true)
            },
            &hosts,
        );
        // 4 hosts x 4 fetches take all 16 slots.
        let mut held = Vec::new();
        for h in 0..4 {
            for i in 0..MAX_FETCHES_PER_HOST {
                let (f, u) = (f.clone(), url(h, &format!("held{i}")));
                held.push(tokio::spawn(async move { f.fetch(&u).await }));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A fifth fetch to a busy host is refused at once, not queued behind it.
        let started = Instant::now();
        let r = f.fetch(&url(0, "fifth")).await;
        assert!(matches!(r, Err(CimdError::Busy)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Another host waits for a slot no longer than queue_wait_ms, then gives up.
        let started = Instant::now();
        let r = f.fetch(&url(4, "queued")).await;
        assert!(matches!(r, Err(CimdError::Busy)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Busy is about this server, not the document: not remembered.
        assert!(!f.is_cached(&url(4, "queued")));
        for h in held {
            h.abort();
        }
    }

    #[tokio::test]
    async fn a_queued_fetch_gets_its_whole_timeout_after_the_wait() {
        init_tls();
        // Every slot is held by a hanging fetch for timeout_ms (1.5 s); the late document answers
        // 600 ms after it is asked. A deadline counted from the start of the wait (the old
        // behaviour) ends at ~1.5 s, before the answer at ~1.5 + 0.6 s; a deadline of its own
        // starts when the slot is free.
        // The holding hosts each on an address of their own (names on one address share that
        // address's slots).
        let mut slow = Vec::new();
        for i in 11..=14 {
            slow.push(serve(&format!("127.0.0.{i}"), |_, _| None).await);
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    let url = format!("http://late.localhost:{port}/c");
                    let _ = sock.write_all(&json_ok(&doc(&url).to_string(), &[])).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        let lo: &[IpAddr] = &[ip("127.0.0.1")];
        let names: Vec<String> = (0..4).map(|i| format!("hold{i}.localhost")).collect();
        let addrs: Vec<[IpAddr; 1]> = (11..=14).map(|i| [ip(&format!("127.0.0.{i}"))]).collect();
        let mut hosts: Vec<(&str, &[IpAddr])> = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| (n.as_str(), &a[..]))
            .collect();
        hosts.push(("late.localhost", lo));
        let holder = CimdConfig {
            timeout_ms: 1500,
            queue_wait_ms: 5000,
            ..cfg(true)
        };
        let f = CimdFetcher::with_test_hosts(&holder, &hosts);
        let mut held = Vec::new();
        for (n, s) in names.iter().zip(&slow) {
            for i in 0..MAX_FETCHES_PER_HOST {
                let (f, u) = (f.clone(), format!("http://{n}:{}/held{i}", port_of(s)));
                held.push(tokio::spawn(async move { f.fetch(&u).await }));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = f.fetch(&format!("http://late.localhost:{port}/c")).await;
        assert!(r.is_ok(), "{r:?}");
        for h in held {
            let _ = h.await;
        }
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        init_tls();
        let s = serve_docs(|_| None).await;
        let f = CimdFetcher::new(&CimdConfig {
            timeout_ms: 300,
            ..cfg(true)
        });
        let started = Instant::now();
        assert!(matches!(
            f.fetch(&format!("{}/c", s.base)).await,
            Err(CimdError::Timeout)
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn connects_only_to_the_vetted_address() {
        init_tls();
        // The server listens on 127.0.0.2 only; the name is known solely to the fetcher's pinned
        // resolution, so success shows the connection used the vetted address, not a second lookup.
        let s = serve("127.0.0.2", |path, base| {
            let port = base.rsplit(':').next().unwrap_or_default();
            Some(json_ok(
                &doc(&format!("http://pinned.localhost:{port}{path}")).to_string(),
                &[],
            ))
        })
        .await;
        let port = s.base.rsplit(':').next().expect("port").to_owned();
        let pinned: &[IpAddr] = &[ip("127.0.0.2")];
        let f = CimdFetcher::with_test_hosts(&cfg(true), &[("pinned.localhost", pinned)]);
        let d = f
            .fetch(&format!("http://pinned.localhost:{port}/c"))
            .await
            .expect("fetched via pinned address");
        assert_eq!(d.client_id, format!("http://pinned.localhost:{port}/c"));
    }

    // ---- one host's share is counted by what a fetch really goes to (issue 12, finding (c)) ----

    /// Fetches every URL at once, then waits until each fetch has either reached a server (its
    /// request arrived) or been refused as busy, or failed otherwise. Returns those three counts;
    /// the fetches still in flight are dropped.
    async fn reached_busy_other(
        f: &CimdFetcher,
        urls: &[String],
        servers: &[&TestServer],
    ) -> (usize, usize, usize) {
        let busy = Arc::new(AtomicUsize::new(0));
        let other = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = urls
            .iter()
            .map(|u| {
                let (f, u, busy, other) = (f.clone(), u.clone(), busy.clone(), other.clone());
                tokio::spawn(async move {
                    match f.fetch(&u).await {
                        Err(CimdError::Busy) => busy.fetch_add(1, Ordering::SeqCst),
                        _ => other.fetch_add(1, Ordering::SeqCst),
                    };
                })
            })
            .collect();
        let reached = || servers.iter().map(|s| s.hits.load(Ordering::SeqCst)).sum();
        let counts = || {
            (
                reached(),
                busy.load(Ordering::SeqCst),
                other.load(Ordering::SeqCst),
            )
        };
        loop {
            let (r, b, o) = counts();
            if r + b + o >= urls.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let c = counts();
        for t in tasks {
            t.abort();
        }
        c
    }

    fn port_of(s: &TestServer) -> String {
        s.base.rsplit(':').next().expect("port").to_owned()
    }

    /// Config for the share tests: fetches that hang far longer than any test, a short wait.
    fn holding() -> CimdConfig {
        CimdConfig {
            timeout_ms: 60_000,
            queue_wait_ms: 300,
            ..cfg(true)
        }
    }

    #[tokio::test]
    async fn subdomains_of_one_name_on_one_address_take_one_hosts_share() {
        init_tls();
        // Attack: every subdomain of the attacker's domain, all served by one slow server, each
        // counted as a host of its own, took all 16 slots and left none for anybody else.
        let slow = serve("127.0.0.1", |_, _| None).await;
        let other = serve("127.0.0.2", |path, base| {
            let port = base.rsplit(':').next().unwrap_or_default();
            let url = format!("http://other.localhost:{port}{path}");
            Some(json_ok(&doc(&url).to_string(), &[]))
        })
        .await;
        let lo: &[IpAddr] = &[ip("127.0.0.1")];
        let lo2: &[IpAddr] = &[ip("127.0.0.2")];
        let names: Vec<String> = (0..MAX_CONCURRENT_FETCHES)
            .map(|i| format!("s{i}.evil.localhost"))
            .collect();
        let mut hosts: Vec<(&str, &[IpAddr])> = names.iter().map(|n| (n.as_str(), lo)).collect();
        hosts.push(("other.localhost", lo2));
        let f = CimdFetcher::with_test_hosts(&holding(), &hosts);
        let urls: Vec<String> = names
            .iter()
            .map(|n| format!("http://{n}:{}/c", port_of(&slow)))
            .collect();
        let (reached, busy, other_errors) = reached_busy_other(&f, &urls, &[&slow]).await;
        println!(
            "{} subdomains on one address: {reached} fetches reached the server, {busy} refused as busy, {other_errors} other",
            urls.len()
        );
        assert_eq!(
            (reached, busy, other_errors),
            (MAX_FETCHES_PER_HOST, urls.len() - MAX_FETCHES_PER_HOST, 0),
            "one host's share at most"
        );
        // The other slots stay free for everybody else.
        let r = f
            .fetch(&format!("http://other.localhost:{}/c", port_of(&other)))
            .await;
        assert!(r.is_ok(), "{r:?}");
    }

    #[tokio::test]
    async fn names_of_one_domain_on_many_addresses_take_one_share() {
        init_tls();
        // Before any address is known: every name of one domain counts against that domain.
        let mut servers = Vec::new();
        for i in 0..8 {
            servers.push(serve(&format!("127.0.0.{}", 20 + i), |_, _| None).await);
        }
        let names: Vec<String> = (0..8).map(|i| format!("h{i}.evil.localhost")).collect();
        let addrs: Vec<[IpAddr; 1]> = (0..8)
            .map(|i| [ip(&format!("127.0.0.{}", 20 + i))])
            .collect();
        let hosts: Vec<(&str, &[IpAddr])> = names
            .iter()
            .zip(&addrs)
            .map(|(n, a)| (n.as_str(), &a[..]))
            .collect();
        let f = CimdFetcher::with_test_hosts(&holding(), &hosts);
        let urls: Vec<String> = names
            .iter()
            .zip(&servers)
            .map(|(n, s)| format!("http://{n}:{}/c", port_of(s)))
            .collect();
        let refs: Vec<&TestServer> = servers.iter().collect();
        let (reached, busy, other) = reached_busy_other(&f, &urls, &refs).await;
        println!(
            "8 names of one domain on 8 addresses: {reached} reached, {busy} busy, {other} other"
        );
        assert_eq!(
            (reached, busy, other),
            (MAX_FETCHES_PER_HOST, 8 - MAX_FETCHES_PER_HOST, 0)
        );
    }

    #[tokio::test]
    async fn many_domains_on_one_address_take_one_share() {
        init_tls();
        // Once resolved: every name served from one address counts against that address.
        let slow = serve("127.0.0.30", |_, _| None).await;
        let addr: &[IpAddr] = &[ip("127.0.0.30")];
        let names: Vec<String> = (0..8).map(|i| format!("evil{i}.localhost")).collect();
        let hosts: Vec<(&str, &[IpAddr])> = names.iter().map(|n| (n.as_str(), addr)).collect();
        let f = CimdFetcher::with_test_hosts(&holding(), &hosts);
        let urls: Vec<String> = names
            .iter()
            .map(|n| format!("http://{n}:{}/c", port_of(&slow)))
            .collect();
        let (reached, busy, other) = reached_busy_other(&f, &urls, &[&slow]).await;
        println!("8 domains on one address: {reached} reached, {busy} busy, {other} other");
        assert_eq!(
            (reached, busy, other),
            (MAX_FETCHES_PER_HOST, 8 - MAX_FETCHES_PER_HOST, 0)
        );
    }

    #[test]
    fn slot_keys_group_a_domain_and_an_address() {
        let domain = |u: &str| SlotKey::domain(&Url::parse(u).expect(u));
        let d = |s: &str| SlotKey::Domain(s.to_owned());
        assert_eq!(domain("https://evil.example/c"), d("evil.example"));
        assert_eq!(domain("https://a.b.c.evil.example/c"), d("evil.example"));
        assert_eq!(domain("https://a.evil.example./c"), d("evil.example"));
        assert_eq!(domain("http://localhost:1/c"), d("localhost"));
        assert_eq!(domain("https://93.184.216.34/c"), d("93.184.216.34"));
        assert_eq!(domain("https://[2606:4700::1]/c"), d("[2606:4700::1]"));
        let a = |s: &str| SlotKey::address(ip(s));
        assert_eq!(a("93.184.216.34"), a("::ffff:93.184.216.34"));
        assert_ne!(a("93.184.216.34"), a("93.184.216.35"));
        assert_eq!(a("2606:4700:1:2::1"), a("2606:4700:1:2:ffff::9"));
        assert_ne!(a("2606:4700:1:2::1"), a("2606:4700:1:3::1"));
    }
}
