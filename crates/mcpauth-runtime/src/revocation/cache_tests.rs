use super::*;

#[derive(Debug, Clone, PartialEq)]
struct Tok {
    jti: String,
    grant: String,
    client: String,
    sub: String,
    exp: i64,
}

#[derive(Debug, Clone, PartialEq)]
enum Refused {
    Inactive,
    Expired,
    Down,
}

impl Revocable for Tok {
    fn revocation_ids(&self) -> RevocationIds<'_> {
        RevocationIds {
            token_id: Some(&self.jti),
            grant_id: Some(&self.grant),
            client_id: &self.client,
            subject: &self.sub,
        }
    }
    fn expires_at(&self) -> i64 {
        self.exp
    }
}

impl Refusal for Refused {
    fn expired() -> Self {
        Refused::Expired
    }
    fn is_transient(&self) -> bool {
        *self == Refused::Down
    }
}

fn tok(jti: &str, grant: &str, client: &str) -> Tok {
    Tok {
        jti: jti.into(),
        grant: grant.into(),
        client: client.into(),
        sub: format!("user-of-{grant}"),
        exp: now_secs() + 60,
    }
}

type Cache = VerificationCache<Tok, Refused>;

fn cache(max: usize) -> Cache {
    VerificationCache::new(Duration::from_secs(60), max)
}

/// Caches `result` for `token` through a fill started now.
fn put(c: &Cache, token: &str, result: Result<Tok, Refused>) -> bool {
    match c.lookup(&token_key(token)) {
        Lookup::Miss(fill) => fill.store(&result),
        Lookup::Hit(_) => panic!("{token} already cached"),
    }
}

fn hit(c: &Cache, token: &str) -> Option<Result<Tok, Refused>> {
    match c.lookup(&token_key(token)) {
        Lookup::Hit(r) => Some(r),
        Lookup::Miss(_) => None,
    }
}

fn revocation(scope: Scope, id: &str) -> Revocation {
    Revocation {
        scope,
        id: id.into(),
    }
}

#[test]
fn evicts_exactly_what_a_revocation_names_by_token_grant_client_and_subject() {
    let c = cache(100);
    put(&c, "a", Ok(tok("j1", "g1", "c1")));
    put(&c, "b", Ok(tok("j2", "g1", "c1")));
    put(&c, "d", Ok(tok("j3", "g2", "c1")));
    put(&c, "e", Ok(tok("j4", "g3", "c2")));
    c.evict(&revocation(Scope::Token, "j1"));
    assert!(hit(&c, "a").is_none());
    assert!(hit(&c, "b").is_some());
    c.evict(&revocation(Scope::Grant, "g1"));
    assert!(hit(&c, "b").is_none());
    assert!(hit(&c, "d").is_some());
    c.evict(&revocation(Scope::Client, "c1"));
    assert!(hit(&c, "d").is_none());
    assert!(hit(&c, "e").is_some());
    c.evict(&revocation(Scope::Subject, "user-of-g3"));
    assert!(c.is_empty());
    // The index holds nothing for tokens that are gone.
    assert_eq!(c.indexed_targets(), 0);
}

#[test]
fn eviction_by_token_touches_only_the_index_not_the_whole_cache() {
    // 20k cached tokens of one client: revoking one token or one grant removes exactly those
    // entries (through the index) and leaves the rest, including their index entries.
    let c = cache(30_000);
    for i in 0..20_000 {
        put(
            &c,
            &format!("t{i}"),
            Ok(tok(&format!("j{i}"), &format!("g{}", i / 2), "c")),
        );
    }
    let targets = c.indexed_targets();
    c.evict(&revocation(Scope::Token, "j7"));
    assert_eq!(c.len(), 19_999);
    assert!(hit(&c, "t7").is_none() && hit(&c, "t6").is_some());
    // j7's token target goes; its grant (g3, still holding t6) and the client stay.
    assert_eq!(c.indexed_targets(), targets - 1);
    c.evict(&revocation(Scope::Grant, "g3"));
    assert_eq!(c.len(), 19_998);
    assert!(hit(&c, "t6").is_none() && hit(&c, "t8").is_some());
}

#[test]
fn a_fill_started_before_a_covering_revocation_is_discarded() {
    let c = cache(10);
    let Lookup::Miss(fill) = c.lookup(&token_key("a")) else {
        panic!("empty cache")
    };
    // The revocation arrives while the introspection of "a" is in flight.
    c.evict(&revocation(Scope::Grant, "g1"));
    assert!(!fill.store(&Ok(tok("j1", "g1", "c"))));
    assert!(hit(&c, "a").is_none(), "the next verification re-checks");
    // A revocation that does not cover the result does not cost the fill.
    let Lookup::Miss(fill) = c.lookup(&token_key("b")) else {
        panic!()
    };
    c.evict(&revocation(Scope::Token, "other"));
    assert!(fill.store(&Ok(tok("j2", "g2", "c"))));
    assert!(hit(&c, "b").is_some());
    // Nor does it affect a refusal (revocation never makes a token valid).
    let Lookup::Miss(fill) = c.lookup(&token_key("x")) else {
        panic!()
    };
    c.evict(&revocation(Scope::Grant, "g1"));
    assert!(fill.store(&Err(Refused::Inactive)));
}

#[test]
fn a_fill_older_than_the_remembered_revocations_is_discarded() {
    let c = cache(10);
    let Lookup::Miss(fill) = c.lookup(&token_key("a")) else {
        panic!()
    };
    for i in 0..=RECENT_REVOCATIONS {
        c.evict(&revocation(Scope::Token, &format!("other{i}")));
    }
    assert!(!fill.store(&Ok(tok("j1", "g1", "c"))));
}

#[test]
fn a_fill_across_a_clear_or_a_lost_feed_is_discarded_and_nothing_is_cached_while_down() {
    let c = cache(10);
    let Lookup::Miss(fill) = c.lookup(&token_key("a")) else {
        panic!()
    };
    c.clear();
    assert!(!fill.store(&Ok(tok("j1", "g1", "c"))));
    put(&c, "b", Ok(tok("j2", "g2", "c")));
    c.set_live(false);
    assert!(c.is_empty());
    assert!(!put(&c, "b", Ok(tok("j2", "g2", "c"))));
    assert!(hit(&c, "b").is_none());
    c.set_live(true);
    assert!(put(&c, "b", Ok(tok("j2", "g2", "c"))));
    assert!(hit(&c, "b").is_some());
}

#[test]
fn bounded_oldest_first_transient_refusals_never_cached_expiry_answered() {
    let c = cache(5);
    for i in 0..50 {
        put(&c, &i.to_string(), Ok(tok(&format!("j{i}"), "g", "c")));
    }
    assert_eq!(c.len(), 5);
    assert!(hit(&c, "49").is_some() && hit(&c, "44").is_none());
    // Index entries of dropped tokens went with them: 5 jti + grant + client + subject.
    assert_eq!(c.indexed_targets(), 8);
    assert!(!put(&c, "x", Err(Refused::Down)));
    assert!(hit(&c, "x").is_none());
    let mut t = tok("j", "g", "c");
    t.exp = now_secs() - 1;
    put(&c, "old", Ok(t));
    assert_eq!(hit(&c, "old"), Some(Err(Refused::Expired)));
    // A zero TTL caches nothing.
    let off: Cache = VerificationCache::new(Duration::ZERO, 5);
    assert!(!put(&off, "a", Ok(tok("j", "g", "c"))));
}

#[test]
fn refills_of_one_token_do_not_grow_the_order_queue_without_bound() {
    let c = cache(4);
    for _ in 0..1000 {
        c.evict(&revocation(Scope::Token, "j"));
        put(&c, "a", Ok(tok("j", "g", "c")));
    }
    assert_eq!(c.len(), 1);
    assert!(c.inner.read().unwrap().order.len() <= 2 * 4 + 16 + 1);
}
