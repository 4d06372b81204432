//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP
//! authorization 2025-11-25): a `client_id` that is an https URL names a JSON document which the
//! authorization server fetches and uses as the client's registration.
//!
//! Fetching a URL chosen by an unauthenticated caller is a server-side request forgery surface,
//! so the fetcher:
//! - accepts only canonical `https://` URLs with a path, no fragment and no user info;
//! - resolves the host once, refuses the URL if *any* address is special-purpose (private,
//!   loopback, link-local/cloud metadata, CGNAT, documentation, multicast, IPv4-mapped or NAT64
//!   forms of those, …; RFC 6890 / RFC 9728 §7.7), then connects only to those vetted addresses,
//!   so DNS rebinding between the check and the connection has no effect;
//! - ignores proxy environment variables (a proxy would resolve the name again);
//! - follows no redirects, enforces a total timeout, a body size limit and a JSON content type;
//! - validates the document (exact `client_id` match, required fields, safe redirect URIs, no
//!   shared secret, `token_endpoint_auth_method` `none`);
//! - caches good documents per HTTP caching headers, capped by configuration, and failures for
//!   `cimd.failure_cache_secs` (a URL that failed is not fetched again meanwhile: a broken or
//!   hostile host costs one fetch per interval, however often it is named);
//! - waits at most `cimd.queue_wait_ms` for one of [`MAX_CONCURRENT_FETCHES`] slots, allows at most
//!   [`MAX_FETCHES_PER_HOST`] of them to one host, and gives each fetch its own `cimd.timeout_ms`
//!   from when it starts, so a slow host cannot starve the others nor make queued lookups time out;
//! - answers every network-level failure (resolution, a forbidden address, connection, timeout,
//!   a broken body) with one generic message: which one happened, and any address, goes only to
//!   the log, so the error is no probe of the server's network.
//!
//! Per-IP budgets for fetches live in front (`ClientRegistry`, `rate_limit.cimd_fetch`).
//! Document bodies are never logged: only the host and the outcome.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap};
use serde_json::{Map, Value};
use url::{Host, Url};

use crate::config::CimdConfig;
use crate::domain::redirect_uri;

/// Longer `client_id` URLs are refused outright; they only serve abuse.
const MAX_CLIENT_ID_LEN: usize = 2048;
/// Documents kept in memory at most; the oldest entry is evicted first.
const CACHE_CAPACITY: usize = 1000;
/// Lifetime of a cached document whose response carries no caching headers.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Fetches in flight at once across the process; more wait up to `cimd.queue_wait_ms`.
pub const MAX_CONCURRENT_FETCHES: usize = 16;
/// Fetches in flight at once to one host; another one to that host is refused at once.
pub const MAX_FETCHES_PER_HOST: usize = 4;
/// The generic answer to any network-level failure (details only in the log).
const UNREACHABLE: &str = "could not fetch the client metadata document";

/// Why a Client ID Metadata Document was not obtained. Messages are lowercase and safe to show
/// to the end user: network-level failures share one message and name no address (the
/// variant, with its details, is logged).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CimdError {
    #[error("client id metadata documents are not supported by this server")]
    Disabled,
    #[error("client_id is not an acceptable metadata document url: {0}")]
    NotAllowedUrl(&'static str),
    #[error("{UNREACHABLE}")]
    ForbiddenAddress(IpAddr),
    #[error("{UNREACHABLE}")]
    Resolve,
    #[error("{UNREACHABLE}")]
    Timeout,
    /// What went wrong, for the log only.
    #[error("{UNREACHABLE}")]
    Fetch(String),
    #[error("fetching the client metadata document returned http status {0}")]
    Status(u16),
    #[error("fetching the client metadata document was redirected; redirects are not followed")]
    Redirect,
    #[error("the client metadata document exceeds the size limit")]
    TooLarge,
    #[error("the client metadata document is not served as json")]
    NotJson,
    #[error("invalid client metadata document: {0}")]
    InvalidDocument(String),
    #[error("the client metadata document's client_id does not exactly match its url")]
    ClientIdMismatch,
    #[error("unsupported token_endpoint_auth_method \"{0}\": a url client_id must use \"none\"")]
    UnsupportedAuthMethod(String),
    /// Every fetch slot (or this host's share) stayed taken for `cimd.queue_wait_ms`.
    #[error("too many client metadata documents are being fetched; try again later")]
    Busy,
    /// The caller's IP used up its `rate_limit.cimd_fetch` budget; retry after this many seconds.
    #[error("too many client metadata document fetches from this address; try again later")]
    RateLimited(u64),
    /// `cimd.max_clients` stored documents: no new one until the sweeper makes room.
    #[error("this server cannot take more client metadata document clients now; try again later")]
    Capacity,
}

impl CimdError {
    /// Whether the failure says something about the document URL (and is remembered for
    /// `cimd.failure_cache_secs`), rather than about this server or the request.
    fn is_cacheable(&self) -> bool {
        !matches!(
            self,
            CimdError::Disabled
                | CimdError::NotAllowedUrl(_)
                | CimdError::Busy
                | CimdError::RateLimited(_)
                | CimdError::Capacity
        )
    }
}

/// A validated Client ID Metadata Document: the registration of a URL-named client.
#[derive(Debug, Clone)]
pub struct ClientMetadataDocument {
    /// The document URL, equal to the document's own `client_id`.
    pub client_id: String,
    pub client_name: String,
    /// Non-empty; each is https, or http on a loopback host, without fragment.
    pub redirect_uris: Vec<String>,
    /// Contains `authorization_code`.
    pub grant_types: Vec<String>,
    /// Contains `code`.
    pub response_types: Vec<String>,
    /// Always `none`: such a client has no shared secret.
    pub token_endpoint_auth_method: String,
    pub scope: Option<String>,
    /// An https URL when present.
    pub client_uri: Option<String>,
    /// An https URL when present.
    pub logo_uri: Option<String>,
    /// The whole document as fetched.
    pub raw: Value,
}

impl ClientMetadataDocument {
    /// Hosts of the redirect URIs, deduplicated in order: the consent page must show them.
    pub fn redirect_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for u in &self.redirect_uris {
            if let Some(h) = Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                && !hosts.contains(&h)
            {
                hosts.push(h);
            }
        }
        hosts
    }

    /// True when every redirect URI is on a loopback host; the MCP spec asks to warn the user,
    /// since any local program could then receive the authorization code.
    pub fn has_only_loopback_redirects(&self) -> bool {
        self.redirect_uris
            .iter()
            .all(|u| Url::parse(u).is_ok_and(|u| u.host().is_some_and(|h| is_loopback_host(&h))))
    }
}

/// True when `client_id` has the form of a Client ID Metadata Document URL: canonical
/// `https://` URL with a non-root path, no fragment and no user info. Says nothing about whether
/// its host is acceptable; [`CimdFetcher::fetch`] checks that.
pub fn is_cimd_client_id(client_id: &str) -> bool {
    check_url(client_id, false).is_ok()
}

/// True for addresses a metadata document must never be fetched from: everything except
/// globally routable unicast (RFC 6890 special-purpose registries, RFC 9728 §7.7). IPv4-mapped
/// and NAT64 (64:ff9b::/96) IPv6 addresses are judged by the IPv4 address they embed; IPv6
/// outside 2000::/3 (global unicast) is refused by default.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

const FORBIDDEN_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", incl. unspecified
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space / CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, incl. cloud metadata 169.254.169.254
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // TEST-NET-1
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated, RFC 7526)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // TEST-NET-2
    ([203, 0, 113, 0], 24),  // TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, incl. limited broadcast
];

/// Special-purpose blocks inside 2000::/3 (the rest of IPv6 is refused wholesale).
const FORBIDDEN_V6_IN_GLOBAL: &[(u128, u32)] = &[
    (0x2001_0000 << 96, 23), // IETF protocol assignments, incl. Teredo, benchmarking, ORCHID
    (0x2001_0db8 << 96, 32), // documentation
    (0x2002 << 112, 16),     // 6to4: tunnels to arbitrary IPv4, including private
    (0x3fff_0000 << 96, 20), // documentation (RFC 9637)
];

fn in_prefix(addr: u128, net: u128, len: u32, bits: u32) -> bool {
    let shift = bits - len;
    (addr >> shift) == (net >> shift)
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let a = u32::from(ip);
    FORBIDDEN_V4
        .iter()
        .any(|(net, len)| in_prefix(a.into(), u32::from_be_bytes(*net).into(), *len, 32))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let a = u128::from(ip);
    const NAT64_WKP: u128 = 0x0064_ff9b << 96;
    if in_prefix(a, NAT64_WKP, 96, 128) {
        return forbidden_v4(Ipv4Addr::from(a as u32));
    }
    if !in_prefix(a, 0x2 << 124, 3, 128) {
        return true;
    }
    FORBIDDEN_V6_IN_GLOBAL
        .iter()
        .any(|(net, len)| in_prefix(a, *net, *len, 128))
}

/// `localhost`, `*.localhost` (RFC 6761), 127.0.0.0/8 and ::1.
fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks the form of a `client_id` URL. `allow_loopback_http` (tests only) also admits
/// `http://` on a loopback host.
fn check_url(raw: &str, allow_loopback_http: bool) -> Result<Url, &'static str> {
    if raw.len() > MAX_CLIENT_ID_LEN {
        return Err("too long");
    }
    let url = Url::parse(raw).map_err(|_| "not a valid url")?;
    let host = url.host().ok_or("no host")?;
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback_http && is_loopback_host(&host) => {}
        _ => return Err("scheme must be https"),
    }
    if url.fragment().is_some() || raw.contains('#') {
        return Err("must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user info");
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("must have a path");
    }
    // The document's client_id must equal the URL exactly; refusing any form the parser would
    // rewrite (dot segments, upper-case host, default port, stray characters) means the string
    // compared is the resource fetched.
    if url.as_str() != raw {
        return Err(
            "must be in normalized form (no dot segments, lower-case host, no default port)",
        );
    }
    Ok(url)
}

/// Fetches, validates and caches Client ID Metadata Documents. Cheap to clone; shares its cache.
#[derive(Clone)]
pub struct CimdFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CimdConfig,
    cache: Mutex<Cache>,
    /// Recent failures by URL, remembered for `cfg.failure_cache_secs`.
    failures: Mutex<HashMap<String, (CimdError, Instant)>>,
    permits: tokio::sync::Semaphore,
    /// Fetches in flight per host.
    per_host: Mutex<HashMap<String, usize>>,
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
    fn with_test_hosts(cfg: &CimdConfig, hosts: &[(&str, &[IpAddr])]) -> Self {
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

        let result = self.fetch_queued(&url, &host).await;
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

    /// Waits (bounded) for a fetch slot and this host's share, then fetches with a deadline of
    /// its own.
    async fn fetch_queued(
        &self,
        url: &Url,
        host: &str,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let cfg = &self.inner.cfg;
        let _host_slot = HostSlot::take(&self.inner, host).ok_or(CimdError::Busy)?;
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

    fn remembered_failure(&self, client_id: &str, now: Instant) -> Option<CimdError> {
        let mut failures = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match failures.get(client_id) {
            Some((e, until)) if *until > now => Some(e.clone()),
            Some(_) => {
                failures.remove(client_id);
                None
            }
            None => None,
        }
    }

    fn remember_failure(&self, client_id: &str, e: &CimdError) {
        let secs = self.inner.cfg.failure_cache_secs;
        if secs == 0 {
            return;
        }
        let now = Instant::now();
        let mut failures = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if failures.len() >= CACHE_CAPACITY {
            failures.retain(|_, (_, until)| *until > now);
            if failures.len() >= CACHE_CAPACITY {
                // Full of live entries (many failing URLs at once): forget them all rather than
                // grow; each costs at most one more fetch.
                failures.clear();
            }
        }
        failures.insert(
            client_id.to_owned(),
            (e.clone(), now + Duration::from_secs(secs)),
        );
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the map inconsistent; keep serving.
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch_uncached(
        &self,
        url: &Url,
        timeout: Duration,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let cfg = &self.inner.cfg;
        let addrs = self.vetted_addrs(url).await?;

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

/// One of a host's [`MAX_FETCHES_PER_HOST`] fetch slots, given back on drop.
struct HostSlot<'a> {
    inner: &'a Inner,
    host: String,
}

impl<'a> HostSlot<'a> {
    fn take(inner: &'a Inner, host: &str) -> Option<Self> {
        let mut hosts = inner.per_host.lock().unwrap_or_else(|e| e.into_inner());
        let n = hosts.entry(host.to_owned()).or_default();
        if *n >= MAX_FETCHES_PER_HOST {
            return None;
        }
        *n += 1;
        Some(Self {
            inner,
            host: host.to_owned(),
        })
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

/// How long a response may be cached (RFC 9111), at most `cap`; `None` = do not cache.
/// `no-store`/`no-cache` forbid caching; `max-age` (less `Age`) wins over `Expires`; without
/// either, [`DEFAULT_TTL`].
fn cache_ttl(
    headers: &HeaderMap,
    cap: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();

    let mut max_age: Option<u64> = None;
    for d in &directives {
        let (name, value) = match d.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (d.as_str(), None),
        };
        match name {
            "no-store" | "no-cache" => return None,
            // An unparseable or repeated max-age makes the response stale (RFC 9111 §4.2.1).
            "max-age" => {
                let secs = value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
            }
            _ => {}
        }
    }
    if directives.is_empty()
        && headers
            .get_all(header::PRAGMA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-cache"))
    {
        return None;
    }

    let ttl = if let Some(secs) = max_age {
        let age = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Duration::from_secs(secs.saturating_sub(age))
    } else if let Some(expires) = headers.get(header::EXPIRES) {
        let parse = |v: &reqwest::header::HeaderValue| {
            v.to_str()
                .ok()
                .and_then(|s| chrono::DateTime::parse_from_rfc2822(s.trim()).ok())
        };
        // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
        let exp = parse(expires)?;
        let date = headers
            .get(header::DATE)
            .and_then(parse)
            .map_or(now, |d| d.with_timezone(&chrono::Utc));
        (exp.with_timezone(&chrono::Utc) - date)
            .to_std()
            .unwrap_or(Duration::ZERO)
    } else {
        DEFAULT_TTL
    };
    let ttl = ttl.min(cap);
    (!ttl.is_zero()).then_some(ttl)
}

/// Validates a fetched document against the URL it came from.
pub(crate) fn parse_document(url: &str, body: &[u8]) -> Result<ClientMetadataDocument, CimdError> {
    let invalid = |m: &str| CimdError::InvalidDocument(m.to_owned());
    let raw: Value = serde_json::from_slice(body).map_err(|_| invalid("not valid json"))?;
    let obj = raw
        .as_object()
        .ok_or_else(|| invalid("not a json object"))?;
    if let Some(at) = crate::domain::input::first_control_character(&raw) {
        return Err(CimdError::InvalidDocument(format!(
            "{at} contains a control character"
        )));
    }

    let client_id = opt_string(obj, "client_id")?.ok_or_else(|| invalid("client_id is missing"))?;
    if client_id != url {
        return Err(CimdError::ClientIdMismatch);
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if obj.contains_key(secret) {
            return Err(CimdError::InvalidDocument(format!(
                "{secret} must not be present"
            )));
        }
    }
    let client_name = opt_string(obj, "client_name")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("client_name is missing"))?;

    use crate::domain::client_metadata as limits;
    limits::check_text("client_name", &client_name, limits::MAX_NAME_CHARS)
        .map_err(CimdError::InvalidDocument)?;
    let redirect_uris = opt_string_array(obj, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(invalid("redirect_uris is missing or empty"));
    }
    if redirect_uris.len() > limits::MAX_REDIRECT_URIS {
        return Err(CimdError::InvalidDocument(format!(
            "at most {} redirect_uris",
            limits::MAX_REDIRECT_URIS
        )));
    }
    for u in &redirect_uris {
        limits::check_uri_len("redirect_uris", u).map_err(CimdError::InvalidDocument)?;
    }
    for u in &redirect_uris {
        redirect_uri::validate_for_registration(u, &[])
            .map_err(|e| CimdError::InvalidDocument(format!("redirect_uris: {e}")))?;
    }

    let method =
        opt_string(obj, "token_endpoint_auth_method")?.unwrap_or_else(|| "none".to_owned());
    if method != "none" {
        return Err(CimdError::UnsupportedAuthMethod(sanitize_token(&method)));
    }
    let grant_types = opt_string_array(obj, "grant_types")?
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid("grant_types must include authorization_code"));
    }
    // A document is an open registration: only the user-delegated grants (docs/security.md).
    // Anything else it lists is ignored, as RFC 7591 §3.2.1 lets a server replace metadata.
    let mut grant_types = grant_types;
    grant_types.retain(|g| crate::domain::client_metadata::OPEN_GRANTS.contains(&g.as_str()));
    grant_types.dedup();
    let response_types =
        opt_string_array(obj, "response_types")?.unwrap_or_else(|| vec!["code".to_owned()]);
    if !response_types.iter().any(|r| r == "code") {
        return Err(invalid("response_types must include code"));
    }
    let scope = opt_string(obj, "scope")?;
    if scope
        .as_ref()
        .is_some_and(|s| s.len() > limits::MAX_SCOPE_BYTES)
    {
        return Err(CimdError::InvalidDocument(format!(
            "scope must be at most {} bytes",
            limits::MAX_SCOPE_BYTES
        )));
    }
    let client_uri = opt_https_url(obj, "client_uri")?;
    let logo_uri = opt_https_url(obj, "logo_uri")?;

    Ok(ClientMetadataDocument {
        client_id,
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        scope,
        client_uri,
        logo_uri,
        raw,
    })
}

/// A string member; JSON `null` counts as absent.
fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CimdError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CimdError::InvalidDocument(format!(
            "{key} must be a string"
        ))),
    }
}

fn opt_string_array(obj: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, CimdError> {
    let wrong = || CimdError::InvalidDocument(format!("{key} must be an array of strings"));
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong()),
    }
}

/// Display-only URLs: the consent page may link or embed them, so only https.
fn opt_https_url(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CimdError> {
    let Some(s) = opt_string(obj, key)? else {
        return Ok(None);
    };
    crate::domain::client_metadata::check_uri_len(key, &s).map_err(CimdError::InvalidDocument)?;
    let ok = Url::parse(&s).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host().is_some()
            && u.username().is_empty()
            && u.password().is_none()
    });
    if ok {
        Ok(Some(s))
    } else {
        Err(CimdError::InvalidDocument(format!(
            "{key} must be an https url"
        )))
    }
}

/// Echo a document-supplied token in an error only if it is short and plain.
fn sanitize_token(s: &str) -> String {
    let plain = s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if plain {
        s.to_owned()
    } else {
        "(invalid)".to_owned()
    }
}

/// In-memory document cache keyed by exact URL, bounded; evicts expired entries, then the
/// oldest inserted.
struct Cache {
    entries: HashMap<String, CacheEntry>,
    capacity: usize,
}

struct CacheEntry {
    doc: ClientMetadataDocument,
    inserted: Instant,
    expires: Instant,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    fn get(&mut self, key: &str, now: Instant) -> Option<ClientMetadataDocument> {
        match self.entries.get(key) {
            Some(e) if e.expires > now => Some(e.doc.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: String, doc: ClientMetadataDocument, ttl: Duration, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.expires > now);
            while self.entries.len() >= self.capacity {
                let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            CacheEntry {
                doc,
                inserted: now,
                expires: now + ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn init_tls() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn cfg(dangerous: bool) -> CimdConfig {
        CimdConfig {
            enabled: true,
            timeout_ms: 3000,
            max_bytes: 5120,
            max_cache_secs: 3600,
            dangerous_allow_loopback: dangerous,
            queue_wait_ms: 1000,
            failure_cache_secs: 30,
            max_clients: 100,
            unused_client_ttl_secs: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn fetcher_is_clone_send_sync_and_its_future_is_send() {
        fn check<T: Clone + Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let f = CimdFetcher::new(&cfg(false));
        check(&f);
        send(f.fetch("https://app.example.com/c"));
    }

    // ---- address classification ----

    #[test]
    fn ip_classification_table() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "64:ff9b::7f00:1",    // NAT64 of 127.0.0.1
            "64:ff9b::c0a8:101",  // NAT64 of 192.168.1.1
            "64:ff9b:1::1",       // local-use NAT64
            "100::1",             // discard-only
            "2001::1",            // Teredo
            "2001:2::1",          // benchmarking
            "2001:db8::1",        // documentation
            "2002:a00:1::1",      // 6to4 of 10.0.0.1
            "2002:5db8:d822::1",  // 6to4 of a public address: 6to4 is refused wholesale
            "3fff::1",            // documentation (RFC 9637)
            "5f00::1",            // SRv6 SIDs
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "4000::1", // unallocated
        ];
        for s in forbidden {
            assert!(is_forbidden_ip(ip(s)), "{s} should be forbidden");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1", // just past 2001::/23
            "::ffff:8.8.8.8",
            "64:ff9b::808:808", // NAT64 of 8.8.8.8
        ];
        for s in allowed {
            assert!(!is_forbidden_ip(ip(s)), "{s} should be allowed");
        }
    }

    // ---- URL form ----

    #[test]
    fn url_form_checks() {
        assert!(is_cimd_client_id(
            "https://app.example.com/oauth/client.json"
        ));
        assert!(is_cimd_client_id("https://app.example.com:8443/c"));
        assert!(is_cimd_client_id("https://app.example.com/c?v=1"));
        let refused = [
            ("http://app.example.com/c", "scheme must be https"),
            (
                "https://app.example.com/c#frag",
                "must not contain a fragment",
            ),
            ("https://app.example.com/c#", "must not contain a fragment"),
            (
                "https://user:pw@app.example.com/c",
                "must not contain user info",
            ),
            (
                "https://user@app.example.com/c",
                "must not contain user info",
            ),
            ("https://app.example.com/", "must have a path"),
            ("https://app.example.com", "must have a path"),
            ("https://app.example.com/?x=1", "must have a path"),
            (
                "https://app.example.com/a/../c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            (
                "https://app.example.com/./c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            (
                "https://APP.example.com/c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            (
                "https://app.example.com:443/c",
                "must be in normalized form (no dot segments, lower-case host, no default port)",
            ),
            ("app.example.com/c", "not a valid url"),
            ("urn:example:client", "no host"),
            ("my-client-123", "not a valid url"),
        ];
        for (u, why) in refused {
            assert_eq!(check_url(u, false).unwrap_err(), why, "{u}");
            assert!(!is_cimd_client_id(u), "{u}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_CLIENT_ID_LEN));
        assert_eq!(check_url(&long, false).unwrap_err(), "too long");
    }

    #[test]
    fn accepts_applies_dangerous_mode() {
        let strict = CimdFetcher::new(&cfg(false));
        let loose = CimdFetcher::new(&cfg(true));
        for u in [
            "http://127.0.0.1:8080/c",
            "http://localhost:1/c",
            "http://[::1]:2/c",
            "http://a.localhost/c",
        ] {
            assert!(!strict.accepts(u), "{u}");
            assert!(loose.accepts(u), "{u}");
        }
        assert!(!loose.accepts("http://app.example.com/c"));
        assert!(!loose.accepts("http://10.0.0.1/c"));
        assert!(strict.accepts("https://app.example.com/c"));
        assert!(loose.accepts("https://app.example.com/c"));
    }

    // ---- SSRF refusals before any connection ----

    #[tokio::test]
    async fn forbidden_ip_literals_refused() {
        init_tls();
        let f = CimdFetcher::new(&cfg(false));
        for (u, addr) in [
            ("https://169.254.169.254/x", "169.254.169.254"),
            ("https://127.0.0.1/x", "127.0.0.1"),
            ("https://10.0.0.1/x", "10.0.0.1"),
            ("https://[::1]/x", "::1"),
            ("https://[::ffff:a9fe:a9fe]/x", "::ffff:169.254.169.254"),
            ("https://[fd00::1]/x", "fd00::1"),
        ] {
            assert!(f.accepts(u), "{u} has a valid form");
            match f.fetch(u).await {
                Err(CimdError::ForbiddenAddress(got)) => assert_eq!(got, ip(addr), "{u}"),
                other => panic!("{u}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn dangerous_mode_still_refuses_non_loopback_special_addresses() {
        init_tls();
        let f = CimdFetcher::new(&cfg(true));
        for u in [
            "https://169.254.169.254/x",
            "https://10.0.0.1/x",
            "https://[fe80::1]/x",
        ] {
            assert!(
                matches!(f.fetch(u).await, Err(CimdError::ForbiddenAddress(_))),
                "{u}"
            );
        }
    }

    #[tokio::test]
    async fn localhost_name_refused_by_resolution() {
        init_tls();
        let f = CimdFetcher::new(&cfg(false));
        match f.fetch("https://localhost/client.json").await {
            Err(CimdError::ForbiddenAddress(a)) => assert!(a.is_loopback(), "{a}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn any_forbidden_resolved_address_refuses() {
        init_tls();
        let public: &[IpAddr] = &[ip("93.184.216.34"), ip("10.0.0.1")];
        let f = CimdFetcher::with_test_hosts(
            &cfg(false),
            &[("mixed.example", public), ("empty.example", &[])],
        );
        assert!(matches!(
            f.fetch("https://mixed.example/c").await,
            Err(CimdError::ForbiddenAddress(a)) if a == ip("10.0.0.1")
        ));
        assert!(matches!(
            f.fetch("https://empty.example/c").await,
            Err(CimdError::Resolve)
        ));
    }

    #[tokio::test]
    async fn url_errors_and_disabled() {
        init_tls();
        let f = CimdFetcher::new(&cfg(false));
        assert!(matches!(
            f.fetch("http://app.example.com/c").await,
            Err(CimdError::NotAllowedUrl(_))
        ));
        assert!(matches!(
            f.fetch("https://app.example.com/").await,
            Err(CimdError::NotAllowedUrl(_))
        ));
        let off = CimdFetcher::new(&CimdConfig {
            enabled: false,
            ..cfg(false)
        });
        assert!(!off.enabled());
        assert!(matches!(
            off.fetch("https://app.example.com/c").await,
            Err(CimdError::Disabled)
        ));
    }

    // ---- a minimal HTTP/1.1 server for the fetch tests ----

    type Handler = dyn Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync;

    struct TestServer {
        base: String,
        hits: Arc<AtomicUsize>,
    }

    /// Serves `handler(path, base_url)`; `None` holds the connection open without answering.
    async fn serve(
        bind: &str,
        handler: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind((bind, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let hits = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (h, b) = (hits.clone(), base.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (handler, hits, base) = (handler.clone(), h.clone(), b.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let req = String::from_utf8_lossy(&buf);
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    match handler(&path, &base) {
                        Some(resp) => {
                            let _ = sock.write_all(&resp).await;
                            let _ = sock.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        TestServer { base, hits }
    }

    fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.push_str(body);
        r.into_bytes()
    }

    fn json_ok(body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(extra);
        response("200 OK", &h, body)
    }

    fn doc(client_id: &str) -> Value {
        serde_json::json!({
            "client_id": client_id,
            "client_name": "Example MCP Client",
            "redirect_uris": ["http://127.0.0.1:33418/callback", "https://app.example.com/cb"],
            "scope": "mcp:tools",
            "logo_uri": "https://app.example.com/logo.png",
        })
    }

    /// A server whose every path answers with `f(url_of_that_path)`.
    async fn serve_docs(f: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static) -> TestServer {
        serve("127.0.0.1", move |path, base| f(&format!("{base}{path}"))).await
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
    async fn cache_honours_max_age_and_no_store() {
        init_tls();
        let s = serve_docs(|url| {
            let cc = if url.ends_with("/cached") {
                "public, max-age=60"
            } else {
                "no-store"
            };
            Some(json_ok(&doc(url).to_string(), &[("Cache-Control", cc)]))
        })
        .await;
        let f = CimdFetcher::new(&cfg(true));
        let cached = format!("{}/cached", s.base);
        f.fetch(&cached).await.expect("first");
        f.clone().fetch(&cached).await.expect("second");
        assert_eq!(
            s.hits.load(Ordering::SeqCst),
            1,
            "second fetch served from cache"
        );

        let uncached = format!("{}/uncached", s.base);
        f.fetch(&uncached).await.expect("first");
        f.fetch(&uncached).await.expect("second");
        assert_eq!(
            s.hits.load(Ordering::SeqCst),
            3,
            "no-store fetched every time"
        );
    }

    #[tokio::test]
    async fn failures_are_remembered_briefly() {
        init_tls();
        let s = serve_docs(|_| {
            Some(response(
                "500 Internal Server Error",
                &[("Cache-Control", "max-age=60")],
                "",
            ))
        })
        .await;
        // Attack: naming a failing document URL over and over made one fetch per lookup.
        let f = CimdFetcher::new(&cfg(true));
        let u = format!("{}/c", s.base);
        for _ in 0..20 {
            assert!(matches!(f.fetch(&u).await, Err(CimdError::Status(500))));
        }
        assert_eq!(
            s.hits.load(Ordering::SeqCst),
            1,
            "one fetch per failure_cache_secs"
        );
        assert!(f.is_cached(&u));
        // Another URL is fetched on its own; with failure_cache_secs = 0 nothing is remembered.
        let other = format!("{}/d", s.base);
        assert!(!f.is_cached(&other));
        assert!(f.fetch(&other).await.is_err());
        assert_eq!(s.hits.load(Ordering::SeqCst), 2);
        let forgetful = CimdFetcher::new(&CimdConfig {
            failure_cache_secs: 0,
            ..cfg(true)
        });
        assert!(forgetful.fetch(&u).await.is_err());
        assert!(forgetful.fetch(&u).await.is_err());
        assert_eq!(s.hits.load(Ordering::SeqCst), 4);
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
        let slow = serve("127.0.0.1", |_, _| None).await;
        let port = slow.base.rsplit(':').next().expect("port").to_owned();
        let lo: &[IpAddr] = &[ip("127.0.0.1")];
        let names: Vec<String> = (0..5).map(|i| format!("slow{i}.localhost")).collect();
        let hosts: Vec<(&str, &[IpAddr])> = names.iter().map(|n| (n.as_str(), lo)).collect();
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
        for n in &names[..4] {
            for i in 0..MAX_FETCHES_PER_HOST {
                let (f, u) = (f.clone(), format!("http://{n}:{port}/held{i}"));
                held.push(tokio::spawn(async move { f.fetch(&u).await }));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A fifth fetch to a busy host is refused at once, not queued behind it.
        let started = Instant::now();
        let r = f.fetch(&format!("http://{}:{port}/fifth", names[0])).await;
        assert!(matches!(r, Err(CimdError::Busy)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Another host waits for a slot no longer than queue_wait_ms, then gives up.
        let started = Instant::now();
        let r = f.fetch(&format!("http://{}:{port}/queued", names[4])).await;
        assert!(matches!(r, Err(CimdError::Busy)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Busy is about this server, not the document: not remembered.
        assert!(!f.is_cached(&format!("http://{}:{port}/queued", names[4])));
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
        let slow = serve("127.0.0.1", |_, _| None).await;
        let sport = slow.base.rsplit(':').next().expect("port").to_owned();
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
        let mut hosts: Vec<(&str, &[IpAddr])> = names.iter().map(|n| (n.as_str(), lo)).collect();
        hosts.push(("late.localhost", lo));
        let holder = CimdConfig {
            timeout_ms: 1500,
            queue_wait_ms: 5000,
            ..cfg(true)
        };
        let f = CimdFetcher::with_test_hosts(&holder, &hosts);
        let mut held = Vec::new();
        for n in &names {
            for i in 0..MAX_FETCHES_PER_HOST {
                let (f, u) = (f.clone(), format!("http://{n}:{sport}/held{i}"));
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

    // ---- document validation ----

    const URL: &str = "https://app.example.com/client.json";

    fn validate(v: Value) -> Result<ClientMetadataDocument, CimdError> {
        parse_document(URL, v.to_string().as_bytes())
    }

    fn with(key: &str, value: Value) -> Value {
        let mut d = doc(URL);
        d[key] = value;
        d
    }

    fn without(key: &str) -> Value {
        let mut d = doc(URL);
        d.as_object_mut().expect("object").remove(key);
        d
    }

    fn invalid(r: Result<ClientMetadataDocument, CimdError>) -> String {
        match r {
            Err(CimdError::InvalidDocument(m)) => m,
            other => panic!("expected InvalidDocument, got {other:?}"),
        }
    }

    #[test]
    fn documents_are_open_registrations_with_bounded_fields() {
        // A document cannot make its client a machine client.
        let d = validate(with(
            "grant_types",
            serde_json::json!(["authorization_code", "client_credentials", "refresh_token"]),
        ))
        .expect("ok");
        assert_eq!(d.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(
            invalid(validate(with("client_name", "n".repeat(201).into()))),
            "client_name must be at most 200 printable characters"
        );
        assert!(validate(with("client_name", "n".repeat(200).into())).is_ok());
        let many: Vec<String> = (0..21)
            .map(|i| format!("https://app.example.com/cb{i}"))
            .collect();
        assert_eq!(
            invalid(validate(with("redirect_uris", serde_json::json!(many)))),
            "at most 20 redirect_uris"
        );
        let long = format!("https://app.example.com/{}", "p".repeat(2048));
        assert_eq!(
            invalid(validate(with(
                "redirect_uris",
                serde_json::json!([long.clone()])
            ))),
            "redirect_uris must be at most 2048 bytes"
        );
        assert_eq!(
            invalid(validate(with("logo_uri", long.into()))),
            "logo_uri must be at most 2048 bytes"
        );
        assert_eq!(
            invalid(validate(with("scope", "a ".repeat(600).into()))),
            "scope must be at most 1024 bytes"
        );
    }

    #[test]
    fn document_validation() {
        assert!(validate(doc(URL)).is_ok());
        assert!(matches!(
            parse_document(URL, b"not json"),
            Err(CimdError::InvalidDocument(_))
        ));
        assert_eq!(invalid(parse_document(URL, b"[1]")), "not a json object");
        assert_eq!(
            invalid(validate(without("client_id"))),
            "client_id is missing"
        );
        assert!(matches!(
            validate(with(
                "client_id",
                "https://app.example.com/client.json?".into()
            )),
            Err(CimdError::ClientIdMismatch)
        ));
        assert!(matches!(
            validate(with(
                "client_id",
                "https://APP.example.com/client.json".into()
            )),
            Err(CimdError::ClientIdMismatch)
        ));
        assert_eq!(
            invalid(validate(without("client_name"))),
            "client_name is missing"
        );
        assert_eq!(
            invalid(validate(with("client_name", "  ".into()))),
            "client_name is missing"
        );
        assert_eq!(
            invalid(validate(with("client_name", 5.into()))),
            "client_name must be a string"
        );
        assert_eq!(
            invalid(validate(without("redirect_uris"))),
            "redirect_uris is missing or empty"
        );
        assert_eq!(
            invalid(validate(with("redirect_uris", serde_json::json!([])))),
            "redirect_uris is missing or empty"
        );
        assert_eq!(
            invalid(validate(with(
                "redirect_uris",
                "https://a.example/cb".into()
            ))),
            "redirect_uris must be an array of strings"
        );
        for bad in [
            "https://a.example/cb#f",
            "http://a.example/cb",
            "/cb",
            "javascript:alert(1)",
            "https://u@a.example/cb",
        ] {
            let m = invalid(validate(with("redirect_uris", serde_json::json!([bad]))));
            assert!(m.starts_with("redirect_uris: "), "{bad}: {m}");
        }
        assert!(
            validate(with(
                "redirect_uris",
                serde_json::json!(["http://localhost:9/cb"])
            ))
            .is_ok()
        );
        assert_eq!(
            invalid(validate(with("client_secret", "s".into()))),
            "client_secret must not be present"
        );
        assert_eq!(
            invalid(validate(with("client_secret_expires_at", 0.into()))),
            "client_secret_expires_at must not be present"
        );
        assert_eq!(
            invalid(validate(with(
                "grant_types",
                serde_json::json!(["client_credentials"])
            ))),
            "grant_types must include authorization_code"
        );
        assert_eq!(
            invalid(validate(with(
                "response_types",
                serde_json::json!(["token"])
            ))),
            "response_types must include code"
        );
        assert_eq!(
            invalid(validate(with("logo_uri", "http://a.example/l.png".into()))),
            "logo_uri must be an https url"
        );
        assert_eq!(
            invalid(validate(with("client_uri", "javascript:alert(1)".into()))),
            "client_uri must be an https url"
        );
        assert!(
            validate(with("logo_uri", Value::Null))
                .expect("null is absent")
                .logo_uri
                .is_none()
        );

        let d = validate(with(
            "grant_types",
            serde_json::json!(["authorization_code", "refresh_token"]),
        ))
        .expect("ok");
        assert_eq!(d.grant_types, ["authorization_code", "refresh_token"]);
        let d = validate(with(
            "redirect_uris",
            serde_json::json!(["http://127.0.0.1/cb", "http://localhost:1/cb"]),
        ))
        .expect("ok");
        assert!(d.has_only_loopback_redirects());
    }

    #[test]
    fn only_none_auth_method() {
        assert_eq!(
            validate(with("token_endpoint_auth_method", "none".into()))
                .expect("ok")
                .token_endpoint_auth_method,
            "none"
        );
        for m in [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
        ] {
            match validate(with("token_endpoint_auth_method", m.into())) {
                Err(e @ CimdError::UnsupportedAuthMethod(_)) => {
                    assert!(e.to_string().contains(m), "{e}");
                }
                other => panic!("{m}: {other:?}"),
            }
        }
        match validate(with("token_endpoint_auth_method", "<script>".into())) {
            Err(CimdError::UnsupportedAuthMethod(shown)) => assert_eq!(shown, "(invalid)"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_messages_are_lowercase() {
        let errors = [
            CimdError::Disabled,
            CimdError::NotAllowedUrl("x"),
            CimdError::ForbiddenAddress(ip("10.0.0.1")),
            CimdError::Resolve,
            CimdError::Timeout,
            CimdError::Fetch("request failed".into()),
            CimdError::Status(500),
            CimdError::Redirect,
            CimdError::TooLarge,
            CimdError::NotJson,
            CimdError::InvalidDocument("x".into()),
            CimdError::ClientIdMismatch,
            CimdError::UnsupportedAuthMethod("x".into()),
            CimdError::Busy,
            CimdError::RateLimited(3),
            CimdError::Capacity,
        ];
        for e in errors {
            let m = e.to_string();
            assert_eq!(m, m.to_lowercase(), "{m}");
        }
    }

    // ---- caching rules ----

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn cache_ttl_rules() {
        let cap = Duration::from_secs(3600);
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .expect("date")
            .to_utc();
        let secs = |pairs: &[(&'static str, &str)], cap: Duration| {
            cache_ttl(&headers(pairs), cap, now).map(|d| d.as_secs())
        };
        assert_eq!(secs(&[], cap), Some(300));
        assert_eq!(secs(&[], Duration::from_secs(60)), Some(60));
        assert_eq!(secs(&[("cache-control", "max-age=60")], cap), Some(60));
        assert_eq!(
            secs(&[("cache-control", "public, max-age=\"120\"")], cap),
            Some(120)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=999999")], cap),
            Some(3600)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=60"), ("age", "20")], cap),
            Some(40)
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=60"), ("age", "90")], cap),
            None
        );
        assert_eq!(secs(&[("cache-control", "max-age=0")], cap), None);
        assert_eq!(secs(&[("cache-control", "max-age=abc")], cap), None);
        assert_eq!(secs(&[("cache-control", "no-store")], cap), None);
        assert_eq!(
            secs(&[("cache-control", "max-age=60, no-cache")], cap),
            None
        );
        assert_eq!(
            secs(
                &[
                    ("cache-control", "max-age=60"),
                    ("cache-control", "No-Store")
                ],
                cap
            ),
            None
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=60"), ("expires", "0")], cap),
            Some(60)
        );
        assert_eq!(secs(&[("pragma", "no-cache")], cap), None);
        assert_eq!(secs(&[("expires", "0")], cap), None);
        assert_eq!(
            secs(&[("expires", "Wed, 21 Oct 2015 07:38:00 GMT")], cap),
            Some(600)
        );
        assert_eq!(
            secs(
                &[
                    ("expires", "Wed, 21 Oct 2015 08:00:00 GMT"),
                    ("date", "Wed, 21 Oct 2015 07:50:00 GMT")
                ],
                cap
            ),
            Some(600)
        );
        assert_eq!(
            secs(&[("expires", "Wed, 21 Oct 2015 07:00:00 GMT")], cap),
            None
        );
        assert_eq!(
            secs(&[("cache-control", "max-age=60")], Duration::ZERO),
            None
        );
    }

    #[test]
    fn cache_expires_and_evicts_oldest() {
        let d = validate(doc(URL)).expect("doc");
        let t0 = Instant::now();
        let mut c = Cache::new(3);
        c.insert("a".into(), d.clone(), Duration::from_secs(10), t0);
        assert!(c.get("a", t0 + Duration::from_secs(9)).is_some());
        assert!(
            c.get("a", t0 + Duration::from_secs(10)).is_none(),
            "expired"
        );
        assert!(c.entries.is_empty(), "expired entry dropped");

        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            c.insert(
                k.into(),
                d.clone(),
                Duration::from_secs(100),
                t0 + Duration::from_secs(i as u64),
            );
        }
        c.insert(
            "d".into(),
            d.clone(),
            Duration::from_secs(100),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(c.entries.len(), 3);
        assert!(
            c.get("a", t0 + Duration::from_secs(6)).is_none(),
            "oldest evicted"
        );
        assert!(c.get("b", t0 + Duration::from_secs(6)).is_some());
        // Expired entries go before live ones: "short" has expired when "e" arrives, so it is
        // dropped and the older but live "c" stays.
        c.insert(
            "short".into(),
            d.clone(),
            Duration::from_secs(1),
            t0 + Duration::from_secs(6),
        );
        assert!(
            c.get("b", t0 + Duration::from_secs(6)).is_none(),
            "oldest evicted"
        );
        c.insert(
            "e".into(),
            d.clone(),
            Duration::from_secs(100),
            t0 + Duration::from_secs(20),
        );
        assert!(!c.entries.contains_key("short"));
        for k in ["c", "d", "e"] {
            assert!(c.get(k, t0 + Duration::from_secs(20)).is_some(), "{k}");
        }
        assert_eq!(c.entries.len(), 3);
    }
}
