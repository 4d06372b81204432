//! JWT access tokens: every key type signs and verifies, rotation keeps old tokens valid, and
//! anything not exactly what we signed is refused.

use super::*;

/// Test-only keys, written by `openssl genpkey` (RSA: ring cannot generate RSA keys; Ed25519:
/// the PKCS#8 v1 form openssl writes, without the public key).
const RSA_PEM: &str = include_str!("../../tests/fixtures/jwt-test-rsa2048.pem");
const ED_PEM: &str = include_str!("../../tests/fixtures/jwt-test-ed25519-pkcs8v1.pem");
const ISS: &str = "https://as.example";

fn es256_pem() -> String {
    let rng = SystemRandom::new();
    let der =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    pkcs8_pem(der.as_ref())
}

fn claims(now: i64) -> AccessClaims {
    AccessClaims {
        jti: "0123456789abcdef0123456789abcdef".into(),
        sub: "user-1".into(),
        client_id: "client-1".into(),
        grant_id: Some("g-1".into()),
        aud: "https://mcp.example/mcp".into(),
        scope: "mcp:tools".into(),
        iat: now,
        exp: now + 600,
        act: None,
    }
}

fn parts(token: &str) -> (Value, Value) {
    let mut p = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(p.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(p.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

#[test]
fn each_key_type_signs_and_verifies() {
    for (pem, alg, kty) in [
        (es256_pem(), "ES256", "EC"),
        (ED_PEM.to_owned(), "EdDSA", "OKP"),
        (RSA_PEM.to_owned(), "RS256", "RSA"),
    ] {
        let keys = JwtKeys::new(&[("k1".into(), pem)], "k1").unwrap();
        let c = claims(1_000);
        let t = keys.sign(ISS, &c);
        assert!(looks_like_jwt(&t));
        let (h, body) = parts(&t);
        assert_eq!(h, json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}));
        assert_eq!(body["iss"], ISS);
        assert_eq!(body["aud"], "https://mcp.example/mcp");
        assert_eq!(body["client_id"], "client-1");
        assert_eq!(keys.verify(ISS, &t, 1_001).unwrap(), c);
        let jwk = &keys.jwks()["keys"][0];
        assert_eq!(
            (jwk["kid"].as_str(), jwk["alg"].as_str()),
            (Some("k1"), Some(alg))
        );
        assert_eq!(
            (jwk["use"].as_str(), jwk["kty"].as_str()),
            (Some("sig"), Some(kty))
        );
        assert!(jwk.get("d").is_none(), "no private part is published");
    }
}

#[test]
fn a_private_jwk_is_accepted_and_matches_the_published_key() {
    let pem_keys = JwtKeys::new(&[("a".into(), es256_pem())], "a").unwrap();
    // Rebuild the same key as a JWK from its PKCS#8 (d is the 32 bytes after the PKCS#8 prefix).
    let rng = SystemRandom::new();
    let der =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der.as_ref(),
        &rng,
    )
    .unwrap();
    // ring's PKCS#8 for P-256: a fixed 36-byte prefix, then the 32-byte private scalar.
    let d = &der.as_ref()[36..68];
    let p = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "d": URL_SAFE_NO_PAD.encode(d),
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
    let keys = JwtKeys::new(&[("j".into(), jwk.to_string())], "j").unwrap();
    let t = keys.sign(ISS, &claims(10));
    assert!(keys.verify(ISS, &t, 11).is_ok());
    assert_eq!(keys.jwks()["keys"][0]["x"], jwk["x"]);
    assert_eq!(
        pem_keys.verify(ISS, &t, 11).unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn rotation_keeps_tokens_of_the_old_key_valid_and_publishes_both() {
    let (old, new) = (es256_pem(), ED_PEM.to_owned());
    let before = JwtKeys::new(&[("old".into(), old.clone())], "old").unwrap();
    let t_old = before.sign(ISS, &claims(100));
    let after = JwtKeys::new(&[("old".into(), old), ("new".into(), new)], "new").unwrap();
    let t_new = after.sign(ISS, &claims(100));
    assert_eq!(parts(&t_new).0["kid"], "new");
    assert!(after.verify(ISS, &t_old, 101).is_ok());
    assert!(after.verify(ISS, &t_new, 101).is_ok());
    let kids: Vec<_> = after.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, ["new", "old"]);
    // Once the old key is dropped from the list its tokens are refused.
    let retired = JwtKeys::new(&[("new".into(), ED_PEM.to_owned())], "new").unwrap();
    assert_eq!(
        retired.verify(ISS, &t_old, 101).unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn tampered_expired_foreign_and_mistyped_tokens_are_refused() {
    let keys = JwtKeys::new(&[("k".into(), es256_pem())], "k").unwrap();
    let t = keys.sign(ISS, &claims(100));
    let (h, mut c) = parts(&t);
    let sig = t.rsplit('.').next().unwrap();
    let forge = |h: &Value, c: &Value| {
        format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(h.to_string()),
            URL_SAFE_NO_PAD.encode(c.to_string())
        )
    };
    c["scope"] = json!("admin");
    assert_eq!(
        keys.verify(ISS, &forge(&h, &c), 101).unwrap_err(),
        TokenError::BadSeal
    );
    let mut none = h.clone();
    none["alg"] = json!("none");
    let (_, c) = parts(&t);
    assert_eq!(
        keys.verify(ISS, &forge(&none, &c), 101).unwrap_err(),
        TokenError::BadSeal
    );
    let mut untyped = h.clone();
    untyped["typ"] = json!("JWT");
    assert_eq!(
        keys.verify(ISS, &forge(&untyped, &c), 101).unwrap_err(),
        TokenError::Malformed
    );
    assert_eq!(keys.verify(ISS, &t, 700).unwrap_err(), TokenError::Expired);
    assert_eq!(
        keys.verify("https://other.example", &t, 101).unwrap_err(),
        TokenError::BadSeal
    );
    assert_eq!(
        keys.verify(ISS, &format!("{t}.x"), 101).unwrap_err(),
        TokenError::Malformed
    );
    // One base64url character in the middle of the signature changed.
    let mut bad_sig = t.clone().into_bytes();
    let i = t.len() - 20;
    bad_sig[i] = if bad_sig[i] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    assert_eq!(
        keys.verify(ISS, &bad_sig, 101).unwrap_err(),
        TokenError::BadSeal
    );
    let other = JwtKeys::new(&[("k".into(), es256_pem())], "k").unwrap();
    assert_eq!(other.verify(ISS, &t, 101).unwrap_err(), TokenError::BadSeal);
}

#[test]
fn bad_configuration_is_refused() {
    assert_eq!(JwtKeys::new(&[], "k").unwrap_err(), JwtKeyError::Empty);
    assert_eq!(
        JwtKeys::new(&[("k 1".into(), es256_pem())], "k 1").unwrap_err(),
        JwtKeyError::BadId("k 1".into())
    );
    assert_eq!(
        JwtKeys::new(&[("k".into(), "not a key".into())], "k").unwrap_err(),
        JwtKeyError::BadKey("k".into())
    );
    assert_eq!(
        JwtKeys::new(&[("k".into(), es256_pem()), ("k".into(), es256_pem())], "k").unwrap_err(),
        JwtKeyError::DuplicateId("k".into())
    );
    assert_eq!(
        JwtKeys::new(&[("k".into(), es256_pem())], "x").unwrap_err(),
        JwtKeyError::UnknownCurrent("x".into())
    );
    assert!(!looks_like_jwt("mcpat_k1_abc"));
}
