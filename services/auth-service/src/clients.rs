//! The client registry: a short-lived in-process cache in front of Postgres (so that client
//! authentication on the hot path costs a hash, not a query), Client ID Metadata Documents, and
//! client authentication at the token, revocation and introspection endpoints.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header;
use base64::Engine as _;
use chrono::Utc;

use crate::cimd::CimdFetcher;
use crate::domain::token::hash_matches;
use crate::error::{OAuthError, StoreError};
use crate::store::clients::{Client, ClientSource, ClientStore};

/// How long a client stays cached. Changes are also fanned out to every replica at once.
const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 100_000;
/// How long this replica trusts that a metadata document it stored is still the stored row
/// (a sweep on any replica also drops the memory at once through the client-changed fan-out).
const STORED_RECHECK: Duration = Duration::from_secs(600);
/// Metadata documents remembered as stored, at most.
const STORED_MAX: usize = 10_000;

type CachedClient = (Arc<Client>, Instant);
/// A stored document's digest and when it was last checked against Postgres.
type StoredDigest = ([u8; 32], Instant);

/// Clients by id, cached.
#[derive(Clone)]
pub struct ClientRegistry {
    store: Arc<dyn ClientStore>,
    cimd: CimdFetcher,
    cache: Arc<RwLock<HashMap<String, CachedClient>>>,
    used: Arc<Mutex<HashSet<String>>>,
    /// Metadata documents known to be in Postgres as they are now: digest and when it was
    /// checked. A lookup whose document has that digest writes nothing.
    stored: Arc<Mutex<HashMap<String, StoredDigest>>>,
    /// The per-IP budget of document fetches (`rate_limit.cimd_fetch`), when limits are on.
    fetch_limit: Option<(crate::ratelimit::RateLimiter, u64)>,
    /// `cimd.max_clients`.
    max_cimd_clients: i64,
}

impl ClientRegistry {
    pub fn new(store: Arc<dyn ClientStore>, cimd: CimdFetcher) -> Self {
        Self {
            store,
            cimd,
            cache: Arc::default(),
            used: Arc::default(),
            stored: Arc::default(),
            fetch_limit: None,
            max_cimd_clients: i64::MAX,
        }
    }

    /// Counts document fetches (not cache hits) per client IP against `limit` per window, and
    /// stores at most `max_cimd_clients` document clients.
    pub fn with_cimd_limits(
        mut self,
        limiter: Option<(crate::ratelimit::RateLimiter, u64)>,
        max_cimd_clients: i64,
    ) -> Self {
        self.fetch_limit = limiter;
        self.max_cimd_clients = max_cimd_clients;
        self
    }

    pub fn store(&self) -> &dyn ClientStore {
        &*self.store
    }

    /// Finds a client: cache, then Postgres, then (for an https `client_id`) its metadata document.
    /// A document fetch is not charged to anyone: for lookups of a flow already under way.
    pub async fn get(&self, client_id: &str) -> Result<Option<Arc<Client>>, LookupError> {
        self.get_from(client_id, None).await
    }

    /// [`ClientRegistry::get`] on behalf of a request from `ip`: a document that has to be
    /// fetched counts against that address's `rate_limit.cimd_fetch` budget.
    pub async fn get_from(
        &self,
        client_id: &str,
        ip: Option<&str>,
    ) -> Result<Option<Arc<Client>>, LookupError> {
        let is_document = self.cimd.accepts(client_id);
        // A metadata document is cached by the fetcher as its HTTP caching headers say; caching
        // it here too would stretch a short max-age or ignore no-store.
        if !is_document
            && let Some((c, at)) = self.cache.read().expect("client cache").get(client_id)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(c.clone()));
        }
        let client = if is_document {
            // The document is the registration; the fetcher honours its HTTP caching.
            if let Some(ip) = ip {
                self.charge_fetch(client_id, ip).await?;
            }
            let doc = self
                .cimd
                .fetch(client_id)
                .await
                .map_err(LookupError::Cimd)?;
            let c = Client {
                client_id: doc.client_id.clone(),
                source: ClientSource::Cimd,
                client_name: Some(doc.client_name.clone()),
                redirect_uris: doc.redirect_uris.clone(),
                grant_types: doc.grant_types.clone(),
                response_types: doc.response_types.clone(),
                token_endpoint_auth_method: doc.token_endpoint_auth_method.clone(),
                scope: doc.scope.clone(),
                secret_sha256: None,
                registration_token_sha256: None,
                metadata: doc.raw.clone(),
                created_at: Utc::now(),
            };
            // Grants and consents reference clients: keep a row for every CIMD client that was
            // used, written only when the document is new or changed.
            self.store_document(&c).await?;
            Some(c)
        } else {
            self.store
                .get(client_id)
                .await
                .map_err(LookupError::Store)?
        };
        let Some(client) = client else {
            return Ok(None);
        };
        let client = Arc::new(client);
        let mut cache = self.cache.write().expect("client cache");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(client_id.to_owned(), (client.clone(), Instant::now()));
        Ok(Some(client))
    }

    /// Drops a client from this replica's cache (after a change, or a fan-out event).
    pub fn invalidate(&self, client_id: &str) {
        self.cache.write().expect("client cache").remove(client_id);
        self.stored
            .lock()
            .expect("stored documents")
            .remove(client_id);
    }

    /// Counts a fetch `client_id` is about to cost against `ip`'s budget; nothing when the
    /// fetcher would answer from memory.
    async fn charge_fetch(&self, client_id: &str, ip: &str) -> Result<(), LookupError> {
        let Some((limiter, limit)) = &self.fetch_limit else {
            return Ok(());
        };
        if !self.cimd.enabled() || self.cimd.is_cached(client_id) {
            return Ok(());
        }
        let now = Utc::now().timestamp() as u64;
        match limiter.check("cimd_fetch", ip, *limit, now).await {
            crate::ratelimit::Verdict::Allow => Ok(()),
            crate::ratelimit::Verdict::Deny(retry) => {
                metrics::counter!("mcpauth_rate_limited_total", "endpoint" => "cimd_fetch")
                    .increment(1);
                tracing::info!(ip, "cimd: fetch budget of this address used up");
                Err(LookupError::Cimd(crate::cimd::CimdError::RateLimited(
                    retry,
                )))
            }
        }
    }

    /// Writes a document client's row unless this replica knows it is stored unchanged.
    async fn store_document(&self, c: &Client) -> Result<(), LookupError> {
        let digest = document_digest(&c.metadata);
        let known = self
            .stored
            .lock()
            .expect("stored documents")
            .get(&c.client_id)
            .is_some_and(|(d, at)| *d == digest && at.elapsed() < STORED_RECHECK);
        if known {
            return Ok(());
        }
        match self
            .store
            .store_cimd(c, self.max_cimd_clients)
            .await
            .map_err(LookupError::Store)?
        {
            crate::store::clients::CimdWrite::Full => {
                tracing::warn!(
                    max = self.max_cimd_clients,
                    "cimd: cimd.max_clients document clients are stored; refusing a new one"
                );
                metrics::counter!("mcpauth_cimd_clients_refused_total").increment(1);
                return Err(LookupError::Cimd(crate::cimd::CimdError::Capacity));
            }
            crate::store::clients::CimdWrite::Inserted
            | crate::store::clients::CimdWrite::Updated => {
                metrics::counter!("mcpauth_cimd_client_writes_total").increment(1);
            }
            crate::store::clients::CimdWrite::Unchanged => {}
        }
        let mut stored = self.stored.lock().expect("stored documents");
        if stored.len() >= STORED_MAX {
            stored.clear();
        }
        stored.insert(c.client_id.clone(), (digest, Instant::now()));
        Ok(())
    }

    /// Notes that a client was used; written to Postgres in batches by `flush_used`.
    pub fn mark_used(&self, client_id: &str) {
        let mut used = self.used.lock().expect("used set");
        if !used.contains(client_id) {
            used.insert(client_id.to_owned());
        }
    }

    pub async fn flush_used(&self) -> Result<(), StoreError> {
        let ids: Vec<String> = std::mem::take(&mut *self.used.lock().expect("used set"))
            .into_iter()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.store.touch(&ids).await
    }

    /// Authenticates the client of a token, revocation or introspection request (RFC 6749
    /// §2.3: `client_secret_basic`, `client_secret_post`, or `none` for public clients).
    /// `ip` (the request's client address) pays for a metadata document fetch.
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
        form: &HashMap<String, String>,
        ip: Option<&str>,
    ) -> Result<Arc<Client>, OAuthError> {
        let basic = basic_credentials(req)?;
        let form_id = form.get("client_id").map(String::as_str);
        let form_secret = form.get("client_secret").map(String::as_str);
        let (client_id, secret, used_basic) = match (&basic, form_secret) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "use exactly one client authentication method",
                ));
            }
            (Some((id, secret)), None) => {
                if form_id.is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_request(
                        "client_id does not match the authenticated client",
                    ));
                }
                (id.as_str(), Some(secret.as_str()), true)
            }
            (None, secret) => (
                form_id.ok_or_else(|| {
                    OAuthError::invalid_client("client authentication is required")
                })?,
                secret,
                false,
            ),
        };
        let fail = || {
            let e = OAuthError::invalid_client("client authentication failed");
            if used_basic {
                e.with_basic_challenge()
            } else {
                e
            }
        };
        let client = match self
            .get_from(client_id, Some(ip.unwrap_or("unknown")))
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return Err(fail()),
            Err(LookupError::Cimd(crate::cimd::CimdError::RateLimited(retry))) => {
                return Err(OAuthError::rate_limited(retry));
            }
            Err(LookupError::Cimd(e)) => {
                return Err(OAuthError::invalid_client(format!(
                    "client metadata document: {e}"
                )));
            }
            Err(LookupError::Store(e)) => return Err(e.into()),
        };
        match (&client.secret_sha256, secret) {
            // Public client: identified, not authenticated; presenting a secret is an error.
            (None, None) if client.is_public() => Ok(client),
            (Some(stored), Some(secret)) if hash_matches(secret, stored) => Ok(client),
            _ => Err(fail()),
        }
    }
}

/// SHA-256 of a document as stored (its JSON text).
fn document_digest(metadata: &serde_json::Value) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, metadata.to_string().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why a client could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Store(StoreError),
    #[error("{0}")]
    Cimd(crate::cimd::CimdError),
}

/// `Authorization: Basic` credentials, form-urlencoded inside (RFC 6749 §2.3.1).
fn basic_credentials(req: &HttpRequest) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials").with_basic_challenge();
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Err(bad());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (unescape(id), unescape(secret));
    if crate::domain::input::has_control(&id) || crate::domain::input::has_control(&secret) {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}
