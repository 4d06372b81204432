//! What the fetcher remembers: good documents for as long as their HTTP caching headers allow
//! (capped by `cimd.max_cache_secs`), and failures for `cimd.failure_cache_secs`, both bounded in
//! size. (Writing a document client to Postgres only when its document changed, and sweeping
//! unused ones, are the client registry's: `crate::clients`, `crate::background`.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap};

use super::{CimdError, CimdFetcher, ClientMetadataDocument};

/// Documents kept in memory at most; the oldest entry is evicted first.
pub(super) const CACHE_CAPACITY: usize = 1000;
/// Lifetime of a cached document whose response carries no caching headers.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

impl CimdFetcher {
    pub(super) fn remembered_failure(&self, client_id: &str, now: Instant) -> Option<CimdError> {
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

    pub(super) fn remember_failure(&self, client_id: &str, e: &CimdError) {
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

    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the map inconsistent; keep serving.
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a response may be cached (RFC 9111), at most `cap`; `None` = do not cache.
/// `no-store`/`no-cache` forbid caching; `max-age` (less `Age`) wins over `Expires`; without
/// either, [`DEFAULT_TTL`].
pub(super) fn cache_ttl(
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

/// In-memory document cache keyed by exact URL, bounded; evicts expired entries, then the
/// oldest inserted.
pub(super) struct Cache {
    entries: HashMap<String, CacheEntry>,
    capacity: usize,
}

struct CacheEntry {
    doc: ClientMetadataDocument,
    inserted: Instant,
    expires: Instant,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub(super) fn get(&mut self, key: &str, now: Instant) -> Option<ClientMetadataDocument> {
        match self.entries.get(key) {
            Some(e) if e.expires > now => Some(e.doc.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn insert(
        &mut self,
        key: String,
        doc: ClientMetadataDocument,
        ttl: Duration,
        now: Instant,
    ) {
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
    use crate::cimd::test_support::{
        URL, cfg, doc, init_tls, json_ok, response, serve_docs, validate,
    };
    use crate::config::CimdConfig;
    use std::sync::atomic::Ordering;

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
