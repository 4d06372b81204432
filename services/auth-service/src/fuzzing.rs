//! Entry points for property tests and fuzz targets: each feeds one attacker-controlled input to
//! a parser the server runs before any authentication, and panics when an invariant of that
//! parser breaks (never on a refusal, which is the expected answer to junk). The proptests below
//! run them on generated input in every `make test`; `fuzz/` (docs/testing.md) runs the same
//! functions under libFuzzer for longer campaigns.
//!
//! Not an API: hidden from the docs and free to change with the parsers.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::domain::input::{first_control_character, has_control};
use crate::domain::token::{AccessClaims, KeyRing, OpaqueKind};

const KINDS: [OpaqueKind; 5] = [
    OpaqueKind::RefreshToken,
    OpaqueKind::AuthorizationCode,
    OpaqueKind::RegistrationToken,
    OpaqueKind::ClientSecret,
    OpaqueKind::DeviceCode,
];

/// The URL the CIMD target pretends to have fetched its document from.
pub const CIMD_URL: &str = "https://app.example/oauth/client.json";

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(KeyRing::ephemeral)
}

/// Claims of a token the target rings seal.
pub fn sample_claims(now: i64) -> AccessClaims {
    AccessClaims {
        jti: "00112233445566778899aabbccddeeff".into(),
        sub: "user-1".into(),
        client_id: "client-1".into(),
        grant_id: Some("grant-1".into()),
        aud: "https://mcp.example/mcp".into(),
        scope: "mcp:tools.read".into(),
        iat: now,
        exp: now + 3600,
        act: None,
    }
}

/// `/token`, `/authorize`, `/revoke`, `/introspect`, `/login`, `/consent`: the form/query
/// parser. Accepted input has no control character and no repeated name; whatever it accepts
/// survives a re-encoding unchanged.
pub fn form_params(raw: &[u8]) {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match crate::http::parse_params(raw) {
        Ok(map) => {
            assert_eq!(map.len(), pairs.len(), "a repeated name was accepted");
            for (k, v) in &map {
                assert!(
                    !has_control(k) && !has_control(v),
                    "control character accepted"
                );
            }
            let again = crate::http::parse_params(encode_form(&map).as_bytes())
                .expect("a re-encoded accepted form is accepted");
            assert_eq!(again, map);
        }
        Err(e) => {
            assert_eq!(e.error, "invalid_request");
            let mut seen = std::collections::HashSet::new();
            let refusable = pairs
                .iter()
                .any(|(k, v)| has_control(k) || has_control(v) || !seen.insert(k.as_str()));
            assert!(refusable, "a well-formed form was refused: {pairs:?}");
        }
    }
}

/// `application/x-www-form-urlencoded` serialization of `map`.
pub fn encode_form(map: &HashMap<String, String>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in map {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Bearer tokens and `token` parameters: no string that this server did not seal or mint opens
/// as an access token or verifies as an opaque token of any kind.
pub fn presented_token(input: &str) {
    let ring = ring();
    assert!(
        ring.open_access(input, 0).is_err(),
        "an access token was forged: {input:?}"
    );
    for kind in KINDS {
        assert!(
            ring.verify_opaque(kind, input).is_err(),
            "a {kind:?} was forged: {input:?}"
        );
    }
}

/// A sealed access token with one edit applied: if the text changed, it must not open.
pub fn tampered_access_token(edit: &Edit) {
    let ring = ring();
    let now = 1_700_000_000;
    let token = ring.seal_access(&sample_claims(now));
    assert_eq!(ring.open_access(&token, now), Ok(sample_claims(now)));
    let changed = edit.apply(&token);
    if changed != token {
        assert!(
            ring.open_access(&changed, now).is_err(),
            "an edited access token opened: {changed:?}"
        );
    }
}

/// A minted opaque token with one edit applied: it verifies only unchanged, and only as its own
/// kind.
pub fn tampered_opaque_token(kind_index: usize, edit: &Edit) {
    let ring = ring();
    let kind = KINDS[kind_index % KINDS.len()];
    let token = ring.mint_opaque(kind);
    let changed = edit.apply(&token);
    for other in KINDS {
        let ok = ring.verify_opaque(other, &changed).is_ok();
        assert_eq!(
            ok,
            other == kind && changed == token,
            "{other:?} check of a {kind:?}, edited to {changed:?}"
        );
    }
}

/// libFuzzer's form of the token targets: the bytes as a presented token, and (first byte
/// choosing the edit, the next ones where and what) as an edit of a sealed or minted token.
pub fn tokens(data: &[u8]) {
    presented_token(&String::from_utf8_lossy(data));
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let at = rest
        .iter()
        .take(2)
        .fold(0usize, |a, &b| (a << 8) | usize::from(b));
    let with = char::from(rest.get(2).copied().unwrap_or(b'A'));
    let edit = match op % 7 {
        0 => Edit::Replace { at, with },
        1 => Edit::Insert { at, with },
        2 => Edit::Delete { at },
        3 => Edit::Truncate { to: at },
        4 => Edit::Append(String::from_utf8_lossy(rest).into_owned()),
        5 => Edit::Swap { at },
        _ => Edit::ToUpper,
    };
    tampered_access_token(&edit);
    tampered_opaque_token(usize::from(op) / 7, &edit);
}

/// libFuzzer's form of the string targets: one input to each of the redirect URI, scope and
/// path checks.
pub fn strings(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    redirect_uri(&s);
    scope(&s);
    path(&s);
}

/// One edit of a string: what a client, a proxy or an attacker might do to a token.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Replace the character at `at` (modulo the length) with `with`.
    Replace {
        at: usize,
        with: char,
    },
    Insert {
        at: usize,
        with: char,
    },
    Delete {
        at: usize,
    },
    Truncate {
        to: usize,
    },
    Append(String),
    /// Swap the two characters at `at` and `at + 1`.
    Swap {
        at: usize,
    },
    ToUpper,
}

impl Edit {
    pub fn apply(&self, s: &str) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        let n = chars.len().max(1);
        match self {
            Edit::Replace { at, with } => {
                if let Some(c) = chars.get_mut(at % n) {
                    *c = *with;
                }
            }
            Edit::Insert { at, with } => chars.insert(at % (chars.len() + 1), *with),
            Edit::Delete { at } => {
                if !chars.is_empty() {
                    chars.remove(at % n);
                }
            }
            Edit::Truncate { to } => chars.truncate(to % n),
            Edit::Append(tail) => chars.extend(tail.chars()),
            Edit::Swap { at } => {
                if chars.len() >= 2 {
                    let i = at % (chars.len() - 1);
                    chars.swap(i, i + 1);
                }
            }
            Edit::ToUpper => return s.to_uppercase(),
        }
        chars.into_iter().collect()
    }
}

/// Client ID Metadata Documents as fetched from [`CIMD_URL`]: whatever is accepted names that
/// URL, is a public client using the code flow with at least one acceptable redirect URI, and
/// carries no secret and no control character.
pub fn cimd_document(body: &[u8]) {
    let Ok(doc) = crate::cimd::parse_document(CIMD_URL, body) else {
        return;
    };
    assert_eq!(doc.client_id, CIMD_URL);
    assert_eq!(doc.token_endpoint_auth_method, "none");
    assert!(!doc.client_name.trim().is_empty());
    assert!(!doc.redirect_uris.is_empty());
    for u in &doc.redirect_uris {
        assert!(crate::domain::redirect_uri::validate_for_registration(u, &[]).is_ok());
    }
    assert!(doc.grant_types.iter().any(|g| g == "authorization_code"));
    assert!(doc.response_types.iter().any(|r| r == "code"));
    assert!(first_control_character(&doc.raw).is_none());
    let obj = doc.raw.as_object().expect("a document is an object");
    assert!(!obj.contains_key("client_secret") && !obj.contains_key("client_secret_expires_at"));
    for u in doc.client_uri.iter().chain(&doc.logo_uri) {
        assert!(u.starts_with("https://"), "{u}");
    }
}

/// Redirect URIs offered at registration: an accepted one is https or loopback http, with no
/// fragment and no user info, and a registered URI always matches itself.
pub fn redirect_uri(raw: &str) {
    use crate::domain::redirect_uri::{find_match, is_loopback_host, validate_for_registration};
    let Ok(url) = validate_for_registration(raw, &[]) else {
        return;
    };
    assert!(!raw.contains('#') && url.fragment().is_none());
    assert!(url.username().is_empty() && url.password().is_none());
    let loopback = url.host().is_some_and(|h| is_loopback_host(&h));
    assert!(url.scheme() == "https" || (url.scheme() == "http" && loopback));
    let registered = [raw.to_owned()];
    assert_eq!(find_match(&registered, raw), Some(raw));
    let allowed = ["allowed.example".to_owned()];
    if let Ok(u) = validate_for_registration(raw, &allowed) {
        let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
        assert!(
            loopback || host == "allowed.example",
            "{raw:?} passed the host allow-list"
        );
    }
}

/// `scope` parameters: an accepted scope string is a set of RFC 6749 scope tokens whose string
/// form parses back to itself.
pub fn scope(raw: &str) {
    let Ok(set) = crate::domain::scope::ScopeSet::parse(raw) else {
        return;
    };
    let text = set.to_string();
    assert!(!has_control(&text));
    assert_eq!(crate::domain::scope::ScopeSet::parse(&text), Ok(set));
}

/// Request paths: the edge refuses a path whose percent-decoding holds a C0 control or DEL.
pub fn path(raw: &str) {
    let decoded = percent_decode(raw.as_bytes());
    let expected = decoded.iter().any(|&b| b < 0x20 || b == 0x7f);
    assert_eq!(
        crate::domain::input::percent_decoded_has_control(raw),
        expected,
        "{raw:?}"
    );
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (s[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
